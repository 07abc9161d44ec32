"""SLA clocks stored on an order: when it must ship, carry tracking, and have its cancellation
request answered.

The platform's own deadline wins when it gives one; otherwise the shop's policy (24 h, 48 h, or
longer for pre-sale) counts from payment. `sla_deadlines` is a pure function over values so the
bulk ingest path can call it for a page of orders without touching the database.

`sla_sweep` (every minute) keeps `Order.sla_state` and `Order.tracking_sla_state` (ok / due
soon / overdue; the tracking clock stops once the platform accepted a tracking number), one alert
per kind, and each shop's late-shipment figures current; see "the sweep" below.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import connection
from django.db.models import Count, Exists, F, OuterRef, Q
from django.utils import timezone

from orders.models import (
    OPEN_STATUSES,
    Order,
    OrderStatus,
    ShopSlaFigures,
    SlaState,
    TenantOrderPolicy,
)
from tkerp.tenancy import tenant_context

if TYPE_CHECKING:
    from shops.models import Shop, Tenant

logger = logging.getLogger("tkerp.sla")


@dataclass(frozen=True, slots=True)
class SlaDeadlines:
    ship_by: datetime | None
    tracking_by: datetime | None
    cancel_answer_by: datetime | None


def sla_deadlines(
    *,
    paid_at: datetime | None,
    placed_at: datetime | None,
    is_presale: bool,
    ship_by_hours: int,
    presale_ship_by_hours: int,
    platform_ship_by: datetime | None = None,
    cancel_requested_at: datetime | None = None,
    platform_cancel_answer_by: datetime | None = None,
    tracking_upload_hours: int | None = None,
    cancel_answer_hours: int | None = None,
) -> SlaDeadlines:
    """The three deadlines of one order.

    - ship_by: the platform's deadline, else payment (or placement, for unpaid and COD orders)
      plus the shop's ship-by hours (the pre-sale hours for pre-sale orders).
    - tracking_by: payment (or placement) plus the tracking-upload window.
    - cancel_answer_by: the platform's answer deadline, else the request time plus the answer
      window; None while no cancellation was requested.
    """
    if tracking_upload_hours is None:
        tracking_upload_hours = settings.TKERP_TRACKING_UPLOAD_HOURS
    if cancel_answer_hours is None:
        cancel_answer_hours = settings.TKERP_CANCEL_ANSWER_HOURS
    start = paid_at or placed_at
    if platform_ship_by is not None:
        ship_by = platform_ship_by
    elif start is not None:
        hours = presale_ship_by_hours if is_presale else ship_by_hours
        ship_by = start + timedelta(hours=hours)
    else:
        ship_by = None
    tracking_by = start + timedelta(hours=tracking_upload_hours) if start is not None else None
    if platform_cancel_answer_by is not None:
        cancel_answer_by = platform_cancel_answer_by
    elif cancel_requested_at is not None:
        cancel_answer_by = cancel_requested_at + timedelta(hours=cancel_answer_hours)
    else:
        cancel_answer_by = None
    return SlaDeadlines(ship_by=ship_by, tracking_by=tracking_by, cancel_answer_by=cancel_answer_by)


def order_sla_compute(
    *,
    order: Order,
    shop: Shop,
    platform_ship_by: datetime | None = None,
    cancel_requested_at: datetime | None = None,
    platform_cancel_answer_by: datetime | None = None,
) -> SlaDeadlines:
    """The deadlines of a stored order under its shop's policy (nothing is saved).

    Without a platform deadline the order's current `ship_by` is not consulted: the policy is
    recomputed, so a changed shop policy applies to open orders when this is re-run.
    """
    return sla_deadlines(
        paid_at=order.paid_at,
        placed_at=order.placed_at,
        is_presale=order.is_presale,
        ship_by_hours=shop.ship_by_hours,
        presale_ship_by_hours=shop.presale_ship_by_hours,
        tracking_upload_hours=shop.tracking_upload_hours,
        platform_ship_by=platform_ship_by,
        cancel_requested_at=cancel_requested_at,
        platform_cancel_answer_by=platform_cancel_answer_by or order.cancel_answer_by,
    )


# --- the sweep ----------------------------------------------------------------------------------
#
# Every minute (`orders.tasks.sla_sweep_task`), tenant by tenant: mark where each order stands
# against its ship-by and tracking-by deadlines (`SLA_CLOCKS`), raise or resolve one alert per
# kind, recompute each shop's figures, re-run the ingest pipeline for orders it left half done
# (a failed step, a dead worker: `orders_stranded`), let the cancellation inbox catch up
# (`orders.cancellations.cancellations_sweep`) and split ready orders left without a parcel.
# Every step selects its work by state, so a second run in the same minute changes nothing.

SLA_OVERDUE_ALERT = "sla.overdue"
SLA_DUE_SOON_ALERT = "sla.due_soon"
TRACKING_OVERDUE_ALERT = "sla.tracking_overdue"
TRACKING_DUE_SOON_ALERT = "sla.tracking_due_soon"
STUCK_BATCH = 500  # orders per shop re-run by one sweep; the next sweep takes the rest


@dataclass(frozen=True, slots=True)
class SlaClock:
    """One deadline the sweep watches: the order field holding it, the field the sweep marks,
    which orders it still runs for, and its alerts' keys and words."""

    deadline_field: str
    state_field: str
    what: str  # the alerts' wording: "due to <what> within 4 h"
    overdue_words: str  # "<n> orders <overdue_words> already"
    overdue_alert: str
    due_soon_alert: str
    overdue_cost: str

    def running(self) -> Q:
        """Orders whose clock still runs (the deadline is set and not yet met)."""
        if self.deadline_field == "ship_by":
            return Q(status__in=OPEN_STATUSES, ship_by__isnull=False)
        # The tracking clock runs until the platform accepts a number (tracking_uploaded_at),
        # for orders not cancelled, not yet reported on their way by the platform (in transit
        # or delivered: the platform has the number), and not on manual shops (no platform).
        from shops.models import Platform

        return (
            Q(tracking_by__isnull=False, tracking_uploaded_at__isnull=True)
            & Q(status__in=(*OPEN_STATUSES, OrderStatus.SHIPPED))
            & ~Q(shop__platform=Platform.MANUAL)
        )


