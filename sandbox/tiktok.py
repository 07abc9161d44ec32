"""TikTok Shop sandbox: the 202309 Open API under /sandbox/tiktok/, backed by the sandbox tables.

It checks what TikTok checks, in TikTok's words: the signature over the decoded query and the
exact body (106001), the timestamp window (36009004), the `x-tts-access-token` header and its
expiry (105002), `shop_cipher` where required (106013) and refused on /authorization/*, page
sizes and page tokens (base64 that always contains `+` and `/`), status values, the store's rate
limit (HTTP 429 + 36009002 + Retry-After) and the store's injected faults (per package too,
`SandboxStore.package_faults`: one package of a batch ship failing). Every ship call naming a
package is counted on it (`SandboxShipment.ship_requests`), so a double post shows. Orders are
stored in the exact 202309 order-detail shape and shown as order detail shows them (no recipient
while UNPAID/ON_HOLD; name and phone masked for TikTok-shipped orders).

The signature is re-implemented here rather than imported from the connector, so a connector
bug cannot verify itself. Codes not in our reference are marked "sandbox-chosen".
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import json
import random
import re
import string
import struct
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from functools import wraps
from urllib.parse import urlsplit

import httpx
from django.db import transaction
from django.db.models import F, JSONField, Q, QuerySet, Value
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.urls import path, re_path
from django.utils.crypto import get_random_string
from django.views.decorators.csrf import csrf_exempt

from logistics.tracking_numbers import make_tracking_number, usps_impb_barcode
from sandbox.base import (
    CARRIER_NAMES,
    OrderDraft,
    SandboxInputError,
    SandboxPlatform,
    injected_fault,
    new_secret,
    next_number,
    plain_fault_response,
    split_amount,
    throttled,
    tracking_refusal,
)
from sandbox.models import (
    SandboxAffiliateOrder,
    SandboxCancellation,
    SandboxOrder,
    SandboxProduct,
    SandboxShipment,
    SandboxStore,
    SandboxWebhook,
)
from sandbox.people import BUYER_NOTES, CANCEL_REASONS, STATE_NAMES, fake_buyer
from shops.platforms.http import SANDBOX_HOST, sandbox_transport

PREFIX = "/sandbox/tiktok"

# --- codes --------------------------------------------------------------------------------------
CODE_RATE_LIMITED = 36009002
CODE_GATEWAY = 36009004
CODE_BAD_PATH = 36009009
CODE_BAD_METHOD = 36009010
CODE_BODY_NOT_JSON = 36009022
CODE_TOKEN_EXPIRED = 105002
CODE_BAD_SIGN = 106001
CODE_CIPHER_REQUIRED = 106013
CODE_BAD_AUTH_CODE = 36004004
CODE_BAD_STOCK = 12019024
CODE_ALL_WAREHOUSES = 12019028
CODE_BATCH_FAILED = 12052990
CODE_NOT_OWNED = 21008111
CODE_PACKAGE_FROZEN = 10007014  # batch ship: "package in freeze status"
CODE_INTERNAL = 36009003
# Sandbox-chosen (the real codes are not in our reference):
CODE_SKU_NOT_IN_PRODUCT = 12052001
CODE_UNKNOWN_WAREHOUSE = 12052002
CODE_ORDER_STATUS = 21001003
CODE_PACKAGE_SHIPPED = 21011002
CODE_TIKTOK_LOGISTICS = 21011003
CODE_CANCEL_ANSWERED = 25003001
CODE_INVALID_TRACKING = 21011020  # sandbox-chosen: the carrier cannot find the tracking number

TIMESTAMP_PAST = 300  # seconds a request's timestamp may lag
TIMESTAMP_FUTURE = 30
ACCESS_TOKEN_LIFETIME = timedelta(days=7)
AUTHORIZATION_LIFETIME = timedelta(days=365)
CANCEL_ANSWER = timedelta(hours=48)
MAX_QUANTITY = 99999  # exclusive
# How many packages one batch ship call takes. TikTok's reference does not say; 50 is the bound
# of its other id-list calls (order detail ids, package search page size). Sandbox-chosen.
MAX_BATCH_SHIP = 50
# `SandboxStore.package_faults` kinds -> what the package's ship answers.
PACKAGE_FAULTS = {
    "frozen": (CODE_PACKAGE_FROZEN, "package in freeze status"),
    "internal": (CODE_INTERNAL, "internal error, please try again later"),
}

ORDER_STATUSES = (
    "UNPAID",
    "ON_HOLD",
    "AWAITING_SHIPMENT",
    "PARTIALLY_SHIPPING",
    "AWAITING_COLLECTION",
    "IN_TRANSIT",
    "DELIVERED",
    "COMPLETED",
    "CANCELLED",
)
HIDDEN_ADDRESS = ("UNPAID", "ON_HOLD")
SHIPPABLE = ("AWAITING_SHIPMENT", "PARTIALLY_SHIPPING")
CANCELLABLE = ("UNPAID", "ON_HOLD", "AWAITING_SHIPMENT")

CANCEL_PENDING = "CANCELLATION_REQUEST_PENDING"
CANCEL_APPROVED = "CANCELLATION_REQUEST_SUCCESS"
# Which status a seller's rejection leaves is not documented; _CANCEL (the request did not go
# through) is the closest of the listed ones. Uncertain.
CANCEL_REJECTED = "CANCELLATION_REQUEST_CANCEL"

WEBHOOK_TYPES = {
    "ORDER_STATUS_CHANGE": 1,
    "RECIPIENT_ADDRESS_UPDATE": 3,
    "PACKAGE_UPDATE": 4,
    "PRODUCT_STATUS_CHANGE": 5,
    "SELLER_DEAUTHORIZATION": 6,
    "UPCOMING_AUTHORIZATION_EXPIRATION": 7,
    "CANCELLATION_STATUS_CHANGE": 11,
    "RETURN_STATUS_CHANGE": 12,
}

DELIVERY_OPTION_ID = "7091146663229654785"
DELIVERY_OPTION_NAME = "Standard shipping"
SHIPPING_PROVIDERS = {
    "7117858858072016686": "USPS",
    "7117859084333745966": "UPS",
    "7129736201337620226": "FedEx",
    "7212608507307099909": "DHL eCommerce",
    "7248600717110282027": "OnTrac",
}
PAYMENT_METHODS = ["Credit card", "Credit card", "Credit card", "PayPal", "Apple Pay", "Klarna"]
# Sales tax by destination state, roughly the state base rate; elsewhere 6 %.
STATE_TAX = {
    "CA": "0.0725",
    "TX": "0.0625",
    "NY": "0.04",
    "FL": "0.06",
    "WA": "0.065",
    "IL": "0.0625",
    "NJ": "0.06625",
    "TN": "0.07",
    "OR": "0",
    "MT": "0",
    "NH": "0",
    "DE": "0",
    "AK": "0",
}

# Ids: a type prefix, the store (so ids are unique across stores, as TikTok's are) and the
# store's counter (`next_number`). A generated order's first package id is derived from its
# number, so a package id leads back to its order without a search.
ORDER_BASE = 576_000_000_000_000_000
LINE_BASE = 577_000_000_000_000_000
PACKAGE_BASE = 1_152_000_000_000_000_000
CANCEL_BASE = 4_035_000_000_000_000_000
NOTIFICATION_BASE = 7_380_000_000_000_000_000
STORE_SPAN = 10**10


def _id(base: int, store: SandboxStore, number: int) -> str:
    return str(base + (store.pk % 100_000) * STORE_SPAN + number)


def _dt(seconds: int) -> datetime:
    return datetime.fromtimestamp(int(seconds), tz=UTC)


def _seconds(when: datetime) -> int:
    return int(when.timestamp())


def money(value: Decimal) -> str:
    """TikTok's money string: major units, no needless zeros ("5", "19.99", "21.2")."""
    text = f"{value.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


# --- responses ----------------------------------------------------------------------------------


class ApiError(Exception):
    def __init__(self, code: int, message: str, *, status: int = 200):
        self.code = code
        self.message = message
        self.status = status
        super().__init__(message)


def invalid(message: str) -> ApiError:
    return ApiError(CODE_GATEWAY, f"invalid param error: {message}", status=400)


def request_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d%H%M%S") + get_random_string(
        20, string.digits + "ABCDEF"
    )


def respond(data: dict | None = None, *, code: int = 0, message: str = "Success", status=200):
    body: dict = {"code": code, "message": message, "request_id": request_id()}
    if code == 0:
        body["data"] = data if data is not None else {}
    return JsonResponse(body, status=status)


def rate_limited(store: SandboxStore) -> HttpResponse:
    response = respond(code=CODE_RATE_LIMITED, message="Too many requests", status=429)
    wait = 1.0 / store.rate_per_second if store.rate_per_second > 0 else 1.0
    response["Retry-After"] = str(max(1, int(wait + 0.999)))
    return response


# --- the request pipeline -----------------------------------------------------------------------


@dataclass
class Call:
    """One authenticated API call: the store it is for and its parsed input."""

    store: SandboxStore
    request: HttpRequest
    query: QueryDict
    body: dict
    now: int


def _api_path(request: HttpRequest) -> str:
    return request.path.split(PREFIX, 1)[1] if PREFIX in request.path else request.path


def _store(request: HttpRequest) -> SandboxStore:
    app_key = request.GET.get("app_key", "")
    if not app_key:
        raise ApiError(CODE_GATEWAY, "app_key is missing", status=401)
    store = SandboxStore.objects.filter(platform="tiktok", app_key=app_key).first()
    if store is None:
        raise ApiError(CODE_GATEWAY, "app_key is invalid", status=401)
    return store


def _verify_signature(request: HttpRequest, store: SandboxStore, now: int, *, forced_bad: bool):
    given = request.GET.get("sign", "")
    if not given:
        raise ApiError(CODE_GATEWAY, "sign is missing", status=401)
    raw_timestamp = request.GET.get("timestamp", "")
    if not raw_timestamp.isdigit():
        raise ApiError(CODE_GATEWAY, "timestamp is missing or not a number", status=401)
    timestamp = int(raw_timestamp)
    if not now - TIMESTAMP_PAST <= timestamp <= now + TIMESTAMP_FUTURE:
        raise ApiError(CODE_GATEWAY, "timestamp is out of the allowed window", status=401)
    # QueryDict holds decoded values: exactly what the signature covers.
    params = {key: request.GET.get(key, "") for key in request.GET}
    base = _api_path(request) + "".join(
        f"{key}{params[key]}"
        for key in sorted(params)
        if key not in ("sign", "access_token") and params[key] != ""
    )
    message = base.encode()
    content_type = request.META.get("CONTENT_TYPE", "")
    if request.method != "GET" and not content_type.startswith("multipart/form-data"):
        message += request.body
    secret = store.app_secret.encode()
    expected = hmac.new(secret, secret + message + secret, hashlib.sha256).hexdigest()
    if forced_bad or not hmac.compare_digest(expected, given):
        raise ApiError(CODE_BAD_SIGN, "Invalid credentials: sign verification failed", status=401)


def _verify_token(request: HttpRequest, store: SandboxStore, now: int) -> None:
    token = request.headers.get("x-tts-access-token", "")
    if not token:
        raise ApiError(CODE_GATEWAY, "access token is missing (x-tts-access-token)", status=401)
    if not hmac.compare_digest(token.encode(), store.access_token.encode()):
        raise ApiError(CODE_GATEWAY, "access token is invalid", status=401)
    expires = store.access_token_expires_at
    if expires is not None and _seconds(expires) <= now:
        raise ApiError(CODE_TOKEN_EXPIRED, "access token has expired", status=401)


def _verify_cipher(request: HttpRequest, store: SandboxStore, *, shop_scoped: bool) -> None:
    cipher = request.GET.get("shop_cipher", "")
    if not shop_scoped:
        if cipher:
            raise ApiError(CODE_GATEWAY, "Unexpected identifier: shop_cipher", status=400)
        return
    if not cipher:
        raise ApiError(CODE_CIPHER_REQUIRED, "shop_cipher is required")
    if cipher != store.shop_cipher:
        raise ApiError(CODE_GATEWAY, "invalid param error: shop_cipher is not authorized")


def _json_body(request: HttpRequest) -> dict:
    if not request.body:
        return {}
    try:
        body = json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(CODE_BODY_NOT_JSON, "request body must be JSON", status=400) from None
    if not isinstance(body, dict):
        raise ApiError(CODE_BODY_NOT_JSON, "request body must be a JSON object", status=400)
    return body


