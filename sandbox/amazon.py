"""Amazon SP-API sandbox: LWA tokens, Orders v0 and Listings Items 2021-08-01, under
/sandbox/amazon/.

What it does like Amazon (shared/platform-apis.md §3, amzn/selling-partner-api-models):

- **LWA** `POST auth/o2/token` (grant_type=refresh_token, client_id, client_secret,
  refresh_token) issues a fresh one-hour access token each time; older ones stay valid until they
  expire, as with LWA. Bad client -> 401 invalid_client, bad refresh token -> 400 invalid_grant.
  Access tokens are self-verifying (`Atza|<store>.<expiry>.<nonce>.<hmac>`, keyed by the app
  secret); the token `sandbox_connect` stores is also accepted until the store's expiry.
- **Auth errors** are SP-API's: 403 `Unauthorized` "Access to requested resource is denied." with
  details saying whether the token expired or is invalid.
- **getOrders** needs `MarketplaceIds` and one date family (`CreatedAfter`/`CreatedBefore` or
  `LastUpdatedAfter`/`LastUpdatedBefore`, never both), both bounds inclusive; a `...Before` must
  be at least two minutes in the past (and defaults to that). `MaxResultsPerPage` 1-100.
  `NextToken` is opaque (signed keyset) and must come with `MarketplaceIds` only.
- **getOrder / getOrderItems** (items paged by `NextToken`, `ORDER_ITEMS_PER_PAGE` a page).
  Pending orders come without item prices and, like every status but Unshipped /
  PartiallyShipped / Shipped / InvoiceUnconfirmed, without a ShippingAddress.
- **confirmShipment** records a `SandboxShipment` (package id `<order>:<packageReferenceId>`),
  adds to QuantityShipped and moves the order to PartiallyShipped/Shipped; 204. Re-sending the
  same package is a no-op; the same items under the same reference with another carrier,
  tracking number or date edit the package (Amazon's documented way to correct a confirmed
  shipment); other items under the same reference are refused.
- **Listings** GET/PATCH `listings/2021-08-01/items/<sellerId>/<sku>` on `SandboxProduct`. The
  Amazon SKU is `SandboxProduct.seller_sku` (or `sku_id` when that is what is sent). PATCH of
  `/attributes/fulfillment_availability` sets the quantity; a negative quantity or an unknown
  SKU gives 200 with status INVALID and an issue, as Amazon answers listing problems.
- **Rate limits** per operation (token buckets with Amazon's default rate and burst),
  both multiplied by `store.rate_per_second` (Amazon stores default to 1.0 = Amazon's real
  figures; `store.rate_burst` is unused). Throttled calls get 429 `QuotaExceeded` with
  `Retry-After` and `x-amzn-RateLimit-Limit`, which every other answer carries too.
- **Faults**: 429 (like Amazon's: no Retry-After, only x-amzn-RateLimit-Limit), 500, 503,
  timeout, and "badsign" -> 403 invalid token.

What it does not: PII is served without a Restricted Data Token (as for an app holding the
restricted role); no feeds, reports or notifications. There are no HTTP webhooks on SP-API.

Stored shape: `SandboxOrder.payload` is the getOrder payload plus `"OrderItems"`, the item
objects getOrderItems returns; `show(what="orders")`, `generate_order`, `load_order` and
`load_orders` use the same shape. Buyer cancellation requests are `BuyerRequestedCancel` on the
items (Orders v0 has no cancellation object); `show(what="cancellations")` lists them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import random
import re
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import wraps
from types import SimpleNamespace

from django.core import signing
from django.db import transaction
from django.db.models import F, Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from sandbox.base import (
    CARRIER_NAMES,
    OrderDraft,
    SandboxInputError,
    SandboxPlatform,
    injected_fault,
    new_secret,
    next_number,
    order_products,
    plain_fault_response,
    throttled,
    tracking_refusal,
)
from sandbox.models import (
    SandboxCancellation,
    SandboxOrder,
    SandboxProduct,
    SandboxShipment,
    SandboxStore,
)
from sandbox.people import CANCEL_REASONS, fake_buyer
from shops.platforms.amazon import MARKETPLACES, OPERATION_LIMITS, amazon_datetime
from shops.platforms.http import RateLimit

ACCESS_TOKEN_SECONDS = 3600
#: Amazon refuses a `...Before` later than two minutes ago (and defaults to exactly that).
SETTLE = timedelta(minutes=2)
ORDER_ITEMS_PER_PAGE = 10
MAX_RESULTS_PER_PAGE = 100
#: Amazon's default usage plan per operation (the connector keeps to the same figures).
LIMITS = dict(OPERATION_LIMITS)
ORDER_STATUSES = {
    "Pending",
    "Unshipped",
    "PartiallyShipped",
    "Shipped",
    "Canceled",
    "Unfulfillable",
    "InvoiceUnconfirmed",
    "PendingAvailability",
}
#: Statuses in which a buyer can still ask to cancel.
CANCELLABLE = {"Pending", "PendingAvailability", "Unshipped"}
#: Statuses whose orders show a ShippingAddress (the API model's note).
ADDRESS_STATUSES = {"Unshipped", "PartiallyShipped", "Shipped", "InvoiceUnconfirmed"}
#: Item fields Amazon leaves out while an order is Pending.
PENDING_HIDDEN_ITEM_FIELDS = (
    "ItemPrice",
    "ItemTax",
    "ShippingPrice",
    "ShippingTax",
    "ShippingDiscount",
    "ShippingDiscountTax",
    "PromotionDiscount",
    "PromotionDiscountTax",
    "IsGift",
)
CURRENCIES = {"US": "USD", "CA": "CAD", "MX": "MXN", "GB": "GBP", "UK": "GBP", "JP": "JPY"}
ORDER_ID_RE = re.compile(r"^\d{3}-\d{7}-\d{7}$")
MONEY_FIELDS = (
    "ItemPrice",
    "ItemTax",
    "ShippingPrice",
    "ShippingTax",
    "ShippingDiscount",
    "ShippingDiscountTax",
    "PromotionDiscount",
    "PromotionDiscountTax",
)
DENIED = "Access to requested resource is denied."
EXPIRED = "The access token you provided has expired."
INVALID_TOKEN = "The access token you provided is revoked, malformed or invalid."
CENT = Decimal("0.01")


def marketplace_for(store: SandboxStore) -> str:
    return MARKETPLACES.get((store.region or "US").upper(), MARKETPLACES["US"])


def _now() -> datetime:
    """Now, in whole seconds: Amazon's dates have no fractions, and the `updated` column must
    equal the LastUpdateDate clients see so windows agree."""
    return timezone.now().replace(microsecond=0)


def _money(amount: Decimal, currency: str) -> dict:
    return {"CurrencyCode": currency, "Amount": str(amount.quantize(CENT))}


def _parse_date(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


# --- responses --------------------------------------------------------------------------------


def _errors(status: int, code: str, message: str, details: str = "") -> JsonResponse:
    error = {"code": code, "message": message}
    if details:
        error["details"] = details
    return JsonResponse({"errors": [error]}, status=status)


def _invalid(message: str, details: str = "") -> JsonResponse:
    return _errors(400, "InvalidInput", message, details)


def _limit_for(store: SandboxStore, operation: str) -> RateLimit:
    """Amazon's usage plan for `operation`, scaled by the store's rate setting."""
    base = LIMITS[operation]
    scale = store.rate_per_second
    return RateLimit(per_second=base.per_second * scale, burst=max(1, round(base.burst * scale)))


def _rate_header(limit: RateLimit) -> str:
    return f"{limit.per_second:g}"


# --- auth -------------------------------------------------------------------------------------


def _token_signature(store: SandboxStore, body: str) -> str:
    return hmac.new(store.app_secret.encode(), body.encode(), hashlib.sha256).hexdigest()[:40]


def issue_access_token(store: SandboxStore, *, expires_at: datetime) -> str:
    """A self-verifying LWA-style access token for `store`, valid until `expires_at`."""
    body = f"{store.pk}.{int(expires_at.timestamp())}.{secrets.token_hex(6)}"
    return f"Atza|{body}.{_token_signature(store, body)}"


def resolve_token(token: str) -> tuple[SandboxStore | None, str]:
    """The store an access token belongs to, and "" or why it is refused."""
    if not token:
        return None, ""
    match = re.fullmatch(r"Atza\|(\d+)\.(\d+)\.([0-9a-f]+)\.([0-9a-f]+)", token)
    if match:
        store = SandboxStore.objects.filter(platform="amazon", pk=int(match[1])).first()
        body = f"{match[1]}.{match[2]}.{match[3]}"
        if store is None or not hmac.compare_digest(_token_signature(store, body), match[4]):
            return None, INVALID_TOKEN
        if int(match[2]) <= timezone.now().timestamp():
            return store, EXPIRED
        return store, ""
    # The first token, set by sandbox_connect, is a plain secret checked against the store.
    store = SandboxStore.objects.filter(platform="amazon", access_token=token).first()
    if store is None:
        return None, INVALID_TOKEN
    if (
        store.access_token_expires_at is not None
        and store.access_token_expires_at <= timezone.now()
    ):
        return store, EXPIRED
    return store, ""


@csrf_exempt
def lwa_token(request: HttpRequest) -> HttpResponse:
    """Login with Amazon: exchange a refresh token for a one-hour access token."""
    if request.method != "POST":
        return JsonResponse(
            {"error": "invalid_request", "error_description": "POST required"}, status=405
        )
    if request.content_type == "application/json":
        try:
            form = json.loads(request.body or b"{}")
        except ValueError:
            form = {}
    else:
        form = request.POST
    grant_type = form.get("grant_type", "")
    if grant_type != "refresh_token":
        return JsonResponse(
            {
                "error": "unsupported_grant_type",
                "error_description": "The authorization grant type is not supported by the "
                "authorization server",
            },
            status=400,
        )
    store = SandboxStore.objects.filter(
        platform="amazon", app_key=form.get("client_id", "")
    ).first()
    if store is None or not hmac.compare_digest(
        store.app_secret.encode(), str(form.get("client_secret", "")).encode()
    ):
        return JsonResponse(
            {"error": "invalid_client", "error_description": "Client authentication failed"},
            status=401,
        )
    if not store.refresh_token or not hmac.compare_digest(
        store.refresh_token.encode(), str(form.get("refresh_token", "")).encode()
    ):
        return JsonResponse(
            {
                "error": "invalid_grant",
                "error_description": "The request has an invalid grant parameter : refresh_token",
            },
            status=400,
        )
    expires_at = timezone.now() + timedelta(seconds=ACCESS_TOKEN_SECONDS)
    store.access_token = issue_access_token(store, expires_at=expires_at)
    store.access_token_expires_at = expires_at
    store.save(update_fields=["access_token", "access_token_expires_at"])
    return JsonResponse(
        {
            "access_token": store.access_token,
            "refresh_token": store.refresh_token,
            "token_type": "bearer",
            "expires_in": ACCESS_TOKEN_SECONDS,
        }
    )


def operation(name: str):
    """Wrap an SP-API view: token -> store, injected faults, the operation's rate limit, and
    Amazon's response headers. The view gets `store` as its first argument after request."""

    def decorate(view):
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            response = _run(name, view, request, *args, **kwargs)
            response["x-amzn-RequestId"] = str(uuid.uuid4())
            return response

        return wrapper

    return decorate


