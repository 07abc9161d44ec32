"""Storing platform orders: one idempotent upsert for every door (poll, webhook, CSV, API).

`orders_ingest` takes a page of `PlatformOrder`s for one shop and writes them in a handful of
queries (bulk inserts and updates, never a save per order), keyed by (tenant, shop,
platform_order_id). It is safe to run twice and safe to race: a webhook and a poll storing the
same order at once serialise on a per-shop transaction lock, so neither can insert the order (or
a line) the other is inserting, and an update older than the one stored is ignored. Running the
same page again changes nothing.

Validation is per order: one that cannot be stored (no id, a quantity of zero, absurd money...) is
rejected with a message naming the order and the field, and the rest of the page goes in. A NUL
character, which PostgreSQL stores in neither text nor jsonb, is dropped from free text and from
the raw payloads, and rejects the order when it is in an id; a lone surrogate (which UTF-8
cannot encode) likewise, replaced by U+FFFD in free text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from django.db import connection, transaction
from django.utils import timezone

from inventory.models import Listing, Sku
from orders.models import EventSource, Order, OrderEvent, OrderLine, OrderStatus
from orders.pipeline import orders_after_ingest
from orders.sla import sla_deadlines
from tkerp.bulk import rows_copy
from tkerp.dates import datetime_in_range, datetime_range_text
from tkerp.tenancy import tenant_context

if TYPE_CHECKING:
    from shops.models import Shop
    from shops.platforms.base import PlatformLine, PlatformOrder, UnmappedOrder

CENT = Decimal("0.01")
# Order money columns are DecimalField(max_digits=12, decimal_places=2).
MAX_MONEY = Decimal("9999999999.99")
MAX_LINE_QUANTITY = 100_000
MAX_LINES_PER_ORDER = 1_000

ORDER_MONEY_FIELDS = (
    "subtotal",
    "shipping_fee",
    "seller_discount",
    "platform_discount",
    "tax",
    "total",
    "creator_commission",
)
LINE_MONEY_FIELDS = ("unit_price", "discount", "tax", "total")
# Amounts that are never negative; discounts, fees and taxes may be (refund adjustments).
NON_NEGATIVE_MONEY = {"subtotal", "total", "unit_price"}

# Platform statuses tkerp's workflow follows. A platform "new" never overrides our own progress
# (on_hold, ready, allocated); shipped < in_transit < delivered only move forward; a platform
# cancellation always wins, and a cancelled order stays cancelled.
_PROGRESS = {
    OrderStatus.NEW: 0,
    OrderStatus.ON_HOLD: 0,
    OrderStatus.READY: 0,
    OrderStatus.ALLOCATED: 0,
    OrderStatus.SHIPPED: 1,
    OrderStatus.IN_TRANSIT: 2,
    OrderStatus.DELIVERED: 3,
}

# Every datetime of a `PlatformOrder`: each must be aware and in `datetime_in_range`.
ORDER_DATETIME_FIELDS = (
    "updated_at",
    "placed_at",
    "paid_at",
    "ship_by",
    "cancel_requested_at",
    "cancel_answer_by",
    "shipped_at",
    "delivered_at",
    "cancelled_at",
)

# Who the platform credits the sale to (live sessions attribute orders by it). A platform that
# names nobody in an update keeps what is stored: TikTok names the creator in its affiliate
# orders, not in order detail (`live.creators`), and the commission likewise.
CREATOR_FIELDS = ("creator_username", "creator_content_type", "creator_content_id")

ORDER_FIELDS_FROM_PLATFORM = (
    "platform_status",
    "buyer_name",
    "buyer_email",
    "buyer_user_id",
    "buyer_note",
    "seller_note",
    "currency",
    *ORDER_MONEY_FIELDS,
    "is_presale",
    "is_cod",
    "placed_at",
    "paid_at",
    "platform_updated_at",
    "raw",
    *CREATOR_FIELDS,
)
ADDRESS_FIELDS = (
    "recipient_name",
    "recipient_phone",
    "address_line1",
    "address_line2",
    "city",
    "state",
    "postal_code",
    "country",
    "original_address",
    "address_masked",
)
ORDER_UPDATE_FIELDS = (
    *ORDER_FIELDS_FROM_PLATFORM,
    *ADDRESS_FIELDS,
    "status",
    "ship_by",
    "tracking_by",
    "cancel_answer_by",
    "shipped_at",
    "delivered_at",
    "cancelled_at",
    "updated_at",
)
LINE_UPDATE_FIELDS = (
    "platform_line_ids",
    "sku",
    "seller_sku",
    "product_name",
    "quantity",
    *LINE_MONEY_FIELDS,
    "is_cancelled",
)

# What an update reads of a stored order: everything `bulk_update` writes back that the platform
# does not always send (a deferred field would cost a query per order).
_LOADED_FIELDS = (
    "id",
    "tenant_id",
    "shop_id",
    "platform_order_id",
    "status",
    "platform_status",
    "platform_updated_at",
    "paid_at",
    *ADDRESS_FIELDS,
    "cancel_answer_by",
    "shipped_at",
    "delivered_at",
    "cancelled_at",
    *CREATOR_FIELDS,
    "creator_commission",
)

_SHIPPED = (OrderStatus.SHIPPED, OrderStatus.IN_TRANSIT, OrderStatus.DELIVERED)

# PostgreSQL stores NUL in neither text nor jsonb: free text loses it, an id with one is rejected.
NUL = "\x00"
# Nor a lone surrogate (JSON's "\ud83d", half an emoji a platform cut in two), which UTF-8 cannot
# encode: free text gets U+FFFD in its place, an id with one is rejected.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _has_surrogate(text: str) -> bool:
    return not text.isascii() and _SURROGATE.search(text) is not None


def _storable(text: str) -> str:
    """`text` without NUL and with U+FFFD for any lone surrogate: what PostgreSQL can store."""
    text = text.replace(NUL, "")
    return text if text.isascii() else _SURROGATE.sub("\ufffd", text)


# Transaction-scoped advisory lock key space for "ingesting into shop N" ("tk" << 40 | shop pk).
_INGEST_LOCK_BASE = 0x746B << 40


@dataclass(slots=True)
class IngestReject:
    """An order that could not be stored, and why."""

    platform_order_id: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"order {self.platform_order_id or '(no id)'}: {self.field}: {self.message}"

    def as_dict(self) -> dict[str, str]:
        return {"order": self.platform_order_id, "field": self.field, "message": self.message}


@dataclass(slots=True)
class IngestResult:
    """What one call stored: ids of created and updated orders, how many were already current
    (or older than what is stored), which were rejected, and the newest platform update time
    seen (the sync watermark may advance to it once the page is committed)."""

    created_ids: list[int] = field(default_factory=list)
    updated_ids: list[int] = field(default_factory=list)
    skipped: int = 0
    rejects: list[IngestReject] = field(default_factory=list)
    max_updated_at: datetime | None = None

    @property
    def created(self) -> int:
        return len(self.created_ids)

    @property
    def updated(self) -> int:
        return len(self.updated_ids)


class _Invalid(Exception):
    def __init__(self, field_name: str, message: str):
        self.field_name = field_name
        self.message = message


def orders_ingest(
    *,
    shop: Shop,
    platform_orders: Iterable[PlatformOrder],
    source: str,
    unmapped: Iterable[UnmappedOrder] = (),
) -> IngestResult:
    """Insert or update `platform_orders` of `shop` in one transaction (`orders_store`), then
    run the pipeline on what changed (`orders.pipeline.orders_after_ingest`).

    `source` says which door they came through ("poll", "webhook", "csv"...); it is recorded in
    the orders' events. `unmapped` are orders of the same answer the connector could not map
    (`shops.platforms.base.orders_map`): they are rejected by id like any invalid order. Runs in
    its own transaction (a savepoint when the caller has one open): call it with no platform
    HTTP request in flight inside that transaction.
    """
    result = orders_store(
        shop=shop, platform_orders=platform_orders, source=source, unmapped=unmapped
    )
    # Stock and review run after the page is stored (each in transactions of its own), so a
    # page's rows are never held locked while other shops reserve the same SKUs.
    orders_after_ingest(shop=shop, created_ids=result.created_ids, updated_ids=result.updated_ids)
    return result


def orders_store(
    *,
    shop: Shop,
    platform_orders: Iterable[PlatformOrder],
    source: str,
    unmapped: Iterable[UnmappedOrder] = (),
) -> IngestResult:
    """`orders_ingest` without the pipeline: the caller runs `orders_after_ingest` on the
    result's ids itself (a sync pass does, over several stored pages at once)."""
    result = IngestResult()
    result.rejects += [
        IngestReject(
            platform_order_id=order.platform_order_id, field=order.field, message=order.message
        )
        for order in unmapped
    ]
    incoming: dict[str, PlatformOrder] = {}
    for platform_order in platform_orders:
        updated_at = getattr(platform_order, "updated_at", None)
        # An impossible time (year 1, year 9999) must not drag the watermark along.
        if (
            _is_aware(updated_at)
            and datetime_in_range(updated_at)
            and (result.max_updated_at is None or updated_at > result.max_updated_at)
        ):
            result.max_updated_at = updated_at
        try:
            _validate(platform_order)
        except _Invalid as invalid:
            order_id = str(getattr(platform_order, "platform_order_id", "") or "")
            result.rejects.append(
                IngestReject(
                    # Stored (jsonb) and shown: the id as far as it is printable.
                    platform_order_id="".join(ch for ch in order_id if ch.isprintable()),
                    field=invalid.field_name,
                    message=invalid.message,
                )
            )
            continue
        key = platform_order.platform_order_id
        earlier = incoming.get(key)
        if earlier is not None:
            # The same order twice in one batch: the newer version wins, the other is a no-op.
            result.skipped += 1
            if earlier.updated_at >= platform_order.updated_at:
                continue
        incoming[key] = platform_order
    if not incoming:
        return result

    tenant = shop.tenant
    with tenant_context(tenant), transaction.atomic():
        _lock_shop_for_ingest(shop)
        _upsert(shop=shop, incoming=incoming, source=source, result=result)
    return result


