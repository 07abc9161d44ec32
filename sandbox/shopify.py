"""Shopify sandbox: the REST Admin API under /sandbox/shopify/admin/api/<version>/.

What it reproduces (shared/platform-apis.md §2):
- `X-Shopify-Access-Token` auth. The real host names the store (`<shop>.myshopify.com`); here
  the token does, since every store shares the sandbox host.
- The leaky bucket, 40 requests leaking 2/s per store: 429 with `Retry-After: 2.0`, and
  `X-Shopify-Shop-Api-Call-Limit: n/40` on every answer.
- `orders.json` with `status` (open by default), `ids`, created/updated min/max (inclusive),
  `order`, `fields`, and cursor pagination through the `Link` header: `page_info` is opaque and
  carries the filters, so a page request with any filter besides `limit`/`fields` is a 400.
- Fulfillment orders (one per order, at the store's location) and `fulfillments.json`, recorded
  as `SandboxShipment`s; `update_tracking.json`; `orders/{id}/cancel.json`.
- `inventory_levels/set.json` and `inventory_levels.json` on `SandboxProduct`s, where the
  inventory item id is the product's `sku_id` and the location id the store's `warehouse_id`.
  Variant ids in generated orders are the same number (real stores use two different ids).
- Webhooks signed with base64 HMAC-SHA256 of the raw body under the app secret.

Fulfillment order ids are derived from order ids (and their line ids from line item ids) by a
fixed offset, so no extra state is needed to find the order behind one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import wraps
from urllib.parse import urlencode, urlsplit

import httpx
from django.db import transaction
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import re_path
from django.utils import timezone as django_timezone
from django.utils.text import slugify
from django.views.decorators.csrf import csrf_exempt

from sandbox import base
from sandbox.base import (
    CARRIER_NAMES,
    OrderDraft,
    SandboxInputError,
    SandboxPlatform,
    injected_fault,
    next_number,
    order_products,
    plain_fault_response,
    throttled,
    tracking_refusal,
    upsert_indexed,
)
from sandbox.models import (
    SandboxCancellation,
    SandboxOrder,
    SandboxProduct,
    SandboxShipment,
    SandboxStore,
    SandboxWebhook,
)
from sandbox.people import BUYER_NOTES, CANCEL_REASONS, STATE_NAMES, fake_buyer
from shops.platforms.http import SANDBOX_HOST, sandbox_transport

API_VERSION = "2025-01"
ORDER_ID_BASE = 5_600_000_000_000
LINE_ID_BASE = 13_900_000_000_000
FULFILLMENT_ID_BASE = 4_800_000_000_000
CUSTOMER_ID_BASE = 7_100_000_000_000
# Fulfillment order id = order id + offset; fulfillment order line id = line item id + offset.
FULFILLMENT_ORDER_OFFSET = 1_000_000_000_000
CANCEL_REQUEST_TAG = "cancel requested"
RETRY_AFTER = "2.0"
MAX_LIMIT = 250
# The shop's timezone: Shopify renders timestamps in it, with the offset.
SHOP_TZ = timezone(timedelta(hours=-5))
CENT = Decimal("0.01")
FINANCIAL_STATUSES = {
    "pending",
    "authorized",
    "partially_paid",
    "paid",
    "partially_refunded",
    "refunded",
    "voided",
}
# A few states' combined sales tax, enough for realistic totals.
TAX_RATES = {"CA": "0.0725", "NY": "0.08875", "TX": "0.0625", "WA": "0.065", "IL": "0.0625"}
SHIPPING_METHODS = [("Standard Shipping", "4.99"), ("Economy", "3.99"), ("Express", "12.99")]
WEBHOOK_TOPICS = {
    # Generic names a caller may use -> Shopify topics.
    "order_created": "orders/create",
    "order_updated": "orders/updated",
    "order_cancelled": "orders/cancelled",
    "order_paid": "orders/paid",
}


# --- small helpers ----------------------------------------------------------------------------


def _as_int(value: str) -> int | str:
    """Shopify ids are numbers; a non-numeric id (a seller SKU used as one) stays text."""
    return int(value) if str(value).isdigit() else value


def _money(value: Decimal) -> str:
    return str(value.quantize(CENT, rounding=ROUND_HALF_UP))


def _ts(value: datetime) -> str:
    """A Shopify timestamp: seconds, in the shop's timezone, with the offset."""
    return value.astimezone(SHOP_TZ).replace(microsecond=0).isoformat()


def _now() -> datetime:
    return django_timezone.now().replace(microsecond=0)


def _parse_ts(value) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.astimezone(UTC)


def _price_set(amount: str, currency: str) -> dict:
    money = {"amount": amount, "currency_code": currency}
    return {"shop_money": money, "presentment_money": dict(money)}


def _json_body(request: HttpRequest):
    try:
        return json.loads(request.body or b"null")
    except ValueError:
        return None


def _errors(errors, status: int) -> JsonResponse:
    return JsonResponse({"errors": errors}, status=status)


def _order_state(payload: dict) -> str:
    """Shopify's `status` filter values: open, closed or cancelled."""
    if payload.get("cancelled_at"):
        return "cancelled"
    if payload.get("closed_at"):
        return "closed"
    return "open"


def _calls_used(store: SandboxStore) -> int:
    """How full the store's leaky bucket is, for X-Shopify-Shop-Api-Call-Limit."""
    bucket = base._buckets.get((store.pk, "rest"))
    if bucket is None:
        return 0
    return max(0, min(store.rate_burst, store.rate_burst - int(bucket.tokens)))


# --- the API views ----------------------------------------------------------------------------