def _run(name, view, request, *args, **kwargs) -> HttpResponse:
    store, problem = resolve_token(request.headers.get("x-amz-access-token", ""))
    if store is None or problem:
        return _errors(403, "Unauthorized", DENIED, problem)
    limit = _limit_for(store, name)
    fault = injected_fault(store)
    if fault == "429":
        # Amazon's own 429s carry no Retry-After; clients only have the rate header.
        response = _errors(
            429, "QuotaExceeded", "You exceeded your quota for the requested resource."
        )
        response["x-amzn-RateLimit-Limit"] = _rate_header(limit)
        return response
    if fault == "badsign":
        return _errors(403, "Unauthorized", DENIED, INVALID_TOKEN)
    if fault in ("500", "503"):
        code, message = {
            "500": ("InternalFailure", "We encountered an internal error. Please try again."),
            "503": ("ServiceUnavailable", "Service temporarily unavailable. Please try again."),
        }[fault]
        return _errors(int(fault), code, message)
    if fault:
        return plain_fault_response(fault)
    bucket_store = SimpleNamespace(
        pk=store.pk, rate_per_second=limit.per_second, rate_burst=limit.burst
    )
    if throttled(bucket_store, name):
        response = _errors(
            429, "QuotaExceeded", "You exceeded your quota for the requested resource."
        )
        response["Retry-After"] = str(math.ceil(1 / limit.per_second))
        response["x-amzn-RateLimit-Limit"] = _rate_header(limit)
        return response
    response = view(request, store, *args, **kwargs)
    response["x-amzn-RateLimit-Limit"] = _rate_header(limit)
    return response


def _method_not_allowed() -> JsonResponse:
    return _errors(405, "MethodNotAllowed", "The HTTP method is not allowed for this resource.")


# --- orders -----------------------------------------------------------------------------------


def order_view(payload: dict) -> dict:
    """The order as getOrder/getOrders return it: no items, no address when Amazon hides it."""
    order = {key: value for key, value in payload.items() if key != "OrderItems"}
    if order.get("OrderStatus") not in ADDRESS_STATUSES:
        order.pop("ShippingAddress", None)
    return order


def items_view(payload: dict) -> list[dict]:
    """The items as getOrderItems returns them (no prices while Pending)."""
    items = [dict(item) for item in payload.get("OrderItems") or []]
    if payload.get("OrderStatus") in ("Pending", "PendingAvailability"):
        for item in items:
            for field in PENDING_HIDDEN_ITEM_FIELDS:
                item.pop(field, None)
    return items