# --- validation -------------------------------------------------------------------------------


def _is_aware(value: Any) -> bool:
    return isinstance(value, datetime) and timezone.is_aware(value)


def _money(value: Any, field_name: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, Decimal | int | str):
        raise _Invalid(field_name, f"not an amount: {value!r}")
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise _Invalid(field_name, f"not an amount: {value!r}") from None
    if not amount.is_finite():
        raise _Invalid(field_name, f"not a finite amount: {value!r}")
    amount = amount.quantize(CENT, rounding=ROUND_HALF_UP)
    if abs(amount) > MAX_MONEY:
        raise _Invalid(field_name, f"amount {value} is out of range")
    if amount < 0 and field_name.rsplit(".", 1)[-1] in NON_NEGATIVE_MONEY:
        raise _Invalid(field_name, f"amount {value} is negative")
    return amount


def _validate(po: PlatformOrder) -> None:
    """Raise `_Invalid` naming the first field of `po` that cannot be stored."""
    order_id = getattr(po, "platform_order_id", None)
    if not isinstance(order_id, str) or not order_id.strip():
        raise _Invalid("platform_order_id", "missing")
    if len(order_id) > Order._meta.get_field("platform_order_id").max_length:
        raise _Invalid("platform_order_id", "longer than 100 characters")
    if NUL in order_id:
        raise _Invalid("platform_order_id", "contains a NUL character")
    if _has_surrogate(order_id):
        raise _Invalid("platform_order_id", "contains a lone surrogate (not text)")
    if not _is_aware(po.updated_at):
        raise _Invalid("updated_at", "missing or not timezone-aware")
    for name in ORDER_DATETIME_FIELDS:
        value = getattr(po, name)
        if value is None and name != "updated_at":
            continue
        if not _is_aware(value):
            raise _Invalid(name, "not a timezone-aware datetime")
        if not datetime_in_range(value):
            # Stored, it would break every page showing the order in the tenant's time zone.
            raise _Invalid(name, f"{value.isoformat()} is not {datetime_range_text()}")
    if po.status not in OrderStatus.values:
        raise _Invalid("status", f"unknown status {po.status!r}")
    if not isinstance(po.currency, str) or len(po.currency) != 3 or not po.currency.isalpha():
        raise _Invalid("currency", f"not a currency code: {po.currency!r}")
    for name in ORDER_MONEY_FIELDS:
        _money(getattr(po, name), name)
    if len(po.lines) > MAX_LINES_PER_ORDER:
        raise _Invalid("lines", f"{len(po.lines)} lines is more than {MAX_LINES_PER_ORDER}")
    seen: set[str] = set()
    for index, line in enumerate(po.lines):
        where = f"lines[{index}]"
        line_id = line.platform_line_id
        if not isinstance(line_id, str) or not line_id.strip():
            raise _Invalid(f"{where}.platform_line_id", "missing")
        if len(line_id) > OrderLine._meta.get_field("platform_line_id").max_length:
            raise _Invalid(f"{where}.platform_line_id", "longer than 100 characters")
        if NUL in line_id:
            raise _Invalid(f"{where}.platform_line_id", "contains a NUL character")
        if _has_surrogate(line_id):
            raise _Invalid(f"{where}.platform_line_id", "contains a lone surrogate (not text)")
        if any(NUL in str(other) for other in line.platform_line_ids or ()):
            raise _Invalid(f"{where}.platform_line_ids", "contains a NUL character")
        if any(_has_surrogate(str(other)) for other in line.platform_line_ids or ()):
            raise _Invalid(f"{where}.platform_line_ids", "contains a lone surrogate (not text)")
        if line_id in seen:
            raise _Invalid(f"{where}.platform_line_id", f"line {line_id} appears twice")
        seen.add(line_id)
        quantity = line.quantity
        if isinstance(quantity, bool) or not isinstance(quantity, int):
            raise _Invalid(f"{where}.quantity", f"not a whole number: {quantity!r}")
        if quantity <= 0:
            raise _Invalid(f"{where}.quantity", f"must be at least 1, got {quantity}")
        if quantity > MAX_LINE_QUANTITY:
            raise _Invalid(f"{where}.quantity", f"{quantity} is implausibly large")
        for name in LINE_MONEY_FIELDS:
            _money(getattr(line, name), f"{where}.{name}")