def endpoint(*, methods: tuple[str, ...] = ("GET",), shop_scoped: bool = True, signed=True):
    """Wrap a view in TikTok's gateway: store by app_key, faults, rate limit, signature,
    timestamp, token and cipher checks, then the envelope around what the view returns."""

    def decorate(func):
        @csrf_exempt
        @wraps(func)
        def view(request: HttpRequest, **kwargs) -> HttpResponse:
            try:
                if request.method not in methods:
                    raise ApiError(CODE_BAD_METHOD, "method not allowed", status=405)
                store = _store(request)
                fault = injected_fault(store)
                if fault == "429":
                    return rate_limited(store)
                if fault in ("500", "503", "timeout"):
                    return plain_fault_response(fault)
                if throttled(store, func.__name__):
                    return rate_limited(store)
                now = int(time.time())
                if signed:
                    _verify_signature(request, store, now, forced_bad=fault == "badsign")
                    _verify_token(request, store, now)
                    _verify_cipher(request, store, shop_scoped=shop_scoped)
                body = _json_body(request) if request.method != "GET" else {}
                data = func(Call(store, request, request.GET, body, now), **kwargs)
            except ApiError as exc:
                return respond(code=exc.code, message=exc.message, status=exc.status)
            return respond(data)

        return view

    return decorate


@csrf_exempt
def unknown_path(request: HttpRequest, **kwargs) -> HttpResponse:
    return respond(code=CODE_BAD_PATH, message="path not found", status=404)


# --- parameters and paging ----------------------------------------------------------------------


def _page_size(query: QueryDict, *, maximum: int, default: int | None) -> int:
    raw = query.get("page_size", "")
    if raw == "":
        if default is None:
            raise invalid("page_size is required")
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise invalid(f"page_size must be between 1 and {maximum}")
    return int(raw)


def _choice(query: QueryDict, key: str, allowed: tuple[str, ...], default: str) -> str:
    value = query.get(key) or default
    if value not in allowed:
        raise invalid(f"{key} must be one of {', '.join(allowed)}")
    return value


def _body_time(body: dict, key: str) -> datetime | None:
    value = body.get(key)
    if value in (None, ""):
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise invalid(f"{key} must be a Unix timestamp in seconds")
    return _dt(value)


def _body_list(body: dict, key: str, *, limit: int | None = None) -> list[str]:
    value = body.get(key)
    if value in (None, []):
        return []
    if not isinstance(value, list) or not all(isinstance(item, (str, int)) for item in value):
        raise invalid(f"{key} must be a list of strings")
    if limit is not None and len(value) > limit:
        raise invalid(f"{key} takes at most {limit} values")
    return [str(item) for item in value]


def _time_filters(queryset: QuerySet, body: dict) -> QuerySet:
    """create_time_ge/lt and update_time_ge/lt: ge inclusive, lt exclusive."""
    for prefix, field in (("create_time", "created"), ("update_time", "updated")):
        since = _body_time(body, f"{prefix}_ge")
        until = _body_time(body, f"{prefix}_lt")
        if since is not None:
            queryset = queryset.filter(**{f"{field}__gte": since})
        if until is not None:
            queryset = queryset.filter(**{f"{field}__lt": until})
    return queryset


# A fixed first 3 bytes that base64 renders as "+/+/": every token exercises the encoding trap.
TOKEN_MARK = b"\xfb\xff\xbf"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _encode_token(kind: str, when: datetime, pk: int) -> str:
    micros = (when - EPOCH) // timedelta(microseconds=1)
    return base64.b64encode(TOKEN_MARK + struct.pack(">cqq", kind.encode(), micros, pk)).decode()


def _decode_token(token: str, kind: str) -> tuple[datetime, int]:
    try:
        raw = base64.b64decode(token, validate=True)
        if not raw.startswith(TOKEN_MARK) or len(raw) != len(TOKEN_MARK) + 17:
            raise ValueError
        got, micros, pk = struct.unpack(">cqq", raw[len(TOKEN_MARK) :])
    except (binascii.Error, ValueError, struct.error):
        raise invalid("page_token is invalid") from None
    if got.decode() != kind:
        raise invalid("page_token does not belong to this sort")
    return EPOCH + timedelta(microseconds=micros), pk


def keyset_page(
    queryset: QuerySet, *, field: str, ascending: bool, page_size: int, token: str, kind: str
) -> tuple[list, str]:
    """One page ordered by (field, id), resuming after the row the token names, so rows
    updated while a client pages move behind or ahead of it but are never repeated or skipped
    within the rows that did not change."""
    if token:
        when, pk = _decode_token(token, kind)
        if ascending:
            queryset = queryset.filter(Q(**{f"{field}__gt": when}) | Q(**{field: when}, pk__gt=pk))
        else:
            queryset = queryset.filter(Q(**{f"{field}__lt": when}) | Q(**{field: when}, pk__lt=pk))
    order = (field, "pk") if ascending else (f"-{field}", "-pk")
    rows = list(queryset.order_by(*order)[: page_size + 1])
    if len(rows) <= page_size:
        return rows, ""
    rows = rows[:page_size]
    last = rows[-1]
    return rows, _encode_token(kind, getattr(last, field), last.pk)


# --- shapes -------------------------------------------------------------------------------------


def _mask(text: str, keep_start: int, keep_end: int) -> str:
    if len(text) <= keep_start + keep_end:
        return "*" * len(text)
    return text[:keep_start] + "*" * (len(text) - keep_start - keep_end) + text[-keep_end:]


def present_order(payload: dict) -> dict:
    """An order as order search/detail return it: no recipient before the buyer's cancel window
    closes (UNPAID/ON_HOLD), name and phone masked when TikTok ships the parcel."""
    if payload.get("status") in HIDDEN_ADDRESS and "recipient_address" in payload:
        return {key: value for key, value in payload.items() if key != "recipient_address"}
    address = payload.get("recipient_address")
    if payload.get("shipping_type") == "TIKTOK" and isinstance(address, dict):
        address = dict(address)
        for key in ("name", "first_name", "last_name"):
            if address.get(key):
                address[key] = " ".join(_mask(part, 1, 1) for part in str(address[key]).split())
        if address.get("phone_number"):
            address["phone_number"] = _mask(str(address["phone_number"]), 7, 2)
        return {**payload, "recipient_address": address}
    return payload


def inventory_shape(products: list[SandboxProduct]) -> list[dict]:
    """`data.inventory` of inventory search: products, their SKUs, per-warehouse quantities."""
    by_product: dict[str, dict[str, list[SandboxProduct]]] = {}
    for product in products:
        by_product.setdefault(product.product_id, {}).setdefault(product.sku_id, []).append(product)
    inventory = []
    for product_id, skus in by_product.items():
        sku_list = []
        for sku_id, rows in skus.items():
            sku_list.append(
                {
                    "id": sku_id,
                    "seller_sku": rows[0].seller_sku,
                    "total_available_quantity": sum(row.quantity for row in rows),
                    "total_committed_quantity": 0,
                    "warehouse_inventory": [
                        {
                            "warehouse_id": row.location_id,
                            "available_quantity": row.quantity,
                            "committed_quantity": 0,
                        }
                        for row in rows
                    ],
                }
            )
        inventory.append({"product_id": product_id, "skus": sku_list})
    return inventory


def _touch(order: SandboxOrder, now: int) -> None:
    """Record a change: update_time moves forward (never back), `updated` follows it, so an
    incremental search by update_time finds the order again."""
    payload = order.payload
    stamp = max(now, int(payload.get("update_time") or 0))
    payload["update_time"] = stamp
    order.status = payload["status"]
    order.updated = _dt(stamp)


def _save(order: SandboxOrder) -> None:
    order.save(update_fields=["payload", "status", "updated"])


def _live_items(payload: dict) -> list[dict]:
    return [
        item
        for item in payload.get("line_items") or []
        if item.get("display_status") != "CANCELLED"
    ]


# --- views: auth --------------------------------------------------------------------------------


def _check_app_secret(call: Call, grant_type: str) -> None:
    if call.query.get("grant_type") != grant_type:
        raise invalid(f"grant_type must be {grant_type}")
    secret = call.query.get("app_secret", "")
    if not hmac.compare_digest(secret.encode(), call.store.app_secret.encode()):
        raise ApiError(CODE_GATEWAY, "app_secret is invalid", status=401)


def rotate_tokens(store: SandboxStore, now: int) -> dict:
    """Issue a new token pair (the old one stops working) and answer as TikTok does, with
    absolute expiry times."""
    issued = _dt(now)
    store.access_token = new_secret("act.")
    store.access_token_expires_at = issued + ACCESS_TOKEN_LIFETIME
    store.refresh_token = new_secret("rft.")
    if store.refresh_token_expires_at is None or store.refresh_token_expires_at <= issued:
        store.refresh_token_expires_at = issued + AUTHORIZATION_LIFETIME
    store.refresh_token_expires_at = _dt(_seconds(store.refresh_token_expires_at))
    store.auth_code = ""
    store.save(
        update_fields=[
            "access_token",
            "access_token_expires_at",
            "refresh_token",
            "refresh_token_expires_at",
            "auth_code",
        ]
    )
    return {
        "access_token": store.access_token,
        "access_token_expire_in": _seconds(store.access_token_expires_at),
        "refresh_token": store.refresh_token,
        "refresh_token_expire_in": _seconds(store.refresh_token_expires_at),
        "open_id": f"open-{store.shop_key}",
        "seller_name": store.name,
        "seller_base_region": store.region,
        "user_type": 0,
        "granted_scopes": [
            "seller.authorization.info",
            "seller.order.info",
            "seller.fulfillment.basic",
            "seller.product.basic",
            "seller.return_refund.basic",
        ],
    }


def issue_auth_code(*, store: SandboxStore) -> str:
    """What the consent page would redirect back with: a single-use code for token get."""
    store.auth_code = get_random_string(32)
    store.save(update_fields=["auth_code"])
    return store.auth_code


@endpoint(shop_scoped=False, signed=False)
def token_get(call: Call) -> dict:
    _check_app_secret(call, "authorized_code")
    code = call.query.get("auth_code", "")
    if (
        not code
        or not call.store.auth_code
        or not hmac.compare_digest(code.encode(), call.store.auth_code.encode())
    ):
        raise ApiError(CODE_BAD_AUTH_CODE, "auth code is invalid or already used")
    return rotate_tokens(call.store, call.now)


@endpoint(shop_scoped=False, signed=False)
def token_refresh(call: Call) -> dict:
    _check_app_secret(call, "refresh_token")
    token = call.query.get("refresh_token", "")
    if not token or not hmac.compare_digest(token.encode(), call.store.refresh_token.encode()):
        raise ApiError(CODE_BAD_AUTH_CODE, "refresh_token is invalid")
    expires = call.store.refresh_token_expires_at
    if expires is not None and _seconds(expires) <= call.now:
        raise ApiError(CODE_BAD_AUTH_CODE, "refresh_token has expired")
    return rotate_tokens(call.store, call.now)


@endpoint(shop_scoped=False)
def authorized_shops(call: Call) -> dict:
    store = call.store
    return {
        "shops": [
            {
                "id": store.shop_key,
                "name": store.name,
                "region": store.region,
                "seller_type": "LOCAL",
                "cipher": store.shop_cipher,
                "code": f"{store.region}LC{store.shop_key[-6:]}",
            }
        ]
    }


# --- views: orders ------------------------------------------------------------------------------


@endpoint(methods=("POST",))
def orders_search(call: Call) -> dict:
    page_size = _page_size(call.query, maximum=100, default=None)
    sort_field = _choice(call.query, "sort_field", ("create_time", "update_time"), "create_time")
    sort_order = _choice(call.query, "sort_order", ("ASC", "DESC"), "DESC")
    body = call.body
    orders = _time_filters(call.store.orders.all(), body)
    if body.get("order_status"):
        if body["order_status"] not in ORDER_STATUSES:
            raise invalid("order_status is not a valid status")
        orders = orders.filter(status=body["order_status"])
    if body.get("shipping_type"):
        if body["shipping_type"] not in ("TIKTOK", "SELLER"):
            raise invalid("shipping_type must be TIKTOK or SELLER")
        orders = orders.filter(payload__shipping_type=body["shipping_type"])
    if body.get("buyer_user_id"):
        orders = orders.filter(payload__user_id=str(body["buyer_user_id"]))
    if isinstance(body.get("is_buyer_request_cancel"), bool):
        orders = orders.filter(payload__is_buyer_request_cancel=body["is_buyer_request_cancel"])
    total = orders.count()
    field = "updated" if sort_field == "update_time" else "created"
    kind = "U" if field == "updated" else "C"
    rows, token = keyset_page(
        orders,
        field=field,
        ascending=sort_order == "ASC",
        page_size=page_size,
        token=call.query.get("page_token", ""),
        kind=kind if sort_order == "ASC" else kind.lower(),
    )
    return {
        "orders": [present_order(row.payload) for row in rows],
        "next_page_token": token,
        "total_count": total,
    }


