"""The stock side of the cockpit: failing pushes to the platforms, stock at its reorder point.

The querysets here are also the listing, push and stock-level lists' filters
(`inventory.admin`), so each count and its list are the same rows.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Count, F, Q
from django.db.models.functions import TruncDate

from inventory.models import InventoryPush, Listing, PushResult, StockLevel
from tkerp.cockpit import Figure, Panel, changelist_url, cockpit_widget
from tkerp.cockpit.charts import cockpit_error_series

#: The push widget's window for failed pushes.
PUSH_ERROR_HOURS = 24


def q_push_failing() -> Q:
    """Listings whose last push failed and is being retried."""
    return Q(push_failures__gt=0)


def q_push_failed_within(*, now: datetime, hours: int) -> Q:
    return Q(result=PushResult.ERROR, created_at__gte=now - timedelta(hours=hours))


def q_below_reorder() -> Q:
    """Stock levels whose free stock is at or below their reorder point."""
    return Q(on_hand__lte=F("reserved") + F("reorder_point"))


@cockpit_widget(
    key="pushes", title="Stock pushes", order=55, permission="inventory.view_inventorypush"
)
def pushes(*, now: datetime) -> Panel:
    failing = Listing.objects.filter(q_push_failing()).count()
    failed = InventoryPush.objects.filter(
        q_push_failed_within(now=now, hours=PUSH_ERROR_HOURS)
    ).count()
    return Panel(
        figures=[
            Figure(
                label="listings failing",
                value=failing,
                tone="bad",
                url=changelist_url(Listing, push="failing"),
            ),
            Figure(
                label=f"failed pushes, {PUSH_ERROR_HOURS} h",
                value=failed,
                tone="warn",
                url=changelist_url(InventoryPush, failed_within=f"{PUSH_ERROR_HOURS}h"),
            ),
        ]
    )


@cockpit_widget(key="reorder", title="Stock", order=60, permission="inventory.view_stocklevel")
def reorder(*, now: datetime) -> Panel:
    counts = StockLevel.objects.aggregate(
        below=Count("pk", filter=q_below_reorder()),
        out=Count("pk", filter=Q(on_hand__lte=F("reserved"))),
    )
    return Panel(
        figures=[
            Figure(
                label="at or below reorder point",
                value=counts["below"],
                tone="warn",
                url=changelist_url(StockLevel, reorder="below"),
                note="SKU stock levels",
            ),
            Figure(
                label="out of stock",
                value=counts["out"],
                tone="bad",
                url=changelist_url(StockLevel, reorder="out"),
                note="nothing free to sell",
            ),
        ]
    )


@cockpit_error_series(key="pushes", name="failed pushes", order=30)
def failed_pushes_per_day(*, start: datetime, end: datetime) -> dict:
    rows = (
        InventoryPush.objects.filter(created_at__gte=start, created_at__lt=end)
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(errors=Count("pk", filter=Q(result=PushResult.ERROR)), total=Count("pk"))
        .order_by()
    )
    return {row["day"]: (row["errors"], row["total"]) for row in rows}
