"""The one interface every platform connector implements, and the shapes it speaks in.

A connector turns a platform's HTTP API into these plain dataclasses; it never touches our
models. Sync, webhooks, the stock push and the tracking outbox call connectors only through this
interface, so adding a platform means one module in `shops/platforms/` and one sandbox.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from tkerp.dates import datetime_in_range, datetime_range_text
from tkerp.outbound import scrub_reason

if TYPE_CHECKING:
    import httpx

    from shops.models import Shop, ShopCredentials
    from shops.platforms.http import PlatformHttpClient, RateLimit

logger = logging.getLogger("tkerp.platforms")

ZERO = Decimal("0")


# --- errors ---------------------------------------------------------------------------------


class PlatformError(Exception):
    """A platform answered with an error (or not at all). Carries the platform's own code.

    Its text ends up in sync runs, the shop's last error, alerts and logs, which the operator
    role reads: the message is scrubbed here, once (`tkerp.outbound.scrub_reason`), and callers
    pass a short reason (the platform's error field, or our own words), never a body excerpt.
    """

    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        code: str | int | None = None,
        status: int | None = None,
        request_id: str = "",
        platform: str = "",
    ):
        self.message = scrub_reason(message)
        self.code = scrub_reason(code, limit=40) if isinstance(code, str) else code
        self.status = status
        # Request ids are short tokens; anything else is not a request id.
        self.request_id = "".join(ch for ch in str(request_id or "") if ch.isalnum() or ch in "-_")[
            :64
        ]
        self.platform = platform
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = [self.platform or "platform"]
        if self.status is not None:
            parts.append(f"HTTP {self.status}")
        if self.code not in (None, ""):
            parts.append(f"code {self.code}")
        text = " ".join(parts) + f": {self.message}"
        if self.request_id:
            text += f" (request {self.request_id})"
        return text


class PlatformRateLimited(PlatformError):
    """Throttled (HTTP 429 or the platform's too-many-requests code)."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs):
        self.retry_after = retry_after
        super().__init__(message, **kwargs)


class PlatformUnavailable(PlatformError):
    """5xx, timeout or connection failure: worth retrying."""

    retryable = True


class PlatformAuthError(PlatformError):
    """Bad signature, expired or revoked token, missing scope."""


class PlatformTokenExpired(PlatformAuthError):
    """The access token expired: refresh it and try again."""


class PlatformRequestError(PlatformError):
    """The platform rejected the request as invalid (our bug or bad data); do not retry."""


class PlatformConfigError(PlatformError):
    """The shop's own settings cannot work (no API host for its region or domain, the sandbox
    is off on this server): a person must fix them; retrying does not help."""


class PlatformNotFound(PlatformError):
    """The object does not exist (or is not this seller's)."""


class PlatformResponseError(PlatformError):
    """The platform answered something we cannot parse: a clear error, nothing half-stored.

    `field` names the part of the answer at fault where the mapping knows it
    ("payment.total_amount"); an order's reject carries it (`UnmappedOrder`)."""

    def __init__(self, message: str, *, field: str = "", **kwargs):
        self.field = field
        super().__init__(message, **kwargs)


class WebhookVerificationError(Exception):
    """A webhook's signature did not verify."""


def parse_iso_datetime(value, *, platform: str = "") -> datetime | None:
    """An aware UTC datetime from a platform's ISO 8601 text (Z or an offset; a naive value is
    read as UTC rather than guessed). Empty gives None; anything else unparseable, or outside
    the years tkerp accepts (`tkerp.dates.datetime_in_range`), is a
    `PlatformResponseError`, never a half-mapped order."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        parsed = parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise PlatformResponseError(f"bad timestamp {value!r}", platform=platform) from None
    if not datetime_in_range(parsed):
        raise PlatformResponseError(
            f"timestamp {value!r} is not {datetime_range_text()}", platform=platform
        )
    return parsed


# --- mapping a page of orders -----------------------------------------------------------------

#: What mapping one malformed order raises: our own `PlatformResponseError`, or Python's own
#: error for a value of the wrong shape (a list where an object belongs, "12,50" for a count...).
MAPPING_ERRORS = (
    PlatformResponseError,
    ArithmeticError,
    AttributeError,
    LookupError,
    TypeError,
    ValueError,
)


@dataclass(slots=True)
class UnmappedOrder:
    """An order of a platform's answer that could not be mapped: its id (as far as the answer
    gives one), the field at fault where known, and why. Ingest rejects it by that id
    (`orders.ingest.orders_store(unmapped=...)`) and the rest of the page goes in."""

    platform_order_id: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"order {self.platform_order_id or '(no id)'}: {self.field}: {self.message}"


def orders_map(
    raw_orders: list,
    map_order: Callable[[Any], PlatformOrder],
    *,
    id_key: str,
    platform: str,
    unmapped: list[UnmappedOrder],
) -> list[PlatformOrder]:
    """Map each of a page's `raw_orders` on its own: one that raises a mapping error (see
    `MAPPING_ERRORS`) is added to `unmapped`, named by its `id_key`, and the others are still
    mapped. One bad order must not stop a shop's sync on that page forever."""
    orders = []
    for raw in raw_orders:
        try:
            orders.append(map_order(raw))
        except MAPPING_ERRORS as exc:
            unmapped.append(order_unmapped(raw, exc, id_key=id_key, platform=platform))
    return orders