SHIP_BY_CLOCK = SlaClock(
    deadline_field="ship_by",
    state_field="sla_state",
    what="ship",
    overdue_words="should have shipped",
    overdue_alert=SLA_OVERDUE_ALERT,
    due_soon_alert=SLA_DUE_SOON_ALERT,
    overdue_cost="each late shipment costs a penalty and raises the shop's late rate.",
)
TRACKING_CLOCK = SlaClock(
    deadline_field="tracking_by",
    state_field="tracking_sla_state",
    what="have tracking on the platform",
    overdue_words="should have a valid tracking number on the platform",
    overdue_alert=TRACKING_OVERDUE_ALERT,
    due_soon_alert=TRACKING_DUE_SOON_ALERT,
    overdue_cost="the platform counts them unshipped until a valid tracking number arrives.",
)
SLA_CLOCKS = (SHIP_BY_CLOCK, TRACKING_CLOCK)


def sla_due_soon_hours(*, tenant: Tenant) -> int:
    """Hours before a deadline that an order counts as due soon: the tenant's policy, else
    `TKERP_SLA_DUE_SOON_HOURS` (default 4)."""
    hours = (
        TenantOrderPolicy._base_manager.filter(tenant=tenant)
        .values_list("due_soon_hours", flat=True)
        .first()
    )
    return hours if hours is not None else getattr(settings, "TKERP_SLA_DUE_SOON_HOURS", 4)


