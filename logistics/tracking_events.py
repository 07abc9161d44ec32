"""Parcels followed until delivered: poll each parcel's tracking source, store its events once,
move the parcel (and its order) on, and mark what is wrong.

Sources, in order of preference for a parcel:
- the seller's label-service account (EasyPost-shaped Trackers: `tracking_details` with a
  status per event): the account that sold the label, else an active account covering the
  parcel's carrier (a label service tracks numbers it did not sell too);
- TikTok Shop's order tracking (`GET .../orders/{id}/tracking`: descriptions and times only,
  read into statuses by `tiktok_status`), for a TikTok order with this one parcel tracked.
A parcel with neither is not polled, and not judged.

`tracking_poll` (the django-q2 schedule `logistics.tasks.poll_tracking`, and `manage.py
poll_tracking`) takes a tenant's parcels on their way that were not polled for
`TKERP_TRACKING_POLL_MINUTES`, least recently polled first, at most `TKERP_TRACKING_POLL_BATCH`
a run, each source under its own rate limit. No transaction is open while a source is asked.
Events are keyed by source, time and words (`TrackingEvent.event_key`), so a second poll, a
retried task or two workers store each event once.

`tracking_exceptions_mark` then sets `Shipment.tracking_exception` with conditional UPDATEs
and keeps one alert per kind open while any parcel has it:
- `no_scan`: labelled `TKERP_TRACKING_NO_SCAN_HOURS` ago and no carrier scan yet (TikTok counts
  the dispatch late until the first scan);
- `stalled`: scanned, but no new event for `TKERP_TRACKING_STALL_HOURS`;
- `delivery_failed`: the latest event is a failed delivery;
- `returned`: the parcel is going back to the sender.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import queue
import threading
from collections.abc import Hashable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connections, transaction
from django.db.models import Count, F, Max, Min, Q
from django.utils import timezone

from logistics.labels.base import LabelError, label_buy_threads
from logistics.models import (
    LabelAccount,
    Shipment,
    ShipmentStatus,
    TrackingEvent,
    TrackingException,
    TrackingStatus,
)
from orders.models import Order, OrderStatus
from shops.models import Platform, Shop, ShopCredentials
from shops.platforms.base import PlatformError
from tkerp.tenancy import tenant_context

logger = logging.getLogger("tkerp.tracking")

LABELAPI, TIKTOK = "labelapi", "tiktok"
# Parcels that may be on their way: labelled or handed over, not delivered, not cancelled.
ON_THE_WAY = (
    ShipmentStatus.LABELLED,
    ShipmentStatus.CONFIRMED,
    ShipmentStatus.SHIPPED,
    ShipmentStatus.IN_TRANSIT,
)
NOT_SCANNED = (TrackingStatus.UNKNOWN, TrackingStatus.PRE_TRANSIT)
TRACKING_ALERT_PREFIX = "tracking."
EXCEPTION_ALERT_TITLES = {
    TrackingException.NO_SCAN: "{n} parcel{s} labelled {hours} h ago with no carrier scan",
    TrackingException.STALLED: "{n} parcel{s} with no tracking news for {hours} h",
    TrackingException.DELIVERY_FAILED: "{n} parcel{s} whose delivery failed",
    TrackingException.RETURNED: "{n} parcel{s} returned to sender",
}


@dataclass(frozen=True, slots=True)
class ParsedEvent:
    """One event as tkerp keeps it, from any source."""

    key: str
    occurred_at: datetime
    status: str
    message: str
    location: str = ""


@dataclass
class TrackingPollResult:
    """What one poll did; `summary()` is the command's line."""

    parcels: int = 0
    events: int = 0
    delivered: int = 0
    failed: int = 0
    untracked: int = 0
    exceptions: dict[str, int] = field(default_factory=dict)

    def add(self, other: TrackingPollResult) -> None:
        self.parcels += other.parcels
        self.events += other.events
        self.delivered += other.delivered
        self.failed += other.failed
        self.untracked += other.untracked
        for kind, count in other.exceptions.items():
            self.exceptions[kind] = self.exceptions.get(kind, 0) + count

    def summary(self) -> str:
        return (
            f"tracking events: {self.parcels} parcels polled, {self.events} new events, "
            f"{self.delivered} delivered, {sum(self.exceptions.values())} exceptions, "
            f"{self.failed} failed"
        )