def order_unmapped(raw, exc: Exception, *, id_key: str, platform: str) -> UnmappedOrder:
    """The reject for the raw order `raw` whose mapping raised `exc`."""
    raw_id = raw.get(id_key) if isinstance(raw, dict) else None
    # Shown and stored (jsonb, alert text): printable characters only, as long as our ids.
    order_id = "".join(ch for ch in str(raw_id or "") if ch.isprintable())[:100]
    if isinstance(exc, PlatformResponseError):
        # The order's id is the reject's own: "order 42: payment.total is ..." -> "payment..."
        message = exc.message.removeprefix(f"order {order_id}").lstrip(": ") or exc.message
        field_name = exc.field
    else:
        logger.warning("%s order %s could not be mapped", platform, order_id, exc_info=True)
        message = f"cannot be read ({type(exc).__name__}: {scrub_reason(exc, limit=200)})"
        field_name = ""
    return UnmappedOrder(platform_order_id=order_id, field=field_name or "order", message=message)


def unmapped_raise(unmapped: list[UnmappedOrder], *, platform: str) -> None:
    """For callers that want every order or an error: raise for the first unmapped one."""
    if unmapped:
        raise PlatformResponseError(str(unmapped[0]), platform=platform)


# --- shapes ---------------------------------------------------------------------------------


@dataclass(slots=True)
class PlatformAddress:
    name: str = ""
    phone: str = ""
    line1: str = ""
    line2: str = ""
    city: str = ""
    state: str = ""
    postal_code: str = ""
    country: str = "US"
    masked: bool = False
    raw: dict = field(default_factory=dict)


@dataclass(slots=True)
class PlatformLine:
    """One order line as tkerp stores it (TikTok's one-unit line items already grouped by SKU)."""

    platform_line_id: str
    quantity: int
    seller_sku: str = ""
    platform_sku_id: str = ""
    product_name: str = ""
    unit_price: Decimal = ZERO
    discount: Decimal = ZERO
    tax: Decimal = ZERO
    total: Decimal = ZERO
    is_cancelled: bool = False
    platform_line_ids: list[str] = field(default_factory=list)


