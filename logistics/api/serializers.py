"""What the provider API reads and writes.

Input serializers validate requests. Output is built by plain functions (`parcels_data`...)
rather than DRF serializers, which cost most of a list's time; the output serializers below
describe the same shapes for the OpenAPI schema, and the schemathesis run in the test suite
checks that the two agree.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.contrib.postgres.aggregates import JSONBAgg
from django.db.models import OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce, JSONObject, NullIf
from rest_framework import serializers

from inventory.models import StockLevel, SupplierItem
from logistics.models import (
    InterceptState,
    ParcelEvent,
    ParcelEventKind,
    Provider,
    Shipment,
    ShipmentLine,
    ShipmentStatus,
)


def iso(value: datetime | None) -> str | None:
    """A datetime as DRF writes it (ISO 8601, `Z` for UTC)."""
    if value is None:
        return None
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


# --- output -------------------------------------------------------------------------------------


# The columns a parcel's representation reads, fetched as plain rows (`.values()`): building
# model instances for a page of parcels, their orders, shops, warehouses, services, lines and
# SKUs cost most of the list's time.
PARCEL_COLUMNS = (
    "id",
    "reference",
    "status",
    "warehouse__code",
    "order__platform_order_id",
    "order__shop__platform",
    "order__placed_at",
    "order__paid_at",
    "order__buyer_note",
    "service_id",
    "service__carrier__code",
    "service__code",
    "service__name",
    "order__recipient_name",
    "order__recipient_phone",
    "order__address_line1",
    "order__address_line2",
    "order__city",
    "order__state",
    "order__postal_code",
    "order__country",
    "order__ship_by",
    "order__tracking_by",
    "tracking_number",
    "dispatched_at",
    "acknowledged_at",
    "rejected_at",
    "reject_reason",
    "intercept_state",
    "shipped_at",
    "created_at",
    "updated_at",
)


def parcel_rows(queryset: QuerySet[Shipment], *, provider: Provider) -> QuerySet:
    """`queryset`'s parcels as rows of `PARCEL_COLUMNS` plus `lines_json`, their lines already
    in the API's shape (the provider's item code included), aggregated by PostgreSQL: one query
    for a page of parcels, whatever it holds."""
    item_code = SupplierItem.objects.filter(
        supplier_id=provider.supplier_id, sku_id=OuterRef("order_line__sku_id")
    ).values("supplier_item_code")[:1]
    lines = (
        ShipmentLine.objects.filter(shipment_id=OuterRef("pk"))
        .order_by()
        .values("shipment_id")
        .annotate(
            lines=JSONBAgg(
                JSONObject(
                    id="id",
                    sku=Coalesce(
                        NullIf("order_line__sku__code", Value("")), "order_line__seller_sku"
                    ),
                    name=Coalesce(
                        NullIf("order_line__product_name", Value("")),
                        "order_line__sku__name",
                        Value(""),
                    ),
                    quantity="quantity",
                    supplier_item_code=Subquery(item_code),
                ),
                order_by="id",
            )
        )
        .values("lines")
    )
    return queryset.values(*PARCEL_COLUMNS, lines_json=Subquery(lines))


def parcels_data(rows, *, provider: Provider) -> list[dict]:
    """The API's view of parcels, from `parcel_rows` (the list's page, or one parcel)."""
    confirm = timedelta(minutes=provider.confirm_within_minutes)
    tracking = timedelta(minutes=provider.tracking_within_minutes)
    return [
        {
            "id": row["id"],
            "reference": row["reference"],
            "status": row["status"],
            "warehouse": row["warehouse__code"],
            "order": {
                "id": row["order__platform_order_id"],
                "platform": row["order__shop__platform"],
                "placed_at": iso(row["order__placed_at"]),
                "paid_at": iso(row["order__paid_at"]),
                "buyer_note": row["order__buyer_note"],
            },
            "service": (
                {
                    "carrier": row["service__carrier__code"],
                    "code": row["service__code"],
                    "name": row["service__name"],
                }
                if row["service_id"] is not None
                else None
            ),
            "recipient": {
                "name": row["order__recipient_name"],
                "phone": row["order__recipient_phone"],
                "address_line1": row["order__address_line1"],
                "address_line2": row["order__address_line2"],
                "city": row["order__city"],
                "state": row["order__state"],
                "postal_code": row["order__postal_code"],
                "country": row["order__country"],
            },
            "lines": row["lines_json"] or [],
            "deadlines": {
                "ship_by": iso(row["order__ship_by"]),
                "tracking_by": iso(row["order__tracking_by"]),
                "acknowledge_by": iso(row["dispatched_at"] and row["dispatched_at"] + confirm),
                "tracking_due": iso(row["acknowledged_at"] and row["acknowledged_at"] + tracking),
            },
            "tracking_number": row["tracking_number"],
            "dispatched_at": iso(row["dispatched_at"]),
            "acknowledged_at": iso(row["acknowledged_at"]),
            "rejected_at": iso(row["rejected_at"]),
            "reject_reason": row["reject_reason"],
            "intercept_state": row["intercept_state"],
            "shipped_at": iso(row["shipped_at"]),
            "created_at": iso(row["created_at"]),
            "updated_at": iso(row["updated_at"]),
        }
        for row in rows
    ]


def event_data(event: ParcelEvent) -> dict:
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
    kind = serializers.ChoiceField(choices=ParcelEventKind.choices)
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
    kind = serializers.ChoiceField(choices=ParcelEventKind.choices)
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
