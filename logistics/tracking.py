"""Tracking numbers entering tkerp: the one door every source goes through.

A label source, the admin's form and action, the tracking CSV import and the provider API all
call `shipment_tracking_accept` (the label store, which stores the number together with its
label under its own lock, calls `tracking_number_check` and `tracking_push_queue` itself). The
door checks the number against its carrier's format and check digit
(`logistics.tracking_numbers`), refuses one another parcel of the tenant already carries for that
carrier, stores it, commits the stock through `inventory.reservations.order_ship_commit` when the
report is that the parcel left, and queues the platform write-back (`logistics.outbox`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from django.db import IntegrityError, transaction
from django.utils import timezone

from inventory.locking import order_lock
from logistics.models import (
    Carrier,
    CarrierService,
    Shipment,
    ShipmentLine,
    ShipmentStatus,
    TrackingPush,
    TrackingPushState,
)
from logistics.routing import shipment_lines_move
from logistics.tracking_numbers import tracking_number_normalize, tracking_number_problem
from orders.events import order_event_add
from orders.models import EventSource
from shops.models import Platform
from tkerp.tenancy import tenant_context

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser


class TrackingSource:
    """The doors a tracking number comes in by (recorded on the outbox row and the event)."""

    LABEL = "label"
    ADMIN = "admin"
    CSV = "csv"
    API = "api"


_EVENT_SOURCE = {
    TrackingSource.LABEL: EventSource.SYSTEM,
    TrackingSource.ADMIN: EventSource.USER,
    TrackingSource.CSV: EventSource.USER,
    TrackingSource.API: EventSource.PROVIDER,
}


class TrackingRefused(Exception):
    """A tracking number tkerp will not take; `message` says which rule and for what, `code` is
    stable: carrier, format, duplicate, lines, state, ship."""

    def __init__(self, message: str, *, code: str):
        self.message = message
        self.code = code
        super().__init__(message)


def tracking_carrier(*, shipment: Shipment, carrier_code: str | None) -> Carrier:
    """The tenant's carrier named `carrier_code` (any case), else the parcel's own (its number's
    carrier, else its service's)."""
    if carrier_code:
        carrier = Carrier.objects.filter(
            tenant_id=shipment.tenant_id, code__iexact=carrier_code.strip()
        ).first()
        if carrier is None:
            raise TrackingRefused(
                f"no carrier with code “{carrier_code}”; add it under Carriers", code="carrier"
            )
        return carrier
    if shipment.carrier_id:
        return shipment.carrier
    if shipment.service_id:
        return shipment.service.carrier
    raise TrackingRefused(
        f"parcel {shipment.reference} has no carrier: say which carrier the number is for",
        code="carrier",
    )


def tracking_number_check(
    *,
    shipment: Shipment,
    carrier: Carrier | None,
    tracking_number: str,
    carrier_code: str = "",
    duplicates: bool = True,
) -> str:
    """The number as stored (spaces dropped, upper case) if it is one `carrier` can look up and
    no other parcel of the tenant carries it for that carrier; else `TrackingRefused` saying
    which. (`carrier` None: a platform label's carrier the seller has no record of, checked by
    `carrier_code` alone.) `duplicates=False` leaves the other parcels to the caller, whose write
    the unique constraint guards (it calls `tracking_number_duplicate` on its IntegrityError)."""
    number = tracking_number_normalize(tracking_number)
    problem = tracking_number_problem(
        carrier=carrier.code if carrier is not None else carrier_code, number=number
    )
    if problem is not None:
        return _refuse(f"parcel {shipment.reference}: {problem}", code="format")
    if carrier is None or not duplicates:
        return number
    duplicate = tracking_number_duplicate(shipment=shipment, carrier=carrier, number=number)
    if duplicate is not None:
        _refuse(duplicate, code="duplicate")
    return number


def tracking_number_duplicate(*, shipment: Shipment, carrier: Carrier, number: str) -> str | None:
    """Which other parcel of the tenant carries `number` (as stored) for `carrier`, in words;
    None when none does."""
    other = (
        Shipment.objects.filter(
            tenant_id=shipment.tenant_id, carrier=carrier, tracking_number=number
        )
        .exclude(pk=shipment.pk)
        .values_list("reference", flat=True)
        .first()
    )
    if other is None:
        return None
    return f"{carrier.name} tracking number {number} is already on parcel {other}"


def _refuse(message: str, *, code: str):
    raise TrackingRefused(message, code=code)


def _service_for(carrier: Carrier, current: CarrierService | None) -> CarrierService | None:
    """The parcel's service once its number says `carrier`: kept when it is that carrier's, else
    the carrier's first active service (the platform must be told the carrier the number is
    of)."""
    if current is not None and current.carrier_id == carrier.pk:
        return current
    return CarrierService.objects.filter(carrier=carrier, is_active=True).order_by("code").first()


def tracking_push_queue(*, shipment: Shipment, source: str) -> TrackingPush | None:
    """Queue (or re-queue, for a changed number) the platform write-back of the parcel's
    tracking number (a number changed while the old one is being sent goes out after that send).
    Call inside the transaction that stored the number; the send is queued on commit. Manual and
    CSV shops have no platform to tell: None."""
    order = shipment.order
    shop = order.shop
    if shop.platform == Platform.MANUAL or not shipment.tracking_number:
        return None
    carrier_code = shipment.carrier.code if shipment.carrier_id else ""
    now = timezone.now()
    push = TrackingPush.objects.select_for_update().filter(shipment=shipment).first()
    if push is None:
        push = TrackingPush.objects.create(
            tenant_id=shipment.tenant_id,
            shipment=shipment,
            shop=shop,
            number=shipment.tracking_number,
            carrier_code=carrier_code,
            state=TrackingPushState.PENDING,
            due_at=now,
            source=source,
        )
    elif (push.number, push.carrier_code) != (shipment.tracking_number, carrier_code) or (
        push.state not in (TrackingPushState.SENT, TrackingPushState.SENDING)
        and push.sent_number != shipment.tracking_number
    ):
        push.number = shipment.tracking_number
        push.carrier_code = carrier_code
        if push.state != TrackingPushState.SENDING:
            push.state = TrackingPushState.PENDING
            push.due_at = now
        # Else a run is sending the old number: the row stays its claim (no second run may post
        # meanwhile), and when the call ends the run records what the platform took and makes
        # the new number due, to go out as an update (`logistics.outbox._settle`).
        push.attempts = 0
        push.last_error = ""
        push.source = source
        push.save()
    else:
        return push
    from logistics.outbox import tracking_push_enqueue

    transaction.on_commit(lambda: tracking_push_enqueue(tenant_id=shop.tenant_id, shop_id=shop.pk))
    return push


def _split_off(*, parcel: Shipment, lines: Sequence[str]) -> Shipment:
    """The parcel carrying exactly `lines` (order lines by platform line id or seller SKU): the
    parcel itself when those are all its lines, else a new parcel of the same warehouse and
    service the named lines move to. Whole lines only; the caller holds the order's lock."""
    wanted = [str(ref).strip() for ref in lines if str(ref).strip()]
    own = list(parcel.lines.select_related("order_line").order_by("pk"))
    chosen: list[ShipmentLine] = []
    for ref in wanted:
        match = [
            line
            for line in own
            if ref in (line.order_line.platform_line_id, line.order_line.seller_sku)
        ]
        if not match:
            _refuse(
                f"parcel {parcel.reference} has no line “{ref}” (give the platform line id or "
                "seller SKU of one of its lines)",
                code="lines",
            )
        chosen.extend(line for line in match if line not in chosen)
    if not chosen or len(chosen) == len(own):
        return parcel
    if parcel.tracking_number or parcel.label_file or parcel.status != ShipmentStatus.PENDING:
        _refuse(
            f"parcel {parcel.reference} already has a label or tracking number for all its "
            "lines; it can't be split now",
            code="lines",
        )
    return shipment_lines_move(parcel=parcel, line_ids=[line.pk for line in chosen])


def shipment_tracking_accept(
    shipment: Shipment,
    *,
    tracking_number: str,
    carrier_code: str | None = None,
    source: str,
    lines: Sequence[str] | None = None,
    ship: bool = True,
    user: AbstractBaseUser | None = None,
) -> Shipment:
    """Take `tracking_number` of carrier `carrier_code` for `shipment`; returns the parcel that
    carries it (a new one when `lines` split some of the parcel's lines off).

    Refused (`TrackingRefused`, nothing written) when the carrier is unknown, the number is not
    the carrier's format or fails its check digit, another parcel of the tenant has it for that
    carrier, the parcel is cancelled, or (with `ship`) the order may not ship. Otherwise, in one
    transaction under the order's lock: the number and carrier are stored (the service follows
    the carrier), `ship` commits the parcel's stock through `order_ship_commit` (the report is
    that it left), and the platform write-back is queued. Giving the same number again changes
    nothing; a new number for a parcel the platform already has goes out as an update.
    """
    with tenant_context(shipment.tenant):
        with transaction.atomic():
            order_lock(order_id=shipment.order_id)
            parcel = Shipment.objects.select_related("service__carrier", "carrier").get(
                pk=shipment.pk
            )
            if parcel.status == ShipmentStatus.CANCELLED:
                _refuse(f"parcel {parcel.reference} is cancelled", code="state")
            carrier = tracking_carrier(shipment=parcel, carrier_code=carrier_code)
            number = tracking_number_check(
                shipment=parcel, carrier=carrier, tracking_number=tracking_number
            )
            if lines:
                parcel = _split_off(parcel=parcel, lines=lines)
            previous = parcel.tracking_number
            changed = (previous, parcel.carrier_id) != (number, carrier.pk)
            if changed:
                parcel.tracking_number = number
                parcel.carrier = carrier
                parcel.service = _service_for(carrier, parcel.service)
                try:
                    with transaction.atomic():
                        parcel.save(
                            update_fields=["tracking_number", "carrier", "service", "updated_at"]
                        )
                except IntegrityError:
                    _refuse(
                        f"{carrier.name} tracking number {number} is already on another parcel",
                        code="duplicate",
                    )
                order_event_add(
                    order=parcel.order,
                    kind="shipment.tracking",
                    message=(
                        f"Parcel {parcel.reference}: {carrier.name} tracking {number}"
                        + (f" (was {previous})" if previous else "")
                    )[:500],
                    data={
                        "shipment": parcel.reference,
                        "tracking_number": number,
                        "carrier": carrier.code,
                        "previous": previous,
                        "source": source,
                    },
                    user=user,
                    source=_EVENT_SOURCE.get(source, EventSource.SYSTEM),
                )
            if ship:
                from inventory.reservations import ShipRefused, order_ship_commit

                try:
                    order_ship_commit(shipment=parcel, user=user, source=_EVENT_SOURCE.get(source))
                except ShipRefused as exc:
                    _refuse(str(exc), code="ship")
                parcel.refresh_from_db()
            tracking_push_queue(shipment=parcel, source=source)
        return parcel
