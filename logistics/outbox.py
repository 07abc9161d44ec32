"""The tracking outbox: telling each order's platform the tracking numbers tkerp accepted.

`logistics.tracking` queues a `TrackingPush` per parcel; `tracking_push_shop` sends a shop's due
ones outside any transaction, one connector (one token, the platform's rate limiter) per run:
batched where the platform has a batch ship call and already holds the parcel's package
(`Connector.ship_batch`, TikTok's Batch Ship Packages; each package answered on its own), else
through `ship` (first number) or `update_tracking` (a changed number; where the platform has no
such call, `Connector.tracking_update_by_hand` says what the seller must do and an alert says
it). Every parcel's call is recorded as a `TrackingPushAttempt` (number, result, latency; a
batch's latency is shared out). docs/tracking-writeback.md has the per-platform details.

Retry-safe: a row is claimed (under the run's lease token) and its attempt counted in a
committed transaction before the call, and the HTTP client does not retry on its own
(`max_retries=0`), so a row sent again (the worker died after posting, an answer was lost) is
first checked against what the platform holds (`Connector.shipped_tracking_numbers`, for a
batch `shipped_tracking_numbers_many`: one call): a platform that already has the number counts
as sent and nothing is posted twice (the package it went into is read back with it, which a
later update of the number needs). Failures that may pass (throttled, outage, expired token)
retry with exponential backoff; a request the platform refuses for another reason waits for a
person. A run slower than its lease loses its rows to the next run: before each call it renews
the claim and leaves a row that is no longer its own, and every outcome is written only while
its token is on the row, so a run that outlived its lease neither posts again nor writes over
what the run that took over recorded.

Three-strike guard: three invalid tracking numbers in a row freeze a shop's shipping on the
platform for 24 h, so at the platform's first "invalid tracking number" the shop's write-back
stops at once (`Shop.tracking_paused_at`), an alert is raised, and nothing more is sent for the
shop until a person releases it (`tracking_writeback_release`, the shop admin's action).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import transaction
from django.db.models import Case, F, Q, When
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
    PlatformRequestError,
    PlatformUnavailable,
    ShipRequest,
)
from tkerp.alerts import alert_raise, alert_resolve, alert_resolve_many
from tkerp.models import Alert, AlertSeverity
from tkerp.outbound import scrub_reason
from tkerp.tenancy import all_tenants, tenant_context

logger = logging.getLogger("tkerp.tracking")

#: Rows one run takes per shop (the rest wait for the next run, a minute later).
BATCH = 200
#: How long a claimed row stays with its worker before another run may take it over.
LEASE = timedelta(minutes=5)
#: Tries after which a push failing for now (throttled, outage, token) raises its shop's
#: alert; it keeps retrying, at most `BACKOFF_MAX` apart, as the platform still needs it.
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
    delay = min(BACKOFF_BASE * (2 ** min(max(0, attempts - 1), 16)), BACKOFF_MAX)
    if retry_after:
        delay = max(delay, timedelta(seconds=retry_after))
    return delay


def tracking_pushes_withdraw(*, shipment_ids) -> None:
    """Numbers of these parcels that the platform was never told must not go out: their label
    was voided, or the parcel was cancelled (its label goes back for a refund, and a cancelled
    order told it shipped would tell the buyer so). A row being sent right now is left to its
    run, which records it if the platform took it and drops it if not. Call in the transaction
    that voids or cancels."""
    unsent = TrackingPush.objects.filter(shipment_id__in=list(shipment_ids), sent_number="")
    unsent.filter(state=TrackingPushState.SENDING).update(number="")
    unsent.exclude(state=TrackingPushState.SENDING).delete()


def _claim(*, shop: Shop, limit: int) -> list[TrackingPush]:
    """Take the shop's due rows: state to `sending` under a lease and this run's token, attempts
    counted, committed before any call is made. Rows of parcels cancelled by a door that did not
    withdraw them (a person editing the parcel) are withdrawn here, never sent."""
    now = timezone.now()
    token = secrets.token_hex(16)
    with transaction.atomic():
        tracking_pushes_withdraw(
            # Only rows a claim could take (the due index), not every row the shop ever sent.
            shipment_ids=TrackingPush.objects.filter(
                shop=shop,
                state__in=(*SENDABLE, TrackingPushState.SENDING),
                sent_number="",
                shipment__status=ShipmentStatus.CANCELLED,
            ).values_list("shipment_id", flat=True)
        )
        rows = list(
            TrackingPush.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(
                Q(state__in=SENDABLE, due_at__lte=now)
                | Q(state=TrackingPushState.SENDING, lease_until__lt=now),
                shop=shop,
            )
            .exclude(number="")  # a label voided while its number was being sent
            .order_by("due_at", "pk")[:limit]
        )
        if rows:
            # One statement for the whole claim, the attempt counted on every row.
            TrackingPush.objects.filter(pk__in=[row.pk for row in rows]).update(
                state=TrackingPushState.SENDING,
                lease_until=now + LEASE,
                lease_token=token,
                attempts=F("attempts") + 1,
            )
            for row in rows:
                row.state, row.lease_until, row.lease_token = (
                    TrackingPushState.SENDING,
                    now + LEASE,
                    token,
                )
                row.attempts += 1
    return rows


def _claimed(rows: list[TrackingPush]):
    """The rows, those still claimed by this run (its token on them, still being sent)."""
    return TrackingPush.objects.filter(
        pk__in=[row.pk for row in rows],
        state=TrackingPushState.SENDING,
        lease_token__in={row.lease_token for row in rows},
    )


def _renew(pushes: list[TrackingPush]) -> list[TrackingPush]:
    """Before a call: those of `pushes` still this run's claim, their leases renewed (one
    read and one write for a whole batch). A run that outlived its lease lost a row to the run
    that took it over, which sends it: left out, nothing is called for it; so is a row whose
    number changed since the claim (it goes out with the new number, due again now). The
    attempts and the number the platform has are read from the rows (the re-check before
    posting is decided from them, not from the claim's copy)."""
    if not pushes:
        return []
    by_pk = {push.pk: push for push in pushes}
    kept: set[int] = set()
    with transaction.atomic():
        rows = (
            _claimed(pushes)
            .select_for_update()
            .order_by("pk")
            .values("pk", "attempts", "sent_number", "number", "carrier_code", "sending_number")
        )
        for row in rows:
            push = by_pk[row["pk"]]
            if (row["number"], row["carrier_code"]) != (push.number, push.carrier_code):
                _renumbered(push, number=row["number"], sent=False)
                continue
            push.attempts, push.sent_number = row["attempts"], row["sent_number"]
            push.sending_number = row["sending_number"]
            kept.add(push.pk)
        if kept:
            # The number about to be called for is written down first, unless the row still
            # holds one a dead run may have posted (`_maybe_posted`, settled before any call).
            TrackingPush.objects.filter(pk__in=kept).update(
                lease_until=timezone.now() + LEASE,
                sending_number=Case(
                    When(
                        Q(sending_number="")
                        | Q(sending_number=F("number"))
                        | Q(sending_number=F("sent_number")),
                        then=F("number"),
                    ),
                    default=F("sending_number"),
                ),
            )
    return [push for push in pushes if push.pk in kept]


def _maybe_posted(push: TrackingPush) -> str:
    """A number of the row that a run which died may have posted before a person corrected
    it (neither the number to send nor the one the platform is known to hold); "" if none."""
    old = push.sending_number
    return old if old not in ("", push.number, push.sent_number) else ""


def _maybe_posted_settle(connector, push: TrackingPush, request: ShipRequest) -> str:
    """Before sending a corrected number: ask the platform whether it holds the number a dead
    run was sending when the correction came. If it does, that is the number it holds (with its
    package), and the correction goes out as an update, never as a second shipment; if not,
    the correction is the parcel's first. Returns "" when the row goes on, "failed" (retried
    later) when the platform cannot answer now, "skipped" when the row is no longer this run's.
    """
    old = _maybe_posted(push)
    order_id = request.platform_order_id
    try:
        held = connector.shipped_tracking_numbers(platform_order_id=order_id)
    except PlatformError as exc:
        _failed(
            push,
            error=f"could not check whether the platform kept {old}: {exc}",
            retry_after=exc.retry_after if isinstance(exc, PlatformRateLimited) else None,
            final=False,
        )
        return "failed"
    took = held is not None and old in held
    package = _package_of(connector, order_id, request.platform_package_id, old) if took else ""
    with transaction.atomic():
        if not _claimed([push]).select_for_update().exists():
            return "skipped"
        changes = {"sending_number": push.number}
        if took:
            changes.update(sent_number=old, sent_at=timezone.now())
        TrackingPush.objects.filter(pk=push.pk).update(**changes)
        if package and not push.shipment.platform_package_id:
            Shipment.objects.filter(pk=push.shipment_id, platform_package_id="").update(
                platform_package_id=package
            )
            push.shipment.platform_package_id = package
    if took:
        push.sent_number = old
    push.sending_number = push.number
    return ""


def _settle(push: TrackingPush, *, sent: bool = False, **outcome) -> bool:
    """Write a call's outcome on the row if it is still this run's claim, and end the claim.
    False (the outcome not written) when another run took the row over meanwhile, or when the
    parcel's number changed during the call (`tracking_push_queue` leaves a row being sent with
    its run): then only what the platform took is recorded (`sent`) and the new number is due."""
    with transaction.atomic():
        row = _claimed([push]).select_for_update().values("number", "carrier_code").first()
        if row is None:
            return False
        if (row["number"], row["carrier_code"]) != (push.number, push.carrier_code):
            _renumbered(push, number=row["number"], sent=sent)
            return False
        TrackingPush.objects.filter(pk=push.pk).update(
            **outcome, lease_until=None, lease_token="", updated_at=timezone.now()
        )
    return True


def _renumbered(push: TrackingPush, *, number: str, sent: bool) -> None:
    """End this run's claim of a row whose number changed under it to `number`. The number this
    run sent, if the platform took it (`sent`), is recorded as the one it holds, so the new one
    goes out next as an update; the row is due now. A row whose label was voided meanwhile
    (`number` blank, `shipment_label_void`) keeps the number the platform took, else it goes.
    Call under the row's lock."""
    now = timezone.now()
    took = {"sent_number": push.number, "sent_at": now} if sent else {}
    if not number:
        if not sent:
            TrackingPush.objects.filter(pk=push.pk).delete()
            return
        TrackingPush.objects.filter(pk=push.pk).update(
            **took,
            state=TrackingPushState.SENT,
            due_at=None,
            lease_until=None,
            lease_token="",
            last_error="",
            updated_at=now,
        )
        return
    TrackingPush.objects.filter(pk=push.pk).update(
        **took,
        state=TrackingPushState.PENDING,
        due_at=now,
        attempts=0,
        lease_until=None,
        lease_token="",
        last_error="",
        updated_at=now,
    )
    transaction.on_commit(
        lambda: tracking_push_enqueue(tenant_id=push.tenant_id, shop_id=push.shop_id)
    )


def _paused(shop: Shop) -> bool:
    return Shop.objects.filter(pk=shop.pk, tracking_paused_at__isnull=False).exists()


def _hold(rows: list[TrackingPush]) -> int:
    """The shop's write-back is stopped: these rows wait, unsent and not due, for the release."""
    if not rows:
        return 0
    return _claimed(rows).update(
        state=TrackingPushState.BLOCKED,
        due_at=None,
        lease_until=None,
        lease_token="",
        updated_at=timezone.now(),
    )


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
    # A changed number on Amazon re-sends the package's confirmation, items and all.
    update = bool(push.sent_number) and push.sent_number != push.number
    if parcel_lines and (live_parcels > 1 or platform == Platform.TIKTOK or update):
        for line in parcel_lines:
            ol = line.order_line
            if platform == Platform.TIKTOK:
                # TikTok's line items are one unit each; an order line groups them.
                line_ids.extend(ol.platform_line_ids or [ol.platform_line_id])
            else:
                line_ids.append(ol.platform_line_id)
                if platform != Platform.AMAZON or update:
                    # Amazon works out what is left to ship itself (that keeps a retry from
                    # confirming twice); the others want this parcel's units.
                    quantities[ol.platform_line_id] = (
                        quantities.get(ol.platform_line_id, 0) + line.quantity
                    )
    carrier = shipment.carrier
    provider_ids = carrier.platform_provider_ids if carrier is not None else {}
    if not isinstance(provider_ids, dict):
        provider_ids = {}  # a shape saved before it was validated: the platform names none
    package_id = shipment.platform_package_id
    if not package_id and platform == Platform.TIKTOK:
        package_id = tiktok_package_filled(order_raw=order.raw, line_ids=line_ids)
    return ShipRequest(
        platform_order_id=order.platform_order_id,
        tracking_number=push.number,
        carrier_code=push.carrier_code,
        platform_provider_id=str(provider_ids.get(platform, "")),
        platform_line_ids=line_ids,
        line_quantities=quantities,
        shipped_at=shipment.shipped_at or shipment.labelled_at,
        platform_package_id=package_id,
    )


def tiktok_package_filled(*, order_raw, line_ids: list[str]) -> str:
    """The TikTok package this parcel fills, as the synced order shows it: every line item of
    the parcel sits in that one package and every live item of the package is in the parcel.
    Then the package exists and ships as it is (one of a batch); otherwise (a parcel that
    splits a package) "" and "mark shipped" makes a package for the parcel's items."""
    raw = order_raw if isinstance(order_raw, dict) else {}
    items = [item for item in raw.get("line_items") or [] if isinstance(item, dict)]
    wanted = set(line_ids)
    if not wanted:
        return ""
    holding = {str(item.get("package_id") or "") for item in items if item.get("id") in wanted}
    if len(holding) != 1 or "" in holding:
        return ""
    package_id = holding.pop()
    known = {item.get("id") for item in items}
    live = {
        item.get("id")
        for item in items
        if str(item.get("package_id") or "") == package_id
        and item.get("display_status") != "CANCELLED"
        and item.get("package_status") != "CANCELLED"
    }
    return package_id if wanted <= known and live <= wanted else ""


def _record(push, shop, *, call, result, started, error="", latency_ms=None) -> None:
    if latency_ms is None:
        latency_ms = max(0, int((time.monotonic() - started) * 1000))
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
        latency_ms=latency_ms,
    )


