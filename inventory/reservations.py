"""Reserving stock for orders, releasing it, and committing it when a parcel ships.

A platform order is already sold, so it is always stored; what it cannot do is take stock that
is not free. Each order is reserved in one transaction of its own, all lines or none:

1. lock the order row, then its lines, then its reservations (`inventory.locking` fixes the order
   Order -> Line -> Reservation -> Stock, so two workers never wait on each other in a circle);
2. plan a warehouse per line from the shop's priority list (`shop_warehouses`), keeping the whole
   order in the first warehouse when it can take every line;
3. write a `StockMovement` per level and one `Reservation` per line (and release an earlier
   `stock.short` hold);
4. last, take the units with one conditional UPDATE per stock level, in ascending pk order
   (`reserved = reserved + q WHERE on_hand - reserved >= q`); the check constraint
   `0 <= reserved <= on_hand` is the last wall. A live stream's SKU is one hot row: it is
   locked only from this UPDATE to the commit.

A call with several orders first reserves the simple ones (new/held/ready, paid or COD, no
`Reservation` row yet, every live line has a SKU) together in one transaction
(`_orders_reserve_batch`): same lock order, the same planning rules applied in ascending order
id against the levels as read, bulk writes, the levels locked and taken last (re-planned with
them locked first if the stock moved meanwhile), and one round of after-commit work for the
batch. A live-stream spike is mostly such orders. Every other order (re-alignments,
cancellations, unknown SKUs, drop-ship) takes the per-order path.

If any level refuses, the savepoint rolls every line back, the plan is re-made from fresh numbers
(another order may have taken the stock between plan and update) and, when the stock is really
gone, the order is held `stock.short` with the SKU and the shortfall in the message, an alert is
raised, and the SKU's listings are re-published (the free stock is now zero, so every channel gets
zero). Lines whose SKU is unknown hold the order `sku.unknown` and reserve nothing.

Shipping (`order_ship_commit`, the one door for every report of a parcel leaving) commits:
on hand and reserved both drop, once, and an order that has shipped never gives its units back,
even when the platform cancels it afterwards.

Nothing here makes a network call: availability pushes, alerts and low-stock checks are queued
with `transaction.on_commit`, after every lock is gone. Every function is idempotent: the
`Reservation` row per order line and its state (reserved -> committed | released), changed only
under a row lock, make a second run find nothing to do.
"""

from __future__ import annotations

import itertools
import logging
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from inventory.locking import (
    order_lines_lock,
    order_lock,
    reservations_lock,
    stock_level_give_back,
    stock_level_ship,
    stock_level_take,
    stock_levels_lock,
    stock_levels_take_guarded,
    stock_levels_take_many,
)
from inventory.models import (
    MovementKind,
    Reservation,
    ReservationState,
    ShopWarehouse,
    Sku,
    StockLevel,
    StockMovement,
    SupplierItem,
    Warehouse,
    WarehouseKind,
)
from live.pools import PoolLedger
from orders.events import order_event_add
from orders.holds import HOLDABLE_STATUSES, HoldNotAllowed, HoldReason, order_hold
from orders.holds import order_release as holds_release
from orders.models import (
    OPEN_STATUSES,
    EventSource,
    Order,
    OrderEvent,
    OrderHold,
    OrderLine,
    OrderStatus,
)
from tkerp.bulk import rows_copy
from tkerp.tenancy import tenant_context

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    from logistics.models import Shipment
    from shops.models import Shop, Tenant

logger = logging.getLogger("tkerp.stock")

# How often a plan is re-made when another order took the planned stock between the read and
# the conditional UPDATE. Each retry re-reads the numbers, so the last one sees the truth.
PLAN_ATTEMPTS = 3

# From this many orders in one call, the simple ones are reserved together in one transaction
# (`_orders_reserve_batch`); a single order keeps the per-order path.
BATCH_MIN_ORDERS = 2
# How many waiting orders a restock retries in one transaction (`orders_reserve_waiting`).
WAITING_BATCH = 500

_KIND_RANK = {WarehouseKind.OWN: 0, WarehouseKind.THREE_PL: 1, WarehouseKind.SUPPLIER: 2}


class StockError(Exception):
    """A stock change the database refused although the rows were locked (a broken invariant)."""


@dataclass(slots=True)
class ReserveSummary:
    """What `orders_reserve` did, by order id."""

    reserved: list[int] = field(default_factory=list)
    short: list[int] = field(default_factory=list)
    unknown_sku: list[int] = field(default_factory=list)
    released: list[int] = field(default_factory=list)
    unchanged: list[int] = field(default_factory=list)


@dataclass(slots=True)
class _Need:
    """Units a line still needs, and the level they must come from when it already has one."""

    line: OrderLine
    quantity: int
    reservation: Reservation | None
    level_id: int | None = None


class _Refused(Exception):
    """A planned level no longer had the units: roll the order's savepoint back."""


# --- warehouse choice -------------------------------------------------------------------------


def shop_warehouses(*, shop: Shop) -> list[Warehouse]:
    """The warehouses `shop` ships from, first choice first.

    The shop's `ShopWarehouse` list when it has one; otherwise every active warehouse of the
    tenant: own ones, then 3PLs, then drop-ship suppliers, each group by code.
    """
    links = list(
        ShopWarehouse.objects.filter(shop=shop, warehouse__is_active=True)
        .select_related("warehouse")
        .order_by("priority", "warehouse__code")
    )
    if links:
        return [link.warehouse for link in links]
    # Ranked in Python (a stable sort keeps the database's code order within a kind): Django
    # spent ~20 ms hashing a CASE ... WHEN rank annotation to compile its ORDER BY, once per
    # reservation batch.
    warehouses = list(Warehouse.objects.filter(is_active=True).order_by("code"))
    return sorted(warehouses, key=lambda warehouse: _KIND_RANK.get(warehouse.kind, 9))


def dropship_warehouses(*, sku_id: int) -> list[Warehouse]:
    """Active drop-ship warehouses whose supplier carries the SKU (preferred supplier first)."""
    items = (
        SupplierItem.objects.filter(sku_id=sku_id, supplier__is_active=True)
        .select_related("supplier")
        .order_by("-is_preferred", "supplier__code")
    )
    supplier_ids = [item.supplier_id for item in items]
    warehouses = Warehouse.objects.filter(
        is_active=True,
        kind=WarehouseKind.SUPPLIER,
        provider__supplier_id__in=supplier_ids,
    ).select_related("provider")
    order = {supplier_id: index for index, supplier_id in enumerate(supplier_ids)}
    return sorted(warehouses, key=lambda w: (order[w.provider.supplier_id], w.code))


def _plan(
    *,
    needs: list[_Need],
    candidates: Callable[[_Need], list[Warehouse]],
) -> tuple[dict[int, int], dict[int, int], dict[int, tuple[int, int]]]:
    """Pick a stock level per line from fresh, unlocked numbers.

    Returns (level id per line id, units per level id, shortfall per SKU id as (needed, free)).
    The plan is only a guess: the conditional UPDATE decides.
    """
    sku_ids = {need.line.sku_id for need in needs}
    warehouse_ids = {w.pk for need in needs for w in candidates(need)}
    levels = {
        (level.sku_id, level.warehouse_id): level
        for level in StockLevel.objects.filter(sku_id__in=sku_ids, warehouse_id__in=warehouse_ids)
    }
    free = {level.pk: level.on_hand - level.reserved for level in levels.values()}
    return _plan_from(needs=needs, candidates=candidates, levels=levels, free=free)


