"""Amazon Selling Partner API (SP-API) connector: Orders v0 and Listings Items 2021-08-01.

Auth is Login with Amazon (LWA): a long-lived refresh token is exchanged for a one-hour access
token, sent as `x-amz-access-token` (no SigV4 since 2023-10-02). The connector refreshes it
before it expires and, once, when the API answers 401/403 about the token; the new pair is
persisted at once so other workers pick it up.

Choices worth knowing (see shared/platform-apis.md §3):

- **Rate limits.** SP-API limits each *operation* per seller+app with a token bucket (getOrders
  0.0167/s burst 20, getOrder/getOrderItems 0.5/s burst 30, confirmShipment 2/s burst 10,
  patchListingsItem 5/s burst 5, getListingsItem 5/s burst 10). The shared client's per-shop
  bucket (`rate_limit` below) is only an overall ceiling; each call also takes a token from a
  per-operation bucket holding Amazon's real figures, acquired inside `build` so every retry pays
  again. `credentials.extra["rate_scale"]` multiplies every figure (rates and bursts): sellers
  with a raised usage plan, or the sandbox run fast in tests. A 429 without `Retry-After` is
  given one computed from `x-amzn-RateLimit-Limit` when Amazon sends it.
- **Items cost one call per order.** getOrders has no items, and getOrderItems allows 0.5/s after
  a burst of 30: a full page of 100 orders takes about 140 s to enrich. That is Amazon's real
  cost; the sync's one-minute poll normally sees a handful of orders.
- **Incremental window.** `LastUpdatedAfter`/`LastUpdatedBefore` are both inclusive, and
  `LastUpdatedBefore` must be at least two minutes in the past, so the upper bound is clamped
  to `now - SETTLE`. The page cannot say so: a sync must advance its cursor from the orders'
  `updated_at`, not from the `updated_until` it asked for. Follow-up pages send `NextToken` with
  `MarketplaceIds` only.
- **SKU identity.** `PlatformLine.platform_sku_id` is the SellerSKU, not the ASIN: the Listings
  API (stock pushes) is keyed by seller SKU, so a listing's `platform_sku_id` for Amazon is its
  seller SKU. The ASIN stays in `raw`.
- **PII.** Name, street and phone need a Restricted Data Token. This connector does not fetch
  one yet; when they are missing the address is returned with `masked=True`.
- **FBA (AFN) orders** are Amazon's to ship: mapped as usual, address masked, with a
  `seller_note` saying so. `raw["FulfillmentChannel"] == "AFN"` identifies them.
- **Buyer cancellation requests** have no API of their own in Orders v0: they appear on order
  items as `BuyerRequestedCancel` and are mapped to `cancel_requested`. There is no API to
  answer them (the seller cancels or ships), so `answer_cancellation` keeps the base refusal.
- **No webhooks.** SP-API notifications are delivered through Amazon SQS / EventBridge, never by
  HTTP POST to us, so `verify_webhook` is always False and `parse_webhook` refuses.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import partial
from urllib.parse import quote, urlsplit

import httpx
from django.utils import timezone

from shops.credentials import credentials_store_tokens
from shops.platforms.base import (
    ZERO,
    Connector,
    InventoryLevel,
    InventoryResult,
    InventoryUpdate,
    OrderPage,
    PlatformAddress,
    PlatformAuthError,
    PlatformLine,
    PlatformNotFound,
    PlatformOrder,
    PlatformRequestError,
    PlatformResponseError,
    PlatformTokenExpired,
    ShipRequest,
    ShipResult,
    TokenSet,
    UnmappedOrder,
    WebhookEvent,
    WebhookVerificationError,
    orders_map,
    parse_iso_datetime,
    unmapped_raise,
)
from shops.platforms.http import SANDBOX_HOST, RateLimit, bucket_for, json_bytes
from tkerp.outbound import safe_media_type

LWA_BASE_URL = "https://api.amazon.com"
LWA_TOKEN_PATH = "/auth/o2/token"
USER_AGENT = "tkerp/0.1 (Language=Python)"

#: Marketplace ids by our shop region (the defaults when `extra["marketplace_id"]` is unset).
MARKETPLACES = {
    "US": "ATVPDKIKX0DER",
    "CA": "A2EUQ1WTGCTBG2",
    "MX": "A1AM78C64UM0Y8",
    "BR": "A2Q3Y263D00KWC",
    "GB": "A1F83G8C2ARO7P",
    "UK": "A1F83G8C2ARO7P",
    "DE": "A1PA6795UKMFR9",
    "FR": "A13V1IB3VIYZZH",
    "IT": "APJ6JRA9NG5V4",
    "ES": "A1RKKUPIHCS9HS",
    "JP": "A1VC38T7YXB528",
    "AU": "A39IBJ37TRP1C6",
}
DEFAULT_MARKETPLACE = MARKETPLACES["US"]

#: SP-API's three regional hosts, and which serves each shop region (Amazon's endpoint table).
SP_API_HOSTS = {
    "na": "https://sellingpartnerapi-na.amazon.com",
    "eu": "https://sellingpartnerapi-eu.amazon.com",
    "fe": "https://sellingpartnerapi-fe.amazon.com",
}
REGION_ENDPOINTS = {
    **dict.fromkeys(("US", "CA", "MX", "BR"), "na"),
    **dict.fromkeys(
        ("GB", "UK", "DE", "FR", "IT", "ES", "NL", "SE", "PL", "BE", "IE", "TR", "EG", "SA"),
        "eu",
    ),
    **dict.fromkeys(("AE", "IN", "ZA"), "eu"),
    **dict.fromkeys(("JP", "AU", "SG"), "fe"),
}

#: Amazon's default usage plans (rate per second, burst) for the operations we call.
OPERATION_LIMITS = {
    "getOrders": RateLimit(per_second=0.0167, burst=20),
    "getOrder": RateLimit(per_second=0.5, burst=30),
    "getOrderItems": RateLimit(per_second=0.5, burst=30),
    "confirmShipment": RateLimit(per_second=2.0, burst=10),
    "getListingsItem": RateLimit(per_second=5.0, burst=10),
    "patchListingsItem": RateLimit(per_second=5.0, burst=5),
}

#: Refresh the access token this long before Amazon says it expires.
TOKEN_MARGIN = timedelta(seconds=60)
#: `LastUpdatedBefore` must be two minutes in the past; ten seconds more absorb clock skew.
SETTLE = timedelta(minutes=2, seconds=10)

#: Amazon's order statuses -> our coarse statuses. Pending orders are not paid yet (ingest keeps
#: them as new); Unfulfillable only happens to Amazon-fulfilled orders.
STATUS_MAP = {
    "PendingAvailability": "new",
    "Pending": "new",
    "Unshipped": "new",
    "Unfulfillable": "new",
    "PartiallyShipped": "new",  # the rest still to ship: open (see the TikTok connector's map)
    "Shipped": "shipped",
    "InvoiceUnconfirmed": "shipped",
    "Canceled": "cancelled",
}
UNPAID_STATUSES = {"Pending", "PendingAvailability"}

#: Our carrier codes -> Amazon's `carrierCode` values. Anything else is sent as "Other" with
#: `carrierName`, which Amazon requires in that case.
CARRIER_CODES = {
    "usps": "USPS",
    "ups": "UPS",
    "fedex": "FedEx",
    "dhl": "DHL",
    "dhl_ecommerce": "DHL eCommerce",
    "ontrac": "OnTrac",
    "lasership": "Lasership",
    "amazon": "Amazon Shipping",
    "amazon_shipping": "Amazon Shipping",
}

AFN_NOTE = "Fulfilled by Amazon (AFN): Amazon ships this order, not the seller."
UNFULFILLABLE_NOTE = "Amazon marks this order Unfulfillable: it cannot be fulfilled as ordered."


def amazon_datetime(value: datetime) -> str:
    """ISO 8601 in UTC with a Z, whole seconds (floored), as Amazon writes dates."""
    return value.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_amazon_datetime(value: str | None) -> datetime | None:
    """An aware UTC datetime from Amazon's ISO 8601 text (with Z or an offset)."""
    return parse_iso_datetime(value, platform="amazon")


