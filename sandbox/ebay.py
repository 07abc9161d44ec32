"""eBay sandbox: the Sell Fulfillment and Sell Inventory APIs under /sandbox/ebay/.

What it reproduces (shared/platform-apis.md §4):
- `Authorization: Bearer <user token>`; an unknown or expired token is a 401 with errorId 1001.
  The token endpoint (`/identity/v1/oauth2/token`, Basic app_key:app_secret) exchanges the
  refresh token for a new access token lasting 7200 s; the old access token stops working here
  (eBay lets it run out; being stricter catches clients that keep using it).
- getOrders with `filter=lastmodifieddate:[a..b]` / `creationdate:[a..b]` (inclusive, either
  end optional) / `orderfulfillmentstatus:{A|B}`, `orderIds` (at most 50), `limit` (at most
  200) and `offset`, answering `href`, `total`, `limit`, `offset`, `next`, `prev`. Orders come
  newest first (L); without a date filter only the last 90 days.
- `shipping_fulfillment`: 201 with the new fulfillment in the `Location` header, recorded as a
  `SandboxShipment`, moving the lines and the order to IN_PROGRESS / FULFILLED.
- `bulk_update_price_quantity` (at most 25 requests; per-SKU statusCode 200 or 400, HTTP 207
  when not all succeeded), `inventory_item/{sku}` and `bulk_get_inventory_item`, where the eBay
  SKU is the product's `sku_id`.
- Post-Order cancellation approve/reject for the requests `request_cancellation` creates.
- Rate limit: errorId 2001 with HTTP 429. eBay documents no Retry-After (L), so none is sent.

Error ids other than 1001 and 2001 are eBay-like (the 25xxx inventory and 3xxxx fulfilment
ranges) but not checked against the live API.
"""

from __future__ import annotations

import base64
import json
import random
import re
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import wraps
from urllib.parse import urlencode

from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path, re_path
from django.utils import timezone as django_timezone
from django.utils.text import slugify
from django.views.decorators.csrf import csrf_exempt

from sandbox.base import (
    CARRIER_NAMES,
    SANDBOX_BASE_URL,
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
)
from sandbox.people import BUYER_NOTES, CANCEL_REASONS, fake_buyer

ACCESS_TOKEN_SECONDS = 7200
MAX_LIMIT = 200
MAX_ORDER_IDS = 50
MAX_BULK = 25
DEFAULT_WINDOW = timedelta(days=90)
CENT = Decimal("0.01")
FULFILLMENT_STATUSES = {"NOT_STARTED", "IN_PROGRESS", "FULFILLED"}
TAX_RATES = {"CA": "0.0725", "NY": "0.08875", "TX": "0.0625", "WA": "0.065", "IL": "0.0625"}
SHIPPING_SERVICES = [
    ("USPS", "USPSPriority", "6.95"),
    ("USPS", "USPSFirstClass", "4.25"),
    ("UPS", "UPSGround", "9.10"),
]
ORDERS = "sell/fulfillment/v1/order"


# --- small helpers ----------------------------------------------------------------------------


def _money(value: Decimal, currency: str = "USD") -> dict:
    return {"value": str(value.quantize(CENT, rounding=ROUND_HALF_UP)), "currency": currency}


def _ts(value: datetime) -> str:
    """eBay timestamps: UTC, milliseconds, Z."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _whole_ms(value: datetime) -> datetime:
    """`value` in UTC, cut to the millisecond eBay's timestamps carry (so the `updated` column
    equals the lastModifiedDate clients filter on)."""
    value = value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def _now() -> datetime:
    return _whole_ms(django_timezone.now())


def _parse_ts(value) -> datetime | None:
    if not value or not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.astimezone(UTC)


def _error(
    error_id: int,
    message: str,
    status: int,
    *,
    long_message: str = "",
    domain: str = "API_FULFILLMENT",
    category: str = "REQUEST",
) -> JsonResponse:
    error = {"errorId": error_id, "domain": domain, "category": category, "message": message}
    if long_message:
        error["longMessage"] = long_message
    return JsonResponse({"errors": [error]}, status=status)


def _invalid_token() -> JsonResponse:
    return _error(
        1001,
        "Invalid access token",
        401,
        long_message="Invalid access token. Check the value of the Authorization HTTP request "
        "header.",
        domain="OAuth",
    )


def _json_body(request: HttpRequest):
    try:
        return json.loads(request.body or b"null")
    except ValueError:
        return None


def _order_state(payload: dict) -> str:
    if (payload.get("cancelStatus") or {}).get("cancelState") == "CANCELED":
        return "CANCELED"
    return payload.get("orderFulfillmentStatus") or "NOT_STARTED"


# --- auth, limits, faults ---------------------------------------------------------------------


def ebay_api(*methods: str, scheme: str = "Bearer"):
    """Token check, faults and the rate limit around one eBay REST endpoint."""

    def decorate(view):
        @csrf_exempt
        @wraps(view)
        def wrapper(request: HttpRequest, **kwargs) -> HttpResponse:
            if request.method not in methods:
                return _error(2004, "Method not allowed", 405, domain="ACCESS")
            header = request.headers.get("Authorization", "")
            prefix = f"{scheme} "
            token = header[len(prefix) :].strip() if header.startswith(prefix) else ""
            store = (
                SandboxStore.objects.filter(platform="ebay", access_token=token).first()
                if token
                else None
            )
            if store is None:
                return _invalid_token()
            if store.access_token_expires_at and store.access_token_expires_at <= _now():
                return _invalid_token()
            fault = injected_fault(store)
            if fault == "badsign":
                return _invalid_token()
            if fault == "429" or throttled(store, "sell"):
                return _error(
                    2001,
                    "Too many requests. The request limit has been reached for the resource.",
                    429,
                    domain="ACCESS",
                )
            if fault:
                plain = plain_fault_response(fault)
                if plain is not None:
                    return plain
            response = view(request, store, **kwargs)
            response["X-EBAY-C-REQUEST-ID"] = uuid.uuid4().hex
            return response

        return wrapper

    return decorate


@csrf_exempt
def oauth_token(request: HttpRequest) -> HttpResponse:
    """The OAuth token endpoint: only the refresh_token grant is served."""
    if request.method != "POST":
        return JsonResponse({"error": "invalid_request"}, status=405)
    header = request.headers.get("Authorization", "")
    try:
        app_key, _, app_secret = (
            base64.b64decode(header.removeprefix("Basic ").strip()).decode().partition(":")
        )
    except (ValueError, UnicodeDecodeError):
        app_key = app_secret = ""
    store = (
        SandboxStore.objects.filter(platform="ebay", app_key=app_key).first() if app_key else None
    )
    if store is None or not secrets.compare_digest(store.app_secret, app_secret):
        return JsonResponse(
            {"error": "invalid_client", "error_description": "client authentication failed"},
            status=401,
        )
    if request.POST.get("grant_type") != "refresh_token":
        return JsonResponse(
            {
                "error": "unsupported_grant_type",
                "error_description": "grant type in request is not supported by the "
                "authorization server",
            },
            status=400,
        )
    now = _now()
    refresh_token = request.POST.get("refresh_token", "")
    if (
        not refresh_token
        or not secrets.compare_digest(store.refresh_token, refresh_token)
        or (store.refresh_token_expires_at and store.refresh_token_expires_at <= now)
    ):
        return JsonResponse(
            {
                "error": "invalid_grant",
                "error_description": "the provided authorization refresh token is invalid or "
                "was issued to another client",
            },
            status=400,
        )
    store.access_token = "v^1.1#i^1#r^0#" + secrets.token_urlsafe(48)
    store.access_token_expires_at = now + timedelta(seconds=ACCESS_TOKEN_SECONDS)
    store.save(update_fields=["access_token", "access_token_expires_at"])
    return JsonResponse(
        {
            "access_token": store.access_token,
            "expires_in": ACCESS_TOKEN_SECONDS,
            "token_type": "User Access Token",
        }
    )


# --- orders -----------------------------------------------------------------------------------

FILTER_PART = re.compile(r"^(?P<name>[a-z]+):(?P<value>\[[^\]]*\]|\{[^}]*\})$")


def _split_filter(text: str) -> list[str]:
    """Split on commas outside [..] and {..}."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part.strip() for part in parts if part.strip()]


