"""The provider API's ship door: a tracking number for a parcel (or some of its lines).

The provider-specific rules (the parcel is still the provider's and open, the carrier is the one
it is booked with, the lines are its own) are checked here; the number itself then goes through
the one door every tracking number takes, `logistics.tracking.shipment_tracking_accept`: format
and check digit, unique per tenant and carrier, stock committed once, platform write-back queued.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from logistics.models import InterceptState, Provider, Shipment, ShipmentStatus
from logistics.providers import (
    ProviderActionError,
    ShipOutcome,
    provider_parcel_check_open,
    provider_parcel_lock,
    shipment_split_off,
    tracking_carrier,
)
from logistics.scorecards import provider_tracking_invalid_record
from logistics.tracking import TrackingRefused, TrackingSource, shipment_tracking_accept
from tkerp.api.idempotency import keep_after_rollback
from tkerp.tenancy import tenant_context

# TrackingRefused.code -> the API's problem code and the field it is about.
_REFUSAL_CODES = {
    "format": "invalid_tracking_number",
    "duplicate": "duplicate_tracking_number",
    "carrier": "unknown_carrier",
    "ship": "ship_refused",
    "state": "not_open",
    "lines": "unknown_line",
}
_REFUSAL_FIELDS = {"carrier": "carrier", "lines": "lines"}
# The refusals that count as the provider sending an invalid tracking number.
_INVALID_TRACKING = {"invalid_tracking_number", "duplicate_tracking_number", "carrier_mismatch"}


def api_parcel_ship(
    *,
    shipment: Shipment,
    provider: Provider,
    carrier_code: str,
    tracking_number: str,
    line_ids: list[int] | None,
) -> ShipOutcome:
    """Ship `shipment` (or only its lines `line_ids`; the others move to a new parcel) with
    `tracking_number` from `carrier_code`. All or nothing; a repeat with the same number changes
    nothing. A number the tracking door refuses is recorded for the provider's scorecard."""
    number = "".join(tracking_number.split()).upper()
    try:
        return _ship(
            shipment=shipment,
            provider=provider,
            carrier_code=carrier_code,
            number=number,
            line_ids=line_ids,
        )
    except TrackingRefused as refused:
        error = ProviderActionError(
            refused.message[:1].upper() + refused.message[1:] + ".",
            code=_REFUSAL_CODES.get(refused.code, "tracking_refused"),
            status=422,
            field=_REFUSAL_FIELDS.get(refused.code, "tracking_number"),
        )
    except ProviderActionError as refused:
        error = refused
    if error.code in _INVALID_TRACKING:
        # Kept although the ship is rolled back: the refusal is a fact the provider's
        # scorecard counts (invalid-tracking %).
        def record() -> None:
            with tenant_context(provider.tenant):
                provider_tracking_invalid_record(
                    shipment=shipment, tracking_number=number, reason=str(error)
                )

        keep_after_rollback(record)
    raise error


def _ship(
    *,
    shipment: Shipment,
    provider: Provider,
    carrier_code: str,
    number: str,
    line_ids: list[int] | None,
) -> ShipOutcome:
    with tenant_context(provider.tenant), transaction.atomic():
        parcel = provider_parcel_lock(shipment=shipment, provider=provider)
        if parcel.tracking_number and parcel.shipped_at is not None:
            if parcel.tracking_number == number:
                return ShipOutcome(shipment=parcel, remainder=None, units=0)
            raise ProviderActionError(
                f"Parcel {parcel.reference} already shipped with {parcel.tracking_number}.",
                code="already_shipped",
            )
        provider_parcel_check_open(parcel)
        # The provider's own rules first (carrier known, the one the parcel is booked with); then
        # the door every tracking number takes (format, check digit, unique per carrier).
        carrier = tracking_carrier(parcel=parcel, carrier_code=carrier_code)
        if not carrier.services.filter(is_active=True).exists():
            raise ProviderActionError(
                f"{carrier.name} has no active service here; ask the seller to add one.",
                code="no_service",
                status=422,
                field="carrier",
            )
        fields = []
        if parcel.acknowledged_at is None:
            parcel.acknowledged_at = timezone.now()  # shipping it accepts it
            fields.append("acknowledged_at")
        if parcel.intercept_state == InterceptState.FAILED:
            # Too late to intercept: the parcel left although the order was cancelled. Its
            # tracking is a fact being reported, so its units are committed, not refused.
            parcel.status, parcel.shipped_at = ShipmentStatus.SHIPPED, timezone.now()
            fields += ["status", "shipped_at"]
        if fields:
            parcel.save(update_fields=[*fields, "updated_at"])
        remainder = shipment_split_off(parcel=parcel, line_ids=line_ids) if line_ids else None
        parcel = shipment_tracking_accept(
            parcel, tracking_number=number, carrier_code=carrier.code, source=TrackingSource.API
        )
        units = parcel.lines.aggregate(units=Sum("quantity"))["units"] or 0
        return ShipOutcome(shipment=parcel, remainder=remainder, units=units)