def money(value: Mapping | None, *, field: str = "") -> Decimal:
    """The Amount of an SP-API Money object ({CurrencyCode, Amount}); absent means zero."""
    if not value or value.get("Amount") in (None, ""):
        return ZERO
    try:
        return Decimal(str(value["Amount"]))
    except (InvalidOperation, TypeError):
        where = f" in {field}" if field else ""
        raise PlatformResponseError(
            f"unparseable amount {value.get('Amount')!r}{where}", field=field, platform="amazon"
        ) from None


def is_true(value) -> bool:
    """Amazon sends some booleans as the strings "true"/"false"."""
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


class AmazonConnector(Connector):
    """One Amazon seller account (one marketplace) through SP-API."""

    platform = "amazon"
    default_base_url = SP_API_HOSTS["na"]
    #: The per-shop ceiling only: the fastest operation we call (listings, 5/s) and the largest
    #: burst (getOrder/getOrderItems, 30). The real per-operation limits live in
    #: OPERATION_LIMITS, so this never throttles below what Amazon allows.
    rate_limit = RateLimit(per_second=5.0, burst=30)
    page_size = 100

    @classmethod
    def partly_shipped(cls, platform_status: str) -> bool:
        return platform_status == "PartiallyShipped"

    def __init__(self, *, shop, credentials, http):
        super().__init__(shop=shop, credentials=credentials, http=http)
        extra = credentials.extra or {}
        self.marketplace_id = extra.get("marketplace_id") or MARKETPLACES.get(
            (shop.region or "US").upper(), DEFAULT_MARKETPLACE
        )
        self.seller_id = extra.get("seller_id") or shop.platform_shop_id
        self.product_type = extra.get("product_type") or "PRODUCT"
        self.rate_scale = float(extra.get("rate_scale") or 1.0)
        if self.rate_scale != 1.0 and not extra.get("rate_limit"):
            # Scale the shop-wide ceiling along with the operations it sits above.
            self.http.bucket = bucket_for(
                (self.platform, str(shop.pk)), self._scaled(self.rate_limit)
            )
        # Amazon's 429s may carry x-amzn-RateLimit-Limit but no Retry-After; derive one so the
        # shared client's backoff waits at least one token's worth.
        self.http.client.event_hooks["response"].append(_retry_after_from_rate_limit)

    # --- plumbing ---------------------------------------------------------------------------

    def _scaled(self, limit: RateLimit) -> RateLimit:
        return RateLimit(
            per_second=limit.per_second * self.rate_scale,
            burst=max(1, round(limit.burst * self.rate_scale)),
        )

    def _operation_bucket(self, operation: str):
        return bucket_for(
            (f"{self.platform}:{operation}", str(self.shop.pk)),
            self._scaled(OPERATION_LIMITS[operation]),
        )

    @classmethod
    def live_base_url(cls, *, shop, credentials) -> str:
        """SP-API's regional host for the shop's marketplace (North America by default, as
        the marketplace is)."""
        return SP_API_HOSTS[REGION_ENDPOINTS.get((shop.region or "US").upper(), "na")]

    @property
    def token_url(self) -> str:
        """The LWA token endpoint: Amazon's own, or the sandbox's next to its API. Not
        configurable: the call carries the app secret and the refresh token."""
        host = urlsplit(self.http.base_url).hostname or ""
        if host == SANDBOX_HOST:
            return self.http.base_url + LWA_TOKEN_PATH
        return LWA_BASE_URL + LWA_TOKEN_PATH

    def _token_is_fresh(self) -> bool:
        expires_at = self.credentials.access_token_expires_at
        if not self.credentials.access_token:
            return False
        # No expiry recorded (a token pasted by hand): trust it until Amazon says otherwise.
        return expires_at is None or expires_at - TOKEN_MARGIN > timezone.now()

    def _ensure_token(self) -> None:
        if not self._token_is_fresh():
            self._refresh_and_store()

    def _refresh_and_store(self) -> None:
        tokens = self.refresh_access_token()
        # Locked write of the pair; adopts a fresher token another worker stored meanwhile.
        credentials_store_tokens(credentials=self.credentials, tokens=tokens)

    def _request(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        params: dict | None = None,
        body: dict | None = None,
    ) -> httpx.Response:
        """Send one SP-API call; refresh the token first when due, and once more if Amazon
        rejects it; anything else is the typed error `_check` raised."""
        self._ensure_token()
        try:
            return self._send(operation, method, path, params=params, body=body)
        except PlatformTokenExpired:
            self._refresh_and_store()
        try:
            return self._send(operation, method, path, params=params, body=body)
        except PlatformTokenExpired as exc:
            # Refreshed and still refused: the grant is revoked or the role missing. A plain
            # auth error, so nobody loops on refreshing.
            raise PlatformAuthError(
                exc.message,
                code=exc.code,
                status=exc.status,
                request_id=exc.request_id,
                platform=self.platform,
            ) from exc

    def _send(self, operation, method, path, *, params=None, body=None) -> httpx.Response:
        bucket = self._operation_bucket(operation)
        content = None if body is None else json_bytes(body)

        def build() -> httpx.Request:
            bucket.acquire(self.http.sleep)
            headers = {
                "x-amz-access-token": self.credentials.access_token,
                "user-agent": USER_AGENT,
                "accept": "application/json",
            }
            if content is not None:
                headers["content-type"] = "application/json"
            return self.http.client.build_request(
                method, self.http.url(path), params=params, content=content, headers=headers
            )

        return self.http.send(build, check=self._check)

    def _check(self, response: httpx.Response) -> None:
        """Raise the typed error for an SP-API error response ({"errors": [...]})."""
        status = response.status_code
        if status < 400:
            return
        code, message = _first_error(response)
        kwargs = {
            "code": code,
            "status": status,
            "request_id": response.headers.get("x-amzn-RequestId", ""),
            "platform": self.platform,
        }
        if status in (401, 403):
            if status == 401 or _is_token_problem(message):
                raise PlatformTokenExpired(message, **kwargs)
            raise PlatformAuthError(message, **kwargs)
        if status == 404:
            raise PlatformNotFound(message, **kwargs)
        raise PlatformRequestError(message, **kwargs)

    def _payload(self, response: httpx.Response) -> dict:
        payload = self.response_json(response).get("payload")
        if not isinstance(payload, dict):
            raise PlatformResponseError("response has no payload object", platform=self.platform)
        return payload

    # --- auth -------------------------------------------------------------------------------

    def refresh_access_token(self) -> TokenSet:
        """Exchange the LWA refresh token for a new access token (valid one hour).

        Updates the in-memory credentials; the caller persists (`_refresh_and_store`)."""
        credentials = self.credentials
        if not credentials.refresh_token:
            raise PlatformAuthError("no LWA refresh token stored", platform=self.platform)
        form = {
            "grant_type": "refresh_token",
            "refresh_token": credentials.refresh_token,
            "client_id": credentials.app_key,
            "client_secret": credentials.app_secret,
        }
        url = self.token_url

        def build() -> httpx.Request:
            return self.http.client.build_request(
                "POST", url, data=form, headers={"user-agent": USER_AGENT}
            )

        def check(response: httpx.Response) -> None:
            if response.status_code < 400:
                return
            try:
                data = response.json()
            except ValueError:
                data = {}
            raise PlatformAuthError(
                str(data.get("error_description") or f"LWA refused ({response.status_code})"),
                code=str(data.get("error") or ""),
                status=response.status_code,
                platform=self.platform,
            )

        data = self.response_json(self.http.send(build, check=check))
        access_token = data.get("access_token")
        try:
            expires_in = int(data.get("expires_in") or 3600)
        except (TypeError, ValueError):
            expires_in = 3600
        if not access_token:
            raise PlatformResponseError("LWA answered without access_token", platform="amazon")
        tokens = TokenSet(
            access_token=access_token,
            access_token_expires_at=timezone.now() + timedelta(seconds=expires_in),
            # LWA echoes the (unchanged) refresh token; keep ours if it does not.
            refresh_token=data.get("refresh_token") or credentials.refresh_token,
            refresh_token_expires_at=credentials.refresh_token_expires_at,
        )
        credentials.access_token = tokens.access_token
        credentials.access_token_expires_at = tokens.access_token_expires_at
        credentials.refresh_token = tokens.refresh_token
        return tokens

    # --- orders -----------------------------------------------------------------------------

    def fetch_orders(
        self,
        *,
        updated_since: datetime,
        updated_until: datetime | None = None,
        page_token: str | None = None,
    ) -> OrderPage:
        """One page of orders by LastUpdateDate, each with its items.

        Amazon's window is inclusive at both ends and ends at least two minutes ago (see the
        module docstring); an order updated exactly at `updated_until` is passed through, since
        ingest is idempotent and dropping it could leave a gap."""
        if page_token:
            # The real API wants the token with MarketplaceIds only: it carries the filters.
            params = {"MarketplaceIds": self.marketplace_id, "NextToken": page_token}
        else:
            settled = timezone.now() - SETTLE
            until = settled if updated_until is None else min(updated_until, settled)
            if until <= updated_since:
                return OrderPage(orders=[], next_page_token=None)
            params = {
                "MarketplaceIds": self.marketplace_id,
                "LastUpdatedAfter": amazon_datetime(updated_since),
                "LastUpdatedBefore": amazon_datetime(until),
                "MaxResultsPerPage": str(self.page_size),
            }
        payload = self._payload(
            self._request("getOrders", "GET", "/orders/v0/orders", params=params)
        )
        raw_orders = payload.get("Orders")
        if not isinstance(raw_orders, list):
            raise PlatformResponseError("getOrders payload has no Orders list", platform="amazon")
        unmapped: list[UnmappedOrder] = []
        orders = orders_map(
            raw_orders,
            self._map_order_with_items,
            id_key="AmazonOrderId",
            platform=self.platform,
            unmapped=unmapped,
        )
        orders.sort(key=lambda order: (order.updated_at, order.platform_order_id))
        return OrderPage(
            orders=orders, next_page_token=payload.get("NextToken") or None, unmapped=unmapped
        )

    def fetch_orders_by_id(
        self, *, platform_order_ids: list[str], unmapped: list[UnmappedOrder] | None = None
    ) -> list[PlatformOrder]:
        orders = []
        failed: list[UnmappedOrder] = [] if unmapped is None else unmapped
        for order_id in platform_order_ids:
            try:
                response = self._request("getOrder", "GET", f"/orders/v0/orders/{quote(order_id)}")
            except PlatformNotFound:
                continue
            raw = self._payload(response)
            orders += orders_map(
                [raw],
                partial(self._map_order_with_items, order_id=order_id),
                id_key="AmazonOrderId",
                platform=self.platform,
                unmapped=failed,
            )
        if unmapped is None:
            unmapped_raise(failed, platform=self.platform)
        return orders

    def _map_order_with_items(self, raw: dict, *, order_id: str = "") -> PlatformOrder:
        """One order of getOrders (or getOrder for `order_id`) with its items fetched."""
        order_id = order_id or (raw.get("AmazonOrderId") if isinstance(raw, dict) else "")
        if not order_id:
            raise PlatformResponseError(
                "getOrders returned an order without id", field="AmazonOrderId", platform="amazon"
            )
        return self._map_order(raw, self._order_items(order_id))

    def _order_items(self, order_id: str) -> list[dict]:
        """Every item of one order, following getOrderItems' NextToken."""
        items: list[dict] = []
        params: dict = {}
        path = f"/orders/v0/orders/{quote(order_id)}/orderItems"
        while True:
            payload = self._payload(self._request("getOrderItems", "GET", path, params=params))
            page = payload.get("OrderItems")
            if not isinstance(page, list):
                raise PlatformResponseError(
                    f"getOrderItems for {order_id} has no OrderItems list", platform="amazon"
                )
            items.extend(page)
            next_token = payload.get("NextToken")
            if not next_token:
                return items
            params = {"NextToken": next_token}

    def _map_order(self, raw: dict, items: list[dict]) -> PlatformOrder:
        """Amazon's order + items -> PlatformOrder. Money is summed from the items (the order
        carries only OrderTotal); subtotal is net of promotions like TikTok's sub_total, so
        total = subtotal + shipping_fee + tax on every platform."""
        try:
            order_id = raw["AmazonOrderId"]
            amazon_status = raw["OrderStatus"]
        except KeyError as exc:
            raise PlatformResponseError(f"order without {exc.args[0]}", platform="amazon") from None
        if amazon_status not in STATUS_MAP:
            # An unknown status could mean "do not ship"; stop rather than guess.
            raise PlatformResponseError(
                f"order {order_id} has unknown status {amazon_status!r}", platform="amazon"
            )
        is_afn = raw.get("FulfillmentChannel") == "AFN"
        purchased_at = parse_amazon_datetime(raw.get("PurchaseDate"))
        updated_at = parse_amazon_datetime(raw.get("LastUpdateDate")) or purchased_at

        item_price = sum((money(i.get("ItemPrice")) for i in items), ZERO)
        promotion = sum((money(i.get("PromotionDiscount")) for i in items), ZERO)
        shipping = sum((money(i.get("ShippingPrice")) for i in items), ZERO)
        shipping_discount = sum((money(i.get("ShippingDiscount")) for i in items), ZERO)
        # Tax on discounts lowers the tax charged (uncertain in the docs; it is zero in US
        # orders seen in samples, so the safer reading only matters elsewhere).
        tax = sum(
            (
                money(i.get("ItemTax"))
                + money(i.get("ShippingTax"))
                - money(i.get("PromotionDiscountTax"))
                - money(i.get("ShippingDiscountTax"))
                for i in items
            ),
            ZERO,
        )
        subtotal = item_price - promotion
        shipping_fee = shipping - shipping_discount
        order_total = raw.get("OrderTotal")
        total = (
            money(order_total, field="OrderTotal") if order_total else subtotal + shipping_fee + tax
        )
        currency = (order_total or {}).get("CurrencyCode") or next(
            (
                i["ItemPrice"]["CurrencyCode"]
                for i in items
                if (i.get("ItemPrice") or {}).get("CurrencyCode")
            ),
            self.shop.currency or "USD",
        )

        # The reason stays in raw: buyer_note would put a buyer-note hold on the order.
        cancel_requested = any(
            is_true((i.get("BuyerRequestedCancel") or {}).get("IsBuyerRequestedCancel"))
            for i in items
        )
        notes = []
        if is_afn:
            notes.append(AFN_NOTE)
        if amazon_status == "Unfulfillable":
            notes.append(UNFULFILLABLE_NOTE)
        buyer_info = raw.get("BuyerInfo") or {}
        address = self._map_address(raw.get("ShippingAddress"), force_masked=is_afn)

        return PlatformOrder(
            platform_order_id=order_id,
            platform_status=amazon_status,
            status=STATUS_MAP[amazon_status],
            updated_at=updated_at,
            placed_at=purchased_at,
            # Amazon authorises payment when the order leaves Pending and gives no separate
            # payment time; the purchase time is the closest it states.
            paid_at=None if amazon_status in UNPAID_STATUSES else purchased_at,
            currency=currency,
            subtotal=subtotal,
            shipping_fee=shipping_fee,
            seller_discount=promotion + shipping_discount,
            tax=tax,
            total=total,
            buyer_name=buyer_info.get("BuyerName") or (address.name if address else ""),
            buyer_email=buyer_info.get("BuyerEmail", ""),
            seller_note=" ".join(notes),
            address=address,
            is_presale=raw.get("OrderType") == "Preorder" or amazon_status == "PendingAvailability",
            is_cod=raw.get("PaymentMethod") == "COD",
            ship_by=parse_amazon_datetime(raw.get("LatestShipDate")),
            cancel_requested=cancel_requested,
            cancelled_at=updated_at if amazon_status == "Canceled" else None,
            lines=[self._map_line(item, cancelled=amazon_status == "Canceled") for item in items],
            raw={**raw, "OrderItems": items},
        )

    @staticmethod
    def _map_address(raw: dict | None, *, force_masked: bool) -> PlatformAddress | None:
        if not raw:
            # Amazon sends no address before the order is paid (Pending) or once cancelled.
            return None
        # Name and street are restricted data (RDT); without them the address cannot be used.
        masked = force_masked or not (raw.get("Name") and raw.get("AddressLine1"))
        return PlatformAddress(
            name=raw.get("Name", ""),
            phone=raw.get("Phone", ""),
            line1=raw.get("AddressLine1", ""),
            line2=" ".join(p for p in (raw.get("AddressLine2"), raw.get("AddressLine3")) if p),
            city=raw.get("City", ""),
            state=raw.get("StateOrRegion", ""),
            postal_code=raw.get("PostalCode", ""),
            country=raw.get("CountryCode") or "US",
            masked=masked,
            raw=dict(raw),
        )

    @staticmethod
    def _map_line(item: dict, *, cancelled: bool) -> PlatformLine:
        quantity = int(item.get("QuantityOrdered") or 0)
        price = money(item.get("ItemPrice"))  # Amazon's ItemPrice is for the whole quantity
        discount = money(item.get("PromotionDiscount"))
        seller_sku = item.get("SellerSKU", "")
        return PlatformLine(
            platform_line_id=str(item["OrderItemId"]),
            quantity=quantity,
            seller_sku=seller_sku,
            platform_sku_id=seller_sku,
            product_name=item.get("Title", ""),
            unit_price=(price / quantity).quantize(Decimal("0.01")) if quantity else price,
            discount=discount,
            tax=money(item.get("ItemTax")),
            total=price - discount,
            # Amazon zeroes QuantityOrdered on items cancelled out of a live order.
            is_cancelled=cancelled or quantity == 0,
            platform_line_ids=[str(item["OrderItemId"])],
        )

    # --- fulfilment -------------------------------------------------------------------------

    def ship(self, *, request: ShipRequest) -> ShipResult:
        """confirmShipment for one package: which items, carrier, tracking number (204)."""
        order_id = request.platform_order_id
        order_items = self._ship_items(request)
        if not order_items:
            # Everything asked for is already confirmed (a retry after a lost answer): done.
            return ShipResult(
                warnings=[f"order {order_id} is already confirmed shipped; nothing sent"],
                already_shipped=True,
            )
        reference = request.platform_package_id
        if not (reference.isdigit() and int(reference) > 0):
            reference = package_reference(order_id, request.tracking_number, order_items)
        return self._confirm_package(request, reference=reference, order_items=order_items)

    def update_tracking(self, *, request: ShipRequest) -> ShipResult:
        """Correct a confirmed package's tracking number. SP-API has no update operation:
        confirmShipment again with the package's `packageReferenceId` edits that package ("if
        you need to make an edit to the shipment, submit another confirmShipment operation
        with the same packageReferenceID", SP-API guide "Confirm the shipment status"). The
        items must be the package's own (`line_quantities`: the parcel's units)."""
        reference = request.platform_package_id
        if not (reference.isdigit() and int(reference) > 0):
            raise PlatformRequestError(
                "the package's packageReferenceId is not known, so Amazon cannot be told which "
                "package to correct: edit the tracking number in Seller Central (Manage "
                "Orders, Edit shipment)",
                platform=self.platform,
            )
        order_items = [
            {"orderItemId": line_id, "quantity": int(quantity)}
            for line_id, quantity in request.line_quantities.items()
            if int(quantity) > 0
        ]
        if not order_items:
            raise PlatformRequestError(
                "the package's items are not known, so its confirmation cannot be sent again",
                platform=self.platform,
            )
        return self._confirm_package(request, reference=reference, order_items=order_items)

    def _confirm_package(
        self, request: ShipRequest, *, reference: str, order_items: list[dict]
    ) -> ShipResult:
        order_id = request.platform_order_id
        carrier_code = request.platform_provider_id or CARRIER_CODES.get(
            request.carrier_code.lower(), "Other"
        )
        package = {
            "packageReferenceId": reference,
            "carrierCode": carrier_code,
            "trackingNumber": request.tracking_number,
            "shipDate": amazon_datetime(request.shipped_at or timezone.now()),
            "orderItems": order_items,
        }
        if carrier_code == "Other":
            package["carrierName"] = request.carrier_code
        body = {"marketplaceId": self.marketplace_id, "packageDetail": package}
        self._request(
            "confirmShipment",
            "POST",
            f"/orders/v0/orders/{quote(order_id)}/shipmentConfirmation",
            body=body,
        )
        return ShipResult(platform_package_id=reference, raw=body)

    def shipped_tracking_numbers(self, *, platform_order_id: str) -> set[str] | None:
        """Amazon's order APIs never give a package's tracking number back: unknown. (`ship`
        stays safe to repeat: without given quantities it confirms only what is unshipped.)"""
        return None

    def _ship_items(self, request: ShipRequest) -> list[dict]:
        """The orderItems of a confirmation. Amazon needs a quantity per item: given ones win;
        otherwise what is still unshipped, read from getOrderItems. Empty when those items are
        all confirmed already; an error when there is nothing to ship at all (cancelled)."""
        if request.line_quantities:
            return [
                {"orderItemId": line_id, "quantity": int(quantity)}
                for line_id, quantity in request.line_quantities.items()
                if int(quantity) > 0
            ]
        wanted = set(request.platform_line_ids)
        items = [
            item
            for item in self._order_items(request.platform_order_id)
            if not wanted or str(item["OrderItemId"]) in wanted
        ]
        remaining = [
            {
                "orderItemId": str(item["OrderItemId"]),
                "quantity": int(item.get("QuantityOrdered") or 0)
                - int(item.get("QuantityShipped") or 0),
            }
            for item in items
        ]
        remaining = [item for item in remaining if item["quantity"] > 0]
        if not remaining and any(int(item.get("QuantityShipped") or 0) for item in items):
            return []
        if not remaining:
            raise PlatformRequestError(
                f"order {request.platform_order_id} has nothing left to ship",
                platform=self.platform,
            )
        return remaining

    # --- inventory --------------------------------------------------------------------------

    def _listing_path(self, sku: str) -> str:
        if not self.seller_id:
            raise PlatformRequestError("no Amazon seller id for this shop", platform="amazon")
        return f"/listings/2021-08-01/items/{quote(self.seller_id, safe='')}/{quote(sku, safe='')}"

    def set_inventory(self, *, updates: list[InventoryUpdate]) -> list[InventoryResult]:
        """patchListingsItem per SKU, replacing fulfillment_availability (the DEFAULT channel:
        seller-fulfilled). One listing's rejection is its own result; auth, throttling and
        outages raise so the whole push is retried."""
        results = []
        for update in updates:
            sku = update.platform_sku_id or update.seller_sku
            body = {
                "productType": self.product_type,
                "patches": [
                    {
                        "op": "replace",
                        "path": "/attributes/fulfillment_availability",
                        "value": [
                            {"fulfillment_channel_code": "DEFAULT", "quantity": update.quantity}
                        ],
                    }
                ],
            }
            try:
                response = self._request(
                    "patchListingsItem",
                    "PATCH",
                    self._listing_path(sku),
                    params={"marketplaceIds": self.marketplace_id},
                    body=body,
                )
            except (PlatformRequestError, PlatformNotFound) as exc:
                results.append(
                    InventoryResult(sku, ok=False, error=exc.message, code=str(exc.code or ""))
                )
                continue
            data = self.response_json(response)
            if data.get("status") in ("ACCEPTED", "VALID"):
                results.append(InventoryResult(sku, ok=True))
                continue
            issues = data.get("issues") or []
            errors = [i for i in issues if i.get("severity", "ERROR") == "ERROR"] or issues
            results.append(
                InventoryResult(
                    sku,
                    ok=False,
                    error="; ".join(str(i.get("message", "")) for i in errors)
                    or f"listing update {data.get('status') or 'not accepted'}",
                    code=str(errors[0].get("code", "")) if errors else str(data.get("status", "")),
                )
            )
        return results

    def get_inventory(self, *, platform_sku_ids: list[str]) -> list[InventoryLevel]:
        levels = []
        for sku in platform_sku_ids:
            try:
                response = self._request(
                    "getListingsItem",
                    "GET",
                    self._listing_path(sku),
                    params={
                        "marketplaceIds": self.marketplace_id,
                        "includedData": "fulfillmentAvailability",
                    },
                )
            except PlatformNotFound:
                continue
            availability = self.response_json(response).get("fulfillmentAvailability") or []
            quantity = sum(
                int(entry.get("quantity") or 0)
                for entry in availability
                if entry.get("fulfillmentChannelCode") == "DEFAULT"
            )
            levels.append(InventoryLevel(platform_sku_id=sku, quantity=quantity, seller_sku=sku))
        return levels

    # --- webhooks ---------------------------------------------------------------------------

    @classmethod
    def verify_webhook(cls, *, headers, body, credentials) -> bool:
        """Always False: SP-API notifications arrive through Amazon SQS or EventBridge, never as
        an HTTP POST to us, so nothing posted to our webhook URL can be Amazon's."""
        return False

    @classmethod
    def parse_webhook(cls, *, headers, body) -> WebhookEvent:
        raise WebhookVerificationError(
            "Amazon has no HTTP webhooks: SP-API notifications come through SQS/EventBridge"
        )


