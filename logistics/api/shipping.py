"""The provider API's ship door: a tracking number for a parcel (or some of its lines).

MERGE NOTE: `api_parcel_ship` is the one place where the API checks a tracking number and ships.
Once `logistics.tracking.shipment_tracking_accept(...)` exists (the one door for tracking
numbers, with the platform write-back outbox), replace the body between the two markers with a
call to it; the view and the tests only see this function's signature and `ShipOutcome`.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils import timezone

from inventory.reservations import ShipRefused, order_ship_commit
from logistics.models import InterceptState, Provider, Shipment, ShipmentStatus
from logistics.providers import (
    ProviderActionError,
    ShipOutcome,
    provider_parcel_check_open,
    provider_parcel_lock,
    shipment_split_off,
    tracking_carrier,
)
from orders.models import EventSource
from tkerp.tenancy import tenant_context


def api_parcel_ship(
    *,
    shipment: Shipment,
    provider: Provider,
    carrier_code: str,
    tracking_number: str,
    line_ids: list[int] | None,
) -> ShipOutcome:
    """Ship `shipment` (or only its lines `line_ids`; the others move to a new parcel) with
    `tracking_number` from `carrier_code`: the number is checked against the carrier's format
    and check digit and the parcel's booked carrier, stored, and the parcel's reserved stock is
    committed through `order_ship_commit` (the one door through which units leave). All or
    nothing; a repeat with the same number changes nothing."""
    number = "".join(tracking_number.split()).upper()
    with tenant_context(provider.tenant), transaction.atomic():
        # --- body to replace with shipment_tracking_accept(...) at merge (see module doc) ---
        parcel = provider_parcel_lock(shipment=shipment, provider=provider)
        if parcel.tracking_number and parcel.shipped_at is not None:
            if parcel.tracking_number == number:
                return ShipOutcome(shipment=parcel, remainder=None, units=0)
            raise ProviderActionError(
                f"Parcel {parcel.reference} already shipped with {parcel.tracking_number}.",
                code="already_shipped",
            )
        provider_parcel_check_open(parcel)
        carrier = tracking_carrier(parcel=parcel, carrier_code=carrier_code, tracking_number=number)
        fields = ["tracking_number", "updated_at"]
        if parcel.service_id is None:
            service = carrier.services.filter(is_active=True).order_by("code").first()
            if service is None:
                raise ProviderActionError(
                    f"{carrier.name} has no active service here; ask the seller to add one.",
                    code="no_service",
                    status=422,
                    field="carrier",
                )
            parcel.service = service
            fields.append("service")
        if parcel.acknowledged_at is None:
            parcel.acknowledged_at = timezone.now()  # shipping it accepts it
            fields.append("acknowledged_at")
        if parcel.intercept_state == InterceptState.FAILED:
            # Too late to intercept: the parcel left although the order was cancelled. Its
            # tracking is a fact being reported, so its units are committed, not refused.
            parcel.status, parcel.shipped_at = ShipmentStatus.SHIPPED, timezone.now()
            fields += ["status", "shipped_at"]
        remainder = shipment_split_off(parcel=parcel, line_ids=line_ids) if line_ids else None
        parcel.tracking_number = number
        try:
            with transaction.atomic():
                parcel.save(update_fields=fields)
        except IntegrityError:
            raise ProviderActionError(
                f"Tracking number {number} is already on another parcel.",
                code="duplicate_tracking_number",
                field="tracking_number",
            ) from None
        try:
            units = order_ship_commit(shipment=parcel, source=EventSource.PROVIDER)
        except ShipRefused as exc:
            raise ProviderActionError(str(exc), code="ship_refused") from None
        # --- end of the body to replace ---
        parcel.refresh_from_db()
        return ShipOutcome(shipment=parcel, remainder=remainder, units=units)
