"""Label purchases left on parcels that will not be bought again.

Before a label is bought from the label service, its request is written on the parcel
(`Shipment.label_request`, with its idempotency key; logistics.labels.labelapi). A worker
stopped after the service sold the label and before tkerp stored it leaves that record, and the
parcel's next purchase finds the label and voids it. A parcel that stopped being bought meanwhile
(its order cancelled, the parcel cancelled by a person, given a tracking number by hand, sent to
a provider) has no next purchase: the label the seller paid for would never go back. This sweep
resolves such records: it asks the service what the key sold (without buying), refunds that
label and notes it on the order, and forgets the record; a purchase that sold nothing is just
forgotten. Safe to run twice or to stop halfway: the record stays until what was sold under it
is refunded or named for a person, and a refund already asked for is not asked again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from logistics.labels.base import LabelError, label_idempotency_key, label_named
from logistics.labels.labelapi import LabelApiSource
from logistics.labels.sources import label_account_for
from logistics.labels.store import _outside_transaction
from logistics.models import LabelAccount, Shipment, ShipmentStatus
from tkerp.alerts import alert_raise, alert_resolve
from tkerp.models import AlertSeverity
from tkerp.tenancy import all_tenants, tenant_context

logger = logging.getLogger("tkerp.labels")

#: A record this recent may belong to a purchase still on its way (the parcel was cancelled
#: while a worker waited on the service, which retries for a while): left for that worker.
SETTLE = timedelta(minutes=10)
#: Parcels resolved per tenant and run; the next run takes the rest.
BATCH = 50

REFUNDED = "refunded"
CLEARED = "cleared"
NAMED = "named"  # left to a person, with an event on the order and an alert
SKIPPED = "skipped"


@dataclass
class LeftBehindResult:
    """What one sweep did: labels refunded, records cleared with nothing sold, purchases named
    for a person, parcels whose service did not answer (kept for the next run)."""

    refunded: int = 0
    cleared: int = 0
    named: int = 0
    failed: int = 0

    def add(self, other: LeftBehindResult) -> None:
        for name in ("refunded", "cleared", "named", "failed"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict:
        return {
            "refunded": self.refunded,
            "cleared": self.cleared,
            "named": self.named,
            "failed": self.failed,
        }


def _left_behind():
    """Parcels holding a recorded purchase that no purchase will pick up: not pending."""
    return Shipment.objects.exclude(label_request_key="").exclude(status=ShipmentStatus.PENDING)


def label_requests_left_resolve(*, tenant, now: datetime | None = None) -> LeftBehindResult:
    """Resolve the tenant's parcels left holding a recorded purchase (`BATCH` a run, those
    settled for `SETTLE`, the longest waiting first), each on its own. One whose service does
    not answer is kept, and waits `SETTLE` again at the back of the queue: records the service
    keeps failing cannot hold back the others."""
    _outside_transaction()
    cut = (now or timezone.now()) - SETTLE
    result = LeftBehindResult()
    with tenant_context(tenant):
        parcels = list(
            _left_behind()
            .filter(updated_at__lt=cut)
            .select_related("order", "service__carrier", "tenant")
            .order_by("updated_at", "pk")[:BATCH]
        )
    if not parcels:
        return result  # all waiting: the alert stays as the last run that asked left it
    refused: LabelError | None = None
    for parcel in parcels:
        try:
            outcome = shipment_label_request_resolve(shipment=parcel)
        except LabelError as exc:
            logger.warning("label left on parcel %s not resolved: %s", parcel.pk, exc.reason)
            _failed_wait(parcel)
            result.failed += 1
            if not exc.retryable:
                refused = refused or exc
            continue
        except Exception:
            logger.exception("label left on parcel %s not resolved", parcel.pk)
            _failed_wait(parcel)
            result.failed += 1
            continue
        if outcome in (REFUNDED, CLEARED, NAMED):
            setattr(result, outcome, getattr(result, outcome) + 1)
    if refused is None:
        # A record refused by an earlier run waits its turn at the back of the queue (not asked
        # this run): the alert closes only once no record is left waiting.
        with tenant_context(tenant):
            if _left_behind().filter(updated_at__gte=cut).exists():
                return result
    _unanswered_alert(tenant, refused)
    return result


def _failed_wait(parcel: Shipment) -> None:
    """The parcel's record waits `SETTLE` again and goes to the back of the queue (while the
    record is the one this run read)."""
    with tenant_context(parcel.tenant):
        Shipment.objects.filter(
            pk=parcel.pk,
            label_request_key=parcel.label_request_key,
            label_request=parcel.label_request,
        ).update(updated_at=timezone.now())


def _unanswered_alert(tenant, refused: LabelError | None) -> None:
    """A service that will not answer until a person acts would keep the records, and any label
    sold under them, waiting without a word."""
    label_service_unanswered_alert(
        tenant,
        refused,
        key=f"labels:left_behind:{tenant.pk}",
        kind="label.left_unchecked",
        title="Unfinished label purchases cannot be checked with the label service",
        waiting="Parcels no longer bought still hold a label purchase a stopped worker left "
        "unfinished",
        then="refunds any label sold once the service answers",
    )


def label_service_unanswered_alert(
    tenant, refused: LabelError | None, *, key: str, kind: str, title: str, waiting: str, then: str
) -> None:
    """The label sweeps' one alert for a service refusing to be asked until a person acts (its
    API key refused, the sandbox switched off): raised and counted again by each run that meets
    such a refusal (`refused`), closed by a run that meets none."""
    if refused is None:
        alert_resolve(tenant=tenant, key=key)
        return
    alert_raise(
        tenant=tenant,
        key=key,
        kind=kind,
        title=title,
        message=(
            f"{waiting}, and the label service refused to be asked about them "
            f"({refused.reason}). Check the label account (its API key); tkerp asks again every "
            f"5 minutes and {then}."
        ),
        severity=AlertSeverity.ERROR,
    )


def label_requests_left_resolve_all(*, now: datetime | None = None) -> LeftBehindResult:
    """The sweep over every tenant with such a parcel, each under its own scope."""
    with all_tenants():  # ESCAPE HATCH: which tenants have a record to resolve (partial index)
        tenant_ids = set(_left_behind().values_list("tenant_id", flat=True).distinct())
    return tenants_swept(
        tenant_ids,
        lambda tenant: label_requests_left_resolve(tenant=tenant, now=now),
        LeftBehindResult(),
        what="left label sweep",
    )


def tenants_swept(tenant_ids, sweep, total, *, what: str):
    """`sweep(tenant)` for each of the tenants `tenant_ids`, its result added to `total`
    (`add`); a tenant whose sweep fails is logged and counted (`total.failed`), and the next
    tenants still run. The label sweeps' driver over every tenant."""
    from shops.models import Tenant

    for tenant in Tenant.objects.filter(pk__in=tenant_ids).order_by("pk"):
        try:
            total.add(sweep(tenant))
        except Exception:
            logger.exception("%s of tenant %s failed", what, tenant.pk)
            total.failed += 1
    return total