def orders_sla_mark(
    *, tenant, now: datetime, due_soon_hours: int, clock: SlaClock = SHIP_BY_CLOCK
) -> dict[str, int]:
    """Set the clock's state field on the tenant's orders with three conditional UPDATEs (only
    rows whose state changes are written); returns how many orders whose clock runs are overdue
    and due soon. Orders whose clock stopped go back to OK."""
    soon = now + timedelta(hours=due_soon_hours)
    field, state = clock.deadline_field, clock.state_field
    orders = Order._base_manager.filter(tenant=tenant)
    running = clock.running()
    overdue = running & Q(**{f"{field}__lt": now})
    due_soon = running & Q(**{f"{field}__gte": now, f"{field}__lt": soon})
    orders.filter(overdue).exclude(**{state: SlaState.OVERDUE}).update(**{state: SlaState.OVERDUE})
    orders.filter(due_soon).exclude(**{state: SlaState.DUE_SOON}).update(
        **{state: SlaState.DUE_SOON}
    )
    orders.exclude(overdue | due_soon).exclude(**{state: SlaState.OK}).update(
        **{state: SlaState.OK}
    )
    counts = dict(
        orders.filter(running)
        .exclude(**{state: SlaState.OK})
        .values(state)
        .annotate(n=Count("id"))
        .values_list(state, "n")
    )
    return {
        "overdue": counts.get(SlaState.OVERDUE, 0),
        "due_soon": counts.get(SlaState.DUE_SOON, 0),
    }


def sla_alerts_update(
    *, tenant, overdue: int, due_soon: int, due_soon_hours: int, clock: SlaClock = SHIP_BY_CLOCK
) -> None:
    """One open alert per kind and clock while orders are overdue / due soon (its message
    carries the count); resolved once none remain."""
    from tkerp.alerts import alert_raise, alert_resolve
    from tkerp.models import AlertSeverity

    deadline = clock.deadline_field.replace("_", "-")
    if overdue:
        alert_raise(
            tenant=tenant,
            key=clock.overdue_alert,
            kind=clock.overdue_alert,
            severity=AlertSeverity.ERROR,
            title=f"{overdue} order{'s' if overdue != 1 else ''} past their {deadline} time",
            message=f"{overdue} orders {clock.overdue_words} already; {clock.overdue_cost}",
        )
    else:
        alert_resolve(tenant=tenant, key=clock.overdue_alert)
    if due_soon:
        alert_raise(
            tenant=tenant,
            key=clock.due_soon_alert,
            kind=clock.due_soon_alert,
            severity=AlertSeverity.WARNING,
            title=f"{due_soon} order{'s' if due_soon != 1 else ''} due to {clock.what} within "
            f"{due_soon_hours} h",
            message=f"{due_soon} orders reach their {deadline} time within {due_soon_hours} hours.",
        )
    else:
        alert_resolve(tenant=tenant, key=clock.due_soon_alert)


def _hours_to_ship(*, shop, since: datetime) -> tuple[int, float | None, float | None]:
    """(count, median, p95) of hours from payment to shipment of orders shipped since `since`,
    with PostgreSQL's percentile_cont (linear interpolation between the nearest ranks)."""
    shipped = Order._base_manager.filter(
        tenant_id=shop.tenant_id,
        shop_id=shop.pk,
        shipped_at__gte=since,
        paid_at__isnull=False,
    )
    sql, params = shipped.values("id").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), "
            "percentile_cont(0.5) WITHIN GROUP (ORDER BY hours), "
            "percentile_cont(0.95) WITHIN GROUP (ORDER BY hours) "
            "FROM (SELECT EXTRACT(EPOCH FROM (o.shipped_at - o.paid_at)) / 3600.0 AS hours "
            f"FROM {Order._meta.db_table} o WHERE o.id IN ({sql})) AS shipped",
            params,
        )
        count, median, p95 = cursor.fetchone()
    return (
        count,
        (float(median) if median is not None else None),
        (float(p95) if p95 is not None else None),
    )


