"""The orders side of the cockpit: deadlines, holds, cancellations, tracking, and the charts of
orders over time.

The querysets here are also the order and cancellation lists' filters (`orders.admin`,
`orders.admin_inbox`), so a count and the list it links to are the same rows by construction.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Min, Q
from django.db.models.functions import TruncDate
from django.utils import timezone
from django.utils.safestring import SafeString

from orders.holds import HoldReason
from orders.models import (
    OPEN_STATUSES,
    CancellationRequest,
    CancellationStatus,
    Order,
    OrderHold,
    OrderStatus,
    ShopSlaFigures,
)
from orders.sla import SHIP_BY_CLOCK, TRACKING_CLOCK
from tkerp.cockpit import Figure, Panel, changelist_url, cockpit_chart, cockpit_widget
from tkerp.cockpit.charts import cockpit_error_series
from tkerp.cockpit.db import DateBin
from tkerp.cockpit.registry import local_time
from tkerp.cockpit.svg import Series, bar_chart, hbar_chart

#: "Due soon" on the cockpit: open orders whose ship-by falls within this many hours.
SHIP_DUE_HOURS = 4
#: Hold reasons listed on the holds widget, most frequent first (the list filters by any).
HOLD_REASONS_SHOWN = 6
#: The cancellation widget's "answer due soon" window.
CANCEL_DUE_HOURS = 4
#: Orders still to carry tracking to the platform: open ones, and shipped ones not yet accepted.
TRACKING_STATUSES = (*OPEN_STATUSES, OrderStatus.SHIPPED)


# --- the querysets the widgets count and the lists filter by ---------------------------------


def q_ship_overdue(*, now: datetime) -> Q:
    # The SLA sweep's own clock (orders.sla), so the cockpit, the list filter and the sweep
    # count the same orders.
    return SHIP_BY_CLOCK.running() & Q(ship_by__lt=now)


def q_ship_due_within(*, now: datetime, hours: int) -> Q:
    return SHIP_BY_CLOCK.running() & Q(ship_by__gte=now, ship_by__lt=now + timedelta(hours=hours))


def q_tracking_awaiting() -> Q:
    """Shipped, but the platform has not accepted its tracking yet (the write-back is due)."""
    return Q(status=OrderStatus.SHIPPED, tracking_uploaded_at__isnull=True)


def q_tracking_overdue(*, now: datetime) -> Q:
    """Past the platform's tracking deadline without accepted tracking (the tracking clock)."""
    return TRACKING_CLOCK.running() & Q(tracking_by__lt=now)


def q_cancel_due_within(*, now: datetime, hours: int) -> Q:
    return Q(status=CancellationStatus.PENDING, answer_by__lt=now + timedelta(hours=hours))


# --- widgets ----------------------------------------------------------------------------------


@cockpit_widget(key="shipping", title="To ship", order=10, permission="orders.view_order")
def shipping(*, now: datetime) -> Panel:
    # Open orders only (the (tenant, status, ship_by) index): shipped history is never read.
    counts = Order.objects.filter(status__in=OPEN_STATUSES).aggregate(
        overdue=Count("pk", filter=q_ship_overdue(now=now)),
        due=Count("pk", filter=q_ship_due_within(now=now, hours=SHIP_DUE_HOURS)),
        next_due=Min("ship_by", filter=Q(status__in=OPEN_STATUSES, ship_by__gte=now)),
    )
    next_due = local_time(counts["next_due"], now=now)
    return Panel(
        figures=[
            Figure(
                label="overdue",
                value=counts["overdue"],
                tone="bad",
                url=changelist_url(Order, ship_by_due="overdue"),
            ),
            Figure(
                label=f"due within {SHIP_DUE_HOURS} h",
                value=counts["due"],
                tone="warn",
                url=changelist_url(Order, ship_by_due=f"{SHIP_DUE_HOURS}h"),
                note=f"next {next_due}" if next_due else "",
            ),
        ]
    )