def shipment_label_request_resolve(*, shipment: Shipment) -> str:
    """Resolve the purchase recorded on a parcel no longer bought: `REFUNDED` (the label sold
    for it went back to the service, noted on the order), `CLEARED` (nothing was sold, or the
    parcel carries that label), `NAMED` (a refund refused, or a purchase that cannot be asked
    for: an event and an alert tell a person what to void), `SKIPPED` (no record, or the parcel
    is pending: its purchase resolves it). Raises `LabelError` when the service does not answer;
    the record stays for the next run."""
    _outside_transaction()
    with tenant_context(shipment.tenant):
        current = Shipment.objects.select_related("order", "service__carrier", "tenant").get(
            pk=shipment.pk
        )
        key, sent = current.label_request_key, current.label_request
        if not key or current.status == ShipmentStatus.PENDING:
            return SKIPPED
        reference = current.reference
        source = label_source_of_request(current, sent)
        if source is None:
            return _unknown(current, key, sent, why="no label account of the seller sent it")
        try:
            try:
                answer = source.purchase_left(key=key, sent=sent)
            except LabelError as exc:
                if exc.code != "unknown_purchase":
                    raise
                return _unknown(current, key, sent, why=exc.reason)
            if answer is None:
                _settle(current, key, sent)
                return CLEARED
            label_id, number = str(answer["id"]), str(answer.get("tracking_code") or "")
            named = label_named(tracking_number=number, label_id=label_id)
            data = {"shipment": reference, "label_id": label_id, "tracking_number": number}
            if number and number == current.tracking_number:
                # Typed in by hand from the service: the parcel ships with it.
                _settle(current, key, sent)
                return CLEARED
            try:
                source.purchase_left_refund(answer=answer)
            except LabelError as exc:
                if exc.retryable:
                    raise
                what = (
                    f"{named} (label {label_id}) was bought for parcel {reference} and never "
                    f"stored (a worker stopped), and the parcel is "
                    f"{current.get_status_display().lower()}: it could not be voided "
                    f"({exc.reason}); void it at the label service"
                )
                _settle(current, key, sent, kind="shipment.label_void_failed", what=what, data=data)
                return NAMED
        finally:
            source.close()
        what = (
            f"{named} (label {label_id}) was bought for parcel {reference} and never stored (a "
            f"worker stopped), and the parcel is {current.get_status_display().lower()}: it "
            "went back to the label service for a refund"
        )
        _settle(current, key, sent, kind="shipment.label_refunded", what=what, data=data)
        return REFUNDED