def _plan_from(
    *,
    needs: list[_Need],
    candidates: Callable[[_Need], list[Warehouse]],
    levels: dict[tuple[int, int], StockLevel],
    free: dict[int, int],
) -> tuple[dict[int, int], dict[int, int], dict[int, tuple[int, int]]]:
    """`_plan`'s rules against given levels (by (sku id, warehouse id)) and free units (by level
    id). `free` is consumed in place: pass a copy when the plan may be thrown away."""
    line_level: dict[int, int] = {}
    shortfall: dict[int, tuple[int, int]] = {}

    fixed = [need for need in needs if need.level_id is not None]
    new = [need for need in needs if need.level_id is None]
    for need in fixed:
        line_level[need.line.pk] = need.level_id
        free[need.level_id] = free.get(need.level_id, 0) - need.quantity

    # Whole order in the first-priority warehouse when it can take every new line.
    first = {need.line.pk: (candidates(need) or [None])[0] for need in new}
    first_ids = {w.pk for w in first.values() if w is not None}
    if new and len(first_ids) == 1 and None not in first.values():
        warehouse_id = first_ids.pop()
        wanted: dict[int, int] = defaultdict(int)
        for need in new:
            wanted[need.line.sku_id] += need.quantity
        chosen = {sku_id: levels.get((sku_id, warehouse_id)) for sku_id in wanted}
        if all(
            level is not None and free.get(level.pk, 0) >= wanted[sku_id]
            for sku_id, level in chosen.items()
        ):
            for need in new:
                level = chosen[need.line.sku_id]
                line_level[need.line.pk] = level.pk
                free[level.pk] -= need.quantity
            new = []

    for need in new:
        for warehouse in candidates(need):
            level = levels.get((need.line.sku_id, warehouse.pk))
            if level is not None and free.get(level.pk, 0) >= need.quantity:
                line_level[need.line.pk] = level.pk
                free[level.pk] -= need.quantity
                break
        else:
            available = sum(
                max(free.get(levels[(need.line.sku_id, w.pk)].pk, 0), 0)
                for w in candidates(need)
                if (need.line.sku_id, w.pk) in levels
            )
            needed, _ = shortfall.get(need.line.sku_id, (0, 0))
            shortfall[need.line.sku_id] = (needed + need.quantity, available)
    for need in fixed:
        if free[need.level_id] < 0:
            needed, _ = shortfall.get(need.line.sku_id, (0, 0))
            shortfall[need.line.sku_id] = (
                needed + need.quantity,
                free[need.level_id] + need.quantity,
            )

    units: dict[int, int] = defaultdict(int)
    for need in needs:
        if need.line.pk in line_level:
            units[line_level[need.line.pk]] += need.quantity
    return line_level, dict(units), shortfall


# --- reserving --------------------------------------------------------------------------------


def order_is_reservable(order: Order) -> bool:
    """Paid (or cash on delivery, which is sold too) and still open."""
    return order.status in OPEN_STATUSES and (order.paid_at is not None or order.is_cod)


def orders_reserve(
    *,
    tenant: Tenant,
    order_ids: Iterable[int],
    dropship: bool = False,
) -> ReserveSummary:
    """Reserve (or re-align) stock for each of `order_ids`, one transaction per order.

    Open, paid orders reserve what their lines still need; cancelled orders and cancelled lines
    give their units back; a changed quantity reserves or releases the difference. With
    `dropship=True` lines may only come from drop-ship warehouses whose supplier carries the SKU.
    Safe to run again and to run concurrently for overlapping orders. Simple orders of a call
    with several are reserved together first (`_orders_reserve_batch`), so an order the
    per-order path handles may see stock a later simple order of the same call already took.
    """
    summary = ReserveSummary()
    order_ids = sorted(set(order_ids))
    with tenant_context(tenant):
        # One query drops the orders with nothing to do (unpaid, shipped, cancelled holding
        # nothing), so a page of updates doesn't open a transaction per order for them.
        candidates = set(
            Order.objects.filter(pk__any=order_ids)
            .filter(
                Q(status__in=OPEN_STATUSES, paid_at__isnull=False)
                | Q(status__in=OPEN_STATUSES, is_cod=True)
                | Q(status=OrderStatus.CANCELLED, reservations__state=ReservationState.RESERVED)
            )
            .values_list("pk", flat=True)
        )
        batched: dict[int, str] = {}
        if not dropship and len(candidates) >= BATCH_MIN_ORDERS:
            batched = _orders_reserve_batch(tenant=tenant, order_ids=sorted(candidates))
        for order_id in order_ids:
            if order_id not in candidates:
                summary.unchanged.append(order_id)
                continue
            outcome = batched.get(order_id)
            if outcome is None:
                outcome = _order_reserve(tenant=tenant, order_id=order_id, dropship=dropship)
            getattr(summary, outcome).append(order_id)
    return summary


# What the batch reads of its orders and lines: an order row carries the platform's whole
# payload (`raw`) and addresses, which a page of 200 would decode as JSON for nothing.
_BATCH_ORDER_FIELDS = ("id", "tenant_id", "shop_id", "platform_order_id", "status")
_BATCH_LINE_FIELDS = ("tenant_id", "order_id", "sku_id", "quantity", "is_cancelled")


