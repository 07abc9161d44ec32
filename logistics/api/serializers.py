"""What the provider API reads and writes.

Input serializers validate requests. Output is built by plain functions (`event_data`...)
rather than DRF serializers, which cost most of a list's time, and parcels are written as JSON
by PostgreSQL itself (`parcels_json`, the list's hot path); the output serializers below
describe the same shapes for the OpenAPI schema, and the schemathesis run in the test suite
checks that the two agree.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import cache

from django.conf import settings
from django.db import connection
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
from tkerp.db.open_transactions import FUNCTION as OPEN_TRANSACTIONS_FUNCTION


def iso(value: datetime | None) -> str | None:
    """A datetime as DRF writes it (ISO 8601, `Z` for UTC)."""
    if value is None:
        return None
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


# --- output -------------------------------------------------------------------------------------


def _sql_iso(column: str) -> str:
    """SQL writing the timestamptz `column` as `iso()` does: UTC, `Z`, microseconds only when
    there are some (NULL stays NULL). One `to_char` and a `replace`: a third of the CPU of
    testing the fraction first, and a page writes about ten times as many as it has parcels."""
    return (
        f"replace(to_char(({column} AT TIME ZONE 'UTC'), 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), "
        "'.000000Z', 'Z')"
    )


# A page of parcels in the API's shape, written by PostgreSQL in one query: each parcel's JSON
# (its order, shop, warehouse, service and carrier joined, its lines with the provider's own item
# codes aggregated) comes back as text and the list's body is those texts joined. Building the
# same page with the ORM (`.values()` and subqueries), psycopg's datetimes, Python dicts and
# json.dumps cost several times the CPU PostgreSQL spends here, on every request (bench/api.py
# --profile shows where a request's time goes). The SQL is formatted once; the tenant, the
# provider's supplier and its windows are parameters. Keys and values are those of `ParcelOut`
# (the schemathesis run checks every response against it).
_PARCEL_SQL = """
SELECT s.id, json_build_object(
    'id', s.id,
    'reference', s.reference,
    'status', s.status,
    'warehouse', w.code,
    'order', json_build_object(
        'id', o.platform_order_id,
        'platform', sh.platform,
        'placed_at', {o_placed_at},
        'paid_at', {o_paid_at},
        'buyer_note', o.buyer_note),
    'service', CASE WHEN cs.id IS NULL THEN NULL ELSE json_build_object(
        'carrier', c.code, 'code', cs.code, 'name', cs.name) END,
    'recipient', json_build_object(
        'name', o.recipient_name,
        'phone', o.recipient_phone,
        'address_line1', o.address_line1,
        'address_line2', o.address_line2,
        'city', o.city,
        'state', o.state,
        'postal_code', o.postal_code,
        'country', o.country),
    'lines', coalesce((
        SELECT json_agg(json_build_object(
                   'id', sl.id,
                   'sku', coalesce(nullif(k.code, ''), ol.seller_sku),
                   'name', coalesce(nullif(ol.product_name, ''), k.name, ''),
                   'quantity', sl.quantity,
                   'supplier_item_code', si.supplier_item_code
               ) ORDER BY sl.id)
          FROM {line} sl
          JOIN {order_line} ol ON ol.id = sl.order_line_id
          LEFT JOIN {sku} k ON k.id = ol.sku_id
          LEFT JOIN {supplier_item} si
            ON si.tenant_id = sl.tenant_id AND si.supplier_id = %(supplier)s
               AND si.sku_id = ol.sku_id
         WHERE sl.tenant_id = s.tenant_id AND sl.shipment_id = s.id), '[]'::json),
    'deadlines', json_build_object(
        'ship_by', {o_ship_by},
        'tracking_by', {o_tracking_by},
        'acknowledge_by', {acknowledge_by},
        'tracking_due', {tracking_due}),
    'tracking_number', s.tracking_number,
    'dispatched_at', {s_dispatched_at},
    'acknowledged_at', {s_acknowledged_at},
    'rejected_at', {s_rejected_at},
    'reject_reason', s.reject_reason,
    'intercept_state', s.intercept_state,
    'shipped_at', {s_shipped_at},
    'created_at', {s_created_at},
    'updated_at', {s_updated_at}
)::text
  FROM {shipment} s
  JOIN {warehouse} w ON w.id = s.warehouse_id
  JOIN {order} o ON o.id = s.order_id
  JOIN {shop} sh ON sh.id = o.shop_id
  LEFT JOIN {service} cs ON cs.id = s.service_id
  LEFT JOIN {carrier} c ON c.id = cs.carrier_id
 WHERE s.tenant_id = %(tenant)s"""


@cache
def _parcel_sql() -> str:
    from inventory.models import Sku, Warehouse
    from logistics.models import Carrier, CarrierService
    from orders.models import Order, OrderLine
    from shops.models import Shop

    tables = {
        "line": ShipmentLine,
        "order_line": OrderLine,
        "sku": Sku,
        "supplier_item": SupplierItem,
        "shipment": Shipment,
        "warehouse": Warehouse,
        "order": Order,
        "shop": Shop,
        "service": CarrierService,
        "carrier": Carrier,
    }
    names = {name: f'"{model._meta.db_table}"' for name, model in tables.items()}
    times = {
        f"{alias}_{column}": _sql_iso(f"{alias}.{column}")
        for alias, columns in (
            ("o", ("placed_at", "paid_at", "ship_by", "tracking_by")),
            ("s", ("dispatched_at", "acknowledged_at", "rejected_at", "shipped_at")),
            ("s", ("created_at", "updated_at")),
        )
        for column in columns
    }
    times["acknowledge_by"] = _sql_iso("(s.dispatched_at + %(confirm)s * interval '1 minute')")
    times["tracking_due"] = _sql_iso("(s.acknowledged_at + %(tracking)s * interval '1 minute')")
    return _PARCEL_SQL.format(**names, **times)


# The parcel queries are prepared once per database connection (PREPARE outlives a rolled-back
# transaction, a new connection prepares them again): planning their joins cost PostgreSQL about
# a quarter of what running them does. A pooler that resets sessions between transactions
# (pgbouncer in transaction mode) must keep prepared statements (pgbouncer 1.21+).
_PARAM_TYPES = {
    "tenant": "bigint",
    "supplier": "bigint",
    "confirm": "integer",
    "tracking": "integer",
    "ids": "bigint[]",
    "provider": "bigint",
    "status": "text",
    "since": "timestamptz",
    "stamp": "timestamptz",
    "pk": "bigint",
    "limit": "integer",
    "settle": "double precision",
}


def _prepared(cursor, name: str, sql: str, params: dict) -> None:
    """Run `sql` (with `%(name)s` parameters, all of them in `params`) as the prepared statement
    `name` of this connection, preparing it first on a connection that has not."""
    names = [param for param in _PARAM_TYPES if f"%({param})s" in sql]
    database = connection.connection  # the driver's connection: a new one after a reconnect
    prepared = database.__dict__.setdefault("tkerp_prepared", set())
    if name not in prepared:
        for number, param in enumerate(names, 1):
            sql = sql.replace(f"%({param})s", f"${number}")
        types = ", ".join(_PARAM_TYPES[param] for param in names)
        cursor.execute(f"PREPARE {name} ({types}) AS {sql}")
        prepared.add(name)
    cursor.execute(f"EXECUTE {name} ({', '.join(['%s'] * len(names))})", [params[n] for n in names])


def _provider_params(provider: Provider) -> dict:
    return {
        "tenant": provider.tenant_id,
        "supplier": provider.supplier_id,
        "confirm": provider.confirm_within_minutes,
        "tracking": provider.tracking_within_minutes,
    }


def parcels_json(ids: list[int], *, provider: Provider) -> list[str]:
    """The parcels `ids` (already chosen among the provider's, in its tenant), each as its JSON
    text in the API's shape (`ParcelOut`), in the order of `ids`: one query, whatever the page
    holds."""
    if not ids:
        return []
    with connection.cursor() as cursor:
        _prepared(
            cursor,
            "tkerp_api_parcels",
            _parcel_sql() + " AND s.id = ANY(%(ids)s)",
            {**_provider_params(provider), "ids": list(ids)},
        )
        texts = dict(cursor.fetchall())
    return [texts[pk] for pk in ids if pk in texts]


#: The feed's horizon: a page holds only changes stamped before every transaction still open on
#: the database began (`tkerp.db.open_transactions`: a change stamped earlier is committed or
#: never will be), and `TKERP_API_FEED_SETTLE_SECONDS` before that, for a stamp taken just
#: before its transaction's first statement, or a web host's clock a little behind the
#: database's. Without it, a poller that moved past a newer change committed first (a split of
#: 500 orders takes a second) would never see the older one.
#: A subquery, so that PostgreSQL asks once a page (an InitPlan), not once a row.
_FEED_HORIZON_SQL = (
    f"(SELECT LEAST(statement_timestamp(), {OPEN_TRANSACTIONS_FUNCTION}()) "
    "- make_interval(secs => %(settle)s))"
)


@cache
def _parcel_page_sql(*, reverse: bool, after: bool, status: bool, since: bool) -> str:
    """A page of the provider's parcels chosen and written in one statement: the page's ids by
    `(updated_at, id)` from the provider's warehouses (index `shipment_warehouse_updated`), then
    each as `_parcel_sql` writes it, with its position for the cursor. One text per combination
    of filters, so that each plans with the index conditions it has."""
    from inventory.models import Warehouse

    sign, direction = ("<", "DESC") if reverse else (">", "ASC")
    conditions = [
        "s.tenant_id = %(tenant)s",
        "w.tenant_id = %(tenant)s",
        "w.provider_id = %(provider)s",
        "s.dispatched_at IS NOT NULL",  # as `provider_parcels`: handed over only
        f"s.updated_at < {_FEED_HORIZON_SQL}",
        "s.status = %(status)s" if status else "",
        "s.updated_at >= %(since)s" if since else "",
        f"(s.updated_at, s.id) {sign} (%(stamp)s, %(pk)s)" if after else "",
    ]
    page = f"""
WITH page AS MATERIALIZED (
    SELECT s.id, s.updated_at
      FROM "{Shipment._meta.db_table}" s
      JOIN "{Warehouse._meta.db_table}" w ON w.id = s.warehouse_id
     WHERE {" AND ".join(filter(None, conditions))}
     ORDER BY s.updated_at {direction}, s.id {direction}
     LIMIT %(limit)s)
"""
    parcels = _parcel_sql().replace(
        "SELECT s.id, json_build_object(",
        f"SELECT s.id, {_sql_iso('s.updated_at')}, json_build_object(",
    )
    shipment = f'"{Shipment._meta.db_table}" s'
    parcels = parcels.replace(
        f"\n  FROM {shipment}\n", f"\n  FROM page\n  JOIN {shipment} ON s.id = page.id\n", 1
    )
    return f"{page}{parcels} ORDER BY page.updated_at {direction}, page.id {direction}"


def parcels_page_json(
    *,
    provider: Provider,
    limit: int,
    reverse: bool = False,
    position: tuple[datetime, int] | None = None,
    status: str | None = None,
    updated_since: datetime | None = None,
) -> list[tuple[int, str, str]]:
    """Up to `limit` of the provider's parcels after `position` (or, with `reverse`, before it,
    nearest first), oldest change first, as (id, updated_at as ISO 8601 text, the parcel's JSON
    text): one query."""
    variant = {
        "reverse": reverse,
        "after": position is not None,
        "status": status is not None,
        "since": updated_since is not None,
    }
    name = "tkerp_api_page_" + "".join(str(int(flag)) for flag in variant.values())
    stamp, pk = position or (None, None)
    params = {
        **_provider_params(provider),
        "provider": provider.pk,
        "status": status,
        "since": updated_since,
        "stamp": stamp,
        "pk": pk,
        "limit": limit,
        "settle": settings.TKERP_API_FEED_SETTLE_SECONDS,
    }
    with connection.cursor() as cursor:
        _prepared(cursor, name, _parcel_page_sql(**variant), params)
        return cursor.fetchall()


def parcels_data(ids: list[int], *, provider: Provider) -> list[dict]:
    """The API's view of parcels `ids`, as data (a parcel inside a POST's answer)."""
    return [json.loads(text) for text in parcels_json(ids, provider=provider)]


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