def _event_key(source: str, *parts: str) -> str:
    return hashlib.sha256("|".join((source, *parts)).encode()).hexdigest()


# --- reading the sources' answers -------------------------------------------------------------


def _parse_time(value) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def labelapi_events(tracker: dict) -> list[ParsedEvent]:
    """A label-service tracker's `tracking_details` as events (unreadable ones are skipped)."""
    events = []
    for detail in tracker.get("tracking_details") or []:
        if not isinstance(detail, dict):
            continue
        when = _parse_time(detail.get("datetime"))
        if when is None:
            continue
        status = str(detail.get("status") or "")
        if status not in TrackingStatus.values:
            status = TrackingStatus.UNKNOWN
        message = str(detail.get("message") or detail.get("description") or "")[:300]
        place = detail.get("tracking_location") or {}
        location = ""
        if isinstance(place, dict):
            city_state = ", ".join(str(place[k]) for k in ("city", "state") if place.get(k))
            location = " ".join(p for p in (city_state, str(place.get("zip") or "")) if p)[:120]
        events.append(
            ParsedEvent(
                key=_event_key(LABELAPI, detail.get("datetime"), status, message),
                occurred_at=when,
                status=status,
                message=message,
                location=location,
            )
        )
    return events


def tiktok_status(description: str) -> str:
    """TikTok relays the carrier's words without a status: read one from them."""
    text = description.lower()
    if "return" in text and "sender" in text:
        return TrackingStatus.RETURN_TO_SENDER
    if "fail" in text or "attempt" in text or "undeliverable" in text:
        return TrackingStatus.FAILURE
    if "out for delivery" in text:
        return TrackingStatus.OUT_FOR_DELIVERY
    if text.startswith("delivered") or " delivered" in text:
        return TrackingStatus.DELIVERED
    if "label created" in text or "awaiting" in text:
        return TrackingStatus.PRE_TRANSIT
    return TrackingStatus.IN_TRANSIT


def tiktok_events(tracking: list[dict]) -> list[ParsedEvent]:
    events = []
    for item in tracking:
        millis = item.get("update_time_millis")
        description = str(item.get("description") or "")[:300]
        try:
            when = datetime.fromtimestamp(int(millis) / 1000, tz=UTC)
        except (TypeError, ValueError, OverflowError):
            continue
        events.append(
            ParsedEvent(
                key=_event_key(TIKTOK, str(millis), description),
                occurred_at=when,
                status=tiktok_status(description),
                message=description,
            )
        )
    return events


# --- choosing and asking a source --------------------------------------------------------------


def _accounts(tenant_id: int) -> list[LabelAccount]:
    return list(
        LabelAccount._base_manager.filter(tenant_id=tenant_id, is_active=True).order_by(
            "name", "pk"
        )
    )


def tracking_source_key(
    shipment: Shipment, *, accounts: list[LabelAccount], tiktok_single: set[int]
) -> Hashable | None:
    """Which source tracks the parcel (see the module doc); None: nobody can."""
    by_pk = {account.pk: account for account in accounts}
    if shipment.label_account_id in by_pk:
        return (LABELAPI, shipment.label_account_id)
    if shipment.service_id is not None:
        code = shipment.service.carrier.code.lower()
        account = next((a for a in accounts if code in a.carrier_codes), None)
        if account is not None:
            return (LABELAPI, account.pk)
    if shipment.order.shop.platform == Platform.TIKTOK and shipment.order_id in tiktok_single:
        return (TIKTOK, shipment.order.shop_id)
    return None


