"""TikTok Shop Open API (version 202309) connector.

Every call is signed as TikTok specifies (see `sign`), carries the access token in the
`x-tts-access-token` header, and `shop_cipher` only on shop-scoped endpoints. Answers come in the
`{"code", "message", "request_id", "data"}` envelope; a non-zero code becomes a typed
`PlatformError`. An expired access token is refreshed once, the new pair is persisted in one
write (`shops.credentials.credentials_store_tokens`) and the call is retried.

Facts the reference (`shared/platform-apis.md` §1) marks uncertain are flagged where they are used.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit

import httpx

from shops.platforms.base import (
    ZERO,
    AffiliateOrder,
    CancellationRequest,
    Connector,
    InventoryLevel,
    InventoryResult,
    InventoryUpdate,
    OrderPage,
    PlatformAddress,
    PlatformAuthError,
    PlatformError,
    PlatformLine,
    PlatformNotFound,
    PlatformOrder,
    PlatformRateLimited,
    PlatformRequestError,
    PlatformResponseError,
    PlatformTokenExpired,
    PlatformUnavailable,
    ReturnRequest,
    ShipOutcome,
    ShipRequest,
    ShipResult,
    TokenSet,
    UnmappedOrder,
    WebhookEvent,
    WebhookVerificationError,
    orders_map,
    tracking_numbers_in,
    unmapped_raise,
)
from shops.platforms.http import SANDBOX_HOST, PlatformHttpClient, RateLimit, parse_retry_after
from tkerp.dates import datetime_in_range, datetime_range_text
from tkerp.outbound import safe_media_type

if TYPE_CHECKING:
    from shops.models import ShopCredentials

PLATFORM = "tiktok"
DEFAULT_BASE_URL = "https://open-api.tiktokglobalshop.com"
DEFAULT_AUTH_BASE_URL = "https://auth.tiktok-shops.com"

# Never part of the signature: the signature itself and the token (which travels in a header;
# some SDKs also drop the header's name should it appear as a parameter).
UNSIGNED_PARAMS = frozenset({"sign", "access_token", "x-tts-access-token"})

# --- error codes (platform-apis.md §1.4) ---
CODE_RATE_LIMITED = 36009002
CODES_UNAVAILABLE = frozenset({36009003, 36009007})
CODE_GATEWAY = 36009004  # overloaded: bad sign/timestamp/app_key/token, unexpected cipher, params
CODE_TOKEN_EXPIRED = 105002
CODES_AUTH = frozenset({106001, 105001, 105005, 36004004, 36009033})
CODES_NOT_FOUND = frozenset({21008111})
CODE_PACKAGE_SHIPPED = 21011002  # the package has already been shipped
CODE_INVALID_TRACKING = 21011020  # the sandbox's code for a number the carrier cannot find
# Batch ship's per-package "package in freeze status" (the fudiwei SDK's sample answer). What
# freezes a package is not documented; read as "not now": retried with backoff (uncertain).
CODE_PACKAGE_FROZEN = 10007014
# 36009004 is reused for unrelated failures; these words mean "your request", not "your auth".
_REQUEST_WORDS = re.compile(r"param|shop_cipher|identifier|page_token|version", re.IGNORECASE)
_TOKEN_WORDS = re.compile(r"token", re.IGNORECASE)

# --- orders ---
ORDER_STATUSES = {
    "UNPAID": "new",
    "ON_HOLD": "new",
    "AWAITING_SHIPMENT": "new",
    # Some packages left, not all: the order is still open for the rest (its own parcels say
    # which left). Read as shipped, the next sync shipped every parcel (a 3PL's still waiting).
    "PARTIALLY_SHIPPING": "new",
    "AWAITING_COLLECTION": "shipped",
    "IN_TRANSIT": "in_transit",
    "DELIVERED": "delivered",
    "COMPLETED": "delivered",
    "CANCELLED": "cancelled",
}
# TikTok does not return the recipient for these statuses: the buyer may still cancel.
ADDRESS_HIDDEN_STATUSES = frozenset({"UNPAID", "ON_HOLD"})

WEBHOOK_TYPES = {
    1: "ORDER_STATUS_CHANGE",
    3: "RECIPIENT_ADDRESS_UPDATE",
    4: "PACKAGE_UPDATE",
    5: "PRODUCT_STATUS_CHANGE",
    6: "SELLER_DEAUTHORIZATION",
    7: "UPCOMING_AUTHORIZATION_EXPIRATION",
    11: "CANCELLATION_STATUS_CHANGE",
    12: "RETURN_STATUS_CHANGE",
    15: "PRODUCT_INFORMATION_CHANGE",
    16: "PRODUCT_CREATION",
    37: "PRODUCT_AUDIT_STATUS_CHANGE",
}
WEBHOOK_TYPE_NUMBERS = {name: number for number, name in WEBHOOK_TYPES.items()}

# A reject reason must be a key from GET /return_refund/202309/reject_reasons; this one is what
# we send when the caller gave free text (sent as the comment). The key's exact spelling is not
# in our reference: uncertain, verify against reject_reasons for the shop's region.
DEFAULT_REJECT_REASON = "seller_reject_apply_product_has_been_packed"
# What the seller may pick from when rejecting. Keys in TikTok's style; like the default above they
# are not in our reference (uncertain): the real list is GET /return_refund/202309/reject_reasons.
CANCEL_REJECT_REASONS = (
    (DEFAULT_REJECT_REASON, "The product has been packed"),
    ("seller_reject_apply_package_has_been_shipped", "The package has been shipped"),
    ("seller_reject_apply_buyer_agreed_to_keep", "The buyer agreed to keep the order"),
)
_REASON_KEY = re.compile(r"^[a-z0-9_]+$")


# --- signing ----------------------------------------------------------------------------------


def _param_value(value: Any) -> str:
    """How TikTok wants a parameter written: arrays comma-joined, booleans lower-case."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(_param_value(item) for item in value)
    return str(value)


def sign(path: str, params: Mapping[str, Any], body: bytes | None, secret: str) -> str:
    """TikTok's request signature (platform-apis.md §1.2).

    `params` are the decoded query parameters; `sign`, `access_token` and empty values are left
    out, the rest sorted by key (code-point order, which is byte order for UTF-8) and written
    key+value after the path. `body` is the exact bytes sent, for non-GET, non-multipart calls
    (pass None otherwise). The whole string is wrapped in the secret and HMAC-SHA256'd.
    """
    parts = [path]
    for key in sorted(params):
        if key in UNSIGNED_PARAMS:
            continue
        value = _param_value(params[key])
        if value == "":
            continue
        parts.append(f"{key}{value}")
    secret_bytes = secret.encode()
    message = secret_bytes + "".join(parts).encode() + (body or b"") + secret_bytes
    return hmac.new(secret_bytes, message, hashlib.sha256).hexdigest()