def shop_sla_figures_compute(*, shop, now: datetime | None = None):
    """Recompute and store `shop`'s figures (late rate over 7 and 30 days, median and p95 hours
    from payment to shipment over 30 days) with aggregates; returns the `ShopSlaFigures` row."""
    now = now or timezone.now()
    orders = Order._base_manager.filter(tenant_id=shop.tenant_id, shop_id=shop.pk).exclude(
        status=OrderStatus.CANCELLED
    )
    late = Q(shipped_at__gt=F("ship_by")) | Q(shipped_at__isnull=True, ship_by__lt=now)
    figures: dict = {}
    for days in (7, 30):
        window = Q(ship_by__gte=now - timedelta(days=days), ship_by__lte=now)
        totals = orders.aggregate(
            due=Count("id", filter=window), late=Count("id", filter=window & late)
        )
        figures[f"due_{days}d"] = totals["due"]
        figures[f"late_{days}d"] = totals["late"]
        figures[f"late_rate_{days}d"] = totals["late"] / totals["due"] if totals["due"] else None
    count, median, p95 = _hours_to_ship(shop=shop, since=now - timedelta(days=30))
    figures.update(
        shipped_30d=count, median_hours_to_ship=median, p95_hours_to_ship=p95, computed_at=now
    )
    row, _ = ShopSlaFigures._base_manager.update_or_create(
        tenant_id=shop.tenant_id, shop_id=shop.pk, defaults=figures
    )
    return row


def orders_stranded(*, tenant, now: datetime):
    """The tenant's orders the ingest pipeline (`orders.pipeline`) left half done, a few minutes
    (`TKERP_SLA_STUCK_NEW_MINUTES`, default 5) after they were stored or last changed:

    - paid (or COD) orders still "new": never reserved or reviewed, or reviewed while their stock
      was not reserved (a step failed, a worker died between storing and processing);
    - paid open orders whose stock is not reserved and that do not wait on a stock hold
      (`stock.short` retries when stock arrives, `sku.unknown` waits for a person): held for
      review or ready without their units, which stay on sale meanwhile;
    - paid open orders never reviewed (held `stock.short` before review failed: the stock's
      arrival must not make them ready unseen);
    - orders shipped, or cancelled, that still hold reserved units: the platform's report was
      stored but the stock was neither committed nor given back.

    Unpaid orders are not stranded: they wait for their payment, which arrives as an update.
    """
    from inventory.models import Reservation, ReservationState
    from inventory.reservations import SHIPPED_STATUSES, lines_not_reserved
    from orders.holds import HoldReason
    from orders.models import OrderHold, OrderLine

    minutes = getattr(settings, "TKERP_SLA_STUCK_NEW_MINUTES", 5)
    cutoff = now - timedelta(minutes=minutes)
    paid = Q(paid_at__isnull=False) | Q(is_cod=True)
    holding = Exists(
        Reservation._base_manager.filter(order=OuterRef("pk"), state=ReservationState.RESERVED)
    )
    not_reserved = Exists(lines_not_reserved(OrderLine._base_manager.filter(order=OuterRef("pk"))))
    waits_for_stock = Exists(
        OrderHold._base_manager.filter(
            order=OuterRef("pk"),
            released_at__isnull=True,
            code__in=(HoldReason.STOCK_SHORT, HoldReason.SKU_UNKNOWN),
        )
    )
    return Order._base_manager.filter(tenant=tenant).filter(
        (Q(status=OrderStatus.NEW, created_at__lt=cutoff) & paid)
        | (
            Q(status__in=(OrderStatus.ON_HOLD, OrderStatus.READY), updated_at__lt=cutoff)
            & paid
            & ((not_reserved & ~waits_for_stock) | Q(reviewed_at__isnull=True))
        )
        | (
            Q(status__in=(*SHIPPED_STATUSES, OrderStatus.CANCELLED), updated_at__lt=cutoff)
            & holding
        )
    )