def _token_salt(store: SandboxStore, kind: str) -> str:
    return f"sandbox.amazon.{kind}.{store.pk}"


def _date_param(request: HttpRequest, name: str) -> datetime | None:
    value = request.GET.get(name)
    if value is None:
        return None
    try:
        return _parse_date(value)
    except ValueError:
        raise SandboxInputError(f"Invalid {name}: {value!r} is not an ISO 8601 date") from None


@csrf_exempt
def orders(request: HttpRequest) -> HttpResponse:
    if request.method != "GET":
        return _method_not_allowed()
    return get_orders(request)


@operation("getOrders")
def get_orders(request: HttpRequest, store: SandboxStore) -> HttpResponse:
    marketplaces = [m for m in request.GET.get("MarketplaceIds", "").split(",") if m]
    if not marketplaces:
        return _invalid("Missing required 'MarketplaceIds' parameter")
    if marketplace_for(store) not in marketplaces:
        return _invalid("Invalid MarketplaceIds", "The seller does not sell in these markets.")
    date_params = [
        name
        for name in ("CreatedAfter", "CreatedBefore", "LastUpdatedAfter", "LastUpdatedBefore")
        if name in request.GET
    ]
    next_token = request.GET.get("NextToken")
    if next_token:
        if date_params:
            return _invalid(
                "NextToken must be sent with MarketplaceIds only",
                f"Remove {', '.join(date_params)}: the token carries the original filters.",
            )
        try:
            query = signing.loads(next_token, salt=_token_salt(store, "orders"))
        except signing.BadSignature:
            return _invalid("Invalid NextToken")
        if sorted(query["marketplaces"]) != sorted(marketplaces):
            return _invalid("MarketplaceIds do not match the NextToken")
    else:
        try:
            query = _orders_query(request, marketplaces)
        except SandboxInputError as exc:
            return _invalid(str(exc))
    return _orders_page(store, query)


def _orders_query(request: HttpRequest, marketplaces: list[str]) -> dict:
    """Validate a first getOrders request into the query a NextToken carries."""
    created = "CreatedAfter" in request.GET or "CreatedBefore" in request.GET
    updated = "LastUpdatedAfter" in request.GET or "LastUpdatedBefore" in request.GET
    if created and updated:
        raise SandboxInputError(
            "CreatedAfter/CreatedBefore cannot be combined with LastUpdatedAfter/LastUpdatedBefore"
        )
    family = "LastUpdated" if updated else "Created"
    after = _date_param(request, f"{family}After")
    before = _date_param(request, f"{family}Before")
    if after is None:
        raise SandboxInputError("Either CreatedAfter or LastUpdatedAfter is required")
    latest = timezone.now() - SETTLE
    if before is not None:
        if before > latest:
            raise SandboxInputError(
                f"{family}Before must be at least two minutes before the time of the request"
            )
        if before < after:
            raise SandboxInputError(f"{family}Before must be equal to or after {family}After")
    else:
        before = latest
    try:
        page_size = int(request.GET.get("MaxResultsPerPage", MAX_RESULTS_PER_PAGE))
    except ValueError:
        page_size = 0
    if not 1 <= page_size <= MAX_RESULTS_PER_PAGE:
        raise SandboxInputError("MaxResultsPerPage must be between 1 and 100")
    split = lambda name: [v for v in request.GET.get(name, "").split(",") if v]  # noqa: E731
    statuses = split("OrderStatuses")
    unknown = set(statuses) - ORDER_STATUSES
    if unknown:
        raise SandboxInputError(f"Invalid OrderStatuses: {', '.join(sorted(unknown))}")
    return {
        "marketplaces": marketplaces,
        "family": family,
        "after": after.isoformat(),
        "before": before.isoformat(),
        "size": page_size,
        "statuses": statuses,
        "channels": split("FulfillmentChannels"),
        "ids": split("AmazonOrderIds"),
        "after_key": None,
    }


def _orders_page(store: SandboxStore, query: dict) -> JsonResponse:
    column = "updated" if query["family"] == "LastUpdated" else "created"
    rows = SandboxOrder.objects.filter(
        store=store,
        **{f"{column}__gte": query["after"], f"{column}__lte": query["before"]},
        payload__MarketplaceId__in=query["marketplaces"],
    )
    if query["statuses"]:
        rows = rows.filter(status__in=query["statuses"])
    if query["channels"]:
        rows = rows.filter(payload__FulfillmentChannel__in=query["channels"])
    if query["ids"]:
        rows = rows.filter(order_id__in=query["ids"])
    if query["after_key"]:
        last_value, last_id = query["after_key"]
        rows = rows.filter(
            Q(**{f"{column}__gt": last_value}) | Q(**{column: last_value, "order_id__gt": last_id})
        )
    page = list(rows.order_by(column, "order_id")[: query["size"] + 1])
    more = len(page) > query["size"]
    page = page[: query["size"]]
    payload = {"Orders": [order_view(row.payload) for row in page]}
    payload[f"{query['family']}Before"] = amazon_datetime(_parse_date(query["before"]))
    if more:
        last = page[-1]
        token_query = {
            **query,
            "after_key": [getattr(last, column).isoformat(), last.order_id],
        }
        payload["NextToken"] = signing.dumps(token_query, salt=_token_salt(store, "orders"))
    return JsonResponse({"payload": payload})


def _not_found(order_id: str) -> JsonResponse:
    return _errors(404, "NotFound", "Requested order not found", f"AmazonOrderId {order_id}")


@csrf_exempt
def order(request: HttpRequest, order_id: str) -> HttpResponse:
    if request.method != "GET":
        return _method_not_allowed()
    return get_order(request, order_id=order_id)


@operation("getOrder")
def get_order(request: HttpRequest, store: SandboxStore, *, order_id: str) -> HttpResponse:
    row = SandboxOrder.objects.filter(store=store, order_id=order_id).first()
    if row is None:
        return _not_found(order_id)
    return JsonResponse({"payload": order_view(row.payload)})


@csrf_exempt
def order_items(request: HttpRequest, order_id: str) -> HttpResponse:
    if request.method != "GET":
        return _method_not_allowed()
    return get_order_items(request, order_id=order_id)


@operation("getOrderItems")
def get_order_items(request: HttpRequest, store: SandboxStore, *, order_id: str) -> HttpResponse:
    row = SandboxOrder.objects.filter(store=store, order_id=order_id).first()
    if row is None:
        return _not_found(order_id)
    offset = 0
    if request.GET.get("NextToken"):
        try:
            token = signing.loads(request.GET["NextToken"], salt=_token_salt(store, "items"))
        except signing.BadSignature:
            return _invalid("Invalid NextToken")
        if token["order"] != order_id:
            return _invalid("NextToken belongs to another order")
        offset = token["offset"]
    items = items_view(row.payload)
    payload = {
        "OrderItems": items[offset : offset + ORDER_ITEMS_PER_PAGE],
        "AmazonOrderId": order_id,
    }
    if offset + ORDER_ITEMS_PER_PAGE < len(items):
        payload["NextToken"] = signing.dumps(
            {"order": order_id, "offset": offset + ORDER_ITEMS_PER_PAGE},
            salt=_token_salt(store, "items"),
        )
    return JsonResponse({"payload": payload})


