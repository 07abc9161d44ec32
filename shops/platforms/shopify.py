"""Shopify connector: the REST Admin API (`/admin/api/{version}/...`).

Facts from shared/platform-apis.md §2. Shopify made REST "legacy" in 2024-10 (new public apps
must use GraphQL from 2025-04); custom and existing apps keep REST, which is what sellers' private
apps use, so this connector speaks REST. The API version is `credentials.extra["api_version"]`.

Identifiers, and how tkerp's fields hold them:
- An order's `platform_order_id` is Shopify's numeric order id (not the "#1001" name).
- A line's `platform_line_id` is the line item id; its `platform_sku_id` is the variant id and
  its `seller_sku` the variant's SKU.
- A listing's `platform_sku_id` is the variant's **inventory item id**: inventory is set per
  (inventory item, location), and Shopify's order lines carry no inventory item id. In real stores
  variant ids and inventory item ids differ, so matching Shopify order lines to listings must go
  by the seller SKU; the sandbox uses one number for both.
- The location is `InventoryUpdate.location_id`, else `credentials.extra["location_id"]`.

Shopify has no buyer cancellation request: buyers write to the seller. tkerp's convention is a
tag on the order ("cancel requested" unless `credentials.extra["cancel_request_tag"]` says
otherwise), which staff or a Shopify Flow add, optionally with a `cancel_requested_at` note
attribute (ISO time; else the order's updated_at stands in). Such orders come in with
`cancel_requested` set and the cancel id is the order id. Approving cancels the order; there is
nothing to reject.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

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
    PlatformConfigError,
    PlatformLine,
    PlatformNotFound,
    PlatformOrder,
    PlatformRequestError,
    PlatformResponseError,
    ShipRequest,
    ShipResult,
    UnmappedOrder,
    WebhookEvent,
    orders_map,
    parse_iso_datetime,
    unmapped_raise,
)
from shops.platforms.http import RateLimit
from tkerp.outbound import safe_media_type

DEFAULT_API_VERSION = "2025-01"
# A store's own host: one DNS label under myshopify.com (Shopify's store names).
MYSHOPIFY_DOMAIN = re.compile(r"[a-z0-9][a-z0-9-]{0,62}\.myshopify\.com")
DEFAULT_CANCEL_REQUEST_TAG = "cancel requested"
#: Shopify's maximum for `ids=` and `inventory_item_ids=` lists.
MAX_IDS = 250
MAX_INVENTORY_IDS = 50

# Our carrier codes -> Shopify's tracking company names (Shopify builds the tracking URL itself
# for companies it knows; we still send ours so the buyer's link works on any version).
TRACKING_COMPANIES = {
    "usps": "USPS",
    "ups": "UPS",
    "fedex": "FedEx",
    "dhl": "DHL Express",
    "dhl_ecommerce": "DHL eCommerce",
    "ontrac": "OnTrac",
    "lasership": "LaserShip",
    "amazon": "Amazon Logistics US",
}
TRACKING_URLS = {
    "usps": "https://tools.usps.com/go/TrackConfirmAction?tLabels={number}",
    "ups": "https://www.ups.com/track?tracknum={number}",
    "fedex": "https://www.fedex.com/fedextrack/?trknbr={number}",
}

# Shopify REST `fulfillment_status` of an order shipped in full. "partial" (and the newer
# "partially_fulfilled") leave the order open for the rest: its own parcels say which left.
SHIPPED_FULFILLMENT = {"fulfilled"}
# `financial_status` values meaning the money went back: nothing is left to ship.
VOID_FINANCIAL = {"voided", "refunded"}


def _decimal(value, *, field: str = "amount") -> Decimal:
    """A Shopify money string ("19.99") as Decimal; missing is zero, garbage is an error."""
    if value in (None, ""):
        return ZERO
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise PlatformResponseError(
            f"bad money value {value!r} in {field}", field=field, platform="shopify"
        ) from None


def _datetime(value) -> datetime | None:
    return parse_iso_datetime(value, platform="shopify")


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).replace(microsecond=0).isoformat()


def _header(headers: Mapping[str, str], name: str) -> str:
    """Case-insensitive header lookup that works for dicts, httpx and Django headers."""
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        for key, item in headers.items():
            if key.lower() == lowered:
                return item
        return ""
    return value


def _error_message(payload) -> str:
    """Shopify's `errors` comes as a string, a list, or {field: [messages]}. A body without
    either field is not Shopify's error: "" (the caller says the status), never quoted."""
    if not isinstance(payload, dict):
        return ""
    errors = payload.get("errors", payload.get("error"))
    if errors is None:
        return ""
    if isinstance(errors, str):
        return errors
    if isinstance(errors, list):
        return "; ".join(str(item) for item in errors)
    if isinstance(errors, dict):
        parts = []
        for key, value in errors.items():
            text = "; ".join(map(str, value)) if isinstance(value, list) else str(value)
            parts.append(text if key == "base" else f"{key}: {text}")
        return "; ".join(parts)
    return str(errors)