def _parse_filter(text: str) -> dict | None:
    """{"lastmodifieddate": (a, b), "creationdate": (a, b), "orderfulfillmentstatus": {...}},
    or None when malformed."""
    parsed: dict = {}
    for part in _split_filter(text):
        match = FILTER_PART.match(part)
        if not match:
            return None
        name, value = match["name"], match["value"]
        if name in ("lastmodifieddate", "creationdate"):
            if not value.startswith("[") or ".." not in value:
                return None
            low, _, high = value[1:-1].partition("..")
            bounds = []
            for text_bound in (low, high):
                if not text_bound:
                    bounds.append(None)
                    continue
                bound = _parse_ts(text_bound)
                if bound is None:
                    return None
                bounds.append(bound)
            if bounds == [None, None]:
                return None
            parsed[name] = tuple(bounds)
        elif name == "orderfulfillmentstatus":
            if not value.startswith("{"):
                return None
            states = {state.strip() for state in value[1:-1].split("|") if state.strip()}
            if not states or not states <= FULFILLMENT_STATUSES:
                return None
            parsed[name] = states
        else:
            return None
    return parsed


def _bad_filter(text: str) -> JsonResponse:
    return _error(
        30700,
        "Invalid filter name or value.",
        400,
        long_message=f"The 'filter' query parameter {text!r} is not valid. Use "
        "lastmodifieddate:[from..to], creationdate:[from..to] or "
        "orderfulfillmentstatus:{A|B}, with UTC ISO 8601 timestamps.",
    )


@ebay_api("GET")
def orders_list(request: HttpRequest, store: SandboxStore) -> HttpResponse:
    params = request.GET
    orders = SandboxOrder.objects.filter(store=store)
    warnings = []
    if params.get("orderIds"):
        ids = [part.strip() for part in params["orderIds"].split(",") if part.strip()]
        if len(ids) > MAX_ORDER_IDS:
            return _error(
                30500, f"A maximum of {MAX_ORDER_IDS} order IDs can be used per request.", 400
            )
        rows = list(orders.filter(order_id__in=ids))
        found = {row.order_id for row in rows}
        warnings = [
            {
                "errorId": 30500,
                "domain": "API_FULFILLMENT",
                "category": "REQUEST",
                "message": f"Invalid order ID: {order_id}",
            }
            for order_id in ids
            if order_id not in found
        ]
        rows.sort(key=lambda row: ids.index(row.order_id))
        body = {
            "href": request.build_absolute_uri(),
            "total": len(rows),
            "limit": len(ids),
            "offset": 0,
            "orders": [row.payload for row in rows],
        }
        if warnings:
            body["warnings"] = warnings
        return JsonResponse(body)
    try:
        limit = int(params.get("limit", 50))
        offset = int(params.get("offset", 0))
    except ValueError:
        return _error(30830, "The 'limit' or 'offset' value is not valid.", 400)
    if not 1 <= limit <= MAX_LIMIT or offset < 0:
        return _error(
            30830, f"The 'limit' must be 1 to {MAX_LIMIT} and 'offset' not negative.", 400
        )
    filters = _parse_filter(params.get("filter", "")) if params.get("filter") else {}
    if filters is None:
        return _bad_filter(params["filter"])
    if "lastmodifieddate" not in filters and "creationdate" not in filters:
        orders = orders.filter(created__gte=_now() - DEFAULT_WINDOW)
    for name, column in (("lastmodifieddate", "updated"), ("creationdate", "created")):
        if name in filters:
            low, high = filters[name]
            if low is not None:
                orders = orders.filter(**{f"{column}__gte": low})
            if high is not None:
                orders = orders.filter(**{f"{column}__lte": high})
    if "orderfulfillmentstatus" in filters:
        orders = orders.filter(status__in=filters["orderfulfillmentstatus"])
    total = orders.count()
    rows = list(orders.order_by("-created", "-pk")[offset : offset + limit])
    base_url = request.build_absolute_uri(request.path)

    def page(at: int) -> str:
        query = {key: params[key] for key in ("filter",) if params.get(key)}
        query.update({"limit": limit, "offset": at})
        return f"{base_url}?{urlencode(query)}"

    body = {
        "href": page(offset),
        "total": total,
        "limit": limit,
        "offset": offset,
        "orders": [row.payload for row in rows],
    }
    if offset + limit < total:
        body["next"] = page(offset + limit)
    if offset > 0:
        body["prev"] = page(max(0, offset - limit))
    return JsonResponse(body)


