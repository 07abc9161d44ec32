"""What the provider API reads and writes.

Input serializers validate requests. Output is built by plain functions (`parcel_data`...)
rather than DRF serializers, which cost most of a list's time; the output serializers below
describe the same shapes for the OpenAPI schema, and the schemathesis run in the test suite
checks that the two agree.
"""

from __future__ import annotations

from datetime import datetime

from rest_framework import serializers

from inventory.models import StockLevel, SupplierItem
from logistics.models import (
    InterceptState,
    Provider,
    ProviderEvent,
    ProviderEventKind,
    Shipment,
    ShipmentStatus,
)
from logistics.providers import acknowledge_due, tracking_due


def iso(value: datetime | None) -> str | None:
    """A datetime as DRF writes it (ISO 8601, `Z` for UTC)."""
    if value is None:
        return None
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


# --- output -------------------------------------------------------------------------------------


def parcel_data(shipment: Shipment, *, provider: Provider, item_codes: dict[int, str]) -> dict:
    """The API's view of one parcel. Needs `order`, `order__shop`, `warehouse`,
    `service__carrier` selected and `lines__order_line__sku` prefetched; `item_codes` maps SKU
    ids to the provider's own item codes."""
    order = shipment.order
    service = shipment.service
    lines = []
    for line in shipment.lines.all():
        order_line = line.order_line
        sku = order_line.sku
        lines.append(
            {
                "id": line.pk,
                "sku": sku.code if sku is not None else order_line.seller_sku,
                "name": order_line.product_name or (sku.name if sku is not None else ""),
                "quantity": line.quantity,
                "supplier_item_code": item_codes.get(order_line.sku_id),
            }
        )
    return {
        "id": shipment.pk,
        "reference": shipment.reference,
        "status": shipment.status,
        "warehouse": shipment.warehouse.code,
        "order": {
            "id": order.platform_order_id,
            "platform": order.shop.platform,
            "placed_at": iso(order.placed_at),
            "paid_at": iso(order.paid_at),
            "buyer_note": order.buyer_note,
        },
        "service": (
            {"carrier": service.carrier.code, "code": service.code, "name": service.name}
            if service is not None
            else None
        ),
        "recipient": {
            "name": order.recipient_name,
            "phone": order.recipient_phone,
            "address_line1": order.address_line1,
            "address_line2": order.address_line2,
            "city": order.city,
            "state": order.state,
            "postal_code": order.postal_code,
            "country": order.country,
        },
        "lines": lines,
        "deadlines": {
            "ship_by": iso(order.ship_by),
            "tracking_by": iso(order.tracking_by),
            "acknowledge_by": iso(acknowledge_due(shipment=shipment, provider=provider)),
            "tracking_due": iso(tracking_due(shipment=shipment, provider=provider)),
        },
        "tracking_number": shipment.tracking_number,
        "dispatched_at": iso(shipment.dispatched_at),
        "acknowledged_at": iso(shipment.acknowledged_at),
        "rejected_at": iso(shipment.rejected_at),
        "reject_reason": shipment.reject_reason,
        "intercept_state": shipment.intercept_state,
        "shipped_at": iso(shipment.shipped_at),
        "created_at": iso(shipment.created_at),
        "updated_at": iso(shipment.updated_at),
    }


def item_codes_for(*, provider: Provider, sku_ids) -> dict[int, str]:
    """SKU id -> the provider's item code (its supplier's `SupplierItem`), one query."""
    if provider.supplier_id is None:
        return {}
    return dict(
        SupplierItem.objects.filter(
            supplier_id=provider.supplier_id, sku_id__in=set(sku_ids)
        ).values_list("sku_id", "supplier_item_code")
    )


def event_data(event: ProviderEvent) -> dict:
    return {
        "id": event.pk,
        "kind": event.kind,
        "note": event.note,
        "occurred_at": iso(event.occurred_at),
        "created_at": iso(event.created_at),
    }


def stock_data(level: StockLevel) -> dict:
    return {
        "warehouse": level.warehouse.code,
        "sku": level.sku.code,
        "on_hand": level.on_hand,
        "reserved": level.reserved,
        "free": level.on_hand - level.reserved,
        "updated_at": iso(level.updated_at),
    }


def sku_mapping_data(item: SupplierItem) -> dict:
    return {
        "id": item.pk,
        "sku": item.sku.code,
        "name": item.sku.name,
        "barcode": item.sku.barcode,
        "supplier_item_code": item.supplier_item_code,
        "min_order_quantity": item.min_order_quantity,
    }


# --- the same shapes, for the schema -------------------------------------------------------------


class ParcelOrderOut(serializers.Serializer):
    id = serializers.CharField(help_text="The platform's order id.")
    platform = serializers.CharField()
    placed_at = serializers.DateTimeField(allow_null=True)
    paid_at = serializers.DateTimeField(allow_null=True)
    buyer_note = serializers.CharField(allow_blank=True)


class ParcelServiceOut(serializers.Serializer):
    carrier = serializers.CharField(help_text="Carrier code to send with the tracking number.")
    code = serializers.CharField()
    name = serializers.CharField()


