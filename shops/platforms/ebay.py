"""eBay connector: the Sell Fulfillment and Sell Inventory REST APIs, OAuth user tokens.

Facts from shared/platform-apis.md §4. Identifiers, and how tkerp's fields hold them:
- `platform_order_id` is eBay's order id ("12-34567-89012"); `platform_line_id` the line item id.
- eBay's inventory key is the **seller's SKU** (a free string), so for eBay a listing's
  `platform_sku_id` holds that SKU, and order lines carry it in both `platform_sku_id` and
  `seller_sku`. `set_inventory` falls back to `InventoryUpdate.seller_sku` when the listing has
  no `platform_sku_id`.
- A shipment's `platform_package_id` is eBay's fulfillment id (from the `Location` header).

Cancellations live in the Post-Order API: an order's `cancelStatus.cancelRequests[]` tells us a
buyer asked, and `answer_cancellation` approves or rejects through
`/post-order/v2/cancellation/{cancelId}/approve|reject` (L: that API takes the OAuth token as
`Authorization: IAF <token>`).

Webhooks: eBay's Notification API signs with ECDSA keys fetched from its public-key endpoint and
order events mostly arrive through the older Platform Notifications; neither is implemented, so
eBay shops are synced by polling `lastmodifieddate` (verify_webhook stays False).
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import ClassVar
from urllib.parse import parse_qs, quote, urlsplit

import httpx

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
    PlatformRateLimited,
    PlatformRequestError,
    PlatformResponseError,
    PlatformTokenExpired,
    ShipRequest,
    ShipResult,
    TokenSet,
    UnmappedOrder,
    orders_map,
    parse_iso_datetime,
    unmapped_raise,
)
from shops.platforms.http import RateLimit

ORDERS_PATH = "/sell/fulfillment/v1/order"
MAX_ORDER_IDS = 50
MAX_BULK = 25  # bulk_update_price_quantity and bulk_get_inventory_item requests per call
INVALID_TOKEN = 1001
RATE_LIMITED = 2001
# Our carrier codes -> eBay shippingCarrierCode values.
CARRIER_CODES = {
    "usps": "USPS",
    "ups": "UPS",
    "fedex": "FedEx",
    "dhl": "DHL",
    "ontrac": "OnTrac",
    "lasership": "LaserShip",
}
# IN_PROGRESS is a partial shipment: the order stays open for the rest (its parcels say which
# left), as FULFILLED does not.
SHIPPED_STATES = {"FULFILLED"}


def _decimal(amount: dict | None, *, field: str) -> Decimal:
    """eBay money is {"value": "19.99", "currency": "USD"}; missing is zero."""
    if not amount:
        return ZERO
    try:
        return Decimal(str(amount.get("value") or "0"))
    except (InvalidOperation, AttributeError):
        raise PlatformResponseError(
            f"bad money value {amount!r} in {field}", field=field, platform="ebay"
        ) from None


def _datetime(value) -> datetime | None:
    return parse_iso_datetime(value, platform="ebay")


def _iso(value: datetime) -> str:
    """eBay's filter timestamps: UTC with milliseconds and a Z."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _first_error(payload) -> dict:
    if isinstance(payload, dict):
        errors = payload.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            return errors[0]
        errors = payload.get("error")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            return errors[0]  # the Post-Order API's shape
        if "error" in payload:  # the OAuth endpoint's shape
            return {
                "errorId": payload.get("error"),
                "message": payload.get("error_description") or payload.get("error"),
            }
    return {}