@cockpit_widget(key="holds", title="Held, by reason", order=20, permission="orders.view_order")
def holds(*, now: datetime) -> Panel:
    active = OrderHold.objects.filter(released_at__isnull=True)
    held = active.aggregate(n=Count("order", distinct=True))["n"]
    # One row per reason code in use: a short list whatever the number of orders.
    by_code = list(
        active.order_by()
        .values("code")
        .annotate(n=Count("order", distinct=True))
        .order_by("-n", "code")
    )
    labels = dict(HoldReason.choices)
    figures = [
        Figure(label="held orders", value=held, tone="warn", url=changelist_url(Order, hold="_any"))
    ]
    breakdown = [
        Figure(
            label=labels.get(row["code"], row["code"]),
            value=row["n"],
            url=changelist_url(Order, hold=row["code"]),
        )
        for row in by_code[:HOLD_REASONS_SHOWN]
    ]
    hidden = len(by_code) - HOLD_REASONS_SHOWN
    more = (
        (
            f"{hidden} more reason{'s' if hidden > 1 else ''} in the order list's filter",
            changelist_url(Order, hold="_any"),
        )
        if hidden > 0
        else None
    )
    return Panel(figures=figures, breakdown=breakdown, more=more, empty_text="Nothing is held.")


@cockpit_widget(
    key="cancellations",
    title="Cancellation requests",
    order=30,
    permission="orders.view_cancellationrequest",
)
def cancellations(*, now: datetime) -> Panel:
    pending = CancellationRequest.objects.filter(status=CancellationStatus.PENDING)
    counts = pending.aggregate(
        n=Count("pk"),
        soon=Count("pk", filter=q_cancel_due_within(now=now, hours=CANCEL_DUE_HOURS)),
        nearest=Min("answer_by"),
    )
    nearest = local_time(counts["nearest"], now=now)
    return Panel(
        figures=[
            Figure(
                label="waiting for an answer",
                value=counts["n"],
                tone="warn",
                url=changelist_url(CancellationRequest, status__exact=CancellationStatus.PENDING),
                note=f"nearest deadline {nearest}" if nearest else "",
            ),
            Figure(
                label=f"answer due within {CANCEL_DUE_HOURS} h",
                value=counts["soon"],
                tone="bad",
                url=changelist_url(CancellationRequest, answer_due=f"{CANCEL_DUE_HOURS}h"),
            ),
        ]
    )


@cockpit_widget(key="tracking", title="Tracking", order=40, permission="orders.view_order")
def tracking(*, now: datetime) -> Panel:
    without = Order.objects.filter(status__in=TRACKING_STATUSES, tracking_uploaded_at__isnull=True)
    counts = without.aggregate(
        awaiting=Count("pk", filter=q_tracking_awaiting()),
        overdue=Count("pk", filter=q_tracking_overdue(now=now)),
    )
    return Panel(
        figures=[
            Figure(
                label="awaiting write-back",
                value=counts["awaiting"],
                tone="warn",
                url=changelist_url(Order, tracking="awaiting"),
            ),
            Figure(
                label="tracking overdue",
                value=counts["overdue"],
                tone="bad",
                url=changelist_url(Order, tracking="overdue"),
            ),
        ]
    )


# --- charts -----------------------------------------------------------------------------------


def _floor(moment: datetime, minutes: int) -> datetime:
    moment = moment.replace(second=0, microsecond=0)
    return moment - timedelta(minutes=moment.minute % minutes)


@cockpit_chart(
    key="orders_10min",
    title="Orders per 10 minutes, last 24 h",
    order=10,
    permission="orders.view_order",
    per_shop=True,
    help_text="The live-stream curve: orders placed in each 10 minutes.",
)
def orders_per_10_minutes(*, now: datetime, shop=None) -> SafeString:
    stride = timedelta(minutes=10)
    start = _floor(now, 10) + stride - timedelta(hours=24)
    orders = Order.objects.filter(placed_at__gte=start, placed_at__lt=start + timedelta(hours=24))
    if shop is not None:
        orders = orders.filter(shop=shop)
    rows = (
        orders.annotate(bin=DateBin(stride, "placed_at", origin=start))
        .values("bin")
        .annotate(n=Count("pk"))
        .order_by()
    )
    counts = {row["bin"]: row["n"] for row in rows}
    bins = [start + stride * i for i in range(144)]
    labels = []
    for moment in bins:
        local = timezone.localtime(moment)
        labels.append(local.strftime("%H:%M") if local.minute < 10 and local.hour % 3 == 0 else "")
    return bar_chart(
        label="Orders per 10 minutes over the last 24 hours",
        series=[Series("orders", [counts.get(b, 0) for b in bins], "s1")],
        x_labels=labels,
    )