@csrf_exempt
def shipment_confirmation(request: HttpRequest, order_id: str) -> HttpResponse:
    if request.method != "POST":
        return _method_not_allowed()
    return confirm_shipment(request, order_id=order_id)


@operation("confirmShipment")
def confirm_shipment(request: HttpRequest, store: SandboxStore, *, order_id: str) -> HttpResponse:
    try:
        body = json.loads(request.body or b"")
    except ValueError:
        return _invalid("Request body is not valid JSON")
    if not isinstance(body, dict):
        return _invalid("Request body must be a JSON object")
    package = body.get("packageDetail")
    if not isinstance(package, dict):
        return _invalid("Missing required 'packageDetail'")
    for field in ("packageReferenceId", "carrierCode", "trackingNumber", "shipDate", "orderItems"):
        if not package.get(field):
            return _invalid(f"Missing required 'packageDetail.{field}'")
    carrier = str(package.get("carrierName") or package["carrierCode"])
    refusal = tracking_refusal(store, carrier=carrier, number=str(package["trackingNumber"]))
    if refusal:
        return _invalid(refusal)
    reference = str(package["packageReferenceId"])
    if not (reference.isdigit() and int(reference) > 0):
        return _invalid("packageReferenceId must be a positive number")
    if package["carrierCode"] == "Other" and not package.get("carrierName"):
        return _invalid("carrierName is required when carrierCode is Other")
    try:
        _parse_date(str(package["shipDate"]))
    except ValueError:
        return _invalid("shipDate must be an ISO 8601 date")
    wanted = {}
    for index, entry in enumerate(package["orderItems"]):
        if not isinstance(entry, dict) or not entry.get("orderItemId"):
            return _invalid(f"orderItems[{index}].orderItemId is required")
        quantity = entry.get("quantity")
        if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 1:
            return _invalid(f"orderItems[{index}].quantity must be a positive integer")
        wanted[str(entry["orderItemId"])] = wanted.get(str(entry["orderItemId"]), 0) + quantity
    with transaction.atomic():
        row = (
            SandboxOrder.objects.select_for_update().filter(store=store, order_id=order_id).first()
        )
        if row is None:
            return _not_found(order_id)
        payload = row.payload
        if body.get("marketplaceId") != payload.get("MarketplaceId"):
            return _invalid("marketplaceId does not match the order's marketplace")
        package_id = f"{order_id}:{reference}"
        existing = (
            SandboxShipment.objects.select_for_update()
            .filter(store=store, package_id=package_id)
            .first()
        )
        if existing is not None:
            if existing.payload.get("packageDetail") == package:
                return HttpResponse(status=204)  # the same confirmation again: nothing to do
            if _item_counts(existing.payload["packageDetail"]["orderItems"]) != wanted:
                return _invalid(
                    "packageReferenceId already used for this order",
                    f"Package {reference} was confirmed with other items.",
                )
            # The same package again with other details: an edit (carrier, tracking, date).
            _edit(existing, body)
            return HttpResponse(status=204)
        if payload.get("FulfillmentChannel") == "AFN":
            return _invalid("The order is fulfilled by Amazon and cannot be confirmed")
        if row.status not in ("Unshipped", "PartiallyShipped"):
            return _invalid(f"Order status {row.status} does not allow shipment confirmation")
        items = {str(item["OrderItemId"]): item for item in payload["OrderItems"]}
        for item_id, quantity in wanted.items():
            item = items.get(item_id)
            if item is None:
                return _invalid(f"Invalid orderItemId {item_id} for order {order_id}")
            left = int(item["QuantityOrdered"]) - int(item.get("QuantityShipped") or 0)
            if quantity > left:
                return _invalid(
                    f"Quantity {quantity} for orderItemId {item_id} exceeds the {left} unshipped"
                )
        _confirm(store, row, wanted, body, now=_now())
    return HttpResponse(status=204)


def _confirm(
    store: SandboxStore, row: SandboxOrder, wanted: dict[str, int], body: dict, *, now: datetime
) -> SandboxShipment:
    """Record a validated shipment confirmation on the locked order `row`: the items' shipped
    quantities grow, the order moves to PartiallyShipped/Shipped, the package is kept."""
    payload = row.payload
    package = body["packageDetail"]
    items = {str(item["OrderItemId"]): item for item in payload["OrderItems"]}
    for item_id, quantity in wanted.items():
        items[item_id]["QuantityShipped"] = (
            int(items[item_id].get("QuantityShipped") or 0) + quantity
        )
    shipped = sum(int(i.get("QuantityShipped") or 0) for i in payload["OrderItems"])
    ordered = sum(int(i["QuantityOrdered"]) for i in payload["OrderItems"])
    payload["NumberOfItemsShipped"] = shipped
    payload["NumberOfItemsUnshipped"] = ordered - shipped
    payload["OrderStatus"] = "Shipped" if shipped >= ordered else "PartiallyShipped"
    payload["LastUpdateDate"] = amazon_datetime(now)
    _save(row, payload)
    return SandboxShipment.objects.create(
        store=store,
        order_id=row.order_id,
        package_id=f"{row.order_id}:{package['packageReferenceId']}",
        tracking_number=str(package["trackingNumber"]),
        provider_id=str(package["carrierCode"]),
        line_ids=list(wanted),
        payload={"AmazonOrderId": row.order_id, **body},
    )


def _item_counts(order_items: list) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entry in order_items:
        key = str(entry["orderItemId"])
        counts[key] = counts.get(key, 0) + int(entry["quantity"])
    return counts


def _edit(shipment: SandboxShipment, body: dict) -> None:
    """A confirmed package sent again under its packageReferenceId with the same items: its
    other details are replaced, as Amazon's guide says ("the other shipment details are
    edited"); quantities shipped do not change. `ship_requests` counts the edits too."""
    package = body["packageDetail"]
    shipment.tracking_number = str(package["trackingNumber"])
    shipment.provider_id = str(package["carrierCode"])
    shipment.payload = {"AmazonOrderId": shipment.order_id, **body}
    shipment.ship_requests += 1
    shipment.save()


def _save(row: SandboxOrder, payload: dict) -> None:
    """Store `payload` on `row`, deriving the indexed columns from it (one source of truth)."""
    row.payload = payload
    row.status = payload["OrderStatus"]
    row.created = _parse_date(payload["PurchaseDate"])
    row.updated = _parse_date(payload["LastUpdateDate"])
    row.save()


# --- listings ---------------------------------------------------------------------------------