def _text(model, name: str, value: Any) -> str:
    """`value` as text fitting the column: free text is cut and loses any NUL (PostgreSQL
    stores none), never the reason to lose an order (`raw` keeps the rest of what was sent)."""
    text = _key(value)
    max_length = model._meta.get_field(name).max_length
    return text[:max_length] if max_length else text


def _json_without_nul(value: Any) -> Any:
    """A platform payload (`raw`, `original_address`) without NUL or a lone surrogate in any
    string or key (`_storable`): jsonb refuses either, and one such character would roll back
    the whole page."""
    if isinstance(value, str):
        # `_storable` written inline: a spike's payloads hold about 400,000 strings.
        value = value.replace(NUL, "")
        return value if value.isascii() else _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_json_without_nul(key): _json_without_nul(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_without_nul(item) for item in value]
    return value


# --- the upsert -------------------------------------------------------------------------------


def _lock_shop_for_ingest(shop: Shop) -> None:
    """Serialise ingests into one shop until the transaction ends.

    A transaction-scoped advisory lock, so a racing webhook and poll take turns
    reading-then-writing the same orders.
    """
    key = _INGEST_LOCK_BASE | (shop.pk & ((1 << 40) - 1))
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


def merged_status(current: str, incoming: str) -> str:
    """The order status after the platform reports `incoming` for an order we hold at `current`."""
    if current == OrderStatus.CANCELLED or incoming == OrderStatus.CANCELLED:
        return OrderStatus.CANCELLED
    if _PROGRESS.get(incoming, 0) > _PROGRESS.get(current, 0):
        return incoming
    return current