def webhook_signature(*, app_key: str, secret: str, body: bytes) -> str:
    """The `Authorization` header TikTok puts on a webhook: hex HMAC-SHA256(secret, key+body)."""
    return hmac.new(secret.encode(), app_key.encode() + body, hashlib.sha256).hexdigest()


def query_string(params: Mapping[str, Any]) -> str:
    """Percent-encode every value (`+` and `/` in page tokens included)."""
    return urlencode({key: _param_value(value) for key, value in params.items()}, quote_via=quote)


# --- envelope ---------------------------------------------------------------------------------


def parse_envelope(response: httpx.Response) -> dict:
    """The decoded envelope, or `PlatformResponseError` saying what is wrong with it."""
    status = response.status_code
    try:
        envelope = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        # Never quote the body: whatever answered, its words are not ours to show.
        raise PlatformResponseError(
            f"response is not JSON ({safe_media_type(response.headers.get('content-type'))})",
            status=status,
            platform=PLATFORM,
        ) from None
    if not isinstance(envelope, dict):
        raise PlatformResponseError(
            f"envelope is a JSON {type(envelope).__name__}, not an object",
            status=status,
            platform=PLATFORM,
        )
    code = envelope.get("code")
    if isinstance(code, bool) or not isinstance(code, int):
        raise PlatformResponseError(
            f"envelope has no integer 'code' (got {code!r})", status=status, platform=PLATFORM
        )
    data = envelope.get("data")
    if code == 0 and data is not None and not isinstance(data, dict):
        raise PlatformResponseError(
            f"envelope 'data' is a JSON {type(data).__name__}, not an object",
            status=status,
            request_id=str(envelope.get("request_id") or ""),
            platform=PLATFORM,
        )
    return envelope


def error_for(envelope: dict, response: httpx.Response) -> PlatformError:
    """The typed error for a non-zero envelope code."""
    code = envelope["code"]
    message = str(envelope.get("message") or "no message")
    kwargs = {
        "code": code,
        "status": response.status_code,
        "request_id": str(envelope.get("request_id") or ""),
        "platform": PLATFORM,
    }
    if code == CODE_RATE_LIMITED:
        return PlatformRateLimited(
            message, retry_after=parse_retry_after(response.headers.get("Retry-After")), **kwargs
        )
    # A frozen package is "not now" whether it was shipped alone or in a batch (`item_error`).
    if code in CODES_UNAVAILABLE or code == CODE_PACKAGE_FROZEN:
        return PlatformUnavailable(message, **kwargs)
    if code == CODE_TOKEN_EXPIRED:
        return PlatformTokenExpired(message, **kwargs)
    if code in CODES_AUTH:
        return PlatformAuthError(message, **kwargs)
    if code == CODE_GATEWAY:
        if _REQUEST_WORDS.search(message) and not _TOKEN_WORDS.search(message):
            return PlatformRequestError(message, **kwargs)
        return PlatformAuthError(message, **kwargs)
    if code in CODES_NOT_FOUND:
        return PlatformNotFound(message, **kwargs)
    return PlatformRequestError(message, **kwargs)


def item_error(code: Any, message: str) -> PlatformError:
    """The typed error for one item of a batch answer (`data.errors[]{code, message}`)."""
    try:
        code = int(code)
    except (TypeError, ValueError):
        code = str(code or "")
    kwargs = {"code": code, "platform": PLATFORM}
    message = message or "package not shipped"
    if code == CODE_RATE_LIMITED:
        return PlatformRateLimited(message, **kwargs)
    if code in CODES_UNAVAILABLE or code == CODE_PACKAGE_FROZEN:
        return PlatformUnavailable(message, **kwargs)
    if code in CODES_NOT_FOUND:
        return PlatformNotFound(message, **kwargs)
    return PlatformRequestError(message, **kwargs)


def check_response(response: httpx.Response) -> None:
    """`PlatformHttpClient.send`'s check: raise for a bad envelope; keep the parsed one."""
    envelope = parse_envelope(response)
    if envelope["code"] != 0:
        raise error_for(envelope, response)
    response.tts_envelope = envelope


def _data(response: httpx.Response) -> dict:
    envelope = getattr(response, "tts_envelope", None) or parse_envelope(response)
    return envelope.get("data") or {}


# --- small parsers ----------------------------------------------------------------------------


