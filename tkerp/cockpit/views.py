"""The cockpit's pages: the admin home page (`cockpit_context`, used by the admin site's index)
and the fragments htmx fetches to keep it current (one widget, one chart, the operator's table).

A tenant's user sees their tenant's cockpit; the operator looking at all tenants sees one row
per tenant and picks one. Every fragment is tenant-scoped through the scoped managers: another
tenant's shop is the same 404 as a missing one.
"""

from __future__ import annotations

from datetime import datetime

from django.db.models import Count, Min, Q
from django.http import Http404, HttpRequest
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

from orders.cockpit import SHIP_DUE_HOURS, q_ship_due_within, q_ship_overdue
from orders.models import (
    OPEN_STATUSES,
    CancellationRequest,
    CancellationStatus,
    Order,
    OrderStatus,
)
from shops.cockpit import q_sync_failing, q_sync_lagging, shops_with_lag_deadline
from shops.models import Shop, Tenant
from tkerp.cockpit.registry import CHARTS, WIDGETS, Chart, Widget, charts_for, widgets_for
from tkerp.tenancy import current_tenant
from tkerp.tenants import tenant_timezone

#: Seconds between two refreshes of a widget, a chart, the operator's table.
WIDGET_REFRESH_SECONDS = 15
CHART_REFRESH_SECONDS = 60


def widget_render(request: HttpRequest, widget: Widget, *, now: datetime) -> SafeString:
    panel = widget.compute(now=now)
    return mark_safe(
        render_to_string(
            widget.template,
            {
                "widget": widget,
                "panel": panel,
                "refresh_seconds": WIDGET_REFRESH_SECONDS,
            },
            request=request,
        )
    )


def chart_render(
    request: HttpRequest, chart: Chart, *, now: datetime, shop: Shop | None = None, shops=()
) -> SafeString:
    svg = chart.render(now=now, shop=shop) if chart.per_shop else chart.render(now=now)
    return mark_safe(
        render_to_string(
            "admin/cockpit/chart.html",
            {
                "chart": chart,
                "svg": svg,
                "shop": shop,
                "shops": shops,
                "refresh_seconds": CHART_REFRESH_SECONDS,
            },
            request=request,
        )
    )


def cockpit_context(request: HttpRequest) -> dict:
    """What the admin home page shows: the tenant's cockpit, or the operator's tenant table."""
    now = timezone.now()
    if current_tenant() is not None:
        shops = list(Shop.objects.filter(is_active=True).order_by("name").only("pk", "name"))
        return {
            "cockpit": "tenant",
            "cockpit_widgets": [
                widget_render(request, w, now=now) for w in widgets_for(request.user)
            ],
            "cockpit_charts": [
                chart_render(request, c, now=now, shops=shops) for c in charts_for(request.user)
            ],
            "cockpit_now": now,
            "cockpit_timezone": timezone.get_current_timezone_name(),
        }
    if request.user.is_superuser:
        return {"cockpit": "operator", "tenant_table": tenant_table_render(request, now=now)}
    return {}


def _tenant_or_404() -> None:
    if current_tenant() is None:
        raise Http404("Choose a tenant first.")


def widget_view(request: HttpRequest, key: str):
    """One widget, as the page shows it (htmx swaps it in place)."""
    _tenant_or_404()
    widget = WIDGETS.get(key)
    if widget is None or not widget.allowed(request.user):
        raise Http404("No such widget.")
    return TemplateResponse(
        request,
        "admin/cockpit/fragment.html",
        {"html": widget_render(request, widget, now=timezone.now())},
    )


def chart_view(request: HttpRequest, key: str):
    """One chart; `?shop=<id>` narrows a per-shop chart to one of the tenant's shops."""
    _tenant_or_404()
    chart = CHARTS.get(key)
    if chart is None or not chart.allowed(request.user):
        raise Http404("No such chart.")
    shop = None
    raw = request.GET.get("shop", "")
    if raw and chart.per_shop:
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
            raise Http404("No such shop.")
        shop = Shop.objects.filter(pk=int(raw)).first()
        if shop is None:
            raise Http404("No such shop.")
    shops = (
        list(Shop.objects.filter(is_active=True).order_by("name").only("pk", "name"))
        if chart.per_shop
        else ()
    )
    html = chart_render(request, chart, now=timezone.now(), shop=shop, shops=shops)
    return TemplateResponse(request, "admin/cockpit/fragment.html", {"html": html})


# --- the operator's table -------------------------------------------------------------------


def tenant_rows(*, now: datetime) -> list[dict]:
    """One row per active tenant with what needs a hand there (four queries, any number of
    tenants and orders). Runs in the operator's all-tenants scope."""
    tenants = list(Tenant.objects.filter(is_active=True).order_by("name"))
    orders = {
        row["tenant_id"]: row
        for row in Order.objects.filter(status__in=OPEN_STATUSES)
        .order_by()
        .values("tenant_id")
        .annotate(
            overdue=Count("pk", filter=q_ship_overdue(now=now)),
            due=Count("pk", filter=q_ship_due_within(now=now, hours=SHIP_DUE_HOURS)),
            held=Count("pk", filter=Q(status=OrderStatus.ON_HOLD)),
        )
    }
    cancels = {
        row["tenant_id"]: row
        for row in CancellationRequest.objects.filter(status=CancellationStatus.PENDING)
        .order_by()
        .values("tenant_id")
        .annotate(n=Count("pk"), nearest=Min("answer_by"))
    }
    sync = {
        row["tenant_id"]: row
        for row in shops_with_lag_deadline()
        .order_by()
        .values("tenant_id")
        .annotate(
            failing=Count("pk", filter=q_sync_failing()),
            lagging=Count("pk", filter=q_sync_lagging(now=now)),
        )
    }
    rows = []
    for tenant in tenants:
        order_row = orders.get(tenant.pk, {})
        cancel_row = cancels.get(tenant.pk, {})
        sync_row = sync.get(tenant.pk, {})
        nearest = cancel_row.get("nearest")
        zone = tenant_timezone(tenant)
        rows.append(
            {
                "tenant": tenant,
                "overdue": order_row.get("overdue", 0),
                "due": order_row.get("due", 0),
                "held": order_row.get("held", 0),
                "cancellations": cancel_row.get("n", 0),
                "nearest": timezone.localtime(nearest, zone).strftime("%a %H:%M")
                if nearest
                else "",
                "timezone": str(zone),
                "sync_failing": sync_row.get("failing", 0),
                "sync_lagging": sync_row.get("lagging", 0),
            }
        )
    return rows


def tenant_table_render(request: HttpRequest, *, now: datetime) -> SafeString:
    return mark_safe(
        render_to_string(
            "admin/cockpit/tenants.html",
            {
                "rows": tenant_rows(now=now),
                "due_hours": SHIP_DUE_HOURS,
                "refresh_seconds": WIDGET_REFRESH_SECONDS,
            },
            request=request,
        )
    )


def tenants_view(request: HttpRequest):
    """The operator's table alone (only the operator looking at all tenants has one)."""
    if not request.user.is_superuser or current_tenant() is not None:
        raise Http404("No such page.")
    html = tenant_table_render(request, now=timezone.now())
    return TemplateResponse(request, "admin/cockpit/fragment.html", {"html": html})