def _rank(status: str) -> int:
    return 99 if status == OrderStatus.CANCELLED else _PROGRESS.get(status, 0)


def _is_newer(po: PlatformOrder, current: Order) -> bool:
    """Whether `po` is a later version of the stored order than the one we hold.

    Platforms stamp updates in whole seconds, so two changes within one second carry the same
    time: then a different platform status that does not move the order backwards (paid ->
    cancelled, not cancelled -> paid, not paid -> unpaid) is taken as the later one. Same time,
    same status: the version we already hold.
    """
    stored = current.platform_updated_at
    if stored is None or po.updated_at > stored:
        return True
    if po.updated_at < stored:
        return False
    sent_status = _text(Order, "platform_status", po.platform_status)
    if sent_status == current.platform_status or _rank(po.status) < _rank(current.status):
        return False
    # Placed and paid within one second: the copy without the payment is the earlier one.
    unpaid_again = current.paid_at is not None and po.paid_at is None
    return not (unpaid_again and _rank(po.status) == _rank(current.status))


def _initial_status(incoming: str) -> str:
    if incoming in (
        OrderStatus.SHIPPED,
        OrderStatus.IN_TRANSIT,
        OrderStatus.DELIVERED,
        OrderStatus.CANCELLED,
    ):
        return incoming
    return OrderStatus.NEW