class _Sources:
    """The sources of one poll, built once each, closed at the end."""

    def __init__(self):
        self.built: dict[Hashable, object] = {}

    def get(self, key: Hashable):
        if key not in self.built:
            if key[0] == LABELAPI:
                from logistics.labels.labelapi import LabelApiSource

                self.built[key] = LabelApiSource(account=LabelAccount._base_manager.get(pk=key[1]))
            else:
                from shops.platforms import connector_for

                # The poll's threads share the connector: each keeps its own HTTP connections.
                self.built[key] = connector_for(Shop._base_manager.get(pk=key[1]), per_thread=True)
        return self.built[key]

    def threads(self) -> int:
        """How many parcels to fetch at once: enough to keep every source busy at its own rate
        limit while each request waits out its round trip (each source's token bucket paces
        its calls), at most `TKERP_TRACKING_POLL_WORKERS`."""
        wanted = sum(label_buy_threads(source.http.bucket.limit) for source in self.built.values())
        return max(1, min(settings.TKERP_TRACKING_POLL_WORKERS, wanted))

    def close(self) -> None:
        for source in self.built.values():
            try:
                if hasattr(source, "close"):
                    source.close()
                else:
                    source.http.close()
            except Exception:  # closing must never hide the poll's result
                logger.exception("closing a tracking source failed")