@endpoint()
def orders_detail(call: Call) -> dict:
    ids = list(dict.fromkeys(i for i in (call.query.get("ids") or "").split(",") if i))
    if not ids:
        raise invalid("ids is required")
    if len(ids) > 50:
        raise invalid("ids takes at most 50 order ids")
    found = {row.order_id: row for row in call.store.orders.filter(order_id__in=ids)}
    return {"orders": [present_order(found[i].payload) for i in ids if i in found]}


# --- views: affiliate orders --------------------------------------------------------------------


def _affiliate_shape(row: SandboxAffiliateOrder, order: SandboxOrder | None) -> dict:
    """One order of affiliate seller order search: per SKU, the creator, the content and the
    commission (estimated until the order settles)."""
    payload = order.payload if order is not None else {}
    currency = (payload.get("payment") or {}).get("currency", "USD")
    by_sku: dict[str, dict] = {}
    for item in _live_items(payload) if payload else []:
        entry = by_sku.setdefault(
            str(item.get("sku_id")),
            {"product_id": str(item.get("product_id") or ""), "quantity": 0, "price": Decimal(0)},
        )
        entry["quantity"] += 1
        entry["price"] += Decimal(str(item.get("sale_price") or "0"))
    skus = []
    for sku_id, entry in by_sku.items():
        base = {"amount": money(entry["price"]), "currency": currency}
        commission = (entry["price"] * row.commission_rate / Decimal(10000)).quantize(
            Decimal("0.01"), rounding=ROUND_HALF_UP
        )
        skus.append(
            {
                "sku_id": sku_id,
                "product_id": entry["product_id"],
                "quantity": entry["quantity"],
                "price": base,
                "creator_username": row.creator_username,
                "content_type": row.content_type,
                "content_id": row.content_id,
                "commission_rate": str(row.commission_rate),
                "estimated_commission_base": base,
                "estimated_paid_commission": {"amount": money(commission), "currency": currency},
                "refunded_quantity": 0,
                "returned_quantity": 0,
            }
        )
    return {
        "id": row.order_id,
        "status": (order.status if order is not None else "UNPAID"),
        "create_time": _seconds(row.created),
        "skus": skus,
    }


@endpoint(methods=("POST",))
def affiliate_orders_search(call: Call) -> dict:
    """`POST /affiliate_seller/202410/orders/search`: orders creators sold, newest first,
    filtered by create_time_ge/lt (a window of at most three months, as the real API)."""
    page_size = _page_size(call.query, maximum=100, default=20)
    since = _body_time(call.body, "create_time_ge")
    until = _body_time(call.body, "create_time_lt")
    if since is not None and until is not None and until - since > timedelta(days=92):
        raise invalid("the create_time window must not exceed three months")
    rows = call.store.affiliate_orders.all()
    if since is not None:
        rows = rows.filter(created__gte=since)
    if until is not None:
        rows = rows.filter(created__lt=until)
    total = rows.count()
    page, token = keyset_page(
        rows,
        field="created",
        ascending=False,
        page_size=page_size,
        token=call.query.get("page_token", ""),
        kind="a",
    )
    orders = {
        order.order_id: order
        for order in call.store.orders.filter(order_id__in=[row.order_id for row in page])
    }
    return {
        "orders": [_affiliate_shape(row, orders.get(row.order_id)) for row in page],
        "next_page_token": token,
        "total_count": total,
    }


# --- views: cancellations -----------------------------------------------------------------------


@endpoint(methods=("POST",))
def cancellations_search(call: Call) -> dict:
    page_size = _page_size(call.query, maximum=50, default=10)
    sort_field = _choice(call.query, "sort_field", ("create_time", "update_time"), "create_time")
    sort_order = _choice(call.query, "sort_order", ("ASC", "DESC"), "ASC")
    body = call.body
    found = _time_filters(call.store.cancellations.exclude(payload__has_key="record"), body)
    if cancel_ids := _body_list(body, "cancel_ids", limit=50):
        found = found.filter(cancel_id__in=cancel_ids)
    if order_ids := _body_list(body, "order_ids", limit=50):
        found = found.filter(order_id__in=order_ids)
    if statuses := _body_list(body, "cancel_status"):
        found = found.filter(status__in=statuses)
    if types := _body_list(body, "cancel_types"):
        found = found.filter(payload__cancel_type__in=types)
    rows, token, total = _sorted_page(
        call, found, page_size=page_size, sort_field=sort_field, sort_order=sort_order
    )
    return {
        "cancellations": [row.payload for row in rows],
        "next_page_token": token,
        "total_count": total,
    }


def _answer_cancellation(call: Call, cancel_id: str, decision: str) -> dict:
    if len(call.query.get("idempotency_key", "")) > 255:
        raise invalid("idempotency_key is longer than 255 characters")
    reject_reason = str(call.body.get("reject_reason") or "")
    if decision == "reject" and not reject_reason:
        raise invalid("reject_reason is required")
    store = call.store
    with transaction.atomic():
        cancellation = store.cancellations.select_for_update().filter(cancel_id=cancel_id).first()
        if cancellation is None:
            raise ApiError(CODE_NOT_OWNED, "cancellation does not exist or is not this seller's")
        if cancellation.decision:
            if cancellation.decision == decision:
                return {}  # the same answer again (a retry): nothing more to do
            raise ApiError(
                CODE_CANCEL_ANSWERED,
                f"cancellation is {cancellation.status}; it can no longer be answered",
            )
        order = store.orders.select_for_update().filter(order_id=cancellation.order_id).first()
        status = CANCEL_APPROVED if decision == "approve" else CANCEL_REJECTED
        cancellation.status = status
        cancellation.decision = decision
        cancellation.reject_reason = reject_reason[:200]
        cancellation.answered_at = _dt(call.now)
        cancellation.updated = _dt(max(call.now, _seconds(cancellation.updated)))
        cancellation.payload.update(
            {
                "cancel_status": status,
                "update_time": _seconds(cancellation.updated),
                "seller_next_action_response": [],
            }
        )
        cancellation.save()
        if order is not None:
            payload = order.payload
            payload["is_buyer_request_cancel"] = False
            if decision == "approve":
                reason = cancellation.payload.get("cancel_reason_text", "")
                payload.update(
                    {
                        "status": "CANCELLED",
                        "cancel_time": call.now,
                        "cancel_reason": reason,
                        "cancellation_initiator": "BUYER",
                    }
                )
                for item in payload.get("line_items") or []:
                    item.update(
                        {
                            "display_status": "CANCELLED",
                            "package_status": "CANCELLED",
                            "cancel_user": "BUYER",
                            "cancel_reason": reason,
                        }
                    )
            _touch(order, call.now)
            _save(order)
    return {}


# --- views: returns -----------------------------------------------------------------------------
# Return requests live in the cancellations table, marked `"record": "return"` in the payload
# (the sandbox has no table of its own for them); every cancellation view leaves out rows with
# that key (`has_key`: a JSON key comparison is NULL, not false, on rows without the key).

RETURN_RECORD = "return"
RETURN_TYPES = ("REFUND", "RETURN_AND_REFUND", "REPLACEMENT")
RETURN_STATUSES = (
    "RETURN_OR_REFUND_REQUEST_PENDING",
    "REFUND_OR_RETURN_REQUEST_REJECT",
    "AWAITING_BUYER_SHIP",
    "BUYER_SHIPPED_ITEM",
    "REJECT_RECEIVE_PACKAGE",
    "RETURN_OR_REFUND_REQUEST_SUCCESS",
    "RETURN_OR_REFUND_REQUEST_CANCEL",
    "RETURN_OR_REFUND_REQUEST_COMPLETE",
)
RETURN_BASE = 4_036_000_000_000_000_000


@endpoint(methods=("POST",))
def returns_search(call: Call) -> dict:
    page_size = _page_size(call.query, maximum=50, default=10)
    sort_field = _choice(call.query, "sort_field", ("create_time", "update_time"), "create_time")
    sort_order = _choice(call.query, "sort_order", ("ASC", "DESC"), "ASC")
    body = call.body
    found = _time_filters(call.store.cancellations.filter(payload__record=RETURN_RECORD), body)
    if return_ids := _body_list(body, "return_ids", limit=50):
        found = found.filter(cancel_id__in=return_ids)
    if order_ids := _body_list(body, "order_ids", limit=50):
        found = found.filter(order_id__in=order_ids)
    if statuses := _body_list(body, "return_status"):
        found = found.filter(status__in=statuses)
    if types := _body_list(body, "return_types"):
        found = found.filter(payload__return_type__in=types)
    rows, token, total = _sorted_page(
        call, found, page_size=page_size, sort_field=sort_field, sort_order=sort_order
    )
    return {
        "return_orders": [{k: v for k, v in row.payload.items() if k != "record"} for row in rows],
        "next_page_token": token,
        "total_count": total,
    }


@endpoint(methods=("POST",))
def cancellation_approve(call: Call, cancel_id: str) -> dict:
    return _answer_cancellation(call, cancel_id, "approve")


@endpoint(methods=("POST",))
def cancellation_reject(call: Call, cancel_id: str) -> dict:
    return _answer_cancellation(call, cancel_id, "reject")


# --- views: fulfilment --------------------------------------------------------------------------


def _tracking_input(data: dict, store: SandboxStore | None = None) -> tuple[str, str]:
    tracking = str(data.get("tracking_number") or "").strip()
    provider_id = str(data.get("shipping_provider_id") or "")
    if not tracking:
        raise invalid("tracking_number is required")
    if provider_id not in SHIPPING_PROVIDERS:
        raise invalid("shipping_provider_id is not a provider of this delivery option")
    if store is not None:
        refusal = tracking_refusal(store, carrier=SHIPPING_PROVIDERS[provider_id], number=tracking)
        if refusal:
            raise ApiError(CODE_INVALID_TRACKING, refusal)
    return tracking, provider_id


def _locked_order(store: SandboxStore, order_id: str) -> SandboxOrder:
    order = store.orders.select_for_update().filter(order_id=order_id).first()
    if order is None:
        raise ApiError(CODE_NOT_OWNED, "order does not exist or is not this seller's")
    return order


def _check_shippable(payload: dict) -> None:
    if payload.get("status") not in SHIPPABLE:
        raise ApiError(
            CODE_ORDER_STATUS, f"order status {payload.get('status')} does not allow shipping"
        )
    # A pending buyer cancellation must be answered first (the sandbox's strict reading).
    if payload.get("is_buyer_request_cancel"):
        raise ApiError(CODE_ORDER_STATUS, "order has a pending cancellation request")