def _address_values(po: PlatformOrder) -> dict[str, Any]:
    address = po.address
    country = _key(address.country).strip().upper()
    return {
        "recipient_name": _text(Order, "recipient_name", address.name),
        "recipient_phone": _text(Order, "recipient_phone", address.phone),
        "address_line1": _text(Order, "address_line1", address.line1),
        "address_line2": _text(Order, "address_line2", address.line2),
        "city": _text(Order, "city", address.city),
        "state": _text(Order, "state", address.state),
        "postal_code": _text(Order, "postal_code", address.postal_code),
        # Not a two-letter code: left blank for review to flag; the original stays.
        "country": country if len(country) == 2 and country.isalpha() else "",
        "original_address": _json_without_nul(address.raw or {}),
        "address_masked": bool(address.masked),
    }


def _platform_values(po: PlatformOrder) -> dict[str, Any]:
    values = {
        "platform_status": _text(Order, "platform_status", po.platform_status),
        "buyer_name": _text(Order, "buyer_name", po.buyer_name),
        "buyer_email": _text(Order, "buyer_email", po.buyer_email),
        "buyer_user_id": _text(Order, "buyer_user_id", po.buyer_user_id),
        "buyer_note": _text(Order, "buyer_note", po.buyer_note),
        "seller_note": _text(Order, "seller_note", po.seller_note),
        "currency": po.currency.upper(),
        "is_presale": bool(po.is_presale),
        "is_cod": bool(po.is_cod),
        "placed_at": po.placed_at,
        "paid_at": po.paid_at,
        "platform_updated_at": po.updated_at,
        "raw": _json_without_nul(po.raw or {}),
    }
    for name in CREATOR_FIELDS:
        values[name] = _text(Order, name, getattr(po, name, "") or "")
    for name in ORDER_MONEY_FIELDS:
        values[name] = _money(getattr(po, name), name)
    return values


def _deadlines(po: PlatformOrder, shop: Shop):
    return sla_deadlines(
        paid_at=po.paid_at,
        placed_at=po.placed_at,
        is_presale=po.is_presale,
        ship_by_hours=shop.ship_by_hours,
        presale_ship_by_hours=shop.presale_ship_by_hours,
        tracking_upload_hours=shop.tracking_upload_hours,
        platform_ship_by=po.ship_by,
        cancel_requested_at=po.cancel_requested_at if po.cancel_requested else None,
        platform_cancel_answer_by=po.cancel_answer_by,
    )


def _line_values(line: PlatformLine, sku_id: int | None) -> dict[str, Any]:
    values = {
        "platform_line_ids": list(line.platform_line_ids or [line.platform_line_id]),
        "sku_id": sku_id,
        "seller_sku": _text(OrderLine, "seller_sku", line.seller_sku),
        "product_name": _text(OrderLine, "product_name", line.product_name),
        "quantity": line.quantity,
        "is_cancelled": bool(line.is_cancelled),
    }
    for name in LINE_MONEY_FIELDS:
        values[name] = _money(getattr(line, name), name)
    return values


def _sku_resolver(shop: Shop, orders: Iterable[PlatformOrder]):
    """Map lines to the tenant's SKUs: by seller SKU code, else by the shop listing's platform SKU
    id. Two queries for the whole page."""
    lines = [line for po in orders for line in po.lines]
    # Without NUL, as stored (`_line_values`): a NUL would also fail the query itself.
    codes = {_key(line.seller_sku) for line in lines if line.seller_sku}
    by_code = dict(Sku.objects.filter(code__in=codes).values_list("code", "id")) if codes else {}
    platform_ids = {
        _key(line.platform_sku_id)
        for line in lines
        if line.platform_sku_id and _key(line.seller_sku) not in by_code
    }
    by_platform_id = (
        dict(
            Listing.objects.filter(shop=shop, platform_sku_id__in=platform_ids).values_list(
                "platform_sku_id", "sku_id"
            )
        )
        if platform_ids
        else {}
    )

    def resolve(line: PlatformLine) -> int | None:
        return by_code.get(_key(line.seller_sku)) or by_platform_id.get(_key(line.platform_sku_id))

    return resolve


def _key(value: Any) -> str:
    """`value` as text PostgreSQL can store (`_storable`), for storing or looking up."""
    return "" if value is None else _storable(str(value))