@ebay_api("GET")
def order_detail(request: HttpRequest, store: SandboxStore, order_id: str) -> HttpResponse:
    order = SandboxOrder.objects.filter(store=store, order_id=order_id).first()
    if order is None:
        return _error(32100, f"Invalid order ID: {order_id}", 404)
    return JsonResponse(order.payload)


def _shipped_quantities(store: SandboxStore, order_id: str) -> dict[str, int]:
    shipped: dict[str, int] = {}
    for shipment in SandboxShipment.objects.filter(store=store, order_id=order_id):
        for item in shipment.payload.get("lineItems") or []:
            line_id = str(item.get("lineItemId"))
            shipped[line_id] = shipped.get(line_id, 0) + int(item.get("quantity") or 0)
    return shipped


def _fulfillment(shipment: SandboxShipment) -> dict:
    return {
        "fulfillmentId": shipment.package_id,
        "orderId": shipment.order_id,
        "lineItems": shipment.payload.get("lineItems") or [],
        "shipmentTrackingNumber": shipment.tracking_number,
        "shippingCarrierCode": shipment.provider_id,
        "shippedDate": shipment.payload.get("shippedDate"),
    }


@ebay_api("GET", "POST")
def shipping_fulfillments(request: HttpRequest, store: SandboxStore, order_id: str):
    if request.method == "GET":
        if not SandboxOrder.objects.filter(store=store, order_id=order_id).exists():
            return _error(32100, f"Invalid order ID: {order_id}", 404)
        shipments = SandboxShipment.objects.filter(store=store, order_id=order_id)
        fulfillments = [_fulfillment(s) for s in shipments.order_by("pk")]
        return JsonResponse({"total": len(fulfillments), "fulfillments": fulfillments})
    return _create_fulfillment(request, store, order_id)


def _create_fulfillment(request: HttpRequest, store: SandboxStore, order_id: str):
    body = _json_body(request)
    if not isinstance(body, dict):
        return _error(32000, "The request body is not valid JSON.", 400)
    items = body.get("lineItems")
    if not isinstance(items, list) or not items:
        return _error(32110, "At least one line item is required.", 400)
    tracking = body.get("trackingNumber")
    carrier = body.get("shippingCarrierCode")
    if not isinstance(tracking, str) or not tracking.strip():
        return _error(32200, "The 'trackingNumber' is missing or invalid.", 400)
    if not isinstance(carrier, str) or not carrier.strip():
        return _error(32210, "The 'shippingCarrierCode' is missing or invalid.", 400)
    if not re.fullmatch(r"[A-Za-z0-9]+", tracking):
        return _error(32200, "The tracking number may contain only letters and digits.", 400)
    refusal = tracking_refusal(store, carrier=carrier, number=tracking)
    if refusal:
        return _error(32200, refusal, 400)
    shipped_date = body.get("shippedDate")
    if shipped_date is not None and _parse_ts(shipped_date) is None:
        return _error(32220, "The 'shippedDate' must be an ISO 8601 UTC timestamp.", 400)
    now = _now()
    with transaction.atomic():
        order = (
            SandboxOrder.objects.select_for_update().filter(store=store, order_id=order_id).first()
        )
        if order is None:
            return _error(32100, f"Invalid order ID: {order_id}", 404)
        payload = order.payload
        if _order_state(payload) == "CANCELED":
            return _error(32120, "The order has been cancelled and cannot be shipped.", 409)
        ordered = {str(line["lineItemId"]): int(line["quantity"]) for line in payload["lineItems"]}
        shipped = _shipped_quantities(store, order_id)
        requested: dict[str, int] = {}
        for item in items:
            line_id = str((item or {}).get("lineItemId") or "")
            quantity = (item or {}).get("quantity", ordered.get(line_id))
            if line_id not in ordered:
                return _error(32100, f"Invalid line item ID: {line_id}", 400)
            if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
                return _error(32130, f"Invalid quantity for line item {line_id}.", 400)
            requested[line_id] = requested.get(line_id, 0) + quantity
        for line_id, quantity in requested.items():
            if shipped.get(line_id, 0) + quantity > ordered[line_id]:
                return _error(
                    32130,
                    f"Line item {line_id}: {quantity} exceeds the "
                    f"{ordered[line_id] - shipped.get(line_id, 0)} left to ship.",
                    400,
                )
        _fulfil(
            store,
            order,
            requested,
            tracking=tracking,
            carrier=carrier,
            shipped_date=shipped_date or _ts(now),
            href=request.build_absolute_uri(request.path),
            now=now,
        )
    response = HttpResponse(status=201)
    response["Location"] = order.payload["fulfillmentHrefs"][-1]
    return response


