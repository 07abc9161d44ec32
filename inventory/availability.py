"""What each listing publishes, and scheduling the pushes when stock changes (issue 5).

A listing publishes the free stock (on hand - reserved) of its SKU across the warehouses that
serve its shop (the shop's `ShopWarehouse` list, else every active warehouse of the tenant), less
what another shop's open live-session pool keeps (`live.pools`), minus its buffer, never below
zero:

    held      = buffer_units + ceil(free x buffer_percent / 100) + dynamic buffer (when enabled)
    quantity  = min(free - held, max_publish), 0 if below zero_below, never below 0

The dynamic buffer is what the OTHER channels are expected to sell while this channel's push is
in flight: their recent sales velocity of the SKU (units/s) x this channel's observed p95 push
latency (s), plus the listing's margin. `dynamic_buffers_recompute` refreshes it every minute.

Stock code calls `skus_changed(tenant=, sku_ids=)` after a change commits; it marks every listing
of those SKUs due (with a short debounce, so a burst of changes becomes one push carrying the
latest number) and, once the caller's transaction commits, queues one flush per shop
(`inventory.tasks.flush_shop_pushes`).
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, Sum
from django.db.models.functions import Coalesce, Least
from django.utils import timezone

from inventory.models import InventoryPush, Listing, PushResult, ShopWarehouse, StockLevel
from live.pools import held_from_shop, pools_held


def _setting(name: str, default):
    value = getattr(settings, name, None)
    if value is None:
        value = type(default)(os.environ.get(name, default))
    return value


def push_debounce() -> timedelta:
    """How long a stock change waits for more changes before its push goes out."""
    return timedelta(milliseconds=_setting("TKERP_PUSH_DEBOUNCE_MS", 300))


def velocity_window() -> timedelta:
    """The window the dynamic buffer measures the other channels' sales over."""
    return timedelta(minutes=_setting("TKERP_DYNAMIC_BUFFER_WINDOW_MINUTES", 10))


# Push latency assumed for a channel with no recent pushes to measure (seconds).
DEFAULT_PUSH_LATENCY_S = 5.0
# Pushes older than this do not count towards a channel's observed latency.
LATENCY_WINDOW = timedelta(hours=1)


# --- what a listing publishes -------------------------------------------------------------------


def shops_warehouse_ids(*, tenant_id: int, shop_ids: Iterable[int]) -> dict[int, set[int] | None]:
    """shop id -> the warehouses that serve it (None: every active warehouse of the tenant)."""
    serving: dict[int, set[int] | None] = {shop_id: None for shop_id in shop_ids}
    rows = ShopWarehouse._base_manager.filter(
        tenant_id=tenant_id, shop_id__in=list(serving), warehouse__is_active=True
    ).values_list("shop_id", "warehouse_id")
    for shop_id, warehouse_id in rows:
        if serving[shop_id] is None:
            serving[shop_id] = set()
        serving[shop_id].add(warehouse_id)
    return serving


def free_by_sku_warehouse(*, tenant_id: int, sku_ids: Iterable[int]) -> dict[int, dict[int, int]]:
    """sku id -> {warehouse id: free units} over the tenant's active warehouses."""
    free: dict[int, dict[int, int]] = defaultdict(dict)
    rows = (
        StockLevel._base_manager.filter(
            tenant_id=tenant_id, sku_id__in=list(sku_ids), warehouse__is_active=True
        )
        .values("sku_id", "warehouse_id")
        .annotate(free=Sum(F("on_hand") - F("reserved")))
    )
    for row in rows:
        free[row["sku_id"]][row["warehouse_id"]] = max(0, row["free"] or 0)
    return free


def quantity_after_buffers(*, free: int, listing: Listing) -> int:
    """Apply a listing's buffer rules to `free` units (see the module docstring)."""
    held = listing.buffer_units
    percent = Decimal(listing.buffer_percent or 0)
    if percent > 0 and free > 0:
        # Round the held share up: hold back a little more rather than publish a unit too many.
        held += math.ceil(free * percent / Decimal(100))
    if listing.dynamic_buffer:
        held += listing.dynamic_buffer_units
    quantity = free - held
    if listing.max_publish is not None:
        quantity = min(quantity, listing.max_publish)
    if quantity < listing.zero_below:
        quantity = 0
    return max(0, quantity)