def _orders_reserve_batch(
    *, tenant: Tenant, order_ids: list[int], in_turn: bool = False
) -> dict[int, str]:
    """Reserve the simple orders among `order_ids` in one transaction; returns their outcomes.

    Simple: new, held or ready, paid or COD, holding no `Reservation` row, and every live line
    has a SKU. Others are left out (absent from the result) for the per-order path. Locks follow
    `inventory.locking`'s order: the orders, then their lines, then the stock levels, each in
    ascending pk. The orders are planned in Python, in ascending id, with `_plan`'s rules (all
    lines or none), and written with a handful of bulk statements. `in_turn`: `order_ids` is the
    order to plan them in (first come, first served), and only its leading run of simple orders
    is planned, so that the first order the batch cannot take gets its turn on the per-order
    path before any order after it (`orders_reserve_waiting`). Short orders are held
    `stock.short` as `order_hold` would hold them; reserved ones lose an earlier
    `stock.short`/`sku.unknown` hold as `orders.holds.order_release` would release it.

    A live stream's SKU is one hot row every batch wants: so the plan is made from the levels
    as read (unlocked) and everything is written first, and the levels are touched only by the
    last statement (`stock_levels_take_guarded`), which takes the units if the numbers still
    allow the plan: enough free for what it takes and, for a SKU it held short, no more free
    than it saw. The hot row is then locked only from that statement to the commit. If it
    refuses (another transaction changed the stock in between), the savepoint rolls the batch
    back and it is planned again with the levels locked first, against exact numbers. Live
    pools (`PoolLedger`) already serialise their SKUs: those batches lock the levels first.
    """
    with transaction.atomic():
        # What the batch reads of an order (not the platform payload's kilobytes of JSON),
        # and each shop once rather than a Shop, its credentials decrypted, per order row.
        orders = list(
            Order.objects.select_for_update(of=("self",))
            .filter(pk__any=order_ids, status__in=HOLDABLE_STATUSES)
            .filter(Q(paid_at__isnull=False) | Q(is_cod=True))
            .only(*_BATCH_ORDER_FIELDS)
            .order_by("pk")
        )
        if not orders:
            return {}
        from shops.models import Shop

        shops = Shop.objects.in_bulk({order.shop_id for order in orders})
        for order in orders:
            order.shop = shops[order.shop_id]
        lines_by_order: dict[int, list[OrderLine]] = defaultdict(list)
        for line in (
            OrderLine.objects.select_for_update()
            .only(*_BATCH_LINE_FIELDS)
            .filter(order_id__any=[o.pk for o in orders])
            .order_by("pk")
        ):
            lines_by_order[line.order_id].append(line)
        # Reservations are only written under the order's lock, which we hold: this read is
        # exact. Any row at all (even released) means the order needs the per-order path.
        holding = set(
            Reservation.objects.filter(order_id__any=[o.pk for o in orders]).values_list(
                "order_id", flat=True
            )
        )
        simple: list[tuple[Order, list[_Need]]] = []
        for order in orders:
            live = [line for line in lines_by_order[order.pk] if not line.is_cancelled]
            live = [line for line in live if line.quantity > 0]
            if order.pk in holding or not live or any(line.sku_id is None for line in live):
                continue
            simple.append(
                (
                    order,
                    [_Need(line=line, quantity=line.quantity, reservation=None) for line in live],
                )
            )
        if in_turn:
            by_id = {order.pk: (order, needs) for order, needs in simple}
            simple = list(itertools.takewhile(bool, map(by_id.get, order_ids)))
        if not simple:
            return {}

        priorities: dict[int, list[Warehouse]] = {}
        for order, _ in simple:
            if order.shop_id not in priorities:
                priorities[order.shop_id] = shop_warehouses(shop=order.shop)
        sku_ids = {need.line.sku_id for _, needs in simple for need in needs}
        warehouse_ids = {w.pk for ws in priorities.values() for w in ws}
        # Live-session pools of these SKUs: locked after the orders, before the stock levels.
        pools = PoolLedger.lock(tenant_id=tenant.pk, sku_ids=sku_ids)
        levels = StockLevel.objects.filter(
            sku_id__in=sku_ids, warehouse_id__in=warehouse_ids
        ).order_by("pk")
        if not pools:
            statuses = {order.pk: order.status for order, _ in simple}
            try:
                with transaction.atomic():
                    return _batch_reserve(
                        tenant=tenant,
                        simple=simple,
                        priorities=priorities,
                        pools=pools,
                        levels=list(levels),
                        guarded=True,
                    )
            except _Refused:
                for order, _ in simple:  # `_batch_holds` set them on the rolled-back attempt
                    order.status = statuses[order.pk]
        return _batch_reserve(
            tenant=tenant,
            simple=simple,
            priorities=priorities,
            pools=pools,
            levels=list(levels.select_for_update(no_key=True)),
            guarded=False,
        )


def _batch_reserve(
    *,
    tenant: Tenant,
    simple: list[tuple[Order, list[_Need]]],
    priorities: dict[int, list[Warehouse]],
    pools: PoolLedger,
    levels: list[StockLevel],
    guarded: bool,
) -> dict[int, str]:
    """Plan and write `_orders_reserve_batch`'s orders against `levels`: locked ones (exact
    numbers), or, `guarded`, levels as read, taken last by `stock_levels_take_guarded`, which
    raises `_Refused` when the stock moved under the plan."""
    read = {level.pk: level.on_hand - level.reserved for level in levels}
    level_by_id = {level.pk: level for level in levels}
    by_key = {(level.sku_id, level.warehouse_id): level for level in levels}
    free = dict(read)

    outcomes: dict[int, str] = {}
    taken: dict[int, int] = defaultdict(int)
    movements: list[StockMovement] = []
    reservations: list[Reservation] = []
    shorts: list[tuple[Order, dict[int, tuple[int, int]]]] = []
    for order, needs in simple:
        priority = priorities[order.shop_id]
        trial = dict(free)
        line_level, units, shortfall = _plan_from(
            needs=needs, candidates=lambda need, p=priority: p, levels=by_key, free=trial
        )
        if not shortfall and pools:
            shortfall = pools.check(shop_id=order.shop_id, wanted=_wanted(needs))
        if shortfall:
            shorts.append((order, shortfall))
            outcomes[order.pk] = "short"
            continue
        free = trial
        outcomes[order.pk] = "reserved"
        if pools:
            pools.take(shop_id=order.shop_id, lines=_pool_lines(needs))
        for level_id, quantity in sorted(units.items()):
            taken[level_id] += quantity
            movements.append(_reserve_movement(order, level_by_id[level_id], quantity))
        reservations += [
            _reservation_new(order, need, level_by_id[line_level[need.line.pk]]) for need in needs
        ]

    if not guarded:
        stock_levels_take_many(quantities=taken)
        pools.write()
    rows_copy(StockMovement, movements)
    rows_copy(Reservation, reservations)

    reserved = [order for order, _ in simple if outcomes[order.pk] == "reserved"]
    touched = {level_by_id[level_id].sku_id for level_id in taken}
    codes = (
        dict(Sku.objects.filter(pk__in={s for _, f in shorts for s in f}).values_list("pk", "code"))
        if shorts
        else {}
    )
    _batch_holds(reserved=reserved, shorts=shorts, codes=codes)

    short_skus = {sku_id for _, shortfall in shorts for sku_id in shortfall}
    _batch_after_commit(
        tenant=tenant,
        shorts=shorts,
        codes=codes,
        sku_ids=touched | short_skus,
        urgent=short_skus,
    )
    if guarded:
        # Last: the hot rows are locked from here to the commit. A short SKU's levels are in
        # it too (taking nothing), so that stock arriving meanwhile sends the batch round again.
        ceilings = {level.pk: read[level.pk] for level in levels if level.sku_id in short_skus}
        if not stock_levels_take_guarded(quantities=taken, ceilings=ceilings):
            raise _Refused
    return outcomes


def _batch_holds(
    *,
    reserved: list[Order],
    shorts: list[tuple[Order, dict[int, tuple[int, int]]]],
    codes: dict[int, str],
) -> None:
    """What `order_hold` (short orders) and `order_release` (reserved orders that were held
    `stock.short` or `sku.unknown`) write, for a whole batch at once; the orders are locked."""
    active: dict[int, list[OrderHold]] = defaultdict(list)
    for hold in OrderHold.objects.filter(
        order_id__any=[o.pk for o in reserved] + [o.pk for o, _ in shorts],
        released_at__isnull=True,
    ).order_by("pk"):
        active[hold.order_id].append(hold)
    now = timezone.now()
    events: list[OrderEvent] = []
    new_holds: list[OrderHold] = []
    to_hold: list[int] = []
    code = HoldReason.STOCK_SHORT
    for order, shortfall in shorts:
        if any(hold.code == code for hold in active[order.pk]):
            continue  # held already: order_hold changes nothing and writes no event
        message = _short_message(shortfall=shortfall, codes=codes)
        new_holds.append(
            OrderHold(tenant_id=order.tenant_id, order=order, code=code, message=message[:500])
        )
        previous_status = order.status
        if order.status != OrderStatus.ON_HOLD:
            to_hold.append(order.pk)
            order.status = OrderStatus.ON_HOLD
        events.append(
            OrderEvent(
                tenant_id=order.tenant_id,
                order=order,
                kind="hold.added",
                message=f"Held: {code} — {message}"[:500],
                data={"code": code, "message": message, "previous_status": previous_status},
                source=EventSource.SYSTEM,
            )
        )
    released: list[int] = []
    to_ready: list[int] = []
    release_codes = (HoldReason.SKU_UNKNOWN, HoldReason.STOCK_SHORT)
    for order in reserved:
        holds = active[order.pk]
        to_release = [hold for hold in holds if hold.code in release_codes]
        if not to_release:
            continue
        released += [hold.pk for hold in to_release]
        previous_status = order.status
        if len(to_release) == len(holds) and order.status == OrderStatus.ON_HOLD:
            to_ready.append(order.pk)
            order.status = OrderStatus.READY
        released_codes = [hold.code for hold in to_release]
        events.append(
            OrderEvent(
                tenant_id=order.tenant_id,
                order=order,
                kind="hold.released",
                message="Released: " + ", ".join(released_codes),
                data={
                    "codes": released_codes,
                    "previous_status": previous_status,
                    "status": order.status,
                },
                source=EventSource.SYSTEM,
            )
        )
    if released:
        OrderHold.objects.filter(pk__in=released).update(released_at=now, released_by=None)
    if to_hold:
        Order.objects.filter(pk__any=to_hold).update(status=OrderStatus.ON_HOLD, updated_at=now)
    if to_ready:
        Order.objects.filter(pk__any=to_ready).update(status=OrderStatus.READY, updated_at=now)
    if new_holds:
        rows_copy(OrderHold, new_holds)
    if events:
        rows_copy(OrderEvent, events)


