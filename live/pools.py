"""Live-session stock pools: units of a SKU kept for one shop while its live session runs.

While a pool's window is open (`session.starts_at <= now < session.ends_at`):

- every OTHER shop publishes the SKU's free stock minus the pool's remaining units
  (`inventory.availability.listings_available` asks `pools_held`), and reserves only from the
  stock outside it (`PoolLedger.check`): an order from another channel that would dig into the
  pool is held `stock.short`, exactly as if that stock were gone;
- the session's shop publishes all the free stock, and its orders draw from the pool first
  (`PoolLedger.take`: `drawn` grows, so the others' share is untouched until the pool is empty).

An order of the session's shop cancelled during the window gives its units back to the shared
stock, not to the pool (the pool only ever shrinks). When the window closes the remainder is
nobody's: the same computation, run after `ends_at`,
simply finds no open pool. `pools_tick` (every minute) marks the SKU's listings due when a
window opens or closes, so every channel is told within a minute without anyone acting.

Race-freedom: every reservation of a SKU with an open pool locks the pool rows first (ascending
pk), after the order, its lines and reservations and before the stock levels (the order of
`inventory.locking`), then reads the SKU's free stock; so two channels' orders for a pooled SKU
are decided one after the other against exact numbers.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

from django.db import transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from live.models import LivePool, LivePoolDraw


def _open(now: datetime) -> Q:
    return Q(session__starts_at__lte=now, session__ends_at__gt=now)


def pools_held(
    *, tenant_id: int, sku_ids: Iterable[int], now: datetime | None = None
) -> dict[int, list[tuple[int, int]]]:
    """sku id -> [(the pool's shop id, units still kept)] for the open pools of those SKUs."""
    now = now or timezone.now()
    held: dict[int, list[tuple[int, int]]] = defaultdict(list)
    rows = (
        LivePool._base_manager.filter(_open(now), tenant_id=tenant_id, sku_id__in=list(sku_ids))
        .filter(drawn__lt=F("quantity"))
        .values_list("sku_id", "session__shop_id", "quantity", "drawn")
    )
    for sku_id, shop_id, quantity, drawn in rows:
        held[sku_id].append((shop_id, quantity - drawn))
    return held


def held_from_shop(held: dict[int, list[tuple[int, int]]], *, sku_id: int, shop_id: int) -> int:
    """Units of `sku_id` kept from `shop_id` by other shops' open pools."""
    return sum(units for pool_shop, units in held.get(sku_id, ()) if pool_shop != shop_id)


class PoolLedger:
    """The open pools of some SKUs, row-locked, and the SKUs' free stock, for one reservation
    transaction: `check` says what an order may take, `take` records it, `write` stores it."""

    def __init__(self, *, tenant_id: int, pools: list[LivePool]):
        self.tenant_id = tenant_id
        self.pools: dict[int, list[LivePool]] = defaultdict(list)
        for pool in pools:
            self.pools[pool.sku_id].append(pool)
        self.free: dict[int, int] = {}
        self.draws: list[LivePoolDraw] = []
        self.changed: set[int] = set()

    def __bool__(self) -> bool:
        return bool(self.pools)

    @classmethod
    def lock(
        cls, *, tenant_id: int, sku_ids: Iterable[int], now: datetime | None = None
    ) -> PoolLedger:
        """Lock the open pools of `sku_ids` (ascending pk). Call it inside the reservation's
        transaction, after the order rows and before the stock levels."""
        now = now or timezone.now()
        sku_ids = sorted(set(sku_ids))
        pools: list[LivePool] = []
        if sku_ids:
            pools = list(
                LivePool._base_manager.select_for_update(of=("self",))
                .select_related("session")
                .filter(_open(now), tenant_id=tenant_id, sku_id__in=sku_ids)
                .order_by("pk")
            )
        ledger = cls(tenant_id=tenant_id, pools=pools)
        ledger._load_free()
        return ledger

    def _load_free(self) -> None:
        if not self.pools:
            return
        from inventory.models import StockLevel

        rows = (
            StockLevel._base_manager.filter(
                tenant_id=self.tenant_id, sku_id__in=list(self.pools), warehouse__is_active=True
            )
            .values("sku_id")
            .annotate(free=Sum(F("on_hand") - F("reserved")))
        )
        self.free = {sku_id: 0 for sku_id in self.pools}
        for row in rows:
            self.free[row["sku_id"]] = max(0, row["free"] or 0)

    def _kept_from(self, *, sku_id: int, shop_id: int) -> int:
        return sum(
            pool.remaining for pool in self.pools.get(sku_id, ()) if pool.session.shop_id != shop_id
        )

    def check(self, *, shop_id: int, wanted: dict[int, int]) -> dict[int, tuple[int, int]]:
        """sku id -> (units wanted, units this shop may have) for each SKU where an order of
        `shop_id` wanting `wanted` (sku id -> units) would take units another shop's pool
        keeps; empty when it may have them all."""
        short: dict[int, tuple[int, int]] = {}
        for sku_id, units in wanted.items():
            if sku_id not in self.pools:
                continue
            allowed = max(0, self.free[sku_id] - self._kept_from(sku_id=sku_id, shop_id=shop_id))
            if units > allowed:
                short[sku_id] = (units, allowed)
        return short

    def take(self, *, shop_id: int, lines: Iterable[tuple[int, int, int]]) -> None:
        """Record that an order of `shop_id` reserved these (order line id, sku id, units): its
        own shop's open pools give first, the rest comes out of the shared stock."""
        for line_id, sku_id, units in lines:
            if sku_id not in self.pools:
                continue
            self.free[sku_id] -= units
            for pool in self.pools[sku_id]:
                if pool.session.shop_id != shop_id or units <= 0 or pool.remaining <= 0:
                    continue
                drawn = min(units, pool.remaining)
                pool.drawn += drawn
                units -= drawn
                self.changed.add(pool.pk)
                self.draws.append(
                    LivePoolDraw(
                        tenant_id=self.tenant_id, pool=pool, order_line_id=line_id, quantity=drawn
                    )
                )

    def write(self) -> None:
        """Store the draws recorded so far (the pools are still locked by this transaction)."""
        for pool_list in self.pools.values():
            for pool in pool_list:
                if pool.pk in self.changed:
                    LivePool._base_manager.filter(pk=pool.pk).update(
                        drawn=pool.drawn, updated_at=timezone.now()
                    )
        if self.draws:
            LivePoolDraw._base_manager.bulk_create(self.draws)
        self.changed.clear()
        self.draws = []


def pools_tick(*, tenant, now: datetime | None = None) -> list[int]:
    """Tell every channel about pools whose window opened or closed since the last tick: mark
    their SKUs' listings due. Idempotent (each pool's opening and closing is noted once).
    Returns the SKUs marked."""
    from inventory.availability import skus_changed

    now = now or timezone.now()
    tenant_id = getattr(tenant, "pk", tenant)
    base = LivePool._base_manager.filter(tenant_id=tenant_id)
    with transaction.atomic():
        opening = list(
            base.filter(opened_at__isnull=True, session__starts_at__lte=now)
            .select_for_update(skip_locked=True, of=("self",))
            .values_list("pk", "sku_id")
        )
        closing = list(
            base.filter(closed_at__isnull=True, session__ends_at__lte=now)
            .select_for_update(skip_locked=True, of=("self",))
            .values_list("pk", "sku_id")
        )
        if opening:
            base.filter(pk__in=[pk for pk, _ in opening]).update(opened_at=now)
        if closing:
            base.filter(pk__in=[pk for pk, _ in closing]).update(closed_at=now)
        sku_ids = sorted({sku_id for _, sku_id in opening + closing})
        if sku_ids:
            skus_changed(tenant=tenant_id, sku_ids=sku_ids, now=now, urgent=True)
    return sku_ids


def pool_changed(*, pool: LivePool) -> None:
    """A pool was created or edited (or its session moved): publish its SKU again now."""
    from inventory.availability import skus_changed

    skus_changed(tenant=pool.tenant_id, sku_ids=[pool.sku_id], urgent=True)
