"""What every platform sandbox shares: the interface, store lookup, faults and rate limits."""

from __future__ import annotations

import abc
import random
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import ClassVar

from django.db import transaction
from django.db.models import F, JSONField, Value
from django.http import HttpRequest, HttpResponse
from django.utils.module_loading import import_string

from sandbox.models import SandboxOrder, SandboxProduct, SandboxShipment, SandboxStore
from shops.platforms.http import RateLimit, TokenBucket

SANDBOXES = {
    "tiktok": "sandbox.tiktok.TikTokSandbox",
    "shopify": "sandbox.shopify.ShopifySandbox",
    "amazon": "sandbox.amazon.AmazonSandbox",
    "ebay": "sandbox.ebay.EbaySandbox",
}

SANDBOX_BASE_URL = "http://sandbox.tkerp.internal/sandbox"


class SandboxInputError(ValueError):
    """An order handed to `load` is not in the platform's shape; says what and where."""


# --- orders described once, rendered in each platform's shape ---------------------------------


@dataclass(frozen=True, slots=True)
class DraftAddress:
    """A recipient as the buyer typed it (state as a two-letter code)."""

    name: str
    phone: str
    line1: str
    line2: str
    city: str
    state: str
    postal_code: str
    country: str = "US"


@dataclass(frozen=True, slots=True)
class DraftLine:
    """One product of an order: `discount` and `tax` are for the whole line (all units)."""

    product: SandboxProduct
    quantity: int
    unit_price: Decimal
    discount: Decimal = Decimal("0")
    tax: Decimal = Decimal("0")


@dataclass(frozen=True, slots=True)
class OrderDraft:
    """An order described once, platform-neutrally, for a sandbox to hold in its own shape
    (`SandboxPlatform.compose_order`). The demo seeds orders this way: the data set decides
    buyers, lines and times, each sandbox renders them as its platform's API would.

    `order_id` must already have the platform's id format; `number` (unique per store) seeds
    the platform's line and package ids. `paid_at` None is an order not paid yet (TikTok UNPAID,
    Shopify pending, Amazon Pending, eBay PENDING). `ship_by` is the platform's own deadline,
    where the platform gives one. `platform_discount` is a platform-funded coupon (TikTok only;
    elsewhere it is ignored). Money follows the platforms: the subtotal is the lines net of
    their discounts, and total = subtotal - platform discount + shipping + tax.
    """

    order_id: str
    number: int
    placed_at: datetime
    paid_at: datetime | None
    buyer_name: str
    buyer_email: str
    address: DraftAddress
    lines: tuple[DraftLine, ...]
    shipping_fee: Decimal = Decimal("0")
    platform_discount: Decimal = Decimal("0")
    note: str = ""
    buyer_user_id: str = ""
    ship_by: datetime | None = None
    presale: bool = False

    @property
    def updated_at(self) -> datetime:
        return max(self.placed_at, self.paid_at or self.placed_at)


def split_amount(amount: Decimal, parts: int) -> list[Decimal]:
    """`amount` in `parts` cent amounts that add up to it exactly (the first ones carry the odd
    cents): a line's discount or tax spread over TikTok's one-item-per-unit line items."""
    cents = int((Decimal(amount) * 100).to_integral_value(rounding=ROUND_HALF_UP))
    base, extra = divmod(cents, parts)
    return [Decimal(base + (1 if index < extra else 0)) / 100 for index in range(parts)]


#: Our carrier codes -> the name platforms show (TikTok provider names, Shopify companies...).
CARRIER_NAMES = {"usps": "USPS", "ups": "UPS", "fedex": "FedEx", "dhl": "DHL eCommerce"}