def _fulfil(
    store: SandboxStore,
    order: SandboxOrder,
    requested: dict[str, int],
    *,
    tracking: str,
    carrier: str,
    shipped_date: str,
    href: str,
    now: datetime,
) -> SandboxShipment:
    """Record one validated shipping fulfillment of `requested` ({line item id: quantity}) on
    the locked `order`: line and order fulfillment statuses move on, the fulfillment's URL
    (`href` + its id) is added to the order, and it is kept as a `SandboxShipment`."""
    payload = order.payload
    shipped = _shipped_quantities(store, order.order_id)
    for line_id, quantity in requested.items():
        shipped[line_id] = shipped.get(line_id, 0) + quantity
    fulfillment_id = str(next_number(store) + 900_000_000_000)
    for line in payload["lineItems"]:
        line_id = str(line["lineItemId"])
        done = shipped.get(line_id, 0)
        line["lineItemFulfillmentStatus"] = (
            "FULFILLED"
            if done >= int(line["quantity"])
            else ("IN_PROGRESS" if done else "NOT_STARTED")
        )
    states = {line["lineItemFulfillmentStatus"] for line in payload["lineItems"]}
    payload["orderFulfillmentStatus"] = "FULFILLED" if states == {"FULFILLED"} else "IN_PROGRESS"
    payload.setdefault("fulfillmentHrefs", []).append(f"{href}/{fulfillment_id}")
    payload["lastModifiedDate"] = _ts(now)
    order.updated = now
    order.status = _order_state(payload)
    order.save(update_fields=["payload", "updated", "status"])
    return SandboxShipment.objects.create(
        store=store,
        order_id=order.order_id,
        package_id=fulfillment_id,
        tracking_number=tracking,
        provider_id=carrier,
        line_ids=list(requested),
        payload={
            "lineItems": [{"lineItemId": k, "quantity": v} for k, v in requested.items()],
            "shippedDate": shipped_date,
        },
    )


@ebay_api("GET")
def shipping_fulfillment_detail(
    request: HttpRequest, store: SandboxStore, order_id: str, fulfillment_id: str
) -> HttpResponse:
    shipment = SandboxShipment.objects.filter(
        store=store, order_id=order_id, package_id=fulfillment_id
    ).first()
    if shipment is None:
        return _error(32300, f"Invalid fulfillment ID: {fulfillment_id}", 404)
    return JsonResponse(_fulfillment(shipment))


# --- inventory --------------------------------------------------------------------------------


def _inventory_item(product: SandboxProduct) -> dict:
    return {
        "sku": product.sku_id,
        "locale": "en_US",
        "condition": "NEW",
        "product": {"title": product.title},
        "availability": {"shipToLocationAvailability": {"quantity": product.quantity}},
    }


def _sku_not_found(sku: str) -> dict:
    return {
        "errorId": 25702,
        "domain": "API_INVENTORY",
        "category": "REQUEST",
        "message": f"SKU {sku} is not available in the system.",
    }


def _bulk_requests(body) -> list | JsonResponse:
    requests = body.get("requests") if isinstance(body, dict) else None
    if not isinstance(requests, list) or not requests:
        return _error(25709, "Invalid value for requests.", 400, domain="API_INVENTORY")
    if len(requests) > MAX_BULK:
        return _error(
            25709,
            f"A maximum of {MAX_BULK} requests is allowed per call.",
            400,
            domain="API_INVENTORY",
        )
    return requests


@ebay_api("POST")
def bulk_update_price_quantity(request: HttpRequest, store: SandboxStore) -> HttpResponse:
    requests = _bulk_requests(_json_body(request))
    if isinstance(requests, JsonResponse):
        return requests
    responses = []
    with transaction.atomic():
        for item in requests:
            item = item if isinstance(item, dict) else {}
            sku = item.get("sku")
            availability = item.get("shipToLocationAvailability") or {}
            quantity = availability.get("quantity") if isinstance(availability, dict) else None
            product = (
                SandboxProduct.objects.select_for_update()
                .filter(store=store, sku_id=str(sku))
                .order_by("pk")
                .first()
                if isinstance(sku, str) and sku
                else None
            )
            if product is None:
                responses.append(
                    {"statusCode": 400, "sku": sku, "errors": [_sku_not_found(str(sku))]}
                )
                continue
            if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 0:
                responses.append(
                    {
                        "statusCode": 400,
                        "sku": sku,
                        "errors": [
                            {
                                "errorId": 25604,
                                "domain": "API_INVENTORY",
                                "category": "REQUEST",
                                "message": "shipToLocationAvailability.quantity must be a "
                                "non-negative integer.",
                            }
                        ],
                    }
                )
                continue
            product.quantity = quantity
            product.version += 1
            product.save(update_fields=["quantity", "version", "updated"])
            responses.append({"statusCode": 200, "sku": sku})
    ok = all(item["statusCode"] == 200 for item in responses)
    return JsonResponse({"responses": responses}, status=200 if ok else 207)


@ebay_api("POST")
def bulk_get_inventory_item(request: HttpRequest, store: SandboxStore) -> HttpResponse:
    requests = _bulk_requests(_json_body(request))
    if isinstance(requests, JsonResponse):
        return requests
    skus = [str((item or {}).get("sku") or "") for item in requests]
    products = {}
    for product in SandboxProduct.objects.filter(store=store, sku_id__in=skus).order_by("-pk"):
        products[product.sku_id] = product
    responses = [
        {"statusCode": 200, "sku": sku, "inventoryItem": _inventory_item(products[sku])}
        if sku in products
        else {"statusCode": 404, "sku": sku, "errors": [_sku_not_found(sku)]}
        for sku in skus
    ]
    ok = all(item["statusCode"] == 200 for item in responses)
    return JsonResponse({"responses": responses}, status=200 if ok else 207)


@ebay_api("GET")
def inventory_item(request: HttpRequest, store: SandboxStore, sku: str) -> HttpResponse:
    product = SandboxProduct.objects.filter(store=store, sku_id=sku).order_by("pk").first()
    if product is None:
        return _error(
            25710,
            "We didn't find the resource/entity you are requesting. Please verify the request",
            404,
            domain="API_INVENTORY",
        )
    return JsonResponse(_inventory_item(product))


# --- Post-Order cancellations -----------------------------------------------------------------


def _post_order_error(error_id: int, message: str, status: int) -> JsonResponse:
    # The Post-Order API (v2) has its own error shape: {"error": [...]}.
    return JsonResponse(
        {"error": [{"errorId": error_id, "domain": "returnErrorDomain", "message": message}]},
        status=status,
    )