class RecipientOut(serializers.Serializer):
    name = serializers.CharField(allow_blank=True)
    phone = serializers.CharField(allow_blank=True)
    address_line1 = serializers.CharField(allow_blank=True)
    address_line2 = serializers.CharField(allow_blank=True)
    city = serializers.CharField(allow_blank=True)
    state = serializers.CharField(allow_blank=True)
    postal_code = serializers.CharField(allow_blank=True)
    country = serializers.CharField(allow_blank=True)


class ParcelLineOut(serializers.Serializer):
    id = serializers.IntegerField(help_text="Send these ids in `lines` to ship part of a parcel.")
    sku = serializers.CharField(allow_blank=True)
    name = serializers.CharField(allow_blank=True)
    quantity = serializers.IntegerField()
    supplier_item_code = serializers.CharField(allow_null=True, help_text="Your own item code.")


class DeadlinesOut(serializers.Serializer):
    ship_by = serializers.DateTimeField(allow_null=True)
    tracking_by = serializers.DateTimeField(allow_null=True)
    acknowledge_by = serializers.DateTimeField(allow_null=True)
    tracking_due = serializers.DateTimeField(allow_null=True)


class ParcelOut(serializers.Serializer):
    id = serializers.IntegerField()
    reference = serializers.CharField()
    status = serializers.ChoiceField(choices=ShipmentStatus.choices)
    warehouse = serializers.CharField()
    order = ParcelOrderOut()
    service = ParcelServiceOut(allow_null=True)
    recipient = RecipientOut()
    lines = ParcelLineOut(many=True)
    deadlines = DeadlinesOut()
    tracking_number = serializers.CharField(allow_blank=True)
    dispatched_at = serializers.DateTimeField(allow_null=True)
    acknowledged_at = serializers.DateTimeField(allow_null=True)
    rejected_at = serializers.DateTimeField(allow_null=True)
    reject_reason = serializers.CharField(allow_blank=True)
    intercept_state = serializers.ChoiceField(choices=InterceptState.choices, allow_blank=True)
    shipped_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    class Meta:
        ref_name = "Parcel"


class ShipOut(serializers.Serializer):
    parcel = ParcelOut()
    remainder = ParcelOut(allow_null=True, help_text="Where the lines not shipped now went.")
    units = serializers.IntegerField(help_text="Units that left stock now.")


class EventOut(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=ProviderEventKind.choices)
    note = serializers.CharField(allow_blank=True)
    occurred_at = serializers.DateTimeField()
    created_at = serializers.DateTimeField()


class StockLevelOut(serializers.Serializer):
    warehouse = serializers.CharField()
    sku = serializers.CharField()
    on_hand = serializers.IntegerField()
    reserved = serializers.IntegerField(help_text="Held for open orders; on hand can't go below.")
    free = serializers.IntegerField()
    updated_at = serializers.DateTimeField()


class StockSetOut(serializers.Serializer):
    levels = StockLevelOut(many=True)


class SkuMappingOut(serializers.Serializer):
    id = serializers.IntegerField()
    sku = serializers.CharField()
    name = serializers.CharField(allow_blank=True)
    barcode = serializers.CharField(allow_blank=True)
    supplier_item_code = serializers.CharField()
    min_order_quantity = serializers.IntegerField()


# --- input --------------------------------------------------------------------------------------


class AcknowledgeIn(serializers.Serializer):
    decision = serializers.ChoiceField(choices=[("accept", "accept"), ("reject", "reject")])
    reason = serializers.CharField(
        max_length=500, required=False, allow_blank=True, help_text="Required to reject."
    )

    def validate(self, attrs):
        if attrs["decision"] == "reject" and not attrs.get("reason", "").strip():
            raise serializers.ValidationError({"reason": "Say why you reject the parcel."})
        return attrs


class ShipIn(serializers.Serializer):
    tracking_number = serializers.CharField(max_length=64)
    carrier = serializers.CharField(max_length=32, help_text="The parcel's service.carrier.")
    lines = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**53),
        required=False,
        allow_empty=False,
        max_length=500,
        help_text="Line ids shipping now; leave out to ship the whole parcel.",
    )


class EventIn(serializers.Serializer):
    kind = serializers.ChoiceField(choices=ProviderEventKind.choices)
    note = serializers.CharField(
        max_length=500, required=False, allow_blank=True, help_text="Required for exception."
    )
    occurred_at = serializers.DateTimeField(required=False)


class InterceptIn(serializers.Serializer):
    result = serializers.ChoiceField(
        choices=[("intercepted", "intercepted"), ("too_late", "too_late")]
    )
    note = serializers.CharField(max_length=500, required=False, allow_blank=True)


class StockCountIn(serializers.Serializer):
    warehouse = serializers.CharField(max_length=32)
    sku = serializers.CharField(max_length=64)
    on_hand = serializers.IntegerField(min_value=0, max_value=2_000_000_000)


class StockSetIn(serializers.Serializer):
    counts = StockCountIn(many=True, allow_empty=False, max_length=1000)
