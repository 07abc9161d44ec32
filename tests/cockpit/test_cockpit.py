"""The cockpit: the admin home page of a tenant, its counts, links, fragments and charts."""

from __future__ import annotations

import re
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from orders.models import CancellationRequest, Order, OrderHold, OrderStatus
from shops.models import Role, Tenant
from tests.cockpit.helpers import cockpit_world
from tests.factories import (
    CancellationRequestFactory,
    MembershipFactory,
    OrderFactory,
    ShopFactory,
    UserFactory,
)
from tkerp.cockpit import WIDGETS, Figure, Panel, changelist_url, cockpit_widget
from tkerp.tenancy import tenant_context

COUNT_LINK = re.compile(r'<a href="([^"]+)" data-count="(\d+)"')


def figures(html: str) -> list[tuple[str, int]]:
    return [(href.replace("&amp;", "&"), int(n)) for href, n in COUNT_LINK.findall(html)]


def widget_html(html: str, key: str) -> str:
    start = html.index(f'data-widget="{key}"')
    return html[start : html.index("</article>", start)]


def count_of(html: str, key: str, label: str) -> int:
    block = widget_html(html, key)
    found = re.search(
        r'data-count="(\d+)">\s*<strong class="cockpit-value">\d+</strong>\s*'
        rf'<span class="cockpit-label">{re.escape(label)}</span>',
        block,
    ) or re.search(
        rf'data-count="(\d+)"><span class="cockpit-label">{re.escape(label)}</span>', block
    )
    assert found, f"{label!r} not on widget {key}"
    return int(found.group(1))


@pytest.fixture
def world_a(tenant_a):
    return cockpit_world(tenant_a)


def test_every_count_equals_the_database_and_links_to_a_list_of_exactly_those_rows(
    client_a, tenant_a, world_a
):
    # Given a tenant with something for every widget
    # When its user opens the admin home page
    response = client_a.get("/admin/")
    html = response.content.decode()

    # Then the cockpit is there, and Django's list of models below it
    assert response.status_code == 200
    assert 'id="cockpit"' in html and 'id="app-list-section"' in html
    assert "/admin/orders/order/" in html
    # and the counts are the ones built (hand-counted) and the database's
    now = timezone.now()
    with tenant_context(tenant_a):
        overdue = Order.objects.filter(status__in=("ready", "allocated"), ship_by__lt=now)
        held = Order.objects.filter(holds__in=OrderHold.objects.filter(released_at=None))
        held = held.distinct()
        pending = CancellationRequest.objects.filter(status="pending")
        assert count_of(html, "shipping", "overdue") == overdue.count() == 3
        assert count_of(html, "holds", "held orders") == held.count() == 3
        assert count_of(html, "cancellations", "waiting for an answer") == pending.count() == 2
        po_box = OrderHold.objects.filter(code="address.po_box", released_at__isnull=True)
        assert count_of(html, "holds", "PO box address") == po_box.count() == 2
    assert count_of(html, "shipping", "due within 4 h") == 3
    assert count_of(html, "holds", "Phone number invalid") == 1
    assert count_of(html, "cancellations", "answer due within 4 h") == 1
    assert count_of(html, "tracking", "awaiting write-back") == 2
    assert count_of(html, "tracking", "tracking overdue") == 1
    assert count_of(html, "labels", "parcels ready to print") == 2
    assert count_of(html, "labels", "of them past ship-by") == 1
    assert count_of(html, "sync", "shops failing") == 1
    assert count_of(html, "sync", "shops lagging") == 1
    assert count_of(html, "pushes", "listings failing") == 1
    assert count_of(html, "pushes", "failed pushes, 24 h") == 2
    assert count_of(html, "reorder", "at or below reorder point") == 2
    assert count_of(html, "reorder", "out of stock") == 1
    assert count_of(html, "providers", "late to acknowledge") == 1
    assert count_of(html, "providers", "late to send tracking") == 1
    assert count_of(html, "batches", "running or queued") == 1
    assert count_of(html, "on_their_way", "returned to sender") == 1
    assert count_of(html, "on_their_way", "labelled, no carrier scan") == 1
    assert count_of(html, "on_their_way", "delivery failed") == 0
    assert "75 % · 2 of 4 labelled · 1 failed" in widget_html(html, "batches")
    assert "Alpha Goods Shopify" in widget_html(html, "sync")

    # And each count's link opens the admin list filtered to exactly as many rows
    links = figures(html)
    assert len(links) >= 20
    for href, value in links:
        listed = client_a.get(href)
        assert listed.status_code == 200, href
        assert listed.context["cl"].result_count == value, href