def _batch_after_commit(
    *,
    tenant: Tenant,
    shorts: list[tuple[Order, dict[int, tuple[int, int]]]],
    codes: dict[int, str],
    sku_ids: set[int],
    urgent: set[int],
) -> None:
    """Queue, for the whole batch, one alert per short SKU, one availability mark and one
    low-stock check (the per-order path queues them per order)."""
    # One alert per SKU, worded for the last short order: what one alert per order would leave.
    last: dict[int, tuple[Order, int, int]] = {}
    for order, shortfall in shorts:
        for sku_id, (needed, free) in shortfall.items():
            last[sku_id] = (order, needed, free)
    alerts = [
        (codes[sku_id], order.platform_order_id, order.pk, order.shop, needed, free)
        for sku_id, (order, needed, free) in sorted(last.items())
    ]

    def raise_alerts() -> None:
        from tkerp.alerts import alert_raise

        for code, platform_id, order_id, shop, needed, free in alerts:
            alert_raise(
                tenant=tenant,
                key=f"stock.short:{code}",
                kind="stock.short",
                title=f"Oversold: {code}",
                message=_short_alert_message(
                    code=code, platform_id=platform_id, order_id=order_id, needed=needed, free=free
                ),
                shop=shop,
            )

    if alerts:
        transaction.on_commit(raise_alerts, robust=True)
    _after_commit(tenant=tenant, sku_ids=sku_ids, urgent_ids=urgent)


def _order_reserve(*, tenant: Tenant, order_id: int, dropship: bool) -> str:
    with transaction.atomic():
        try:
            order = order_lock(order_id=order_id)
        except Order.DoesNotExist:
            return "unchanged"
        if order.status == OrderStatus.CANCELLED:
            released = _release_locked(order=order, reason="cancelled")
            return "released" if released else "unchanged"
        if not order_is_reservable(order):
            return "unchanged"
        lines = order_lines_lock(order=order)
        reservations = {r.order_line_id: r for r in reservations_lock(order=order)}
        if dropship and any(r.state == ReservationState.RESERVED for r in reservations.values()):
            return "unchanged"  # only an order holding nothing is re-routed

        give_back: list[tuple[Reservation, int]] = []
        needs: list[_Need] = []
        unknown: list[OrderLine] = []
        for line in lines:
            reservation = reservations.get(line.pk)
            if reservation is not None and reservation.state == ReservationState.COMMITTED:
                continue  # shipped: quantity changes after that are returns, not ours
            held = (
                reservation.quantity
                if reservation is not None and reservation.state == ReservationState.RESERVED
                else 0
            )
            wanted = 0 if line.is_cancelled else line.quantity
            if wanted and line.sku_id is None:
                unknown.append(line)
            elif wanted < held:
                give_back.append((reservation, held - wanted))
            elif wanted > held:
                needs.append(
                    _Need(
                        line=line,
                        quantity=wanted - held,
                        reservation=reservation,
                        level_id=reservation.stock_level_id if held else None,
                    )
                )

        touched_skus = {r.sku_id for r, _ in give_back}
        if give_back:
            _give_back(order=order, items=give_back, reason="line changed")

        if unknown:
            codes = ", ".join(
                sorted({line.seller_sku or line.platform_line_id for line in unknown})
            )
            _hold(
                order=order,
                code=HoldReason.SKU_UNKNOWN,
                message=f"No SKU matches {codes}; map the listing or fix the line.",
            )
            _after_commit(tenant=tenant, sku_ids=touched_skus)
            return "unknown_sku"

        if not needs:
            _release_hold_if_any(
                order=order, codes=[HoldReason.SKU_UNKNOWN, HoldReason.STOCK_SHORT]
            )
            _after_commit(tenant=tenant, sku_ids=touched_skus)
            return "released" if give_back else "unchanged"

        if dropship:
            cache: dict[int, list[Warehouse]] = {}

            def candidates(need: _Need) -> list[Warehouse]:
                sku_id = need.line.sku_id
                if sku_id not in cache:
                    cache[sku_id] = dropship_warehouses(sku_id=sku_id)
                return cache[sku_id]
        else:
            priority = shop_warehouses(shop=order.shop)

            def candidates(need: _Need) -> list[Warehouse]:
                return priority

        shortfall: dict[int, tuple[int, int]] = {}
        # Live-session pools of these SKUs: locked after the order's rows, before the levels.
        pools = PoolLedger.lock(
            tenant_id=order.tenant_id, sku_ids={need.line.sku_id for need in needs}
        )
        for _attempt in range(PLAN_ATTEMPTS):
            line_level, units, shortfall = _plan(needs=needs, candidates=candidates)
            if not shortfall and pools:
                shortfall = pools.check(shop_id=order.shop_id, wanted=_wanted(needs))
            if shortfall:
                break
            try:
                with transaction.atomic():
                    _take(order=order, needs=needs, line_level=line_level, units=units)
                    if pools:
                        pools.take(shop_id=order.shop_id, lines=_pool_lines(needs))
                        pools.write()
            except _Refused:
                continue
            touched_skus |= {need.line.sku_id for need in needs}
            _after_commit(tenant=tenant, sku_ids=touched_skus)
            return "reserved"
        else:
            # Every attempt lost its race: hold as short with the numbers as they are now.
            _, _, shortfall = _plan(needs=needs, candidates=candidates)
            if not shortfall:
                shortfall = {
                    need.line.sku_id: (need.quantity, 0) for need in needs
                }  # pragma: no cover - only under extreme churn

        _order_short(tenant=tenant, order=order, shortfall=shortfall)
        _after_commit(tenant=tenant, sku_ids=set(shortfall), urgent=True)
        _after_commit(tenant=tenant, sku_ids=touched_skus - set(shortfall))
        return "short"


def _wanted(needs: list[_Need]) -> dict[int, int]:
    """sku id -> units the needs want."""
    wanted: dict[int, int] = defaultdict(int)
    for need in needs:
        wanted[need.line.sku_id] += need.quantity
    return wanted


def _pool_lines(needs: list[_Need]) -> list[tuple[int, int, int]]:
    return [(need.line.pk, need.line.sku_id, need.quantity) for need in needs]