def _fetch_all(plan: list[tuple[Shipment, Hashable]], sources: _Sources, *, tenant) -> list:
    """Every planned parcel's answer, in plan order: (events, tracker id), or the error that
    kept it from its source. The calls run in threads (`_Sources.threads`), nothing is stored
    here: the caller stores each answer on its own connection. Serial inside a transaction,
    which other threads' connections could not see (tests)."""
    answers: list = [None] * len(plan)

    def fetch(index: int) -> None:
        parcel, key = plan[index]
        try:
            answers[index] = _fetch(key, sources.get(key), parcel)
        except (LabelError, PlatformError, ShopCredentials.DoesNotExist) as exc:
            answers[index] = exc
        except Exception as exc:  # one parcel's surprise must not stop the others
            logger.exception("tracking fetch of parcel %s failed", parcel.pk)
            answers[index] = PlatformError(f"unexpected error ({type(exc).__name__})")

    # Sources are built here, on this thread (building one reads the database).
    for _parcel, key in plan:
        with contextlib.suppress(ShopCredentials.DoesNotExist):  # that parcel's answer, below
            sources.get(key)
    workers = min(len(plan), sources.threads())
    if workers <= 1 or transaction.get_connection().in_atomic_block:
        for index in range(len(plan)):
            fetch(index)
        return answers
    work: queue.SimpleQueue = queue.SimpleQueue()
    for index in range(len(plan)):
        work.put(index)

    def worker() -> None:
        try:
            with tenant_context(tenant):
                while True:
                    try:
                        index = work.get_nowait()
                    except queue.Empty:
                        return
                    fetch(index)
        finally:
            # A thread that touched the database (an in-process sandbox) gives its connection back.
            connections.close_all()

    threads = [threading.Thread(target=worker, name=f"tracking-{n}") for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def _fetch(source_key: Hashable, source, shipment: Shipment) -> tuple[list[ParsedEvent], str]:
    """The parcel's events from its source, and the source's tracker id (label service)."""
    if source_key[0] == LABELAPI:
        tracker = source.tracker(
            tracking_code=shipment.tracking_number,
            carrier_code=shipment.service.carrier.code if shipment.service_id else "",
            tracker_id=shipment.tracker_id,
        )
        return labelapi_events(tracker), str(tracker.get("id") or "")[:100]
    tracking = source.order_tracking(platform_order_id=shipment.order.platform_order_id)
    return tiktok_events(tracking), ""


# --- storing ---------------------------------------------------------------------------------


def tracking_events_store(
    *, shipment: Shipment, source: str, events: list[ParsedEvent], tracker_id: str = "", now=None
) -> tuple[int, bool]:
    """Store the parcel's new events and bring the parcel (and, once every parcel of it arrived,
    its order) up to date. Returns (events stored now, delivered by this call). Safe to repeat:
    an event already stored is not stored again, and nothing moves backwards."""
    now = now or timezone.now()
    with transaction.atomic():
        known = set(
            TrackingEvent._base_manager.filter(
                tenant_id=shipment.tenant_id, shipment_id=shipment.pk
            ).values_list("event_key", flat=True)
        )
        fresh = {event.key: event for event in events if event.key not in known}
        TrackingEvent._base_manager.bulk_create(
            [
                TrackingEvent(
                    tenant_id=shipment.tenant_id,
                    shipment_id=shipment.pk,
                    source=source,
                    event_key=event.key,
                    occurred_at=event.occurred_at,
                    status=event.status,
                    message=event.message,
                    location=event.location,
                )
                for event in fresh.values()
            ],
            ignore_conflicts=True,  # a second worker stored it meanwhile: the database decides
        )
        stored = TrackingEvent._base_manager.filter(
            tenant_id=shipment.tenant_id, shipment_id=shipment.pk
        )
        summary = stored.aggregate(
            last=Max("occurred_at"),
            first_scan=Min("occurred_at", filter=~Q(status__in=NOT_SCANNED)),
            delivered=Min("occurred_at", filter=Q(status=TrackingStatus.DELIVERED)),
        )
        latest = stored.order_by("-occurred_at", "-id").values_list("status", flat=True).first()
        values = {
            "tracking_status": latest or "",
            "first_scan_at": summary["first_scan"],
            "last_event_at": summary["last"],
            "tracking_polled_at": now,
            "tracking_poll_error": "",
            "updated_at": now,
        }
        if tracker_id:
            values["tracker_id"] = tracker_id
        parcels = Shipment._base_manager.filter(pk=shipment.pk)
        parcels.update(**values)
        delivered_now = False
        if summary["delivered"] is not None:
            delivered_now = bool(
                parcels.filter(delivered_at__isnull=True).update(delivered_at=summary["delivered"])
            )
            parcels.filter(status__in=(ShipmentStatus.SHIPPED, ShipmentStatus.IN_TRANSIT)).update(
                status=ShipmentStatus.DELIVERED
            )
        elif summary["first_scan"] is not None:
            parcels.filter(status=ShipmentStatus.SHIPPED).update(status=ShipmentStatus.IN_TRANSIT)
        if delivered_now:
            _order_delivered(order_id=shipment.order_id, tenant_id=shipment.tenant_id)
    return len(fresh), delivered_now


def _order_delivered(*, order_id: int, tenant_id: int) -> None:
    """Once every live parcel of the order arrived: the order is delivered (when it was on its
    way), at the last parcel's delivery time, with a line in its audit trail."""
    from orders.events import order_event_add

    parcels = Shipment._base_manager.filter(order_id=order_id).exclude(
        status=ShipmentStatus.CANCELLED
    )
    if parcels.filter(delivered_at__isnull=True).exists():
        return
    when = parcels.aggregate(last=Max("delivered_at"))["last"]
    moved = (
        Order._base_manager.filter(pk=order_id, tenant_id=tenant_id, delivered_at__isnull=True)
        .filter(status__in=(OrderStatus.SHIPPED, OrderStatus.IN_TRANSIT, OrderStatus.DELIVERED))
        .update(status=OrderStatus.DELIVERED, delivered_at=when, updated_at=timezone.now())
    )
    if moved:
        order = Order._base_manager.get(pk=order_id)
        order_event_add(
            order=order,
            kind="delivered",
            message=f"Delivered {when:%Y-%m-%d %H:%M} UTC (carrier tracking).",
        )


# --- the poll ----------------------------------------------------------------------------------


def shipments_to_poll(
    *,
    tenant,
    now: datetime,
    shop_id: int | None = None,
    shipment_ids: list[int] | None = None,
    force: bool = False,
):
    """The tenant's parcels on their way, least recently polled first: those not polled for
    `TKERP_TRACKING_POLL_MINUTES` (all of them with `force`)."""
    parcels = (
        Shipment._base_manager.filter(
            tenant=tenant, delivered_at__isnull=True, status__in=ON_THE_WAY
        )
        .exclude(tracking_number="")
        .exclude(tracking_status=TrackingStatus.RETURN_TO_SENDER)
    )
    if shop_id is not None:
        parcels = parcels.filter(order__shop_id=shop_id)
    if shipment_ids is not None:
        parcels = parcels.filter(pk__in=shipment_ids)
    if not force:
        cutoff = now - timedelta(minutes=settings.TKERP_TRACKING_POLL_MINUTES)
        parcels = parcels.filter(
            Q(tracking_polled_at__isnull=True) | Q(tracking_polled_at__lt=cutoff)
        )
    return parcels.order_by(F("tracking_polled_at").asc(nulls_first=True), "pk")


def tracking_poll(
    *,
    tenant,
    shop_id: int | None = None,
    shipment_ids: list[int] | None = None,
    now: datetime | None = None,
    force: bool = False,
    limit: int | None = None,
) -> TrackingPollResult:
    """Poll one batch of the tenant's parcels (see the module doc), then mark exceptions."""
    now = now or timezone.now()
    limit = limit or settings.TKERP_TRACKING_POLL_BATCH
    result = TrackingPollResult()
    with tenant_context(tenant):
        batch = list(
            shipments_to_poll(
                tenant=tenant, now=now, shop_id=shop_id, shipment_ids=shipment_ids, force=force
            ).select_related("order__shop", "service__carrier")[:limit]
        )
        order_ids = {parcel.order_id for parcel in batch}
        # TikTok tracks an order, not a parcel: only orders with one tracked parcel use it.
        single = {
            row["order_id"]
            for row in Shipment._base_manager.filter(order_id__in=order_ids)
            .exclude(tracking_number="")
            .exclude(status=ShipmentStatus.CANCELLED)
            .values("order_id")
            .annotate(n=Count("id"))
            if row["n"] == 1
        }
        accounts = _accounts(tenant.pk)
        sources = _Sources()
        try:
            plan = []
            for parcel in batch:
                key = tracking_source_key(parcel, accounts=accounts, tiktok_single=single)
                if key is None:
                    result.untracked += 1
                    continue
                plan.append((parcel, key))
            answers = _fetch_all(plan, sources, tenant=tenant)
            for (parcel, key), answer in zip(plan, answers, strict=True):
                result.parcels += 1
                if isinstance(answer, Exception):
                    exc = answer
                    if isinstance(exc, ShopCredentials.DoesNotExist):
                        exc = PlatformError("the shop is not connected to its platform")
                    reason = getattr(exc, "reason", None) or getattr(exc, "message", "") or str(exc)
                    Shipment._base_manager.filter(pk=parcel.pk).update(
                        tracking_polled_at=now, tracking_poll_error=str(reason)[:300]
                    )
                    result.failed += 1
                    continue
                events, tracker_id = answer
                stored, delivered = tracking_events_store(
                    shipment=parcel, source=key[0], events=events, tracker_id=tracker_id, now=now
                )
                result.events += stored
                result.delivered += int(delivered)
        finally:
            sources.close()
        result.exceptions = tracking_exceptions_mark(tenant=tenant, now=now)
    return result


def tracking_poll_all(*, now: datetime | None = None, force: bool = False) -> TrackingPollResult:
    """One poll per active tenant, each under its own scope; a tenant that fails is logged and
    the others still run."""
    from shops.models import Tenant

    total = TrackingPollResult()
    for tenant in Tenant.objects.filter(is_active=True).order_by("pk"):
        try:
            total.add(tracking_poll(tenant=tenant, now=now, force=force))
        except Exception:
            logger.exception("tracking poll of tenant %s failed", tenant.pk)
            total.failed += 1
    return total


# --- exceptions --------------------------------------------------------------------------------


def tracking_exception_conditions(*, now: datetime) -> dict[str, Q]:
    """Each exception kind's condition, mutually exclusive (a returned parcel is not also a
    failed delivery). Only parcels a source has answered for are judged."""
    no_scan_cut = now - timedelta(hours=settings.TKERP_TRACKING_NO_SCAN_HOURS)
    stall_cut = now - timedelta(hours=settings.TKERP_TRACKING_STALL_HOURS)
    on_way = (
        Q(delivered_at__isnull=True, status__in=ON_THE_WAY)
        & ~Q(tracking_number="")
        & ~Q(tracking_status="")
    )
    returned = on_way & Q(tracking_status=TrackingStatus.RETURN_TO_SENDER)
    failed = on_way & Q(tracking_status=TrackingStatus.FAILURE)
    ended = Q(tracking_status__in=(TrackingStatus.RETURN_TO_SENDER, TrackingStatus.FAILURE))
    no_scan = (
        on_way
        & ~ended
        & Q(first_scan_at__isnull=True)
        & (Q(labelled_at__lt=no_scan_cut) | Q(labelled_at__isnull=True, shipped_at__lt=no_scan_cut))
    )
    stalled = on_way & ~ended & Q(first_scan_at__isnull=False, last_event_at__lt=stall_cut)
    return {
        TrackingException.RETURNED: returned,
        TrackingException.DELIVERY_FAILED: failed,
        TrackingException.NO_SCAN: no_scan,
        TrackingException.STALLED: stalled,
    }


def tracking_exceptions_mark(*, tenant, now: datetime | None = None) -> dict[str, int]:
    """Set `tracking_exception` on the tenant's parcels (only rows that change are written),
    raise or resolve one alert per kind, and return how many parcels have each kind."""
    now = now or timezone.now()
    parcels = Shipment._base_manager.filter(tenant=tenant)
    conditions = tracking_exception_conditions(now=now)
    anything = Q(pk__in=[])
    for kind, condition in conditions.items():
        parcels.filter(condition).exclude(tracking_exception=kind).update(
            tracking_exception=kind, tracking_exception_at=now
        )
        anything |= condition
    parcels.exclude(anything).exclude(tracking_exception="").update(
        tracking_exception="", tracking_exception_at=None
    )
    counts = dict(
        parcels.exclude(tracking_exception="")
        .values("tracking_exception")
        .annotate(n=Count("id"))
        .values_list("tracking_exception", "n")
    )
    tracking_alerts_update(tenant=tenant, counts=counts)
    return {kind: counts.get(kind, 0) for kind in conditions}


def tracking_alert_key(kind: str) -> str:
    return f"{TRACKING_ALERT_PREFIX}{kind}"


def tracking_alerts_update(*, tenant, counts: dict[str, int]) -> None:
    """One open alert per exception kind while any parcel has it (the title carries the
    count); resolved once none does."""
    from tkerp.alerts import alert_raise, alert_resolve
    from tkerp.models import AlertSeverity

    hours = {
        TrackingException.NO_SCAN: settings.TKERP_TRACKING_NO_SCAN_HOURS,
        TrackingException.STALLED: settings.TKERP_TRACKING_STALL_HOURS,
    }
    for kind, title in EXCEPTION_ALERT_TITLES.items():
        count = counts.get(kind, 0)
        key = tracking_alert_key(kind)
        if not count:
            alert_resolve(tenant=tenant, key=key)
            continue
        alert_raise(
            tenant=tenant,
            key=key,
            kind=key,
            severity=AlertSeverity.WARNING
            if kind == TrackingException.STALLED
            else AlertSeverity.ERROR,
            title=title.format(n=count, s="s" if count != 1 else "", hours=hours.get(kind, "")),
            message="The parcel list (Logistics: Shipments) shows them under the tracking "
            f"exception “{TrackingException(kind).label}”.",
        )