def _upsert(
    *, shop: Shop, incoming: dict[str, PlatformOrder], source: str, result: IngestResult
) -> None:
    now = timezone.now()
    tenant_id = shop.tenant_id
    existing = {
        order.platform_order_id: order
        for order in Order.objects.filter(shop=shop, platform_order_id__any=list(incoming)).only(
            *_LOADED_FIELDS
        )
    }
    to_create: list[tuple[Order, PlatformOrder]] = []
    to_update: list[tuple[Order, PlatformOrder, dict[str, Any]]] = []
    for order_id, po in incoming.items():
        current = existing.get(order_id)
        if current is None:
            to_create.append((_new_order(shop=shop, po=po, now=now), po))
        elif not _is_newer(po, current):
            result.skipped += 1  # already stored, or older than what is stored
        else:
            to_update.append((current, po, _apply_update(shop=shop, order=current, po=po, now=now)))
    if not to_create and not to_update:
        return

    resolve_sku = _sku_resolver(shop, [po for _, po in to_create] + [po for _, po, _ in to_update])
    events: list[OrderEvent] = []
    new_lines: list[OrderLine] = []

    if to_create:
        rows_copy(Order, [order for order, _ in to_create])
        for order, po in to_create:
            result.created_ids.append(order.pk)
            for line in po.lines:
                new_lines.append(
                    OrderLine(
                        tenant_id=tenant_id,
                        order_id=order.pk,
                        platform_line_id=line.platform_line_id,
                        **_line_values(line, resolve_sku(line)),
                    )
                )
            events.append(
                _event(
                    order,
                    "ingested",
                    f"Imported from {shop.get_platform_display()} ({source}), "
                    f"platform status {order.platform_status or '-'}",
                    {
                        "source": source,
                        "platform_status": order.platform_status,
                        "status": order.status,
                    },
                )
            )
            if order.cancel_answer_by is not None:
                events.append(_cancel_event(order, source))

    if to_update:
        Order.objects.bulk_update([order for order, _, _ in to_update], ORDER_UPDATE_FIELDS)
        new_lines += _upsert_lines(
            tenant_id=tenant_id,
            pairs=[(order, po) for order, po, _ in to_update],
            resolve_sku=resolve_sku,
        )
        for order, _, change in to_update:
            result.updated_ids.append(order.pk)
            before, after = change["platform_status_from"], order.platform_status
            message = (
                f"Platform status {before or '-'} → {after or '-'}"
                if before != after
                else f"Platform update ({after or '-'})"
            )
            if change["status_from"] != order.status:
                message += f"; order {change['status_from']} → {order.status}"
                if change["status_from"] in _SHIPPED and order.status == OrderStatus.CANCELLED:
                    # Recorded, but the units left with the parcel: nothing is given back.
                    message += " after it shipped (its stock stays shipped)"
            if change["address_changed"]:
                message += "; address changed"
            events.append(_event(order, "platform_update", message, {"source": source, **change}))
            if change["cancel_requested"]:
                events.append(_cancel_event(order, source))

    if new_lines:
        rows_copy(OrderLine, new_lines)
    rows_copy(OrderEvent, events)


def _shipped_at(po: PlatformOrder, status: str, stored: datetime | None) -> datetime | None:
    """When the order shipped: the platform's time, else the one stored, else (a platform that
    reports shipped without a time: Shopify, Amazon, eBay) the update that first said so.

    Set whenever the status says shipped, because it is what marks an order cancelled after
    shipping as shipped (`inventory.reservations.order_has_shipped`): its units never go back.
    An open order has not shipped, whatever time the platform gives: one partly shipped (some
    packages left, the rest still to ship) keeps its stock for the rest.
    """
    if status not in _SHIPPED and status != OrderStatus.CANCELLED:
        return stored
    shipped_at = po.shipped_at or stored
    if shipped_at is None and status in _SHIPPED:
        shipped_at = po.updated_at
    return shipped_at


def _new_order(*, shop: Shop, po: PlatformOrder, now: datetime) -> Order:
    deadlines = _deadlines(po, shop)
    values = _platform_values(po)
    if po.address is not None:
        values.update(_address_values(po))
    status = _initial_status(po.status)
    return Order(
        tenant_id=shop.tenant_id,
        shop_id=shop.pk,
        platform_order_id=po.platform_order_id,
        status=status,
        ship_by=deadlines.ship_by,
        tracking_by=deadlines.tracking_by,
        cancel_answer_by=deadlines.cancel_answer_by,
        shipped_at=_shipped_at(po, status, None),
        delivered_at=po.delivered_at,
        cancelled_at=po.cancelled_at,
        created_at=now,
        updated_at=now,
        **values,
    )