def _take(
    *, order: Order, needs: list[_Need], line_level: dict[int, int], units: dict[int, int]
) -> None:
    """Apply a plan: ledger and reservations, the hold release, then the conditional UPDATEs in
    ascending level order as the last statements (`_Refused` if one refuses: the caller's
    savepoint rolls the rest back). A hot level's row is locked from its UPDATE to the commit,
    so everything else is written before it."""
    held = [need.reservation for need in needs if need.reservation is not None]
    before = [(r.quantity, r.state, r.stock_level_id, r.sku_id, r.warehouse_id) for r in held]
    status = order.status
    try:
        _take_writes(order=order, needs=needs, line_level=line_level, units=units)
    except _Refused:
        # The savepoint undoes the rows; the next plan starts from the reservations (and the
        # order's status: the hold release set it) as stored.
        order.status = status
        for reservation, values in zip(held, before, strict=True):
            (
                reservation.quantity,
                reservation.state,
                reservation.stock_level_id,
                reservation.sku_id,
                reservation.warehouse_id,
            ) = values
        raise


def _reserve_movement(order: Order, level: StockLevel, quantity: int) -> StockMovement:
    """The ledger row of `quantity` units of `level` reserved for `order` (both paths)."""
    return StockMovement(
        tenant_id=order.tenant_id,
        sku_id=level.sku_id,
        warehouse_id=level.warehouse_id,
        kind=MovementKind.RESERVE,
        reserved_delta=quantity,
        order=order,
        reference=f"order {order.platform_order_id}"[:100],
    )


def _reservation_new(order: Order, need: _Need, level: StockLevel) -> Reservation:
    """A new reservation of `need`'s line on `level`, not yet stored (both paths)."""
    return Reservation(
        tenant_id=order.tenant_id,
        order=order,
        order_line=need.line,
        stock_level_id=level.pk,
        sku_id=level.sku_id,
        warehouse_id=level.warehouse_id,
        quantity=need.quantity,
    )


def _take_writes(
    *, order: Order, needs: list[_Need], line_level: dict[int, int], units: dict[int, int]
) -> None:
    levels = {
        level.pk: level
        for level in StockLevel.objects.filter(pk__in=units).only("pk", "sku_id", "warehouse_id")
    }
    StockMovement.objects.bulk_create(
        [
            _reserve_movement(order, levels[level_id], quantity)
            for level_id, quantity in sorted(units.items())
        ]
    )
    for need in needs:
        level = levels[line_level[need.line.pk]]
        reservation = need.reservation
        if reservation is None:
            _reservation_new(order, need, level).save(force_insert=True)
        elif reservation.state == ReservationState.RESERVED:
            reservation.quantity += need.quantity
            reservation.save(update_fields=["quantity", "updated_at"])
        else:  # released earlier (cancelled line re-opened, re-route): hold it again
            reservation.stock_level_id = level.pk
            reservation.sku_id = level.sku_id
            reservation.warehouse_id = level.warehouse_id
            reservation.quantity = need.quantity
            reservation.state = ReservationState.RESERVED
            reservation.save()
    # The reservations are written, so a released order counts as reserved (ready, not new).
    _release_hold_if_any(order=order, codes=[HoldReason.SKU_UNKNOWN, HoldReason.STOCK_SHORT])
    for level_id in sorted(units):
        if not stock_level_take(level_id=level_id, quantity=units[level_id]):
            raise _Refused


def _short_message(*, shortfall: dict[int, tuple[int, int]], codes: dict[int, str]) -> str:
    parts = [
        f"{codes[sku_id]}: needs {needed}, {free} free (short {needed - free})"
        for sku_id, (needed, free) in sorted(shortfall.items(), key=lambda item: codes[item[0]])
    ]
    return "Not enough stock — " + "; ".join(parts)


def _short_alert_message(*, code: str, platform_id: str, order_id: int, needed: int, free: int):
    return (
        f"Order {platform_id} (id {order_id}) needs {needed} of {code}, "
        f"{free} free. Its listings now publish zero. Wait for stock, route it to a "
        "drop-ship supplier, or cancel it through the platform."
    )


def _order_short(*, tenant: Tenant, order: Order, shortfall: dict[int, tuple[int, int]]) -> None:
    """Hold an order whose stock is gone, and queue the alerts for each short SKU."""
    codes = dict(Sku.objects.filter(pk__in=shortfall).values_list("pk", "code"))
    _hold(
        order=order,
        code=HoldReason.STOCK_SHORT,
        message=_short_message(shortfall=shortfall, codes=codes),
    )
    order_id, platform_id, shop = order.pk, order.platform_order_id, order.shop

    def raise_alerts() -> None:
        from tkerp.alerts import alert_raise

        for sku_id, (needed, free) in shortfall.items():
            alert_raise(
                tenant=tenant,
                key=f"stock.short:{codes[sku_id]}",
                kind="stock.short",
                title=f"Oversold: {codes[sku_id]}",
                message=_short_alert_message(
                    code=codes[sku_id],
                    platform_id=platform_id,
                    order_id=order_id,
                    needed=needed,
                    free=free,
                ),
                shop=shop,
            )

    transaction.on_commit(raise_alerts, robust=True)


def _hold(*, order: Order, code: str, message: str) -> None:
    try:
        order_hold(order=order, code=code, message=message, source="system")
    except HoldNotAllowed:
        # Allocated orders cannot be held; the event keeps the reason visible.
        order_event_add(order=order, kind=code, message=message, data={"code": code})


def _release_hold_if_any(*, order: Order, codes: list[str]) -> None:
    if OrderHold.objects.filter(order=order, code__in=codes, released_at__isnull=True).exists():
        holds_release(order=order, codes=codes, source="system")


# --- releasing --------------------------------------------------------------------------------


def order_release(
    *,
    order: Order,
    reason: str = "cancelled",
    only_warehouse_ids: Collection[int] | None = None,
) -> int:
    """Give back every unit `order` still holds (cancelled, re-routed...); returns units released.

    Committed (shipped) reservations stay as they are, and an order that has shipped
    (`order_has_shipped`: the platform may cancel an order after its parcel left) gives nothing
    back: what it still holds is committed through `order_ship_commit`; but when only some of
    its parcels left through tkerp, the units of the others are released. A second call finds
    nothing reserved and changes nothing.

    Units in the warehouse of a parcel whose provider was asked to intercept it stay reserved
    until the provider answers (the parcel may still ship), and after a "too late" until it
    ships (then they are committed); `only_warehouse_ids` releases those
    warehouses' units only, which is how a confirmed intercept gives them back
    (`orders.cancellations.shipment_intercept_resolve`).
    """
    tenant = order.tenant
    with tenant_context(tenant), transaction.atomic():
        try:
            locked = order_lock(order_id=order.pk)
        except Order.DoesNotExist:
            return 0
        return _release_locked(
            order=locked,
            reason=reason,
            only_warehouse_ids=only_warehouse_ids,
        )