def _product(store: SandboxStore, sku: str) -> SandboxProduct | None:
    """The listing for an Amazon SKU: by seller SKU first, else by sku_id."""
    products = SandboxProduct.objects.filter(store=store).order_by("pk")
    return products.filter(seller_sku=sku).first() or products.filter(sku_id=sku).first()


def _listing_issue(code: str, message: str, attribute: str = "") -> dict:
    issue = {
        "code": code,
        "message": message,
        "severity": "ERROR",
        "categories": ["INVALID_ATTRIBUTE"] if attribute else [],
    }
    if attribute:
        issue["attributeNames"] = [attribute]
    return issue


def _asin(product: SandboxProduct) -> str:
    digest = hashlib.sha1(f"{product.store_id}:{product.sku_id}".encode()).hexdigest()
    return "B0" + digest[:8].upper()


@csrf_exempt
def listings_item(request: HttpRequest, seller_id: str, sku: str) -> HttpResponse:
    if request.method == "GET":
        return get_listings_item(request, seller_id=seller_id, sku=sku)
    if request.method == "PATCH":
        return patch_listings_item(request, seller_id=seller_id, sku=sku)
    return _method_not_allowed()


def _listing_checks(request, store, seller_id) -> JsonResponse | None:
    if seller_id != store.shop_key:
        return _errors(403, "Unauthorized", DENIED, "The sellerId is not the authorized seller.")
    marketplaces = [m for m in request.GET.get("marketplaceIds", "").split(",") if m]
    if not marketplaces:
        return _invalid("Missing required 'marketplaceIds' parameter")
    if marketplace_for(store) not in marketplaces:
        return _invalid("Invalid marketplaceIds")
    return None


@operation("getListingsItem")
def get_listings_item(request, store: SandboxStore, *, seller_id: str, sku: str) -> HttpResponse:
    refused = _listing_checks(request, store, seller_id)
    if refused is not None:
        return refused
    product = _product(store, sku)
    if product is None:
        return _errors(404, "NOT_FOUND", f"SKU '{sku}' not found in marketplace")
    included = set(request.GET.get("includedData", "summaries").split(","))
    item: dict = {"sku": sku}
    if "summaries" in included:
        item["summaries"] = [
            {
                "marketplaceId": marketplace_for(store),
                "asin": _asin(product),
                "productType": "PRODUCT",
                "conditionType": "new_new",
                "status": ["BUYABLE"] if product.quantity > 0 else ["DISCOVERABLE"],
                "itemName": product.title,
                "createdDate": amazon_datetime(store.created_at),
                "lastUpdatedDate": amazon_datetime(product.updated),
            }
        ]
    if "fulfillmentAvailability" in included:
        item["fulfillmentAvailability"] = [
            {"fulfillmentChannelCode": "DEFAULT", "quantity": product.quantity}
        ]
    if "offers" in included:
        item["offers"] = [
            {
                "marketplaceId": marketplace_for(store),
                "offerType": "B2C",
                "price": {
                    "currencyCode": CURRENCIES.get(store.region, "USD"),
                    "amount": str(product.price),
                },
            }
        ]
    if "issues" in included:
        item["issues"] = []
    return JsonResponse(item)


@operation("patchListingsItem")
def patch_listings_item(request, store: SandboxStore, *, seller_id: str, sku: str) -> HttpResponse:
    refused = _listing_checks(request, store, seller_id)
    if refused is not None:
        return refused
    try:
        body = json.loads(request.body or b"")
    except ValueError:
        return _invalid("Request body is not valid JSON")
    if not isinstance(body, dict) or not body.get("productType"):
        return _invalid("Missing required 'productType'")
    patches = body.get("patches")
    if not isinstance(patches, list) or not patches:
        return _invalid("Missing required 'patches'")
    submission = {"sku": sku, "submissionId": uuid.uuid4().hex, "issues": []}
    product = _product(store, sku)
    if product is None:
        return JsonResponse(
            {
                **submission,
                "status": "INVALID",
                "issues": [
                    _listing_issue(
                        "4000001",
                        f"The SKU '{sku}' does not match any listing of this seller; create the "
                        "listing before patching it.",
                    )
                ],
            }
        )
    quantity = None
    for index, patch in enumerate(patches):
        if not isinstance(patch, dict) or patch.get("op") not in (
            "add",
            "replace",
            "merge",
            "delete",
        ):
            return _invalid(f"patches[{index}].op is not a JSON Patch operation")
        if patch.get("path") != "/attributes/fulfillment_availability":
            continue  # other attributes are accepted and not modelled
        if patch["op"] == "delete":
            quantity = 0
            continue
        for entry in patch.get("value") or []:
            if not isinstance(entry, dict):
                return _invalid(f"patches[{index}].value must hold objects")
            if entry.get("fulfillment_channel_code", "DEFAULT") != "DEFAULT":
                continue  # Amazon-fulfilled channels are Amazon's to count
            value = entry.get("quantity")
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                return JsonResponse(
                    {
                        **submission,
                        "status": "INVALID",
                        "issues": [
                            _listing_issue(
                                "90244",
                                "The value for 'fulfillment_availability.quantity' must be a "
                                f"whole number of 0 or more; {value!r} was supplied.",
                                "fulfillment_availability",
                            )
                        ],
                    }
                )
            quantity = value
    if request.GET.get("mode") == "VALIDATION_PREVIEW":
        return JsonResponse({**submission, "status": "VALID"})
    if quantity is not None:
        SandboxProduct.objects.filter(pk=product.pk).update(
            quantity=quantity, version=F("version") + 1, updated=timezone.now()
        )
    return JsonResponse({**submission, "status": "ACCEPTED"})


urlpatterns = [
    path("auth/o2/token", lwa_token, name="sandbox-amazon-lwa-token"),
    path("orders/v0/orders", orders, name="sandbox-amazon-orders"),
    path("orders/v0/orders/<str:order_id>", order, name="sandbox-amazon-order"),
    path("orders/v0/orders/<str:order_id>/orderItems", order_items, name="sandbox-amazon-items"),
    path(
        "orders/v0/orders/<str:order_id>/shipmentConfirmation",
        shipment_confirmation,
        name="sandbox-amazon-confirm-shipment",
    ),
    path(
        "listings/2021-08-01/items/<str:seller_id>/<path:sku>",
        listings_item,
        name="sandbox-amazon-listings-item",
    ),
]


# --- loading -----------------------------------------------------------------------------------


def _fail(field: str, problem: str):
    raise SandboxInputError(f"{field}: {problem}")


def _check_money(value, field: str) -> None:
    if not isinstance(value, dict) or not value.get("CurrencyCode"):
        _fail(field, 'expected {"CurrencyCode": "USD", "Amount": "12.34"}')
    try:
        Decimal(str(value.get("Amount")))
    except InvalidOperation:
        _fail(f"{field}.Amount", f"{value.get('Amount')!r} is not a decimal amount")