def _ship_items(
    store: SandboxStore,
    order: SandboxOrder,
    item_ids: list[str],
    *,
    tracking: str,
    provider_id: str,
    package_id: str,
    now: int,
) -> SandboxShipment:
    """Put `item_ids` in `package_id`, shipped with this tracking number; move the order on."""
    payload = order.payload
    provider = SHIPPING_PROVIDERS.get(provider_id, "")
    chosen = set(item_ids)
    skus: dict[str, int] = {}
    for item in payload["line_items"]:
        if item["id"] in chosen:
            item.update(
                {
                    "package_id": package_id,
                    "package_status": "PROCESSING",
                    "display_status": "AWAITING_COLLECTION",
                    "tracking_number": tracking,
                    "shipping_provider_id": provider_id,
                    "shipping_provider_name": provider,
                    "rts_time": now,
                }
            )
            skus[item["sku_id"]] = skus.get(item["sku_id"], 0) + 1
    in_use = {item.get("package_id") for item in payload["line_items"]}
    packages = [p for p in payload.get("packages") or [] if p.get("id") in in_use]
    if not any(p.get("id") == package_id for p in packages):
        packages.append({"id": package_id})
    unshipped = [item for item in _live_items(payload) if not item.get("tracking_number")]
    payload.update(
        {
            "packages": packages,
            "status": "PARTIALLY_SHIPPING" if unshipped else "AWAITING_COLLECTION",
            "tracking_number": tracking,
            "shipping_provider": provider,
            "shipping_provider_id": provider_id,
            "rts_time": now,
            "split_or_combine_tag": "SPLIT" if len(packages) > 1 else "",
        }
    )
    _touch(order, now)
    _save(order)
    return SandboxShipment.objects.create(
        store=store,
        order_id=order.order_id,
        package_id=package_id,
        tracking_number=tracking,
        provider_id=provider_id,
        line_ids=sorted(chosen),
        payload={
            "id": package_id,
            "status": "PROCESSING",
            "tracking_number": tracking,
            "shipping_provider_id": provider_id,
            "shipping_provider_name": provider,
            "order_line_item_ids": sorted(chosen),
            "orders": [
                {
                    "id": order.order_id,
                    "skus": [{"id": sku, "quantity": count} for sku, count in skus.items()],
                }
            ],
            "create_time": now,
            "update_time": now,
        },
    )


@endpoint(methods=("POST",))
def mark_shipped(call: Call, order_id: str) -> dict:
    """Seller logistics: tell TikTok (some of) an order's items left with this tracking."""
    tracking, provider_id = _tracking_input(call.body, call.store)
    requested = _body_list(call.body, "order_line_item_ids")
    store = call.store
    with transaction.atomic():
        order = _locked_order(store, order_id)
        payload = order.payload
        if payload.get("shipping_type") == "TIKTOK":
            raise ApiError(CODE_TIKTOK_LOGISTICS, "order ships with TikTok logistics")
        _check_shippable(payload)
        pending = [item for item in _live_items(payload) if not item.get("tracking_number")]
        pending_ids = [item["id"] for item in pending]
        unknown = [item_id for item_id in requested if item_id not in pending_ids]
        if unknown:
            raise invalid(f"order_line_item_ids not awaiting shipment: {', '.join(unknown)}")
        chosen = requested or pending_ids
        # Ship in the package the items already sit in when they fill it; else split off a new
        # package, as TikTok does for a partial shipment.
        current = {item["package_id"] for item in pending if item["id"] in chosen}
        current_items = {
            item["id"] for item in payload["line_items"] if item.get("package_id") in current
        }
        if (
            len(current) == 1
            and current_items <= set(chosen)
            and not store.shipments.filter(package_id=next(iter(current))).exists()
        ):
            package_id = next(iter(current))
        else:
            package_id = _id(PACKAGE_BASE, store, next_number(store))
        _ship_items(
            store,
            order,
            chosen,
            tracking=tracking,
            provider_id=provider_id,
            package_id=package_id,
            now=call.now,
        )
    return {"order_id": order_id, "order_line_item_ids": chosen, "package_id": package_id}


def _order_for_package(store: SandboxStore, package_id: str) -> SandboxOrder | None:
    def holds(order: SandboxOrder | None) -> bool:
        return order is not None and any(
            item.get("package_id") == package_id for item in order.payload.get("line_items") or []
        )

    if package_id.isdigit():
        number = int(package_id) - PACKAGE_BASE - (store.pk % 100_000) * STORE_SPAN
        if 0 <= number < STORE_SPAN:
            order = (
                store.orders.select_for_update()
                .filter(order_id=_id(ORDER_BASE, store, number))
                .first()
            )
            if holds(order):
                return order
    for order in store.orders.select_for_update().filter(status__in=SHIPPABLE):
        if holds(order):
            return order
    return None


def _package_fault(store: SandboxStore, package_id: str) -> ApiError | None:
    """The next injected answer for this package (`SandboxStore.package_faults`), used once."""
    if not (store.package_faults or {}).get(package_id):
        return None
    with transaction.atomic():
        locked = SandboxStore.objects.select_for_update().get(pk=store.pk)
        faults = dict(locked.package_faults or {})
        queue = list(faults.get(package_id) or [])
        if not queue:
            return None
        kind = str(queue.pop(0))
        if queue:
            faults[package_id] = queue
        else:
            faults.pop(package_id, None)
        locked.package_faults = faults
        locked.save(update_fields=["package_faults"])
    store.package_faults = faults
    code, message = PACKAGE_FAULTS.get(kind, (CODE_INTERNAL, f"injected fault {kind}"))
    return ApiError(code, message)


def _ship_package(store: SandboxStore, package_id: str, body: dict, now: int) -> None:
    """Ship one existing package (the single and the batch call): seller-shipped with
    `self_shipment`, else TikTok's carrier. A package that has shipped already answers 21011002,
    and the call is counted on it (`SandboxShipment.ship_requests`): tests count double posts."""
    fault = _package_fault(store, package_id)
    if fault is not None:
        raise fault
    # Counted outside the shipping transaction, which the refusal rolls back.
    if store.shipments.filter(package_id=package_id).update(ship_requests=F("ship_requests") + 1):
        raise ApiError(CODE_PACKAGE_SHIPPED, "package has already been shipped")
    handover = body.get("handover_method")
    if handover not in ("PICKUP", "DROP_OFF"):
        raise invalid("handover_method must be PICKUP or DROP_OFF")
    with transaction.atomic():
        order = _order_for_package(store, package_id)
        if order is None:
            raise ApiError(CODE_NOT_OWNED, "package does not exist or is not this seller's")
        payload = order.payload
        _check_shippable(payload)
        if payload.get("shipping_type") == "TIKTOK":
            # TikTok Shipping buys the label from its carrier (USPS here): a real IMpb number.
            tracking = make_tracking_number(
                carrier="usps", service="", account="", serial=next_number(store)
            )
            provider_id = next(iter(SHIPPING_PROVIDERS))
        else:
            self_shipment = body.get("self_shipment")
            if not isinstance(self_shipment, dict):
                raise invalid("self_shipment is required for seller-shipped orders")
            tracking, provider_id = _tracking_input(self_shipment, store)
        items = [
            item["id"]
            for item in _live_items(payload)
            if item.get("package_id") == package_id and not item.get("tracking_number")
        ]
        _ship_items(
            store,
            order,
            items,
            tracking=tracking,
            provider_id=provider_id,
            package_id=package_id,
            now=now,
        )


@endpoint(methods=("POST",))
def package_ship(call: Call, package_id: str) -> dict:
    """Ship one existing package."""
    _ship_package(call.store, package_id, call.body, call.now)
    return {}


@endpoint(methods=("POST",))
def packages_ship(call: Call) -> dict:
    """Batch ship: `packages[]{id, handover_method, pickup_slot, self_shipment}`. A malformed
    list fails the whole call; each package's own refusal is an item of `data.errors[]`
    (`{code, message, detail{package_id}}`, as TikTok answers), the others ship."""
    packages = call.body.get("packages")
    if not isinstance(packages, list) or not packages:
        raise invalid("packages is required")
    if len(packages) > MAX_BATCH_SHIP:
        raise invalid(f"packages: at most {MAX_BATCH_SHIP} per request, got {len(packages)}")
    ids: list[str] = []
    for index, package in enumerate(packages):
        package_id = str(package.get("id") or "").strip() if isinstance(package, dict) else ""
        if not package_id:
            raise invalid(f"packages[{index}].id is required")
        if package_id in ids:
            raise invalid(f"packages[{index}].id {package_id} is listed twice")
        ids.append(package_id)
    errors = []
    for package_id, package in zip(ids, packages, strict=True):
        try:
            _ship_package(call.store, package_id, package, call.now)
        except ApiError as exc:
            errors.append(
                {"code": exc.code, "message": exc.message, "detail": {"package_id": package_id}}
            )
    return {"errors": errors}


def _update_shipping_info(call: Call, shipment: SandboxShipment) -> dict:
    tracking, provider_id = _tracking_input(call.body, call.store)
    order = _locked_order(call.store, shipment.order_id)
    for item in order.payload.get("line_items") or []:
        if item.get("package_id") == shipment.package_id:
            item["tracking_number"] = tracking
            item["shipping_provider_id"] = provider_id
            item["shipping_provider_name"] = SHIPPING_PROVIDERS[provider_id]
    order.payload["tracking_number"] = tracking
    order.payload["shipping_provider_id"] = provider_id
    order.payload["shipping_provider"] = SHIPPING_PROVIDERS[provider_id]
    _touch(order, call.now)
    _save(order)
    shipment.tracking_number = tracking
    shipment.provider_id = provider_id
    shipment.payload.update(
        {
            "tracking_number": tracking,
            "shipping_provider_id": provider_id,
            "shipping_provider_name": SHIPPING_PROVIDERS[provider_id],
            "update_time": call.now,
        }
    )
    shipment.save()
    return {}


@endpoint(methods=("POST",))
def package_shipping_info(call: Call, package_id: str) -> dict:
    with transaction.atomic():
        shipment = call.store.shipments.select_for_update().filter(package_id=package_id).first()
        if shipment is None:
            raise ApiError(CODE_NOT_OWNED, "package does not exist or has not shipped")
        return _update_shipping_info(call, shipment)


@endpoint(methods=("POST",))
def order_shipping_info(call: Call, order_id: str) -> dict:
    with transaction.atomic():
        shipments = list(call.store.shipments.select_for_update().filter(order_id=order_id))
        if not shipments:
            raise ApiError(CODE_NOT_OWNED, "order does not exist or has not shipped")
        if len(shipments) > 1:
            raise invalid("order has several packages: update each package instead")
        return _update_shipping_info(call, shipments[0])


@endpoint()
def warehouses(call: Call) -> dict:
    store = call.store
    return {
        "warehouses": [
            {
                "id": store.warehouse_id,
                "name": f"{store.name} warehouse".strip(),
                "effect_status": "ENABLED",
                "is_default": True,
                "type": "SALES_WAREHOUSE",
                "sub_type": "DOMESTIC_WAREHOUSE",
                "address": {
                    "region": "United States",
                    "region_code": "US",
                    "state": "California",
                    "city": "Ontario",
                    "postal_code": "91761",
                    "full_address": "1601 E Francis St, Ontario, CA 91761",
                    "contact_person": "Warehouse",
                    "phone_number": "(+1)909***0100",
                },
            }
        ]
    }


@endpoint()
def shipping_providers(call: Call, delivery_option_id: str) -> dict:
    if delivery_option_id != DELIVERY_OPTION_ID:
        raise ApiError(CODE_NOT_OWNED, "delivery option does not exist")
    return {"shipping_providers": [{"id": k, "name": v} for k, v in SHIPPING_PROVIDERS.items()]}


# --- views: packages and shipping documents -------------------------------------------------

DOCUMENT_TYPES = ("SHIPPING_LABEL", "PACKING_SLIP", "SHIPPING_LABEL_AND_PACKING_SLIP")
DOCUMENT_SIZES = ("A6", "A5")
# TikTok's document links expire; clients must download at once (our choice of lifetime).
DOC_URL_LIFETIME = 300
CODE_NOT_SHIPPED = 21011005  # sandbox-chosen: documents asked for before the package shipped
CODE_SELLER_SHIPPED = 21011006  # sandbox-chosen: a shipping label for a seller-shipped package
WAREHOUSE_LINES = ["TikTok Shop Warehouse", "1601 E Francis St", "Ontario CA 91761"]


def _package(store: SandboxStore, package_id: str) -> tuple[SandboxOrder, SandboxShipment | None]:
    shipment = store.shipments.filter(package_id=package_id).first()
    if shipment is not None:
        order = store.orders.filter(order_id=shipment.order_id).first()
    else:
        order = _order_for_package(store, package_id)
    if order is None:
        raise ApiError(CODE_NOT_OWNED, "package does not exist or is not this seller's")
    return order, shipment