def _accepted(push: TrackingPush, *, package_id: str = "") -> None:
    now = timezone.now()
    settled = _settle(
        push,
        sent=True,
        state=TrackingPushState.SENT,
        sent_number=push.number,
        sent_at=now,
        due_at=None,
        last_error="",
    )
    if package_id:
        Shipment.objects.filter(pk=push.shipment_id, platform_package_id="").update(
            platform_package_id=package_id
        )
    if settled:
        order_tracking_uploaded_mark(order_id=push.shipment.order_id, now=now)
        # The platform has the number: what an earlier failure of the row said is over.
        alert_resolve_many(
            alerts=Alert.objects.filter(
                key__in=(
                    f"tracking.failed.{push.pk}",
                    f"tracking.by_hand.{push.pk}",
                    f"tracking.retrying.{push.shop_id}",
                )
            )
        )


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
    """Record a failed call: refused (`final`) waits for a person, with the parcel's alert;
    failing for now is retried with backoff, however long it takes (an outage ends, and the
    platform still needs the number), and past `MAX_ATTEMPTS` one alert of the shop says so,
    not one per parcel of a spike."""
    now = timezone.now()
    settled = _settle(
        push,
        state=TrackingPushState.FAILED if final else TrackingPushState.RETRYING,
        due_at=None if final else now + _backoff(push.attempts, retry_after),
        last_error=scrub_reason(error)[:500],
    )
    if settled and not final and push.attempts >= MAX_ATTEMPTS:
        shop = Shop.objects.select_related("tenant").get(pk=push.shop_id)
        alert_raise(
            tenant=shop.tenant,
            key=f"tracking.retrying.{shop.pk}",
            kind="tracking_push_retrying",
            title=f"Tracking write-back to {shop.name} keeps failing",
            message=f"{scrub_reason(error)[:300]}. tkerp keeps retrying each waiting number (at "
            "most an hour apart); this alert closes once the platform takes one again.",
            shop=shop,
        )
    if final and settled:
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