# --- helpers ----------------------------------------------------------------------------------


def _first_error(response: httpx.Response) -> tuple[str, str]:
    """The code and message (with details) of an SP-API error body; the status if none."""
    try:
        errors = response.json().get("errors") or []
    except (ValueError, AttributeError):
        errors = []
    if errors and isinstance(errors[0], dict):
        error = errors[0]
        message = str(error.get("message") or "")
        if error.get("details"):
            message = f"{message} ({error['details']})" if message else str(error["details"])
        return str(error.get("code") or ""), message or f"HTTP {response.status_code}"
    # No error list: the body is not Amazon's error shape, and is not quoted (see PlatformError).
    return (
        "",
        f"HTTP {response.status_code} ({safe_media_type(response.headers.get('content-type'))})",
    )


def _is_token_problem(message: str) -> bool:
    """403s about the access token (expired, revoked, malformed) are worth one refresh; a
    missing role or a wrong seller is not."""
    text = message.lower()
    return "access token" in text and any(
        word in text for word in ("expired", "revoked", "malformed", "invalid")
    )


def _retry_after_from_rate_limit(response: httpx.Response) -> None:
    """httpx response hook: give a 429 without Retry-After one token's wait from
    x-amzn-RateLimit-Limit (requests per second), so backoff never retries too early."""
    if response.status_code != 429 or response.headers.get("Retry-After"):
        return
    try:
        rate = float(response.headers.get("x-amzn-RateLimit-Limit", ""))
    except ValueError:
        return
    if rate > 0:
        response.headers["Retry-After"] = str(math.ceil(1 / rate * 1000) / 1000)


def package_reference(order_id: str, tracking_number: str, items: list[dict]) -> str:
    """A positive numeric packageReferenceId (Amazon's rule), stable for the same package so a
    re-sent confirmation is recognised rather than recorded twice."""
    key = "|".join(
        [order_id, tracking_number]
        + [
            f"{i['orderItemId']}:{i['quantity']}"
            for i in sorted(items, key=lambda i: i["orderItemId"])
        ]
    )
    return str(int(hashlib.sha256(key.encode()).hexdigest()[:12], 16) % 10**12 + 1)