def listings_available(listings: Iterable[Listing]) -> dict[int, int]:
    """listing id -> the quantity it should publish now; two queries per tenant, not per row."""
    by_tenant: dict[int, list[Listing]] = defaultdict(list)
    for listing in listings:
        by_tenant[listing.tenant_id].append(listing)
    result: dict[int, int] = {}
    for tenant_id, group in by_tenant.items():
        serving = shops_warehouse_ids(
            tenant_id=tenant_id, shop_ids={listing.shop_id for listing in group}
        )
        sku_ids = {listing.sku_id for listing in group}
        free = free_by_sku_warehouse(tenant_id=tenant_id, sku_ids=sku_ids)
        # Live-session pools (live.pools): units another shop's open pool keeps are not ours.
        held = pools_held(tenant_id=tenant_id, sku_ids=sku_ids)
        for listing in group:
            warehouses = serving[listing.shop_id]
            per_warehouse = free.get(listing.sku_id, {})
            units = sum(
                units
                for warehouse_id, units in per_warehouse.items()
                if warehouses is None or warehouse_id in warehouses
            )
            units = max(
                0, units - held_from_shop(held, sku_id=listing.sku_id, shop_id=listing.shop_id)
            )
            result[listing.pk] = quantity_after_buffers(free=units, listing=listing)
    return result


def listing_available(listing: Listing) -> int:
    """The quantity `listing` should publish now."""
    return listings_available([listing])[listing.pk]


# --- scheduling pushes --------------------------------------------------------------------------


def listings_mark_due(
    *,
    tenant_id: int,
    listing_filter: Q,
    now: datetime | None = None,
    delay: timedelta | None = None,
) -> set[int]:
    """Mark matching active listings due for a push; returns the shops with newly due listings
    (those that need a flush queued).

    A listing already due keeps its due time (fixed window: a steady stream of changes can't
    postpone its push forever) and its request time (latency counts from the first change).
    """
    now = now or timezone.now()
    due_at = now + (push_debounce() if delay is None else delay)
    listings = Listing._base_manager.filter(
        listing_filter, tenant_id=tenant_id, is_active=True, shop__is_active=True
    ).exclude(platform_sku_id="")
    rows = list(listings.values_list("pk", "shop_id", "push_due_at").order_by("pk"))
    # Only rows not due by then are written: during a spike nearly every call finds its
    # listings already due and takes no row lock at all (no queueing behind other writers).
    to_mark = [pk for pk, _, due in rows if due is None or due > due_at]
    if to_mark:
        Listing._base_manager.filter(
            Q(push_due_at__isnull=True) | Q(push_due_at__gt=due_at), pk__in=to_mark
        ).update(
            push_due_at=due_at,
            push_requested_at=Least(Coalesce(F("push_requested_at"), now), now),
        )
    # A listing due later than now was marked by an earlier change that queued its flush: don't
    # queue another (a spike would queue one per order). One due already (marked with no delay by
    # a caller that queues nothing itself, or a flush lost) gets a flush queued.
    marked = set(to_mark)
    return {
        shop_id for pk, shop_id, due in rows if pk in marked or (due is not None and due <= now)
    }


def skus_changed(
    *,
    tenant,
    sku_ids: Iterable[int],
    now: datetime | None = None,
    urgent: bool = False,
) -> set[int]:
    """Stock of these SKUs changed: schedule a push for every listing of them on every shop.
    Returns the shops a flush was queued for.

    Call it after the change commits (then no row lock is held here for longer than one
    statement). Called inside the change's transaction, the flush tasks are still queued only on
    commit, so a worker never computes from stock it can't see yet; a flush already running may
    push a number computed just before the commit, and its post-push re-check (inventory.push)
    marks the listing due again. `urgent` (an oversold SKU going to zero) skips the debounce.
    """
    sku_ids = list({int(sku_id) for sku_id in sku_ids})
    if not sku_ids:
        return set()
    tenant_id = getattr(tenant, "pk", tenant)
    shop_ids = listings_mark_due(
        tenant_id=tenant_id,
        listing_filter=Q(sku_id__in=sku_ids),
        now=now,
        delay=timedelta(0) if urgent else None,
    )
    if shop_ids:
        from inventory.tasks import flush_enqueue

        transaction.on_commit(
            lambda: [flush_enqueue(tenant_id=tenant_id, shop_id=shop_id) for shop_id in shop_ids]
        )
    return shop_ids