def _release_locked(
    *,
    order: Order,
    reason: str,
    only_warehouse_ids: Collection[int] | None = None,
) -> int:
    from logistics.models import InterceptState, Shipment, ShipmentStatus

    if order_has_shipped(order):
        # The units left with the parcel: a cancel after shipping gives nothing back. Whatever
        # is still reserved (the pipeline had not committed it yet) is committed instead...
        order_ship_commit(order=order, source=EventSource.SYSTEM)
        if not _parcels_gone(order):
            return 0
        # ... unless only some of its parcels left: the rest never did, and goes back.
    held: set[int] = set()
    if only_warehouse_ids is None and order.status == OrderStatus.CANCELLED:
        # Cancelled at the platform (no request passed through the inbox): its parcels are
        # stopped here as for an approved request. Unsent ones are cancelled (a label goes back
        # for a refund, a number not sent yet is withdrawn); a provider holding one is asked to
        # stop it, and its units wait for the answer (the parcel may still ship).
        from orders.cancellations import order_parcels_stop

        cancelled = order_parcels_stop(
            order=order,
            shipments=Shipment.objects.select_for_update(of=("self",))
            .filter(order=order)
            .select_related("provider")
            .order_by("pk"),
            reason=reason,
            source=EventSource.SYSTEM,
        )
        if cancelled:
            references = sorted(
                Shipment.objects.filter(pk__in=cancelled).values_list("reference", flat=True)
            )
            order_event_add(
                order=order,
                kind="shipments.cancelled",
                message="The platform cancelled the order: parcel(s) "
                + ", ".join(references)
                + " cancelled",
                data={"shipments_cancelled": cancelled},
                source=EventSource.SYSTEM,
            )
    if only_warehouse_ids is None:
        # Waiting for the provider's answer, or too late to stop (the parcel ships anyway and
        # its units leave through `order_ship_commit`): either way not back on the shelf.
        held = set(
            Shipment._base_manager.filter(
                tenant_id=order.tenant_id,
                order_id=order.pk,
                intercept_state__in=(InterceptState.REQUESTED, InterceptState.FAILED),
            )
            .exclude(status=ShipmentStatus.CANCELLED)
            .values_list("warehouse_id", flat=True)
        )
    reservations = [
        r
        for r in reservations_lock(order=order)
        if r.state == ReservationState.RESERVED
        and r.warehouse_id not in held
        and (only_warehouse_ids is None or r.warehouse_id in only_warehouse_ids)
    ]
    if not reservations:
        return 0
    return _give_back(order=order, items=[(r, r.quantity) for r in reservations], reason=reason)


def _give_back(*, order: Order, items: list[tuple[Reservation, int]], reason: str) -> int:
    """Un-reserve `quantity` of each reservation; the caller holds the order and reservations."""
    units: dict[int, int] = defaultdict(int)
    for reservation, quantity in items:
        units[reservation.stock_level_id] += quantity
    levels = stock_levels_lock(level_ids=units)
    for level_id in sorted(units):
        if not stock_level_give_back(level_id=level_id, quantity=units[level_id]):
            raise StockError(f"stock level {level_id} holds fewer than {units[level_id]} reserved")
    StockMovement.objects.bulk_create(
        [
            StockMovement(
                tenant_id=order.tenant_id,
                sku_id=levels[level_id].sku_id,
                warehouse_id=levels[level_id].warehouse_id,
                kind=MovementKind.RELEASE,
                reserved_delta=-quantity,
                order=order,
                reference=f"order {order.platform_order_id}"[:100],
                note=reason[:255],
            )
            for level_id, quantity in sorted(units.items())
        ]
    )
    for reservation, quantity in items:
        reservation.quantity -= quantity
        if reservation.quantity == 0:
            reservation.quantity = quantity  # keep what was held, for the record
            reservation.state = ReservationState.RELEASED
        reservation.save(update_fields=["quantity", "state", "updated_at"])
    _after_commit(tenant=order.tenant, sku_ids={r.sku_id for r, _ in items})
    return sum(units.values())


# --- is an order's stock held? ----------------------------------------------------------------


def lines_not_reserved(lines: QuerySet[OrderLine]) -> QuerySet[OrderLine]:
    """The live lines of `lines` (not cancelled, quantity above zero) whose units are not all
    held: no reservation, reserved or committed, for the line's whole quantity. A line with no
    SKU is never held. `lines` may be correlated to an outer query (`order=OuterRef("pk")`)."""
    covering = Reservation._base_manager.filter(
        order_line=OuterRef("pk"),
        state__in=(ReservationState.RESERVED, ReservationState.COMMITTED),
        quantity__gte=OuterRef("quantity"),
    )
    return lines.filter(is_cancelled=False, quantity__gt=0).filter(~Exists(covering))


def orders_not_reserved(*, order_ids: Collection[int]) -> set[int]:
    """The orders among `order_ids` with a live line whose stock is not reserved (see
    `lines_not_reserved`). Review and hold release ask this before calling an order ready: a
    ready order is split into parcels from its reservations, so one without them would never
    ship and its units would stay published on every channel. Call in the tenant's scope."""
    if not order_ids:
        return set()
    lines = lines_not_reserved(OrderLine.objects.filter(order_id__any=list(order_ids)))
    # No ordering: OrderLine's default one joins the orders and widens the DISTINCT.
    return set(lines.order_by().values_list("order_id", flat=True).distinct())


# --- shipping ---------------------------------------------------------------------------------
#
# `order_ship_commit` is the one door through which reserved units leave the building, whoever
# reports it: the platform (ingest sees shipped, `orders_ship_commit` runs it from the
# pipeline), a person ("Mark shipped" on the order admin), and the provider API and label
# batches with one parcel. Under the order's lock it commits every still-reserved unit, moves
# the parcels that had not left yet to shipped (so no label is bought or printed for them) and
# moves an open order to shipped. Whatever the door, a second report finds the reservations
# committed and the parcels shipped, and writes nothing.

SHIPPED_STATUSES = (OrderStatus.SHIPPED, OrderStatus.IN_TRANSIT, OrderStatus.DELIVERED)


def _parcel_statuses():
    from logistics.models import ShipmentStatus

    # Parcels that have not left yet; `exception` (an intercept in progress) is a person's call.
    unshipped = (
        ShipmentStatus.PENDING,
        ShipmentStatus.LABELLED,
        ShipmentStatus.SENT_TO_PROVIDER,
        ShipmentStatus.CONFIRMED,
    )
    gone = (ShipmentStatus.SHIPPED, ShipmentStatus.IN_TRANSIT, ShipmentStatus.DELIVERED)
    return unshipped, gone


class ShipRefused(Exception):
    """An order (or parcel) that may not be marked shipped now; the message says why."""


def order_has_shipped(order: Order) -> bool:
    """Whether `order`'s goods left the building by its own record: shipped, in transit or
    delivered, or cancelled after it shipped (the platform may cancel a shipped order; the
    units went with the parcel all the same)."""
    return order.status in SHIPPED_STATUSES or (
        order.status == OrderStatus.CANCELLED and order.shipped_at is not None
    )


def _parcels_gone(order: Order) -> list[Shipment]:
    """The parcels of `order`, cancelled after it shipped, that left through tkerp (shipped,
    in transit, delivered); empty for any other order. When there are some, they, not the
    platform's shipped time, say which units left: a split order cancelled after its first
    parcel left keeps the other parcels' units in stock. The caller holds the order's lock."""
    from logistics.models import Shipment

    if not (order.status == OrderStatus.CANCELLED and order.shipped_at is not None):
        return []
    _, gone = _parcel_statuses()
    return list(Shipment.objects.filter(order=order, status__in=gone).order_by("pk"))


