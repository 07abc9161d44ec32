"""The tracking outbox: telling each order's platform the tracking numbers tkerp accepted.

`logistics.tracking` queues a `TrackingPush` per parcel; `tracking_push_shop` sends a shop's due
ones outside any transaction, one connector (one token, the platform's rate limiter) per run,
through the connector's `ship` (first number) or `update_tracking` (a changed number). Every call
is recorded as a `TrackingPushAttempt` (number, result, latency).

Retry-safe: a row is claimed and its attempt counted in a committed transaction before the
call, and the HTTP client does not retry on its own (`max_retries=0`), so a row sent again (the
worker died after posting, an answer was lost) is first checked against what the platform holds
(`Connector.shipped_tracking_numbers`): a platform that already has the number counts as sent and
nothing is posted twice. Failures that may pass (throttled, outage, expired token) retry with
exponential backoff; a request the platform refuses for another reason waits for a person.

Three-strike guard: three invalid tracking numbers in a row freeze a shop's shipping on the
platform for 24 h, so at the platform's first "invalid tracking number" the shop's write-back
stops at once (`Shop.tracking_paused_at`), an alert is raised, and nothing more is sent for the
shop until a person releases it (`tracking_writeback_release`, the shop admin's action).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from logistics.models import (
    Shipment,
    ShipmentStatus,
    TrackingAttemptResult,
    TrackingPush,
    TrackingPushAttempt,
    TrackingPushState,
)
from orders.models import Order
from shops.models import Platform, Shop, ShopCredentials
from shops.platforms.base import (
    PlatformAuthError,
    PlatformError,
    PlatformRateLimited,
    ShipRequest,
)
from tkerp.alerts import alert_raise, alert_resolve
from tkerp.models import AlertSeverity
from tkerp.outbound import scrub_reason
from tkerp.tenancy import all_tenants, tenant_context

logger = logging.getLogger("tkerp.tracking")

#: Rows one run takes per shop (the rest wait for the next run, a minute later).
BATCH = 200
#: How long a claimed row stays with its worker before another run may take it over.
LEASE = timedelta(minutes=5)
#: Tries before a failing push gives up and raises an alert.
MAX_ATTEMPTS = 8
BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_MAX = timedelta(hours=1)

SENDABLE = (TrackingPushState.PENDING, TrackingPushState.RETRYING, TrackingPushState.BLOCKED)


@dataclass(slots=True)
class PushSummary:
    sent: int = 0
    failed: int = 0
    blocked: int = 0
    shops: list[int] = field(default_factory=list)

    def add(self, other: PushSummary) -> None:
        self.sent += other.sent
        self.failed += other.failed
        self.blocked += other.blocked
        self.shops.extend(other.shops)

    def line(self) -> str:
        return f"tracking: {self.sent} sent, {self.failed} failed, {self.blocked} blocked"

    def as_dict(self) -> dict:
        return {"sent": self.sent, "failed": self.failed, "blocked": self.blocked}


class TrackingPushSends:
    """Collects the shops whose write-backs were queued while many parcels are stored at once (a
    label batch's buying threads): `send_due` queues one send per shop however many of its
    parcels were stored, not one task per parcel. Thread-safe; see `tracking_push_sends_grouped`.
    """

    def __init__(self, *, every_seconds: float = 1.0):
        self.every = every_seconds
        self.lock = threading.Lock()
        self.shops: set[tuple[int, int]] = set()
        self.sent_at = time.monotonic()

    def add(self, *, tenant_id: int, shop_id: int) -> None:
        with self.lock:
            self.shops.add((tenant_id, shop_id))

    def send_due(self, *, now: bool = False) -> None:
        """Queue the collected shops' sends, if `every_seconds` passed since the last (or `now`)."""
        with self.lock:
            if not self.shops or not (now or time.monotonic() - self.sent_at >= self.every):
                return
            shops, self.shops = sorted(self.shops), set()
            self.sent_at = time.monotonic()
        for tenant_id, shop_id in shops:
            _tracking_push_task(tenant_id=tenant_id, shop_id=shop_id)


_grouped: ContextVar[TrackingPushSends | None] = ContextVar("tracking_push_sends", default=None)


@contextmanager
def tracking_push_sends_grouped(sends: TrackingPushSends) -> Iterator[None]:
    """In the block (this thread), `tracking_push_enqueue` adds the shop to `sends` instead of
    queuing a task; the caller calls `sends.send_due()` as it goes and `send_due(now=True)` at
    the end. A send lost to a crash in between is picked up by the minute schedule."""
    token = _grouped.set(sends)
    try:
        yield
    finally:
        _grouped.reset(token)


def tracking_push_enqueue(*, tenant_id: int, shop_id: int) -> None:
    """Queue a send of the shop's due write-backs (after the number was stored). Never raises:
    the minute schedule picks up what a broker hiccup lost."""
    grouped = _grouped.get()
    if grouped is not None:
        grouped.add(tenant_id=tenant_id, shop_id=shop_id)
        return
    _tracking_push_task(tenant_id=tenant_id, shop_id=shop_id)


def _tracking_push_task(*, tenant_id: int, shop_id: int) -> None:
    from django_q.tasks import async_task

    try:
        async_task(
            "logistics.tasks.push_shop_tracking",
            tenant_id,
            shop_id,
            task_name=f"tracking-shop-{shop_id}",
        )
    except Exception:
        logger.exception("could not queue the tracking push of shop %s", shop_id)


def _backoff(attempts: int, retry_after: float | None = None) -> timedelta:
    delay = min(BACKOFF_BASE * (2 ** max(0, attempts - 1)), BACKOFF_MAX)
    if retry_after:
        delay = max(delay, timedelta(seconds=retry_after))
    return delay


def _claim(*, shop: Shop, limit: int) -> list[TrackingPush]:
    """Take the shop's due rows: state to `sending` under a lease, attempts counted, committed
    before any call is made."""
    now = timezone.now()
    with transaction.atomic():
        rows = list(
            TrackingPush.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(
                Q(state__in=SENDABLE, due_at__lte=now)
                | Q(state=TrackingPushState.SENDING, lease_until__lt=now),
                shop=shop,
            )
            .order_by("due_at", "pk")[:limit]
        )
        if rows:
            TrackingPush.objects.filter(pk__in=[row.pk for row in rows]).update(
                state=TrackingPushState.SENDING, lease_until=now + LEASE
            )
            for row in rows:
                row.attempts += 1
                TrackingPush.objects.filter(pk=row.pk).update(attempts=row.attempts)
    return rows


def _paused(shop: Shop) -> bool:
    return Shop.objects.filter(pk=shop.pk, tracking_paused_at__isnull=False).exists()


def _hold(rows: list[TrackingPush]) -> int:
    """The shop's write-back is stopped: these rows wait, unsent and not due, for the release."""
    if rows:
        TrackingPush.objects.filter(pk__in=[row.pk for row in rows]).update(
            state=TrackingPushState.BLOCKED,
            due_at=None,
            lease_until=None,
            updated_at=timezone.now(),
        )
    return len(rows)


def _waiting(shop: Shop) -> int:
    """Rows of a stopped shop waiting for the release."""
    return TrackingPush.objects.filter(shop=shop, state=TrackingPushState.BLOCKED).count()


def _request(push: TrackingPush, shop: Shop) -> ShipRequest:
    """What the platform is told about the parcel: its order, its own lines (a split order's
    parcels each name theirs), carrier and number."""
    shipment = push.shipment
    order = shipment.order
    platform = shop.platform
    parcel_lines = list(shipment.lines.select_related("order_line").order_by("pk"))
    live_parcels = (
        Shipment.objects.filter(order=order).exclude(status=ShipmentStatus.CANCELLED).count()
    )
    line_ids: list[str] = []
    quantities: dict[str, int] = {}
    if parcel_lines and (live_parcels > 1 or platform == Platform.TIKTOK):
        for line in parcel_lines:
            ol = line.order_line
            if platform == Platform.TIKTOK:
                # TikTok's line items are one unit each; an order line groups them.
                line_ids.extend(ol.platform_line_ids or [ol.platform_line_id])
            else:
                line_ids.append(ol.platform_line_id)
                if platform != Platform.AMAZON:
                    # Amazon works out what is left to ship itself (that keeps a retry from
                    # confirming twice); the others want this parcel's units.
                    quantities[ol.platform_line_id] = (
                        quantities.get(ol.platform_line_id, 0) + line.quantity
                    )
    carrier = shipment.carrier
    provider_ids = (carrier.platform_provider_ids or {}) if carrier is not None else {}
    return ShipRequest(
        platform_order_id=order.platform_order_id,
        tracking_number=push.number,
        carrier_code=push.carrier_code,
        platform_provider_id=str(provider_ids.get(platform, "")),
        platform_line_ids=line_ids,
        line_quantities=quantities,
        shipped_at=shipment.shipped_at or shipment.labelled_at,
        platform_package_id=shipment.platform_package_id,
    )


def _record(push, shop, *, call, result, started, error="") -> None:
    TrackingPushAttempt.objects.create(
        tenant_id=push.tenant_id,
        push=push,
        shipment_id=push.shipment_id,
        shop=shop,
        platform=shop.platform,
        number=push.number,
        call=call,
        result=result,
        error=scrub_reason(error)[:500] if error else "",
        latency_ms=max(0, int((time.monotonic() - started) * 1000)),
    )


def _accepted(push: TrackingPush, *, package_id: str = "") -> None:
    now = timezone.now()
    TrackingPush.objects.filter(pk=push.pk).update(
        state=TrackingPushState.SENT,
        sent_number=push.number,
        sent_at=now,
        due_at=None,
        lease_until=None,
        last_error="",
        updated_at=now,
    )
    if package_id:
        Shipment.objects.filter(pk=push.shipment_id, platform_package_id="").update(
            platform_package_id=package_id
        )
    order_tracking_uploaded_mark(order_id=push.shipment.order_id, now=now)


def order_tracking_uploaded_mark(*, order_id: int, now) -> None:
    """Stop the order's tracking clock (`Order.tracking_uploaded_at`) once the platform has
    accepted every live parcel's number."""
    parcels = Shipment.objects.filter(order_id=order_id).exclude(status=ShipmentStatus.CANCELLED)
    waiting = parcels.filter(
        Q(tracking_number="")
        | Q(tracking_push__isnull=True)
        | ~Q(tracking_push__state=TrackingPushState.SENT)
    )
    if parcels.exists() and not waiting.exists():
        Order.objects.filter(pk=order_id, tracking_uploaded_at__isnull=True).update(
            tracking_uploaded_at=now
        )


def _failed(push: TrackingPush, *, error: str, retry_after: float | None, final: bool) -> None:
    now = timezone.now()
    give_up = final or push.attempts >= MAX_ATTEMPTS
    TrackingPush.objects.filter(pk=push.pk).update(
        state=TrackingPushState.FAILED if give_up else TrackingPushState.RETRYING,
        due_at=None if give_up else now + _backoff(push.attempts, retry_after),
        lease_until=None,
        last_error=scrub_reason(error)[:500],
        updated_at=now,
    )
    if give_up:
        shipment = push.shipment
        alert_raise(
            tenant=shipment.tenant,
            key=f"tracking.failed.{push.pk}",
            kind="tracking_push_failed",
            title=f"Tracking {push.number} of parcel {shipment.reference} was not accepted",
            message=f"{scrub_reason(error)[:300]}. Correct it and give the number again, or "
            "mark it on the platform.",
            shop=push.shop,
        )


def _reject(push: TrackingPush, shop: Shop, *, error: str) -> None:
    """The platform called the number invalid: stop the shop's write-back now, and say so."""
    now = timezone.now()
    reason = (
        f"{shop.get_platform_display()} rejected tracking number {push.number} of parcel "
        f"{push.shipment.reference} as invalid"
    )
    TrackingPush.objects.filter(pk=push.pk).update(
        state=TrackingPushState.REJECTED,
        due_at=None,
        lease_until=None,
        last_error=scrub_reason(error)[:500],
        updated_at=now,
    )
    Shop.objects.filter(pk=shop.pk, tracking_paused_at__isnull=True).update(
        tracking_paused_at=now, tracking_pause_reason=reason[:500]
    )
    alert_raise(
        tenant=shop.tenant,
        key=f"tracking.paused.{shop.pk}",
        kind="tracking_paused",
        title=f"Tracking write-back to {shop.name} stopped",
        message=f"{reason}. Three invalid numbers in a row freeze the shop's shipping on the "
        "platform, so tkerp sends nothing more to this shop until someone checks the number and "
        "releases the write-back (Shops: select the shop, action Release tracking write-back).",
        shop=shop,
        severity=AlertSeverity.CRITICAL,
    )


def _send_one(connector, push: TrackingPush, shop: Shop) -> str:
    """One row: check first when an earlier attempt may have landed, then ship or update.
    Returns sent, failed or rejected."""
    request = _request(push, shop)
    update = bool(push.sent_number) and push.sent_number != push.number
    started = time.monotonic()
    if push.attempts > 1 or push.sent_number == push.number:
        try:
            held = connector.shipped_tracking_numbers(platform_order_id=request.platform_order_id)
        except PlatformError as exc:
            held = None
            logger.info("tracking check of %s failed: %s", push.number, exc)
        if held is not None and push.number in held:
            _record(push, shop, call="check", result=TrackingAttemptResult.ALREADY, started=started)
            _accepted(push)
            return "sent"
        started = time.monotonic()
    call = "update" if update else "ship"
    try:
        result = (
            connector.update_tracking(request=request)
            if update
            else connector.ship(request=request)
        )
    except PlatformError as exc:
        if connector.tracking_rejected(exc):
            _record(
                push,
                shop,
                call=call,
                result=TrackingAttemptResult.REJECTED,
                started=started,
                error=str(exc),
            )
            _reject(push, shop, error=str(exc))
            return "rejected"
        retryable = exc.retryable or isinstance(exc, PlatformAuthError)
        _record(
            push,
            shop,
            call=call,
            result=TrackingAttemptResult.FAILED if retryable else TrackingAttemptResult.ERROR,
            started=started,
            error=str(exc),
        )
        _failed(
            push,
            error=str(exc),
            retry_after=exc.retry_after if isinstance(exc, PlatformRateLimited) else None,
            final=not retryable,
        )
        return "failed"
    _record(
        push,
        shop,
        call=call,
        result=TrackingAttemptResult.ALREADY
        if result.already_shipped
        else TrackingAttemptResult.SENT,
        started=started,
    )
    _accepted(push, package_id=result.platform_package_id)
    return "sent"


def tracking_push_shop(*, shop: Shop, limit: int = BATCH, connector=None) -> PushSummary:
    """Send the shop's due tracking write-backs; call outside any transaction."""
    if transaction.get_connection().in_atomic_block:
        raise RuntimeError("tracking_push_shop calls the platform: run it outside a transaction")
    summary = PushSummary(shops=[shop.pk])
    with tenant_context(shop.tenant):
        if _paused(shop):
            # Nothing is called: due rows join those already waiting for the release.
            _hold(_claim(shop=shop, limit=limit))
            summary.blocked += _waiting(shop)
            return summary
        rows = _claim(shop=shop, limit=limit)
        if not rows:
            return summary
        own = connector is None
        if own:
            from shops.platforms import connector_for

            try:
                # The outbox decides about retries (after checking the platform): no blind
                # re-POST from the HTTP layer.
                connector = connector_for(shop, max_retries=0)
            except (ValueError, ShopCredentials.DoesNotExist) as exc:
                for push in rows:
                    _failed(push, error=f"shop not connected: {exc}", retry_after=None, final=False)
                summary.failed += len(rows)
                return summary
        try:
            rows = list(
                TrackingPush.objects.filter(pk__in=[row.pk for row in rows])
                .select_related("shipment__order", "shipment__carrier", "shop")
                .order_by("due_at", "pk")
            )
            for index, push in enumerate(rows):
                outcome = _send_one(connector, push, shop)
                if outcome == "sent":
                    summary.sent += 1
                elif outcome == "rejected":
                    summary.failed += 1
                    # Never the next number: the shop is stopped until a person looks.
                    summary.blocked += _hold(rows[index + 1 :])
                    break
                else:
                    summary.failed += 1
        finally:
            if own:
                connector.http.close()
    return summary


def tracking_push_due(*, shop_id: int | None = None, tenant=None) -> PushSummary:
    """Send every shop's due write-backs (or one shop's): `push_tracking` and the schedule."""
    with all_tenants():  # ESCAPE HATCH: the sender serves every tenant's shops
        shops = Shop.objects.filter(is_active=True, tenant__is_active=True).exclude(
            platform=Platform.MANUAL
        )
        if tenant is not None:
            shops = shops.filter(tenant=tenant)
        if shop_id is not None:
            shops = shops.filter(pk=shop_id)
        due = set(
            TrackingPush.objects.filter(
                Q(state__in=SENDABLE, due_at__lte=timezone.now())
                | Q(state=TrackingPushState.SENDING, lease_until__lt=timezone.now())
                # A stopped shop's waiting rows are reported (blocked) on every run.
                | Q(state=TrackingPushState.BLOCKED)
            ).values_list("shop_id", flat=True)
        )
        shops = list(shops.filter(pk__in=due).select_related("tenant").order_by("pk"))
    total = PushSummary()
    for shop in shops:
        try:
            total.add(tracking_push_shop(shop=shop))
        except Exception:
            logger.exception("tracking push of shop %s failed", shop.pk)
    return total


def tracking_writeback_release(*, shop: Shop) -> int:
    """A person checked the rejected number: the shop's write-back runs again. The rejected
    parcel itself waits for a corrected number; the rows held behind it are due now. Returns
    how many rows were released."""
    now = timezone.now()
    with tenant_context(shop.tenant), transaction.atomic():
        Shop.objects.filter(pk=shop.pk).update(tracking_paused_at=None, tracking_pause_reason="")
        released = TrackingPush.objects.filter(shop=shop, state=TrackingPushState.BLOCKED).update(
            state=TrackingPushState.PENDING, due_at=now, updated_at=now
        )
        alert_resolve(tenant=shop.tenant, key=f"tracking.paused.{shop.pk}")
        if released:
            transaction.on_commit(
                lambda: tracking_push_enqueue(tenant_id=shop.tenant_id, shop_id=shop.pk)
            )
    return released
