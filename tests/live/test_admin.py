"""The live sessions' back office: list (newest first, with figures), the session page with
its curve, the profit report and its CSV, shop fees; another tenant gets 404 everywhere."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from live.models import LivePool, LiveSession, ShopFees
from orders.models import OrderStatus
from tests.factories import OrderFactory, OrderLineFactory, ShopFactory, SkuFactory
from tests.orders.admin_helpers import inlines_empty

pytestmark = pytest.mark.django_db


@pytest.fixture
def live(tenant_a):
    shop = ShopFactory(tenant=tenant_a, name="Sunny TikTok", platform="tiktok")
    sku = SkuFactory(tenant=tenant_a, code="GLOW-1", cost=Decimal("2.00"))
    start = timezone.now() - timedelta(hours=2)
    older = LiveSession._base_manager.create(
        tenant=tenant_a,
        shop=shop,
        title="Monday live",
        creator_username="sunny.live",
        starts_at=start - timedelta(days=3),
        ends_at=start - timedelta(days=3) + timedelta(hours=1),
    )
    session = LiveSession._base_manager.create(
        tenant=tenant_a,
        shop=shop,
        title="Friday live",
        creator_username="sunny.live",
        starts_at=start,
        ends_at=start + timedelta(hours=1),
    )
    LivePool._base_manager.create(tenant=tenant_a, session=session, sku=sku, quantity=40)
    for minute, creator in ((1, "sunny.live"), (5, ""), (7, "other.creator"), (50, "sunny.live")):
        order = OrderFactory(
            tenant=tenant_a,
            shop=shop,
            placed_at=start + timedelta(minutes=minute),
            creator_username=creator,
            total=Decimal("20.00"),
            status=OrderStatus.READY,
        )
        OrderLineFactory(order=order, sku=sku, quantity=2, total=Decimal("20.00"))
    return {"session": session, "older": older, "shop": shop, "sku": sku}


def csv_rows(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.content.decode())))


class TestSessionList:
    def test_newest_first_with_figures(self, client_a, live):
        response = client_a.get(reverse("admin:live_livesession_changelist"))
        assert response.status_code == 200
        page = response.content.decode()
        assert page.index("Friday live") < page.index("Monday live")
        # 3 of 4 orders: the one credited to another creator is theirs.
        cl = response.context_data["cl"]
        friday = next(s for s in cl.result_list if s.title == "Friday live")
        assert friday.figures.orders == 3
        assert friday.figures.units == 6
        assert friday.figures.gmv == Decimal("60.00")

    def test_figures_of_many_sessions_in_a_fixed_number_of_queries(
        self, client_a, live, tenant_a, django_assert_max_num_queries
    ):
        url = reverse("admin:live_livesession_changelist")
        client_a.get(url)
        for n in range(10):
            LiveSession._base_manager.create(
                tenant=tenant_a,
                shop=live["shop"],
                title=f"Extra {n}",
                starts_at=timezone.now() - timedelta(days=10 + n),
                ends_at=timezone.now() - timedelta(days=10 + n) + timedelta(hours=1),
            )
        with django_assert_max_num_queries(25):
            assert client_a.get(url).status_code == 200


class TestSessionPage:
    def test_figures_curve_and_pools(self, client_a, live):
        session = live["session"]
        response = client_a.get(reverse("admin:live_livesession_report", args=[session.pk]))
        assert response.status_code == 200
        page = response.content.decode()
        assert 'id="fig-orders">3<' in page
        assert "<svg" in page and page.count('class="bar"') == 60
        assert "GLOW-1" in page  # best seller and pool
        curve = dict(response.context["figures"].holds_by_code)
        assert curve == {}

    def test_session_profit_csv(self, client_a, live):
        session = live["session"]
        url = reverse("admin:live_livesession_session_csv", args=[session.pk])
        rows = csv_rows(client_a.get(url + "?by=sku"))
        assert rows[0][:3] == ["sku", "orders", "units"]
        assert rows[1][:3] == ["GLOW-1", "3", "6"]
        # 60.00 sales - 6 % TikTok referral (3.60) - 6 x 2.00 goods - 3 x 0 packaging
        assert rows[1][-1] == "44.40"


class TestProfitReport:
    def test_page_and_csv_per_session_and_day(self, client_a, live):
        url = reverse("admin:live_livesession_profit")
        response = client_a.get(url, {"by": "session"})
        assert response.status_code == 200
        assert "Friday live" in response.content.decode()
        rows = csv_rows(client_a.get(reverse("admin:live_livesession_profit_csv"), {"by": "shop"}))
        assert rows[1][0] == "Sunny TikTok"
        assert rows[1][1] == "4"

    def test_bad_dates_say_what_is_wrong(self, client_a, live):
        response = client_a.get(
            reverse("admin:live_livesession_profit_csv"),
            {"by": "day", "date_from": "2026-05-02", "date_to": "2026-05-01"},
        )
        assert response.status_code == 400
        assert "before" in response.content.decode()

    def test_a_formula_in_a_name_is_neutralised(self, client_a, live):
        live["shop"].name = "=HYPERLINK(1)"
        live["shop"].save()
        rows = csv_rows(client_a.get(reverse("admin:live_livesession_profit_csv"), {"by": "shop"}))
        assert not rows[1][0].startswith("=")


class TestAnotherTenant:
    @pytest.mark.parametrize(
        "name, suffix",
        [("report", ""), ("session_csv", ""), ("change", "")],
    )
    def test_gets_404_for_the_session(self, client_b, live, name, suffix):
        url = reverse(f"admin:live_livesession_{name}", args=[live["session"].pk])
        response = client_b.get(url)
        assert response.status_code in (404, 302)
        if response.status_code == 302:  # Django's change view redirects a missing object
            assert response.url.startswith(reverse("admin:index"))

    def test_sees_none_of_it_in_lists_and_reports(self, client_b, live):
        page = client_b.get(reverse("admin:live_livesession_changelist")).content.decode()
        assert "Friday live" not in page
        rows = csv_rows(client_b.get(reverse("admin:live_livesession_profit_csv"), {"by": "shop"}))
        assert rows == [rows[0]]

    def test_shop_fees_of_another_tenant_answer_404(self, client_b, live, tenant_a):
        fees = ShopFees._base_manager.create(tenant=tenant_a, shop=live["shop"])
        response = client_b.get(reverse("admin:live_shopfees_change", args=[fees.pk]))
        assert response.status_code in (404, 302)


def test_saving_a_pool_publishes_its_sku_at_once(client_a, live, tenant_a):
    from inventory.models import Listing

    listing = Listing._base_manager.create(
        tenant=tenant_a,
        shop=ShopFactory(tenant=tenant_a, platform="shopify"),
        sku=live["sku"],
        platform_sku_id="99",
    )
    session = live["session"]
    url = reverse("admin:live_livesession_change", args=[session.pk])
    page = client_a.get(url)
    assert page.status_code == 200
    pool = LivePool._base_manager.get(session=session)
    data = {
        "shop": live["shop"].pk,
        "title": session.title,
        "creator_username": session.creator_username,
        "creator_id": "",
        "starts_at_0": timezone.localtime(session.starts_at).strftime("%Y-%m-%d"),
        "starts_at_1": timezone.localtime(session.starts_at).strftime("%H:%M:%S"),
        "ends_at_0": timezone.localtime(session.ends_at).strftime("%Y-%m-%d"),
        "ends_at_1": timezone.localtime(session.ends_at).strftime("%H:%M:%S"),
        "notes": "",
        "pools-TOTAL_FORMS": "1",
        "pools-INITIAL_FORMS": "1",
        "pools-0-id": pool.pk,
        "pools-0-session": session.pk,
        "pools-0-sku": live["sku"].pk,
        "pools-0-quantity": "25",
    }
    data |= inlines_empty(page, only_first=True)  # the product list
    response = client_a.post(url, data)
    assert response.status_code == 302, response.context["errors"] if response.context else ""
    pool.refresh_from_db()
    assert pool.quantity == 25
    listing.refresh_from_db()
    assert listing.push_due_at is not None


def test_a_pool_cannot_keep_fewer_units_than_its_shop_took(client_a, live):
    pool = LivePool._base_manager.get(session=live["session"])
    LivePool._base_manager.filter(pk=pool.pk).update(drawn=10)
    pool.refresh_from_db()
    pool.quantity = 5
    from django.core.exceptions import ValidationError

    from tkerp.tenancy import tenant_context

    with tenant_context(pool.tenant), pytest.raises(ValidationError, match="already took 10"):
        pool.full_clean()


def test_the_operator_picks_a_tenant_before_the_profit_report(superuser, live):
    from django.test import Client

    client = Client()
    client.force_login(superuser)
    assert client.get(reverse("admin:live_livesession_profit_csv")).status_code == 404


def test_a_session_in_the_year_9999_is_a_form_error_and_the_list_still_shows(
    tenant_a, user_a, live
):
    # West of Greenwich, 9999-12-31 23:00 is past year 9999 in UTC: stored, it made the
    # session list an error page for the whole tenant.
    tenant_a.timezone = "America/New_York"
    tenant_a.save(update_fields=["timezone"])
    client = Client(raise_request_exception=False)
    client.force_login(user_a)
    url = reverse("admin:live_livesession_add")
    page = client.get(url)
    assert page.status_code == 200
    data = {
        "shop": live["shop"].pk,
        "title": "Forever live",
        "creator_username": "sunny.live",
        "creator_id": "",
        "starts_at_0": "9999-12-31",
        "starts_at_1": "23:00:00",
        "ends_at_0": "9999-12-31",
        "ends_at_1": "23:30:00",
        "notes": "",
    }
    data |= inlines_empty(page)

    response = client.post(url, data)

    assert response.status_code == 200
    form = response.context["adminform"].form
    assert set(form.errors) == {"starts_at", "ends_at"}
    assert "in the years 2000-2100" in form.errors["starts_at"][0]
    assert not LiveSession._base_manager.filter(title="Forever live").exists()
    assert client.get(reverse("admin:live_livesession_changelist")).status_code == 200