def order_ship_commit(
    *,
    order: Order | None = None,
    shipment: Shipment | None = None,
    shipped_at: datetime | None = None,
    user: AbstractBaseUser | None = None,
    source: str | None = None,
) -> int:
    """`order` (or one parcel of it, `shipment`) left the building; returns the units committed.

    Locks in the house order (the order, its lines, its reservations, the stock levels), then:
    every reservation still reserved (of the parcel's lines and warehouse, for a parcel) moves
    to committed, on hand and reserved both drop, and a `ship` movement per level is written;
    the order's parcels that had not left (just `shipment`, for a parcel) become shipped with
    their `shipped_at`; an open order becomes shipped (for a parcel: once no other live parcel
    is waiting) and an event records what happened.

    An order already shipped, in transit, delivered or cancelled after shipping is a fact being
    reported (the platform says so), and so is a parcel its provider was too late to intercept:
    whatever it still holds is committed, nothing is refused,
    and a cancel never gives those units back (`order_release` sends them here). Shipping an
    open order is a request, refused with `ShipRefused` when the order is cancelled, on hold,
    has a cancellation request pending or approved, or has a line whose stock is not reserved
    (a parcel: the parcel is cancelled). A second call finds nothing to do and writes nothing.
    """
    from logistics.models import InterceptState, Shipment, ShipmentLine, ShipmentStatus

    if (order is None) == (shipment is None):
        raise ValueError("pass an order or a shipment")
    order_id = order.pk if order is not None else shipment.order_id
    tenant = order.tenant if order is not None else shipment.tenant
    unshipped, gone = _parcel_statuses()
    now = timezone.now()
    with tenant_context(tenant), transaction.atomic():
        locked = order_lock(order_id=order_id)
        lines = order_lines_lock(order=locked)
        reservations = reservations_lock(order=locked)
        parcel = None
        if shipment is not None:
            # Every writer of an order's parcels holds the order's lock first: this read is exact.
            parcel = Shipment.objects.get(pk=shipment.pk, order=locked)
            parcel_line_ids = set(parcel.lines.values_list("order_line_id", flat=True))
        # A parcel its provider was too late to stop (its order cancelled) ships as a fact too,
        # whichever door reports it (the provider API, a tracking file, a person).
        reported = order_has_shipped(locked) or (
            parcel is not None
            and (parcel.status in gone or parcel.intercept_state == InterceptState.FAILED)
        )
        if not reported:
            _ship_check(order=locked, lines=lines, reservations=reservations, parcel=parcel)
        when = shipped_at or (parcel.shipped_at if parcel is not None else None)
        when = when or locked.shipped_at or now

        held = [r for r in reservations if r.state == ReservationState.RESERVED]
        if parcel is not None:
            held = [
                r
                for r in held
                if r.order_line_id in parcel_line_ids and r.warehouse_id == parcel.warehouse_id
            ]
        # Cancelled after only some of its parcels left: those parcels are what left; the
        # others never did (`_release_locked` gives their units back).
        left = _parcels_gone(locked) if parcel is None else None
        if left:
            carried = set(
                ShipmentLine.objects.filter(shipment__in=left).values_list(
                    "order_line_id", "shipment__warehouse_id"
                )
            )
            held = [r for r in held if (r.order_line_id, r.warehouse_id) in carried]
        units = _commit_locked(
            order=locked, reservations=held, reference=parcel.reference if parcel else ""
        )

        parcels = Shipment.objects.filter(order=locked, status__in=unshipped)
        if parcel is not None:
            parcels = parcels.filter(pk=parcel.pk)
        elif left:
            parcels = parcels.none()
        moved = sorted(parcels.values_list("reference", flat=True))
        if moved:
            parcels.update(status=ShipmentStatus.SHIPPED, shipped_at=when, updated_at=now)

        previous_status = locked.status
        if locked.status in OPEN_STATUSES and (
            parcel is None
            or not Shipment.objects.filter(order=locked, status__in=unshipped).exists()
        ):
            locked.status = OrderStatus.SHIPPED
            locked.shipped_at = locked.shipped_at or when
            Order.objects.filter(pk=locked.pk).update(
                status=locked.status, shipped_at=locked.shipped_at, updated_at=now
            )
        if units or moved or locked.status != previous_status:
            _ship_event(
                order=locked,
                units=units,
                parcels=moved,
                previous_status=previous_status,
                user=user,
                source=source,
            )
        return units


def _ship_check(
    *,
    order: Order,
    lines: list[OrderLine],
    reservations: list[Reservation],
    parcel: Shipment | None,
) -> None:
    """Refuse to ship an open order (or a parcel of it) that must not leave; see
    `order_ship_commit`. The caller holds the locks."""
    from logistics.models import ShipmentStatus
    from orders.cancellations import order_ship_blocker

    name = f"Order {order.platform_order_id}"
    blocker = order_ship_blocker(order, holds=True)
    if blocker is not None:
        raise ShipRefused(f"{name} can't ship: {blocker}.")
    if parcel is not None and parcel.status == ShipmentStatus.CANCELLED:
        raise ShipRefused(f"Parcel {parcel.reference} is cancelled; it can't ship.")
    wanted = {line.pk for line in lines if not line.is_cancelled and line.quantity > 0}
    if parcel is not None:
        wanted &= set(parcel.lines.values_list("order_line_id", flat=True))
    held = {
        r.order_line_id: r.quantity
        for r in reservations
        if r.state in (ReservationState.RESERVED, ReservationState.COMMITTED)
    }
    missing = [line for line in lines if line.pk in wanted and held.get(line.pk, 0) < line.quantity]
    if missing:
        what = ", ".join(sorted({line.seller_sku or line.platform_line_id for line in missing}))
        raise ShipRefused(
            f"{name} has no reserved stock for {what}: reserve it first (or count the stock), "
            "so that shipping takes the units out of stock."
        )


def _commit_locked(*, order: Order, reservations: list[Reservation], reference: str) -> int:
    """Commit the given reserved reservations of the locked `order`: on hand and reserved drop
    on their levels (locked here, ascending), one `ship` movement per level, reservations
    committed. Returns the units."""
    if not reservations:
        return 0
    units: dict[int, int] = defaultdict(int)
    for reservation in reservations:
        units[reservation.stock_level_id] += reservation.quantity
    levels = stock_levels_lock(level_ids=units)
    for level_id in sorted(units):
        if not stock_level_ship(level_id=level_id, quantity=units[level_id]):
            raise StockError(f"stock level {level_id} cannot ship {units[level_id]}")
    StockMovement.objects.bulk_create(
        [
            StockMovement(
                tenant_id=order.tenant_id,
                sku_id=levels[level_id].sku_id,
                warehouse_id=levels[level_id].warehouse_id,
                kind=MovementKind.SHIP,
                on_hand_delta=-quantity,
                reserved_delta=-quantity,
                order=order,
                reference=(reference or f"order {order.platform_order_id}")[:100],
            )
            for level_id, quantity in sorted(units.items())
        ]
    )
    Reservation.objects.filter(pk__in=[r.pk for r in reservations]).update(
        state=ReservationState.COMMITTED, updated_at=timezone.now()
    )
    for reservation in reservations:
        reservation.state = ReservationState.COMMITTED
    # Free stock is unchanged by shipping, but the low-stock check reads on hand too.
    _after_commit(tenant=order.tenant, sku_ids={r.sku_id for r in reservations}, push=False)
    return sum(units.values())


def _ship_event(
    *,
    order: Order,
    units: int,
    parcels: list[str],
    previous_status: str,
    user: AbstractBaseUser | None,
    source: str | None,
) -> None:
    parts = [f"{units} unit{'s' if units != 1 else ''} left stock"]
    if parcels:
        parts.append("parcels marked shipped: " + ", ".join(parcels))
    if order.status == OrderStatus.CANCELLED:
        # Nothing comes back by itself: a parcel that returns is received as a return.
        message = (
            "Cancelled after it shipped: the units stay out of stock (" + "; ".join(parts) + "). "
            "If the parcel comes back, receive it as a return."
        )
    else:
        message = "Shipped: " + "; ".join(parts)
    order_event_add(
        order=order,
        kind="stock.shipped",
        message=message,
        data={
            "units": units,
            "parcels": parcels,
            "previous_status": previous_status,
            "status": order.status,
        },
        user=user,
        source=source,
    )