def shopify_api(*methods: str):
    """Auth, faults, the leaky bucket and Shopify's headers around one REST endpoint."""

    def decorate(view):
        @csrf_exempt
        @wraps(view)
        def wrapper(request: HttpRequest, version: str, **kwargs) -> HttpResponse:
            if request.method not in methods:
                return _errors("Not Acceptable", 406)
            token = request.headers.get("X-Shopify-Access-Token", "")
            store = (
                SandboxStore.objects.filter(platform="shopify", access_token=token).first()
                if token
                else None
            )
            fault = injected_fault(store) if store is not None else None
            if store is None or fault == "badsign":
                return _errors(
                    "[API] Invalid API key or access token (unrecognized login or wrong password)",
                    401,
                )
            limit_header = f"{store.rate_burst}/{store.rate_burst}"
            if fault == "429" or throttled(store, "rest"):
                response = _errors(
                    "Exceeded 2 calls per second for api client. Reduce request rates to resume "
                    "uninterrupted service.",
                    429,
                )
                response["Retry-After"] = RETRY_AFTER
                response["X-Shopify-Shop-Api-Call-Limit"] = limit_header
                return response
            if fault:
                plain = plain_fault_response(fault)
                if plain is not None:
                    return plain
            response = view(request, store, **kwargs)
            response["X-Shopify-Shop-Api-Call-Limit"] = f"{_calls_used(store)}/{store.rate_burst}"
            response["X-Shopify-API-Version"] = version
            response["X-Request-Id"] = str(uuid.uuid4())
            return response

        return wrapper

    return decorate


ORDER_FILTERS = {
    "ids",
    "status",
    "created_at_min",
    "created_at_max",
    "updated_at_min",
    "updated_at_max",
    "financial_status",
    "fulfillment_status",
    "order",
    "since_id",
}
SORT_FIELDS = {"updated_at": "updated", "created_at": "created"}


def _encode_cursor(data: dict) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(token: str) -> dict | None:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
    except (ValueError, TypeError):
        return None
    return data if isinstance(data, dict) and {"f", "k", "d"} <= data.keys() else None


def _order_queryset(store: SandboxStore, filters: dict):
    """The orders matching Shopify's list filters (validated by the caller)."""
    orders = SandboxOrder.objects.filter(store=store)
    status = filters.get("status", "open")
    if status != "any":
        orders = orders.filter(status=status)
    if filters.get("ids"):
        orders = orders.filter(order_id__in=filters["ids"].split(","))
    for name, lookup in (
        ("created_at_min", "created__gte"),
        ("created_at_max", "created__lte"),
        ("updated_at_min", "updated__gte"),
        ("updated_at_max", "updated__lte"),
    ):
        if filters.get(name):
            orders = orders.filter(**{lookup: _parse_ts(filters[name])})
    if filters.get("financial_status") and filters["financial_status"] != "any":
        orders = orders.filter(payload__financial_status=filters["financial_status"])
    fulfillment = filters.get("fulfillment_status")
    if fulfillment in ("shipped", "fulfilled"):
        orders = orders.filter(payload__fulfillment_status="fulfilled")
    elif fulfillment == "partial":
        orders = orders.filter(payload__fulfillment_status="partial")
    elif fulfillment in ("unshipped", "unfulfilled"):
        orders = orders.filter(payload__fulfillment_status__isnull=True)
    return orders


def _validate_filters(filters: dict) -> dict | None:
    """Errors in Shopify's {field: message} shape, or None."""
    errors = {}
    if filters.get("status", "open") not in {"open", "closed", "cancelled", "any"}:
        errors["status"] = "is invalid"
    for name in ("created_at_min", "created_at_max", "updated_at_min", "updated_at_max"):
        if filters.get(name) and _parse_ts(filters[name]) is None:
            errors[name] = "must be an ISO 8601 date with a UTC offset"
    ids = filters.get("ids")
    if ids and not all(part.isdigit() for part in ids.split(",")):
        errors["ids"] = "must be a comma-separated list of order ids"
    elif ids and len(ids.split(",")) > MAX_LIMIT:
        errors["ids"] = f"at most {MAX_LIMIT} ids"
    field, _, direction = (filters.get("order") or "created_at desc").partition(" ")
    if field not in SORT_FIELDS or (direction or "asc") not in ("asc", "desc"):
        errors["order"] = "is invalid"
    return errors or None


def _render_order(payload: dict, fields: list[str] | None) -> dict:
    if not fields:
        return payload
    return {key: value for key, value in payload.items() if key in fields}


@shopify_api("GET")
def orders_list(request: HttpRequest, store: SandboxStore) -> HttpResponse:
    params = request.GET
    try:
        limit = int(params.get("limit", 50))
    except ValueError:
        return _errors({"limit": "must be an integer"}, 400)
    if not 1 <= limit <= MAX_LIMIT:
        return _errors({"limit": f"must be between 1 and {MAX_LIMIT}"}, 400)
    fields = [f for f in params.get("fields", "").split(",") if f] or None
    page_info = params.get("page_info")
    if page_info:
        extra = sorted(set(params) - {"page_info", "limit", "fields"})
        if extra:
            # Shopify's cursor carries the filters; others next to it are refused.
            return _errors(
                {"page_info": f"cannot be combined with other parameters ({', '.join(extra)})"},
                400,
            )
        cursor = _decode_cursor(page_info)
        if cursor is None:
            return _errors({"page_info": "Invalid value."}, 400)
        filters, key, direction = cursor["f"], cursor["k"], cursor["d"]
    else:
        filters = {name: params[name] for name in ORDER_FILTERS if params.get(name)}
        invalid = _validate_filters(filters)
        if invalid:
            return _errors(invalid, 400)
        key, direction = None, "next"
    sort_field, _, sort_direction = (filters.get("order") or "created_at desc").partition(" ")
    column = SORT_FIELDS[sort_field]
    descending = (sort_direction or "asc") == "desc"
    # Walking backwards (rel="previous") reverses the order, then the page is flipped back.
    reverse = descending != (direction == "prev")
    orders = _order_queryset(store, filters)
    if key is not None:
        value, pk = _parse_ts(key[0]), int(key[1])
        beyond = "lt" if reverse else "gt"
        orders = orders.filter(
            Q(**{f"{column}__{beyond}": value}) | Q(**{column: value, f"pk__{beyond}": pk})
        )
    ordering = [f"-{column}", "-pk"] if reverse else [column, "pk"]
    rows = list(orders.order_by(*ordering)[: limit + 1])
    has_more = len(rows) > limit
    rows = rows[:limit]
    if direction == "prev":
        rows.reverse()
    links = []
    if rows:
        url = request.build_absolute_uri(request.path)

        def link(row: SandboxOrder, rel: str, cursor_direction: str) -> str:
            token = _encode_cursor(
                {
                    "f": filters,
                    "k": [getattr(row, column).isoformat(), row.pk],
                    "d": cursor_direction,
                }
            )
            query = {"limit": limit, "page_info": token}
            if fields:
                query["fields"] = ",".join(fields)
            return f'<{url}?{urlencode(query)}>; rel="{rel}"'

        more_before = key is not None if direction == "next" else has_more
        more_after = has_more if direction == "next" else True
        if more_before:
            links.append(link(rows[0], "previous", "prev"))
        if more_after:
            links.append(link(rows[-1], "next", "next"))
    response = JsonResponse({"orders": [_render_order(row.payload, fields) for row in rows]})
    if links:
        response["Link"] = ", ".join(links)
    return response


