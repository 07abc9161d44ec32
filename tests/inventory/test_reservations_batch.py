"""The batch fast path of `orders_reserve`: simple orders reserved together in one transaction.

Every test here calls `orders_reserve` with several orders, which is what sends the simple ones
down `_orders_reserve_batch`; the per-order path (one call per order) is the reference the end
state is compared with.
"""

from __future__ import annotations

import random
import re

import pytest
from django.db import transaction
from django.utils import timezone

import inventory.reservations
from inventory.models import (
    MovementKind,
    Reservation,
    StockLevel,
    StockMovement,
    WarehouseKind,
)
from inventory.reservations import orders_reserve
from orders.holds import HoldReason, order_hold
from orders.models import Order, OrderEvent, OrderHold, OrderStatus
from tests.factories import (
    OrderFactory,
    OrderLineFactory,
    ShopFactory,
    SkuFactory,
    WarehouseFactory,
)
from tests.inventory.test_concurrency import assert_ledger_matches, run_together
from tests.inventory.test_reservations import paid_order, receive
from tkerp.models import Alert
from tkerp.tenancy import all_tenants, tenant_context


@pytest.fixture
def commit(django_capture_on_commit_callbacks):
    """Run the on-commit work (pushes, alerts) as a real commit would."""

    def run(fn, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return fn(*args, **kwargs)

    return run


@pytest.fixture
def per_order_calls(monkeypatch):
    """The order ids that went down the per-order path."""
    calls: list[int] = []
    original = inventory.reservations._order_reserve

    def record(*, tenant, order_id, dropship):
        calls.append(order_id)
        return original(tenant=tenant, order_id=order_id, dropship=dropship)

    monkeypatch.setattr(inventory.reservations, "_order_reserve", record)
    return calls


def build_mixed(tenant) -> list[Order]:
    """Two warehouses, three SKUs, orders that reserve, split, run short, miss a SKU, wait."""
    shop = ShopFactory(tenant=tenant, name="TikTok")
    own = WarehouseFactory(tenant=tenant, code="OWN", kind=WarehouseKind.OWN)
    tpl = WarehouseFactory(tenant=tenant, code="TPL", kind=WarehouseKind.THREE_PL)
    mug = SkuFactory(tenant=tenant, code="MUG")
    cap = SkuFactory(tenant=tenant, code="CAP")
    hat = SkuFactory(tenant=tenant, code="HAT")  # never received: no level at all
    receive(sku=mug, warehouse=own, units=5)
    receive(sku=mug, warehouse=tpl, units=4)
    receive(sku=cap, warehouse=own, units=2)

    def order(number, lines, **overrides):
        return paid_order(shop=shop, lines=lines, platform_order_id=f"P-{number}", **overrides)

    orders = [
        order(1, [(mug, 2)]),  # own
        order(2, [(mug, 2), (cap, 1)]),  # whole order in own
        order(3, [(cap, 2)]),  # short: 1 free
        order(4, [(mug, 1)]),  # + an unknown line below: sku.unknown, reserves nothing
        order(5, [(mug, 2)]),  # own has 1 free: 3PL
        order(6, [(mug, 1), (cap, 1)]),  # own can take both
        order(7, [(hat, 1)]),  # short: no level
        order(8, [(mug, 1)], paid_at=None),  # unpaid: untouched
        order(9, [(mug, 1)]),  # was held stock.short: reserves from 3PL, released to ready
        order(10, [(mug, 1)]),  # held stock.short and by hand: reserves, stays on hold
        order(11, [(cap, 1)]),  # held stock.short already, still short: nothing new written
        order(12, [(mug, 5)], is_cod=True, paid_at=None),  # COD, short
    ]
    OrderLineFactory(order=orders[3], tenant=tenant, sku=None, seller_sku="NOPE")
    with tenant_context(tenant):
        for held in (orders[8], orders[9], orders[10]):
            order_hold(order=held, code=HoldReason.STOCK_SHORT, message="earlier", source="system")
        order_hold(order=orders[9], code=HoldReason.MANUAL, message="look", source="user")
    return orders


def snapshot(tenant, orders: list[Order], summary) -> dict:
    """Everything the reservation run wrote, keyed by codes and platform ids (not pks)."""
    pid = {order.pk: order.platform_order_id for order in orders}
    with tenant_context(tenant):
        levels = {
            (level.sku.code, level.warehouse.code): (level.on_hand, level.reserved)
            for level in StockLevel.objects.select_related("sku", "warehouse")
        }
        reservations = sorted(
            (
                pid[r.order_id],
                r.sku.code,
                r.warehouse.code,
                r.quantity,
                r.state,
            )
            for r in Reservation.objects.select_related("sku", "warehouse")
        )
        movements = sorted(
            (
                m.kind,
                pid.get(m.order_id),
                m.sku.code,
                m.warehouse.code,
                m.reserved_delta,
                m.on_hand_delta,
                m.reference,
                m.note,
            )
            for m in StockMovement.objects.select_related("sku", "warehouse")
        )
        holds = sorted(
            (pid[h.order_id], h.code, h.message, h.released_at is None)
            for h in OrderHold.objects.all()
        )
        events = sorted(
            (pid[e.order_id], e.kind, e.message, sorted(e.data.items()), e.source)
            for e in OrderEvent.objects.all()
        )
        statuses = {pid[o.pk]: o.status for o in Order.objects.all()}
        # Occurrence counts differ on purpose (one alert per SKU per batch); the rest must not.
        alerts = sorted(
            (a.key, a.title, re.sub(r"\(id \d+\)", "", a.message))
            for a in Alert.objects.filter(resolved_at__isnull=True)
        )
    outcome = {
        name: sorted(pid[order_id] for order_id in getattr(summary, name))
        for name in ("reserved", "short", "unknown_sku", "released", "unchanged")
    }
    return {
        "levels": levels,
        "reservations": reservations,
        "movements": movements,
        "holds": holds,
        "events": events,
        "statuses": statuses,
        "alerts": alerts,
        "outcome": outcome,
    }


def merge(summaries):
    merged = inventory.reservations.ReserveSummary()
    for summary in summaries:
        for name in ("reserved", "short", "unknown_sku", "released", "unchanged"):
            getattr(merged, name).extend(getattr(summary, name))
    return merged


def test_a_mixed_batch_ends_exactly_as_the_per_order_path(
    tenant_a, tenant_b, commit, per_order_calls
):
    batch_orders = build_mixed(tenant_a)
    single_orders = build_mixed(tenant_b)

    batch = commit(orders_reserve, tenant=tenant_a, order_ids=[o.pk for o in batch_orders])
    # Only the unknown-SKU order took the per-order path (the unpaid one is filtered before).
    assert per_order_calls == [batch_orders[3].pk]
    per_order_calls.clear()
    single = merge(commit(orders_reserve, tenant=tenant_b, order_ids=[o.pk]) for o in single_orders)
    assert len(per_order_calls) == 11  # every paid order, one by one

    got = snapshot(tenant_a, batch_orders, batch)
    expected = snapshot(tenant_b, single_orders, single)
    assert got == expected
    # And the expectation is the intended one, not just the same on both sides.
    assert got["outcome"] == {
        "reserved": ["P-1", "P-10", "P-2", "P-5", "P-6", "P-9"],
        "short": ["P-11", "P-12", "P-3", "P-7"],
        "unknown_sku": ["P-4"],
        "released": [],
        "unchanged": ["P-8"],
    }
    assert got["levels"] == {("MUG", "OWN"): (5, 5), ("MUG", "TPL"): (4, 4), ("CAP", "OWN"): (2, 2)}
    assert got["statuses"]["P-9"] == OrderStatus.READY
    assert got["statuses"]["P-10"] == OrderStatus.ON_HOLD
    assert got["statuses"]["P-3"] == OrderStatus.ON_HOLD
    assert_ledger_matches(tenant_a)


def test_stock_running_out_midway_reserves_the_free_units_in_order_and_holds_the_rest(
    tenant_a, commit
):
    shop = ShopFactory(tenant=tenant_a)
    own = WarehouseFactory(tenant=tenant_a, code="OWN")
    mug = SkuFactory(tenant=tenant_a, code="MUG")
    receive(sku=mug, warehouse=own, units=5)
    orders = [paid_order(shop=shop, lines=[(mug, quantity)]) for quantity in (2, 2, 2, 1, 1)]
    ids = [o.pk for o in orders]

    summary = commit(orders_reserve, tenant=tenant_a, order_ids=list(reversed(ids)))

    assert summary.reserved == [ids[0], ids[1], ids[3]]
    assert summary.short == [ids[2], ids[4]]
    with tenant_context(tenant_a):
        level = StockLevel.objects.get(sku=mug, warehouse=own)
        assert (level.on_hand, level.reserved) == (5, 5)
        messages = dict(
            OrderHold.objects.filter(code="stock.short", released_at__isnull=True).values_list(
                "order_id", "message"
            )
        )
        assert messages == {
            ids[2]: "Not enough stock — MUG: needs 2, 1 free (short 1)",
            ids[4]: "Not enough stock — MUG: needs 1, 0 free (short 1)",
        }
        assert set(
            Order.objects.filter(status=OrderStatus.ON_HOLD).values_list("pk", flat=True)
        ) == {ids[2], ids[4]}
        assert StockMovement.objects.filter(kind=MovementKind.RESERVE).count() == 3
    with all_tenants():
        alert = Alert.objects.get(key="stock.short:MUG", resolved_at__isnull=True)
    assert f"(id {ids[4]})" in alert.message
    assert_ledger_matches(tenant_a)


def test_running_the_batch_again_changes_nothing(tenant_a, commit):
    orders = build_mixed(tenant_a)
    ids = [o.pk for o in orders]
    first = commit(orders_reserve, tenant=tenant_a, order_ids=ids)
    state = snapshot(tenant_a, orders, first)

    second = commit(orders_reserve, tenant=tenant_a, order_ids=ids)

    again = snapshot(tenant_a, orders, second)
    assert {k: v for k, v in again.items() if k != "outcome"} == {
        k: v for k, v in state.items() if k != "outcome"
    }
    assert second.reserved == [] and sorted(second.short) == sorted(first.short)
    assert sorted(second.unchanged) == sorted(first.unchanged + first.reserved)


def test_a_100_order_batch_takes_a_bounded_number_of_queries(
    tenant_a, django_assert_max_num_queries, django_capture_on_commit_callbacks
):
    shop = ShopFactory(tenant=tenant_a)
    first = WarehouseFactory(tenant=tenant_a, code="A1", kind=WarehouseKind.OWN)
    second = WarehouseFactory(tenant=tenant_a, code="A2", kind=WarehouseKind.THREE_PL)
    skus = [SkuFactory(tenant=tenant_a, code=f"S-{n}") for n in range(8)]
    for sku in skus:
        receive(sku=sku, warehouse=first, units=20)
        receive(sku=sku, warehouse=second, units=10)
    rng = random.Random(7)
    orders = [
        paid_order(
            shop=shop,
            lines=[(sku, rng.randint(1, 3)) for sku in rng.sample(skus, rng.randint(1, 3))],
        )
        for _ in range(100)
    ]

    with (
        django_capture_on_commit_callbacks() as callbacks,
        django_assert_max_num_queries(35),
    ):  # COPY stages via a temp table (RLS); the levels are locked, then taken, last
        summary = orders_reserve(tenant=tenant_a, order_ids=[o.pk for o in orders])
    # What runs after commit goes by SKU, not by order: the alerts of the (at most 8) short
    # SKUs, one availability mark and one low-stock check for all of them.
    assert len(callbacks) == 2
    with django_assert_max_num_queries(5 * len(skus) + 6):
        for callback in callbacks:
            callback()

    assert summary.reserved and summary.short  # the bound covers both kinds of order
    assert len(summary.reserved) + len(summary.short) == 100
    assert_ledger_matches(tenant_a)


@pytest.mark.django_db(transaction=True)
def test_batches_racing_single_order_retries_never_oversell_or_deadlock():
    from tests.factories import TenantFactory

    tenant = TenantFactory(name="Race", slug="race")
    shop = ShopFactory(tenant=tenant)
    first = WarehouseFactory(tenant=tenant, code="A1")
    second = WarehouseFactory(tenant=tenant, code="A2")
    skus = [SkuFactory(tenant=tenant, code=f"R-{n}") for n in range(5)]
    for sku in skus:
        receive(sku=sku, warehouse=first, units=12)
        receive(sku=sku, warehouse=second, units=6)
    rng = random.Random(11)
    orders = [OrderFactory(tenant=tenant, shop=shop, paid_at=timezone.now()) for _ in range(60)]
    for order in orders:
        for sku in rng.sample(skus, rng.randint(1, 4)):
            OrderLineFactory(order=order, tenant=tenant, sku=sku, quantity=rng.randint(1, 3))
    ids = [o.pk for o in orders]
    jobs = [
        lambda part=ids[start::3]: orders_reserve(tenant=tenant, order_ids=part)
        for start in range(3)
    ]
    jobs += [lambda part=ids[::-2]: orders_reserve(tenant=tenant, order_ids=part)]
    jobs += [
        lambda order_id=order_id: orders_reserve(tenant=tenant, order_ids=[order_id])
        for order_id in rng.sample(ids, 8)
    ]

    errors = run_together(jobs)

    assert errors == []
    with tenant_context(tenant):
        for order in Order.objects.all():
            lines = order.lines.count()
            reserved = Reservation.objects.filter(order=order).count()
            held = OrderHold.objects.filter(
                order=order, code="stock.short", released_at__isnull=True
            ).exists()
            assert (reserved, held) in ((lines, False), (0, True)), order
        assert all(0 <= level.reserved <= level.on_hand for level in StockLevel.objects.all())
    assert_ledger_matches(tenant)


def _hot_sku(*, name: str, units: int):
    """A tenant of its own (these tests commit) with a shop and one SKU with `units` on hand in
    one warehouse: (tenant, shop, warehouse, sku)."""
    from tests.factories import TenantFactory

    tenant = TenantFactory(name=name, slug=name.lower())
    shop = ShopFactory(tenant=tenant)
    warehouse = WarehouseFactory(tenant=tenant, code="A1")
    sku = SkuFactory(tenant=tenant, code="HOT")
    receive(sku=sku, warehouse=warehouse, units=units)
    return tenant, shop, warehouse, sku


def _meanwhile(monkeypatch, change):
    """Run `change` (in a thread of its own, committed) just before the batch's guarded take:
    another transaction moving the stock between the batch's read and its UPDATE. Returns the
    guarded takes' answers."""
    answers: list[bool] = []
    take = inventory.reservations.stock_levels_take_guarded

    def racing_take(**kwargs):
        if not answers:
            errors = run_together([change])
            assert errors == []
        answers.append(take(**kwargs))
        return answers[-1]

    monkeypatch.setattr(inventory.reservations, "stock_levels_take_guarded", racing_take)
    return answers


@pytest.mark.django_db(transaction=True)
def test_stock_arriving_after_the_plan_sends_the_batch_round_again_with_the_rows_locked(
    monkeypatch,
):
    tenant, shop, warehouse, sku = _hot_sku(name="Arrival", units=3)
    orders = [paid_order(shop=shop, lines=[(sku, 1)]) for _ in range(5)]

    def arrive():
        with transaction.atomic():
            receive(sku=sku, warehouse=warehouse, units=2)

    answers = _meanwhile(monkeypatch, arrive)
    summary = orders_reserve(tenant=tenant, order_ids=[o.pk for o in orders])

    # The plan held two orders short against 3 free; 5 were free at the UPDATE: refused, and
    # the locked round reserved all five instead of leaving two waiting for stock that came.
    assert answers == [False]
    assert sorted(summary.reserved) == sorted(o.pk for o in orders) and summary.short == []
    with tenant_context(tenant):
        level = StockLevel.objects.get()
        assert (level.on_hand, level.reserved) == (5, 5)
        assert Reservation.objects.count() == 5
        assert not OrderHold.objects.filter(code=HoldReason.STOCK_SHORT).exists()
        assert not OrderEvent.objects.filter(kind="hold.added").exists()
    assert_ledger_matches(tenant)


@pytest.mark.django_db(transaction=True)
def test_stock_taken_after_the_plan_never_oversells_and_the_locked_round_holds_the_rest(
    monkeypatch,
):
    tenant, shop, _, sku = _hot_sku(name="Taken", units=4)
    orders = [paid_order(shop=shop, lines=[(sku, 1)]) for _ in range(3)]
    other = paid_order(shop=shop, lines=[(sku, 2)])

    answers = _meanwhile(monkeypatch, lambda: orders_reserve(tenant=tenant, order_ids=[other.pk]))
    summary = orders_reserve(tenant=tenant, order_ids=[o.pk for o in orders])

    # Planned 3 of 4 free; another order took 2 meanwhile: refused, then 2 reserved, 1 short.
    assert answers == [False]
    assert summary.reserved == [orders[0].pk, orders[1].pk] and summary.short == [orders[2].pk]
    with tenant_context(tenant):
        level = StockLevel.objects.get()
        assert (level.on_hand, level.reserved) == (4, 4)
        assert Reservation.objects.count() == 3
        assert Order.objects.get(pk=orders[2].pk).status == OrderStatus.ON_HOLD
        assert OrderHold.objects.filter(code=HoldReason.STOCK_SHORT).count() == 1
    assert_ledger_matches(tenant)


@pytest.mark.django_db(transaction=True)
def test_stock_taken_after_the_plan_but_still_enough_is_taken_in_the_first_round(monkeypatch):
    tenant, shop, _, sku = _hot_sku(name="Enough", units=10)
    orders = [paid_order(shop=shop, lines=[(sku, 1)]) for _ in range(3)]
    other = paid_order(shop=shop, lines=[(sku, 2)])

    answers = _meanwhile(monkeypatch, lambda: orders_reserve(tenant=tenant, order_ids=[other.pk]))
    summary = orders_reserve(tenant=tenant, order_ids=[o.pk for o in orders])

    assert answers == [True]  # 8 free at the UPDATE, 3 wanted, nothing held short: no retry
    assert len(summary.reserved) == 3
    with tenant_context(tenant):
        level = StockLevel.objects.get()
        assert (level.on_hand, level.reserved) == (10, 5)
    assert_ledger_matches(tenant)
