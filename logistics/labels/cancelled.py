"""Bought labels of parcels cancelled before they shipped: refunded, or named for a person.

Cancelling a parcel (its order cancelled by the buyer, the platform or a person; the parcel
cancelled by hand) only changes its status, inside the cancelling transaction: no outside call
there. The label it carries was paid for and will never be used, so this sweep (run with the
one for purchases left behind, `logistics.tasks.resolve_left_labels`) asks the source that
sold it for the refund, through the same `LabelSource.void` a person's *Void label* uses, and
keeps the outcome on the parcel (`Shipment.label_refund`), with an event on the order naming
the label by tracking number. The parcel stays cancelled and keeps its label as the record.

Selected by state, so any door that cancels is covered, and safe to run twice, to overlap, or to
stop halfway: a parcel is claimed (`asking`, with the time) by one conditional update before the
source is asked; a run stopped after asking leaves the claim, which a later run takes once it is
old and finishes by asking the source whether the refund was asked for already (never a second
refund request). A source that does not answer gives the parcel back to the next run; a refund
refused, a label the source cannot void, or a parcel the carrier already scanned gets an event
and an alert naming the label to void by hand. A parcel on its way is never voided.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from logistics.labels.base import LabelError, label_named
from logistics.labels.left_behind import (
    label_service_unanswered_alert,
    label_void_by_hand_alert,
    tenants_swept,
)
from logistics.labels.sources import stored_label_source
from logistics.labels.store import _outside_transaction
from logistics.models import (
    LABEL_SOURCES_NOTHING_TO_REFUND,
    LabelRefund,
    Shipment,
    ShipmentStatus,
)
from tkerp.tenancy import all_tenants, tenant_context

logger = logging.getLogger("tkerp.labels")

#: A claim older than this belongs to a run that stopped (a refund request is retried for a
#: minute or two at most): the next run takes the parcel over.
CLAIM_EXPIRES = timedelta(minutes=15)
#: Parcels resolved per tenant and run; the next run takes the rest.
BATCH = 50

REFUNDED = "refunded"
NAMED = "named"  # left to a person, with an event on the order and an alert
SKIPPED = "skipped"


@dataclass
class CancelledLabelsResult:
    """What one sweep did: labels refunded, labels named for a person, parcels whose source did
    not answer (kept for the next run)."""

    refunded: int = 0
    named: int = 0
    failed: int = 0

    def add(self, other: CancelledLabelsResult) -> None:
        self.refunded += other.refunded
        self.named += other.named
        self.failed += other.failed

    def as_dict(self) -> dict:
        return {
            "labels_refunded": self.refunded,
            "labels_named": self.named,
            "labels_failed": self.failed,
        }


def _due(now: datetime) -> Q:
    """Cancelled parcels holding a bought label whose refund is not settled nor being asked
    (a claim older than `CLAIM_EXPIRES` is a stopped run's)."""
    return (
        Q(status=ShipmentStatus.CANCELLED)
        & ~Q(label_source__in=LABEL_SOURCES_NOTHING_TO_REFUND)
        & ~Q(tracking_number="")
        & (
            Q(label_refund=LabelRefund.NONE)
            | Q(label_refund=LabelRefund.ASKING, label_refund_at__lt=now - CLAIM_EXPIRES)
        )
    )


def shipment_label_refund_due(shipment: Shipment) -> bool:
    """True while the parcel, not on its way, holds a bought label not voided nor settled:
    deleting the parcel then would lose the label (what it cost, and the number to void it by)."""
    return (
        shipment.status in (ShipmentStatus.LABELLED, ShipmentStatus.CANCELLED)
        and shipment.label_source not in LABEL_SOURCES_NOTHING_TO_REFUND
        and bool(shipment.tracking_number)
        and shipment.label_refund in (LabelRefund.NONE, LabelRefund.ASKING)
    )


def shipment_label_refund_asked(shipment: Shipment) -> bool:
    """True once the cancelled parcel's label was asked about: refunded, being refunded, named
    for a person, or asked with no answer had (`none` with a time: the service may have taken
    it). Set back to labelled or pending, the parcel would print and ship a voided label, and a
    void would ask for a second refund."""
    return shipment.status == ShipmentStatus.CANCELLED and (
        shipment.label_refund != LabelRefund.NONE or shipment.label_refund_at is not None
    )


def cancelled_labels_refund(*, tenant, now: datetime | None = None) -> CancelledLabelsResult:
    """Refund the labels of the tenant's cancelled parcels (`BATCH` a run), each on its own;
    one whose source does not answer is kept for a later run. Parcels never asked about come
    first, then the longest waiting: labels whose source keeps failing cannot hold back the
    others."""
    _outside_transaction()
    now = now or timezone.now()
    result = CancelledLabelsResult()
    with tenant_context(tenant):
        ids = list(
            Shipment.objects.filter(_due(now))
            .order_by(F("label_refund_at").asc(nulls_first=True), "pk")
            .values_list("pk", flat=True)[:BATCH]
        )
    refused: LabelError | None = None
    for pk in ids:
        try:
            outcome = shipment_cancelled_label_refund(tenant=tenant, shipment_id=pk)
        except LabelError as exc:
            logger.warning("label of cancelled parcel %s not refunded: %s", pk, exc.reason)
            result.failed += 1
            if exc.code in UNANSWERED_CODES:
                refused = refused or exc
            continue
        except Exception:
            logger.exception("label of cancelled parcel %s not refunded", pk)
            result.failed += 1
            continue
        if outcome == REFUNDED:
            result.refunded += 1
        elif outcome == NAMED:
            result.named += 1
    if ids:
        _refused_alert(tenant, refused)
    return result


def _refused_alert(tenant, refused: LabelError | None) -> None:
    """A label service refusing to be asked keeps the refunds waiting until a person acts."""
    label_service_unanswered_alert(
        tenant,
        refused,
        key=f"labels:cancelled_refunds:{tenant.pk}",
        kind="label.refunds_unchecked",
        title="Labels of cancelled parcels cannot be refunded with the label service",
        waiting="Cancelled parcels hold labels to refund",
        then="refunds the labels once the service answers",
    )


def cancelled_labels_refund_all(*, now: datetime | None = None) -> CancelledLabelsResult:
    """The sweep over every tenant with such a parcel, each under its own scope."""
    now = now or timezone.now()
    with all_tenants():  # ESCAPE HATCH: which tenants have a label to refund (partial index)
        tenant_ids = set(
            Shipment.objects.filter(_due(now)).values_list("tenant_id", flat=True).distinct()
        )
    return tenants_swept(
        tenant_ids,
        lambda tenant: cancelled_labels_refund(tenant=tenant, now=now),
        CancelledLabelsResult(),
        what="refund of cancelled parcels' labels",
    )


def shipment_cancelled_label_refund(*, tenant, shipment_id: int) -> str:
    """Ask for the refund of the label of the tenant's cancelled parcel `shipment_id`, once:
    `REFUNDED` (asked, or found asked by a run stopped before it recorded that), `NAMED` (the
    refund refused, a source that cannot void, a parcel the carrier scanned: an event and an
    alert for a person), `SKIPPED` (nothing due, or another run has it). Raises `LabelError`
    when the source does not answer; the parcel is given back to the next run."""
    _outside_transaction()
    with tenant_context(tenant):
        claimed_at = _claim(shipment_id)
        if claimed_at is None:
            return SKIPPED
        current = Shipment.objects.select_related("order", "tenant", "label_account").get(
            pk=shipment_id
        )
        reference = current.reference
        named = label_named(
            tracking_number=current.tracking_number, label_id=current.source_label_id
        )
        data = {
            "shipment": reference,
            "label_id": current.source_label_id,
            "tracking_number": current.tracking_number,
            "label_source": current.label_source,
        }
        if current.first_scan_at is not None or current.shipped_at is not None:
            # The parcel left after all: its label is used, not to be voided.
            what = (
                f"parcel {reference} is cancelled but the carrier scanned {named}: it was not "
                "voided; if the parcel did not leave, void the label at its source"
            )
            return _settle(current, claimed_at, LabelRefund.BY_HAND, what=what, data=data)
        try:
            source = stored_label_source(current)
        except LabelError as exc:
            if exc.retryable:
                _settle(current, claimed_at, LabelRefund.NONE, release=True)
                raise
            what = (
                f"{named} of parcel {reference} (cancelled before it shipped) is from "
                f"{current.label_source or 'an unknown source'} and was not voided here "
                f"({exc.reason}); void or cancel it there"
            )
            return _settle(current, claimed_at, LabelRefund.BY_HAND, what=what, data=data)
        try:
            # A run stopped after asking left its claim: the source tells whether it was asked.
            if not source.void_asked(shipment=current):
                source.void(shipment=current)
        except LabelError as exc:
            if _unanswered(exc):
                _settle(current, claimed_at, LabelRefund.NONE, release=True)
                raise
            refused = exc.code != "not_supported"
            try:
                asked = refused and _asked_after_all(source, current)
            except LabelError:
                # Not answered whether a repeat was refused: asked again by a later run.
                _settle(current, claimed_at, LabelRefund.NONE, release=True)
                raise
            if not asked:
                what = (
                    f"{named} of parcel {reference} (cancelled before it shipped) could not be "
                    f"voided ({exc.reason}); "
                    + ("void it at the label service" if refused else "void or cancel it there")
                )
                outcome = LabelRefund.REFUSED if refused else LabelRefund.BY_HAND
                return _settle(current, claimed_at, outcome, what=what, data=data)
        finally:
            source.close()
        what = (
            f"{named} of parcel {reference} went back to the label service for a refund: the "
            "parcel was cancelled before it shipped"
        )
        return _settle(current, claimed_at, LabelRefund.REFUNDED, what=what, data=data)


#: A source refusing to be asked at all until a person acts (its API key refused, the sandbox
#: switched off): not a refund refused, the parcel waits for a run it answers.
UNANSWERED_CODES = ("auth", "sandbox_off")


def _unanswered(exc: LabelError) -> bool:
    return exc.retryable or exc.code in UNANSWERED_CODES


def _asked_after_all(source, shipment: Shipment) -> bool:
    """Whether the source shows the label's refund asked for after all: a refusal can answer a
    repeat, when a person's *Void label* (which asks the service before it clears the parcel)
    asked a moment before. The label went back then, and is no one's to void by hand. Raises
    the `LabelError` of a source that does not answer (whether it was asked is not known)."""
    try:
        return source.void_asked(shipment=shipment)
    except LabelError as exc:
        if _unanswered(exc):
            raise
        return False


def _claim(shipment_id: int) -> datetime | None:
    """Mark the parcel's refund as being asked, by this run, if it is due: one conditional
    update (no lock held while the source is asked). The claim's time, or None."""
    now = timezone.now()
    claimed = Shipment.objects.filter(_due(now), pk=shipment_id).update(
        label_refund=LabelRefund.ASKING, label_refund_at=now
    )
    return now if claimed else None


def _settle(
    shipment: Shipment,
    claimed_at: datetime,
    outcome: str,
    *,
    what: str = "",
    data: dict | None = None,
    release: bool = False,
) -> str:
    """Record the outcome on the parcel, with its event on the order (and an alert for a label
    left to a person), in one transaction that finds this run's claim unchanged: once, however
    many runs get here. `release` gives the parcel back to a later run, without an event, noting
    when it was asked (the sweep takes the longest waiting first)."""
    from orders.events import order_event_add

    with transaction.atomic(durable=True):
        locked = Shipment.objects.select_for_update(of=("self",)).get(pk=shipment.pk)
        if (locked.label_refund, locked.label_refund_at) != (LabelRefund.ASKING, claimed_at):
            return SKIPPED  # a later run took the parcel over (this one took too long)
        Shipment.objects.filter(pk=locked.pk).update(
            label_refund=outcome, label_refund_at=timezone.now()
        )
        if release:
            return SKIPPED
        refunded = outcome == LabelRefund.REFUNDED
        order_event_add(
            order=shipment.order,
            kind="shipment.label_refunded" if refunded else "shipment.label_void_failed",
            message=what,
            data={**(data or {}), "outcome": outcome},
        )
        if not refunded:
            label_void_by_hand_alert(
                shipment,
                title=f"The label of cancelled parcel {shipment.reference} needs voiding by hand",
                what=what,
            )
    return REFUNDED if refunded else NAMED