def orders_ship_commit(*, tenant: Tenant, order_ids: Collection[int]) -> int:
    """Run `order_ship_commit` for the orders among `order_ids` that have shipped by their own
    record (the platform reported it) but still hold reserved units or unshipped parcels; the
    pipeline calls this after every ingest. Selected by state: a second run finds nothing.
    Returns the units committed."""
    from logistics.models import Shipment

    unshipped, _ = _parcel_statuses()
    with tenant_context(tenant):
        holding = Exists(
            Reservation.objects.filter(order=OuterRef("pk"), state=ReservationState.RESERVED)
        )
        waiting = Exists(Shipment.objects.filter(order=OuterRef("pk"), status__in=unshipped))
        orders = list(
            Order.objects.filter(pk__any=sorted(set(order_ids)))
            .filter(
                Q(status__in=SHIPPED_STATUSES)
                | Q(status=OrderStatus.CANCELLED, shipped_at__isnull=False)
            )
            .filter(holding | waiting)
            .order_by("pk")
        )
    units = 0
    for order in orders:
        order.tenant = tenant
        units += order_ship_commit(order=order, source=EventSource.PLATFORM)
    return units


# --- oversold orders: the action list ---------------------------------------------------------


def order_reserve_retry(*, order: Order) -> str:
    """ "Wait for stock": try again; on success the `stock.short` hold is released."""
    summary = orders_reserve(tenant=order.tenant, order_ids=[order.pk])
    return _outcome(summary)


def order_route_dropship(*, order: Order) -> str:
    """Reserve an oversold order in drop-ship warehouses whose supplier carries each SKU.

    Supplier stock is whatever the supplier's warehouse level records (their feed or a count);
    routing never reserves more than that.
    """
    summary = orders_reserve(tenant=order.tenant, order_ids=[order.pk], dropship=True)
    return _outcome(summary)


def _outcome(summary: ReserveSummary) -> str:
    for name in ("reserved", "short", "unknown_sku", "released"):
        if getattr(summary, name):
            return name
    return "unchanged"


def orders_reserve_waiting(*, tenant: Tenant, sku_ids: Collection[int]) -> ReserveSummary:
    """Retry the `stock.short` orders that wait for any of `sku_ids`, oldest paid first, so the
    first paid gets the stock: `WAITING_BATCH` at a time in one transaction, planned in that
    order (`_orders_reserve_batch`, `in_turn`), and the first order a batch cannot take (one that
    held stock before, say) on the per-order path before any order after it. A restock after a
    live stream's oversell frees thousands of orders at once: one transaction each took about
    25 ms an order (bench/stock.py, "restock")."""
    with tenant_context(tenant):
        # Three lookups by index, each from the ids the last found, rather than one join: right
        # after a spike the tables' statistics still say they are nearly empty, and the join
        # was planned as nested loops over every hold for every order (2.2 s for 2,000 orders).
        ordered = (
            OrderLine.objects.filter(sku_id__any=sorted(set(sku_ids)))
            .order_by()
            .values_list("order_id", flat=True)
        )
        held = (
            OrderHold.objects.filter(
                order_id__any=sorted(set(ordered)),
                code=HoldReason.STOCK_SHORT,
                released_at__isnull=True,
            )
            .order_by()
            .values_list("order_id", flat=True)
        )
        order_ids = list(
            Order.objects.filter(pk__any=sorted(set(held)), status__in=OPEN_STATUSES)
            .order_by("paid_at", "pk")
            .values_list("pk", flat=True)
        )
        summary = ReserveSummary()
        position = 0
        while position < len(order_ids):
            turn = order_ids[position : position + WAITING_BATCH]
            outcomes = _orders_reserve_batch(tenant=tenant, order_ids=turn, in_turn=True)
            for order_id in turn:
                position += 1
                outcome = outcomes.get(order_id)
                if outcome is not None:
                    getattr(summary, outcome).append(order_id)
                    continue
                result = orders_reserve(tenant=tenant, order_ids=[order_id])
                for name in ("reserved", "short", "unknown_sku", "released", "unchanged"):
                    getattr(summary, name).extend(getattr(result, name))
                break  # the orders after it are planned again, against what it took
    return summary


# --- after commit: availability pushes and low-stock alerts -----------------------------------


def stock_changed(*, tenant: Tenant, sku_ids: Collection[int], retry_waiting: bool = False) -> None:
    """Queue what follows a stock change, to run once the current transaction commits.

    `inventory.stock` calls this after counts and receipts (with `retry_waiting=True`, so orders
    held `stock.short` for those SKUs try again).
    """
    _after_commit(tenant=tenant, sku_ids=sku_ids, retry_waiting=retry_waiting)


def _after_commit(
    *,
    tenant: Tenant,
    sku_ids: Collection[int],
    push: bool = True,
    retry_waiting: bool = False,
    urgent: bool = False,
    urgent_ids: Collection[int] = (),
) -> None:
    """Queue availability marks and the low-stock check for `sku_ids` after commit; `urgent`
    (all of them) or `urgent_ids` (some) are oversold and skip the push debounce."""
    sku_ids = sorted(set(sku_ids))
    if not sku_ids:
        return
    urgent_ids = sorted(set(sku_ids) if urgent else set(urgent_ids))

    def run() -> None:
        from inventory import availability

        with tenant_context(tenant):
            if retry_waiting:
                # First, so the listings publish what the waiting orders left, and in this
                # process rather than a queued task, so that no order arriving meanwhile takes
                # the new stock before the ones that waited for it.
                orders_reserve_waiting(tenant=tenant, sku_ids=sku_ids)
            if push:
                mark_due = getattr(availability, "listings_mark_due", None)
                if urgent_ids and mark_due is not None:
                    # Oversold: skip the debounce so every channel drops to zero at once.
                    mark_due(
                        tenant_id=tenant.pk,
                        listing_filter=Q(sku_id__in=urgent_ids),
                        delay=timedelta(0),
                    )
                availability.skus_changed(tenant=tenant, sku_ids=sku_ids)
            stock_low_check(tenant=tenant, sku_ids=sku_ids)

    transaction.on_commit(run, robust=True)


def stock_low_check(*, tenant: Tenant, sku_ids: Collection[int]) -> None:
    """Raise `stock.low:<sku>` for each SKU with a level at or under its reorder point (naming
    the suppliers that carry it and their lead times); resolve it once every level is above."""
    from tkerp.alerts import alert_raise, alert_resolve

    with tenant_context(tenant):
        levels: dict[int, list[StockLevel]] = defaultdict(list)
        for level in StockLevel.objects.filter(sku_id__in=sku_ids).select_related(
            "sku", "warehouse"
        ):
            levels[level.sku_id].append(level)
        for sku_id in sorted(sku_ids):
            watched = [level for level in levels.get(sku_id, []) if level.reorder_point > 0]
            if not watched:
                continue
            sku = watched[0].sku
            low = [level for level in watched if level.free <= level.reorder_point]
            key = f"stock.low:{sku.code}"
            if not low:
                alert_resolve(tenant=tenant, key=key)
                continue
            items = SupplierItem.objects.filter(sku_id=sku_id).select_related("supplier")
            suppliers = ", ".join(
                f"{item.supplier.name} ({item.effective_lead_time_days} days)"
                for item in sorted(items, key=lambda i: (not i.is_preferred, i.supplier.code))
            )
            where = "; ".join(
                f"{level.warehouse.code}: {level.free} free, reorder at {level.reorder_point}"
                for level in low
            )
            alert_raise(
                tenant=tenant,
                key=key,
                kind="stock.low",
                title=f"Low stock: {sku.code}",
                message=f"{where}. Suppliers: {suppliers or 'none on file'}.",
                severity="warning",
            )
