"""Stock under real concurrency: threads with their own PostgreSQL connections, released together.

These tests commit for real (`transaction=True`), so every thread sees the others' work only
through the database, exactly as two workers (or a webhook and a poll) would.
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection

from inventory.models import MovementKind, Reservation, ReservationState, StockLevel, StockMovement
from inventory.reservations import ShipRefused, order_release, order_ship_commit, orders_reserve
from inventory.stock import stock_ledger_balance
from logistics.models import Shipment, ShipmentStatus
from logistics.routing import order_shipments_split
from orders.ingest import orders_ingest
from orders.models import Order, OrderEvent, OrderHold, OrderLine
from shops.platforms.base import PlatformAddress, PlatformLine, PlatformOrder
from tests.factories import ShopFactory, SkuFactory, WarehouseFactory
from tests.inventory.test_reservations import paid_order, receive
from tkerp.tenancy import tenant_context

pytestmark = pytest.mark.django_db(transaction=True)

T0 = datetime(2026, 4, 12, 20, 0, tzinfo=UTC)


def run_together(jobs: list[Callable[[], None]]) -> list[BaseException]:
    """Run `jobs` in threads released at once by a barrier; return what they raised."""
    barrier = threading.Barrier(len(jobs))
    errors: list[BaseException] = []

    def wrap(job):
        try:
            barrier.wait(timeout=30)
            job()
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=wrap, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads), "a thread never finished (deadlock?)"
    return errors


def platform_order(order_id: str, lines: list[tuple[str, int]]) -> PlatformOrder:
    return PlatformOrder(
        platform_order_id=order_id,
        platform_status="AWAITING_SHIPMENT",
        status="new",
        updated_at=T0,
        placed_at=T0 - timedelta(minutes=1),
        paid_at=T0,
        subtotal=Decimal("10.00"),
        total=Decimal("10.00"),
        buyer_name=f"Buyer {order_id}",
        # Distinct, complete addresses: review has nothing to hold them for.
        address=PlatformAddress(
            name=f"Buyer {order_id}",
            phone="+14155550123",
            line1=f"{order_id} Market St",
            city="San Francisco",
            state="CA",
            postal_code="94105",
        ),
        lines=[
            PlatformLine(
                platform_line_id=f"{order_id}-{index}",
                quantity=quantity,
                seller_sku=code,
                unit_price=Decimal("10.00"),
                total=Decimal("10.00") * quantity,
            )
            for index, (code, quantity) in enumerate(lines)
        ],
    )


def ingest_in_pages(shop, orders: list[PlatformOrder], page: int = 5) -> Callable[[], None]:
    def job():
        for start in range(0, len(orders), page):
            result = orders_ingest(
                shop=shop, platform_orders=orders[start : start + page], source="poll"
            )
            assert not result.rejects, result.rejects

    return job


def assert_ledger_matches(tenant):
    with tenant_context(tenant):
        for level in StockLevel.objects.select_related("sku", "warehouse"):
            assert stock_ledger_balance(sku=level.sku, warehouse=level.warehouse) == (
                level.on_hand,
                level.reserved,
            ), level
            held = sum(
                Reservation.objects.filter(
                    stock_level=level, state=ReservationState.RESERVED
                ).values_list("quantity", flat=True)
            )
            assert held == level.reserved, level


def test_200_orders_from_two_shops_for_50_units_reserve_exactly_50(tenant_a):
    tiktok = ShopFactory(tenant=tenant_a, name="TikTok")
    shopify = ShopFactory(tenant=tenant_a, name="Shopify", platform="shopify")
    warehouse = WarehouseFactory(tenant=tenant_a, code="OWN")
    sku = SkuFactory(tenant=tenant_a, code="LIVE-1")
    receive(sku=sku, warehouse=warehouse, units=50)
    orders = {
        shop: [platform_order(f"{shop.pk}-{n}", [("LIVE-1", 1)]) for n in range(100)]
        for shop in (tiktok, shopify)
    }
    # 8 workers, 4 per shop, each ingesting 25 orders in pages of 5.
    jobs = [
        ingest_in_pages(shop, shop_orders[start : start + 25])
        for shop, shop_orders in orders.items()
        for start in range(0, 100, 25)
    ]

    errors = run_together(jobs)

    assert errors == []
    with tenant_context(tenant_a):
        level = StockLevel.objects.get(sku=sku, warehouse=warehouse)
        assert (level.on_hand, level.reserved) == (50, 50)
        assert Order.objects.count() == 200
        assert Reservation.objects.filter(state=ReservationState.RESERVED).count() == 50
        short = OrderHold.objects.filter(code="stock.short", released_at__isnull=True)
        assert short.count() == 150
        assert not short.filter(order__reservations__isnull=False).exists()
    assert_ledger_matches(tenant_a)


def test_100_multi_sku_orders_with_lines_in_random_order_never_deadlock(tenant_a):
    shop = ShopFactory(tenant=tenant_a)
    first = WarehouseFactory(tenant=tenant_a, code="A1")
    second = WarehouseFactory(tenant=tenant_a, code="A2")
    codes = [f"SKU-{n}" for n in range(6)]
    for code in codes:
        sku = SkuFactory(tenant=tenant_a, code=code)
        receive(sku=sku, warehouse=first, units=25)
        receive(sku=sku, warehouse=second, units=15)
    rng = random.Random(5)
    orders = []
    for n in range(100):
        picked = rng.sample(codes, rng.randint(2, 5))  # random SKUs in random order
        orders.append(platform_order(f"M-{n}", [(code, rng.randint(1, 3)) for code in picked]))
    jobs = [ingest_in_pages(shop, orders[start::8], page=3) for start in range(8)]

    errors = run_together(jobs)

    assert errors == []
    with tenant_context(tenant_a):
        for order in Order.objects.all():
            lines = OrderLine.objects.filter(order=order).count()
            reserved = Reservation.objects.filter(
                order=order, state=ReservationState.RESERVED
            ).count()
            held = OrderHold.objects.filter(
                order=order, code="stock.short", released_at__isnull=True
            ).exists()
            # All lines or none, and a short order is held.
            assert (reserved, held) in ((lines, False), (0, True)), order
        assert StockLevel.objects.filter(reserved__gt=0).exists()
    assert_ledger_matches(tenant_a)


def test_a_cancel_racing_a_ship_releases_or_commits_exactly_once(tenant_a):
    shop = ShopFactory(tenant=tenant_a)
    warehouse = WarehouseFactory(tenant=tenant_a, code="OWN")
    sku = SkuFactory(tenant=tenant_a, code="RACE")
    receive(sku=sku, warehouse=warehouse, units=100)
    orders = [paid_order(shop=shop, lines=[(sku, 2)]) for _ in range(12)]
    orders_reserve(tenant=tenant_a, order_ids=[o.pk for o in orders])

    def ship(order):
        # When the cancel wins, no reserved stock is left to ship, and shipping says so.
        with contextlib.suppress(ShipRefused):
            order_ship_commit(order=order)

    jobs = []
    for order in orders:
        jobs.append(lambda order=order: order_release(order=order, reason="cancelled"))
        jobs.append(lambda order=order: ship(order))
    errors = run_together(jobs)

    assert errors == []
    with tenant_context(tenant_a):
        kinds = defaultdict(list)
        for movement in StockMovement.objects.filter(order__in=orders).exclude(
            kind=MovementKind.RESERVE
        ):
            kinds[movement.order_id].append(movement.kind)
        shipped = 0
        for order in orders:
            assert len(kinds[order.pk]) == 1, kinds[order.pk]
            state = Reservation.objects.get(order=order).state
            expected = {
                MovementKind.SHIP: ReservationState.COMMITTED,
                MovementKind.RELEASE: ReservationState.RELEASED,
            }[kinds[order.pk][0]]
            assert state == expected
            shipped += kinds[order.pk][0] == MovementKind.SHIP
        level = StockLevel.objects.get(sku=sku, warehouse=warehouse)
        assert (level.on_hand, level.reserved) == (100 - 2 * shipped, 0)
    assert_ledger_matches(tenant_a)


def test_reserving_the_same_orders_from_many_workers_at_once_reserves_each_once(tenant_a):
    shop = ShopFactory(tenant=tenant_a)
    warehouse = WarehouseFactory(tenant=tenant_a, code="OWN")
    sku = SkuFactory(tenant=tenant_a, code="DUP")
    receive(sku=sku, warehouse=warehouse, units=30)
    orders = [paid_order(shop=shop, lines=[(sku, 1)]) for _ in range(20)]
    ids = [o.pk for o in orders]

    errors = run_together(
        [lambda: orders_reserve(tenant=tenant_a, order_ids=ids) for _ in range(6)]
    )

    assert errors == []
    with tenant_context(tenant_a):
        assert StockLevel.objects.get(sku=sku).reserved == 20
        assert StockMovement.objects.filter(kind=MovementKind.RESERVE).count() == 20
    assert_ledger_matches(tenant_a)


def test_every_door_reporting_one_shipment_at_once_commits_it_once(tenant_a):
    """The platform's "shipped" (ingest, as webhooks and the poll deliver it), a person's "Mark
    shipped" and the parcel's own report, three of each at once: one commit. Then the
    platform's cancel racing releases: nothing comes back."""
    shop = ShopFactory(tenant=tenant_a)
    warehouse = WarehouseFactory(tenant=tenant_a, code="OWN")
    mug, cap = SkuFactory(tenant=tenant_a, code="MUG"), SkuFactory(tenant=tenant_a, code="CAP")
    receive(sku=mug, warehouse=warehouse, units=10)
    receive(sku=cap, warehouse=warehouse, units=10)
    placed = platform_order("SHIP-1", [("MUG", 2), ("CAP", 3)])
    orders_ingest(shop=shop, platform_orders=[placed], source="poll")
    with tenant_context(tenant_a):
        order = Order.objects.get(platform_order_id="SHIP-1")
        assert Reservation.objects.filter(order=order, state=ReservationState.RESERVED).count()
        (parcel,) = order_shipments_split(order=order)

    def reported(status: str, minutes: int) -> PlatformOrder:
        version = platform_order("SHIP-1", [("MUG", 2), ("CAP", 3)])
        version.status = status
        version.platform_status = status.upper()
        version.updated_at = T0 + timedelta(minutes=minutes)
        return version

    jobs = []
    for _ in range(3):
        jobs.append(
            lambda: orders_ingest(
                shop=shop, platform_orders=[reported("shipped", 1)], source="webhook"
            )
        )
        jobs.append(lambda: order_ship_commit(order=order))
        jobs.append(lambda: order_ship_commit(shipment=parcel))
    assert run_together(jobs) == []

    with tenant_context(tenant_a):
        ships = StockMovement.objects.filter(order=order, kind=MovementKind.SHIP)
        assert sorted((m.sku_id, m.on_hand_delta) for m in ships) == sorted(
            [(mug.pk, -2), (cap.pk, -3)]
        )
        assert OrderEvent.objects.filter(order=order, kind="stock.shipped").count() == 1
        assert Order.objects.get(pk=order.pk).status == "shipped"
        assert Shipment.objects.get(pk=parcel.pk).status == ShipmentStatus.SHIPPED
        levels = {
            level.sku_id: (level.on_hand, level.reserved) for level in StockLevel.objects.all()
        }
    assert levels == {mug.pk: (8, 0), cap.pk: (7, 0)}

    jobs = []
    for _ in range(3):
        jobs.append(
            lambda: orders_ingest(
                shop=shop, platform_orders=[reported("cancelled", 2)], source="webhook"
            )
        )
        jobs.append(lambda: order_release(order=order, reason="cancelled"))
    assert run_together(jobs) == []

    with tenant_context(tenant_a):
        assert Order.objects.get(pk=order.pk).status == "cancelled"
        assert not StockMovement.objects.filter(order=order, kind=MovementKind.RELEASE).exists()
        levels = {
            level.sku_id: (level.on_hand, level.reserved) for level in StockLevel.objects.all()
        }
    assert levels == {mug.pk: (8, 0), cap.pk: (7, 0)}
    assert_ledger_matches(tenant_a)