@ebay_api("POST", scheme="IAF")
def cancellation_answer(
    request: HttpRequest, store: SandboxStore, cancel_id: str, action: str
) -> HttpResponse:
    now = _now()
    with transaction.atomic():
        cancellation = (
            SandboxCancellation.objects.select_for_update()
            .filter(store=store, cancel_id=cancel_id)
            .first()
        )
        if cancellation is None:
            return _post_order_error(1001, f"Cancellation {cancel_id} not found", 404)
        if cancellation.decision:
            return _post_order_error(1002, "The cancellation has already been answered", 409)
        order = (
            SandboxOrder.objects.select_for_update()
            .filter(store=store, order_id=cancellation.order_id)
            .first()
        )
        payload = order.payload if order is not None else {}
        if action == "approve" and payload.get("orderFulfillmentStatus") != "NOT_STARTED":
            return _post_order_error(1003, "The order has shipped and cannot be cancelled", 409)
        cancel_status = payload.setdefault("cancelStatus", {})
        for item in cancel_status.get("cancelRequests") or []:
            if item.get("cancelRequestId") == cancel_id:
                item["cancelRequestState"] = "COMPLETED" if action == "approve" else "REJECTED"
                item["cancelCompletedDate"] = _ts(now)
        if action == "approve":
            cancel_status["cancelState"] = "CANCELED"
            payload["orderPaymentStatus"] = "FULLY_REFUNDED"
        else:
            cancel_status["cancelState"] = "NONE_REQUESTED"
        if order is not None:
            payload["lastModifiedDate"] = _ts(now)
            order.updated = now
            order.status = _order_state(payload)
            order.save(update_fields=["payload", "updated", "status"])
        body = _json_body(request) if request.body else {}
        cancellation.decision = action
        cancellation.status = "CLOSED" if action == "approve" else "REJECTED"
        cancellation.reject_reason = (
            str(((body or {}).get("comments") or {}).get("content") or "")[:200]
            if action == "reject"
            else ""
        )
        cancellation.answered_at = now
        cancellation.updated = now
        cancellation.save()
    return JsonResponse({}, status=200)


urlpatterns = [
    path("identity/v1/oauth2/token", oauth_token),
    path(ORDERS, orders_list),
    path(f"{ORDERS}/<str:order_id>", order_detail),
    path(f"{ORDERS}/<str:order_id>/shipping_fulfillment", shipping_fulfillments),
    path(
        f"{ORDERS}/<str:order_id>/shipping_fulfillment/<str:fulfillment_id>",
        shipping_fulfillment_detail,
    ),
    path("sell/inventory/v1/bulk_update_price_quantity", bulk_update_price_quantity),
    path("sell/inventory/v1/bulk_get_inventory_item", bulk_get_inventory_item),
    path("sell/inventory/v1/inventory_item/<str:sku>", inventory_item),
    re_path(
        r"^post-order/v2/cancellation/(?P<cancel_id>[\w-]+)/(?P<action>approve|reject)$",
        cancellation_answer,
    ),
]


# --- the sandbox side: generate, load, show, buyers -------------------------------------------


def _order_id(number: int) -> str:
    """eBay's "12-34567-89012" shape, unique per number."""
    digits = f"{(1_234_567_890 + number * 7_919) % 10**12:012d}"
    return f"{digits[:2]}-{digits[2:7]}-{digits[7:]}"


def _validate_money(value, where: str) -> None:
    if not isinstance(value, dict) or "value" not in value:
        raise SandboxInputError(f'{where}: must be {{"value": "19.99", "currency": "USD"}}')
    try:
        Decimal(str(value["value"]))
    except InvalidOperation:
        raise SandboxInputError(f"{where}.value: {value['value']!r} is not an amount") from None


def _validate_order(payload) -> None:
    """Raise SandboxInputError naming the first field not in eBay's order shape."""
    if not isinstance(payload, dict):
        raise SandboxInputError("order: must be a JSON object")
    if not isinstance(payload.get("orderId"), str) or not payload["orderId"].strip():
        raise SandboxInputError("orderId: required string")
    for name in ("creationDate", "lastModifiedDate"):
        if _parse_ts(payload.get(name)) is None:
            raise SandboxInputError(
                f"{name}: must be an ISO 8601 UTC timestamp, got {payload.get(name)!r}"
            )
    status = payload.get("orderFulfillmentStatus", "NOT_STARTED")
    if status not in FULFILLMENT_STATUSES:
        raise SandboxInputError(f"orderFulfillmentStatus: unknown {status!r}")
    pricing = payload.get("pricingSummary")
    if not isinstance(pricing, dict):
        raise SandboxInputError("pricingSummary: required object")
    _validate_money(pricing.get("total"), "pricingSummary.total")
    for name in ("priceSubtotal", "deliveryCost", "priceDiscount", "tax"):
        if name in pricing:
            _validate_money(pricing[name], f"pricingSummary.{name}")
    instructions = payload.get("fulfillmentStartInstructions")
    if not isinstance(instructions, list) or not instructions:
        raise SandboxInputError("fulfillmentStartInstructions: at least one entry is required")
    ship_to = ((instructions[0] or {}).get("shippingStep") or {}).get("shipTo")
    if not isinstance(ship_to, dict):
        raise SandboxInputError("fulfillmentStartInstructions[0].shippingStep.shipTo: required")
    contact = ship_to.get("contactAddress") or {}
    for name in ("addressLine1", "city", "postalCode", "countryCode"):
        if not contact.get(name):
            raise SandboxInputError(
                f"fulfillmentStartInstructions[0].shippingStep.shipTo.contactAddress.{name}: "
                "required"
            )
    lines = payload.get("lineItems")
    if not isinstance(lines, list) or not lines:
        raise SandboxInputError("lineItems: at least one line item is required")
    seen = set()
    for index, line in enumerate(lines):
        where = f"lineItems[{index}]"
        if not isinstance(line, dict):
            raise SandboxInputError(f"{where}: must be an object")
        line_id = line.get("lineItemId")
        if not isinstance(line_id, str) or not line_id:
            raise SandboxInputError(f"{where}.lineItemId: required string")
        if line_id in seen:
            raise SandboxInputError(f"{where}.lineItemId: duplicate {line_id}")
        seen.add(line_id)
        quantity = line.get("quantity")
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
            raise SandboxInputError(f"{where}.quantity: must be a positive integer")
        _validate_money(line.get("lineItemCost"), f"{where}.lineItemCost")
        if "discountedLineItemCost" in line:
            _validate_money(line["discountedLineItemCost"], f"{where}.discountedLineItemCost")