def test_a_widget_is_a_few_lines_and_shows_with_its_link(client_a, world_a):
    @cockpit_widget(key="test_extra", title="Extra", order=99)
    def extra(*, now):
        return Panel(
            figures=[
                Figure(
                    label="on hold",
                    value=Order.objects.filter(status="on_hold").count(),
                    url=changelist_url(Order, status__exact="on_hold"),
                )
            ]
        )

    try:
        html = client_a.get("/admin/").content.decode()
        assert count_of(html, "test_extra", "on hold") == 3
        fragment = client_a.get("/admin/cockpit/widgets/test_extra/")
        assert fragment.status_code == 200
        assert 'hx-get="/admin/cockpit/widgets/test_extra/"' in fragment.content.decode()
    finally:
        WIDGETS.pop("test_extra")


def test_tenant_b_never_sees_tenant_a_and_a_fragment_of_a_shop_of_a_answers_404(
    client_a, client_b, tenant_a, tenant_b, world_a
):
    # Given tenant B with a single overdue order
    with tenant_context(tenant_b):
        shop_b = ShopFactory(tenant=tenant_b)
        OrderFactory(
            tenant=tenant_b,
            shop=shop_b,
            status=OrderStatus.READY,
            ship_by=timezone.now() - timedelta(hours=1),
        )
    # When B opens its cockpit and its fragments
    html = client_b.get("/admin/").content.decode()
    # Then it sees its own numbers, never A's
    assert count_of(html, "shipping", "overdue") == 1
    assert count_of(html, "holds", "held orders") == 0
    assert "Alpha Goods" not in html
    for key in WIDGETS:
        fragment = client_b.get(f"/admin/cockpit/widgets/{key}/").content.decode()
        assert "Alpha Goods" not in fragment
    shipping = client_b.get("/admin/cockpit/widgets/shipping/").content.decode()
    assert count_of(shipping, "shipping", "overdue") == 1
    # And a chart of A's shop, or A's label batch's progress, is a 404 for B (as for a missing one)
    assert (
        client_b.get(f"/admin/cockpit/charts/orders_10min/?shop={world_a.shop.pk}").status_code
        == 404
    )
    assert client_b.get("/admin/cockpit/charts/orders_10min/?shop=999999").status_code == 404
    assert client_b.get("/admin/cockpit/charts/orders_10min/?shop=x").status_code == 404
    assert (
        client_a.get(f"/admin/cockpit/charts/orders_10min/?shop={world_a.shop.pk}").status_code
        == 200
    )
    progress = f"/admin/logistics/labelbatch/{world_a.batch_id}/progress/"
    assert client_b.get(progress).status_code == 404
    assert client_a.get(progress).status_code == 200
    # and only the operator has the tenant table
    assert client_a.get("/admin/cockpit/tenants/").status_code == 404
    assert client_b.get("/admin/cockpit/widgets/nope/").status_code == 404


def test_the_cockpit_renders_in_a_constant_number_of_queries(
    client_a, tenant_a, world_a, django_assert_num_queries
):
    # Given the cockpit of a small tenant, measured once warm
    client_a.get("/admin/")
    with CaptureQueriesContext(connection) as small:
        client_a.get("/admin/")
    fragments = {}
    for key in WIDGETS:
        with CaptureQueriesContext(connection) as one:
            client_a.get(f"/admin/cockpit/widgets/{key}/")
        fragments[key] = len(one)
    # When the tenant has ten times the data
    cockpit_world(tenant_a, scale=10, shop=world_a.shop)
    # Then the page and every fragment take exactly as many queries
    with django_assert_num_queries(len(small)):
        response = client_a.get("/admin/")
    assert count_of(response.content.decode(), "shipping", "overdue") == 33
    for key, queries in fragments.items():
        with django_assert_num_queries(queries):
            client_a.get(f"/admin/cockpit/widgets/{key}/")
    assert len(small) < 60


def test_times_are_in_the_tenant_timezone(client_a, tenant_a):
    Tenant.objects.filter(pk=tenant_a.pk).update(timezone="Asia/Tokyo")
    deadline = timezone.now().replace(microsecond=0) + timedelta(hours=2)
    with tenant_context(tenant_a):
        CancellationRequestFactory(tenant=tenant_a, answer_by=deadline)
    html = client_a.get("/admin/").content.decode()
    tokyo = timezone.localtime(deadline, timezone=ZoneInfo("Asia/Tokyo"))
    assert "Times in Asia/Tokyo" in html
    assert f"nearest deadline {tokyo:%H:%M}" in html or f"nearest deadline {tokyo:%a %H:%M}" in html