class EbayConnector(Connector):
    """One eBay seller account through the Sell APIs."""

    platform = "ebay"
    default_base_url = "https://api.ebay.com"
    # eBay's limits are daily call quotas per API; this keeps bursts polite.
    rate_limit: ClassVar[RateLimit] = RateLimit(per_second=5, burst=10)
    page_size = 200  # (L) the documented maximum for getOrders
    # getOrders pages come newest order first (by creation), not oldest update first.
    pages_in_update_order = False

    @classmethod
    def partly_shipped(cls, platform_status: str) -> bool:
        # Stored as "fulfillment[/cancel state]".
        return platform_status.split("/")[0] == "IN_PROGRESS"

    # --- HTTP -------------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict | None = None,
        body: dict | None = None,
        auth_scheme: str = "Bearer",
    ) -> httpx.Response:
        def build() -> httpx.Request:
            headers = {
                "Authorization": f"{auth_scheme} {self.credentials.access_token}",
                "Accept": "application/json",
                "Content-Language": "en-US",
                "X-EBAY-C-MARKETPLACE-ID": (self.credentials.extra or {}).get(
                    "marketplace_id", "EBAY_US"
                ),
            }
            return httpx.Request(
                method,
                self.http.url(path),
                params=params,
                headers=headers,
                **({"json": body} if body is not None else {}),
            )

        return self.http.send(build, check=self._check)

    def _check(self, response: httpx.Response) -> None:
        status = response.status_code
        if status < 400:
            return
        try:
            payload = response.json()
        except ValueError:
            payload = None
        error = _first_error(payload)
        message = error.get("longMessage") or error.get("message") or response.reason_phrase
        kwargs = {
            "status": status,
            "code": error.get("errorId"),
            "request_id": response.headers.get("X-EBAY-C-REQUEST-ID", ""),
            "platform": self.platform,
        }
        if status == 401 or error.get("errorId") == INVALID_TOKEN:
            # eBay says "Invalid access token" for expired and revoked tokens alike; a refresh
            # is the one remedy, and a refresh that fails surfaces as PlatformAuthError.
            raise PlatformTokenExpired(message, **kwargs)
        if status == 403:
            raise PlatformAuthError(message, **kwargs)
        if status == 404:
            raise PlatformNotFound(message, **kwargs)
        if error.get("errorId") == RATE_LIMITED:
            raise PlatformRateLimited(message, **kwargs)
        raise PlatformRequestError(message, **kwargs)

    # --- orders -----------------------------------------------------------------------------

    def fetch_orders(
        self,
        *,
        updated_since: datetime,
        updated_until: datetime | None = None,
        page_token: str | None = None,
    ) -> OrderPage:
        """One page of getOrders over a closed `lastmodifieddate` window.

        eBay pages by offset, so an order modified while we page leaves the window and shifts
        every later order one place back: read naively, one would be skipped. The window is
        therefore always closed (an open one also takes in newly modified orders), and the token
        carries the `total` seen: when it shrinks, the next page starts that many places
        earlier. Re-reading a few orders is harmless; ingest is idempotent.
        The token is "offset:total:until", so later pages keep the same window.
        """
        offset, previous_total = 0, None
        if updated_until is None:
            # Fixed at the first page and carried by the token: an order modified while we page
            # then leaves the window instead of moving inside it.
            updated_until = datetime.now(UTC)
        if page_token:
            try:
                parts = page_token.split(":", 2)
                offset, previous_total = int(parts[0]), int(parts[1])
                if len(parts) == 3 and parts[2]:
                    updated_until = datetime.fromtimestamp(int(parts[2]) / 1000, UTC)
            except (ValueError, IndexError):
                raise PlatformRequestError(
                    f"bad page token {page_token!r}", platform=self.platform
                ) from None
        # eBay's range is inclusive; ask up to one millisecond before `updated_until`.
        last = updated_until - timedelta(milliseconds=1)
        params = {
            "filter": f"lastmodifieddate:[{_iso(updated_since)}..{_iso(last)}]",
            "limit": self.page_size,
            "offset": offset,
        }
        payload = self.response_json(self._request("GET", ORDERS_PATH, params=params))
        total = int(payload.get("total") or 0)
        if previous_total is not None and total < previous_total and offset > 0:
            offset = max(0, offset - (previous_total - total))
            params["offset"] = offset
            payload = self.response_json(self._request("GET", ORDERS_PATH, params=params))
            total = int(payload.get("total") or 0)
        raw_orders = payload.get("orders") or []
        unmapped: list[UnmappedOrder] = []
        orders = orders_map(
            raw_orders, self._order, id_key="orderId", platform=self.platform, unmapped=unmapped
        )
        orders = [order for order in orders if updated_since <= order.updated_at < updated_until]
        orders.sort(key=lambda order: (order.updated_at, order.platform_order_id))
        next_token = None
        if payload.get("next") and raw_orders:
            next_offset = offset + len(raw_orders)
            values = parse_qs(urlsplit(payload["next"]).query).get("offset")
            if values and values[0].isdigit():
                next_offset = int(values[0])
            until_ms = int(updated_until.timestamp() * 1000)
            next_token = f"{next_offset}:{total}:{until_ms}"
        return OrderPage(orders=orders, next_page_token=next_token, unmapped=unmapped)

    def fetch_orders_by_id(
        self, *, platform_order_ids: list[str], unmapped: list[UnmappedOrder] | None = None
    ) -> list[PlatformOrder]:
        found: list[PlatformOrder] = []
        failed: list[UnmappedOrder] = [] if unmapped is None else unmapped
        ids = [str(i) for i in platform_order_ids]
        for start in range(0, len(ids), MAX_ORDER_IDS):
            params = {"orderIds": ",".join(ids[start : start + MAX_ORDER_IDS])}
            payload = self.response_json(self._request("GET", ORDERS_PATH, params=params))
            # Unknown ids come back as warnings, not errors: they are simply left out.
            found += orders_map(
                payload.get("orders") or [],
                self._order,
                id_key="orderId",
                platform=self.platform,
                unmapped=failed,
            )
        if unmapped is None:
            unmapped_raise(failed, platform=self.platform)
        return found

    @staticmethod
    def _pending_cancel(raw: dict) -> dict | None:
        cancel = raw.get("cancelStatus") or {}
        if cancel.get("cancelState") == "CANCELED":
            return None
        for item in cancel.get("cancelRequests") or []:
            if item.get("cancelRequestState") == "REQUESTED":
                return item
        return None

    def _order(self, raw: dict) -> PlatformOrder:
        if not isinstance(raw, dict) or not raw.get("orderId"):
            raise PlatformResponseError("order without an orderId", platform=self.platform)
        order_id = str(raw["orderId"])
        updated_at = _datetime(raw.get("lastModifiedDate")) or _datetime(raw.get("creationDate"))
        if updated_at is None:
            raise PlatformResponseError(
                f"order {order_id} has no lastModifiedDate", platform="ebay"
            )
        fulfillment = raw.get("orderFulfillmentStatus") or "NOT_STARTED"
        cancel = raw.get("cancelStatus") or {}
        cancel_state = cancel.get("cancelState") or "NONE_REQUESTED"
        pending_cancel = self._pending_cancel(raw)
        if cancel_state == "CANCELED":
            status = "cancelled"
        elif fulfillment in SHIPPED_STATES:
            status = "shipped"
        else:
            status = "new"
        platform_status = fulfillment
        if cancel_state != "NONE_REQUESTED":
            platform_status += f"/{cancel_state}"
        pricing = raw.get("pricingSummary") or {}
        buyer = raw.get("buyer") or {}
        instructions = (raw.get("fulfillmentStartInstructions") or [{}])[0] or {}
        ship_to = (instructions.get("shippingStep") or {}).get("shipTo")
        address = self._address(ship_to)
        lines = [self._line(item) for item in raw.get("lineItems") or []]
        ship_by_dates = [
            _datetime((item.get("lineItemFulfillmentInstructions") or {}).get("shipByDate"))
            for item in raw.get("lineItems") or []
        ]
        ship_by_dates = [value for value in ship_by_dates if value]
        paid = raw.get("orderPaymentStatus") in ("PAID", "PARTIALLY_REFUNDED", "FULLY_REFUNDED")
        payments = (raw.get("paymentSummary") or {}).get("payments") or []
        paid_at = _datetime(payments[0].get("paymentDate")) if payments and paid else None
        return PlatformOrder(
            platform_order_id=order_id,
            platform_status=platform_status[:40],
            status=status,
            updated_at=updated_at,
            placed_at=_datetime(raw.get("creationDate")),
            paid_at=paid_at or (_datetime(raw.get("creationDate")) if paid else None),
            currency=(pricing.get("total") or {}).get("currency") or "USD",
            subtotal=_decimal(pricing.get("priceSubtotal"), field="priceSubtotal"),
            shipping_fee=_decimal(pricing.get("deliveryCost"), field="deliveryCost"),
            # eBay reports discounts as negative amounts; ours are positive.
            seller_discount=abs(_decimal(pricing.get("priceDiscount"), field="priceDiscount")),
            tax=_decimal(pricing.get("tax"), field="tax"),
            total=_decimal(pricing.get("total"), field="total"),
            buyer_name=(ship_to or {}).get("fullName") or buyer.get("username") or "",
            buyer_email=(ship_to or {}).get("email")
            or (buyer.get("buyerRegistrationAddress") or {}).get("email")
            or "",
            buyer_user_id=buyer.get("username") or "",
            buyer_note=raw.get("buyerCheckoutNotes") or "",
            address=address,
            ship_by=min(ship_by_dates) if ship_by_dates else None,
            cancel_requested=pending_cancel is not None,
            cancel_requested_at=_datetime((pending_cancel or {}).get("cancelRequestedDate")),
            cancelled_at=updated_at if status == "cancelled" else None,
            lines=lines,
            raw=raw,
        )

    @staticmethod
    def _address(ship_to: dict | None) -> PlatformAddress | None:
        if not ship_to:
            return None
        contact = ship_to.get("contactAddress") or {}
        return PlatformAddress(
            name=ship_to.get("fullName") or "",
            phone=(ship_to.get("primaryPhone") or {}).get("phoneNumber") or "",
            line1=contact.get("addressLine1") or "",
            line2=contact.get("addressLine2") or "",
            city=contact.get("city") or "",
            state=contact.get("stateOrProvince") or "",
            postal_code=contact.get("postalCode") or "",
            country=contact.get("countryCode") or "US",
            raw=ship_to,
        )

    @staticmethod
    def _line(item: dict) -> PlatformLine:
        quantity = int(item.get("quantity") or 0)
        # lineItemCost is the line's price before discounts (unit price x quantity).
        cost = _decimal(item.get("lineItemCost"), field="lineItemCost")
        discounted = (
            _decimal(item.get("discountedLineItemCost"), field="discountedLineItemCost")
            if item.get("discountedLineItemCost")
            else cost
        )
        tax = sum(
            (
                _decimal(tax.get("amount"), field="ebayCollectAndRemitTaxes")
                for tax in item.get("ebayCollectAndRemitTaxes") or []
            ),
            ZERO,
        )
        line_id = str(item.get("lineItemId"))
        sku = item.get("sku") or ""
        return PlatformLine(
            platform_line_id=line_id,
            quantity=quantity,
            seller_sku=sku,
            platform_sku_id=sku,
            product_name=item.get("title") or "",
            unit_price=(cost / quantity).quantize(Decimal("0.01")) if quantity else cost,
            discount=cost - discounted,
            tax=tax,
            total=discounted,
            platform_line_ids=[line_id],
        )

    # --- fulfilment -------------------------------------------------------------------------

    def ship(self, *, request: ShipRequest) -> ShipResult:
        """One `shipping_fulfillment` per package; eBay wants every line with its quantity.

        Lines named without a quantity (or the whole order, when none are named) ship what is
        left of them: ordered minus what earlier fulfillments of the order already carried.
        """
        wanted: dict[str, int | None] = {str(i): None for i in request.platform_line_ids}
        wanted.update({str(k): int(v) for k, v in request.line_quantities.items() if int(v) > 0})
        order_path = f"{ORDERS_PATH}/{quote(request.platform_order_id, safe='')}"
        if not wanted or None in wanted.values():
            remaining = self._remaining_quantities(order_path)
            whole_order = not wanted
            for line_id in list(remaining) if whole_order else list(wanted):
                if wanted.get(line_id) is not None:
                    continue
                if line_id not in remaining:
                    raise PlatformRequestError(
                        f"order {request.platform_order_id} has no line {line_id}",
                        platform=self.platform,
                    )
                if remaining[line_id] > 0:
                    wanted[line_id] = remaining[line_id]
                elif not whole_order:
                    raise PlatformRequestError(
                        f"line {line_id} has nothing left to ship", platform=self.platform
                    )
            if not wanted:
                raise PlatformRequestError(
                    f"order {request.platform_order_id} has nothing left to ship",
                    platform=self.platform,
                )
        shipped_at = request.shipped_at or datetime.now(UTC)
        body = {
            "lineItems": [
                {"lineItemId": line_id, "quantity": quantity}
                for line_id, quantity in wanted.items()
            ],
            "shippedDate": _iso(shipped_at),
            "shippingCarrierCode": request.platform_provider_id
            or CARRIER_CODES.get(request.carrier_code.lower(), request.carrier_code),
            "trackingNumber": request.tracking_number,
        }
        response = self._request(
            "POST",
            f"{order_path}/shipping_fulfillment",
            body=body,
        )
        location = response.headers.get("Location", "")
        fulfillment_id = location.rstrip("/").rsplit("/", 1)[-1] if location else ""
        if not fulfillment_id:
            raise PlatformResponseError(
                "shipping fulfillment created without a Location", platform=self.platform
            )
        try:
            raw = response.json() if response.content else {}
        except ValueError:
            raw = {}
        return ShipResult(platform_package_id=fulfillment_id, raw=raw or {"location": location})

    # The Sell Fulfillment API creates and reads shipping fulfillments but has no call that
    # updates or deletes one, and it does not say what a second fulfillment for the same items
    # does. (The Trading API's CompleteSale can replace an order line's tracking, per eBay's
    # knowledge base: not wired up here.) So a corrected number is the seller's to enter.
    tracking_update_by_hand = (
        "In eBay Seller Hub find order {order} under Orders and use its tracking action (Add or "
        "edit tracking number) to replace {old} with {new} ({carrier})."
    )

    def shipped_tracking_numbers(self, *, platform_order_id: str) -> set[str] | None:
        """The numbers of the order's shipping fulfillments (the order itself names none)."""
        order_path = f"{ORDERS_PATH}/{quote(platform_order_id, safe='')}"
        done = self.response_json(self._request("GET", f"{order_path}/shipping_fulfillment"))
        return {
            str(item.get("shipmentTrackingNumber") or "").strip().upper()
            for item in done.get("fulfillments") or []
            if item.get("shipmentTrackingNumber")
        }

    def _remaining_quantities(self, order_path: str) -> dict[str, int]:
        """Units per line not yet in any shipping fulfillment of the order."""
        raw = self.response_json(self._request("GET", order_path))
        remaining = {
            str(item["lineItemId"]): int(item.get("quantity") or 0)
            for item in raw.get("lineItems") or []
        }
        done = self.response_json(self._request("GET", f"{order_path}/shipping_fulfillment"))
        for fulfillment in done.get("fulfillments") or []:
            for item in fulfillment.get("lineItems") or []:
                line_id = str(item.get("lineItemId"))
                if line_id in remaining:
                    remaining[line_id] -= int(item.get("quantity") or 0)
        return remaining

    # --- inventory --------------------------------------------------------------------------

    def set_inventory(self, *, updates: list[InventoryUpdate]) -> list[InventoryResult]:
        """`bulk_update_price_quantity` in batches of 25 SKUs; per-SKU results."""
        results: list[InventoryResult] = []
        for start in range(0, len(updates), MAX_BULK):
            batch = updates[start : start + MAX_BULK]
            keys = {(u.platform_sku_id or u.seller_sku): u for u in batch}
            body = {
                "requests": [
                    {"sku": sku, "shipToLocationAvailability": {"quantity": int(u.quantity)}}
                    for sku, u in keys.items()
                ]
            }
            payload = self.response_json(
                self._request("POST", "/sell/inventory/v1/bulk_update_price_quantity", body=body)
            )
            answered: dict[str, dict] = {}
            for item in payload.get("responses") or []:
                answered.setdefault(str(item.get("sku")), item)
            # One result per update, in order (a SKU twice in a batch is sent once, last wins).
            for update in batch:
                sku = update.platform_sku_id or update.seller_sku
                item = answered.get(sku)
                if item is None:
                    results.append(
                        InventoryResult(
                            platform_sku_id=sku, ok=False, error="no answer for this SKU"
                        )
                    )
                    continue
                status = int(item.get("statusCode") or 0)
                if 200 <= status < 300:
                    results.append(InventoryResult(platform_sku_id=sku, ok=True))
                    continue
                error = _first_error(item)
                results.append(
                    InventoryResult(
                        platform_sku_id=sku,
                        ok=False,
                        error=error.get("longMessage") or error.get("message") or f"HTTP {status}",
                        code=str(error.get("errorId") or status),
                    )
                )
        return results

    def get_inventory(self, *, platform_sku_ids: list[str]) -> list[InventoryLevel]:
        levels: list[InventoryLevel] = []
        skus = [str(s) for s in platform_sku_ids]
        for start in range(0, len(skus), MAX_BULK):
            body = {"requests": [{"sku": sku} for sku in skus[start : start + MAX_BULK]]}
            payload = self.response_json(
                self._request("POST", "/sell/inventory/v1/bulk_get_inventory_item", body=body)
            )
            for item in payload.get("responses") or []:
                if int(item.get("statusCode") or 0) != 200:
                    continue  # unknown SKU: left out, as the interface says
                inventory = item.get("inventoryItem") or {}
                availability = (inventory.get("availability") or {}).get(
                    "shipToLocationAvailability"
                ) or {}
                sku = str(item.get("sku") or inventory.get("sku"))
                levels.append(
                    InventoryLevel(
                        platform_sku_id=sku,
                        quantity=int(availability.get("quantity") or 0),
                        seller_sku=sku,
                    )
                )
        return levels

    # --- cancellations ----------------------------------------------------------------------

    def answer_cancellation(
        self, *, cancel_id: str, platform_order_id: str, approve: bool, reason: str = ""
    ) -> None:
        action = "approve" if approve else "reject"
        body = {} if approve else {"shipmentDate": {"value": _iso(datetime.now(UTC))}}
        if reason and not approve:
            body["comments"] = {"content": reason}
        self._request(
            "POST",
            f"/post-order/v2/cancellation/{quote(cancel_id, safe='')}/{action}",
            body=body,
            auth_scheme="IAF",
        )

    # --- auth -------------------------------------------------------------------------------

    def refresh_access_token(self) -> TokenSet:
        """Exchange the refresh token for a new access token (eBay keeps the refresh token)."""
        credentials = self.credentials
        if not credentials.refresh_token:
            raise PlatformAuthError("no refresh token to exchange", platform=self.platform)
        form = {"grant_type": "refresh_token", "refresh_token": credentials.refresh_token}
        scopes = (credentials.extra or {}).get("scopes")
        if scopes:
            form["scope"] = " ".join(scopes) if isinstance(scopes, list) else str(scopes)

        basic = base64.b64encode(
            f"{credentials.app_key}:{credentials.app_secret}".encode()
        ).decode()

        def build() -> httpx.Request:
            return httpx.Request(
                "POST",
                self.http.url("/identity/v1/oauth2/token"),
                data=form,
                headers={"Authorization": f"Basic {basic}"},
            )

        def check(response: httpx.Response) -> None:
            if response.status_code < 400:
                return
            try:
                error = _first_error(response.json())
            except ValueError:
                error = {}
            raise PlatformAuthError(
                error.get("message") or f"token refresh refused ({response.status_code})",
                code=error.get("errorId"),
                status=response.status_code,
                platform=self.platform,
            )

        payload = self.response_json(self.http.send(build, check=check))
        token = payload.get("access_token")
        try:
            lifetime = int(payload.get("expires_in"))
        except (TypeError, ValueError):
            lifetime = None
        if not token or lifetime is None:
            raise PlatformResponseError(
                "token response without access_token/expires_in", platform=self.platform
            )
        now = datetime.now(UTC)
        refresh_lifetime = payload.get("refresh_token_expires_in")
        return TokenSet(
            access_token=token,
            access_token_expires_at=now + timedelta(seconds=lifetime),
            refresh_token=payload.get("refresh_token") or credentials.refresh_token,
            refresh_token_expires_at=(
                now + timedelta(seconds=int(refresh_lifetime))
                if refresh_lifetime
                else credentials.refresh_token_expires_at
            ),
        )