def label_source_of_request(shipment: Shipment, sent: str) -> LabelApiSource | None:
    """The seller's label account the recorded purchase was sent to (the parcel's own first),
    or None when none of them has the carrier account it names. An account that cannot be
    asked now (the service not answering, a refused key) keeps the record for the next run."""
    own = label_account_for(shipment)
    accounts = sorted(
        LabelAccount._base_manager.filter(tenant_id=shipment.tenant_id),
        key=lambda account: (
            own is None or account.pk != own.pk,
            not account.is_active,
            account.name,
            account.pk,
        ),
    )
    unanswered = None
    for account in accounts:
        source = LabelApiSource(account=account)
        try:
            if source.request_sent_here(sent=sent):
                return source
        except LabelError as exc:
            unanswered = unanswered or exc
        source.close()
    if unanswered is not None:
        raise unanswered
    return None


def _unknown(shipment: Shipment, key: str, sent: str, *, why: str) -> str:
    reference = shipment.reference
    what = (
        f"parcel {reference} is {shipment.get_status_display().lower()} and a label purchase "
        f"for it was left unfinished (a worker stopped), which tkerp cannot ask the label "
        f"service about ({why}): find reference {reference} at the label service and void any "
        "label sold for it there"
    )
    _settle(
        shipment,
        key,
        sent,
        kind="shipment.label_void_failed",
        what=what,
        data={"shipment": reference, "label_id": "", "tracking_number": ""},
    )
    return NAMED


def _settle(
    shipment: Shipment, key: str, sent: str, *, kind: str = "", what: str = "", data=None
) -> bool:
    """Forget the record (key and request as read), and move the parcel to its next key when
    the record's is its current one, with the event `kind` on the order (and an alert for a void
    left to a person) in the same transaction: once, however many runs get here. False when
    another run forgot it first."""
    from orders.events import order_event_add

    with transaction.atomic(durable=True):
        locked = Shipment.objects.select_for_update(of=("self",)).get(pk=shipment.pk)
        if (locked.label_request_key, locked.label_request) != (key, sent):
            return False
        spent = {"label_request_key": "", "label_request": ""}
        if label_idempotency_key(locked) == key:
            # The key went to a purchase or to the quote: a parcel made pending again buys
            # under its next one (as after a void), not into a refusal of this one.
            spent["label_voids"] = F("label_voids") + 1
        Shipment.objects.filter(pk=locked.pk).update(**spent)
        if kind:
            order_event_add(order=shipment.order, kind=kind, message=what, data=data)
        if kind == "shipment.label_void_failed":
            label_void_by_hand_alert(
                shipment,
                title=f"A label bought for parcel {shipment.reference} needs voiding by hand",
                what=what,
            )
    return True


def label_void_by_hand_alert(shipment: Shipment, *, title: str, what: str) -> None:
    """The label sweeps' alert for a label of the parcel that a person must void at its source
    (`what` names it): one per parcel, however many runs get here."""
    alert_raise(
        tenant=shipment.tenant,
        key=f"shipment:{shipment.pk}:label_void_failed",
        kind="label.void_failed",
        title=title,
        message=what,
        severity=AlertSeverity.ERROR,
    )