def _store_order(store: SandboxStore, order_id: str, *, lock: bool = False) -> SandboxOrder | None:
    orders = SandboxOrder.objects.filter(store=store, order_id=order_id)
    if lock:
        orders = orders.select_for_update()
    return orders.first()


@shopify_api("GET")
def order_detail(request: HttpRequest, store: SandboxStore, order_id: str) -> HttpResponse:
    order = _store_order(store, order_id)
    if order is None:
        return _errors("Not Found", 404)
    fields = [f for f in request.GET.get("fields", "").split(",") if f] or None
    return JsonResponse({"order": _render_order(order.payload, fields)})


def _fulfillment_order(store: SandboxStore, order: SandboxOrder) -> dict:
    """The order's single fulfillment order, at the store's location, in Shopify's shape."""
    payload = order.payload
    fulfillment_order_id = int(order.order_id) + FULFILLMENT_ORDER_OFFSET
    lines = payload.get("line_items") or []
    remaining = sum(int(line.get("fulfillable_quantity") or 0) for line in lines)
    total = sum(int(line.get("quantity") or 0) for line in lines)
    if payload.get("cancelled_at"):
        status = "cancelled"
    elif remaining == 0:
        status = "closed"
    elif remaining < total:
        status = "in_progress"
    else:
        status = "open"
    address = payload.get("shipping_address") or {}
    return {
        "id": fulfillment_order_id,
        "order_id": int(order.order_id),
        "assigned_location_id": int(store.warehouse_id) if store.warehouse_id else None,
        "request_status": "unsubmitted",
        "status": status,
        "fulfill_at": payload.get("created_at"),
        "supported_actions": ["create_fulfillment"] if status in ("open", "in_progress") else [],
        "destination": {
            key: address.get(key)
            for key in ("first_name", "last_name", "address1", "address2", "city", "zip")
        },
        "delivery_method": {"method_type": "shipping"},
        "line_items": [
            {
                "id": int(line["id"]) + FULFILLMENT_ORDER_OFFSET,
                "fulfillment_order_id": fulfillment_order_id,
                "line_item_id": line["id"],
                "inventory_item_id": line.get("variant_id"),
                "variant_id": line.get("variant_id"),
                "quantity": int(line.get("quantity") or 0),
                "fulfillable_quantity": int(line.get("fulfillable_quantity") or 0),
            }
            for line in lines
        ],
        "created_at": payload.get("created_at"),
        "updated_at": payload.get("updated_at"),
    }


@shopify_api("GET")
def fulfillment_orders(request: HttpRequest, store: SandboxStore, order_id: str) -> HttpResponse:
    order = _store_order(store, order_id)
    if order is None:
        return _errors("Not Found", 404)
    return JsonResponse({"fulfillment_orders": [_fulfillment_order(store, order)]})


@shopify_api("GET")
def order_fulfillments(request: HttpRequest, store: SandboxStore, order_id: str) -> HttpResponse:
    order = _store_order(store, order_id)
    if order is None:
        return _errors("Not Found", 404)
    return JsonResponse({"fulfillments": order.payload.get("fulfillments") or []})


def _touch(order: SandboxOrder, now: datetime) -> None:
    order.payload["updated_at"] = _ts(now)
    order.updated = now
    order.status = _order_state(order.payload)
    order.save(update_fields=["payload", "updated", "status"])


def _tracking(info) -> dict:
    info = info if isinstance(info, dict) else {}
    number = str(info.get("number") or "")
    url = str(info.get("url") or "")
    return {
        "tracking_company": info.get("company") or None,
        "tracking_number": number or None,
        "tracking_numbers": [number] if number else [],
        "tracking_url": url or None,
        "tracking_urls": [url] if url else [],
    }


@shopify_api("POST")
def fulfillment_create(request: HttpRequest, store: SandboxStore) -> HttpResponse:
    body = _json_body(request)
    fulfillment = body.get("fulfillment") if isinstance(body, dict) else None
    groups = fulfillment.get("line_items_by_fulfillment_order") if fulfillment else None
    if not isinstance(groups, list) or not groups:
        return _errors({"fulfillment": "Required parameter missing or invalid"}, 400)
    order_ids = set()
    for group in groups:
        try:
            order_ids.add(str(int(group["fulfillment_order_id"]) - FULFILLMENT_ORDER_OFFSET))
        except (KeyError, TypeError, ValueError):
            return _errors({"fulfillment_order_id": "Required parameter missing or invalid"}, 400)
    if len(order_ids) != 1:
        return _errors(["All fulfillment orders must belong to the same order."], 422)
    now = _now()
    with transaction.atomic():
        order = _store_order(store, order_ids.pop(), lock=True)
        if order is None:
            return _errors("Not Found", 404)
        fulfillment_order = _fulfillment_order(store, order)
        if fulfillment_order["status"] not in ("open", "in_progress"):
            return _errors(
                [
                    f"Fulfillment order {fulfillment_order['id']} has an unfulfillable status= "
                    f"{fulfillment_order['status']}."
                ],
                422,
            )
        by_fo_line = {item["id"]: item for item in fulfillment_order["line_items"]}
        requested: dict[int, int] = {}
        for group in groups:
            items = group.get("fulfillment_order_line_items")
            if not items:  # none listed: everything still open on it
                for item in fulfillment_order["line_items"]:
                    if item["fulfillable_quantity"] > 0:
                        requested[item["id"]] = item["fulfillable_quantity"]
                continue
            for item in items:
                try:
                    fo_line_id, quantity = int(item["id"]), int(item["quantity"])
                except (KeyError, TypeError, ValueError):
                    return _errors({"fulfillment_order_line_items": "is invalid"}, 400)
                requested[fo_line_id] = requested.get(fo_line_id, 0) + quantity
        for fo_line_id, quantity in requested.items():
            line = by_fo_line.get(fo_line_id)
            if line is None or quantity <= 0 or quantity > line["fulfillable_quantity"]:
                return _errors(["Invalid fulfillment order line item quantity requested."], 422)
        info = fulfillment.get("tracking_info") or {}
        if isinstance(info, dict) and info.get("number"):
            refusal = tracking_refusal(
                store, carrier=str(info.get("company") or ""), number=str(info["number"])
            )
            if refusal:
                return _errors({"tracking_number": [refusal]}, 422)
        shipped = {by_fo_line[k]["line_item_id"]: q for k, q in requested.items()}
        shipment = _fulfil(
            store,
            order,
            shipped,
            _tracking(fulfillment.get("tracking_info")),
            notify_customer=bool(fulfillment.get("notify_customer", False)),
            now=now,
        )
    return JsonResponse({"fulfillment": shipment.payload}, status=201)