def _check_date(payload: dict, field: str, *, required: bool) -> None:
    if field not in payload:
        if required:
            _fail(field, "required")
        return
    try:
        _parse_date(str(payload[field]))
    except ValueError:
        _fail(field, f"{payload[field]!r} is not an ISO 8601 date")


def validate_order(payload) -> None:
    """Raise `SandboxInputError("<field>: <problem>")` unless `payload` is an order in the
    stored shape: the getOrder payload plus "OrderItems" (getOrderItems' item objects)."""
    if not isinstance(payload, dict):
        _fail("order", "expected a JSON object")
    order_id = payload.get("AmazonOrderId")
    if not isinstance(order_id, str) or not ORDER_ID_RE.match(order_id):
        _fail("AmazonOrderId", "required, in Amazon's 3-7-7 form like 112-1234567-1234567")
    _check_date(payload, "PurchaseDate", required=True)
    _check_date(payload, "LastUpdateDate", required=True)
    _check_date(payload, "EarliestShipDate", required=False)
    _check_date(payload, "LatestShipDate", required=False)
    if payload.get("OrderStatus") not in ORDER_STATUSES:
        _fail("OrderStatus", f"must be one of {', '.join(sorted(ORDER_STATUSES))}")
    if payload.get("FulfillmentChannel", "MFN") not in ("MFN", "AFN"):
        _fail("FulfillmentChannel", "must be MFN or AFN")
    if "OrderTotal" in payload:
        _check_money(payload["OrderTotal"], "OrderTotal")
    if "ShippingAddress" in payload and not isinstance(payload["ShippingAddress"], dict):
        _fail("ShippingAddress", "expected an object")
    items = payload.get("OrderItems")
    if not isinstance(items, list) or not items:
        _fail("OrderItems", "a non-empty list of order items is required")
    seen = set()
    for position, item in enumerate(items):
        prefix = f"OrderItems[{position}]"
        if not isinstance(item, dict):
            _fail(prefix, "expected an object")
        item_id = item.get("OrderItemId")
        if not item_id or not isinstance(item_id, str):
            _fail(f"{prefix}.OrderItemId", "required (a string)")
        if item_id in seen:
            _fail(f"{prefix}.OrderItemId", f"{item_id} appears twice")
        seen.add(item_id)
        if not item.get("ASIN"):
            _fail(f"{prefix}.ASIN", "required")
        if "QuantityOrdered" not in item:
            _fail(f"{prefix}.QuantityOrdered", "required")
        for field in ("QuantityOrdered", "QuantityShipped"):
            value = item.get(field, 0)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                _fail(f"{prefix}.{field}", "must be a whole number, 0 or more")
        if item.get("QuantityShipped", 0) > item["QuantityOrdered"]:
            _fail(f"{prefix}.QuantityShipped", "more than QuantityOrdered")
        for field in MONEY_FIELDS:
            if field in item:
                _check_money(item[field], f"{prefix}.{field}")


def _with_marketplace(store: SandboxStore, payload: dict) -> dict:
    return {**payload, "MarketplaceId": payload.get("MarketplaceId") or marketplace_for(store)}


# --- the sandbox platform -----------------------------------------------------------------------