@dataclass(slots=True)
class PlatformOrder:
    """An order in the platform-neutral shape `orders.ingest` stores.

    `status` is already mapped to an `orders.models.OrderStatus` value; `platform_status` keeps
    the platform's own word. `ship_by` is the platform's deadline when it gives one (else None and
    the shop policy applies).
    """

    platform_order_id: str
    platform_status: str
    status: str
    updated_at: datetime
    placed_at: datetime | None = None
    paid_at: datetime | None = None
    currency: str = "USD"
    subtotal: Decimal = ZERO
    shipping_fee: Decimal = ZERO
    seller_discount: Decimal = ZERO
    platform_discount: Decimal = ZERO
    tax: Decimal = ZERO
    total: Decimal = ZERO
    creator_commission: Decimal = ZERO
    # The creator the platform credits the sale to, where the order itself says so (TikTok's
    # order detail does not: its affiliate orders API does, see `fetch_affiliate_orders`).
    creator_username: str = ""
    creator_content_type: str = ""
    creator_content_id: str = ""
    buyer_name: str = ""
    buyer_email: str = ""
    buyer_user_id: str = ""
    buyer_note: str = ""
    seller_note: str = ""
    address: PlatformAddress | None = None
    is_presale: bool = False
    is_cod: bool = False
    ship_by: datetime | None = None
    cancel_requested: bool = False
    cancel_requested_at: datetime | None = None
    cancel_answer_by: datetime | None = None
    shipped_at: datetime | None = None
    delivered_at: datetime | None = None
    cancelled_at: datetime | None = None
    lines: list[PlatformLine] = field(default_factory=list)
    raw: dict = field(default_factory=dict)


@dataclass(slots=True)
class OrderPage:
    """One page of changed orders, oldest update first, and the token for the next page."""

    orders: list[PlatformOrder]
    next_page_token: str | None = None
    # Orders of the page that could not be mapped: ingest rejects them by id (`orders_map`).
    unmapped: list[UnmappedOrder] = field(default_factory=list)


@dataclass(slots=True)
class ShipRequest:
    """Tell the platform a parcel left: which lines, which carrier, which tracking number."""

    platform_order_id: str
    tracking_number: str
    carrier_code: str  # our carrier code (usps, ups...)
    platform_provider_id: str = ""  # the platform's shipping-provider id for that carrier
    platform_line_ids: list[str] = field(default_factory=list)  # empty: the whole order
    line_quantities: dict[str, int] = field(default_factory=dict)  # platform line id -> qty
    shipped_at: datetime | None = None
    platform_package_id: str = ""


@dataclass(slots=True)
class ShipResult:
    platform_package_id: str = ""
    already_shipped: bool = False  # the platform had it already; nothing was posted
    warnings: list[str] = field(default_factory=list)
    raw: dict = field(default_factory=dict)


@dataclass(slots=True)
class ShipOutcome:
    """One package's answer inside a batch ship call: its result, or the error for it alone.
    `result.already_shipped` there means the package had shipped before the call, with a number
    the answer does not give (the outbox asks the platform which)."""

    request: ShipRequest
    result: ShipResult | None = None
    error: PlatformError | None = None


@dataclass(slots=True)
class InventoryUpdate:
    """Set the absolute quantity a platform may sell for one listing."""

    platform_sku_id: str
    quantity: int
    platform_product_id: str = ""
    seller_sku: str = ""
    location_id: str = ""  # warehouse / location id on the platform, where it needs one


@dataclass(slots=True)
class InventoryResult:
    """What the platform said of one listing's update. `error` and `code` quote the platform's
    per-SKU error text, which is stored on the push and shown in the admin: scrubbed here, once,
    like `PlatformError`'s message."""

    platform_sku_id: str
    ok: bool
    error: str = ""
    code: str = ""

    def __post_init__(self):
        self.error = scrub_reason(self.error) if self.error else ""
        self.code = scrub_reason(self.code, limit=40) if self.code else ""


@dataclass(slots=True)
class InventoryLevel:
    platform_sku_id: str
    quantity: int
    platform_product_id: str = ""
    seller_sku: str = ""


@dataclass(slots=True)
class CancellationRequest:
    """A buyer's cancellation request, waiting for the seller's answer."""

    cancel_id: str
    platform_order_id: str
    status: str
    reason: str = ""
    requested_at: datetime | None = None
    answer_by: datetime | None = None
    platform_line_ids: list[str] = field(default_factory=list)
    raw: dict = field(default_factory=dict)