# --- dynamic buffer -----------------------------------------------------------------------------


def shop_push_latency_p95(*, tenant_id: int, shop_id: int, now: datetime | None = None) -> float:
    """p95 of this shop's recent successful push latencies, in seconds (a default if none)."""
    now = now or timezone.now()
    latencies = sorted(
        InventoryPush._base_manager.filter(
            tenant_id=tenant_id,
            listing__shop_id=shop_id,
            result__in=[PushResult.OK, PushResult.REPAIRED],
            latency_ms__isnull=False,
            created_at__gte=now - LATENCY_WINDOW,
        )
        .order_by("-created_at")
        .values_list("latency_ms", flat=True)[:500]
    )
    if not latencies:
        return DEFAULT_PUSH_LATENCY_S
    index = min(len(latencies) - 1, math.ceil(0.95 * len(latencies)) - 1)
    return latencies[index] / 1000


def other_channels_velocity(
    *, tenant_id: int, sku_ids: Iterable[int], now: datetime | None = None
) -> dict[tuple[int, int], float]:
    """(sku id, shop id) -> units/s of the SKU sold on every OTHER shop of the tenant."""
    from orders.models import OrderLine, OrderStatus

    now = now or timezone.now()
    window = velocity_window()
    since = now - window
    sold = (
        OrderLine._base_manager.filter(
            tenant_id=tenant_id,
            sku_id__in=list(sku_ids),
            is_cancelled=False,
            order__tenant_id=tenant_id,
        )
        .exclude(order__status=OrderStatus.CANCELLED)
        .annotate(sold_at=Coalesce("order__placed_at", "order__created_at"))
        .filter(sold_at__gte=since, sold_at__lte=now)
        .values("sku_id", "order__shop_id")
        .annotate(units=Sum("quantity"))
    )
    per_shop: dict[int, dict[int, int]] = defaultdict(dict)
    for row in sold:
        per_shop[row["sku_id"]][row["order__shop_id"]] = row["units"]
    seconds = window.total_seconds()
    velocity: dict[tuple[int, int], float] = {}
    listings = Listing._base_manager.filter(tenant_id=tenant_id, sku_id__in=list(sku_ids))
    for sku_id, shop_id in listings.values_list("sku_id", "shop_id"):
        units = sum(u for other, u in per_shop.get(sku_id, {}).items() if other != shop_id)
        velocity[(sku_id, shop_id)] = units / seconds
    return velocity


def dynamic_buffers_recompute(*, tenant, now: datetime | None = None) -> dict[int, int]:
    """Refresh the dynamic buffer of every listing that has it on; returns listing id -> units.

    A listing whose buffer changed is marked due, so the new number reaches the platform.
    """
    now = now or timezone.now()
    tenant_id = getattr(tenant, "pk", tenant)
    listings = list(
        Listing._base_manager.filter(tenant_id=tenant_id, dynamic_buffer=True, is_active=True)
    )
    if not listings:
        return {}
    velocity = other_channels_velocity(
        tenant_id=tenant_id, sku_ids={listing.sku_id for listing in listings}, now=now
    )
    latency = {
        shop_id: shop_push_latency_p95(tenant_id=tenant_id, shop_id=shop_id, now=now)
        for shop_id in {listing.shop_id for listing in listings}
    }
    buffers: dict[int, int] = {}
    changed: list[int] = []
    for listing in listings:
        expected = velocity.get((listing.sku_id, listing.shop_id), 0.0) * latency[listing.shop_id]
        units = math.ceil(expected) + listing.dynamic_buffer_margin
        buffers[listing.pk] = units
        if units != listing.dynamic_buffer_units:
            Listing._base_manager.filter(pk=listing.pk).update(dynamic_buffer_units=units)
            changed.append(listing.pk)
    if changed:
        shop_ids = listings_mark_due(tenant_id=tenant_id, listing_filter=Q(pk__in=changed), now=now)
        from inventory.tasks import flush_enqueue

        transaction.on_commit(
            lambda: [flush_enqueue(tenant_id=tenant_id, shop_id=shop_id) for shop_id in shop_ids]
        )
    return buffers


__all__ = [
    "dynamic_buffers_recompute",
    "listing_available",
    "listings_available",
    "listings_mark_due",
    "quantity_after_buffers",
    "skus_changed",
]