@endpoint()
def order_tracking(call: Call, order_id: str) -> dict:
    """The order's parcel journey as TikTok relays it from the carrier: descriptions and times
    (milliseconds), newest first, for the package carrying the order's tracking number. The
    events come from `sandbox.tracking` (the same history the label service tells)."""
    from sandbox.tracking import tiktok_description, tracking_history

    order = call.store.orders.filter(order_id=order_id).first()
    if order is None:
        raise ApiError(CODE_NOT_OWNED, "order does not exist or is not this seller's")
    tracking = order.payload.get("tracking_number") or ""
    shipment = (
        call.store.shipments.filter(order_id=order_id, tracking_number=tracking)
        .order_by("-created")
        .first()
        if tracking
        else None
    )
    if shipment is None:
        return {"tracking": []}
    started = shipment.payload.get("create_time")
    events = tracking_history(
        tracking_code=shipment.tracking_number,
        carrier=str(shipment.payload.get("shipping_provider_name") or "Carrier"),
        started_at=_dt(int(started)) if started else shipment.created,
        now=_dt(call.now),
    )
    return {
        "tracking": [
            {
                "description": tiktok_description(event),
                "update_time_millis": int(event.at.timestamp() * 1000),
            }
            for event in reversed(events)
        ]
    }


@endpoint()
def package_detail(call: Call, package_id: str) -> dict:
    """Package detail: status, who ships it, tracking and carrier once shipped, its items."""
    with transaction.atomic():
        order, shipment = _package(call.store, package_id)
    payload = order.payload
    items = [i for i in payload.get("line_items") or [] if i.get("package_id") == package_id]
    skus: dict[str, int] = {}
    for item in items:
        skus[item["sku_id"]] = skus.get(item["sku_id"], 0) + 1
    shipped = shipment.payload if shipment is not None else {}
    return {
        "package_id": package_id,
        "package_status": items[0].get("package_status", "TO_FULFILL") if items else "CANCELLED",
        "shipping_type": payload.get("shipping_type"),
        "handover_method": shipped.get("handover_method", ""),
        "tracking_number": shipped.get("tracking_number", ""),
        "shipping_provider_id": shipped.get("shipping_provider_id", ""),
        "shipping_provider_name": shipped.get("shipping_provider_name", ""),
        "order_line_item_ids": [item["id"] for item in items],
        "orders": [
            {"id": order.order_id, "skus": [{"id": k, "quantity": v} for k, v in skus.items()]}
        ],
        "recipient_address": present_order(payload).get("recipient_address"),
        "create_time": shipped.get("create_time", payload.get("create_time")),
        "update_time": shipped.get("update_time", payload.get("update_time")),
    }


def _document_token(store: SandboxStore, body: str) -> str:
    mac = hmac.new(store.app_secret.encode(), body.encode(), hashlib.sha256).hexdigest()[:32]
    return base64.urlsafe_b64encode(f"{body}|{mac}".encode()).decode().rstrip("=")


@endpoint()
def shipping_documents(call: Call, package_id: str) -> dict:
    """A link to the package's label and/or packing slip; it expires after a few minutes."""
    document_type = call.query.get("document_type") or ""
    if document_type not in DOCUMENT_TYPES:
        raise invalid(f"document_type must be one of {', '.join(DOCUMENT_TYPES)}")
    size = _choice(call.query, "document_size", DOCUMENT_SIZES, "A6")
    if (call.query.get("document_format") or "PDF") != "PDF":
        raise invalid("document_format must be PDF")
    with transaction.atomic():
        order, shipment = _package(call.store, package_id)
    if shipment is None:
        raise ApiError(CODE_NOT_SHIPPED, "package has not been shipped yet: ship it first")
    if "SHIPPING_LABEL" in document_type and order.payload.get("shipping_type") != "TIKTOK":
        raise ApiError(CODE_SELLER_SHIPPED, "shipping labels are only for packages TikTok ships")
    body = f"{call.store.pk}|{package_id}|{document_type}|{size}|{call.now + DOC_URL_LIFETIME}"
    token = _document_token(call.store, body)
    return {"doc_url": f"http://{SANDBOX_HOST}{PREFIX}/documents/{token}.pdf"}


def _recipient_lines(payload: dict) -> list[str]:
    address = present_order(payload).get("recipient_address") or {}
    levels = {
        d.get("address_level_name"): d.get("address_name")
        for d in address.get("district_info") or []
    }
    state_name = levels.get("State") or ""
    state = next((code for code, name in STATE_NAMES.items() if name == state_name), state_name)
    lines = [
        address.get("name") or "",
        address.get("address_line1") or "",
        address.get("address_line2") or "",
        f"{levels.get('City') or ''} {state} {address.get('postal_code') or ''}",
    ]
    return [line.strip().upper() for line in lines if line and line.strip()]


def _draw_packing_slip(c, payload: dict, package_id: str, width: float, height: float) -> None:
    items = [i for i in payload.get("line_items") or [] if i.get("package_id") == package_id]
    y = height - 40
    c.setFont("Helvetica-Bold", 14)
    c.drawString(20, y, "PACKING SLIP")
    c.setFont("Helvetica", 8)
    y -= 16
    c.drawString(20, y, f"Order {payload['id']}  Package {package_id}")
    y -= 20
    for line in _recipient_lines(payload):
        c.drawString(20, y, line)
        y -= 11
    y -= 10
    c.setFont("Helvetica-Bold", 8)
    c.drawString(20, y, "SKU")
    c.drawString(110, y, "Item")
    c.drawRightString(width - 20, y, "Qty")
    c.setFont("Helvetica", 8)
    for item in items:
        y -= 12
        c.drawString(20, y, str(item.get("seller_sku") or item.get("sku_id"))[:18])
        c.drawString(110, y, str(item.get("product_name") or "")[:40])
        c.drawRightString(width - 20, y, "1")


