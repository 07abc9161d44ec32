"""Manual labels: the tracking number is typed on the parcel (or imported); tkerp only draws a
plain 4x6 label for it, and refuses while there is no tracking number to print."""

from __future__ import annotations

from decimal import Decimal

from logistics.labels.base import LabelError, LabelFormat, LabelSource, PurchasedLabel
from logistics.labels.drawing import LabelContent, label_pdf
from logistics.labels.labelapi import recipient_lines, sender_lines
from logistics.models import Shipment
from shops.platforms.http import RateLimit


class ManualLabelSource(LabelSource):
    """A label for the tracking number already on the parcel; nothing is bought."""

    name = "manual"

    @property
    def rate_limit(self) -> RateLimit:
        # Drawing only (about 5 ms a label); the limit just bounds the batch's threads.
        return RateLimit(per_second=4, burst=4)

    def buy(self, *, shipment: Shipment) -> PurchasedLabel:
        number = shipment.tracking_number.strip()
        if not number:
            raise LabelError(
                f"parcel {shipment.reference} has no tracking number yet: type it on the parcel "
                "(or import it) before printing its label",
                code="no_tracking",
            )
        service = shipment.service
        if service is None:
            raise LabelError(
                f"parcel {shipment.reference} has no carrier service: choose the service its "
                "tracking number belongs to",
                code="no_service",
            )
        content = LabelContent(
            carrier=service.carrier.name,
            service=service.name,
            tracking_number=number,
            sender=sender_lines(shipment),
            recipient=[line.upper() for line in recipient_lines(shipment)],
            reference=f"{shipment.reference} / order {shipment.order.platform_order_id}",
        )
        return PurchasedLabel(
            tracking_number=number,
            carrier_code=service.carrier.code,
            service_code=service.code,
            label_format=LabelFormat.PDF,
            label_bytes=label_pdf(content),
            cost=Decimal("0"),
        )

    def void(self, *, shipment: Shipment) -> None:
        """Nothing was bought: voiding only drops the drawn label and the typed number."""
