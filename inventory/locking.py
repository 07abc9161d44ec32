"""Row locks for stock work, always taken in one fixed order: Order -> OrderLine -> Reservation ->
StockLevel, and within a model by ascending primary key.

Two transactions that lock the same rows in the same order queue behind each other instead of
deadlocking. An order's parcels (`logistics.Shipment`) are written only by a transaction holding
the order's lock (`order_ship_commit`, `order_shipments_split`, `order_cancel_close`), so they
need no place of their own in that order.

Stock levels are locked FOR NO KEY UPDATE, the lock an UPDATE of their numbers takes anyway:
a `Reservation` being inserted checks its foreign key to the level with a KEY SHARE lock,
which that mode does not block. So a batch that writes its reservations before it takes the
level (`stock_levels_take_guarded`) never waits for, or deadlocks with, a transaction holding
the level (a plain FOR UPDATE would queue behind the batch's KEY SHARE while the batch's
UPDATE queued behind it).

Every helper must run inside `transaction.atomic()`, and nothing that talks to the network may
run until that transaction ends (pushes are queued with `transaction.on_commit`).
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import connection
from django.db.models import F
from django.utils import timezone

from inventory.models import Reservation, StockLevel
from orders.models import Order, OrderLine


def order_lock(*, order_id: int) -> Order:
    """The order, row-locked, through the tenant scope (another tenant's is DoesNotExist).

    Only the order row is locked (`of=("self",)`): the shop comes along for reading, and locking
    it too would serialise every order of the shop and block its sync.
    """
    return Order.objects.select_for_update(of=("self",)).select_related("shop").get(pk=order_id)


def order_lines_lock(*, order: Order) -> list[OrderLine]:
    """The order's lines, row-locked in ascending pk order."""
    return list(OrderLine.objects.select_for_update().filter(order=order).order_by("pk"))


def reservations_lock(*, order: Order) -> list[Reservation]:
    """The order's reservations, row-locked in ascending pk order."""
    return list(Reservation.objects.select_for_update().filter(order=order).order_by("pk"))


def stock_levels_lock(*, level_ids: Iterable[int]) -> dict[int, StockLevel]:
    """The given stock levels, row-locked in ascending pk order, by pk."""
    ids = sorted(set(level_ids))
    if not ids:
        return {}
    levels = StockLevel.objects.select_for_update(no_key=True).filter(pk__in=ids).order_by("pk")
    return {level.pk: level for level in levels}


def stock_level_take(*, level_id: int, quantity: int) -> bool:
    """Reserve `quantity` units if that many are free: one conditional UPDATE, True if it did.

    The WHERE clause is the guard (`on_hand - reserved >= quantity`); the row lock the UPDATE
    takes lasts until the transaction ends, so callers must take levels in ascending pk order.
    """
    return bool(
        StockLevel.objects.filter(pk=level_id, on_hand__gte=F("reserved") + quantity).update(
            reserved=F("reserved") + quantity, updated_at=timezone.now()
        )
    )


def stock_level_give_back(*, level_id: int, quantity: int) -> bool:
    """Un-reserve `quantity` units (never below zero); True if it did."""
    return bool(
        StockLevel.objects.filter(pk=level_id, reserved__gte=quantity).update(
            reserved=F("reserved") - quantity, updated_at=timezone.now()
        )
    )


def stock_level_ship(*, level_id: int, quantity: int) -> bool:
    """Take `quantity` reserved units out of the building: on hand and reserved both drop."""
    return bool(
        StockLevel.objects.filter(
            pk=level_id, reserved__gte=quantity, on_hand__gte=quantity
        ).update(
            on_hand=F("on_hand") - quantity,
            reserved=F("reserved") - quantity,
            updated_at=timezone.now(),
        )
    )


class StockLevelRefused(Exception):
    """A locked stock level refused units its holder planned from its exact numbers."""


def stock_levels_take_many(*, quantities: dict[int, int]) -> None:
    """Reserve `quantities[level_id]` units on each level in one UPDATE ... FROM (VALUES ...).

    For callers that already hold the levels' row locks and planned against their exact numbers.
    The same guard as `stock_level_take` stays in the WHERE clause; a level that refuses means
    the caller's numbers were wrong, so this raises and the caller's transaction rolls back.
    """
    items = sorted((level_id, quantity) for level_id, quantity in quantities.items() if quantity)
    if not items:
        return
    table = connection.ops.quote_name(StockLevel._meta.db_table)
    values = ", ".join(["(%s::bigint, %s::integer)"] * len(items))
    params: list[object] = [timezone.now()]
    for level_id, quantity in items:
        params += [level_id, quantity]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} AS level SET reserved = level.reserved + v.quantity, updated_at = %s "
            f"FROM (VALUES {values}) AS v(id, quantity) "
            "WHERE level.id = v.id AND level.on_hand - level.reserved >= v.quantity",
            params,
        )
        if cursor.rowcount != len(items):
            raise StockLevelRefused(
                f"{len(items) - cursor.rowcount} of {len(items)} locked stock levels refused"
            )


def stock_levels_take_guarded(
    *, quantities: dict[int, int], ceilings: dict[int, int] | None = None
) -> bool:
    """Reserve `quantities[level_id]` units on each level, all or none, for a caller that
    planned from unlocked numbers; True if every level could take them (and they are taken).

    Each level must still have that many free and, when it has a ceiling, no more free than
    the ceiling (the caller held orders short against what it read: stock that arrived since
    would change its plan). A level in `ceilings` only is checked and takes nothing. The levels
    are locked first, in ascending pk (one UPDATE over many rows would lock them in whatever
    order its plan visits them, and deadlock with a transaction taking them in pk order), and
    stay locked to the end of the transaction, so this should be its last work. On False
    nothing was written; the caller rolls back and plans again.
    """
    ceilings = ceilings or {}
    wanted = {level_id: quantity for level_id, quantity in quantities.items() if quantity}
    levels = stock_levels_lock(level_ids={*wanted, *ceilings})
    for level_id in {*wanted, *ceilings}:
        level = levels.get(level_id)
        if level is None:
            return False
        free = level.on_hand - level.reserved
        if free < wanted.get(level_id, 0) or free > ceilings.get(level_id, free):
            return False
    stock_levels_take_many(quantities=wanted)
    return True