@cockpit_chart(
    key="shipped_vs_due",
    title="Shipped vs due, per hour",
    order=20,
    permission="orders.view_order",
    help_text="Orders shipped in each hour, and orders whose ship-by falls in it (not cancelled).",
)
def shipped_vs_due(*, now: datetime) -> SafeString:
    stride, past, ahead = timedelta(hours=1), 20, 4
    start = _floor(now, 60) - stride * (past - 1)
    end = start + stride * (past + ahead)
    shipped = (
        Order.objects.filter(shipped_at__gte=start, shipped_at__lt=end)
        .annotate(bin=DateBin(stride, "shipped_at", origin=start))
        .values("bin")
        .annotate(n=Count("pk"))
        .order_by()
    )
    due = (
        Order.objects.filter(ship_by__gte=start, ship_by__lt=end)
        .exclude(status=OrderStatus.CANCELLED)
        .annotate(bin=DateBin(stride, "ship_by", origin=start))
        .values("bin")
        .annotate(n=Count("pk"))
        .order_by()
    )
    shipped_by_bin = {row["bin"]: row["n"] for row in shipped}
    due_by_bin = {row["bin"]: row["n"] for row in due}
    bins = [start + stride * i for i in range(past + ahead)]
    labels = [timezone.localtime(b).strftime("%H:%M") for b in bins]
    return bar_chart(
        label="Orders shipped and orders due per hour",
        series=[
            Series("shipped", [shipped_by_bin.get(b, 0) for b in bins], "s1"),
            Series("due", [due_by_bin.get(b, 0) for b in bins], "s2"),
        ],
        x_labels=labels,
        label_every=3,
        marker_index=past,
        marker_text="now",
    )


def late_rate_limit_percent() -> float:
    """The late-shipment rate above which a platform cuts a shop's traffic (TikTok: 5 %)."""
    return float(getattr(settings, "TKERP_LATE_RATE_LIMIT_PERCENT", 5))


@cockpit_chart(
    key="late_rate",
    title="Late rate per shop, 30 days",
    order=30,
    permission="orders.view_shopslafigures",
    help_text="Orders due in the last 30 days that shipped late or not at all, as the SLA sweep "
    "last computed it; the line is the platform's limit.",
)
def late_rate(*, now: datetime) -> SafeString:
    figures = ShopSlaFigures.objects.select_related("shop").order_by("shop__name")[:30]
    rows = [
        (
            f.shop.name,
            None if f.late_rate_30d is None else f.late_rate_30d * 100,
            f"{f.shop.name}: {f.late_30d} late of {f.due_30d} due",
        )
        for f in figures
    ]
    limit = late_rate_limit_percent()
    return hbar_chart(
        label="Late-shipment rate per shop over 30 days",
        rows=rows or [("No figures yet", None, "")],
        limit=limit,
        limit_text=f"platform limit {limit:g} %",
    )


@cockpit_error_series(key="holds", name="held", order=10)
def holds_per_day(*, start: datetime, end: datetime) -> dict:
    """Holds placed per day, over orders placed that day."""
    held = (
        OrderHold.objects.filter(created_at__gte=start, created_at__lt=end)
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(n=Count("pk"))
        .order_by()
    )
    received = (
        Order.objects.filter(placed_at__gte=start, placed_at__lt=end)
        .annotate(day=TruncDate("placed_at"))
        .values("day")
        .annotate(n=Count("pk"))
        .order_by()
    )
    counts = {row["day"]: (0, row["n"]) for row in received}
    for row in held:
        counts[row["day"]] = (row["n"], counts.get(row["day"], (0, 0))[1])
    return counts