def test_charts_are_server_rendered_svg_from_the_data(client_a, tenant_a, world_a):
    html = client_a.get("/admin/").content.decode()
    for key in ("orders_10min", "shipped_vs_due", "late_rate", "error_rate"):
        assert f'id="chart-{key}"' in html
    chart = client_a.get("/admin/cockpit/charts/orders_10min/").content.decode()
    assert "<svg" in chart and "<script" not in chart
    # Every order of the fixture was placed two hours ago: one bar, of that many orders
    with tenant_context(tenant_a):
        placed = Order.objects.filter(placed_at__gte=timezone.now() - timedelta(hours=24)).count()
    bars = re.findall(r"<title>[^<]*: (\d+) orders</title>", chart)
    assert [int(n) for n in bars] == [placed]
    late = client_a.get("/admin/cockpit/charts/late_rate/").content.decode()
    assert "platform limit 5 %" in late and "7 late of 100 due" in late
    assert 'class="bar s-bad"' in late  # 7 % is past the line
    errors = client_a.get("/admin/cockpit/charts/error_rate/").content.decode()
    assert "held" in errors and "failed pushes" in errors
    # and the shop picker narrows the curve to one shop
    narrowed = client_a.get(f"/admin/cockpit/charts/orders_10min/?shop={world_a.shop.pk}")
    assert world_a.shop.name in narrowed.content.decode()


def test_htmx_is_served_from_the_project_not_a_cdn(client_a, world_a):
    html = client_a.get("/admin/").content.decode()
    scripts = re.findall(r'<script[^>]+src="([^"]+)"', html)
    htmx = [src for src in scripts if "htmx" in src]
    assert htmx and all(src.startswith("/static/") for src in htmx)
    assert 'hx-trigger="every 15s"' in html


def test_the_operator_sees_a_row_per_tenant_and_opens_one(tenant_a, tenant_b, superuser, world_a):
    with tenant_context(tenant_b):
        OrderFactory(
            tenant=tenant_b, status=OrderStatus.READY, ship_by=timezone.now() - timedelta(hours=1)
        )
    client = Client()
    client.force_login(superuser)
    html = client.get("/admin/").content.decode()
    assert 'id="cockpit-tenants"' in html
    row_a = html[html.index(f'data-tenant="{tenant_a.pk}"') :]
    row_a = row_a[: row_a.index("</tr>")]
    assert re.search(r'<td class="num tone-bad">3</td>', row_a)  # overdue
    row_b = html[html.index(f'data-tenant="{tenant_b.pk}"') :]
    assert re.search(r'<td class="num tone-bad">1</td>', row_b[: row_b.index("</tr>")])
    assert client.get("/admin/cockpit/tenants/").status_code == 200
    # Opening a tenant makes it active and lands on its cockpit
    response = client.post("/admin/switch-tenant/", {"tenant": tenant_a.pk, "next": "/admin/"})
    assert response.status_code == 302
    html = client.get("/admin/").content.decode()
    assert count_of(html, "shipping", "overdue") == 3
    assert client.get("/admin/cockpit/tenants/").status_code == 404


def test_a_viewer_sees_the_cockpit_and_a_user_without_tenant_sees_the_plain_index(
    tenant_a, world_a
):
    viewer = UserFactory(username="viewer-a")
    MembershipFactory(tenant=tenant_a, user=viewer, role=Role.VIEWER)
    client = Client()
    client.force_login(viewer)
    assert count_of(client.get("/admin/").content.decode(), "holds", "held orders") == 3
    lonely = UserFactory(username="nobody")
    client.force_login(lonely)
    response = client.get("/admin/")
    assert response.status_code == 200
    assert 'id="cockpit"' not in response.content.decode()
    assert client.get("/admin/cockpit/widgets/holds/").status_code == 404


def test_the_tenant_form_refuses_a_timezone_that_does_not_exist(client_a, tenant_a):
    url = f"/admin/shops/tenant/{tenant_a.pk}/change/"
    form = {"name": tenant_a.name, "default_currency": "USD", "timezone": "Mars/Olympus_Mons"}
    response = client_a.post(url, form)
    assert response.status_code == 200
    assert "is not a timezone name" in response.content.decode()
    tenant_a.refresh_from_db()
    assert tenant_a.timezone == "UTC"
    response = client_a.post(url, {**form, "timezone": "Europe/Paris"})
    assert response.status_code == 302
    tenant_a.refresh_from_db()
    assert tenant_a.timezone == "Europe/Paris"
    assert "Times in Europe/Paris" in client_a.get("/admin/").content.decode()


def test_a_fragment_polled_after_logout_asks_the_page_to_reload(client_a, world_a):
    client_a.logout()
    polled = client_a.get("/admin/cockpit/widgets/shipping/", headers={"HX-Request": "true"})
    assert polled.status_code == 204 and polled.headers["HX-Refresh"] == "true"
    opened = client_a.get("/admin/cockpit/widgets/shipping/")
    assert opened.status_code == 302 and "/admin/login/" in opened.headers["Location"]