def _by_hand(push: TrackingPush, shop: Shop, *, how: str, order: str) -> None:
    """The platform has no call that changes a number it already holds: nothing is sent; the
    row waits (failed) and the seller is told, in the alert and on the parcel, what to do."""
    what = (
        f"{shop.get_platform_display()} cannot change tracking number {push.sent_number} "
        f"through its API"
    )
    if not _settle(
        push,
        state=TrackingPushState.FAILED,
        due_at=None,
        last_error=f"{what}: change it to {push.number} by hand on the platform."[:500],
    ):
        return
    shipment = push.shipment
    alert_raise(
        tenant=shipment.tenant,
        key=f"tracking.by_hand.{push.pk}",
        kind="tracking_update_by_hand",
        title=f"Change the tracking of parcel {shipment.reference} on "
        f"{shop.get_platform_display()} by hand",
        message=f"{what}. "
        + how.format(order=order, old=push.sent_number, new=push.number, carrier=push.carrier_code)
        + " Then run the parcel list's action “Mark tracking given to the platform by hand” on"
        " it: that closes this alert.",
        shop=shop,
    )


def _reject(push: TrackingPush, shop: Shop, *, error: str) -> None:
    """The platform called the number invalid: stop the shop's write-back now, and say so (the
    platform counted it whatever became of the row meanwhile)."""
    now = timezone.now()
    reason = (
        f"{shop.get_platform_display()} rejected tracking number {push.number} of parcel "
        f"{push.shipment.reference} as invalid"
    )
    _settle(
        push,
        state=TrackingPushState.REJECTED,
        due_at=None,
        last_error=scrub_reason(error)[:500],
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


def _send_one(connector, push: TrackingPush, shop: Shop, request: ShipRequest | None = None) -> str:
    """One row: check first when an earlier attempt may have landed, then ship or update.
    Returns sent, failed, rejected, or skipped (the row is no longer this run's)."""
    if not _renew([push]):
        return "skipped"
    if _maybe_posted(push):
        if outcome := _maybe_posted_settle(connector, push, request or _request(push, shop)):
            return outcome
        request = None  # the platform may hold the old number: an update, with its package
    request = request or _request(push, shop)
    update = bool(push.sent_number) and push.sent_number != push.number
    if update and connector.tracking_update_by_hand:
        _by_hand(push, shop, how=connector.tracking_update_by_hand, order=request.platform_order_id)
        return "failed"
    started = time.monotonic()
    if push.attempts > 1 or push.sent_number == push.number:
        try:
            held = connector.shipped_tracking_numbers(platform_order_id=request.platform_order_id)
        except PlatformError as exc:
            held = None
            logger.info("tracking check of %s failed: %s", push.number, exc)
        if held is not None and push.number in held:
            _record(push, shop, call="check", result=TrackingAttemptResult.ALREADY, started=started)
            package = _package_of(
                connector, request.platform_order_id, request.platform_package_id, push.number
            )
            _accepted(push, package_id=package)
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


def _package_of(connector, order_id: str, known: str, number: str) -> str:
    """The package a number the platform already holds went into, when the parcel does not
    know it yet (`known` blank: the run that posted the number died before storing it); a later
    update of the number needs it (Shopify's fulfillment id). "" when the platform cannot say
    now."""
    if known:
        return known
    try:
        return connector.shipped_package_id(platform_order_id=order_id, tracking_number=number)
    except PlatformError as exc:
        logger.info("package lookup of order %s failed: %s", order_id, exc)
        return ""


def _share(started: float, count: int) -> int:
    """Each parcel's part of one call's latency, in milliseconds."""
    return max(0, int((time.monotonic() - started) * 1000 / max(1, count)))


def _held_numbers(connector, order_ids: list[str]) -> dict[str, set[str] | None]:
    """What the platform holds for these orders (one call where it can); {} when it cannot
    answer now."""
    try:
        return connector.shipped_tracking_numbers_many(platform_order_ids=order_ids)
    except PlatformError as exc:
        logger.info("tracking check of %s orders failed: %s", len(order_ids), exc)
        return {}


def _send_batch(connector, pushes: list[TrackingPush], requests: dict, shop: Shop, summary) -> bool:
    """Up to `connector.ship_batch_size()` rows in one batch ship call, each answered on its
    own: shipped, already there, rejected (the three-strike guard), failing for now (retried
    with backoff) or refused. One attempt per parcel, each with its share of the call's
    latency. Rows an earlier attempt may have posted are checked first (one order-detail call)
    and never posted again when the platform has their number; rows no longer this run's are
    left alone. True when a number was rejected: the caller holds everything not sent yet."""
    pushes = _renew(pushes)
    if not pushes:
        return False
    started = time.monotonic()
    recheck = [push for push in pushes if push.attempts > 1 or push.sent_number == push.number]
    if recheck:
        held = _held_numbers(connector, [requests[push.pk].platform_order_id for push in recheck])
        landed = {
            push.pk
            for push in recheck
            if push.number in (held.get(requests[push.pk].platform_order_id) or set())
        }
        share = _share(started, len(recheck))
        for push in recheck:
            if push.pk in landed:
                _record(
                    push,
                    shop,
                    call="check",
                    result=TrackingAttemptResult.ALREADY,
                    started=started,
                    latency_ms=share,
                )
                _accepted(push, package_id=requests[push.pk].platform_package_id)
                summary.sent += 1
        pushes = [push for push in pushes if push.pk not in landed]
        if not pushes:
            return False
    started = time.monotonic()
    try:
        outcomes = connector.ship_batch(requests=[requests[push.pk] for push in pushes])
    except PlatformError as exc:
        share = _share(started, len(pushes))
        retryable = exc.retryable or isinstance(exc, PlatformAuthError)
        for push in pushes:
            _record(
                push,
                shop,
                call="batch_ship",
                result=TrackingAttemptResult.FAILED if retryable else TrackingAttemptResult.ERROR,
                started=started,
                error=str(exc),
                latency_ms=share,
            )
            _failed(
                push,
                error=str(exc),
                retry_after=exc.retry_after if isinstance(exc, PlatformRateLimited) else None,
                final=not retryable,
            )
        summary.failed += len(pushes)
        return False
    share = _share(started, len(pushes))
    shipped_before = [
        outcome.request.platform_order_id
        for outcome in outcomes
        if outcome.result is not None and outcome.result.already_shipped
    ]
    held = _held_numbers(connector, shipped_before) if shipped_before else {}
    rejected = False
    # Acceptances are recorded before refusals: a rejection in the batch is then the shop's last
    # verdict, and the run after the release starts with a single number (`_plan`).
    answered = sorted(
        zip(pushes, outcomes, strict=True),
        key=lambda pair: 2 if pair[1].error else int(pair[1].result.already_shipped),
    )
    for push, outcome in answered:
        record = {"call": "batch_ship", "started": started, "latency_ms": share}
        error = outcome.error
        if error is None and not outcome.result.already_shipped:
            _record(push, shop, result=TrackingAttemptResult.SENT, **record)
            _accepted(push, package_id=outcome.result.platform_package_id)
            summary.sent += 1
            continue
        if error is None:
            # The package had shipped before this call: ours if the platform holds our number.
            numbers = held.get(outcome.request.platform_order_id)
            if numbers is not None and push.number in numbers:
                _record(push, shop, result=TrackingAttemptResult.ALREADY, **record)
                _accepted(push, package_id=outcome.result.platform_package_id)
                summary.sent += 1
                continue
            package = outcome.request.platform_package_id
            if numbers is None:
                error = PlatformUnavailable(
                    f"package {package} had shipped already; which number it carries could "
                    "not be read, asked again later",
                    platform=shop.platform,
                )
            else:
                error = PlatformRequestError(
                    f"package {package} had already shipped with another tracking number "
                    "(marked on the platform by hand?): check the parcel there",
                    platform=shop.platform,
                )
        if connector.tracking_rejected(error):
            _record(push, shop, result=TrackingAttemptResult.REJECTED, error=str(error), **record)
            _reject(push, shop, error=str(error))
            rejected = True
        else:
            retryable = error.retryable or isinstance(error, PlatformAuthError)
            _record(
                push,
                shop,
                result=TrackingAttemptResult.FAILED if retryable else TrackingAttemptResult.ERROR,
                error=str(error),
                **record,
            )
            _failed(
                push,
                error=str(error),
                retry_after=error.retry_after if isinstance(error, PlatformRateLimited) else None,
                final=not retryable,
            )
        summary.failed += 1
    return rejected


def _last_verdict_rejected(shop: Shop) -> bool:
    """Whether the platform's last word on a number of this shop was a rejection (the shop was
    released after one since)."""
    last = (
        TrackingPushAttempt.objects.filter(
            shop=shop,
            result__in=(
                TrackingAttemptResult.SENT,
                TrackingAttemptResult.ALREADY,
                TrackingAttemptResult.REJECTED,
            ),
        )
        .order_by("-created_at", "-id")
        .values_list("result", flat=True)
        .first()
    )
    return last == TrackingAttemptResult.REJECTED


def _plan(connector, rows: list[TrackingPush], requests: dict, shop: Shop) -> list[list]:
    """The calls a run makes, in order: each a list of rows, batch ship calls for the rows the
    platform can batch (`ship_batchable`; never a changed number, which has its own update
    call), then one call per remaining row.

    Right after a rejection (a person released the shop), one number goes alone first: a batch
    could carry two more numbers the carrier does not know before the platform has accepted
    one, and tkerp must never be the one to send the third in a row."""
    size = connector.ship_batch_size()
    batched, single = [], []
    for push in rows:
        update = bool(push.sent_number) and push.sent_number != push.number
        # A row whose old number may be on the platform already is checked on its own first.
        if (
            size
            and not update
            and not _maybe_posted(push)
            and connector.ship_batchable(requests[push.pk])
        ):
            batched.append(push)
        else:
            single.append(push)
    plan: list[list] = []
    if batched and _last_verdict_rejected(shop):
        plan.append(["one", batched.pop(0)])
    plan += [["batch", *batched[i : i + size]] for i in range(0, len(batched), size or 1)]
    plan += [["one", push] for push in single]
    return plan


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
        orphans = _voided_mid_send(shop)
        rows = _claim(shop=shop, limit=limit)
        if not rows and not orphans:
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
            if orphans:
                _voided_mid_send_settle(connector, orphans)
            rows = list(
                _claimed(rows)
                .select_related("shipment__order", "shipment__carrier", "shop")
                .order_by("due_at", "pk")
            )
            requests = {push.pk: _request(push, shop) for push in rows}
            plan = _plan(connector, rows, requests, shop)
            for index, (kind, *pushes) in enumerate(plan):
                if kind == "batch":
                    rejected = _send_batch(connector, pushes, requests, shop, summary)
                else:
                    outcome = _send_one(connector, pushes[0], shop, requests[pushes[0].pk])
                    rejected = outcome == "rejected"
                    if outcome == "sent":
                        summary.sent += 1
                    elif outcome != "skipped":
                        summary.failed += 1
                if rejected:
                    # Never the next number: the shop is stopped until a person looks.
                    waiting = [push for _, *later in plan[index + 1 :] for push in later]
                    summary.blocked += _hold(waiting)
                    break
        finally:
            if own:
                connector.http.close()
    return summary


def _voided_mid_send(shop: Shop) -> list[TrackingPush]:
    """The shop's rows left being sent with a blank number whose lease is over: their label was
    voided while a run was sending its number (`shipment_label_void` blanks it), and that run
    died before it could say whether the platform took the number (`_renumbered` says so when
    the run lives). Never claimed: there is nothing to send."""
    return list(
        TrackingPush.objects.filter(
            shop=shop,
            state=TrackingPushState.SENDING,
            number="",
            lease_until__lt=timezone.now(),
        )
        .select_related("shipment__order")
        .order_by("pk")
    )


def _voided_mid_send_settle(connector, rows: list[TrackingPush]) -> None:
    """Settle `_voided_mid_send` rows from what the platform holds for their orders, less the
    numbers the orders' other parcels gave it: nothing (the number never landed) drops the row;
    one number is recorded as the one it holds, with its package where the parcel has none yet,
    so the parcel's next number goes out as an update of it; several, or a platform that never
    says (Amazon), are left for a person (failed, saying so). A platform that cannot answer now
    is asked again on the next run."""
    order_ids = {row.pk: row.shipment.order.platform_order_id for row in rows}
    held = _held_numbers(connector, sorted(set(order_ids.values())))
    others: dict[int, set[str]] = defaultdict(set)
    for order_id, number in (
        TrackingPush.objects.filter(shipment__order_id__in={row.shipment.order_id for row in rows})
        .exclude(pk__in=[row.pk for row in rows])
        .exclude(sent_number="")
        .values_list("shipment__order_id", "sent_number")
    ):
        others[order_id].add(number)
    for row in rows:
        order_id = order_ids[row.pk]
        if order_id not in held:
            continue  # the check call failed: asked again next run
        numbers = held[order_id]
        theirs = None if numbers is None else set(numbers) - others[row.shipment.order_id]
        package = ""
        if theirs and len(theirs) == 1 and not row.shipment.platform_package_id:
            package = _package_of(connector, order_id, "", next(iter(theirs)))
        now = timezone.now()
        with transaction.atomic():
            locked = TrackingPush.objects.select_for_update().filter(
                pk=row.pk, state=TrackingPushState.SENDING, number="", lease_until__lt=now
            )
            if not locked.exists():
                continue  # a new number arrived meanwhile: it goes out as usual
            ended = {"due_at": None, "lease_until": None, "lease_token": "", "updated_at": now}
            if theirs is not None and not theirs:
                locked.delete()
            elif theirs is not None and len(theirs) == 1:
                (number,) = theirs
                locked.update(
                    **ended,
                    sent_number=number,
                    sent_at=now,
                    state=TrackingPushState.SENT,
                    last_error="",
                )
                if package:
                    Shipment.objects.filter(pk=row.shipment_id, platform_package_id="").update(
                        platform_package_id=package
                    )
            else:
                held_words = (
                    "the platform cannot say which numbers it holds"
                    if theirs is None
                    else f"the platform now holds {len(theirs)} numbers for the order that no "
                    "other parcel gave it"
                )
                locked.update(
                    **ended,
                    state=TrackingPushState.FAILED,
                    last_error=(
                        "The label was voided while its number was being sent, and "
                        f"{held_words}: check on the platform whether it kept the voided "
                        "number before sending this parcel's next one."
                    ),
                )


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


def tracking_pushes_done_by_hand(*, shipments) -> int:
    """A person gave the platform the parcels' numbers by hand (a platform with no API call
    that changes a number it holds, or a number a person keyed in on the platform): their
    write-back rows that failed or wait count as sent with the number they hold now, and the
    "by hand" alerts are resolved. Rows being sent, or held behind a paused shop, are left.
    Returns how many rows changed. Call with the tenant in scope."""
    now = timezone.now()
    with transaction.atomic():
        pushes = list(
            TrackingPush.objects.select_for_update()
            .filter(
                shipment__in=shipments,
                state__in=[
                    TrackingPushState.FAILED,
                    TrackingPushState.PENDING,
                    TrackingPushState.RETRYING,
                ],
            )
            .select_related("shipment__tenant")
        )
        for push in pushes:
            push.state, push.sent_number, push.sent_at = TrackingPushState.SENT, push.number, now
            push.due_at = push.lease_until = None
            push.last_error = ""
            alert_resolve(tenant=push.shipment.tenant, key=f"tracking.by_hand.{push.pk}")
            alert_resolve(tenant=push.shipment.tenant, key=f"tracking.failed.{push.pk}")
        TrackingPush.objects.bulk_update(
            pushes,
            [
                "state",
                "sent_number",
                "sent_at",
                "due_at",
                "lease_until",
                "last_error",
                "updated_at",
            ],
        )
        # The platform has these numbers now: their orders' tracking clocks stop as if sent.
        for order_id in sorted({push.shipment.order_id for push in pushes}):
            order_tracking_uploaded_mark(order_id=order_id, now=now)
    return len(pushes)


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
