"""Stock counts and adjustments: the only doors through which on-hand figures change by hand.

Every change locks the one `StockLevel` row, updates it in the database and writes the matching
`StockMovement` in the same transaction, so the ledger always sums to the stored numbers. The
check constraint (`0 <= reserved <= on_hand`) is the last wall; these functions refuse first,
with a message a person can act on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Sum
from django.utils import timezone

from inventory.models import MovementKind, Sku, StockLevel, StockMovement, Warehouse

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

# Kinds a person may record with `stock_adjust`; reservations, shipping and transfers have their
# own functions because they move `reserved` too.
ADJUST_KINDS = frozenset({MovementKind.RECEIVE, MovementKind.ADJUST, MovementKind.RETURN})


def stock_below_reserved_error(*, counted: int, reserved: int) -> ValidationError:
    """The refusal shown when on hand would fall below what open orders have reserved."""
    return ValidationError(
        {
            "on_hand": ValidationError(
                "On hand can't be %(counted)s: %(reserved)s units are reserved for open orders. "
                "Ship, cancel or re-route those orders first, or count again.",
                code="below_reserved",
                params={"counted": counted, "reserved": reserved},
            )
        }
    )


def stock_count_check(*, counted: int, reserved: int) -> None:
    """Refuse a counted on-hand figure that is negative or below the reserved units."""
    if counted < 0:
        raise ValidationError(
            {"on_hand": ValidationError("A count can't be negative.", code="negative")}
        )
    if counted < reserved:
        raise stock_below_reserved_error(counted=counted, reserved=reserved)


def stock_level_lock(*, sku: Sku, warehouse: Warehouse) -> StockLevel:
    """The stock level of `sku` in `warehouse`, row-locked until the transaction ends.

    A missing level is created empty (0 on hand, 0 reserved), so the ledger starts at zero.
    Must run inside `transaction.atomic()`.
    """
    if sku.tenant_id != warehouse.tenant_id:
        raise ValueError("the SKU and the warehouse belong to different tenants")
    level, _ = (
        StockLevel.objects.select_for_update(no_key=True)
        .filter(tenant_id=sku.tenant_id)
        .get_or_create(
            sku=sku,
            warehouse=warehouse,
            defaults={"tenant_id": sku.tenant_id, "on_hand": 0, "reserved": 0},
        )
    )
    return level


def stock_count(
    *,
    sku: Sku,
    warehouse: Warehouse,
    counted: int,
    user: AbstractBaseUser | None,
    reference: str = "",
    note: str = "",
) -> StockMovement | None:
    """Set on hand to a counted figure and record the difference as a count movement.

    Refuses (ValidationError on `on_hand`) a negative count or one below the reserved units.
    Counting the same figure again changes nothing and writes no movement (returns None).
    """
    stock_count_check(counted=counted, reserved=0)
    with transaction.atomic():
        level = stock_level_lock(sku=sku, warehouse=warehouse)
        stock_count_check(counted=counted, reserved=level.reserved)
        delta = counted - level.on_hand
        if delta == 0:
            return None
        return _stock_level_apply(
            level=level,
            on_hand_delta=delta,
            kind=MovementKind.COUNT,
            user=user,
            reference=reference,
            note=note,
        )


def stock_adjust(
    *,
    sku: Sku,
    warehouse: Warehouse,
    delta: int,
    kind: str,
    user: AbstractBaseUser | None,
    note: str,
    reference: str = "",
) -> StockMovement | None:
    """Add `delta` units to on hand (negative removes) as a receipt, return or adjustment.

    Refuses a change that would leave on hand below the reserved units. A zero delta is a no-op.
    """
    if kind not in ADJUST_KINDS:
        raise ValueError(f"stock_adjust records {sorted(ADJUST_KINDS)}, not {kind!r}")
    if kind in (MovementKind.RECEIVE, MovementKind.RETURN) and delta < 0:
        raise ValidationError(
            {"delta": ValidationError("A receipt or return adds stock.", code="negative")}
        )
    if delta == 0:
        return None
    with transaction.atomic():
        level = stock_level_lock(sku=sku, warehouse=warehouse)
        if level.on_hand + delta < level.reserved:
            raise stock_below_reserved_error(counted=level.on_hand + delta, reserved=level.reserved)
        return _stock_level_apply(
            level=level,
            on_hand_delta=delta,
            kind=kind,
            user=user,
            reference=reference,
            note=note,
        )


def stock_ledger_balance(*, sku: Sku, warehouse: Warehouse) -> tuple[int, int]:
    """(on hand, reserved) as the movement ledger adds them up, for reconciling stored figures."""
    totals = StockMovement.objects.filter(
        tenant_id=sku.tenant_id, sku=sku, warehouse=warehouse
    ).aggregate(on_hand=Sum("on_hand_delta", default=0), reserved=Sum("reserved_delta", default=0))
    return totals["on_hand"], totals["reserved"]


def _stock_level_apply(
    *,
    level: StockLevel,
    on_hand_delta: int,
    kind: str,
    user: AbstractBaseUser | None,
    reference: str,
    note: str,
) -> StockMovement:
    """Write the delta to the locked level and its ledger row; the caller holds the lock."""
    StockLevel.objects.filter(pk=level.pk).update(
        on_hand=F("on_hand") + on_hand_delta, updated_at=timezone.now()
    )
    level.on_hand += on_hand_delta
    # Once committed: re-publish the SKU's listings, re-check its reorder point and let orders
    # held `stock.short` for it try again (imported late: reservations pulls in the orders app).
    from inventory.reservations import stock_changed

    stock_changed(tenant=level.tenant, sku_ids=[level.sku_id], retry_waiting=on_hand_delta > 0)
    return StockMovement.objects.create(
        tenant_id=level.tenant_id,
        sku_id=level.sku_id,
        warehouse_id=level.warehouse_id,
        kind=kind,
        on_hand_delta=on_hand_delta,
        reference=reference[:100],
        note=note[:255],
        created_by=user if user is not None and user.is_authenticated else None,
    )