class SandboxPlatform(abc.ABC):
    """One platform's sandbox: order generation and loading, what it shows, its webhooks.

    The HTTP side lives in each module's `urlpatterns`, mounted at /sandbox/<platform>/.
    """

    platform: ClassVar[str]

    def new_shop_key(self, *, shop) -> str:
        """The platform's id for a newly connected shop (digits for TikTok, a domain for
        Shopify...)."""
        return str(7495000000000000000 + shop.pk)

    def listing_sku_id(self, *, listing) -> str:
        """The platform's id for a listed SKU (numeric on TikTok; the seller SKU on platforms
        whose listing APIs are keyed by it)."""
        return str(1730000000000000000 + listing.pk)

    def store_defaults(self) -> dict:
        """Platform-specific `SandboxStore` field defaults (realistic rate limits...)."""
        return {}

    @abc.abstractmethod
    def generate_order(
        self,
        *,
        store: SandboxStore,
        rng: random.Random,
        products: list[SandboxProduct],
        now: datetime,
        fresh: bool = False,
    ) -> dict:
        """One realistic paid order in the platform's order-detail shape (not yet stored).
        `fresh`: placed just now, as in a live stream that is happening (otherwise a sandbox
        may place it earlier, as a spike of the last hours)."""

    @abc.abstractmethod
    def load_order(self, *, store: SandboxStore, payload: dict) -> SandboxOrder:
        """Validate and store (insert or replace) one order given in the platform's shape."""

    @abc.abstractmethod
    def show(self, *, store: SandboxStore, what: str) -> list[dict]:
        """orders | inventory | shipments | cancellations, in the platform's own shapes."""

    @abc.abstractmethod
    def compose_order(self, *, store: SandboxStore, draft: OrderDraft) -> dict:
        """`draft` in the platform's order shape (not yet stored; `load_order(s)` stores it)."""

    @abc.abstractmethod
    def request_cancellation(
        self, *, store: SandboxStore, order: SandboxOrder, at: datetime | None = None
    ) -> None:
        """The buyer asks to cancel `order` (spikes do this sometimes), now or at `at`."""

    @abc.abstractmethod
    def ship_order(
        self,
        *,
        store: SandboxStore,
        order: SandboxOrder,
        tracking_number: str,
        carrier: str,
        at: datetime,
    ) -> SandboxShipment:
        """What the platform holds once the seller shipped every item of `order` in one parcel
        (`carrier`: usps, ups, fedex) at `at`: the same state its ship endpoint leaves."""

    @abc.abstractmethod
    def advance_order(
        self, *, store: SandboxStore, order: SandboxOrder, status: str, at: datetime
    ) -> bool:
        """The carrier moved a shipped order on ("in_transit", "delivered") at `at`, as far as
        the platform tracks it; False where the platform reports no such state."""

    @abc.abstractmethod
    def cancel_order(self, *, store: SandboxStore, order: SandboxOrder, at: datetime) -> None:
        """The order was cancelled on the platform at `at` (by the buyer, before it shipped)."""

    @abc.abstractmethod
    def send_webhook(self, *, store: SandboxStore, topic: str, data: dict) -> int | None:
        """Sign and POST a webhook to the store's webhook URL; returns the HTTP status."""


#: The words every sandbox's rejection of a tracking number carries (connectors look for them).
INVALID_TRACKING = "tracking number is invalid"


def tracking_refusal(store: SandboxStore, *, carrier: str, number: str) -> str | None:
    """Why the platform refuses `number` for the carrier it names (`carrier`: its own word,
    "USPS", "FedEx"...), or None. Platforms ask the carrier: a number it has no record of
    (`store.unknown_tracking_numbers`, set by tests and `sandbox` tooling) is invalid. Formats
    are not checked here (tkerp checks them before anything is sent; the connector suites ship
    made-up numbers)."""
    wanted = number.strip().upper()
    if wanted in {str(n).strip().upper() for n in store.unknown_tracking_numbers or []}:
        return f"{INVALID_TRACKING}: {carrier or 'the carrier'} has no record of {number}"
    return None


def sandbox_for(platform: str) -> SandboxPlatform:
    try:
        return import_string(SANDBOXES[platform])()
    except KeyError:
        raise ValueError(f"no sandbox for platform {platform!r}") from None


def next_number(store: SandboxStore, count: int = 1) -> int:
    """Reserve `count` ids from the store's counter; returns the first."""
    with transaction.atomic():
        SandboxStore.objects.filter(pk=store.pk).update(next_number=F("next_number") + count)
        value = SandboxStore.objects.values_list("next_number", flat=True).get(pk=store.pk)
    return value - count