def _fulfil(
    store: SandboxStore,
    order: SandboxOrder,
    shipped: dict,
    tracking: dict,
    *,
    notify_customer: bool,
    now: datetime,
) -> SandboxShipment:
    """Record one fulfillment of `shipped` ({line item id: quantity}) on the locked `order`:
    the lines' fulfillable quantities drop, the fulfillment is added to the order and kept as
    a `SandboxShipment` (its payload is the fulfillment as the API shows it)."""
    fulfillment_id = FULFILLMENT_ID_BASE + next_number(store)
    payload = order.payload
    for line in payload["line_items"]:
        quantity = shipped.get(line["id"])
        if quantity:
            line["fulfillable_quantity"] = int(line["fulfillable_quantity"]) - quantity
            line["fulfillment_status"] = (
                "fulfilled" if line["fulfillable_quantity"] == 0 else "partial"
            )
    open_units = sum(int(line["fulfillable_quantity"]) for line in payload["line_items"])
    payload["fulfillment_status"] = "fulfilled" if open_units == 0 else "partial"
    record = {
        "id": fulfillment_id,
        "order_id": int(order.order_id),
        "name": f"{payload.get('name', '#')}.{len(payload.get('fulfillments') or []) + 1}",
        "status": "success",
        "service": "manual",
        "shipment_status": None,
        "location_id": int(store.warehouse_id) if store.warehouse_id else None,
        "notify_customer": notify_customer,
        **tracking,
        "line_items": [
            {**line, "quantity": shipped[line["id"]]}
            for line in payload["line_items"]
            if line["id"] in shipped
        ],
        "created_at": _ts(now),
        "updated_at": _ts(now),
    }
    payload.setdefault("fulfillments", []).append(record)
    _touch(order, now)
    return SandboxShipment.objects.create(
        store=store,
        order_id=order.order_id,
        package_id=str(fulfillment_id),
        tracking_number=tracking["tracking_number"] or "",
        provider_id=tracking["tracking_company"] or "",
        line_ids=[str(line_id) for line_id in shipped],
        payload=record,
    )


@shopify_api("POST")
def fulfillment_update_tracking(
    request: HttpRequest, store: SandboxStore, fulfillment_id: str
) -> HttpResponse:
    body = _json_body(request)
    fulfillment = body.get("fulfillment") if isinstance(body, dict) else None
    if not isinstance(fulfillment, dict) or not isinstance(fulfillment.get("tracking_info"), dict):
        return _errors({"fulfillment": "Required parameter missing or invalid"}, 400)
    tracking = _tracking(fulfillment["tracking_info"])
    if tracking["tracking_number"]:
        refusal = tracking_refusal(
            store, carrier=tracking["tracking_company"] or "", number=tracking["tracking_number"]
        )
        if refusal:
            return _errors({"tracking_number": [refusal]}, 422)
    now = _now()
    with transaction.atomic():
        shipment = (
            SandboxShipment.objects.select_for_update()
            .filter(store=store, package_id=fulfillment_id)
            .first()
        )
        if shipment is None:
            return _errors("Not Found", 404)
        order = _store_order(store, shipment.order_id, lock=True)
        shipment.payload = {**shipment.payload, **tracking, "updated_at": _ts(now)}
        shipment.tracking_number = tracking["tracking_number"] or ""
        shipment.provider_id = tracking["tracking_company"] or ""
        shipment.save()
        if order is not None:
            order.payload["fulfillments"] = [
                shipment.payload if str(item.get("id")) == fulfillment_id else item
                for item in order.payload.get("fulfillments") or []
            ]
            _touch(order, now)
    return JsonResponse({"fulfillment": shipment.payload})


def _cancel(order: SandboxOrder, *, reason: str, now: datetime) -> None:
    """Cancel the locked, unfulfilled `order`: closed, refunded (or voided), nothing left."""
    payload = order.payload
    payload["cancelled_at"] = _ts(now)
    payload["closed_at"] = _ts(now)
    payload["cancel_reason"] = reason
    payload["financial_status"] = (
        "voided" if payload.get("financial_status") in ("pending", "authorized") else "refunded"
    )
    for line in payload.get("line_items") or []:
        line["fulfillable_quantity"] = 0
    _touch(order, now)


@shopify_api("POST")
def order_cancel(request: HttpRequest, store: SandboxStore, order_id: str) -> HttpResponse:
    body = _json_body(request)
    body = body if isinstance(body, dict) else {}
    reason = str(body.get("reason") or "other")
    if reason not in {"customer", "inventory", "fraud", "declined", "other"}:
        return _errors({"reason": "is invalid"}, 422)
    now = _now()
    with transaction.atomic():
        order = _store_order(store, order_id, lock=True)
        if order is None:
            return _errors("Not Found", 404)
        payload = order.payload
        if payload.get("cancelled_at"):
            return _errors("Order has already been cancelled", 422)
        if any(
            int(line.get("fulfillable_quantity") or 0) < int(line.get("quantity") or 0)
            for line in payload.get("line_items") or []
        ):
            return _errors("Cannot cancel an order with fulfillments; cancel them first", 422)
        _cancel(order, reason=reason, now=now)
        existing = SandboxCancellation.objects.filter(store=store, cancel_id=order_id).first()
        SandboxCancellation.objects.update_or_create(
            store=store,
            cancel_id=order_id,
            defaults={
                "order_id": order_id,
                "status": "approved",
                "decision": "approve",
                "answered_at": now,
                "payload": {
                    **(existing.payload if existing else {}),
                    "cancel_reason": reason,
                    "note": str(body.get("note") or ""),
                },
                "created": existing.created if existing else now,
                "updated": now,
            },
        )
    return JsonResponse({"order": payload})


