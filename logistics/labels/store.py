"""Buying a parcel's label and storing it; voiding it; buying for many parcels in parallel.

The order of work keeps the contract of `logistics.labels.base`: the source is asked outside any
database transaction (it talks to the outside world, which can be slow), then one short
transaction locks the parcel's row and stores what came back. Two callers racing over one
parcel both get the same label from the source (the idempotency key), and the second to take
the lock finds the parcel labelled and leaves it alone.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, connections, transaction
from django.utils import timezone
from django.utils.text import get_valid_filename

from logistics.labels.base import (
    LabelError,
    LabelSource,
    PurchasedLabel,
    label_buy_threads,
    label_idempotency_key,
    label_named,
)
from logistics.labels.sources import label_sources_for, stored_label_source
from logistics.models import CarrierService, Shipment, ShipmentStatus
from logistics.outbox import (
    TrackingPushSends,
    tracking_push_sends_grouped,
    tracking_pushes_withdraw,
)
from tkerp.tenancy import tenant_context

logger = logging.getLogger("tkerp.labels")

_RELATED = ("order__shop", "warehouse", "service__carrier", "tenant", "label_account")


def shipment_is_labelled(shipment: Shipment) -> bool:
    """True once a label is stored: a tracking number and its label file."""
    return bool(shipment.label_file) and bool(shipment.tracking_number)


def _outside_transaction() -> None:
    """Refuse to call a label source inside a transaction (it would hold row locks and a
    connection for as long as the outside world takes). The test-case wrapper does not count."""
    connection = transaction.get_connection()
    if connection.in_atomic_block and any(
        not getattr(block, "_from_testcase", False) for block in connection.atomic_blocks
    ):
        raise RuntimeError("labels are bought outside database transactions")


def _fresh(pk: int) -> Shipment:
    return Shipment.objects.select_related(*_RELATED).get(pk=pk)


def shipment_label_buy(*, shipment: Shipment, source: LabelSource | None = None) -> Shipment:
    """The parcel with its label: bought (or fetched) from its source and stored, or unchanged
    when it already has one. Raises `LabelError` with a reason fit to show the seller."""
    _outside_transaction()
    with tenant_context(shipment.tenant):
        return _label_buy(_fresh(shipment.pk), source)


#: `_label_buy`'s cancellation check not done yet (None: done, nothing blocks).
_UNCHECKED = object()


def _label_buy(current: Shipment, source: LabelSource | None, *, blocker=_UNCHECKED) -> Shipment:
    """`shipment_label_buy` for a parcel just read (in its tenant's scope). `blocker`: the
    order's `order_ship_blocker`, when the caller just asked it for many parcels at once."""
    if shipment_is_labelled(current):
        return current
    if current.status != ShipmentStatus.PENDING:
        raise LabelError(
            f"parcel {current.reference} is {current.get_status_display().lower()}: labels "
            "are bought for pending parcels",
            code="not_pending",
        )
    from orders.cancellations import ON_HOLD_BLOCKER, order_ship_blocker

    if blocker is _UNCHECKED:
        blocker = order_ship_blocker(current.order, holds=True)
    if blocker is not None:
        # A label bought now is money spent on a parcel that may never leave, and the platform
        # refuses its tracking while the buyer's cancellation is open. A held order (a PO box,
        # suspected fraud...) waits for its release: its label's number would reach the
        # platform, which then counts the order shipped.
        code = "on_hold" if blocker.startswith(ON_HOLD_BLOCKER) else "cancellation"
        raise LabelError(f"parcel {current.reference}: {blocker}", code=code)
    own = source is None
    if own:
        source = label_sources_for([current])[current.pk]
    try:
        label = source.buy(shipment=current)
    finally:
        if own:
            source.close()
    return _label_store(shipment=current, source=source, label=label)


def _label_store(*, shipment: Shipment, source: LabelSource, label: PurchasedLabel) -> Shipment:
    """Store a label on the locked parcel row, unless someone stored one first."""
    if not label.tracking_number or not label.label_bytes:
        raise LabelError(
            f"{source.name} answered without a tracking number or label", code="response"
        )
    extension = "zpl" if label.label_format == "zpl" else "pdf"
    written = ""
    checked = shipment  # the row as its number was checked (its carrier set)
    try:
        with transaction.atomic(durable=True):
            # The row alone (no joins to compile and read): its relations are the ones the
            # caller read, where the row still names the same.
            locked = Shipment.objects.select_for_update().get(pk=shipment.pk)
            _related_reuse(locked, shipment)
            if shipment_is_labelled(locked):
                return locked
            if locked.status != ShipmentStatus.PENDING:
                # A purchase written down on the parcel (the label service's) is refunded by
                # the sweep of labels left behind (logistics.labels.left_behind); any other is
                # for a person.
                then = (
                    "it goes back to the label service for a refund"
                    if locked.label_request_key
                    else f"void {_named(label)} at {source.name}"
                )
                raise LabelError(
                    f"parcel {locked.reference} became {locked.get_status_display().lower()} "
                    f"while its label was bought; {then}",
                    code="not_pending",
                )
            if label_idempotency_key(locked) != label_idempotency_key(shipment):
                # A label was voided since this parcel was read: what was just bought under the
                # old key may be that voided label handed back (the key is the service's
                # idempotency key). Read the parcel again and buy under its new key.
                raise LabelError(
                    f"parcel {locked.reference}'s label was voided while this one was bought; "
                    "it is bought again",
                    code="voided",
                    retryable=True,
                )
            _check_carrier(locked, label)
            number = _check_number(locked, label)
            checked = locked
            locked.label_file.save(
                get_valid_filename(f"{locked.reference}.{extension}"),
                ContentFile(label.label_bytes),
                save=False,
            )
            written = locked.label_file.name
            locked.tracking_number = number
            locked.label_format = label.label_format
            locked.label_source = source.name
            locked.label_account_id = label.extra.get("label_account_id")
            locked.source_label_id = label.source_label_id
            if label.extra.get("platform_package_id"):
                locked.platform_package_id = label.extra["platform_package_id"]
            locked.shipping_cost = label.cost
            locked.labelled_at = timezone.now()
            locked.status = ShipmentStatus.LABELLED
            # The purchase is recorded: what was sent for it is needed no more.
            locked.label_request_key = locked.label_request = ""
            locked.save(
                update_fields=[
                    "label_request_key",
                    "label_request",
                    "label_file",
                    "tracking_number",
                    "carrier",
                    "label_format",
                    "label_source",
                    "label_account",
                    "source_label_id",
                    "shipping_cost",
                    "labelled_at",
                    "status",
                    "service",
                    "platform_package_id",
                    "updated_at",
                ]
            )
            _queue_writeback(locked, platform_has_it=bool(label.extra.get("platform_package_id")))
    except IntegrityError:
        _forget(written)
        raise LabelError(
            f"{_duplicate_reason(checked, label)}; void {_named(label)} at its source",
            code="duplicate_tracking",
        ) from None
    except BaseException:
        _forget(written)
        raise
    return locked


def _named(label: PurchasedLabel) -> str:
    return label_named(tracking_number=label.tracking_number, label_id=label.source_label_id)


def _duplicate_reason(shipment: Shipment, label: PurchasedLabel) -> str:
    """Why storing the label broke the unique constraint: the other parcel with its number."""
    from logistics.tracking import tracking_number_duplicate
    from logistics.tracking_numbers import tracking_number_normalize

    carrier = shipment.carrier
    if carrier is not None:
        number = tracking_number_normalize(label.tracking_number)
        reason = tracking_number_duplicate(shipment=shipment, carrier=carrier, number=number)
        if reason is not None:
            return reason
    return f"tracking number {label.tracking_number} is already on another parcel"


def _related_reuse(fresh: Shipment, known: Shipment) -> None:
    """Give `fresh` (the row just read again) the related objects `known` (the same row read
    before, with `_RELATED`) holds, for each relation that still points at the same row."""
    for name in ("order", "warehouse", "service", "tenant", "label_account"):
        field = Shipment._meta.get_field(name)
        if field.is_cached(known) and getattr(fresh, field.attname) == getattr(
            known, field.attname
        ):
            field.set_cached_value(fresh, field.get_cached_value(known))


def _forget(name: str) -> None:
    if name:
        default_storage.delete(name)


def _check_carrier(shipment: Shipment, label: PurchasedLabel) -> None:
    """The tracking number must belong to the parcel's carrier (a platform refuses one that does
    not). A parcel without a service takes the label's, when the seller has it; so does one
    whose platform chose another carrier for its own label (the platform's word wins there)."""
    carrier = shipment.service.carrier.code.lower() if shipment.service_id else ""
    if shipment.service_id is None or (
        label.extra.get("carrier_chosen_by_platform") and label.carrier_code.lower() != carrier
    ):
        services = CarrierService.objects.select_related("carrier").filter(
            carrier__code__iexact=label.carrier_code
        )
        shipment.service = (
            services.filter(code=label.service_code).first()
            if label.service_code
            else services.filter(is_active=True).order_by("code").first()
        )
        return
    if label.carrier_code.lower() != carrier:
        raise LabelError(
            f"the label is for {label.carrier_code} but parcel {shipment.reference} ships with "
            f"{shipment.service}",
            code="carrier_mismatch",
        )


def _check_number(shipment: Shipment, label: PurchasedLabel) -> str:
    """The label's tracking number through the one check every number passes
    (`logistics.tracking`): its carrier's format and check digit, and no other parcel of the
    tenant with it. Sets the parcel's carrier; returns the number as stored."""
    from logistics.tracking import TrackingRefused, tracking_carrier, tracking_number_check

    own = shipment.service.carrier if shipment.service_id else None
    if own is not None and own.code.lower() == label.carrier_code.strip().lower():
        carrier = own  # the service's own carrier: no query to look it up by code
    else:
        try:
            carrier = tracking_carrier(shipment=shipment, carrier_code=label.carrier_code)
        except TrackingRefused:
            # A platform's label of a carrier the seller has no record of: checked by its code.
            carrier = None
    try:
        number = tracking_number_check(
            shipment=shipment,
            carrier=carrier,
            carrier_code=label.carrier_code,
            tracking_number=label.tracking_number,
            # The parcel's row is written under the unique constraint on (tenant, carrier,
            # number): `_label_store` names the other parcel on its IntegrityError.
            duplicates=False,
        )
    except TrackingRefused as exc:
        raise LabelError(
            f"{exc.message}; void {_named(label)} at its source",
            code="duplicate_tracking" if exc.code == "duplicate" else "invalid_tracking",
        ) from None
    shipment.carrier = carrier
    return number


def _queue_writeback(shipment: Shipment, *, platform_has_it: bool) -> None:
    """A labelled parcel's number goes back to its platform (the platform counts the order
    unshipped until it has one). A label the platform itself made (TikTok Shipping) is already
    there: recorded as sent, nothing is posted."""
    from logistics.models import TrackingPush, TrackingPushState
    from logistics.tracking import TrackingSource, tracking_push_queue

    if platform_has_it:
        now = timezone.now()
        TrackingPush.objects.update_or_create(
            shipment=shipment,
            defaults={
                "tenant_id": shipment.tenant_id,
                "shop_id": shipment.order.shop_id,
                "number": shipment.tracking_number,
                "carrier_code": shipment.carrier.code if shipment.carrier_id else "",
                "sent_number": shipment.tracking_number,
                "state": TrackingPushState.SENT,
                "sent_at": now,
                "due_at": None,
                "source": TrackingSource.LABEL,
            },
        )
        from logistics.outbox import order_tracking_uploaded_mark

        order_tracking_uploaded_mark(order_id=shipment.order_id, now=now)
        return
    tracking_push_queue(shipment=shipment, source=TrackingSource.LABEL)


def shipment_label_void(*, shipment: Shipment) -> Shipment:
    """Void the parcel's label at the source that sold it, clear it, and put the parcel back to
    pending (its next label is bought anew: the void changes the idempotency key)."""
    _outside_transaction()
    with tenant_context(shipment.tenant):
        current = _fresh(shipment.pk)
        if not shipment_is_labelled(current):
            raise LabelError(f"parcel {current.reference} has no label to void", code="no_label")
        if current.status == ShipmentStatus.CANCELLED:
            # Its refund is asked for in the background, once (logistics.labels.cancelled).
            raise LabelError(
                f"parcel {current.reference} is cancelled: its label goes back to the label "
                "service by itself, and its order's history says when",
                code="cancelled",
            )
        if current.status != ShipmentStatus.LABELLED:
            raise LabelError(
                f"parcel {current.reference} is {current.get_status_display().lower()}: only a "
                "label that has not left can be voided",
                code="not_labelled",
            )
        source = stored_label_source(current)
        try:
            source.void(shipment=current)
        finally:
            source.close()
        with transaction.atomic(durable=True):
            locked = Shipment.objects.select_for_update(of=("self",)).get(pk=current.pk)
            if (
                not shipment_is_labelled(locked)
                or locked.source_label_id != current.source_label_id
                or locked.tracking_number != current.tracking_number
            ):
                return _fresh(locked.pk)  # voided (or changed) by someone else meanwhile
            old_file = locked.label_file.name
            locked.label_file = ""
            locked.tracking_number = ""
            locked.label_format = ""
            locked.label_source = ""
            locked.label_account = None
            locked.source_label_id = ""
            locked.labelled_at = None
            locked.shipping_cost = 0
            if locked.status == ShipmentStatus.LABELLED:
                # A parcel cancelled while its void was asked for stays cancelled.
                locked.status = ShipmentStatus.PENDING
            locked.label_voids += 1
            locked.label_request_key = locked.label_request = ""
            locked.save()
            # A number the platform was never told must not go out after its label is void (a
            # row being sent now: its run records it if the platform took it, and the next
            # number then goes out as an update).
            tracking_pushes_withdraw(shipment_ids=[locked.pk])
            transaction.on_commit(lambda: _forget(old_file))
        return _fresh(locked.pk)


# --- many parcels at once -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LabelBuyResult:
    """How buying one parcel's label went. `bought` is False for a parcel already labelled."""

    shipment_id: int
    ok: bool
    tracking_number: str = ""
    bought: bool = False
    reason: str = ""
    code: str = ""
    retryable: bool = False


class _ShipGuard:
    """`order_ship_blocker` for the parcels of a parallel buy, asked for the next `window`
    parcels in line at once (one query) when a buying thread reaches one not yet checked: a
    parcel is checked at most `window` purchases before its own, a fraction of a second at a
    source's pace, instead of one query per parcel."""

    def __init__(self, *, tenant_id: int, shipments: list[Shipment], window: int = 25):
        self.tenant_id = tenant_id
        self.line = shipments
        self.position = {shipment.pk: n for n, shipment in enumerate(shipments)}
        self.window = window
        self.known: dict[int, str | None] = {}
        self.lock = threading.Lock()

    def blocker(self, shipment: Shipment) -> str | None:
        from orders.cancellations import orders_ship_blockers

        with self.lock:
            if shipment.pk not in self.known:
                start = self.position[shipment.pk]
                ahead = [
                    parcel
                    for parcel in self.line[start : start + self.window]
                    if parcel.pk not in self.known
                ]
                by_order = orders_ship_blockers(
                    tenant_id=self.tenant_id,
                    order_ids={parcel.order_id for parcel in ahead},
                    holds=True,
                )
                self.known.update({parcel.pk: by_order[parcel.order_id] for parcel in ahead})
            return self.known.pop(shipment.pk)


def _buy_one(
    shipment: Shipment, source: LabelSource, guard: _ShipGuard | None = None
) -> LabelBuyResult:
    """One parcel of a parallel buy, as read at its start: not read again first (a parcel
    labelled meanwhile gets its same label back from the source, idempotently, and the store
    finds it labelled under the row lock and leaves it alone)."""
    shipment_id = shipment.pk
    try:
        already = shipment_is_labelled(shipment)
        if guard is None or already or shipment.status != ShipmentStatus.PENDING:
            stored = _label_buy(shipment, source)
        else:
            stored = _label_buy(shipment, source, blocker=guard.blocker(shipment))
    except LabelError as exc:
        return LabelBuyResult(
            shipment_id, ok=False, reason=exc.reason, code=exc.code, retryable=exc.retryable
        )
    except Shipment.DoesNotExist:
        return LabelBuyResult(shipment_id, ok=False, reason="no such parcel", code="not_found")
    except Exception:
        # One parcel's unexpected failure must not abort the others; the trace goes to the log.
        logger.exception("label for shipment %s failed", shipment_id)
        return LabelBuyResult(
            shipment_id, ok=False, reason="unexpected error (see the log)", code="error"
        )
    return LabelBuyResult(
        shipment_id, ok=True, tracking_number=stored.tracking_number, bought=not already
    )


def shipments_label_buy(
    *,
    tenant,
    shipment_ids: Iterable[int],
    on_result: Callable[[LabelBuyResult], None] | None = None,
    max_workers: int | None = None,
) -> list[LabelBuyResult]:
    """Buy (or fetch) the labels of many parcels in parallel, one result per parcel in the order
    given. As many threads as keep the busiest source at its rate limit (`label_buy_threads`,
    at most `TKERP_LABEL_BUY_MAX_WORKERS`); each source's token bucket paces its calls. A
    parcel that fails never stops the others. `on_result` is called from the worker threads as
    each parcel finishes (progress)."""
    _outside_transaction()
    ids = list(dict.fromkeys(int(pk) for pk in shipment_ids))
    results: dict[int, LabelBuyResult] = {}
    with tenant_context(tenant):
        found = {s.pk: s for s in Shipment.objects.filter(pk__in=ids).select_related(*_RELATED)}
        sources = label_sources_for(list(found.values()))
    guard = _ShipGuard(
        tenant_id=tenant.pk,
        shipments=[found[pk] for pk in ids if pk in found and _to_buy(found[pk])],
    )
    sends = TrackingPushSends()
    work: queue.SimpleQueue = queue.SimpleQueue()
    for pk in ids:
        if pk in found:
            work.put((found[pk], sources[pk]))
        else:
            results[pk] = LabelBuyResult(pk, ok=False, reason="no such parcel", code="not_found")
            if on_result is not None:
                on_result(results[pk])
    distinct = {id(source): source for source in sources.values()}
    bound = max((label_buy_threads(source.rate_limit) for source in distinct.values()), default=1)
    workers = min(len(found), max_workers or bound)
    lock = threading.Lock()

    def worker() -> None:
        try:
            with tenant_context(tenant), tracking_push_sends_grouped(sends):
                while True:
                    try:
                        shipment, source = work.get_nowait()
                    except queue.Empty:
                        return
                    result = _buy_one(shipment, source, guard)
                    sends.send_due()
                    with lock:
                        results[shipment.pk] = result
                    if on_result is not None:
                        try:
                            on_result(result)
                        except Exception:
                            # Progress reporting must not stop the buying.
                            logger.exception("label progress callback failed")
        finally:
            # Each thread has its own database connection; give it back.
            connections.close_all()

    threads = [threading.Thread(target=worker, name=f"labels-{n}") for n in range(workers)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for source in distinct.values():
            source.close()
        sends.send_due(now=True)
    return [results[pk] for pk in ids]


def _to_buy(shipment: Shipment) -> bool:
    return not shipment_is_labelled(shipment) and shipment.status == ShipmentStatus.PENDING