def _timestamp(value: Any, field: str, where: str) -> datetime | None:
    """Unix seconds -> aware UTC datetime; None for missing or zero."""
    if value in (None, "", 0, "0"):
        return None
    try:
        when = datetime.fromtimestamp(int(value), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        raise PlatformResponseError(
            f"{where}: {field} is not a Unix timestamp ({value!r})",
            field=field,
            platform=PLATFORM,
        ) from None
    if not datetime_in_range(when):
        raise PlatformResponseError(
            f"{where}: {field} {value!r} is not {datetime_range_text()}",
            field=field,
            platform=PLATFORM,
        )
    return when


def _money(value: Any, field: str, where: str) -> Decimal:
    """A decimal string in major units -> Decimal; missing is zero."""
    if value in (None, ""):
        return ZERO
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise PlatformResponseError(
            f"{where}: {field} is not a decimal string ({value!r})", field=field, platform=PLATFORM
        )
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise PlatformResponseError(
            f"{where}: {field} is not a decimal string ({value!r})", field=field, platform=PLATFORM
        ) from None
    if not amount.is_finite():
        raise PlatformResponseError(
            f"{where}: {field} is not finite", field=field, platform=PLATFORM
        )
    return amount


def _floor_seconds(when: datetime) -> int:
    return int(when.timestamp() // 1)


def _ceil_seconds(when: datetime) -> int:
    seconds = when.timestamp()
    return int(seconds) if seconds == int(seconds) else int(seconds // 1) + 1


def _id_key(value: str) -> tuple[int, str]:
    """Sort digit-string ids numerically (shorter first) without trusting them to be digits."""
    return (len(value), value)


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(str(item) for item in items if item not in (None, "")))


def _list(data: dict, key: str, where: str) -> list:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise PlatformResponseError(
            f"{where}: '{key}' is a {type(value).__name__}, not a list", platform=PLATFORM
        )
    return value


# --- order mapping ----------------------------------------------------------------------------


def map_address(order: dict) -> PlatformAddress:
    """The recipient, flagged masked where TikTok hides it (see ADDRESS_HIDDEN_STATUSES) or ships
    the parcel itself (shipping_type TIKTOK: name and phone come masked)."""
    raw = order.get("recipient_address")
    status = order.get("status")
    if not isinstance(raw, dict) or not raw:
        return PlatformAddress(masked=True, raw={})
    levels = {}
    for item in raw.get("district_info") or []:
        if isinstance(item, dict) and item.get("address_level"):
            levels[item["address_level"]] = str(item.get("address_name") or "")
    extra_lines = []
    for key in ("address_line2", "address_line3", "address_line4"):
        value = str(raw.get(key) or "").strip()
        # The official sample carries the literal text `""` for empty lines.
        if value and value != '""':
            extra_lines.append(value)
    name = str(raw.get("name") or "").strip()
    if not name:
        name = f"{raw.get('first_name') or ''} {raw.get('last_name') or ''}".strip()
    phone = str(raw.get("phone_number") or "")
    masked = (
        status in ADDRESS_HIDDEN_STATUSES
        or order.get("shipping_type") == "TIKTOK"
        or "*" in name
        or "*" in phone
    )
    return PlatformAddress(
        name=name,
        phone=phone,
        line1=str(raw.get("address_line1") or raw.get("address_detail") or "").strip(),
        line2=", ".join(extra_lines),
        # US district levels: L0 country, L1 state, L2 county, L3 city.
        city=levels.get("L3") or levels.get("L2") or "",
        state=levels.get("L1", ""),
        postal_code=str(raw.get("postal_code") or ""),
        country=str(raw.get("region_code") or "US"),
        masked=masked,
        raw=raw,
    )


def _item_cancelled(item: dict) -> bool:
    return item.get("display_status") == "CANCELLED" or item.get("package_status") == "CANCELLED"


def map_lines(items: list, where: str) -> list[PlatformLine]:
    """TikTok line items are single units: one `PlatformLine` per SKU.

    The group's `platform_line_id` is its smallest item id, stable while items come and go.
    `platform_line_ids` and `quantity` count the live items (all of them once every item is
    cancelled), so shipping those ids never names a cancelled unit.
    """
    groups: dict[str, list[dict]] = {}
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise PlatformResponseError(
                f"{where}: line_items[{index}] is not an object",
                field=f"line_items[{index}]",
                platform=PLATFORM,
            )
        if not item.get("id") or not item.get("sku_id"):
            raise PlatformResponseError(
                f"{where}: line_items[{index}] has no id or sku_id",
                field=f"line_items[{index}]",
                platform=PLATFORM,
            )
        groups.setdefault(str(item["sku_id"]), []).append(item)
    lines = []
    for sku_id, group in groups.items():
        live = [item for item in group if not _item_cancelled(item)]
        counted = live or group
        first = counted[0]
        ids = sorted((str(item["id"]) for item in counted), key=_id_key)
        discount = ZERO
        tax = ZERO
        gross = ZERO
        for item in counted:
            item_where = f"{where} line item {item['id']}"
            original = item.get("original_price")
            if original in (None, ""):
                original = item.get("sale_price")
            gross += _money(original, "original_price", item_where)
            discount += _money(item.get("seller_discount"), "seller_discount", item_where)
            discount += _money(item.get("platform_discount"), "platform_discount", item_where)
            for tax_line in item.get("item_tax") or []:
                tax += _money(tax_line.get("tax_amount"), "item_tax.tax_amount", item_where)
        lines.append(
            PlatformLine(
                platform_line_id=min((str(item["id"]) for item in group), key=_id_key),
                quantity=len(counted),
                seller_sku=str(first.get("seller_sku") or "").strip(),
                platform_sku_id=sku_id,
                product_name=str(first.get("product_name") or ""),
                unit_price=_money(
                    first.get("original_price") or first.get("sale_price"),
                    "original_price",
                    where,
                ),
                discount=discount,
                tax=tax,
                total=gross - discount,
                is_cancelled=not live,
                platform_line_ids=ids,
            )
        )
    return lines


def map_order(order: dict) -> PlatformOrder:
    """One 202309 order-detail object -> `PlatformOrder` (raw payload kept)."""
    if not isinstance(order, dict):
        raise PlatformResponseError("order is not an object", platform=PLATFORM)
    order_id = str(order.get("id") or "")
    if not order_id:
        raise PlatformResponseError("order has no id", platform=PLATFORM)
    where = f"order {order_id}"
    platform_status = str(order.get("status") or "")
    try:
        status = ORDER_STATUSES[platform_status]
    except KeyError:
        # Unknown status: stop rather than guess (a guess of "new" could ship a cancelled order).
        raise PlatformResponseError(
            f"{where}: unknown status {platform_status!r}", field="status", platform=PLATFORM
        ) from None
    updated_at = _timestamp(order.get("update_time"), "update_time", where)
    if updated_at is None:
        raise PlatformResponseError(f"{where}: missing update_time", platform=PLATFORM)
    payment = order.get("payment") or {}
    if not isinstance(payment, dict):
        raise PlatformResponseError(f"{where}: payment is not an object", platform=PLATFORM)
    items = order.get("line_items") or []
    if not isinstance(items, list):
        raise PlatformResponseError(f"{where}: line_items is not a list", platform=PLATFORM)

    def money(key: str) -> Decimal:
        return _money(payment.get(key), f"payment.{key}", where)

    tax = money("tax")
    if "tax" not in payment:
        tax = money("product_tax") + money("shipping_fee_tax")
    address = map_address(order)
    cancel_requested = bool(order.get("is_buyer_request_cancel"))
    return PlatformOrder(
        platform_order_id=order_id,
        platform_status=platform_status,
        status=status,
        updated_at=updated_at,
        placed_at=_timestamp(order.get("create_time"), "create_time", where),
        paid_at=_timestamp(order.get("paid_time"), "paid_time", where),
        currency=str(payment.get("currency") or "USD"),
        subtotal=money("sub_total"),
        shipping_fee=money("shipping_fee"),
        seller_discount=money("seller_discount"),
        platform_discount=money("platform_discount"),
        tax=tax,
        total=money("total_amount"),
        # Not part of the 202309 order detail (affiliate commission lives in the affiliate and
        # finance APIs); read from payment.creator_commission when a feed adds it. Uncertain.
        creator_commission=money("creator_commission"),
        buyer_name="" if address.masked else address.name,
        buyer_email=str(order.get("buyer_email") or ""),
        buyer_user_id=str(order.get("user_id") or ""),
        buyer_note=str(order.get("buyer_message") or ""),
        seller_note=str(order.get("seller_note") or ""),
        address=address,
        # Pre-sale: line_items[].sku_type == "PRE_ORDER" (seen in the official detail sample)
        # or order_type "PRE_ORDER". Uncertain: the field's full value list is not documented.
        is_presale=order.get("order_type") == "PRE_ORDER"
        or any(isinstance(i, dict) and i.get("sku_type") == "PRE_ORDER" for i in items),
        is_cod=bool(order.get("is_cod")),
        ship_by=_timestamp(order.get("rts_sla_time"), "rts_sla_time", where),
        cancel_requested=cancel_requested,
        cancel_requested_at=_timestamp(
            order.get("request_cancel_time"), "request_cancel_time", where
        ),
        # The auto-cancel time is the answer deadline while a buyer's request is pending.
        cancel_answer_by=_timestamp(
            order.get("cancel_order_sla_time"), "cancel_order_sla_time", where
        )
        if cancel_requested
        else None,
        shipped_at=_timestamp(order.get("rts_time"), "rts_time", where),
        delivered_at=_timestamp(order.get("delivery_time"), "delivery_time", where),
        cancelled_at=_timestamp(order.get("cancel_time"), "cancel_time", where),
        lines=map_lines(items, where),
        raw=order,
    )


def map_affiliate_order(item: dict) -> AffiliateOrder | None:
    """One affiliate seller order -> who sold it and the commission (the paid amount once the
    order settled, else the estimate), summed over its SKUs; None without a creator."""
    if not isinstance(item, dict) or not item.get("id"):
        raise PlatformResponseError("affiliate order without id", platform=PLATFORM)
    where = f"affiliate order {item['id']}"
    skus = [sku for sku in item.get("skus") or [] if isinstance(sku, dict)]
    credited = [sku for sku in skus if sku.get("creator_username")]
    if not credited:
        return None
    commission = ZERO
    for sku in credited:
        paid = sku.get("actual_paid_commission") or {}
        estimate = sku.get("estimated_paid_commission") or {}
        amount = paid.get("amount") if isinstance(paid, dict) and paid.get("amount") else None
        if amount is None and isinstance(estimate, dict):
            amount = estimate.get("amount")
        commission += _money(amount, "estimated_paid_commission.amount", where)
    first = credited[0]
    return AffiliateOrder(
        platform_order_id=str(item["id"]),
        creator_username=str(first.get("creator_username") or "")[:100],
        content_type=str(first.get("content_type") or "")[:20],
        content_id=str(first.get("content_id") or "")[:100],
        commission=commission,
        raw=item,
    )


def map_cancellation(item: dict) -> CancellationRequest:
    if not isinstance(item, dict) or not item.get("cancel_id") or not item.get("order_id"):
        raise PlatformResponseError("cancellation without cancel_id/order_id", platform=PLATFORM)
    where = f"cancellation {item['cancel_id']}"
    deadlines = [
        action.get("deadline")
        for action in item.get("seller_next_action_response") or []
        if isinstance(action, dict) and action.get("action") == "SELLER_RESPOND_CANCEL"
    ]
    deadline = min((int(d) for d in deadlines if d), default=None)
    return CancellationRequest(
        cancel_id=str(item["cancel_id"]),
        platform_order_id=str(item["order_id"]),
        status=str(item.get("cancel_status") or ""),
        reason=str(item.get("cancel_reason_text") or item.get("cancel_reason") or ""),
        requested_at=_timestamp(item.get("create_time"), "create_time", where),
        answer_by=_timestamp(deadline, "seller_next_action_response.deadline", where),
        platform_line_ids=_unique(
            line.get("order_line_item_id")
            for line in item.get("cancel_line_items") or []
            if isinstance(line, dict)
        ),
        raw=item,
    )


def map_return(item: dict) -> ReturnRequest:
    """One returns-search object -> `ReturnRequest`; return line items (one unit each) are
    grouped by seller SKU."""
    if not isinstance(item, dict) or not item.get("return_id") or not item.get("order_id"):
        raise PlatformResponseError("return without return_id/order_id", platform=PLATFORM)
    where = f"return {item['return_id']}"
    grouped: dict[str, dict] = {}
    for line in item.get("return_line_items") or []:
        if not isinstance(line, dict):
            continue
        key = str(line.get("seller_sku") or line.get("sku_id") or "")
        entry = grouped.setdefault(
            key,
            {
                "seller_sku": str(line.get("seller_sku") or ""),
                "platform_sku_id": str(line.get("sku_id") or ""),
                "platform_line_ids": [],
                "quantity": 0,
            },
        )
        entry["platform_line_ids"].append(str(line.get("order_line_item_id") or ""))
        entry["quantity"] += 1
    return ReturnRequest(
        return_id=str(item["return_id"]),
        platform_order_id=str(item["order_id"]),
        status=str(item.get("return_status") or ""),
        return_type=str(item.get("return_type") or ""),
        reason=str(item.get("return_reason_text") or item.get("return_reason") or ""),
        requested_at=_timestamp(item.get("create_time"), "create_time", where),
        updated_at=_timestamp(item.get("update_time"), "update_time", where),
        lines=list(grouped.values()),
        raw=item,
    )


def token_set(data: dict) -> TokenSet:
    """TokenSet from a token get/refresh `data`; both `*_expire_in` are absolute Unix times."""
    if not data.get("access_token"):
        raise PlatformResponseError("token response has no access_token", platform=PLATFORM)
    where = "token response"
    return TokenSet(
        access_token=str(data["access_token"]),
        access_token_expires_at=_timestamp(
            data.get("access_token_expire_in"), "access_token_expire_in", where
        ),
        refresh_token=str(data.get("refresh_token") or ""),
        refresh_token_expires_at=_timestamp(
            data.get("refresh_token_expire_in"), "refresh_token_expire_in", where
        ),
    )


def _header(headers: Mapping[str, str], name: str) -> str:
    """Case-insensitive header lookup that also accepts a WSGI META mapping."""
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        for key, item in headers.items():
            if key.lower() == lowered:
                value = item
                break
    if value is None:
        value = headers.get("HTTP_" + name.upper().replace("-", "_"))
    return str(value or "")


def _warnings(data: dict) -> list[str]:
    messages = []
    warning = data.get("warning")
    if isinstance(warning, dict) and warning.get("message"):
        messages.append(str(warning["message"]))
    for item in data.get("warnings") or []:
        if isinstance(item, dict) and item.get("message"):
            messages.append(str(item["message"]))
    return messages


# --- the connector ----------------------------------------------------------------------------


class TikTokConnector(Connector):
    """TikTok Shop for one shop (one `shop_cipher`)."""

    platform = PLATFORM
    default_base_url = DEFAULT_BASE_URL
    # QPS is assigned per app and shop and not published (one source says 50 per API); 20/s
    # across all of a shop's calls stays well clear of it.
    rate_limit = RateLimit(per_second=20, burst=20)
    page_size = 100
    detail_batch = 50
    cancellation_page_size = 50
    cancel_reject_reasons = CANCEL_REJECT_REASONS
    inventory_search_batch = 600
    # Batch Ship Packages: TikTok's reference gives no maximum (neither the official field docs
    # nor the SDKs we read); 50 is the bound of its other id-list calls (order detail ids,
    # package search page size). `credentials.extra["ship_batch_size"]` lowers it.
    ship_batch_max = 50

    @classmethod
    def partly_shipped(cls, platform_status: str) -> bool:
        return platform_status == "PARTIALLY_SHIPPING"

    # --- plumbing ---

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: dict | None = None,
        shop_scoped: bool = True,
    ) -> dict:
        """One signed API call; returns the envelope's `data`.

        An expired token is refreshed (or picked up from another worker's refresh) and the call
        retried once; so is a token another worker has rotated since we loaded ours.
        """
        try:
            return self._send(method, path, query=query, body=body, shop_scoped=shop_scoped)
        except PlatformTokenExpired:
            self._renew_tokens()
        except PlatformAuthError as exc:
            if exc.code != CODE_GATEWAY or not self._reload_tokens():
                raise
        return self._send(method, path, query=query, body=body, shop_scoped=shop_scoped)

    def _send(self, method, path, *, query, body, shop_scoped) -> dict:
        body_bytes = None
        if method != "GET":
            # Serialised once: the signature covers exactly these bytes.
            body_bytes = json.dumps(
                body if body is not None else {}, separators=(",", ":"), ensure_ascii=False
            ).encode()

        def build() -> httpx.Request:
            credentials = self.credentials
            params: dict[str, str] = {
                "app_key": credentials.app_key,
                # Per attempt: a retry after a long backoff must not fall out of the window.
                "timestamp": str(int(time.time())),
            }
            for key, value in (query or {}).items():
                params[key] = _param_value(value)
            if shop_scoped:
                params["shop_cipher"] = credentials.shop_cipher
            params = {key: value for key, value in params.items() if value != ""}
            params["sign"] = sign(path, params, body_bytes, credentials.app_secret)
            return self.http.client.build_request(
                method,
                f"{self.http.url(path)}?{query_string(params)}",
                content=body_bytes,
                headers={
                    "x-tts-access-token": credentials.access_token,
                    "Content-Type": "application/json",
                },
            )

        return _data(self.http.send(build, check=check_response))

    def _reload_tokens(self) -> bool:
        """Adopt tokens another worker stored since we loaded ours; True if they changed."""
        from shops.models import ShopCredentials

        row = (
            ShopCredentials._base_manager.filter(pk=self.credentials.pk)
            .values(
                "access_token",
                "access_token_expires_at",
                "refresh_token",
                "refresh_token_expires_at",
            )
            .first()
        )
        if row is None or row["access_token"] == self.credentials.access_token:
            return False
        for key, value in row.items():
            setattr(self.credentials, key, value)
        return True

    def _renew_tokens(self) -> None:
        from shops.credentials import credentials_store_tokens

        if self._reload_tokens():
            return
        tokens = self.refresh_access_token()
        self.credentials = credentials_store_tokens(credentials=self.credentials, tokens=tokens)

    def auth_base_url(self) -> str:
        """Token endpoints live on their own host; the sandbox serves them under `/auth`. Not
        configurable: the refresh call carries the app secret in its query."""
        if urlsplit(self.http.base_url).hostname == SANDBOX_HOST:
            return f"{self.http.base_url}/auth"
        return DEFAULT_AUTH_BASE_URL

    @staticmethod
    def _token_call(http: PlatformHttpClient, url: str, params: dict) -> TokenSet:
        """Token get/refresh: unsigned GETs with the app secret in the query."""

        def build() -> httpx.Request:
            return http.client.build_request("GET", f"{url}?{query_string(params)}")

        return token_set(_data(http.send(build, check=check_response)))

    # --- auth ---

    @classmethod
    def exchange_auth_code(
        cls,
        *,
        app_key: str,
        app_secret: str,
        auth_code: str,
        auth_base_url: str = DEFAULT_AUTH_BASE_URL,
        transport: httpx.BaseTransport | None = None,
        **http_options,
    ) -> TokenSet:
        """Trade the code TikTok's consent redirect brought for the first token pair."""
        http = PlatformHttpClient(
            platform=PLATFORM,
            shop_key=f"auth:{app_key}",
            base_url=auth_base_url,
            rate_limit=cls.rate_limit,
            transport=transport,
            **http_options,
        )
        try:
            return cls._token_call(
                http,
                f"{http.base_url}/api/v2/token/get",
                {
                    "app_key": app_key,
                    "app_secret": app_secret,
                    "auth_code": auth_code,
                    "grant_type": "authorized_code",  # literal, as documented
                },
            )
        finally:
            http.close()

    def refresh_access_token(self) -> TokenSet:
        """A new token pair from the refresh token (TikTok rotates both)."""
        try:
            return self._token_call(
                self.http,
                f"{self.auth_base_url()}/api/v2/token/refresh",
                {
                    "app_key": self.credentials.app_key,
                    "app_secret": self.credentials.app_secret,
                    "refresh_token": self.credentials.refresh_token,
                    "grant_type": "refresh_token",
                },
            )
        except (PlatformAuthError, PlatformRequestError, PlatformNotFound) as exc:
            # Not PlatformTokenExpired: nothing short of the seller re-authorizing fixes this.
            raise PlatformAuthError(
                f"token refresh refused: {exc.message}; the seller must re-authorize the app",
                code=exc.code,
                status=exc.status,
                request_id=exc.request_id,
                platform=PLATFORM,
            ) from exc

    def list_authorized_shops(self) -> list[dict]:
        """The shops this token may act for, each with the `cipher` that selects it."""
        data = self.request("GET", "/authorization/202309/shops", shop_scoped=False)
        return [shop for shop in _list(data, "shops", "shops") if isinstance(shop, dict)]

    # --- orders ---

    def fetch_orders(
        self,
        *,
        updated_since: datetime,
        updated_until: datetime | None = None,
        page_token: str | None = None,
    ) -> OrderPage:
        """One page of orders updated in [since, until), oldest update first.

        TikTok filters in whole seconds: `since` is floored and `until` ceiled, so the window
        never loses an order at its edges (one seen twice is harmless: ingest is idempotent).
        Search answers carry full order detail, so no second call is needed.
        """
        body: dict[str, Any] = {"update_time_ge": _floor_seconds(updated_since)}
        if updated_until is not None:
            body["update_time_lt"] = _ceil_seconds(updated_until)
        data = self.request(
            "POST",
            "/order/202309/orders/search",
            query={
                "page_size": self.page_size,
                "sort_field": "update_time",
                "sort_order": "ASC",
                "page_token": page_token or "",
            },
            body=body,
        )
        unmapped: list[UnmappedOrder] = []
        orders = orders_map(
            _list(data, "orders", "order search"),
            map_order,
            id_key="id",
            platform=PLATFORM,
            unmapped=unmapped,
        )
        return OrderPage(
            orders=orders, next_page_token=data.get("next_page_token") or None, unmapped=unmapped
        )

    def fetch_orders_by_id(
        self, *, platform_order_ids: list[str], unmapped: list[UnmappedOrder] | None = None
    ) -> list[PlatformOrder]:
        """Order detail, 50 ids a call; ids TikTok does not return are left out."""
        orders = []
        failed: list[UnmappedOrder] = [] if unmapped is None else unmapped
        for chunk in _chunks(_unique(platform_order_ids), self.detail_batch):
            data = self.request("GET", "/order/202309/orders", query={"ids": chunk})
            orders += orders_map(
                _list(data, "orders", "order detail"),
                map_order,
                id_key="id",
                platform=PLATFORM,
                unmapped=failed,
            )
        if unmapped is None:
            unmapped_raise(failed, platform=PLATFORM)
        return orders

    # --- affiliates (creators) ---

    def fetch_affiliate_orders(
        self, *, created_since: datetime, created_until: datetime
    ) -> list[AffiliateOrder]:
        """Affiliate seller orders created in [since, until): the creator, the content and the
        estimated commission per SKU, summed per order (`/affiliate_seller/202410/orders/search`,
        scope seller.affiliate_collaboration.read; the API takes windows of three months at
        most, so longer ones are asked in parts)."""
        found: dict[str, AffiliateOrder] = {}
        start = created_since
        while start < created_until:
            end = min(created_until, start + timedelta(days=90))
            token = ""
            while True:
                data = self.request(
                    "POST",
                    "/affiliate_seller/202410/orders/search",
                    query={"page_size": 100, "page_token": token},
                    body={
                        "create_time_ge": _floor_seconds(start),
                        "create_time_lt": _ceil_seconds(end),
                    },
                )
                for item in _list(data, "orders", "affiliate order search"):
                    credit = map_affiliate_order(item)
                    if credit is not None:
                        found[credit.platform_order_id] = credit
                token = data.get("next_page_token") or ""
                if not token:
                    break
            start = end
        return list(found.values())

    # --- cancellations ---

    def fetch_cancellations(
        self, *, updated_since: datetime, updated_until: datetime | None = None
    ) -> list[CancellationRequest]:
        """Every cancellation changed in the window (all pages), oldest update first."""
        body: dict[str, Any] = {"update_time_ge": _floor_seconds(updated_since)}
        if updated_until is not None:
            body["update_time_lt"] = _ceil_seconds(updated_until)
        found: list[CancellationRequest] = []
        token = ""
        while True:
            data = self.request(
                "POST",
                "/return_refund/202309/cancellations/search",
                query={
                    "page_size": self.cancellation_page_size,
                    "sort_field": "update_time",
                    "sort_order": "ASC",
                    "page_token": token,
                },
                body=body,
            )
            found.extend(
                map_cancellation(item)
                for item in _list(data, "cancellations", "cancellation search")
            )
            token = data.get("next_page_token") or ""
            if not token:
                return found

    def answer_cancellation(
        self,
        *,
        cancel_id: str,
        platform_order_id: str,
        approve: bool,
        reason: str = "",
        idempotency_key: str = "",
    ) -> None:
        """Approve or reject a buyer's request. The default idempotency key is derived from the
        request and the decision, so a retried answer is the same answer."""
        decision = "approve" if approve else "reject"
        key = (idempotency_key or f"tkerp-{cancel_id}-{decision}")[:255]
        body: dict[str, Any] = {}
        if not approve:
            reason = reason.strip()
            if _REASON_KEY.match(reason):
                body["reject_reason"] = reason
            else:
                body["reject_reason"] = DEFAULT_REJECT_REASON
                if reason:
                    body["comment"] = reason
        self.request(
            "POST",
            f"/return_refund/202309/cancellations/{quote(cancel_id, safe='')}/{decision}",
            query={"idempotency_key": key},
            body=body,
        )

    # --- returns ---

    def fetch_returns(
        self, *, updated_since: datetime, updated_until: datetime | None = None
    ) -> list[ReturnRequest]:
        """Every return/refund request changed in the window (all pages), oldest update first.
        The response list is `return_orders` (uncertain: our reference names only the path and
        filters)."""
        body: dict[str, Any] = {"update_time_ge": _floor_seconds(updated_since)}
        if updated_until is not None:
            body["update_time_lt"] = _ceil_seconds(updated_until)
        found: list[ReturnRequest] = []
        token = ""
        while True:
            data = self.request(
                "POST",
                "/return_refund/202309/returns/search",
                query={
                    "page_size": self.cancellation_page_size,
                    "sort_field": "update_time",
                    "sort_order": "ASC",
                    "page_token": token,
                },
                body=body,
            )
            found.extend(map_return(item) for item in _list(data, "return_orders", "return search"))
            token = data.get("next_page_token") or ""
            if not token:
                return found

    # --- fulfilment ---

    def _provider_id(self, request: ShipRequest) -> str:
        if not request.platform_provider_id:
            raise PlatformRequestError(
                f"no TikTok shipping_provider_id for carrier {request.carrier_code!r}; "
                "map it from shipping_providers() first",
                platform=PLATFORM,
            )
        return request.platform_provider_id

    def ship(self, *, request: ShipRequest) -> ShipResult:
        """Seller-shipped parcel: ship the existing package when its id is known, otherwise mark
        the order's items (all, or `platform_line_ids`: TikTok line item ids) shipped."""
        provider_id = self._provider_id(request)
        if request.platform_package_id:
            package_id = request.platform_package_id
            data = self.request(
                "POST",
                f"/fulfillment/202309/packages/{quote(package_id, safe='')}/ship",
                body={
                    # DROP_OFF needs no pickup slot; the seller hands the parcel to its carrier.
                    "handover_method": "DROP_OFF",
                    "self_shipment": {
                        "tracking_number": request.tracking_number,
                        "shipping_provider_id": provider_id,
                    },
                },
            )
            return ShipResult(platform_package_id=package_id, warnings=_warnings(data), raw=data)
        body: dict[str, Any] = {
            "tracking_number": request.tracking_number,
            "shipping_provider_id": provider_id,
        }
        if request.platform_line_ids:
            body["order_line_item_ids"] = list(request.platform_line_ids)
        data = self.request(
            "POST",
            f"/fulfillment/202309/orders/{quote(request.platform_order_id, safe='')}/packages",
            body=body,
        )
        package_id = str(data.get("package_id") or "")
        if not package_id:
            raise PlatformResponseError("mark shipped answered without package_id")
        return ShipResult(platform_package_id=package_id, warnings=_warnings(data), raw=data)

    def tracking_rejected(self, error: PlatformError) -> bool:
        return error.code == CODE_INVALID_TRACKING or super().tracking_rejected(error)

    def ship_batchable(self, request: ShipRequest) -> bool:
        """A package TikTok already holds (its id known) ships in a batch; a parcel that splits
        an order's items needs "mark shipped" to create its package, one order a call."""
        return bool(request.platform_package_id and request.platform_provider_id)

    def ship_batch(self, *, requests: list[ShipRequest]) -> list[ShipOutcome]:
        """Batch Ship Packages (`POST /fulfillment/202309/packages/ship`): each package with
        the seller's own tracking (`self_shipment`), dropped off at the carrier. TikTok answers
        `code 0` with a package's refusal in `data.errors[]{code, message, detail{package_id}}`;
        the packages not named there shipped."""
        if not requests:
            return []
        if len(requests) > self.ship_batch_size():
            raise ValueError(f"{len(requests)} packages exceed {self.ship_batch_size()} a call")
        packages = []
        for request in requests:
            if not self.ship_batchable(request):
                raise ValueError(f"order {request.platform_order_id} has no package to batch")
            packages.append(
                {
                    "id": request.platform_package_id,
                    "handover_method": "DROP_OFF",
                    "self_shipment": {
                        "tracking_number": request.tracking_number,
                        "shipping_provider_id": request.platform_provider_id,
                    },
                }
            )
        body = {"packages": packages}
        data = self.request("POST", "/fulfillment/202309/packages/ship", body=body)
        failed: dict[str, tuple[Any, str]] = {}
        for error in _list(data, "errors", "batch ship"):
            if isinstance(error, dict):
                detail = error.get("detail") if isinstance(error.get("detail"), dict) else {}
                failed[str(detail.get("package_id") or "")] = (
                    error.get("code"),
                    str(error.get("message") or ""),
                )
        warnings = _warnings(data)
        outcomes = []
        for request in requests:
            package_id = request.platform_package_id
            # An error naming no package is about every package of the call.
            refusal = failed.get(package_id) or failed.get("")
            if refusal is None:
                result = ShipResult(platform_package_id=package_id, warnings=warnings)
                outcomes.append(ShipOutcome(request=request, result=result))
            elif str(refusal[0]) == str(CODE_PACKAGE_SHIPPED):
                result = ShipResult(platform_package_id=package_id, already_shipped=True)
                outcomes.append(ShipOutcome(request=request, result=result))
            else:
                outcomes.append(ShipOutcome(request=request, error=item_error(*refusal)))
        return outcomes

    def shipped_tracking_numbers_many(
        self, *, platform_order_ids: list[str]
    ) -> dict[str, set[str] | None]:
        """Order detail takes 50 ids a call: one call answers a whole batch's check."""
        found: dict[str, set[str] | None] = {oid: set() for oid in platform_order_ids}
        for order in self.fetch_orders_by_id(platform_order_ids=list(found)):
            found[order.platform_order_id] = tracking_numbers_in(order.raw)
        return found

    def update_tracking(self, *, request: ShipRequest) -> ShipResult:
        """Correct a shipped package's tracking number (by package; else by order, a path our
        reference marks as an alternative: uncertain)."""
        body = {
            "tracking_number": request.tracking_number,
            "shipping_provider_id": self._provider_id(request),
        }
        if request.platform_package_id:
            target = f"packages/{quote(request.platform_package_id, safe='')}"
        else:
            target = f"orders/{quote(request.platform_order_id, safe='')}"
        data = self.request("POST", f"/fulfillment/202309/{target}/shipping_info/update", body=body)
        return ShipResult(
            platform_package_id=request.platform_package_id, warnings=_warnings(data), raw=data
        )

    def shipping_providers(self, *, delivery_option_id: str) -> list[dict]:
        """Carriers allowed for an order's delivery option: `[{id, name}]`."""
        data = self.request(
            "GET",
            f"/logistics/202309/delivery_options/{quote(delivery_option_id, safe='')}"
            "/shipping_providers",
        )
        return [p for p in _list(data, "shipping_providers", "providers") if isinstance(p, dict)]

    def warehouses(self) -> list[dict]:
        data = self.request("GET", "/logistics/202309/warehouses")
        return [w for w in _list(data, "warehouses", "warehouses") if isinstance(w, dict)]

    # --- TikTok Shipping (packages TikTok ships, with TikTok's labels) ---

    def ship_package(self, *, package_id: str, handover_method: str = "DROP_OFF") -> bool:
        """Arrange shipment of a package TikTok ships (TikTok's carrier buys the label). True if
        it shipped now, False if it had shipped already: asking again is harmless."""
        try:
            self.request(
                "POST",
                f"/fulfillment/202309/packages/{quote(package_id, safe='')}/ship",
                body={"handover_method": handover_method},
            )
        except PlatformRequestError as exc:
            if exc.code == CODE_PACKAGE_SHIPPED:
                return False
            raise
        return True

    def order_tracking(self, *, platform_order_id: str) -> list[dict]:
        """The carrier's events for the order's package as TikTok relays them:
        `[{description, update_time_millis}]` (TikTok gives no status code; see
        `logistics.tracking_events.tiktok_status`)."""
        data = self.request(
            "GET", f"/fulfillment/202309/orders/{quote(platform_order_id, safe='')}/tracking"
        )
        return [event for event in _list(data, "tracking", "tracking") if isinstance(event, dict)]

    def package_detail(self, *, package_id: str) -> dict:
        """`package_status`, `shipping_type`, `tracking_number`, `shipping_provider_name`..."""
        return self.request("GET", f"/fulfillment/202309/packages/{quote(package_id, safe='')}")

    def shipping_document_url(
        self, *, package_id: str, document_type: str = "SHIPPING_LABEL", document_size: str = "A6"
    ) -> str:
        """The link to a package's SHIPPING_LABEL, PACKING_SLIP or both (A6 is the 4x6 label
        size). The link expires within minutes: download it at once."""
        data = self.request(
            "GET",
            f"/fulfillment/202309/packages/{quote(package_id, safe='')}/shipping_documents",
            query={
                "document_type": document_type,
                "document_size": document_size,
                "document_format": "PDF",
            },
        )
        url = str(data.get("doc_url") or "")
        if not url:
            raise PlatformResponseError("shipping documents answered without doc_url")
        return url

    def download_document(self, *, url: str) -> bytes:
        """The PDF behind a `doc_url` (unsigned GET; only https, or the sandbox host)."""
        parts = urlsplit(url)
        if parts.scheme != "https" and parts.hostname != SANDBOX_HOST:
            raise PlatformResponseError("document link is not https", platform=PLATFORM)

        def build() -> httpx.Request:
            return self.http.client.build_request("GET", url)

        response = self.http.send(build)
        if response.status_code != 200:
            raise PlatformRequestError(
                f"document download failed (HTTP {response.status_code}; the link may have "
                "expired)",
                status=response.status_code,
                platform=PLATFORM,
            )
        if not response.content.startswith(b"%PDF"):
            raise PlatformResponseError("document is not a PDF", platform=PLATFORM)
        return response.content

    # --- inventory ---

    def _default_warehouse(self) -> str:
        extra = self.credentials.extra or {}
        return str(extra.get("warehouse_id") or extra.get("location_id") or "")

    def set_inventory(self, *, updates: list[InventoryUpdate]) -> list[InventoryResult]:
        """Absolute quantities, one call per product; a result for every update, in order.

        A request-level refusal (bad stock count...) fails that product's updates; auth and
        transport errors still raise, since nothing was applied anywhere.
        """
        results: dict[int, InventoryResult] = {}
        by_product: dict[str, list[tuple[int, InventoryUpdate]]] = {}
        for index, update in enumerate(updates):
            if not update.platform_product_id:
                results[index] = InventoryResult(
                    platform_sku_id=update.platform_sku_id,
                    ok=False,
                    error="no platform product id for this SKU",
                    code="missing_product_id",
                )
                continue
            by_product.setdefault(update.platform_product_id, []).append((index, update))
        default_warehouse = self._default_warehouse()
        for product_id, group in by_product.items():
            skus: dict[str, list[dict]] = {}
            for _, update in group:
                entry: dict[str, Any] = {"quantity": int(update.quantity)}
                warehouse = update.location_id or default_warehouse
                if warehouse:
                    entry = {"warehouse_id": warehouse, **entry}
                skus.setdefault(update.platform_sku_id, []).append(entry)
            try:
                data = self.request(
                    "POST",
                    f"/product/202309/products/{quote(product_id, safe='')}/inventory/update",
                    body={
                        "skus": [
                            {"id": sku_id, "inventory": inventory}
                            for sku_id, inventory in skus.items()
                        ]
                    },
                )
            except (PlatformRequestError, PlatformNotFound) as exc:
                for index, update in group:
                    results[index] = InventoryResult(
                        platform_sku_id=update.platform_sku_id,
                        ok=False,
                        error=exc.message,
                        code=str(exc.code or ""),
                    )
                continue
            failed = self._inventory_errors(data)
            for index, update in group:
                error = failed.get(update.platform_sku_id) or failed.get("")
                results[index] = InventoryResult(
                    platform_sku_id=update.platform_sku_id,
                    ok=error is None,
                    error=error[1] if error else "",
                    code=error[0] if error else "",
                )
        return [results[index] for index in range(len(updates))]

    @staticmethod
    def _inventory_errors(data: dict) -> dict[str, tuple[str, str]]:
        """sku_id -> (code, message) from `data.errors[]` ("" = the error names no SKU)."""
        failed: dict[str, tuple[str, str]] = {}
        for error in _list(data, "errors", "inventory update"):
            if not isinstance(error, dict):
                continue
            detail = error.get("detail") or {}
            messages = [str(error.get("message") or "inventory update failed")]
            code = str(error.get("code") or "")
            for extra in detail.get("extra_errors") or []:
                if isinstance(extra, dict):
                    where = (
                        f" (warehouse {extra['warehouse_id']})" if extra.get("warehouse_id") else ""
                    )
                    messages.append(f"{extra.get('message') or ''}{where}".strip())
            failed[str(detail.get("sku_id") or "")] = (code, "; ".join(m for m in messages if m))
        return failed

    def get_inventory(self, *, platform_sku_ids: list[str]) -> list[InventoryLevel]:
        """What TikTok offers for each SKU (available across warehouses)."""
        levels = []
        for chunk in _chunks(_unique(platform_sku_ids), self.inventory_search_batch):
            data = self.request("POST", "/product/202309/inventory/search", body={"sku_ids": chunk})
            for product in _list(data, "inventory", "inventory search"):
                for sku in product.get("skus") or []:
                    quantity = sku.get("total_available_quantity")
                    if quantity is None:
                        quantity = sum(
                            int(w.get("available_quantity") or 0)
                            for w in sku.get("warehouse_inventory") or []
                        )
                    levels.append(
                        InventoryLevel(
                            platform_sku_id=str(sku.get("id") or ""),
                            quantity=int(quantity),
                            platform_product_id=str(product.get("product_id") or ""),
                            seller_sku=str(sku.get("seller_sku") or ""),
                        )
                    )
        return levels

    # --- webhooks ---

    @classmethod
    def verify_webhook(
        cls, *, headers: Mapping[str, str], body: bytes, credentials: ShopCredentials
    ) -> bool:
        """`Authorization` must be hex HMAC-SHA256(app_secret, app_key + raw body)."""
        received = _header(headers, "Authorization").strip().lower()
        secret = credentials.app_secret or credentials.webhook_secret
        if not received or not secret or not credentials.app_key:
            return False
        expected = webhook_signature(app_key=credentials.app_key, secret=secret, body=body)
        return hmac.compare_digest(expected.encode(), received.encode("utf-8", "replace"))

    @classmethod
    def parse_webhook(cls, *, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        """Delivery id (`tts_notification_id`), topic, shop id and the orders it touches."""
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise WebhookVerificationError("TikTok webhook body is not JSON") from None
        if not isinstance(payload, dict):
            raise WebhookVerificationError("TikTok webhook body is not a JSON object")
        data = payload.get("data") if isinstance(payload.get("data"), dict) else {}
        order_ids = [data.get("order_id")]
        for package in data.get("package_list") or []:
            if isinstance(package, dict):
                listed = package.get("order_id_list") or []
                # One id sent bare rather than in a list is one id, not a string's characters.
                order_ids.extend(listed if isinstance(listed, list) else [listed])
        if any(
            isinstance(order_id, bool) or not isinstance(order_id, str | int)
            for order_id in order_ids
            if order_id not in (None, "")
        ):
            raise WebhookVerificationError("TikTok webhook names an order id that is not an id")
        kind = payload.get("type")
        topic = WEBHOOK_TYPES.get(kind, f"TYPE_{kind}") if isinstance(kind, int) else str(kind)
        # Older payloads lack tts_notification_id: a hash of the body still dedupes redeliveries.
        delivery_id = str(payload.get("tts_notification_id") or "")
        if not delivery_id:
            delivery_id = "sha256:" + hashlib.sha256(body).hexdigest()[:40]
        return WebhookEvent(
            delivery_id=delivery_id,
            topic=topic,
            platform_order_ids=_unique(order_ids),
            shop_key=str(payload.get("shop_id") or ""),
            raw=payload,
        )