def orders_upsert(rows: list[SandboxOrder]) -> int:
    """Insert or replace validated, unsaved orders of one store in bulk (one transaction)."""
    for row in rows:
        # As an expression the payload is bound as one JSON parameter per row: as a plain
        # value Django bulk-inserts through UNNEST(array), whose client-side quoting is slow.
        row.payload = Value(row.payload, output_field=JSONField())
    with transaction.atomic():
        SandboxOrder.objects.bulk_create(
            rows,
            batch_size=500,
            update_conflicts=True,
            unique_fields=["store", "order_id"],
            update_fields=["status", "created", "updated", "payload"],
        )
    return len(rows)


def upsert_indexed(store: SandboxStore, payloads: list, row_for) -> int:
    """`orders_upsert` for `load_orders`: every payload is checked first (`row_for(store,
    payload)` validates and builds the row), and errors name the order's index in the list."""
    rows: list[SandboxOrder] = []
    seen: dict[str, int] = {}
    for index, payload in enumerate(payloads):
        try:
            row = row_for(store, payload)
        except SandboxInputError as exc:
            raise SandboxInputError(f"order {index}: {exc}") from None
        if row.order_id in seen:
            raise SandboxInputError(
                f"order {index}: id: {row.order_id} is also order {seen[row.order_id]}"
            )
        seen[row.order_id] = index
        rows.append(row)
    return orders_upsert(rows)


def new_secret(prefix: str = "") -> str:
    return prefix + secrets.token_urlsafe(24)


def order_products(rng: random.Random, products: list[SandboxProduct]) -> list[SandboxProduct]:
    """The products a generated order buys: mostly one, sometimes two or three, never repeated.

    The draws (line count, then the sample) are the generators' seeded sequence: keep the order.
    """
    return rng.sample(products, k=min(len(products), rng.choice([1, 1, 1, 2, 2, 3])))


# --- faults and rate limits -------------------------------------------------------------------

_rng = random.Random()
_buckets: dict[tuple[int, str], TokenBucket] = {}
_lock = threading.Lock()


def throttled(store: SandboxStore, key: str) -> bool:
    """True when this request is over the store's rate limit for `key` (path or API family).

    Buckets are per process: each web process or worker enforces the limit on its own, which is
    what matters to a single client.
    """
    limit = RateLimit(per_second=store.rate_per_second, burst=store.rate_burst)
    with _lock:
        bucket = _buckets.get((store.pk, key))
        if bucket is None or bucket.limit != limit:
            bucket = _buckets[(store.pk, key)] = TokenBucket(limit)
    with bucket.lock:
        now = bucket.clock()
        bucket.tokens = min(limit.burst, bucket.tokens + (now - bucket.updated) * limit.per_second)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return False
        return True


def reset_rate_limits() -> None:
    with _lock:
        _buckets.clear()


def injected_fault(store: SandboxStore) -> str | None:
    """Which fault, if any, this request suffers: "429", "500", "503", "timeout" or "badsign".

    `slow_seconds` delays every response (a slow platform), independent of the fault rate.
    """
    if store.slow_seconds:
        time.sleep(store.slow_seconds)
    if store.fault_rate <= 0 or not store.fault_kinds:
        return None
    if _rng.random() >= store.fault_rate:
        return None
    return _rng.choice(list(store.fault_kinds))


def plain_fault_response(kind: str) -> HttpResponse | None:
    """Transport-level faults every platform answers alike (their bodies differ; see modules)."""
    if kind in {"500", "503"}:
        return HttpResponse("upstream error", status=int(kind), content_type="text/plain")
    if kind == "timeout":
        # Long enough to trip a client's timeout when it is set low, as tests do.
        time.sleep(2)
        return HttpResponse("gateway timeout", status=504, content_type="text/plain")
    return None


def client_ip(request: HttpRequest) -> str:
    return request.META.get("REMOTE_ADDR", "")