def shipping_document_file(request: HttpRequest, token: str) -> HttpResponse:
    """The document behind a `doc_url`: real PDF pages, drawn now; 403 once the link expired."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        store_pk, package_id, document_type, size, expires, _mac = raw.split("|")
        expires_at = int(expires)
        store = SandboxStore.objects.get(pk=int(store_pk))
    except (ValueError, UnicodeDecodeError, binascii.Error, SandboxStore.DoesNotExist):
        return HttpResponse("no such document", status=404, content_type="text/plain")
    body = raw.rsplit("|", 1)[0]
    if not hmac.compare_digest(_document_token(store, body), token.rstrip("=")):
        return HttpResponse("no such document", status=404, content_type="text/plain")
    if expires_at < time.time():
        return HttpResponse("the link has expired", status=403, content_type="text/plain")
    shipment = store.shipments.filter(package_id=package_id).first()
    order = store.orders.filter(order_id=shipment.order_id).first() if shipment else None
    if order is None:
        return HttpResponse("no such document", status=404, content_type="text/plain")
    from reportlab.lib.pagesizes import A5
    from reportlab.pdfgen import canvas

    from logistics.labels.drawing import HEIGHT, WIDTH, LabelContent, draw_label, label_font

    page = (WIDTH, HEIGHT) if size == "A6" else A5
    buffer = io.BytesIO()
    labels = []
    if "SHIPPING_LABEL" in document_type:
        tracking = shipment.tracking_number
        postal = str((order.payload.get("recipient_address") or {}).get("postal_code") or "")
        labels.append(
            LabelContent(
                carrier=shipment.payload.get("shipping_provider_name") or "USPS",
                service="TikTok Shipping",
                tracking_number=tracking,
                barcode_data=usps_impb_barcode(tracking_number=tracking, postal_code=postal),
                sender=WAREHOUSE_LINES,
                recipient=_recipient_lines(order.payload),
                reference=f"Order {order.order_id}",
                footnote="SANDBOX LABEL - NOT FOR MAILING",
            )
        )
    with label_font(*labels) as cjk_font:
        c = canvas.Canvas(buffer, pagesize=page)
        for content in labels:
            c.translate(0, page[1] - HEIGHT)
            draw_label(c, content, cjk_font=cjk_font)
            c.showPage()
        if "PACKING_SLIP" in document_type:
            _draw_packing_slip(c, order.payload, package_id, *page)
            c.showPage()
        c.save()
    return HttpResponse(buffer.getvalue(), content_type="application/pdf")


# --- views: inventory ---------------------------------------------------------------------------


def _sku_error(sku_id: str, code: int, message: str, warehouse_id: str = "") -> dict:
    extra = {"code": code, "message": message}
    if warehouse_id:
        extra["warehouse_id"] = warehouse_id
    return {
        "code": CODE_BATCH_FAILED,
        "message": "batch update inventory error",
        "detail": {"sku_id": sku_id, "extra_errors": [extra]},
    }


@endpoint(methods=("POST",))
def inventory_update(call: Call, product_id: str) -> dict:
    """Absolute quantities per SKU and warehouse; bad counts refuse the whole request, unknown
    SKUs or warehouses fail alone (in `data.errors[]`)."""
    skus = call.body.get("skus")
    if not isinstance(skus, list) or not skus:
        raise invalid("skus is required")
    for sku in skus:
        if not isinstance(sku, dict) or not sku.get("id"):
            raise invalid("every sku needs an id")
        inventory = sku.get("inventory")
        if not isinstance(inventory, list) or not inventory:
            raise invalid(f"sku {sku['id']} needs inventory")
        for entry in inventory:
            quantity = entry.get("quantity") if isinstance(entry, dict) else None
            if (
                isinstance(quantity, bool)
                or not isinstance(quantity, int)
                or not 0 <= quantity < MAX_QUANTITY
            ):
                raise ApiError(
                    CODE_BAD_STOCK,
                    f"stock count {quantity!r} of sku {sku['id']} must be 0 to {MAX_QUANTITY - 1}",
                )
    errors = []
    store = call.store
    with transaction.atomic():
        for sku in skus:
            sku_id = str(sku["id"])
            rows = {
                row.location_id: row
                for row in store.products.select_for_update().filter(
                    product_id=product_id, sku_id=sku_id
                )
            }
            if not rows:
                errors.append(
                    _sku_error(sku_id, CODE_SKU_NOT_IN_PRODUCT, "SKU is not in this product")
                )
                continue
            entries = sku["inventory"]
            if any(not entry.get("warehouse_id") for entry in entries):
                if len(rows) > 1:
                    raise ApiError(CODE_ALL_WAREHOUSES, "inventory must include all warehouse ids")
                entries = [{**entry, "warehouse_id": next(iter(rows))} for entry in entries]
            unknown = [e["warehouse_id"] for e in entries if e["warehouse_id"] not in rows]
            if unknown:
                errors.append(
                    _sku_error(
                        sku_id, CODE_UNKNOWN_WAREHOUSE, "warehouse is not the SKU's", unknown[0]
                    )
                )
                continue
            for entry in entries:
                row = rows[entry["warehouse_id"]]
                row.quantity = entry["quantity"]
                row.version += 1
                row.save(update_fields=["quantity", "version", "updated"])
    return {"errors": errors} if errors else {}


@endpoint(methods=("POST",))
def inventory_search(call: Call) -> dict:
    sku_ids = _body_list(call.body, "sku_ids", limit=600)
    product_ids = _body_list(call.body, "product_ids", limit=100)
    if not sku_ids and not product_ids:
        raise invalid("sku_ids or product_ids is required")
    rows = call.store.products.all()
    if sku_ids:
        rows = rows.filter(sku_id__in=sku_ids)
    if product_ids:
        rows = rows.filter(product_id__in=product_ids)
    return {"inventory": inventory_shape(list(rows.order_by("product_id", "sku_id", "id")))}


urlpatterns = [
    path("auth/api/v2/token/get", token_get),
    path("auth/api/v2/token/refresh", token_refresh),
    path("authorization/202309/shops", authorized_shops),
    path("order/202309/orders/search", orders_search),
    path("order/202309/orders", orders_detail),
    path("affiliate_seller/202410/orders/search", affiliate_orders_search),
    path("return_refund/202309/cancellations/search", cancellations_search),
    path("return_refund/202309/cancellations/<str:cancel_id>/approve", cancellation_approve),
    path("return_refund/202309/cancellations/<str:cancel_id>/reject", cancellation_reject),
    path("return_refund/202309/returns/search", returns_search),
    path("fulfillment/202309/orders/<str:order_id>/packages", mark_shipped),
    path("fulfillment/202309/orders/<str:order_id>/shipping_info/update", order_shipping_info),
    path("fulfillment/202309/orders/<str:order_id>/tracking", order_tracking),
    # Before `packages/<package_id>`, which would read "ship" as a package id.
    path("fulfillment/202309/packages/ship", packages_ship),
    path("fulfillment/202309/packages/<str:package_id>", package_detail),
    path("fulfillment/202309/packages/<str:package_id>/ship", package_ship),
    path("fulfillment/202309/packages/<str:package_id>/shipping_documents", shipping_documents),
    re_path(r"^documents/(?P<token>[A-Za-z0-9_\-]+)\.pdf$", shipping_document_file),
    path(
        "fulfillment/202309/packages/<str:package_id>/shipping_info/update",
        package_shipping_info,
    ),
    path("logistics/202309/warehouses", warehouses),
    path(
        "logistics/202309/delivery_options/<str:delivery_option_id>/shipping_providers",
        shipping_providers,
    ),
    path("product/202309/products/<str:product_id>/inventory/update", inventory_update),
    path("product/202309/inventory/search", inventory_search),
    re_path(r"^.*$", unknown_path),
]


# --- order validation (load) --------------------------------------------------------------------

_DIGITS = re.compile(r"^\d+$")
_MONEY = re.compile(r"^-?\d+(\.\d+)?$")
PAYMENT_REQUIRED = ("currency", "sub_total", "shipping_fee", "total_amount")
PAYMENT_MONEY = (
    "sub_total",
    "shipping_fee",
    "total_amount",
    "seller_discount",
    "platform_discount",
    "original_total_product_price",
    "original_shipping_fee",
    "shipping_fee_seller_discount",
    "shipping_fee_platform_discount",
    "tax",
    "product_tax",
    "shipping_fee_tax",
    "retail_delivery_fee",
    "small_order_fee",
    "buyer_service_fee",
    "handling_fee",
    "shipping_insurance_fee",
    "item_insurance_fee",
)
ADDRESS_REQUIRED = ("name", "phone_number", "address_line1", "postal_code", "region_code")
ORDER_TIMES = (
    "paid_time",
    "rts_sla_time",
    "tts_sla_time",
    "shipping_due_time",
    "collection_due_time",
    "delivery_due_time",
    "cancel_order_sla_time",
    "request_cancel_time",
    "rts_time",
    "collection_time",
    "delivery_time",
    "cancel_time",
)


def _fail(field: str, problem: str) -> SandboxInputError:
    return SandboxInputError(f"{field}: {problem}")


def _need_digits(data: dict, key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not _DIGITS.match(value):
        raise _fail(f"{where}{key}", f"expected a digit string id, got {value!r}")
    return value


def _need_time(data: dict, key: str, where: str, *, required: bool) -> None:
    value = data.get(key)
    if value is None and not required:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _fail(f"{where}{key}", f"expected Unix seconds (an integer), got {value!r}")


def _need_money(data: dict, key: str, where: str, *, required: bool) -> None:
    value = data.get(key)
    if value is None and not required:
        return
    if not isinstance(value, str) or not _MONEY.match(value):
        raise _fail(f"{where}{key}", f'expected a decimal string like "12.34", got {value!r}')


def _need_text(data: dict, key: str, where: str, *, required: bool = True) -> None:
    value = data.get(key)
    if value is None and not required:
        return
    if not isinstance(value, str) or (required and not value.strip()):
        raise _fail(f"{where}{key}", f"expected a non-empty string, got {value!r}")


def validate_order(payload) -> None:
    """Check an order is in the 202309 order-detail shape; `SandboxInputError` names the field."""
    if not isinstance(payload, dict):
        raise SandboxInputError(f"expected an order object, got {type(payload).__name__}")
    _need_digits(payload, "id", "")
    status = payload.get("status")
    if status not in ORDER_STATUSES:
        raise _fail("status", f"expected one of {', '.join(ORDER_STATUSES)}, got {status!r}")
    _need_time(payload, "create_time", "", required=True)
    _need_time(payload, "update_time", "", required=True)
    for key in ORDER_TIMES:
        _need_time(payload, key, "", required=key == "paid_time" and status != "UNPAID")
    if payload.get("shipping_type") not in (None, "TIKTOK", "SELLER"):
        raise _fail("shipping_type", f"expected TIKTOK or SELLER, got {payload['shipping_type']!r}")
    for key in ("is_buyer_request_cancel", "is_on_hold_order", "is_cod"):
        if key in payload and not isinstance(payload[key], bool):
            raise _fail(key, f"expected true or false, got {payload[key]!r}")
    for key in ("buyer_message", "seller_note", "user_id"):
        _need_text(payload, key, "", required=False)
    payment = payload.get("payment")
    if not isinstance(payment, dict):
        raise _fail("payment", "expected an object")
    _need_text(payment, "currency", "payment.")
    for key in PAYMENT_MONEY:
        _need_money(payment, key, "payment.", required=key in PAYMENT_REQUIRED)
    items = payload.get("line_items")
    if not isinstance(items, list) or not items:
        raise _fail("line_items", "expected a non-empty list (one entry per unit)")
    seen = set()
    for index, item in enumerate(items):
        where = f"line_items[{index}]."
        if not isinstance(item, dict):
            raise _fail(f"line_items[{index}]", "expected an object")
        item_id = _need_digits(item, "id", where)
        if item_id in seen:
            raise _fail(f"{where}id", f"{item_id} appears twice")
        seen.add(item_id)
        _need_digits(item, "sku_id", where)
        _need_text(item, "seller_sku", where, required=False)
        _need_text(item, "product_name", where)
        _need_money(item, "sale_price", where, required=True)
        for key in ("original_price", "seller_discount", "platform_discount"):
            _need_money(item, key, where, required=False)
        for tax_index, tax in enumerate(item.get("item_tax") or []):
            if not isinstance(tax, dict):
                raise _fail(f"{where}item_tax[{tax_index}]", "expected an object")
            _need_money(tax, "tax_amount", f"{where}item_tax[{tax_index}].", required=True)
    address = payload.get("recipient_address")
    if address is None and status in HIDDEN_ADDRESS:
        return
    if not isinstance(address, dict):
        raise _fail("recipient_address", "expected an object")
    for key in ADDRESS_REQUIRED:
        _need_text(address, key, "recipient_address.")
    districts = address.get("district_info")
    if not isinstance(districts, list) or not districts:
        raise _fail("recipient_address.district_info", "expected a non-empty list")
    for index, district in enumerate(districts):
        if not isinstance(district, dict) or not district.get("address_level"):
            raise _fail(
                f"recipient_address.district_info[{index}]",
                "expected an object with address_level and address_name",
            )


def _order_row_fields(payload: dict) -> dict:
    return {
        "status": payload["status"],
        "created": _dt(payload["create_time"]),
        "updated": _dt(payload["update_time"]),
        "payload": payload,
    }


# --- webhooks -----------------------------------------------------------------------------------

_webhook_transport: httpx.BaseTransport | None = None


def webhook_transport(url: str) -> httpx.BaseTransport | None:
    """In-process delivery for our own host (one WSGI handler reused), the network otherwise."""
    global _webhook_transport
    if urlsplit(url).hostname != SANDBOX_HOST:
        return None
    if _webhook_transport is None:
        _webhook_transport = sandbox_transport()
    return _webhook_transport


# --- the sandbox --------------------------------------------------------------------------------


class TikTokSandbox(SandboxPlatform):
    """Orders, cancellations and webhooks of the TikTok sandbox (the API is `urlpatterns`)."""

    platform = "tiktok"

    def __init__(self) -> None:
        self._blocks: dict[int, list[int]] = {}

    def store_defaults(self) -> dict:
        # One source gives 50 QPS per app and API; the sandbox limits each path to that.
        return {"rate_per_second": 50.0, "rate_burst": 50}

    def _numbers(self, store: SandboxStore, count: int) -> int:
        """`count` consecutive numbers from the store's counter, reserved in blocks so a spike
        of thousands of orders does not take a counter round trip per order."""
        block = self._blocks.get(store.pk)
        if block is None or block[1] - block[0] < count:
            size = max(count, 512)
            first = next_number(store, size)
            block = self._blocks[store.pk] = [first, first + size]
        first = block[0]
        block[0] += count
        return first

    # --- orders ---

    def generate_order(
        self,
        *,
        store: SandboxStore,
        rng: random.Random,
        products: list[SandboxProduct],
        now: datetime,
        fresh: bool = False,
    ) -> dict:
        """A paid, seller-shipped order from a live stream of the last two hours, in the exact
        202309 order-detail shape: one line item per unit, money consistent to the cent
        (sub_total = original - seller discount - platform discount; total = sub_total +
        shipping + tax), SLA times from payment, a package id, a buyer from `people`."""
        if not products:
            raise SandboxInputError("the store has no products: give the shop listings first")
        distinct = {p.sku_id: p for p in products}
        kinds = min(len(distinct), rng.choices((1, 2, 3), weights=(72, 20, 8))[0])
        chosen = rng.sample(sorted(distinct.values(), key=lambda p: p.pk), kinds)
        quantities = [rng.choices((1, 2, 3, 4), weights=(78, 15, 5, 2))[0] for _ in chosen]
        first = self._numbers(store, 1 + sum(quantities))
        order_id = _id(ORDER_BASE, store, first)
        package_id = _id(PACKAGE_BASE, store, first)
        now_s = _seconds(now)
        created = now_s - rng.randint(0, 2 * 3600)
        paid = created + rng.randint(3, 90)
        if fresh:  # placed a moment ago and paid now (the same draws: seeds repeat)
            created, paid = now_s - (paid - created), now_s
        presale = rng.random() < 0.03
        buyer = fake_buyer(rng)
        tax_rate = Decimal(STATE_TAX.get(buyer.state, "0.06"))
        seller_promo = rng.choice((Decimal(0),) * 3 + (Decimal("0.10"), Decimal("0.15")))
        platform_coupon = rng.choice((Decimal(0),) * 8 + (Decimal("0.50"), Decimal("1.00")))

        items = []
        number = first + 1
        totals = {key: Decimal(0) for key in ("original", "seller", "platform", "tax")}
        for product, quantity in zip(chosen, quantities, strict=True):
            price = product.price if product.price and product.price > 0 else Decimal("19.99")
            seller_discount = (price * seller_promo).quantize(Decimal("0.01"), ROUND_HALF_UP)
            platform_discount = min(platform_coupon, price - seller_discount - Decimal("0.01"))
            net = price - seller_discount - platform_discount
            item_tax = (net * tax_rate).quantize(Decimal("0.01"), ROUND_HALF_UP)
            for _ in range(quantity):
                items.append(
                    {
                        "id": _id(LINE_BASE, store, number),
                        "sku_id": product.sku_id,
                        "seller_sku": product.seller_sku,
                        "product_id": product.product_id,
                        "product_name": product.title or product.seller_sku,
                        "sku_name": "Default",
                        "sku_image": f"https://p16-oec-va.ibyteimg.com/tos-maliva-i-o3syd03w52-us/{product.sku_id}.jpeg",
                        "sku_type": "PRE_ORDER" if presale else "NORMAL",
                        "original_price": money(price),
                        "sale_price": money(price - seller_discount),
                        "seller_discount": money(seller_discount),
                        "platform_discount": money(platform_discount),
                        "currency": "USD",
                        "item_tax": [
                            {
                                "tax_type": "SALES_TAX",
                                "tax_rate": f"{tax_rate:f}",
                                "tax_amount": money(item_tax),
                            }
                        ],
                        "display_status": "TO_SHIP",
                        "package_id": package_id,
                        "package_status": "TO_FULFILL",
                        "shipping_provider_id": "",
                        "shipping_provider_name": "",
                        "tracking_number": "",
                        "cancel_reason": "",
                        "cancel_user": "",
                        "is_gift": False,
                    }
                )
                number += 1
                totals["original"] += price
                totals["seller"] += seller_discount
                totals["platform"] += platform_discount
                totals["tax"] += item_tax
        sub_total = totals["original"] - totals["seller"] - totals["platform"]
        original_shipping = Decimal("5.99")
        # Free shipping over $35 is the seller's promotion; TikTok sometimes chips in below it.
        shipping_seller = original_shipping if sub_total >= 35 else Decimal(0)
        shipping_platform = (
            Decimal("2.00") if not shipping_seller and rng.random() < 0.15 else Decimal(0)
        )
        shipping_fee = original_shipping - shipping_seller - shipping_platform
        total = sub_total + shipping_fee + totals["tax"]
        ship_hours = 72 if presale else 48
        rts_sla = paid + ship_hours * 3600
        shipping_due = rts_sla + 72 * 3600
        address = {
            "name": buyer.name,
            "first_name": buyer.first_name,
            "last_name": buyer.last_name,
            "phone_number": f"(+1){buyer.phone.removeprefix('+1')}",
            "full_address": f"{buyer.line1}{' ' + buyer.line2 if buyer.line2 else ''}, "
            f"{buyer.city}, {buyer.state} {buyer.postal_code}",
            "address_detail": buyer.line2,
            "address_line1": buyer.line1,
            "address_line2": buyer.line2,
            "address_line3": "",
            "address_line4": "",
            "postal_code": buyer.postal_code,
            "region_code": buyer.country,
            "district_info": [
                {
                    "address_level": "L0",
                    "address_level_name": "Country",
                    "address_name": "United States",
                },
                {
                    "address_level": "L1",
                    "address_level_name": "State",
                    "address_name": buyer.state_name,
                },
                {"address_level": "L3", "address_level_name": "City", "address_name": buyer.city},
            ],
            "delivery_preferences": {
                "drop_off_location": rng.choice(("", "", "", "Front Door", "Mailroom"))
            },
        }
        order = {
            "id": order_id,
            "status": "AWAITING_SHIPMENT",
            "create_time": created,
            "paid_time": paid,
            # The order lands now: an incremental search from the last sync must find it.
            "update_time": max(now_s, paid),
            "user_id": str(7_000_000_000_000_000_000 + rng.randrange(10**17)),
            # Anonymised relay address, as TikTok gives sellers.
            "buyer_email": "".join(rng.choices(string.ascii_letters + string.digits, k=6))
            + "@scs2.tiktok.com",
            "buyer_message": rng.choice(BUYER_NOTES) if rng.random() < 0.12 else "",
            "seller_note": "",
            "commerce_platform": "TIKTOK_SHOP",
            "order_type": "PRE_ORDER" if presale else "NORMAL",
            "payment_method_name": rng.choice(PAYMENT_METHODS),
            "shipping_type": "SELLER",
            "fulfillment_type": "FULFILLMENT_BY_SELLER",
            "delivery_type": "HOME_DELIVERY",
            "delivery_option_id": DELIVERY_OPTION_ID,
            "delivery_option_name": DELIVERY_OPTION_NAME,
            "warehouse_id": store.warehouse_id,
            "shipping_provider": "",
            "shipping_provider_id": "",
            "tracking_number": "",
            "packages": [{"id": package_id}],
            "split_or_combine_tag": "",
            "is_on_hold_order": False,
            "is_buyer_request_cancel": False,
            "has_updated_recipient_address": False,
            "is_cod": False,
            "is_sample_order": False,
            "is_replacement_order": False,
            "rts_sla_time": rts_sla,
            "tts_sla_time": rts_sla + 24 * 3600,
            "shipping_due_time": shipping_due,
            "collection_due_time": shipping_due + 48 * 3600,
            "delivery_due_time": paid + 12 * 24 * 3600,
            "cancel_order_sla_time": shipping_due,
            "payment": {
                "currency": "USD",
                "original_total_product_price": money(totals["original"]),
                "seller_discount": money(totals["seller"]),
                "platform_discount": money(totals["platform"]),
                "sub_total": money(sub_total),
                "original_shipping_fee": money(original_shipping),
                "shipping_fee_seller_discount": money(shipping_seller),
                "shipping_fee_platform_discount": money(shipping_platform),
                "shipping_fee": money(shipping_fee),
                "product_tax": money(totals["tax"]),
                "shipping_fee_tax": "0",
                "tax": money(totals["tax"]),
                "retail_delivery_fee": "0",
                "small_order_fee": "0",
                "buyer_service_fee": "0",
                "handling_fee": "0",
                "total_amount": money(total),
            },
            "recipient_address": address,
            "line_items": items,
        }
        if presale:
            order["release_date"] = paid + 24 * 3600
        return order

    def compose_order(self, *, store: SandboxStore, draft: OrderDraft) -> dict:
        """`draft` in the 202309 order-detail shape: one line item per unit (each carrying its
        share of the line's discount and tax to the cent), UNPAID with no payment time when
        the draft is unpaid, AWAITING_SHIPMENT otherwise; line item and package ids derive from
        `draft.number`, so the same draft always gives the same ids."""
        package_id = str(PACKAGE_BASE + draft.number)
        units = sum(line.quantity for line in draft.lines)
        coupon = split_amount(draft.platform_discount, units)
        items = []
        totals = {key: Decimal(0) for key in ("original", "seller", "platform", "tax")}
        unit_index = 0
        for index, line in enumerate(draft.lines):
            product = line.product
            discounts = split_amount(line.discount, line.quantity)
            taxes = split_amount(line.tax, line.quantity)
            for unit in range(line.quantity):
                platform_discount = coupon[unit_index]
                unit_index += 1
                items.append(
                    {
                        "id": str(LINE_BASE + draft.number * 1000 + index * 100 + unit),
                        "sku_id": product.sku_id,
                        "seller_sku": product.seller_sku,
                        "product_id": product.product_id,
                        "product_name": product.title or product.seller_sku,
                        "sku_name": "Default",
                        "sku_image": "https://p16-oec-va.ibyteimg.com/tos-maliva-i-o3syd03w52-us/"
                        f"{product.sku_id}.jpeg",
                        "sku_type": "PRE_ORDER" if draft.presale else "NORMAL",
                        "original_price": money(line.unit_price),
                        "sale_price": money(line.unit_price - discounts[unit]),
                        "seller_discount": money(discounts[unit]),
                        "platform_discount": money(platform_discount),
                        "currency": "USD",
                        "item_tax": [{"tax_type": "SALES_TAX", "tax_amount": money(taxes[unit])}],
                        "display_status": "TO_SHIP" if draft.paid_at else "UNPAID",
                        "package_id": package_id,
                        "package_status": "TO_FULFILL",
                        "shipping_provider_id": "",
                        "shipping_provider_name": "",
                        "tracking_number": "",
                        "cancel_reason": "",
                        "cancel_user": "",
                        "is_gift": False,
                    }
                )
                totals["original"] += line.unit_price
                totals["seller"] += discounts[unit]
                totals["platform"] += platform_discount
                totals["tax"] += taxes[unit]
        sub_total = totals["original"] - totals["seller"] - totals["platform"]
        total = sub_total + draft.shipping_fee + totals["tax"]
        address = draft.address
        phone = address.phone
        if phone.startswith("+1"):
            phone = f"(+1){phone.removeprefix('+1')}"
        first, _, last = address.name.partition(" ")
        created = _seconds(draft.placed_at)
        order = {
            "id": draft.order_id,
            "status": "AWAITING_SHIPMENT" if draft.paid_at else "UNPAID",
            "create_time": created,
            "update_time": _seconds(draft.updated_at),
            "user_id": draft.buyer_user_id or str(7_000_000_000_000_000_000 + draft.number),
            "buyer_email": draft.buyer_email,
            "buyer_message": draft.note,
            "seller_note": "",
            "commerce_platform": "TIKTOK_SHOP",
            "order_type": "PRE_ORDER" if draft.presale else "NORMAL",
            "payment_method_name": "Credit card",
            "shipping_type": "SELLER",
            "fulfillment_type": "FULFILLMENT_BY_SELLER",
            "delivery_type": "HOME_DELIVERY",
            "delivery_option_id": DELIVERY_OPTION_ID,
            "delivery_option_name": DELIVERY_OPTION_NAME,
            "warehouse_id": store.warehouse_id,
            "shipping_provider": "",
            "shipping_provider_id": "",
            "tracking_number": "",
            "packages": [{"id": package_id}],
            "split_or_combine_tag": "",
            "is_on_hold_order": False,
            "is_buyer_request_cancel": False,
            "has_updated_recipient_address": False,
            "is_cod": False,
            "is_sample_order": False,
            "is_replacement_order": False,
            "payment": {
                "currency": "USD",
                "original_total_product_price": money(totals["original"]),
                "seller_discount": money(totals["seller"]),
                "platform_discount": money(totals["platform"]),
                "sub_total": money(sub_total),
                "original_shipping_fee": money(draft.shipping_fee),
                "shipping_fee_seller_discount": "0",
                "shipping_fee_platform_discount": "0",
                "shipping_fee": money(draft.shipping_fee),
                "product_tax": money(totals["tax"]),
                "shipping_fee_tax": "0",
                "tax": money(totals["tax"]),
                "retail_delivery_fee": "0",
                "small_order_fee": "0",
                "buyer_service_fee": "0",
                "handling_fee": "0",
                "total_amount": money(total),
            },
            "recipient_address": {
                "name": address.name,
                "first_name": first,
                "last_name": last,
                "phone_number": phone,
                "full_address": ", ".join(
                    part
                    for part in (
                        " ".join(p for p in (address.line1, address.line2) if p),
                        address.city,
                        f"{address.state} {address.postal_code}",
                    )
                    if part.strip()
                ),
                "address_detail": address.line2,
                "address_line1": address.line1,
                "address_line2": address.line2,
                "address_line3": "",
                "address_line4": "",
                "postal_code": address.postal_code,
                "region_code": address.country,
                "district_info": [
                    {
                        "address_level": "L0",
                        "address_level_name": "Country",
                        "address_name": "United States",
                    },
                    {
                        "address_level": "L1",
                        "address_level_name": "State",
                        "address_name": STATE_NAMES.get(address.state, address.state),
                    },
                    {
                        "address_level": "L3",
                        "address_level_name": "City",
                        "address_name": address.city,
                    },
                ],
                "delivery_preferences": {"drop_off_location": ""},
            },
            "line_items": items,
        }
        if draft.paid_at:
            paid = _seconds(draft.paid_at)
            rts_sla = _seconds(draft.ship_by) if draft.ship_by else paid + 48 * 3600
            order.update(
                {
                    "paid_time": paid,
                    "rts_sla_time": rts_sla,
                    "tts_sla_time": rts_sla + 24 * 3600,
                    "shipping_due_time": rts_sla + 72 * 3600,
                    "collection_due_time": rts_sla + 120 * 3600,
                    "delivery_due_time": paid + 12 * 24 * 3600,
                    "cancel_order_sla_time": rts_sla + 72 * 3600,
                }
            )
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
        """Every live item of `order` shipped in its package at `at`: what a mark-shipped call
        leaves (items AWAITING_COLLECTION with the tracking number, a package shipment)."""
        provider_name = CARRIER_NAMES.get(carrier, carrier)
        provider_id = next(
            (pid for pid, name in SHIPPING_PROVIDERS.items() if name == provider_name), None
        )
        if provider_id is None:
            raise SandboxInputError(f"no TikTok shipping provider for carrier {carrier!r}")
        with transaction.atomic():
            order = _locked_order(store, order.order_id)
            payload = order.payload
            if payload.get("status") not in SHIPPABLE:
                raise SandboxInputError(
                    f"order {order.order_id} is {payload.get('status')}: it cannot ship"
                )
            if payload.get("is_buyer_request_cancel"):
                # As the ship endpoints: a pending request is answered before shipping.
                raise SandboxInputError(f"order {order.order_id} has a pending cancellation")
            items = [item["id"] for item in _live_items(payload) if not item.get("tracking_number")]
            package_id = next(
                (item["package_id"] for item in payload["line_items"] if item.get("package_id")),
                None,
            ) or _id(PACKAGE_BASE, store, self._numbers(store, 1))
            return _ship_items(
                store,
                order,
                items,
                tracking=tracking_number,
                provider_id=provider_id,
                package_id=package_id,
                now=_seconds(at),
            )

    def advance_order(
        self, *, store: SandboxStore, order: SandboxOrder, status: str, at: datetime
    ) -> bool:
        """IN_TRANSIT once the carrier collected the parcel, DELIVERED once it arrived."""
        states = {"in_transit": "IN_TRANSIT", "delivered": "DELIVERED"}
        if status not in states:
            raise SandboxInputError(f"cannot move an order to {status!r}")
        now = _seconds(at)
        with transaction.atomic():
            order = _locked_order(store, order.order_id)
            payload = order.payload
            payload["status"] = states[status]
            payload["collection_time"] = payload.get("collection_time") or now
            if status == "delivered":
                payload["delivery_time"] = now
            for item in _live_items(payload):
                item["display_status"] = states[status]
                if status == "delivered":
                    item["package_status"] = "COMPLETED"
            _touch(order, now)
            _save(order)
            for shipment in store.shipments.select_for_update().filter(order_id=order.order_id):
                shipment.payload.update(
                    {
                        "status": "COMPLETED" if status == "delivered" else "PROCESSING",
                        "update_time": now,
                    }
                )
                shipment.save(update_fields=["payload", "updated"])
        return True

    def cancel_order(self, *, store: SandboxStore, order: SandboxOrder, at: datetime) -> None:
        """The buyer cancelled before shipping (TikTok lets them, within the first hour)."""
        now = _seconds(at)
        reason = random.Random(order.order_id).choice(CANCEL_REASONS)
        with transaction.atomic():
            order = _locked_order(store, order.order_id)
            payload = order.payload
            if payload.get("status") not in CANCELLABLE:
                raise SandboxInputError(
                    f"order {order.order_id} is {payload.get('status')}: it cannot be cancelled"
                )
            payload.update(
                {
                    "status": "CANCELLED",
                    "cancel_time": now,
                    "cancel_reason": reason,
                    "cancellation_initiator": "BUYER",
                    "is_buyer_request_cancel": False,
                }
            )
            for item in payload.get("line_items") or []:
                item.update(
                    {
                        "display_status": "CANCELLED",
                        "package_status": "CANCELLED",
                        "cancel_user": "BUYER",
                        "cancel_reason": reason,
                    }
                )
            _touch(order, now)
            _save(order)

    def load_order(self, *, store: SandboxStore, payload: dict) -> SandboxOrder:
        validate_order(payload)
        row, _ = SandboxOrder.objects.update_or_create(
            store=store, order_id=payload["id"], defaults=_order_row_fields(payload)
        )
        return row

    def load_orders(self, *, store: SandboxStore, payloads: list) -> int:
        """Validate every order, then upsert them all in bulk (all or nothing). Errors name the
        order's index in the list: `order 3: payment.sub_total: ...`."""
        seen: dict[str, int] = {}
        for index, payload in enumerate(payloads):
            try:
                validate_order(payload)
            except SandboxInputError as exc:
                raise SandboxInputError(f"order {index}: {exc}") from None
            if payload["id"] in seen:
                raise SandboxInputError(
                    f"order {index}: id: {payload['id']} is also order {seen[payload['id']]}"
                )
            seen[payload["id"]] = index
        rows = []
        for payload in payloads:
            row = SandboxOrder(store=store, order_id=payload["id"], **_order_row_fields(payload))
            # As an expression the payload is bound as one JSON parameter per row. As a plain
            # value, Django bulk-inserts through UNNEST(array), and psycopg's client-side array
            # quoting (a regex per string) costs more than generating the orders does.
            row.payload = Value(payload, output_field=JSONField())
            rows.append(row)
        with transaction.atomic():
            SandboxOrder.objects.bulk_create(
                rows,
                batch_size=500,
                update_conflicts=True,
                unique_fields=["store", "order_id"],
                update_fields=["status", "created", "updated", "payload"],
            )
        return len(rows)

    def show(self, *, store: SandboxStore, what: str) -> list[dict]:
        if what == "orders":
            return [present_order(o.payload) for o in store.orders.order_by("created", "pk")]
        if what == "inventory":
            return inventory_shape(list(store.products.order_by("product_id", "sku_id", "pk")))
        if what == "shipments":
            return [s.payload for s in store.shipments.order_by("created", "pk")]
        if what == "cancellations":
            return [
                c.payload
                for c in store.cancellations.exclude(payload__has_key="record").order_by(
                    "created", "pk"
                )
            ]
        if what == "returns":
            return [
                c.payload
                for c in store.cancellations.filter(payload__record=RETURN_RECORD).order_by(
                    "created", "pk"
                )
            ]
        raise SandboxInputError(
            f"cannot show {what!r}: choose orders, inventory, shipments, cancellations or returns"
        )

    # --- returns ---

    def request_return(
        self,
        *,
        store: SandboxStore,
        order: SandboxOrder,
        return_type: str = "RETURN_AND_REFUND",
        status: str = "AWAITING_BUYER_SHIP",
        reason: str = "Item not as described",
    ) -> SandboxCancellation:
        """The buyer asks to return every live item of `order`; the order is touched and a
        RETURN_STATUS_CHANGE webhook is what TikTok would send (not sent here)."""
        payload = order.payload
        if payload.get("status") in ("UNPAID", "CANCELLED"):
            raise SandboxInputError(
                f"order {order.order_id} is {payload.get('status')}: nothing to return"
            )
        if return_type not in RETURN_TYPES or status not in RETURN_STATUSES:
            raise SandboxInputError("unknown return type or status")
        now = int(time.time())
        items = _live_items(payload)
        first = self._numbers(store, 1 + len(items))
        return_id = _id(RETURN_BASE, store, first)
        record = {
            "record": RETURN_RECORD,
            "return_id": return_id,
            "order_id": order.order_id,
            "return_type": return_type,
            "return_status": status,
            "role": "BUYER",
            "return_reason": "ecom_order_delivered_refund_and_return_reason_"
            + re.sub(r"[^a-z]+", "_", reason.lower()).strip("_"),
            "return_reason_text": reason,
            "create_time": now,
            "update_time": now,
            "return_line_items": [
                {
                    "return_line_item_id": _id(RETURN_BASE, store, first + 1 + index),
                    "order_line_item_id": item["id"],
                    "sku_id": item["sku_id"],
                    "seller_sku": item.get("seller_sku", ""),
                    "product_name": item.get("product_name", ""),
                }
                for index, item in enumerate(items)
            ],
        }
        return SandboxCancellation.objects.create(
            store=store,
            cancel_id=return_id,
            order_id=order.order_id,
            status=status,
            payload=record,
            created=_dt(now),
            updated=_dt(now),
        )

    def return_status_set(self, *, store: SandboxStore, return_id: str, status: str) -> None:
        """Move a return along (the buyer shipped it, the seller received it...)."""
        if status not in RETURN_STATUSES:
            raise SandboxInputError(f"unknown return status {status!r}")
        with transaction.atomic():
            row = store.cancellations.select_for_update().get(
                cancel_id=return_id, payload__record=RETURN_RECORD
            )
            now = max(int(time.time()), _seconds(row.updated))
            row.status = status
            row.updated = _dt(now)
            row.payload.update({"return_status": status, "update_time": now})
            row.save()

    # --- cancellations ---

    def request_cancellation(
        self, *, store: SandboxStore, order: SandboxOrder, at: datetime | None = None
    ) -> SandboxCancellation | None:
        """The buyer asks to cancel (now, or at `at`): a pending request with TikTok's 48-hour
        answer clock, and the order flagged (`is_buyer_request_cancel`) and touched."""
        payload = order.payload
        if payload.get("status") not in CANCELLABLE:
            raise SandboxInputError(
                f"order {order.order_id} is {payload.get('status')}: buyers can ask to cancel "
                "only before it ships"
            )
        if payload.get("is_buyer_request_cancel"):
            return None
        now = _seconds(at) if at is not None else int(time.time())
        rng = random.Random(order.order_id)
        reason = rng.choice(CANCEL_REASONS)
        items = _live_items(payload)
        first = self._numbers(store, 1 + len(items))
        payment = payload.get("payment") or {}
        refund = {
            "currency": payment.get("currency", "USD"),
            "refund_subtotal": payment.get("sub_total", "0"),
            "refund_shipping_fee": payment.get("shipping_fee", "0"),
            "refund_tax": payment.get("tax", "0"),
            "refund_total": payment.get("total_amount", "0"),
            "retail_delivery_fee": payment.get("retail_delivery_fee", "0"),
        }
        cancellation_payload = {
            "cancel_id": _id(CANCEL_BASE, store, first),
            "order_id": order.order_id,
            # The reference lists CANCEL|BUYER_CANCEL; the official sample shows
            # REQUEST_CANCEL_REFUND. Uncertain.
            "cancel_type": "BUYER_CANCEL",
            "cancel_status": CANCEL_PENDING,
            "role": "BUYER",
            "cancel_reason": "ecom_order_to_ship_canceled_reason_"
            + re.sub(r"[^a-z]+", "_", reason.lower()).strip("_"),
            "cancel_reason_text": reason,
            "create_time": now,
            "update_time": now,
            "refund_amount": refund,
            "cancel_line_items": [
                {
                    "cancel_line_item_id": _id(CANCEL_BASE, store, first + 1 + index),
                    "order_line_item_id": item["id"],
                    "sku_id": item["sku_id"],
                    "seller_sku": item.get("seller_sku", ""),
                    "sku_name": item.get("sku_name", ""),
                    "product_name": item.get("product_name", ""),
                    "refund_amount": {
                        "currency": item.get("currency", "USD"),
                        "refund_subtotal": item.get("sale_price", "0"),
                    },
                }
                for index, item in enumerate(items)
            ],
            "seller_next_action_response": [
                {
                    "action": "SELLER_RESPOND_CANCEL",
                    "deadline": now + int(CANCEL_ANSWER.total_seconds()),
                }
            ],
        }
        cancellation = SandboxCancellation.objects.create(
            store=store,
            cancel_id=cancellation_payload["cancel_id"],
            order_id=order.order_id,
            status=CANCEL_PENDING,
            payload=cancellation_payload,
            created=_dt(now),
            updated=_dt(now),
        )
        payload["is_buyer_request_cancel"] = True
        payload["request_cancel_time"] = now
        payload["cancel_order_sla_time"] = now + int(CANCEL_ANSWER.total_seconds())
        _touch(order, now)
        _save(order)
        return cancellation

    # --- webhooks ---

    def send_webhook(self, *, store: SandboxStore, topic: str, data: dict) -> int | None:
        """Sign (hex HMAC-SHA256(app_secret, app_key + body) in `Authorization`) and POST one
        notification to the store's webhook URL; the delivery is recorded with its status."""
        if topic not in WEBHOOK_TYPES:
            raise SandboxInputError(f"unknown TikTok webhook topic {topic!r}")
        delivery_id = _id(NOTIFICATION_BASE, store, self._numbers(store, 1))
        body = json.dumps(
            {
                "type": WEBHOOK_TYPES[topic],
                "tts_notification_id": delivery_id,
                "shop_id": store.shop_key,
                "timestamp": int(time.time()),
                "data": data,
            },
            separators=(",", ":"),
        ).encode()
        secret = store.app_secret.encode()
        signature = hmac.new(secret, store.app_key.encode() + body, hashlib.sha256).hexdigest()
        status = None
        if store.webhook_url:
            try:
                with httpx.Client(
                    transport=webhook_transport(store.webhook_url), timeout=10.0
                ) as client:
                    response = client.post(
                        store.webhook_url,
                        content=body,
                        headers={"Authorization": signature, "Content-Type": "application/json"},
                    )
                status = response.status_code
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

    def notify_order_changed(self, *, store: SandboxStore, order: SandboxOrder) -> list:
        """What TikTok sends when an order changes: ORDER_STATUS_CHANGE, and
        CANCELLATION_STATUS_CHANGE for each of its pending cancellation requests."""
        payload = order.payload
        statuses = [
            self.send_webhook(
                store=store,
                topic="ORDER_STATUS_CHANGE",
                data={
                    "order_id": order.order_id,
                    "order_status": payload.get("status"),
                    "is_on_hold_order": bool(payload.get("is_on_hold_order")),
                    "update_time": payload.get("update_time"),
                },
            )
        ]
        if payload.get("is_buyer_request_cancel"):
            for cancellation in store.cancellations.filter(
                order_id=order.order_id, status=CANCEL_PENDING
            ):
                statuses.append(
                    self.send_webhook(
                        store=store,
                        topic="CANCELLATION_STATUS_CHANGE",
                        data={
                            "order_id": order.order_id,
                            "cancel_id": cancellation.cancel_id,
                            "cancellations_role": "BUYER",  # sic, TikTok's spelling
                            "cancel_status": cancellation.status,
                            "create_time": _seconds(cancellation.created),
                        },
                    )
                )
        return statuses


def _sorted_page(call, found, *, page_size: int, sort_field: str, sort_order: str):
    """One keyset page of cancellation/return rows in the requested order: (rows, token, total)."""
    total = found.count()
    field = "updated" if sort_field == "update_time" else "created"
    kind = "U" if field == "updated" else "C"
    rows, token = keyset_page(
        found,
        field=field,
        ascending=sort_order == "ASC",
        page_size=page_size,
        token=call.query.get("page_token", ""),
        kind=kind if sort_order == "ASC" else kind.lower(),
    )
    return rows, token, total