def _order_row(store: SandboxStore, payload) -> SandboxOrder:
    """A validated order (unsaved), its payload a private copy with eBay's defaults."""
    _validate_order(payload)
    payload = json.loads(json.dumps(payload))
    payload.setdefault("orderFulfillmentStatus", "NOT_STARTED")
    payload.setdefault("cancelStatus", {"cancelState": "NONE_REQUESTED", "cancelRequests": []})
    payload.setdefault("fulfillmentHrefs", [])
    for line in payload["lineItems"]:
        line.setdefault("lineItemFulfillmentStatus", "NOT_STARTED")
    return SandboxOrder(
        store=store,
        order_id=payload["orderId"],
        status=_order_state(payload),
        created=_parse_ts(payload["creationDate"]),
        updated=_parse_ts(payload["lastModifiedDate"]),
        payload=payload,
    )


class EbaySandbox(SandboxPlatform):
    """eBay's Sell APIs for one seller account per connected shop."""

    platform = "ebay"

    def listing_sku_id(self, *, listing) -> str:
        # eBay's Inventory API is keyed by the seller SKU, so that is the platform's id here.
        return listing.sku.code

    def new_shop_key(self, *, shop) -> str:
        # eBay user ids: letters, digits, dots, dashes and underscores; the pk keeps them unique.
        return f"{slugify(shop.name).replace('-', '_') or 'seller'}_{shop.pk}"

    def store_defaults(self) -> dict:
        return {"rate_per_second": 5.0, "rate_burst": 10}

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
        items = [(p.sku_id, p.product_id, p.title or p.seller_sku, p.price) for p in picks] or [
            ("SAMPLE-1", "385700000001", "Sample product", Decimal("19.99"))
        ]
        first = next_number(store, 1 + len(items))
        created = now.astimezone(UTC).replace(microsecond=now.microsecond // 1000 * 1000)
        carrier, service, shipping_price = rng.choice(SHIPPING_SERVICES)
        tax_rate = Decimal(TAX_RATES.get(buyer.state, "0.05"))
        subtotal = discount_total = tax_total = Decimal("0")
        ship_by = _ts(created + timedelta(days=2))
        lines = []
        for offset, (sku, product_id, title, price) in enumerate(items, start=1):
            quantity = rng.choice([1, 1, 1, 1, 2, 2, 3])
            price = Decimal(price or "9.99")
            cost = price * quantity
            discount = (cost * Decimal("0.10")).quantize(CENT) if rng.random() < 0.15 else None
            paid = cost - (discount or 0)
            tax = (paid * tax_rate).quantize(CENT, ROUND_HALF_UP)
            subtotal += cost
            discount_total += discount or 0
            tax_total += tax
            line = {
                "lineItemId": str(10_000_000_000_000 + first + offset),
                "legacyItemId": str(product_id),
                "sku": sku,
                "title": title,
                "lineItemCost": _money(cost, currency),
                "quantity": quantity,
                "soldFormat": "FIXED_PRICE",
                "listingMarketplaceId": "EBAY_US",
                "purchaseMarketplaceId": "EBAY_US",
                "lineItemFulfillmentStatus": "NOT_STARTED",
                "total": _money(paid + tax, currency),
                "deliveryCost": {"shippingCost": _money(Decimal("0"), currency)},
                "appliedPromotions": [],
                "taxes": [],
                "ebayCollectAndRemitTaxes": [
                    {
                        "taxType": "STATE_SALES_TAX",
                        "amount": _money(tax, currency),
                        "collectionMethod": "NET",
                    }
                ],
                "properties": {"buyerProtection": True},
                "lineItemFulfillmentInstructions": {
                    "minEstimatedDeliveryDate": _ts(created + timedelta(days=4)),
                    "maxEstimatedDeliveryDate": _ts(created + timedelta(days=7)),
                    "shipByDate": ship_by,
                    "guaranteedDelivery": False,
                },
            }
            if discount:
                line["discountedLineItemCost"] = _money(paid, currency)
                line["appliedPromotions"] = [
                    {
                        "description": "10% off",
                        "discountAmount": _money(discount, currency),
                        "promotionId": str(5_000_000_000 + first),
                    }
                ]
            lines.append(line)
        shipping = Decimal(shipping_price)
        total = subtotal - discount_total + shipping + tax_total
        contact = {
            "addressLine1": buyer.line1,
            "city": buyer.city,
            "stateOrProvince": buyer.state,
            "postalCode": buyer.postal_code,
            "countryCode": buyer.country,
        }
        if buyer.line2:
            contact["addressLine2"] = buyer.line2
        ship_to = {
            "fullName": buyer.name,
            "contactAddress": contact,
            "primaryPhone": {"phoneNumber": buyer.phone},
            "email": f"{uuid.UUID(int=rng.getrandbits(128)).hex[:16]}@members.ebay.com",
        }
        pricing = {
            "priceSubtotal": _money(subtotal, currency),
            "deliveryCost": _money(shipping, currency),
            "tax": _money(tax_total, currency),
            "total": _money(total, currency),
        }
        if discount_total:
            # eBay reports the discount as a negative amount.
            pricing["priceDiscount"] = _money(-discount_total, currency)
        order = {
            "orderId": _order_id(first),
            "legacyOrderId": _order_id(first),
            "creationDate": _ts(created),
            "lastModifiedDate": _ts(created),
            "orderFulfillmentStatus": "NOT_STARTED",
            "orderPaymentStatus": "PAID",
            "sellerId": store.shop_key,
            "salesRecordReference": str(1000 + first),
            "buyer": {
                "username": f"{buyer.first_name.lower()}{buyer.last_name[0].lower()}_"
                f"{rng.randint(1, 9999)}",
                "taxAddress": {
                    "stateOrProvince": buyer.state,
                    "postalCode": buyer.postal_code,
                    "countryCode": buyer.country,
                },
            },
            "pricingSummary": pricing,
            "cancelStatus": {"cancelState": "NONE_REQUESTED", "cancelRequests": []},
            "paymentSummary": {
                "totalDueSeller": _money(total - tax_total, currency),
                "payments": [
                    {
                        "paymentMethod": "EBAY",
                        "paymentReferenceId": uuid.UUID(int=rng.getrandbits(128)).hex[:20],
                        "paymentDate": _ts(created),
                        "amount": _money(total, currency),
                        "paymentStatus": "PAID",
                    }
                ],
                "refunds": [],
            },
            "fulfillmentStartInstructions": [
                {
                    "fulfillmentInstructionsType": "SHIP_TO",
                    "minEstimatedDeliveryDate": _ts(created + timedelta(days=4)),
                    "maxEstimatedDeliveryDate": _ts(created + timedelta(days=7)),
                    "ebaySupportedFulfillment": False,
                    "shippingStep": {
                        "shippingCarrierCode": carrier,
                        "shippingServiceCode": service,
                        "shipTo": ship_to,
                    },
                }
            ],
            "fulfillmentHrefs": [],
            "lineItems": lines,
        }
        if rng.random() < 0.08:
            order["buyerCheckoutNotes"] = rng.choice(BUYER_NOTES)
        return order

    def compose_order(self, *, store: SandboxStore, draft: OrderDraft) -> dict:
        """`draft` as a Fulfillment API order: PAID (PENDING when unpaid), one line item per
        product with eBay-collected sales tax, `shipByDate` from `draft.ship_by`; line item
        ids derive from `draft.number`."""
        currency = "USD"
        address = draft.address
        lines = []
        subtotal = discount_total = tax_total = Decimal("0")
        for index, line in enumerate(draft.lines):
            product = line.product
            cost = line.unit_price * line.quantity
            paid = cost - line.discount
            subtotal += cost
            discount_total += line.discount
            tax_total += line.tax
            item = {
                "lineItemId": str(10_000_000_000_000 + draft.number * 100 + index),
                "legacyItemId": str(product.product_id),
                "sku": product.sku_id,
                "title": product.title or product.seller_sku,
                "lineItemCost": _money(cost, currency),
                "quantity": line.quantity,
                "soldFormat": "FIXED_PRICE",
                "listingMarketplaceId": "EBAY_US",
                "purchaseMarketplaceId": "EBAY_US",
                "lineItemFulfillmentStatus": "NOT_STARTED",
                "total": _money(paid + line.tax, currency),
                "deliveryCost": {"shippingCost": _money(Decimal("0"), currency)},
                "appliedPromotions": [],
                "taxes": [],
                "ebayCollectAndRemitTaxes": [
                    {
                        "taxType": "STATE_SALES_TAX",
                        "amount": _money(line.tax, currency),
                        "collectionMethod": "NET",
                    }
                ],
                "properties": {"buyerProtection": True},
                "lineItemFulfillmentInstructions": {
                    "minEstimatedDeliveryDate": _ts(draft.placed_at + timedelta(days=4)),
                    "maxEstimatedDeliveryDate": _ts(draft.placed_at + timedelta(days=7)),
                    "guaranteedDelivery": False,
                },
            }
            if draft.ship_by is not None:
                item["lineItemFulfillmentInstructions"]["shipByDate"] = _ts(draft.ship_by)
            if line.discount:
                item["discountedLineItemCost"] = _money(paid, currency)
            lines.append(item)
        total = subtotal - discount_total + draft.shipping_fee + tax_total
        contact = {
            "addressLine1": address.line1,
            "city": address.city,
            "stateOrProvince": address.state,
            "postalCode": address.postal_code,
            "countryCode": address.country,
        }
        if address.line2:
            contact["addressLine2"] = address.line2
        pricing = {
            "priceSubtotal": _money(subtotal, currency),
            "deliveryCost": _money(draft.shipping_fee, currency),
            "tax": _money(tax_total, currency),
            "total": _money(total, currency),
        }
        if discount_total:
            pricing["priceDiscount"] = _money(-discount_total, currency)
        payments = []
        if draft.paid_at is not None:
            payments.append(
                {
                    "paymentMethod": "EBAY",
                    "paymentReferenceId": f"{draft.number:020d}",
                    "paymentDate": _ts(draft.paid_at),
                    "amount": _money(total, currency),
                    "paymentStatus": "PAID",
                }
            )
        username = draft.buyer_user_id or (
            "".join(ch for ch in draft.buyer_name.lower() if ch.isalnum()) + f"_{draft.number}"
        )
        order = {
            "orderId": draft.order_id,
            "legacyOrderId": draft.order_id,
            "creationDate": _ts(draft.placed_at),
            "lastModifiedDate": _ts(draft.updated_at),
            "orderFulfillmentStatus": "NOT_STARTED",
            "orderPaymentStatus": "PAID" if draft.paid_at else "PENDING",
            "sellerId": store.shop_key,
            "salesRecordReference": str(1000 + draft.number),
            "buyer": {
                "username": username,
                "taxAddress": {
                    "stateOrProvince": address.state,
                    "postalCode": address.postal_code,
                    "countryCode": address.country,
                },
            },
            "pricingSummary": pricing,
            "cancelStatus": {"cancelState": "NONE_REQUESTED", "cancelRequests": []},
            "paymentSummary": {
                "totalDueSeller": _money(total - tax_total, currency),
                "payments": payments,
                "refunds": [],
            },
            "fulfillmentStartInstructions": [
                {
                    "fulfillmentInstructionsType": "SHIP_TO",
                    "ebaySupportedFulfillment": False,
                    "shippingStep": {
                        "shippingCarrierCode": "USPS",
                        "shippingServiceCode": "USPSPriority",
                        "shipTo": {
                            "fullName": address.name,
                            "contactAddress": contact,
                            "primaryPhone": {"phoneNumber": address.phone},
                            "email": draft.buyer_email,
                        },
                    },
                }
            ],
            "fulfillmentHrefs": [],
            "lineItems": lines,
        }
        if draft.note:
            order["buyerCheckoutNotes"] = draft.note
        return order

    def ship_order(
        self,
        *,
        store: SandboxStore,
        order: SandboxOrder,
        tracking_number: str,
        carrier: str,
        at: datetime,
    ) -> SandboxShipment:
        """One shipping fulfillment of everything left to ship, as the API records it."""
        with transaction.atomic():
            order = SandboxOrder.objects.select_for_update().get(pk=order.pk)
            if _order_state(order.payload) == "CANCELED":
                raise SandboxInputError(f"order {order.order_id} is cancelled: it cannot ship")
            shipped = _shipped_quantities(store, order.order_id)
            requested = {
                str(line["lineItemId"]): int(line["quantity"])
                - shipped.get(str(line["lineItemId"]), 0)
                for line in order.payload["lineItems"]
            }
            requested = {line_id: left for line_id, left in requested.items() if left > 0}
            if not requested:
                raise SandboxInputError(f"order {order.order_id} has nothing left to ship")
            at = _whole_ms(at)
            return _fulfil(
                store,
                order,
                requested,
                tracking=tracking_number,
                carrier=CARRIER_NAMES.get(carrier, carrier),
                shipped_date=_ts(at),
                href=f"{SANDBOX_BASE_URL}/ebay/{ORDERS}/{order.order_id}/shipping_fulfillment",
                now=at,
            )

    def advance_order(
        self, *, store: SandboxStore, order: SandboxOrder, status: str, at: datetime
    ) -> bool:
        """The Fulfillment API stops at FULFILLED: delivery is the carrier's to tell."""
        return False

    def cancel_order(self, *, store: SandboxStore, order: SandboxOrder, at: datetime) -> None:
        """Cancelled before shipping: cancelState CANCELED and the buyer refunded."""
        at = _whole_ms(at)
        with transaction.atomic():
            order = SandboxOrder.objects.select_for_update().get(pk=order.pk)
            payload = order.payload
            if payload.get("orderFulfillmentStatus") != "NOT_STARTED":
                raise SandboxInputError(f"order {order.order_id} has shipped: too late")
            payload.setdefault("cancelStatus", {})["cancelState"] = "CANCELED"
            if payload.get("orderPaymentStatus") == "PAID":
                payload["orderPaymentStatus"] = "FULLY_REFUNDED"
            payload["lastModifiedDate"] = _ts(at)
            order.updated = at
            order.status = _order_state(payload)
            order.save(update_fields=["payload", "updated", "status"])

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
        order's index in the list: `order 3: lineItems[0].quantity: ...`."""
        return upsert_indexed(store, payloads, _order_row)

    def show(self, *, store: SandboxStore, what: str) -> list[dict]:
        if what == "orders":
            return [o.payload for o in SandboxOrder.objects.filter(store=store).order_by("pk")]
        if what == "inventory":
            products = SandboxProduct.objects.filter(store=store).order_by("pk")
            return [_inventory_item(p) for p in products]
        if what == "shipments":
            shipments = SandboxShipment.objects.filter(store=store).order_by("pk")
            return [_fulfillment(s) for s in shipments]
        if what == "cancellations":
            return [
                {
                    "cancelId": c.cancel_id,
                    "legacyOrderId": c.order_id,
                    "cancelState": c.status,
                    "decision": c.decision,
                    "rejectReason": c.reject_reason,
                    "answeredAt": _ts(c.answered_at) if c.answered_at else None,
                    **c.payload,
                }
                for c in SandboxCancellation.objects.filter(store=store).order_by("pk")
            ]
        raise SandboxInputError(f"show: unknown {what!r} (orders, inventory, shipments, ...)")

    def request_cancellation(
        self, *, store: SandboxStore, order: SandboxOrder, at: datetime | None = None
    ) -> None:
        """The buyer opens a Post-Order cancellation (now, or at `at`): a pending
        `cancelRequests[]` entry and cancelState IN_PROGRESS, until the seller answers it."""
        now = _whole_ms(at) if at is not None else _now()
        with transaction.atomic():
            order = SandboxOrder.objects.select_for_update().get(pk=order.pk)
            payload = order.payload
            cancel_status = payload.setdefault("cancelStatus", {})
            if cancel_status.get("cancelState") in ("CANCELED", "IN_PROGRESS"):
                return
            cancel_id = str(5_000_000_000 + next_number(store))
            reason = random.Random(order.order_id).choice(CANCEL_REASONS)
            request = {
                "cancelInitiator": "BUYER",
                "cancelReason": reason,
                "cancelRequestedDate": _ts(now),
                "cancelRequestId": cancel_id,
                "cancelRequestState": "REQUESTED",
            }
            cancel_status["cancelState"] = "IN_PROGRESS"
            cancel_status.setdefault("cancelRequests", []).append(request)
            payload["lastModifiedDate"] = _ts(now)
            order.updated = now
            order.save(update_fields=["payload", "updated"])
            SandboxCancellation.objects.create(
                store=store,
                cancel_id=cancel_id,
                order_id=order.order_id,
                status="CANCEL_REQUESTED",
                payload={"cancelReason": reason, "requestorType": "BUYER"},
                created=now,
                updated=now,
            )

    def send_webhook(self, *, store: SandboxStore, topic: str, data: dict) -> int | None:
        """Not sent. eBay signs Notification API messages with ECDSA keys served by its
        getPublicKey API (X-EBAY-SIGNATURE) and sends order events through the older Platform
        Notifications; an HMAC stand-in would test a protocol eBay does not speak. eBay shops
        are synced by polling instead."""
        return None