def orders_stuck_rerun(*, tenant, now: datetime) -> int:
    """Re-run the ingest pipeline (ship-commit, reserve, review) for the tenant's stranded
    orders (`orders_stranded`), at most `STUCK_BATCH` per shop a sweep; returns how many were
    re-run. A shop's `orders.pipeline` alert (a failed step) is resolved once the shop has no
    stranded order left; ready orders without a parcel are split by the sweep right after."""
    from orders.pipeline import PIPELINE_ALERT_KIND, orders_after_ingest, pipeline_alert_key
    from shops.models import Shop
    from tkerp.alerts import alert_resolve
    from tkerp.models import Alert

    stuck = orders_stranded(tenant=tenant, now=now)
    by_shop: dict[int, list[int]] = {}
    for shop_id, order_id in stuck.order_by("shop_id", "pk").values_list("shop_id", "pk"):
        ids = by_shop.setdefault(shop_id, [])
        if len(ids) < STUCK_BATCH:
            ids.append(order_id)
    waiting = {pipeline_alert_key(shop_id) for shop_id in by_shop}
    for key in (
        Alert._base_manager.filter(
            tenant=tenant, kind=PIPELINE_ALERT_KIND, resolved_at__isnull=True
        )
        .exclude(key__in=waiting)
        .values_list("key", flat=True)
    ):
        alert_resolve(tenant=tenant, key=key)
    total = 0
    for shop in Shop._base_manager.filter(pk__in=list(by_shop)).select_related("tenant"):
        try:
            orders_after_ingest(shop=shop, created_ids=[], updated_ids=by_shop[shop.pk])
        except Exception:
            # Logged, not raised: the rest of the sweep (cancellation clocks) must still run.
            logger.exception("re-running the pipeline for shop %s failed", shop.pk)
            continue
        total += len(by_shop[shop.pk])
    return total


def sla_sweep_tenant(*, tenant, now: datetime | None = None) -> dict:
    """One sweep over one tenant's orders, shops and cancellation requests (see above)."""
    from logistics.routing import orders_split_ready
    from orders.cancellations import cancellations_sweep
    from shops.models import Shop

    now = now or timezone.now()
    with tenant_context(tenant):
        hours = sla_due_soon_hours(tenant=tenant)
        counts = orders_sla_mark(tenant=tenant, now=now, due_soon_hours=hours)
        sla_alerts_update(tenant=tenant, due_soon_hours=hours, **counts)
        tracking = orders_sla_mark(
            tenant=tenant, now=now, due_soon_hours=hours, clock=TRACKING_CLOCK
        )
        sla_alerts_update(tenant=tenant, due_soon_hours=hours, clock=TRACKING_CLOCK, **tracking)
        for shop in Shop.objects.filter(is_active=True).order_by("pk"):
            shop_sla_figures_compute(shop=shop, now=now)
        rerun = orders_stuck_rerun(tenant=tenant, now=now)
        cancellations = cancellations_sweep(tenant=tenant, now=now)
        split = orders_split_ready(tenant=tenant)
    return {
        **counts,
        "tracking_overdue": tracking["overdue"],
        "tracking_due_soon": tracking["due_soon"],
        "rerun": rerun,
        "cancellations": cancellations,
        "split": split,
    }


def sla_sweep(*, now: datetime | None = None) -> dict[int, dict]:
    """Sweep every active tenant in turn (explicitly: each under its own scope). A tenant whose
    sweep fails is logged and skipped; the next minute tries again."""
    from shops.models import Tenant

    now = now or timezone.now()
    results: dict[int, dict] = {}
    for tenant in Tenant.objects.filter(is_active=True).order_by("pk"):
        try:
            results[tenant.pk] = sla_sweep_tenant(tenant=tenant, now=now)
        except Exception:
            logger.exception("SLA sweep of tenant %s failed", tenant.pk)
            results[tenant.pk] = {"error": True}
    return results