@dataclass(slots=True)
class ReturnRequest:
    """A buyer's return or refund request as the platform reports it."""

    return_id: str
    platform_order_id: str
    status: str
    return_type: str = ""
    reason: str = ""
    requested_at: datetime | None = None
    updated_at: datetime | None = None
    lines: list[dict] = field(default_factory=list)  # {platform_line_id, seller_sku, quantity}
    raw: dict = field(default_factory=dict)


@dataclass(slots=True)
class AffiliateOrder:
    """Who the platform credits an order's sale to: a creator (affiliate), the content that
    sold it (LIVE, VIDEO, SHOWCASE) and the commission owed to them for it."""

    platform_order_id: str
    creator_username: str
    content_type: str = ""
    content_id: str = ""
    commission: Decimal = ZERO
    raw: dict = field(default_factory=dict)


@dataclass(slots=True)
class TokenSet:
    access_token: str
    access_token_expires_at: datetime | None
    refresh_token: str = ""
    refresh_token_expires_at: datetime | None = None


@dataclass(slots=True)
class WebhookEvent:
    """A verified webhook, reduced to what we act on: a delivery id and the orders it touches."""

    delivery_id: str
    topic: str
    platform_order_ids: list[str] = field(default_factory=list)
    shop_key: str = ""  # the platform's shop id/domain the event is for
    raw: dict = field(default_factory=dict)


def tracking_numbers_in(raw) -> set[str]:
    """Every `tracking_number(s)` value anywhere in a platform's order detail, upper-cased."""
    found: set[str] = set()

    def walk(value, key=""):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, k)
        elif isinstance(value, list):
            for v in value:
                walk(v, key)
        elif value and "tracking_number" in key.lower() and isinstance(value, str):
            found.add(value.strip().upper())

    walk(raw)
    return found


def package_id_in(raw, number: str) -> str:
    """The id of the package holding tracking `number` in a platform's order detail: the
    `package_id` (TikTok's line items) or `id` (Shopify's fulfillments) of the object that
    carries the number under a `tracking_number(s)` key; "" when none does. The order's own
    `id` is never a package's (a TikTok order carries its latest number beside it)."""
    wanted = number.strip().upper()

    def walk(value, order: bool = False) -> str:
        if isinstance(value, list):
            return next(filter(None, map(walk, value)), "")
        if not isinstance(value, dict):
            return ""
        for key, held in value.items():
            numbers = held if isinstance(held, list) else [held]
            if "tracking_number" in key.lower() and any(
                isinstance(n, str) and n.strip().upper() == wanted for n in numbers
            ):
                package = value.get("package_id") or (None if order else value.get("id"))
                if package:
                    return str(package)
        return next(filter(None, map(walk, value.values())), "")

    return walk(raw, order=True)


# --- the interface --------------------------------------------------------------------------