def _level(product: SandboxProduct) -> dict:
    return {
        "inventory_item_id": int(product.sku_id) if product.sku_id.isdigit() else product.sku_id,
        "location_id": int(product.location_id)
        if product.location_id.isdigit()
        else product.location_id,
        "available": product.quantity,
        "updated_at": _ts(product.updated),
        "admin_graphql_api_id": (
            f"gid://shopify/InventoryLevel/{product.location_id}?inventory_item_id={product.sku_id}"
        ),
    }


@shopify_api("POST")
def inventory_set(request: HttpRequest, store: SandboxStore) -> HttpResponse:
    body = _json_body(request)
    if not isinstance(body, dict):
        return _errors({"inventory_level": "Required parameter missing or invalid"}, 400)
    errors = {}
    for name in ("location_id", "inventory_item_id", "available"):
        value = body.get(name)
        if isinstance(value, bool) or not isinstance(value, int):
            errors[name] = "Required parameter missing or invalid"
    if errors:
        return _errors(errors, 400 if "available" not in errors else 422)
    with transaction.atomic():
        product = (
            SandboxProduct.objects.select_for_update()
            .filter(store=store, sku_id=str(body["inventory_item_id"]))
            .order_by("pk")
            .first()
        )
        if product is None:
            return _errors("Not Found", 404)
        if product.location_id != str(body["location_id"]):
            return _errors(["Inventory item is not stocked at the location"], 422)
        product.quantity = body["available"]
        product.version += 1
        product.save(update_fields=["quantity", "version", "updated"])
    return JsonResponse({"inventory_level": _level(product)})


@shopify_api("GET")
def inventory_levels(request: HttpRequest, store: SandboxStore) -> HttpResponse:
    item_ids = [part for part in request.GET.get("inventory_item_ids", "").split(",") if part]
    location_ids = [part for part in request.GET.get("location_ids", "").split(",") if part]
    if not item_ids and not location_ids:
        return _errors(
            {"base": ["inventory_item_ids or location_ids must be present"]},
            422,
        )
    if len(item_ids) > 50:
        return _errors({"inventory_item_ids": "at most 50"}, 422)
    products = SandboxProduct.objects.filter(store=store)
    if item_ids:
        products = products.filter(sku_id__in=item_ids)
    if location_ids:
        products = products.filter(location_id__in=location_ids)
    return JsonResponse({"inventory_levels": [_level(p) for p in products.order_by("pk")]})


VERSION = r"^admin/api/(?P<version>\d{4}-\d{2}|unstable)/"
urlpatterns = [
    re_path(VERSION + r"orders\.json$", orders_list),
    re_path(VERSION + r"orders/(?P<order_id>\d+)\.json$", order_detail),
    re_path(VERSION + r"orders/(?P<order_id>\d+)/fulfillment_orders\.json$", fulfillment_orders),
    re_path(VERSION + r"orders/(?P<order_id>\d+)/fulfillments\.json$", order_fulfillments),
    re_path(VERSION + r"orders/(?P<order_id>\d+)/cancel\.json$", order_cancel),
    re_path(VERSION + r"fulfillments\.json$", fulfillment_create),
    re_path(
        VERSION + r"fulfillments/(?P<fulfillment_id>\d+)/update_tracking\.json$",
        fulfillment_update_tracking,
    ),
    re_path(VERSION + r"inventory_levels/set\.json$", inventory_set),
    re_path(VERSION + r"inventory_levels\.json$", inventory_levels),
]


# --- the sandbox side: generate, load, show, buyers, webhooks --------------------------------