class AmazonSandbox(SandboxPlatform):
    """Amazon's side of a seller account: orders, listings, shipments, cancel requests."""

    platform = "amazon"

    def listing_sku_id(self, *, listing) -> str:
        # The Listings API is keyed by the seller SKU, so that is the platform's id here.
        return listing.sku.code

    def new_shop_key(self, *, shop) -> str:
        """A merchant token like Amazon's seller ids ("A" + 13 upper-case letters/digits)."""
        number, digits = 7495000000 + shop.pk, ""
        alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
        while number:
            number, rest = divmod(number, 36)
            digits = alphabet[rest] + digits
        return "A" + digits.rjust(13, "0")

    def store_defaults(self) -> dict:
        """LWA-shaped credentials, Amazon's one-hour access token, and rate scale 1.0 (Amazon's
        real per-operation usage plans; `sandbox_connect(rate_per_second=...)` multiplies them)."""
        return {
            "app_key": "amzn1.application-oa2-client." + secrets.token_hex(16),
            "access_token": new_secret("Atza|"),
            "access_token_expires_at": timezone.now() + timedelta(seconds=ACCESS_TOKEN_SECONDS),
            "refresh_token": new_secret("Atzr|"),
            "warehouse_id": "DEFAULT",
            "rate_per_second": 1.0,
        }

    # --- orders ---------------------------------------------------------------------------

    def generate_order(
        self,
        *,
        store: SandboxStore,
        rng: random.Random,
        products: list[SandboxProduct],
        now: datetime,
        fresh: bool = False,
    ) -> dict:
        """A paid (Unshipped), seller-fulfilled order as getOrder returns it, with its items
        under "OrderItems"."""
        now = now.astimezone(UTC).replace(microsecond=0)
        currency = CURRENCIES.get(store.region, "USD")
        buyer = fake_buyer(rng)
        number = next_number(store)
        order_id = (
            f"{rng.choice(['111', '112', '113', '114'])}-{rng.randint(0, 9999999):07d}-"
            f"{number % 10_000_000:07d}"
        )
        purchased = now - timedelta(minutes=rng.randint(1, 40))
        is_prime = rng.random() < 0.4
        chosen = order_products(rng, products)
        if not chosen:
            chosen = [
                SandboxProduct(
                    store=store,
                    product_id="0",
                    sku_id=f"AMZ-{number}",
                    seller_sku=f"AMZ-{number}",
                    title="Sample item",
                    price=Decimal("19.99"),
                )
            ]
        tax_rate = Decimal(rng.choice(["0", "0.0625", "0.0725", "0.08", "0.0825", "0.0875"]))
        items, total = [], Decimal(0)
        for position, product in enumerate(chosen):
            quantity = rng.choice([1, 1, 1, 1, 2, 2, 3])
            price = (Decimal(product.price or "19.99") * quantity).quantize(CENT)
            discount = (
                (price * Decimal("0.10")).quantize(CENT) if rng.random() < 0.2 else Decimal(0)
            )
            shipping = Decimal(0) if is_prime or position else Decimal("4.99")
            item_tax = ((price - discount) * tax_rate).quantize(CENT)
            shipping_tax = (shipping * tax_rate).quantize(CENT)
            total += price - discount + item_tax + shipping + shipping_tax
            items.append(
                {
                    "ASIN": _asin(product),
                    "SellerSKU": product.seller_sku or product.sku_id,
                    "OrderItemId": f"{number % 10**7:07d}{rng.randint(0, 9999999):07d}{position}",
                    "Title": product.title or "Item",
                    "QuantityOrdered": quantity,
                    "QuantityShipped": 0,
                    "ProductInfo": {"NumberOfItems": "1"},
                    "ItemPrice": _money(price, currency),
                    "ItemTax": _money(item_tax, currency),
                    "ShippingPrice": _money(shipping, currency),
                    "ShippingTax": _money(shipping_tax, currency),
                    "ShippingDiscount": _money(Decimal(0), currency),
                    "ShippingDiscountTax": _money(Decimal(0), currency),
                    "PromotionDiscount": _money(discount, currency),
                    "PromotionDiscountTax": _money(Decimal(0), currency),
                    "PromotionIds": [f"PLM-{rng.randint(1000, 9999)}"] if discount else [],
                    "IsGift": "false",
                    "ConditionId": "New",
                    "ConditionSubtypeId": "New",
                    "IsTransparency": False,
                    "SerialNumberRequired": False,
                    "BuyerRequestedCancel": {
                        "IsBuyerRequestedCancel": "false",
                        "BuyerCancelReason": "",
                    },
                }
            )
        latest_ship = (purchased + timedelta(days=2)).replace(hour=6, minute=59, second=59)
        address = {
            "Name": buyer.name,
            "AddressLine1": buyer.line1,
            "City": buyer.city,
            "StateOrRegion": buyer.state,
            "PostalCode": buyer.postal_code,
            "CountryCode": buyer.country,
            "Phone": buyer.phone,
            "AddressType": "Residential",
        }
        if buyer.line2:
            address["AddressLine2"] = buyer.line2
        units = sum(item["QuantityOrdered"] for item in items)
        return {
            "AmazonOrderId": order_id,
            "SellerOrderId": order_id,
            "PurchaseDate": amazon_datetime(purchased),
            "LastUpdateDate": amazon_datetime(now),
            "OrderStatus": "Unshipped",
            "FulfillmentChannel": "MFN",
            "SalesChannel": "Amazon.com",
            "ShipServiceLevel": "Std US D2D Dom",
            "ShipmentServiceLevelCategory": "Standard",
            "OrderTotal": _money(total, currency),
            "NumberOfItemsShipped": 0,
            "NumberOfItemsUnshipped": units,
            "PaymentMethod": "Other",
            "PaymentMethodDetails": ["Standard"],
            "MarketplaceId": marketplace_for(store),
            "OrderType": "StandardOrder",
            "EarliestShipDate": amazon_datetime(purchased),
            "LatestShipDate": amazon_datetime(latest_ship),
            "IsBusinessOrder": rng.random() < 0.05,
            "IsPrime": is_prime,
            "IsPremiumOrder": False,
            "IsGlobalExpressEnabled": False,
            "IsReplacementOrder": False,
            "IsSoldByAB": False,
            "IsISPU": False,
            "IsAccessPointOrder": False,
            "HasRegulatedItems": False,
            "ShippingAddress": address,
            "BuyerInfo": {
                "BuyerEmail": f"{secrets.token_hex(8)}@marketplace.amazon.com",
                "BuyerName": buyer.name,
            },
            "OrderItems": items,
        }

    def compose_order(self, *, store: SandboxStore, draft: OrderDraft) -> dict:
        """`draft` as getOrder's payload plus "OrderItems": Unshipped (Pending when unpaid),
        seller-fulfilled, the shipping fee on the first item, `LatestShipDate` from
        `draft.ship_by`. Amazon charges at purchase, so a paid draft's payment time is its
        PurchaseDate; it has no buyer notes."""
        currency = CURRENCIES.get(store.region, "USD")
        items, total = [], Decimal(0)
        for index, line in enumerate(draft.lines):
            product = line.product
            price = line.unit_price * line.quantity
            shipping = draft.shipping_fee if index == 0 else Decimal(0)
            total += price - line.discount + line.tax + shipping
            items.append(
                {
                    "ASIN": product.product_id
                    if product.product_id.startswith("B0")
                    else _asin(product),
                    "SellerSKU": product.seller_sku or product.sku_id,
                    "OrderItemId": f"{draft.number:07d}{index:07d}",
                    "Title": product.title or "Item",
                    "QuantityOrdered": line.quantity,
                    "QuantityShipped": 0,
                    "ProductInfo": {"NumberOfItems": "1"},
                    "ItemPrice": _money(price, currency),
                    "ItemTax": _money(line.tax, currency),
                    "ShippingPrice": _money(shipping, currency),
                    "ShippingTax": _money(Decimal(0), currency),
                    "ShippingDiscount": _money(Decimal(0), currency),
                    "ShippingDiscountTax": _money(Decimal(0), currency),
                    "PromotionDiscount": _money(line.discount, currency),
                    "PromotionDiscountTax": _money(Decimal(0), currency),
                    "PromotionIds": [f"PLM-{draft.number}"] if line.discount else [],
                    "IsGift": "false",
                    "ConditionId": "New",
                    "ConditionSubtypeId": "New",
                    "IsTransparency": False,
                    "SerialNumberRequired": False,
                    "BuyerRequestedCancel": {
                        "IsBuyerRequestedCancel": "false",
                        "BuyerCancelReason": "",
                    },
                }
            )
        address = draft.address
        shipping_address = {
            "Name": address.name,
            "AddressLine1": address.line1,
            "City": address.city,
            "StateOrRegion": address.state,
            "PostalCode": address.postal_code,
            "CountryCode": address.country,
            "Phone": address.phone,
            "AddressType": "Residential",
        }
        if address.line2:
            shipping_address["AddressLine2"] = address.line2
        units = sum(line.quantity for line in draft.lines)
        payload = {
            "AmazonOrderId": draft.order_id,
            "SellerOrderId": draft.order_id,
            "PurchaseDate": amazon_datetime(draft.placed_at),
            "LastUpdateDate": amazon_datetime(draft.updated_at),
            "OrderStatus": "Unshipped" if draft.paid_at else "Pending",
            "FulfillmentChannel": "MFN",
            "SalesChannel": "Amazon.com",
            "ShipServiceLevel": "Std US D2D Dom",
            "ShipmentServiceLevelCategory": "Standard",
            "OrderTotal": _money(total, currency),
            "NumberOfItemsShipped": 0,
            "NumberOfItemsUnshipped": units,
            "PaymentMethod": "Other",
            "PaymentMethodDetails": ["Standard"],
            "MarketplaceId": marketplace_for(store),
            "OrderType": "Preorder" if draft.presale else "StandardOrder",
            "EarliestShipDate": amazon_datetime(draft.placed_at),
            "IsBusinessOrder": False,
            "IsPrime": False,
            "IsPremiumOrder": False,
            "IsGlobalExpressEnabled": False,
            "IsReplacementOrder": False,
            "IsSoldByAB": False,
            "IsISPU": False,
            "IsAccessPointOrder": False,
            "HasRegulatedItems": False,
            "ShippingAddress": shipping_address,
            "BuyerInfo": {"BuyerEmail": draft.buyer_email, "BuyerName": draft.buyer_name},
            "OrderItems": items,
        }
        if draft.ship_by is not None:
            payload["LatestShipDate"] = amazon_datetime(draft.ship_by)
        return payload

    def ship_order(
        self,
        *,
        store: SandboxStore,
        order: SandboxOrder,
        tracking_number: str,
        carrier: str,
        at: datetime,
    ) -> SandboxShipment:
        """One package with every unshipped item, as confirmShipment records it."""
        with transaction.atomic():
            row = SandboxOrder.objects.select_for_update().get(pk=order.pk)
            if row.status not in ("Unshipped", "PartiallyShipped"):
                raise SandboxInputError(f"order {row.order_id} is {row.status}: it cannot ship")
            wanted = {
                str(item["OrderItemId"]): int(item["QuantityOrdered"])
                - int(item.get("QuantityShipped") or 0)
                for item in row.payload["OrderItems"]
            }
            wanted = {item_id: quantity for item_id, quantity in wanted.items() if quantity}
            reference = 1 + store.shipments.filter(order_id=row.order_id).count()
            body = {
                "marketplaceId": row.payload.get("MarketplaceId"),
                "packageDetail": {
                    "packageReferenceId": str(reference),
                    "carrierCode": CARRIER_NAMES.get(carrier, "Other"),
                    "trackingNumber": tracking_number,
                    "shipDate": amazon_datetime(at),
                    "orderItems": [
                        {"orderItemId": item_id, "quantity": quantity}
                        for item_id, quantity in wanted.items()
                    ],
                },
            }
            return _confirm(store, row, wanted, body, now=at.replace(microsecond=0))

    def advance_order(
        self, *, store: SandboxStore, order: SandboxOrder, status: str, at: datetime
    ) -> bool:
        """Orders v0 stops at Shipped: what happens on the road is the carrier's to tell."""
        return False

    def cancel_order(self, *, store: SandboxStore, order: SandboxOrder, at: datetime) -> None:
        """Canceled before it shipped (the buyer's request granted, or never paid)."""
        with transaction.atomic():
            row = SandboxOrder.objects.select_for_update().get(pk=order.pk)
            if row.status not in CANCELLABLE:
                raise SandboxInputError(f"order {row.order_id} is {row.status}: too late")
            payload = row.payload
            payload["OrderStatus"] = "Canceled"
            payload["LastUpdateDate"] = amazon_datetime(at)
            _save(row, payload)

    def load_order(self, *, store: SandboxStore, payload: dict) -> SandboxOrder:
        """Validate an order in the stored shape (getOrder payload + "OrderItems") and insert
        or replace it. Errors name the field: `OrderItems[1].QuantityOrdered: ...`."""
        validate_order(payload)
        with transaction.atomic():
            row = SandboxOrder.objects.select_for_update().filter(
                store=store, order_id=payload["AmazonOrderId"]
            ).first() or SandboxOrder(store=store, order_id=payload["AmazonOrderId"])
            _save(row, _with_marketplace(store, payload))
        return row

    def load_orders(self, *, store: SandboxStore, payloads: list) -> int:
        """Validate every order, then upsert them all (all or nothing). Errors name the order's
        index in the list and the field: `order 3: OrderItems[1].QuantityOrdered: ...`."""
        seen: dict[str, int] = {}
        for index, payload in enumerate(payloads):
            try:
                validate_order(payload)
            except SandboxInputError as exc:
                raise SandboxInputError(f"order {index}: {exc}") from None
            order_id = payload["AmazonOrderId"]
            if order_id in seen:
                raise SandboxInputError(
                    f"order {index}: AmazonOrderId: {order_id} is also order {seen[order_id]}"
                )
            seen[order_id] = index
        rows = []
        for payload in payloads:
            payload = _with_marketplace(store, payload)
            rows.append(
                SandboxOrder(
                    store=store,
                    order_id=payload["AmazonOrderId"],
                    status=payload["OrderStatus"],
                    created=_parse_date(payload["PurchaseDate"]),
                    updated=_parse_date(payload["LastUpdateDate"]),
                    payload=payload,
                )
            )
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
        """orders: getOrder's payload plus "OrderItems" as getOrderItems returns them;
        inventory: {sku, fulfillmentAvailability} per listing; shipments: each confirmation
        body with its AmazonOrderId; cancellations: buyer cancel requests."""
        if what == "orders":
            return [
                {**order_view(row.payload), "OrderItems": items_view(row.payload)}
                for row in store.orders.order_by("updated", "order_id")
            ]
        if what == "inventory":
            return [
                {
                    "sku": product.seller_sku or product.sku_id,
                    "skuId": product.sku_id,
                    "fulfillmentAvailability": [
                        {"fulfillmentChannelCode": "DEFAULT", "quantity": product.quantity}
                    ],
                }
                for product in store.products.order_by("pk")
            ]
        if what == "shipments":
            return [row.payload for row in store.shipments.order_by("pk")]
        if what == "cancellations":
            return [row.payload for row in store.cancellations.order_by("pk")]
        raise SandboxInputError(f"nothing called {what!r} to show")

    def request_cancellation(
        self, *, store: SandboxStore, order: SandboxOrder, at: datetime | None = None
    ) -> None:
        """The buyer asks to cancel (now, or at `at`): Amazon flags every item with
        BuyerRequestedCancel (there is no cancellation object in Orders v0) and the order's
        LastUpdateDate moves.

        Whether a buyer request bumps LastUpdateDate on the real API is not documented (an
        "update" is a status change there); the sandbox bumps it so polling can see it."""
        now = at.replace(microsecond=0) if at is not None else _now()
        with transaction.atomic():
            row = SandboxOrder.objects.select_for_update().get(pk=order.pk)
            payload = row.payload
            if row.status not in CANCELLABLE:
                raise SandboxInputError(
                    f"order {row.order_id} is {row.status}: buyers can ask to cancel only "
                    "before it ships"
                )
            if any(
                (item.get("BuyerRequestedCancel") or {}).get("IsBuyerRequestedCancel") == "true"
                for item in payload["OrderItems"]
            ):
                return  # asked already
            reason = random.Random(row.order_id).choice(CANCEL_REASONS)
            for item in payload["OrderItems"]:
                item["BuyerRequestedCancel"] = {
                    "IsBuyerRequestedCancel": "true",
                    "BuyerCancelReason": reason,
                }
            payload["LastUpdateDate"] = amazon_datetime(now)
            _save(row, payload)
            SandboxCancellation.objects.update_or_create(
                store=store,
                cancel_id=f"{row.order_id}:buyer",
                defaults={
                    "order_id": row.order_id,
                    "status": "BuyerRequestedCancel",
                    "payload": {
                        "AmazonOrderId": row.order_id,
                        "IsBuyerRequestedCancel": "true",
                        "BuyerCancelReason": reason,
                        "OrderItemIds": [item["OrderItemId"] for item in payload["OrderItems"]],
                        "RequestedAt": amazon_datetime(now),
                    },
                    "created": now,
                    "updated": now,
                },
            )
        order.refresh_from_db()

    def send_webhook(self, *, store: SandboxStore, topic: str, data: dict) -> int | None:
        # SP-API has no HTTP webhooks: notifications go to an SQS queue or EventBridge, which
        # tkerp does not consume, so there is nothing to POST.
        return None