class Connector(abc.ABC):
    """One platform's API for one shop. Methods raise `PlatformError` subclasses, never
    `httpx` errors; nothing here writes to our database except `refresh_access_token`'s caller."""

    platform: ClassVar[str]
    #: The platform's production API host (see `live_base_url` for per-region hosts).
    default_base_url: ClassVar[str]
    #: The client-side limit we keep to; `credentials.extra["rate_limit"]` may override it.
    rate_limit: ClassVar[RateLimit]
    #: How many orders one page returns (the platform's realistic maximum).
    page_size: ClassVar[int] = 100
    #: Whether `fetch_orders` hands out its pages oldest update first across the whole pass
    #: (a sync may then advance its watermark after each stored page). False where the
    #: platform orders them otherwise (eBay: newest order first): the watermark then moves
    #: only once every page is stored, or a pass failing half-way would skip older pages.
    pages_in_update_order: ClassVar[bool] = True

    def __init__(self, *, shop: Shop, credentials: ShopCredentials, http: PlatformHttpClient):
        self.shop = shop
        self.credentials = credentials
        self.http = http

    @classmethod
    def partly_shipped(cls, platform_status: str) -> bool:
        """Whether the platform's own status (`PlatformOrder.platform_status`, as stored on the
        order) says some of the order has shipped and some not: such an order is open (its
        status maps to "new"), and which of its lines are gone only its parcels tell."""
        return False

    @classmethod
    def api_base_url(cls, *, shop: Shop, credentials: ShopCredentials) -> str:
        """Where this shop's requests go: the platform's own host for the shop, or tkerp's
        sandbox where this server enables it. Never a URL a tenant typed: a request carries
        the shop's token, and its reply's words reach the shop's pages."""
        from shops.models import ApiEndpoint
        from shops.platforms.http import sandbox_base_url

        if credentials.api_endpoint == ApiEndpoint.SANDBOX:
            return sandbox_base_url(cls.platform)
        return cls.live_base_url(shop=shop, credentials=credentials)

    @classmethod
    def live_base_url(cls, *, shop: Shop, credentials: ShopCredentials) -> str:
        """The platform's production host for this shop (one host unless overridden)."""
        return cls.default_base_url

    def response_json(self, response: httpx.Response) -> dict:
        """The response body as a JSON object, or `PlatformResponseError` saying it is not."""
        try:
            payload = response.json()
        except ValueError:
            raise PlatformResponseError(
                "response is not JSON", status=response.status_code, platform=self.platform
            ) from None
        if not isinstance(payload, dict):
            raise PlatformResponseError("response is not a JSON object", platform=self.platform)
        return payload

    # orders
    @abc.abstractmethod
    def fetch_orders(
        self,
        *,
        updated_since: datetime,
        updated_until: datetime | None = None,
        page_token: str | None = None,
    ) -> OrderPage:
        """Orders updated in [updated_since, updated_until), one page: oldest update first
        where `pages_in_update_order` (the default) says so."""

    @abc.abstractmethod
    def fetch_orders_by_id(
        self, *, platform_order_ids: list[str], unmapped: list[UnmappedOrder] | None = None
    ) -> list[PlatformOrder]:
        """Full detail of the given orders (missing ones are left out). An order that cannot be
        mapped is added to `unmapped` and left out too; without that list it is an error
        (`PlatformResponseError` naming it)."""

    # fulfilment
    @abc.abstractmethod
    def ship(self, *, request: ShipRequest) -> ShipResult:
        """Mark (part of) an order shipped with a tracking number."""

    #: Where the platform has no call that changes a tracking number it holds: what the seller
    #: must do instead (`str.format` with order, old, new, carrier). The outbox then sends
    #: nothing and raises an alert with these words.
    tracking_update_by_hand: ClassVar[str] = ""

    def update_tracking(self, *, request: ShipRequest) -> ShipResult:
        """Correct the tracking number of a package already marked shipped."""
        raise PlatformRequestError(
            "this platform does not support changing tracking", platform=self.platform
        )

    def shipped_tracking_numbers(self, *, platform_order_id: str) -> set[str] | None:
        """The tracking numbers the platform holds for the order (the outbox asks before it
        sends a number again); None where the platform cannot say. By default every
        `tracking_number(s)` value in the order's detail."""
        orders = self.fetch_orders_by_id(platform_order_ids=[platform_order_id])
        found: set[str] = set()
        for order in orders:
            found |= tracking_numbers_in(order.raw)
        return found

    def shipped_package_id(self, *, platform_order_id: str, tracking_number: str) -> str:
        """The platform's id of the package (Shopify: fulfillment) of the order that holds
        `tracking_number`, which an update of that number needs; "" where it cannot say. By
        default read from the order's detail (`package_id_in`)."""
        for order in self.fetch_orders_by_id(platform_order_ids=[platform_order_id]):
            if found := package_id_in(order.raw, tracking_number):
                return found
        return ""

    def shipped_tracking_numbers_many(
        self, *, platform_order_ids: list[str]
    ) -> dict[str, set[str] | None]:
        """`shipped_tracking_numbers` for several orders (platforms whose order detail takes
        many ids answer them in one call)."""
        return {
            order_id: self.shipped_tracking_numbers(platform_order_id=order_id)
            for order_id in dict.fromkeys(platform_order_ids)
        }

    #: Packages one batch ship call takes; 0 where the platform has no batch ship call.
    ship_batch_max: ClassVar[int] = 0

    def ship_batch_size(self) -> int:
        """Packages this shop's batch ship calls carry: the platform's maximum, or less where
        `credentials.extra["ship_batch_size"]` says so (0: no batching)."""
        wanted = (self.credentials.extra or {}).get("ship_batch_size")
        if wanted is None:
            return self.ship_batch_max
        try:
            return max(0, min(int(wanted), self.ship_batch_max))
        except (TypeError, ValueError):
            return self.ship_batch_max

    def ship_batchable(self, request: ShipRequest) -> bool:
        """Whether `request` can go in a batch ship call (the platform already holds its
        package); the others are sent one by one with `ship`."""
        return False

    def ship_batch(self, *, requests: list[ShipRequest]) -> list[ShipOutcome]:
        """Ship up to `ship_batch_size()` batchable packages in one call; one outcome per
        request, in order. Raises only for the call as a whole (throttled, outage, auth)."""
        raise PlatformRequestError("this platform has no batch ship call", platform=self.platform)

    #: Words in an error that mean the platform refused the tracking number itself.
    tracking_rejection_words: ClassVar[tuple[str, ...]] = ("tracking number is invalid",)

    def tracking_rejected(self, error: PlatformError) -> bool:
        """Whether `error` is the platform rejecting the tracking number as invalid (the
        outbox's three-strike guard stops the shop's write-back on it)."""
        if not isinstance(error, PlatformRequestError):
            return False
        text = error.message.lower()
        return any(words in text for words in self.tracking_rejection_words)

    # inventory
    @abc.abstractmethod
    def set_inventory(self, *, updates: list[InventoryUpdate]) -> list[InventoryResult]:
        """Set absolute available quantities; per-item results, never partial silence."""

    @abc.abstractmethod
    def get_inventory(self, *, platform_sku_ids: list[str]) -> list[InventoryLevel]:
        """Read back what the platform currently offers (for reconcile)."""

    # cancellations
    #: (code, label) pairs a seller may reject a cancellation request with; empty where the
    #: platform takes no reason codes (orders.cancellations offers a generic list then).
    cancel_reject_reasons: ClassVar[tuple[tuple[str, str], ...]] = ()

    def fetch_cancellations(self, *, updated_since: datetime) -> list[CancellationRequest]:
        return []

    # affiliates (creators)
    def fetch_affiliate_orders(
        self, *, created_since: datetime, created_until: datetime
    ) -> list[AffiliateOrder]:
        """Orders created in the window that the platform credits to a creator; none where the
        platform has no affiliate API (the creator fields then stay blank)."""
        return []

    # returns
    def fetch_returns(self, *, updated_since: datetime) -> list[ReturnRequest]:
        """Return/refund requests changed since `updated_since`; none where the platform has no
        returns API wired up yet."""
        return []

    def answer_cancellation(
        self, *, cancel_id: str, platform_order_id: str, approve: bool, reason: str = ""
    ) -> None:
        raise PlatformRequestError(
            "this platform has no cancellation answer API", platform=self.platform
        )

    # auth
    def refresh_access_token(self) -> TokenSet | None:
        """Exchange the refresh token for a new pair; None where the platform has no refresh."""
        return None

    # webhooks
    @classmethod
    def verify_webhook(
        cls, *, headers: Mapping[str, str], body: bytes, credentials: ShopCredentials
    ) -> bool:
        """True if `body` was signed by the platform for these credentials."""
        return False

    @classmethod
    def parse_webhook(cls, *, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        """The delivery id and affected orders of a (verified) webhook body."""
        raise WebhookVerificationError(f"{cls.platform} webhooks are not supported")