def _validate_order(payload) -> None:
    """Raise SandboxInputError naming the first field that is not in Shopify's order shape."""
    if not isinstance(payload, dict):
        raise SandboxInputError("order: must be a JSON object")

    def require_int(value, where: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise SandboxInputError(f"{where}: must be a positive integer id, got {value!r}")

    def require_money(value, where: str) -> None:
        try:
            Decimal(str(value))
        except InvalidOperation:
            raise SandboxInputError(f"{where}: {value!r} is not a money amount") from None
        if not isinstance(value, str):
            raise SandboxInputError(f'{where}: money is a string like "19.99", got {value!r}')

    require_int(payload.get("id"), "id")
    for name in ("created_at", "updated_at"):
        if _parse_ts(payload.get(name)) is None:
            raise SandboxInputError(
                f"{name}: must be an ISO 8601 timestamp with an offset, got {payload.get(name)!r}"
            )
    if payload.get("financial_status", "paid") not in FINANCIAL_STATUSES:
        raise SandboxInputError(f"financial_status: unknown {payload.get('financial_status')!r}")
    for name in ("subtotal_price", "total_price", "total_tax", "total_discounts"):
        if name in payload:
            require_money(payload[name], name)
    lines = payload.get("line_items")
    if not isinstance(lines, list) or not lines:
        raise SandboxInputError("line_items: at least one line item is required")
    seen = set()
    for index, line in enumerate(lines):
        where = f"line_items[{index}]"
        if not isinstance(line, dict):
            raise SandboxInputError(f"{where}: must be an object")
        require_int(line.get("id"), f"{where}.id")
        if line["id"] in seen:
            raise SandboxInputError(f"{where}.id: duplicate line item id {line['id']}")
        seen.add(line["id"])
        quantity = line.get("quantity")
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity <= 0:
            raise SandboxInputError(f"{where}.quantity: must be a positive integer")
        require_money(line.get("price"), f"{where}.price")
        if "total_discount" in line:
            require_money(line["total_discount"], f"{where}.total_discount")
    address = payload.get("shipping_address")
    if address is not None:
        if not isinstance(address, dict):
            raise SandboxInputError("shipping_address: must be an object")
        for name in ("address1", "city", "zip", "country_code"):
            if not address.get(name):
                raise SandboxInputError(f"shipping_address.{name}: required")


def _order_row(store: SandboxStore, payload) -> SandboxOrder:
    """A validated order (unsaved), its payload a private copy with Shopify's defaults."""
    _validate_order(payload)
    payload = json.loads(json.dumps(payload))
    payload.setdefault("fulfillment_status", None)
    payload.setdefault("fulfillments", [])
    payload.setdefault("cancelled_at", None)
    payload.setdefault("closed_at", None)
    payload.setdefault("financial_status", "paid")
    for line in payload["line_items"]:
        line.setdefault("fulfillable_quantity", line["quantity"])
        line.setdefault("fulfillment_status", None)
    return SandboxOrder(
        store=store,
        order_id=str(payload["id"]),
        status=_order_state(payload),
        created=_parse_ts(payload["created_at"]),
        updated=_parse_ts(payload["updated_at"]),
        payload=payload,
    )


class ShopifySandbox(SandboxPlatform):
    """Shopify's REST Admin API, with one store per connected shop."""

    platform = "shopify"

    def new_shop_key(self, *, shop) -> str:
        # The pk keeps two tenants' "Main Store" apart: the domain is unique on Shopify.
        return f"{slugify(shop.name) or 'store'}-{shop.pk}.myshopify.com"

    def store_defaults(self) -> dict:
        return {"rate_per_second": 2.0, "rate_burst": 40}

    def generate_order(
        self,
        *,
        store: SandboxStore,
        rng: random.Random,
        products: list[SandboxProduct],
        now: datetime,
        fresh: bool = False,
    ) -> dict:
        buyer = fake_buyer(rng)
        currency = "USD"
        picks = order_products(rng, products)
        items = [
            (p.sku_id, p.product_id, p.seller_sku, p.title or p.seller_sku, p.price) for p in picks
        ] or [("1730000000000", "1729000000000", "SAMPLE-1", "Sample product", Decimal("19.99"))]
        # Numbers for the order, each line item and the shipping line.
        first = next_number(store, 2 + len(items))
        order_id = ORDER_ID_BASE + first
        order_number = 1000 + first
        lines = []
        subtotal = discounts = Decimal("0")
        tax_rate = Decimal(TAX_RATES.get(buyer.state, "0.05"))
        tax_total = Decimal("0")
        for offset, (sku_id, product_id, sku, title, price) in enumerate(items, start=1):
            quantity = rng.choice([1, 1, 1, 1, 2, 2, 3])
            price = Decimal(price or "9.99")
            discount = (
                (price * quantity * Decimal("0.10")).quantize(CENT)
                if rng.random() < 0.2
                else Decimal("0")
            )
            line_tax = ((price * quantity - discount) * tax_rate).quantize(CENT, ROUND_HALF_UP)
            subtotal += price * quantity - discount
            discounts += discount
            tax_total += line_tax
            line_id = LINE_ID_BASE + first + offset
            variant = int(sku_id) if str(sku_id).isdigit() else sku_id
            lines.append(
                {
                    "id": line_id,
                    "admin_graphql_api_id": f"gid://shopify/LineItem/{line_id}",
                    "variant_id": variant,
                    "product_id": int(product_id) if str(product_id).isdigit() else product_id,
                    "sku": sku,
                    "title": title,
                    "name": title,
                    "variant_title": None,
                    "vendor": store.name or "Sandbox store",
                    "quantity": quantity,
                    "current_quantity": quantity,
                    "fulfillable_quantity": quantity,
                    "fulfillment_status": None,
                    "fulfillment_service": "manual",
                    "requires_shipping": True,
                    "taxable": True,
                    "gift_card": False,
                    "grams": 250,
                    "price": _money(price),
                    "price_set": _price_set(_money(price), currency),
                    "total_discount": _money(discount),
                    "total_discount_set": _price_set(_money(discount), currency),
                    "tax_lines": [
                        {
                            "title": f"{buyer.state} State Tax",
                            "price": _money(line_tax),
                            "rate": float(tax_rate),
                        }
                    ],
                }
            )
        method, shipping_price = rng.choice(SHIPPING_METHODS)
        shipping = (
            Decimal("0") if subtotal >= 35 and method != "Express" else Decimal(shipping_price)
        )
        total = subtotal + shipping + tax_total
        created = now.replace(microsecond=0)
        address = {
            "first_name": buyer.first_name,
            "last_name": buyer.last_name,
            "name": buyer.name,
            "company": None,
            "address1": buyer.line1,
            "address2": buyer.line2 or None,
            "city": buyer.city,
            "province": STATE_NAMES.get(buyer.state, buyer.state),
            "province_code": buyer.state,
            "zip": buyer.postal_code,
            "country": "United States",
            "country_code": buyer.country,
            "phone": buyer.phone,
        }
        customer_id = CUSTOMER_ID_BASE + first
        return {
            "id": order_id,
            "admin_graphql_api_id": f"gid://shopify/Order/{order_id}",
            "name": f"#{order_number}",
            "order_number": order_number,
            "number": order_number - 1000,
            "token": uuid.UUID(int=rng.getrandbits(128)).hex,
            "email": buyer.email,
            "contact_email": buyer.email,
            "phone": None,
            "created_at": _ts(created),
            "updated_at": _ts(created),
            "processed_at": _ts(created),
            "closed_at": None,
            "cancelled_at": None,
            "cancel_reason": None,
            "confirmed": True,
            "test": False,
            "financial_status": "paid",
            "fulfillment_status": None,
            "currency": currency,
            "presentment_currency": currency,
            "total_line_items_price": _money(subtotal + discounts),
            "subtotal_price": _money(subtotal),
            "total_discounts": _money(discounts),
            "total_tax": _money(tax_total),
            "taxes_included": False,
            "total_price": _money(total),
            "total_shipping_price_set": _price_set(_money(shipping), currency),
            "total_price_set": _price_set(_money(total), currency),
            "gateway": "shopify_payments",
            "payment_gateway_names": ["shopify_payments"],
            "source_name": "web",
            "tags": "",
            "note": rng.choice(BUYER_NOTES) if rng.random() < 0.08 else None,
            "note_attributes": [],
            "customer": {
                "id": customer_id,
                "email": buyer.email,
                "first_name": buyer.first_name,
                "last_name": buyer.last_name,
                "phone": buyer.phone,
            },
            "shipping_address": address,
            "billing_address": dict(address),
            "shipping_lines": [
                {
                    "id": LINE_ID_BASE + first + len(items) + 1,
                    "title": method,
                    "code": method,
                    "source": "shopify",
                    "price": _money(shipping),
                    "discounted_price": _money(shipping),
                    "price_set": _price_set(_money(shipping), currency),
                }
            ],
            "line_items": lines,
            "fulfillments": [],
            "refunds": [],
        }

    def compose_order(self, *, store: SandboxStore, draft: OrderDraft) -> dict:
        """`draft` as a REST Admin order: `financial_status` paid (pending when unpaid), line
        items with their discount and tax lines, money as strings; line item ids derive from
        `draft.number`. Shopify has no platform ship-by or platform coupons."""
        currency = "USD"
        address = draft.address
        first, _, last = address.name.partition(" ")
        lines = []
        subtotal = discounts = tax_total = Decimal("0")
        for index, line in enumerate(draft.lines):
            product = line.product
            line_id = LINE_ID_BASE + draft.number * 100 + index
            subtotal += line.unit_price * line.quantity - line.discount
            discounts += line.discount
            tax_total += line.tax
            lines.append(
                {
                    "id": line_id,
                    "admin_graphql_api_id": f"gid://shopify/LineItem/{line_id}",
                    "variant_id": _as_int(product.sku_id),
                    "product_id": _as_int(product.product_id),
                    "sku": product.seller_sku,
                    "title": product.title or product.seller_sku,
                    "name": product.title or product.seller_sku,
                    "variant_title": None,
                    "vendor": store.name or "Sandbox store",
                    "quantity": line.quantity,
                    "current_quantity": line.quantity,
                    "fulfillable_quantity": line.quantity,
                    "fulfillment_status": None,
                    "fulfillment_service": "manual",
                    "requires_shipping": True,
                    "taxable": True,
                    "gift_card": False,
                    "price": _money(line.unit_price),
                    "price_set": _price_set(_money(line.unit_price), currency),
                    "total_discount": _money(line.discount),
                    "total_discount_set": _price_set(_money(line.discount), currency),
                    "tax_lines": [
                        {"title": f"{address.state} State Tax", "price": _money(line.tax)}
                    ],
                }
            )
        total = subtotal + draft.shipping_fee + tax_total
        shipping_address = {
            "first_name": first,
            "last_name": last,
            "name": address.name,
            "company": None,
            "address1": address.line1,
            "address2": address.line2 or None,
            "city": address.city,
            "province": STATE_NAMES.get(address.state, address.state),
            "province_code": address.state,
            "zip": address.postal_code,
            "country": "United States",
            "country_code": address.country,
            "phone": address.phone,
        }
        order_number = 1000 + draft.number
        created = _ts(draft.placed_at)
        return {
            "id": int(draft.order_id),
            "admin_graphql_api_id": f"gid://shopify/Order/{draft.order_id}",
            "name": f"#{order_number}",
            "order_number": order_number,
            "number": draft.number,
            "email": draft.buyer_email,
            "contact_email": draft.buyer_email,
            "phone": None,
            "created_at": created,
            "updated_at": _ts(draft.updated_at),
            "processed_at": _ts(draft.paid_at) if draft.paid_at else created,
            "closed_at": None,
            "cancelled_at": None,
            "cancel_reason": None,
            "confirmed": True,
            "test": False,
            "financial_status": "paid" if draft.paid_at else "pending",
            "fulfillment_status": None,
            "currency": currency,
            "presentment_currency": currency,
            "total_line_items_price": _money(subtotal + discounts),
            "subtotal_price": _money(subtotal),
            "total_discounts": _money(discounts),
            "total_tax": _money(tax_total),
            "taxes_included": False,
            "total_price": _money(total),
            "total_shipping_price_set": _price_set(_money(draft.shipping_fee), currency),
            "total_price_set": _price_set(_money(total), currency),
            "gateway": "shopify_payments",
            "payment_gateway_names": ["shopify_payments"],
            "source_name": "web",
            "tags": "",
            "note": draft.note or None,
            "note_attributes": [],
            "customer": {
                "id": CUSTOMER_ID_BASE + draft.number,
                "email": draft.buyer_email,
                "first_name": first,
                "last_name": last,
                "phone": address.phone,
            },
            "shipping_address": shipping_address,
            "billing_address": dict(shipping_address),
            "shipping_lines": [
                {
                    "id": LINE_ID_BASE + draft.number * 100 + 99,
                    "title": "Standard Shipping",
                    "code": "Standard Shipping",
                    "source": "shopify",
                    "price": _money(draft.shipping_fee),
                    "discounted_price": _money(draft.shipping_fee),
                    "price_set": _price_set(_money(draft.shipping_fee), currency),
                }
            ],
            "line_items": lines,
            "fulfillments": [],
            "refunds": [],
        }

    def ship_order(
        self,
        *,
        store: SandboxStore,
        order: SandboxOrder,
        tracking_number: str,
        carrier: str,
        at: datetime,
    ) -> SandboxShipment:
        """One fulfillment of everything still open, as `fulfillments.json` records it."""
        at = at.replace(microsecond=0)
        with transaction.atomic():
            order = _store_order(store, order.order_id, lock=True)
            if _fulfillment_order(store, order)["status"] not in ("open", "in_progress"):
                raise SandboxInputError(f"order {order.order_id} has nothing left to fulfil")
            shipped = {
                line["id"]: int(line["fulfillable_quantity"])
                for line in order.payload["line_items"]
                if int(line.get("fulfillable_quantity") or 0) > 0
            }
            return _fulfil(
                store,
                order,
                shipped,
                _tracking({"number": tracking_number, "company": CARRIER_NAMES.get(carrier)}),
                notify_customer=True,
                now=at,
            )

    def advance_order(
        self, *, store: SandboxStore, order: SandboxOrder, status: str, at: datetime
    ) -> bool:
        """The carrier's events reach Shopify as the fulfillments' `shipment_status`."""
        if status not in ("in_transit", "delivered"):
            raise SandboxInputError(f"cannot move an order to {status!r}")
        at = at.replace(microsecond=0)
        with transaction.atomic():
            order = _store_order(store, order.order_id, lock=True)
            for record in order.payload.get("fulfillments") or []:
                record["shipment_status"] = status
                record["updated_at"] = _ts(at)
            _touch(order, at)
            for shipment in SandboxShipment.objects.select_for_update().filter(
                store=store, order_id=order.order_id
            ):
                shipment.payload = {
                    **shipment.payload,
                    "shipment_status": status,
                    "updated_at": _ts(at),
                }
                shipment.save(update_fields=["payload", "updated"])
        return True

    def cancel_order(self, *, store: SandboxStore, order: SandboxOrder, at: datetime) -> None:
        """The seller cancelled it in Shopify's admin at the buyer's request."""
        with transaction.atomic():
            order = _store_order(store, order.order_id, lock=True)
            if not order.payload.get("cancelled_at"):
                _cancel(order, reason="customer", now=at.replace(microsecond=0))

    def notify_order_changed(self, *, store: SandboxStore, order: SandboxOrder) -> list:
        """What Shopify sends when an order changes: `orders/create` for a new one, else
        `orders/updated`, with the order as the body."""
        payload = order.payload
        new = payload.get("updated_at") == payload.get("created_at")
        topic = "orders/create" if new else "orders/updated"
        return [self.send_webhook(store=store, topic=topic, data=payload)]

    def load_order(self, *, store: SandboxStore, payload: dict) -> SandboxOrder:
        row = _order_row(store, payload)
        order, _ = SandboxOrder.objects.update_or_create(
            store=store,
            order_id=row.order_id,
            defaults={
                "status": row.status,
                "created": row.created,
                "updated": row.updated,
                "payload": row.payload,
            },
        )
        return order

    def load_orders(self, *, store: SandboxStore, payloads: list) -> int:
        """Validate every order, then upsert them all in bulk (all or nothing). Errors name the
        order's index in the list: `order 3: line_items[0].price: ...`."""
        return upsert_indexed(store, payloads, _order_row)

    def show(self, *, store: SandboxStore, what: str) -> list[dict]:
        if what == "orders":
            return [o.payload for o in SandboxOrder.objects.filter(store=store).order_by("pk")]
        if what == "inventory":
            return [_level(p) for p in SandboxProduct.objects.filter(store=store).order_by("pk")]
        if what == "shipments":
            return [s.payload for s in SandboxShipment.objects.filter(store=store).order_by("pk")]
        if what == "cancellations":
            return [
                {
                    "order_id": c.order_id,
                    "cancel_id": c.cancel_id,
                    "status": c.status,
                    "decision": c.decision,
                    "answered_at": c.answered_at.isoformat() if c.answered_at else None,
                    **c.payload,
                }
                for c in SandboxCancellation.objects.filter(store=store).order_by("pk")
            ]
        if what == "webhooks":
            return [
                {
                    "delivery_id": w.delivery_id,
                    "topic": w.topic,
                    "response_status": w.response_status,
                }
                for w in SandboxWebhook.objects.filter(store=store).order_by("pk")
            ]
        raise SandboxInputError(f"show: unknown {what!r} (orders, inventory, shipments, ...)")

    def request_cancellation(
        self, *, store: SandboxStore, order: SandboxOrder, at: datetime | None = None
    ) -> None:
        """Shopify buyers cannot request a cancellation: they write to the seller, who tags
        the order. The sandbox plays both: it tags the order "cancel requested", records the
        time (now, or `at`) in a `cancel_requested_at` note attribute, adds the buyer's words to
        the note and bumps updated_at, so the next sync sees it."""
        now = at.replace(microsecond=0) if at is not None else _now()
        reason = random.Random(order.order_id).choice(CANCEL_REASONS)
        with transaction.atomic():
            order = SandboxOrder.objects.select_for_update().get(pk=order.pk)
            payload = order.payload
            if payload.get("cancelled_at"):
                return
            tags = [t.strip() for t in (payload.get("tags") or "").split(",") if t.strip()]
            if CANCEL_REQUEST_TAG not in tags:
                tags.append(CANCEL_REQUEST_TAG)
            payload["tags"] = ", ".join(tags)
            attributes = [
                a
                for a in payload.get("note_attributes") or []
                if a.get("name") != "cancel_requested_at"
            ]
            payload["note_attributes"] = [
                *attributes,
                {"name": "cancel_requested_at", "value": _ts(now)},
            ]
            message = f"Buyer asked to cancel: {reason}"
            payload["note"] = f"{payload['note']}\n{message}" if payload.get("note") else message
            _touch(order, now)
            SandboxCancellation.objects.get_or_create(
                store=store,
                cancel_id=order.order_id,
                defaults={
                    "order_id": order.order_id,
                    "status": "requested",
                    "payload": {"reason": reason, "channel": "buyer message"},
                    "created": now,
                    "updated": now,
                },
            )

    def send_webhook(self, *, store: SandboxStore, topic: str, data: dict) -> int | None:
        topic = WEBHOOK_TOPICS.get(topic, topic)
        body = json.dumps(data, separators=(",", ":")).encode()
        signature = base64.b64encode(
            hmac.new(store.app_secret.encode(), body, hashlib.sha256).digest()
        ).decode()
        delivery_id = str(uuid.uuid4())
        headers = {
            "Content-Type": "application/json",
            "X-Shopify-Topic": topic,
            "X-Shopify-Hmac-Sha256": signature,
            "X-Shopify-Shop-Domain": store.shop_key,
            "X-Shopify-Webhook-Id": delivery_id,
            "X-Shopify-API-Version": API_VERSION,
            "X-Shopify-Triggered-At": _now().isoformat(),
        }
        status = None
        if store.webhook_url:
            transport = (
                sandbox_transport()
                if urlsplit(store.webhook_url).hostname == SANDBOX_HOST
                else None
            )
            try:
                with httpx.Client(transport=transport, timeout=10) as client:
                    status = client.post(
                        store.webhook_url, content=body, headers=headers
                    ).status_code
            except httpx.HTTPError:
                status = None
        SandboxWebhook.objects.create(
            store=store,
            delivery_id=delivery_id,
            topic=topic,
            body=body.decode(),
            response_status=status,
        )
        return status