class ShopifyConnector(Connector):
    """One Shopify store through the REST Admin API."""

    platform = "shopify"
    #: `{shop}` is the shop's myshopify domain (its `platform_shop_id`): see `live_base_url`.
    default_base_url = "https://{shop}.myshopify.com"
    # The REST leaky bucket: 40 requests, leaking 2/s (Advanced and Plus leak faster; override
    # with credentials.extra["rate_limit"]).
    rate_limit: ClassVar[RateLimit] = RateLimit(per_second=2, burst=40)
    page_size = 250

    @classmethod
    def partly_shipped(cls, platform_status: str) -> bool:
        # Stored as "financial/fulfillment[/cancelled]".
        return platform_status.split("/")[1:2] in (["partial"], ["partially_fulfilled"])

    @classmethod
    def live_base_url(cls, *, shop, credentials) -> str:
        """The store's own `*.myshopify.com` host, and no other: the domain is the seller's
        input, so anything that is not a myshopify subdomain is refused."""
        domain = str((credentials.extra or {}).get("shop_key") or shop.platform_shop_id)
        domain = domain.strip().lower()
        if not MYSHOPIFY_DOMAIN.fullmatch(domain):
            raise PlatformConfigError(
                "the shop's Shopify id must be its myshopify domain (name.myshopify.com)",
                platform=cls.platform,
            )
        return f"https://{domain}"

    def __init__(self, *, shop, credentials, http):
        super().__init__(shop=shop, credentials=credentials, http=http)
        extra = credentials.extra or {}
        self.api_version = extra.get("api_version") or DEFAULT_API_VERSION
        self.cancel_request_tag = (
            extra.get("cancel_request_tag") or DEFAULT_CANCEL_REQUEST_TAG
        ).lower()
        self.location_id = str(extra.get("location_id") or "")

    # --- HTTP -------------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return self.http.url(f"/admin/api/{self.api_version}/{path}")

    def _request(
        self, method: str, path: str, *, params: dict | None = None, body: dict | None = None
    ) -> httpx.Response:
        def build() -> httpx.Request:
            headers = {
                "X-Shopify-Access-Token": self.credentials.access_token,
                "Accept": "application/json",
            }
            if body is not None:
                return httpx.Request(
                    method, self._url(path), params=params, json=body, headers=headers
                )
            return httpx.Request(method, self._url(path), params=params, headers=headers)

        return self.http.send(build, check=self._check)

    def _check(self, response: httpx.Response) -> None:
        """Shopify answers errors with plain HTTP statuses and an `errors` body."""
        status = response.status_code
        if status < 400:
            return
        try:
            message = _error_message(response.json())
        except ValueError:
            message = ""
        # Not Shopify's error shape: say what it was, never quote it.
        message = (
            message or f"HTTP {status} ({safe_media_type(response.headers.get('content-type'))})"
        )
        kwargs = {
            "status": status,
            "request_id": response.headers.get("X-Request-Id", ""),
            "platform": self.platform,
        }
        if status in (401, 403):
            raise PlatformAuthError(message, **kwargs)
        if status == 404:
            raise PlatformNotFound(message, **kwargs)
        raise PlatformRequestError(message, **kwargs)

    # --- orders -----------------------------------------------------------------------------

    def fetch_orders(
        self,
        *,
        updated_since: datetime,
        updated_until: datetime | None = None,
        page_token: str | None = None,
    ) -> OrderPage:
        if page_token:
            # Shopify rejects any filter next to page_info: the cursor carries them.
            params = {"page_info": page_token, "limit": self.page_size}
        else:
            params = {
                "status": "any",
                "updated_at_min": _iso(updated_since),
                "limit": self.page_size,
                "order": "updated_at asc",
            }
            if updated_until is not None:
                # Shopify's max is inclusive and to the second: ask up to the next whole second
                # and drop what is not strictly before `updated_until` below.
                ceiling = updated_until.replace(microsecond=0)
                if ceiling < updated_until:
                    ceiling += timedelta(seconds=1)
                params["updated_at_max"] = _iso(ceiling)
        response = self._request("GET", "orders.json", params=params)
        payload = self.response_json(response)
        unmapped: list[UnmappedOrder] = []
        orders = orders_map(
            payload.get("orders") or [],
            self._order,
            id_key="id",
            platform=self.platform,
            unmapped=unmapped,
        )
        since = updated_since.astimezone(UTC).replace(microsecond=0)
        orders = [
            order
            for order in orders
            if order.updated_at >= since
            and (updated_until is None or order.updated_at < updated_until)
        ]
        orders.sort(key=lambda order: (order.updated_at, order.platform_order_id))
        return OrderPage(
            orders=orders, next_page_token=self._next_page_info(response), unmapped=unmapped
        )

    @staticmethod
    def _next_page_info(response: httpx.Response) -> str | None:
        link = response.links.get("next")
        if not link or not link.get("url"):
            return None
        values = parse_qs(urlsplit(link["url"]).query).get("page_info")
        return values[0] if values else None

    def fetch_orders_by_id(
        self, *, platform_order_ids: list[str], unmapped: list[UnmappedOrder] | None = None
    ) -> list[PlatformOrder]:
        found: list[PlatformOrder] = []
        failed: list[UnmappedOrder] = [] if unmapped is None else unmapped
        ids = [str(i) for i in platform_order_ids]
        for start in range(0, len(ids), MAX_IDS):
            chunk = ids[start : start + MAX_IDS]
            # status=any: without it Shopify leaves out closed and cancelled orders.
            params = {"ids": ",".join(chunk), "status": "any", "limit": MAX_IDS}
            payload = self.response_json(self._request("GET", "orders.json", params=params))
            found += orders_map(
                payload.get("orders") or [],
                self._order,
                id_key="id",
                platform=self.platform,
                unmapped=failed,
            )
        if unmapped is None:
            unmapped_raise(failed, platform=self.platform)
        return found

    def _status(self, raw: dict) -> str:
        if raw.get("cancelled_at"):
            return "cancelled"
        fulfillment = (raw.get("fulfillment_status") or "").lower()
        if fulfillment == "restocked":
            # Every item went back on the shelf (refund or cancel): nothing left to ship.
            return "cancelled"
        if fulfillment in SHIPPED_FULFILLMENT:
            states = {
                (item.get("shipment_status") or "").lower()
                for item in raw.get("fulfillments") or []
                if (item.get("status") or "success") == "success"
            }
            if fulfillment == "fulfilled" and states == {"delivered"}:
                return "delivered"
            if (
                fulfillment == "fulfilled"
                and states
                and states
                <= {
                    "in_transit",
                    "out_for_delivery",
                    "delivered",
                    "attempted_delivery",
                    "ready_for_pickup",
                }
            ):
                return "in_transit"
            return "shipped"
        if (raw.get("financial_status") or "").lower() in VOID_FINANCIAL:
            return "cancelled"
        return "new"

    def _order(self, raw: dict) -> PlatformOrder:
        if not isinstance(raw, dict) or raw.get("id") in (None, ""):
            raise PlatformResponseError("order without an id", platform=self.platform)
        order_id = str(raw["id"])
        updated_at = _datetime(raw.get("updated_at")) or _datetime(raw.get("created_at"))
        if updated_at is None:
            raise PlatformResponseError(f"order {order_id} has no updated_at", platform="shopify")
        financial = raw.get("financial_status") or "pending"
        platform_status = f"{financial}/{raw.get('fulfillment_status') or 'unfulfilled'}"
        if raw.get("cancelled_at"):
            platform_status += "/cancelled"
        tags = {tag.strip().lower() for tag in (raw.get("tags") or "").split(",") if tag.strip()}
        cancel_requested = self.cancel_request_tag in tags and not raw.get("cancelled_at")
        customer = raw.get("customer") or {}
        address = self._address(raw.get("shipping_address"), fallback_phone=raw.get("phone"))
        buyer_name = " ".join(
            part for part in (customer.get("first_name"), customer.get("last_name")) if part
        ) or (address.name if address else "")
        shipping = (raw.get("total_shipping_price_set") or {}).get("shop_money") or {}
        shipping_fee = (
            _decimal(shipping.get("amount"), field="total_shipping_price_set")
            if shipping
            else sum(
                (_decimal(line.get("price")) for line in raw.get("shipping_lines") or []), ZERO
            )
        )
        paid = financial not in {"pending", "authorized", "voided"}
        return PlatformOrder(
            platform_order_id=order_id,
            platform_status=platform_status[:40],
            status=self._status(raw),
            updated_at=updated_at,
            placed_at=_datetime(raw.get("created_at")),
            paid_at=_datetime(raw.get("processed_at")) if paid else None,
            currency=raw.get("currency") or "USD",
            subtotal=_decimal(raw.get("subtotal_price"), field="subtotal_price"),
            shipping_fee=shipping_fee,
            seller_discount=_decimal(raw.get("total_discounts"), field="total_discounts"),
            tax=_decimal(raw.get("total_tax"), field="total_tax"),
            total=_decimal(raw.get("total_price"), field="total_price"),
            buyer_name=buyer_name,
            buyer_email=raw.get("email") or raw.get("contact_email") or "",
            buyer_user_id=str(customer.get("id") or ""),
            buyer_note=raw.get("note") or "",
            address=address,
            cancel_requested=cancel_requested,
            cancel_requested_at=self._cancel_requested_at(raw, updated_at)
            if cancel_requested
            else None,
            cancelled_at=_datetime(raw.get("cancelled_at")),
            lines=[self._line(item) for item in raw.get("line_items") or []],
            raw=raw,
        )

    @staticmethod
    def _cancel_requested_at(raw: dict, updated_at: datetime) -> datetime:
        """When the buyer asked: the order's `cancel_requested_at` note attribute if whoever
        tagged the order recorded it, else the order's last update (an upper bound)."""
        for attribute in raw.get("note_attributes") or []:
            if isinstance(attribute, dict) and attribute.get("name") == "cancel_requested_at":
                try:
                    return _datetime(attribute.get("value")) or updated_at
                except PlatformResponseError:
                    break
        return updated_at

    @staticmethod
    def _address(raw: dict | None, *, fallback_phone: str | None) -> PlatformAddress | None:
        if not raw:
            # Digital goods or local pickup: no shipping address at all.
            return None
        name = raw.get("name") or " ".join(
            part for part in (raw.get("first_name"), raw.get("last_name")) if part
        )
        return PlatformAddress(
            name=name,
            phone=raw.get("phone") or fallback_phone or "",
            line1=raw.get("address1") or "",
            line2=raw.get("address2") or "",
            city=raw.get("city") or "",
            state=raw.get("province_code") or raw.get("province") or "",
            postal_code=raw.get("zip") or "",
            country=raw.get("country_code") or "US",
            raw=raw,
        )

    @staticmethod
    def _line(item: dict) -> PlatformLine:
        quantity = int(item.get("quantity") or 0)
        unit_price = _decimal(item.get("price"), field="line_items.price")
        discount = _decimal(item.get("total_discount"), field="line_items.total_discount")
        tax = sum((_decimal(t.get("price")) for t in item.get("tax_lines") or []), ZERO)
        line_id = str(item.get("id"))
        return PlatformLine(
            platform_line_id=line_id,
            quantity=quantity,
            seller_sku=item.get("sku") or "",
            platform_sku_id=str(item.get("variant_id") or ""),
            product_name=item.get("title") or item.get("name") or "",
            unit_price=unit_price,
            discount=discount,
            tax=tax,
            total=unit_price * quantity - discount,
            # A line edited or refunded away before shipping leaves nothing to fulfil
            # (`current_quantity` is the quantity after order edits and refunds).
            is_cancelled=item.get("current_quantity") == 0
            or (
                quantity > 0
                and item.get("fulfillable_quantity") == 0
                and not item.get("fulfillment_status")
            ),
            platform_line_ids=[line_id],
        )

    # --- fulfilment -------------------------------------------------------------------------

    def _tracking_info(self, request: ShipRequest) -> dict:
        code = request.carrier_code.lower()
        company = request.platform_provider_id or TRACKING_COMPANIES.get(code, request.carrier_code)
        info = {"number": request.tracking_number, "company": company}
        if code in TRACKING_URLS:
            info["url"] = TRACKING_URLS[code].format(number=request.tracking_number)
        return info

    def ship(self, *, request: ShipRequest) -> ShipResult:
        """Create one fulfillment (one tracking number) for the requested lines.

        Shopify fulfils fulfillment-order lines, not order lines: read the order's open
        fulfillment orders and translate order line ids (and quantities) into them.
        """
        payload = self.response_json(
            self._request("GET", f"orders/{request.platform_order_id}/fulfillment_orders.json")
        )
        # Order line id -> units still to place (None: all that is left on that line).
        wanted: dict[str, int | None] = {
            str(line_id): None for line_id in request.platform_line_ids
        }
        wanted.update({str(k): int(v) for k, v in request.line_quantities.items() if int(v) > 0})
        groups = []
        placed: dict[str, int] = {}
        for fulfillment_order in payload.get("fulfillment_orders") or []:
            if fulfillment_order.get("status") not in ("open", "in_progress"):
                continue
            items = []
            for item in fulfillment_order.get("line_items") or []:
                line_id = str(item.get("line_item_id"))
                remaining = int(item.get("fulfillable_quantity") or 0)
                if remaining <= 0 or (wanted and line_id not in wanted):
                    continue
                # One order line can be split over several fulfillment orders (locations).
                target = wanted.get(line_id)
                quantity = (
                    remaining if target is None else min(remaining, target - placed.get(line_id, 0))
                )
                if quantity > 0:
                    items.append({"id": item["id"], "quantity": quantity})
                    placed[line_id] = placed.get(line_id, 0) + quantity
            if items:
                groups.append(
                    {
                        "fulfillment_order_id": fulfillment_order["id"],
                        "fulfillment_order_line_items": items,
                    }
                )
        short = [
            f"{line_id} ({placed.get(line_id, 0)} of {target} unfulfilled)"
            if target is not None
            else f"{line_id} (nothing unfulfilled)"
            for line_id, target in sorted(wanted.items())
            if (placed.get(line_id, 0) < target if target is not None else line_id not in placed)
        ]
        if short or not groups:
            raise PlatformRequestError(
                "cannot fulfil line(s) " + ", ".join(short or ["(none left to ship)"]),
                platform=self.platform,
            )
        body = {
            "fulfillment": {
                "line_items_by_fulfillment_order": groups,
                "tracking_info": self._tracking_info(request),
                # tkerp decides when buyers hear from the shop, not Shopify.
                "notify_customer": False,
            }
        }
        created = self.response_json(self._request("POST", "fulfillments.json", body=body))
        fulfillment = created.get("fulfillment") or {}
        if fulfillment.get("id") in (None, ""):
            raise PlatformResponseError("fulfillment created without an id", platform="shopify")
        return ShipResult(platform_package_id=str(fulfillment["id"]), raw=created)

    def update_tracking(self, *, request: ShipRequest) -> ShipResult:
        if not request.platform_package_id:
            raise PlatformRequestError(
                "update_tracking needs the fulfillment id (platform_package_id)",
                platform=self.platform,
            )
        body = {
            "fulfillment": {
                "tracking_info": self._tracking_info(request),
                "notify_customer": False,
            }
        }
        updated = self.response_json(
            self._request(
                "POST",
                f"fulfillments/{request.platform_package_id}/update_tracking.json",
                body=body,
            )
        )
        return ShipResult(platform_package_id=request.platform_package_id, raw=updated)

    # --- inventory --------------------------------------------------------------------------

    def set_inventory(self, *, updates: list[InventoryUpdate]) -> list[InventoryResult]:
        """One `inventory_levels/set.json` per listing (REST has no bulk set).

        A rejected item (unknown inventory item, location not stocked) is a failed result;
        auth errors and outages stop the batch, as retrying item by item would not help.
        """
        results = []
        for update in updates:
            location_id = update.location_id or self.location_id
            if not location_id:
                results.append(
                    InventoryResult(
                        platform_sku_id=update.platform_sku_id,
                        ok=False,
                        error='no location: set credentials.extra["location_id"]',
                        code="location",
                    )
                )
                continue
            body = {
                "location_id": _as_id(location_id),
                "inventory_item_id": _as_id(update.platform_sku_id),
                "available": int(update.quantity),
            }
            try:
                self._request("POST", "inventory_levels/set.json", body=body)
            except (PlatformRequestError, PlatformNotFound) as exc:
                results.append(
                    InventoryResult(
                        platform_sku_id=update.platform_sku_id,
                        ok=False,
                        error=exc.message,
                        code=str(exc.status or ""),
                    )
                )
                continue
            results.append(InventoryResult(platform_sku_id=update.platform_sku_id, ok=True))
        return results

    def get_inventory(self, *, platform_sku_ids: list[str]) -> list[InventoryLevel]:
        levels: list[InventoryLevel] = []
        ids = [str(i) for i in platform_sku_ids]
        for start in range(0, len(ids), MAX_INVENTORY_IDS):
            params = {
                "inventory_item_ids": ",".join(ids[start : start + MAX_INVENTORY_IDS]),
                "limit": 250,
            }
            if self.location_id:
                params["location_ids"] = self.location_id
            payload = self.response_json(
                self._request("GET", "inventory_levels.json", params=params)
            )
            for level in payload.get("inventory_levels") or []:
                levels.append(
                    InventoryLevel(
                        platform_sku_id=str(level.get("inventory_item_id")),
                        quantity=int(level.get("available") or 0),
                    )
                )
        return levels

    # --- cancellations ----------------------------------------------------------------------

    def answer_cancellation(
        self, *, cancel_id: str, platform_order_id: str, approve: bool, reason: str = ""
    ) -> None:
        if not approve:
            raise PlatformRequestError(
                "Shopify has no cancellation requests to reject: the buyer asked the seller "
                "directly; reply to the buyer and remove the cancel-request tag",
                platform=self.platform,
            )
        body = {"reason": "customer", "email": False, "restock": True}
        if reason:
            body["note"] = reason
        self._request("POST", f"orders/{platform_order_id}/cancel.json", body=body)

    # --- webhooks ---------------------------------------------------------------------------

    @classmethod
    def verify_webhook(cls, *, headers: Mapping[str, str], body: bytes, credentials) -> bool:
        """X-Shopify-Hmac-Sha256 is base64(HMAC-SHA256(raw body, app secret))."""
        received = _header(headers, "X-Shopify-Hmac-Sha256").strip()
        secret = credentials.webhook_secret or credentials.app_secret
        if not received or not secret:
            return False
        expected = base64.b64encode(
            hmac.new(secret.encode(), body, hashlib.sha256).digest()
        ).decode()
        return hmac.compare_digest(expected.encode(), received.encode())

    @classmethod
    def parse_webhook(cls, *, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        topic = _header(headers, "X-Shopify-Topic")
        delivery_id = _header(headers, "X-Shopify-Webhook-Id")
        if not topic or not delivery_id:
            raise PlatformResponseError(
                "webhook without X-Shopify-Topic / X-Shopify-Webhook-Id", platform=cls.platform
            )
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            raise PlatformResponseError("webhook body is not JSON", platform=cls.platform) from None
        shop_domain = _header(headers, "X-Shopify-Shop-Domain")
        problem = _webhook_shape_problem(topic=topic, payload=payload, shop_domain=shop_domain)
        if problem:
            raise PlatformResponseError(
                f"the body does not fit the topic {topic!r}: {problem}", platform=cls.platform
            )
        order_ids: list[str] = []
        if isinstance(payload, dict):
            if topic.startswith("orders/") and payload.get("id") not in (None, ""):
                order_ids.append(str(payload["id"]))
            elif payload.get("order_id") not in (None, ""):
                # fulfillments/*, refunds/create, order_transactions/create...
                order_ids.append(str(payload["order_id"]))
        return WebhookEvent(
            delivery_id=delivery_id,
            topic=topic,
            platform_order_ids=order_ids,
            shop_key=_header(headers, "X-Shopify-Shop-Domain"),
            raw=payload if isinstance(payload, dict) else {"body": payload},
        )


# Topics whose body is the Shop resource (the app's own shop), not an order.
SHOP_TOPICS = {"app/uninstalled", "shop/update"}
# Topics whose body is another resource that names its order (`order_id`).
ORDER_CHILD_TOPIC_PREFIXES = (
    "fulfillments/",
    "fulfillment_events/",
    "refunds/",
    "order_transactions/",
)


def _is_id(value) -> bool:
    """A Shopify resource id: a JSON number (a digit string tolerated), never a bool."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, str) and value.isdigit())


def _webhook_shape_problem(*, topic: str, payload, shop_domain: str) -> str:
    """Why a webhook body cannot be what its topic says ("" when it fits).

    Shopify's HMAC covers the body only: the topic header could be anything on a captured body.
    So the body must be the resource the topic delivers: the shop itself (with the domain the
    headers name) for app/uninstalled and shop/update, an order (id and line items; orders/delete
    carries the id alone) for orders/*, and a record naming its order for fulfillments, refunds
    and transactions. Topics tkerp does not act on are taken as they come.
    """
    if not isinstance(payload, dict):
        return "the body is not a JSON object"
    if topic in SHOP_TOPICS:
        if not _is_id(payload.get("id")):
            return "a shop has a numeric id"
        if (
            str(payload.get("myshopify_domain") or "").strip().lower()
            != shop_domain.strip().lower()
        ):
            return "a shop names its own myshopify domain, the one this webhook came from"
        if "line_items" in payload or "order_id" in payload:
            return "this is an order's body, not a shop's"
        return ""
    if topic == "orders/delete":
        return "" if _is_id(payload.get("id")) else "an order has a numeric id"
    if topic == "orders/edited":
        edit = payload.get("order_edit")
        if not isinstance(edit, dict) or not _is_id(edit.get("order_id")):
            return "an order edit names its order"
        return ""
    if topic.startswith("orders/"):
        if not _is_id(payload.get("id")):
            return "an order has a numeric id"
        if not isinstance(payload.get("line_items"), list):
            return "an order has line items"
        if "myshopify_domain" in payload:
            return "this is a shop's body, not an order's"
        return ""
    if topic.startswith(ORDER_CHILD_TOPIC_PREFIXES):
        return "" if _is_id(payload.get("order_id")) else "it names no order"
    return ""


def _as_id(value: str) -> int | str:
    """Shopify ids are JSON numbers; keep anything non-numeric as given (and let it fail)."""
    text = str(value)
    return int(text) if text.isdigit() else text