def _apply_update(*, shop: Shop, order: Order, po: PlatformOrder, now: datetime) -> dict:
    """Set the platform's newer values on `order` (in memory); returns what changed, for the
    event. Our own workflow status and a locally kept address survive where they should."""
    change = {
        "platform_status_from": order.platform_status,
        "platform_status_to": _text(Order, "platform_status", po.platform_status),
        "status_from": order.status,
        "address_changed": False,
        "cancel_requested": False,
    }
    for name, value in _platform_values(po).items():
        if name in CREATOR_FIELDS and not value:
            continue  # the platform named nobody this time: keep who it named before
        if name == "creator_commission" and not value:
            continue  # likewise its commission, read from the affiliate orders
        setattr(order, name, value)
    # The recipient fields may hold a normalised address: only a changed platform address (the
    # buyer edited it, or it was unmasked) replaces them. A missing address keeps what we have.
    sent_address = _json_without_nul(po.address.raw or {}) if po.address is not None else None
    if sent_address is not None and sent_address != (order.original_address or {}):
        for name, value in _address_values(po).items():
            setattr(order, name, value)
        change["address_changed"] = True
    order.status = merged_status(order.status, po.status)
    change["status_to"] = order.status
    deadlines = _deadlines(po, shop)
    order.ship_by = deadlines.ship_by
    order.tracking_by = deadlines.tracking_by
    if deadlines.cancel_answer_by is not None:
        change["cancel_requested"] = order.cancel_answer_by is None
        order.cancel_answer_by = deadlines.cancel_answer_by
    order.shipped_at = _shipped_at(po, order.status, order.shipped_at)
    order.delivered_at = po.delivered_at or order.delivered_at
    order.cancelled_at = po.cancelled_at or order.cancelled_at
    order.updated_at = now
    return change


def _upsert_lines(*, tenant_id: int, pairs, resolve_sku) -> list[OrderLine]:
    """Update lines of existing orders in place; return the lines to insert. A line the platform
    no longer sends is marked cancelled, never deleted (shipments and stock point at it)."""
    stored: dict[tuple[int, str], OrderLine] = {
        (line.order_id, line.platform_line_id): line
        for line in OrderLine.objects.filter(order_id__any=[order.pk for order, _ in pairs])
    }
    changed: list[OrderLine] = []
    created: list[OrderLine] = []
    for order, po in pairs:
        sent = set()
        for platform_line in po.lines:
            sent.add(platform_line.platform_line_id)
            line = stored.get((order.pk, platform_line.platform_line_id))
            values = _line_values(platform_line, resolve_sku(platform_line))
            if line is None:
                created.append(
                    OrderLine(
                        tenant_id=tenant_id,
                        order_id=order.pk,
                        platform_line_id=platform_line.platform_line_id,
                        **values,
                    )
                )
                continue
            if line.sku_id is not None:
                values["sku_id"] = line.sku_id  # a mapping someone fixed by hand stays
            if any(getattr(line, name) != value for name, value in values.items()):
                for name, value in values.items():
                    setattr(line, name, value)
                changed.append(line)
        for (order_pk, line_id), line in stored.items():
            if order_pk == order.pk and line_id not in sent and not line.is_cancelled:
                line.is_cancelled = True
                changed.append(line)
    if changed:
        OrderLine.objects.bulk_update(changed, LINE_UPDATE_FIELDS)
    return created


def _event(order: Order, kind: str, message: str, data: dict) -> OrderEvent:
    return OrderEvent(
        tenant_id=order.tenant_id,
        order_id=order.pk,
        kind=kind,
        message=message[:500],
        data=_jsonable(data),
        source=EventSource.PLATFORM,
    )


def _cancel_event(order: Order, source: str) -> OrderEvent:
    return _event(
        order,
        "cancel_requested",
        "The buyer asked to cancel; answer by "
        f"{order.cancel_answer_by.astimezone(UTC):%Y-%m-%d %H:%M} UTC",
        {"source": source, "answer_by": order.cancel_answer_by},
    )


def _jsonable(data: dict) -> dict:
    return {
        key: value.isoformat() if isinstance(value, datetime) else value
        for key, value in data.items()
    }
