"""Reserving, releasing and shipping stock for orders (inventory.reservations)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from inventory.models import (
    MovementKind,
    Reservation,
    ReservationState,
    StockLevel,
    StockMovement,
    WarehouseKind,
)
from inventory.reservations import (
    ShipRefused,
    order_release,
    order_reserve_retry,
    order_route_dropship,
    order_ship_commit,
    orders_not_reserved,
    orders_reserve,
    orders_ship_commit,
    shop_warehouses,
)
from inventory.stock import stock_adjust, stock_count, stock_ledger_balance
from logistics.models import Shipment, ShipmentStatus
from logistics.routing import order_shipments_split
from orders.models import Order, OrderHold, OrderLine, OrderStatus
from tests.factories import (
    OrderFactory,
    OrderLineFactory,
    ProviderFactory,
    ShopFactory,
    ShopWarehouseFactory,
    SkuFactory,
    SupplierFactory,
    SupplierItemFactory,
    WarehouseFactory,
)
from tkerp.models import Alert
from tkerp.tenancy import all_tenants, tenant_context


def receive(*, sku, warehouse, units: int, reorder_point: int = 0) -> StockLevel:
    """Stock that arrived through the ledger (so the ledger sums to the stored numbers)."""
    with tenant_context(sku.tenant):
        stock_adjust(
            sku=sku,
            warehouse=warehouse,
            delta=units,
            kind=MovementKind.RECEIVE,
            user=None,
            note="test receipt",
        )
        level = StockLevel.objects.get(sku=sku, warehouse=warehouse)
        if reorder_point:
            level.reorder_point = reorder_point
            level.save(update_fields=["reorder_point"])
        return level


def paid_order(*, shop, lines, **overrides):
    """An order of `shop` paid now, with (sku, quantity) lines."""
    overrides.setdefault("paid_at", timezone.now())
    order = OrderFactory(tenant=shop.tenant, shop=shop, **overrides)
    for sku, quantity in lines:
        OrderLineFactory(order=order, tenant=shop.tenant, sku=sku, quantity=quantity)
    return order


def stock_count_to(sku, warehouse, counted: int) -> None:
    with tenant_context(sku.tenant):
        stock_count(sku=sku, warehouse=warehouse, counted=counted, user=None)


def level_of(sku, warehouse) -> StockLevel:
    return StockLevel._base_manager.get(sku=sku, warehouse=warehouse)


def active_codes(order) -> set[str]:
    return set(
        OrderHold._base_manager.filter(order=order, released_at__isnull=True).values_list(
            "code", flat=True
        )
    )


def assert_ledger(sku, warehouse):
    level = level_of(sku, warehouse)
    assert stock_ledger_balance_unscoped(sku, warehouse) == (level.on_hand, level.reserved)


def stock_ledger_balance_unscoped(sku, warehouse):
    with tenant_context(sku.tenant):
        return stock_ledger_balance(sku=sku, warehouse=warehouse)


@pytest.fixture
def pushes(monkeypatch):
    """Record what the availability helper is told (its real pushes are tested on its side)."""
    import inventory.availability

    calls: list[tuple[int, list[int]]] = []

    def record(*, tenant, sku_ids):
        calls.append((tenant.pk, sorted(sku_ids)))

    monkeypatch.setattr(inventory.availability, "skus_changed", record)
    return calls


@pytest.fixture
def world(tenant_a):
    shop = ShopFactory(tenant=tenant_a, name="TikTok A")
    own = WarehouseFactory(tenant=tenant_a, code="A-OWN", kind=WarehouseKind.OWN)
    mug = SkuFactory(tenant=tenant_a, code="MUG")
    cap = SkuFactory(tenant=tenant_a, code="CAP")
    return {"tenant": tenant_a, "shop": shop, "own": own, "mug": mug, "cap": cap}


@pytest.fixture
def commit(django_capture_on_commit_callbacks):
    """Run the on-commit work (pushes, alerts, retries) as a real commit would."""

    def run(fn, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return fn(*args, **kwargs)

    return run


class TestReserve:
    def test_a_paid_order_reserves_its_lines_with_a_movement_and_a_reservation(
        self, world, commit, pushes
    ):
        receive(sku=world["mug"], warehouse=world["own"], units=5)
        order = paid_order(shop=world["shop"], lines=[(world["mug"], 2)])

        summary = commit(orders_reserve, tenant=world["tenant"], order_ids=[order.pk])

        assert summary.reserved == [order.pk]
        level = level_of(world["mug"], world["own"])
        assert (level.on_hand, level.reserved) == (5, 2)
        reservation = Reservation._base_manager.get(order=order)
        assert (reservation.quantity, reservation.state) == (2, ReservationState.RESERVED)
        movement = StockMovement._base_manager.get(kind=MovementKind.RESERVE)
        assert (movement.order_id, movement.reserved_delta, movement.on_hand_delta) == (
            order.pk,
            2,
            0,
        )
        assert_ledger(world["mug"], world["own"])
        assert (world["tenant"].pk, [world["mug"].pk]) in pushes

    def test_reserving_again_changes_nothing(self, world, commit):
        receive(sku=world["mug"], warehouse=world["own"], units=5)
        order = paid_order(shop=world["shop"], lines=[(world["mug"], 2)])
        commit(orders_reserve, tenant=world["tenant"], order_ids=[order.pk])
        movements = StockMovement._base_manager.count()

        summary = commit(orders_reserve, tenant=world["tenant"], order_ids=[order.pk])

        assert summary.unchanged == [order.pk]
        assert StockMovement._base_manager.count() == movements
        assert level_of(world["mug"], world["own"]).reserved == 2
        assert Reservation._base_manager.count() == 1

    def test_an_unpaid_order_reserves_nothing(self, world):
        receive(sku=world["mug"], warehouse=world["own"], units=5)
        order = paid_order(shop=world["shop"], lines=[(world["mug"], 1)], paid_at=None)

        orders_reserve(tenant=world["tenant"], order_ids=[order.pk])

        assert level_of(world["mug"], world["own"]).reserved == 0

    def test_a_short_order_reserves_no_line_is_held_alerted_and_republished(
        self, world, commit, pushes
    ):
        receive(sku=world["mug"], warehouse=world["own"], units=5)
        receive(sku=world["cap"], warehouse=world["own"], units=1)
        order = paid_order(shop=world["shop"], lines=[(world["mug"], 2), (world["cap"], 3)])

        summary = commit(orders_reserve, tenant=world["tenant"], order_ids=[order.pk])

        assert summary.short == [order.pk]
        assert level_of(world["mug"], world["own"]).reserved == 0  # all lines or none
        assert level_of(world["cap"], world["own"]).reserved == 0
        assert not Reservation._base_manager.exists()
        hold = OrderHold._base_manager.get(order=order, released_at__isnull=True)
        assert hold.code == "stock.short"
        assert "CAP: needs 3, 1 free (short 2)" in hold.message
        order.refresh_from_db()
        assert order.status == OrderStatus.ON_HOLD
        with all_tenants():
            alert = Alert.objects.get(key="stock.short:CAP", resolved_at__isnull=True)
        assert order.platform_order_id in alert.message
        assert (world["tenant"].pk, [world["cap"].pk]) in pushes

    def test_a_line_with_no_sku_holds_sku_unknown_and_reserves_nothing(self, world):
        receive(sku=world["mug"], warehouse=world["own"], units=5)
        order = paid_order(shop=world["shop"], lines=[(world["mug"], 1)])
        OrderLineFactory(order=order, tenant=world["tenant"], sku=None, seller_sku="NOPE")

        summary = orders_reserve(tenant=world["tenant"], order_ids=[order.pk])

        assert summary.unknown_sku == [order.pk]
        assert active_codes(order) == {"sku.unknown"}
        assert "NOPE" in OrderHold._base_manager.get(order=order).message
        assert level_of(world["mug"], world["own"]).reserved == 0

    def test_a_quantity_change_reserves_or_releases_the_difference(self, world, commit):
        receive(sku=world["mug"], warehouse=world["own"], units=5)
        order = paid_order(shop=world["shop"], lines=[(world["mug"], 2)])
        commit(orders_reserve, tenant=world["tenant"], order_ids=[order.pk])
        line = OrderLine._base_manager.get(order=order)

        line.quantity = 4
        line.save()
        commit(orders_reserve, tenant=world["tenant"], order_ids=[order.pk])
        assert level_of(world["mug"], world["own"]).reserved == 4

        line.quantity = 1
        line.save()
        commit(orders_reserve, tenant=world["tenant"], order_ids=[order.pk])
        assert level_of(world["mug"], world["own"]).reserved == 1
        assert Reservation._base_manager.get().quantity == 1

        line.is_cancelled = True
        line.save()
        commit(orders_reserve, tenant=world["tenant"], order_ids=[order.pk])
        assert level_of(world["mug"], world["own"]).reserved == 0
        assert Reservation._base_manager.get().state == ReservationState.RELEASED
        assert_ledger(world["mug"], world["own"])

    def test_another_tenants_order_is_not_touched(self, world, tenant_b):
        receive(sku=world["mug"], warehouse=world["own"], units=5)
        order = paid_order(shop=world["shop"], lines=[(world["mug"], 1)])

        orders_reserve(tenant=tenant_b, order_ids=[order.pk])

        assert level_of(world["mug"], world["own"]).reserved == 0


class TestWarehouseChoice:
    def test_default_priority_is_own_then_3pl_then_supplier_by_code(self, world):
        tenant = world["tenant"]
        supplier = WarehouseFactory(tenant=tenant, code="A-AAA", kind=WarehouseKind.SUPPLIER)
        tpl = WarehouseFactory(tenant=tenant, code="A-BBB", kind=WarehouseKind.THREE_PL)
        own2 = WarehouseFactory(tenant=tenant, code="A-ZZZ", kind=WarehouseKind.OWN)
        with tenant_context(tenant):
            assert shop_warehouses(shop=world["shop"]) == [world["own"], own2, tpl, supplier]

    def test_the_shops_priority_list_is_followed(self, world):
        tenant = world["tenant"]
        tpl = WarehouseFactory(tenant=tenant, code="A-3PL", kind=WarehouseKind.THREE_PL)
        ShopWarehouseFactory(tenant=tenant, shop=world["shop"], warehouse=tpl, priority=1)
        ShopWarehouseFactory(tenant=tenant, shop=world["shop"], warehouse=world["own"], priority=2)
        receive(sku=world["mug"], warehouse=world["own"], units=5)
        receive(sku=world["mug"], warehouse=tpl, units=5)
        order = paid_order(shop=world["shop"], lines=[(world["mug"], 1)])

        orders_reserve(tenant=tenant, order_ids=[order.pk])

        assert level_of(world["mug"], tpl).reserved == 1
        assert level_of(world["mug"], world["own"]).reserved == 0

    def test_a_warehouse_off_the_shops_list_is_never_used(self, world):
        tenant = world["tenant"]
        tpl = WarehouseFactory(tenant=tenant, code="A-3PL", kind=WarehouseKind.THREE_PL)
        ShopWarehouseFactory(tenant=tenant, shop=world["shop"], warehouse=tpl, priority=1)
        receive(sku=world["mug"], warehouse=world["own"], units=5)
        order = paid_order(shop=world["shop"], lines=[(world["mug"], 1)])

        summary = orders_reserve(tenant=tenant, order_ids=[order.pk])

        assert summary.short == [order.pk]

    def test_the_whole_order_stays_in_the_first_warehouse_when_it_can(self, world):
        tenant = world["tenant"]
        second = WarehouseFactory(tenant=tenant, code="A-ZZZ", kind=WarehouseKind.OWN)
        receive(sku=world["mug"], warehouse=world["own"], units=1)
        receive(sku=world["cap"], warehouse=world["own"], units=1)
        receive(sku=world["cap"], warehouse=second, units=5)
        order = paid_order(shop=world["shop"], lines=[(world["mug"], 1), (world["cap"], 1)])

        orders_reserve(tenant=tenant, order_ids=[order.pk])

        assert level_of(world["cap"], world["own"]).reserved == 1
        assert level_of(world["cap"], second).reserved == 0

    def test_lines_split_across_warehouses_become_one_shipment_each(self, world):
        tenant = world["tenant"]
        second = WarehouseFactory(tenant=tenant, code="A-ZZZ", kind=WarehouseKind.OWN)
        receive(sku=world["mug"], warehouse=world["own"], units=1)
        receive(sku=world["cap"], warehouse=second, units=5)
        order = paid_order(shop=world["shop"], lines=[(world["mug"], 1), (world["cap"], 2)])
        orders_reserve(tenant=tenant, order_ids=[order.pk])
        assert level_of(world["cap"], second).reserved == 2

        shipments = order_shipments_split(order=order)
        again = order_shipments_split(order=order)

        assert [s.pk for s in shipments] == [s.pk for s in again]
        assert Shipment._base_manager.filter(order=order).count() == 2
        with all_tenants():
            by_warehouse = {
                s.warehouse_id: [(ln.order_line.sku_id, ln.quantity) for ln in s.lines.all()]
                for s in Shipment.objects.filter(order=order)
            }
        assert by_warehouse == {
            world["own"].pk: [(world["mug"].pk, 1)],
            second.pk: [(world["cap"].pk, 2)],
        }
        assert {s.status for s in shipments} == {ShipmentStatus.PENDING}
        assert all(s.reference for s in shipments)


class TestReleaseAndShip:
    def test_release_gives_the_units_back_once(self, world, commit):
        receive(sku=world["mug"], warehouse=world["own"], units=5)
        order = paid_order(shop=world["shop"], lines=[(world["mug"], 2)])
        commit(orders_reserve, tenant=world["tenant"], order_ids=[order.pk])

        assert commit(order_release, order=order, reason="cancelled") == 2
        assert commit(order_release, order=order, reason="cancelled") == 0

        assert level_of(world["mug"], world["own"]).reserved == 0
        assert StockMovement._base_manager.filter(kind=MovementKind.RELEASE).count() == 1
        assert_ledger(world["mug"], world["own"])

    def test_a_cancelled_order_gives_its_units_back_when_reserve_runs(self, world):
        receive(sku=world["mug"], warehouse=world["own"], units=5)
        order = paid_order(shop=world["shop"], lines=[(world["mug"], 2)])
        orders_reserve(tenant=world["tenant"], order_ids=[order.pk])
        order.status = OrderStatus.CANCELLED
        order.save()

        summary = orders_reserve(tenant=world["tenant"], order_ids=[order.pk])

        assert summary.released == [order.pk]
        assert level_of(world["mug"], world["own"]).reserved == 0

    def test_shipping_commits_once_and_a_later_release_changes_nothing(self, world, commit):
        receive(sku=world["mug"], warehouse=world["own"], units=5)
        order = paid_order(shop=world["shop"], lines=[(world["mug"], 2)])
        commit(orders_reserve, tenant=world["tenant"], order_ids=[order.pk])

        assert commit(order_ship_commit, order=order) == 2
        assert commit(order_ship_commit, order=order) == 0
        assert commit(order_release, order=order) == 0

        level = level_of(world["mug"], world["own"])
        assert (level.on_hand, level.reserved) == (3, 0)
        assert Reservation._base_manager.get().state == ReservationState.COMMITTED
        ship = StockMovement._base_manager.get(kind=MovementKind.SHIP)
        assert (ship.on_hand_delta, ship.reserved_delta) == (-2, -2)
        assert_ledger(world["mug"], world["own"])

    def test_shipping_one_shipment_commits_only_its_lines(self, world):
        tenant = world["tenant"]
        second = WarehouseFactory(tenant=tenant, code="A-ZZZ", kind=WarehouseKind.OWN)
        receive(sku=world["mug"], warehouse=world["own"], units=1)
        receive(sku=world["cap"], warehouse=second, units=5)
        order = paid_order(shop=world["shop"], lines=[(world["mug"], 1), (world["cap"], 2)])
        orders_reserve(tenant=tenant, order_ids=[order.pk])
        shipments = {s.warehouse_id: s for s in order_shipments_split(order=order)}

        assert order_ship_commit(shipment=shipments[second.pk]) == 2
        assert order_ship_commit(shipment=shipments[second.pk]) == 0

        cap, mug = level_of(world["cap"], second), level_of(world["mug"], world["own"])
        assert (cap.on_hand, cap.reserved) == (3, 0)
        assert (mug.on_hand, mug.reserved) == (1, 1)


class TestShipDoor:
    def test_parcels_ship_one_by_one_and_the_order_ships_with_the_last(self, world):
        tenant = world["tenant"]
        second = WarehouseFactory(tenant=tenant, code="A-ZZZ", kind=WarehouseKind.OWN)
        receive(sku=world["mug"], warehouse=world["own"], units=1)
        receive(sku=world["cap"], warehouse=second, units=5)
        order = paid_order(
            shop=world["shop"],
            lines=[(world["mug"], 1), (world["cap"], 2)],
            status=OrderStatus.READY,
        )
        orders_reserve(tenant=tenant, order_ids=[order.pk])
        shipments = {s.warehouse_id: s for s in order_shipments_split(order=order)}

        assert order_ship_commit(shipment=shipments[second.pk]) == 2
        order.refresh_from_db()
        assert order.status == OrderStatus.READY  # the other parcel has not left
        assert Shipment._base_manager.get(pk=shipments[second.pk].pk).status == "shipped"
        assert Shipment._base_manager.get(pk=shipments[world["own"].pk].pk).status == "pending"

        assert order_ship_commit(shipment=shipments[world["own"].pk]) == 1
        order.refresh_from_db()
        assert order.status == OrderStatus.SHIPPED and order.shipped_at is not None
        assert_ledger(world["mug"], world["own"])
        assert_ledger(world["cap"], second)

    def test_a_cancelled_order_or_parcel_cannot_ship(self, world):
        receive(sku=world["mug"], warehouse=world["own"], units=5)
        order = paid_order(shop=world["shop"], lines=[(world["mug"], 2)])
        orders_reserve(tenant=world["tenant"], order_ids=[order.pk])
        (parcel,) = order_shipments_split(order=order)
        Shipment._base_manager.filter(pk=parcel.pk).update(status=ShipmentStatus.CANCELLED)

        with pytest.raises(ShipRefused, match="cancelled; it can't ship"):
            order_ship_commit(shipment=parcel)
        order.status = OrderStatus.CANCELLED
        order.save()
        with pytest.raises(ShipRefused, match="the order is cancelled"):
            order_ship_commit(order=order)

        assert level_of(world["mug"], world["own"]).on_hand == 5

    def test_a_release_of_an_order_the_platform_reported_shipped_commits_instead(self, world):
        receive(sku=world["mug"], warehouse=world["own"], units=5)
        order = paid_order(shop=world["shop"], lines=[(world["mug"], 2)])
        orders_reserve(tenant=world["tenant"], order_ids=[order.pk])
        # Ingest stored the platform's "shipped", then its cancel, before the stock moved.
        order.status, order.shipped_at = OrderStatus.CANCELLED, timezone.now()
        order.save()

        assert order_release(order=order, reason="cancelled") == 0

        level = level_of(world["mug"], world["own"])
        assert (level.on_hand, level.reserved) == (3, 0)
        assert not StockMovement._base_manager.filter(kind=MovementKind.RELEASE).exists()
        assert Reservation._base_manager.get().state == ReservationState.COMMITTED
        assert_ledger(world["mug"], world["own"])

    def _partly_shipped_then_cancelled(self, world):
        """A split order whose first parcel left, then cancelled by the platform, which keeps
        the time its first package left (ingest stores it as the order's shipped time)."""
        second = WarehouseFactory(tenant=world["tenant"], code="A-ZZZ", kind=WarehouseKind.OWN)
        receive(sku=world["mug"], warehouse=world["own"], units=5)
        receive(sku=world["cap"], warehouse=second, units=5)
        order = paid_order(
            shop=world["shop"],
            lines=[(world["mug"], 1), (world["cap"], 2)],
            status=OrderStatus.READY,
        )
        orders_reserve(tenant=world["tenant"], order_ids=[order.pk])
        parcels = {s.warehouse_id: s for s in order_shipments_split(order=order)}
        assert order_ship_commit(shipment=parcels[second.pk]) == 2
        Order._base_manager.filter(pk=order.pk).update(
            status=OrderStatus.CANCELLED, shipped_at=timezone.now()
        )
        order.refresh_from_db()
        return order, second, parcels[world["own"].pk]

    def test_a_partly_shipped_order_cancelled_keeps_the_units_that_never_left(self, world):
        order, second, left_behind = self._partly_shipped_then_cancelled(world)

        # The pipeline after the ingest: shipping, then stock.
        orders_ship_commit(tenant=world["tenant"], order_ids=[order.pk])
        orders_reserve(tenant=world["tenant"], order_ids=[order.pk])

        mug = level_of(world["mug"], world["own"])
        assert (mug.on_hand, mug.reserved) == (5, 0)  # its parcel never left: free again
        cap = level_of(world["cap"], second)
        assert (cap.on_hand, cap.reserved) == (3, 0)  # left with the first parcel
        states = dict(Reservation._base_manager.values_list("sku_id", "state"))
        assert states == {
            world["mug"].pk: ReservationState.RELEASED,
            world["cap"].pk: ReservationState.COMMITTED,
        }
        left_behind.refresh_from_db()
        # Not reported shipped: cancelled with its order, as an approved request's would be.
        assert left_behind.status == ShipmentStatus.CANCELLED
        assert_ledger(world["mug"], world["own"])
        assert_ledger(world["cap"], second)

    def test_releasing_a_partly_shipped_cancelled_order_gives_back_what_never_left(self, world):
        order, _, _ = self._partly_shipped_then_cancelled(world)

        assert order_release(order=order, reason="cancelled") == 1
        assert order_release(order=order, reason="cancelled") == 0

        mug = level_of(world["mug"], world["own"])
        assert (mug.on_hand, mug.reserved) == (5, 0)
        assert_ledger(world["mug"], world["own"])

    def test_the_pipeline_commits_only_orders_that_have_shipped(self, world):
        tenant = world["tenant"]
        receive(sku=world["mug"], warehouse=world["own"], units=5)
        shipped = paid_order(shop=world["shop"], lines=[(world["mug"], 1)])
        open_ = paid_order(shop=world["shop"], lines=[(world["mug"], 1)])
        orders_reserve(tenant=tenant, order_ids=[shipped.pk, open_.pk])
        Order._base_manager.filter(pk=shipped.pk).update(status=OrderStatus.SHIPPED)

        assert orders_ship_commit(tenant=tenant, order_ids=[shipped.pk, open_.pk]) == 1
        assert orders_ship_commit(tenant=tenant, order_ids=[shipped.pk, open_.pk]) == 0
        assert orders_ship_commit(tenant=world["tenant"], order_ids=[]) == 0

        states = dict(Reservation._base_manager.values_list("order_id", "state"))
        assert states == {
            shipped.pk: ReservationState.COMMITTED,
            open_.pk: ReservationState.RESERVED,
        }

    def test_another_tenants_order_is_never_shipped(self, world, tenant_b):
        receive(sku=world["mug"], warehouse=world["own"], units=5)
        order = paid_order(shop=world["shop"], lines=[(world["mug"], 1)])
        orders_reserve(tenant=world["tenant"], order_ids=[order.pk])
        Order._base_manager.filter(pk=order.pk).update(status=OrderStatus.SHIPPED)

        assert orders_ship_commit(tenant=tenant_b, order_ids=[order.pk]) == 0
        assert level_of(world["mug"], world["own"]).reserved == 1


class TestReservedCoverage:
    def test_orders_not_reserved_names_orders_with_a_line_not_fully_held(self, world):
        tenant = world["tenant"]
        receive(sku=world["mug"], warehouse=world["own"], units=5)
        held = paid_order(shop=world["shop"], lines=[(world["mug"], 2)])
        grown = paid_order(shop=world["shop"], lines=[(world["mug"], 1)])
        unknown = paid_order(shop=world["shop"], lines=[(world["mug"], 1)])
        OrderLineFactory(order=unknown, tenant=tenant, sku=None, seller_sku="NOPE")
        empty = paid_order(shop=world["shop"], lines=[])
        orders_reserve(tenant=tenant, order_ids=[held.pk, grown.pk, unknown.pk])
        OrderLine._base_manager.filter(order=grown).update(quantity=3)  # not re-aligned yet
        ids = [held.pk, grown.pk, unknown.pk, empty.pk]

        with tenant_context(tenant):
            assert orders_not_reserved(order_ids=ids) == {grown.pk, unknown.pk}
            OrderLine._base_manager.filter(order=held).update(is_cancelled=True)
            assert orders_not_reserved(order_ids=ids) == {grown.pk, unknown.pk}
        with tenant_context(world["tenant"]):
            assert orders_not_reserved(order_ids=[]) == set()


class TestOversoldActions:
    def test_wait_for_stock_reserves_when_stock_arrives_and_releases_the_hold(self, world, commit):
        receive(sku=world["mug"], warehouse=world["own"], units=1)
        order = paid_order(shop=world["shop"], lines=[(world["mug"], 3)])
        commit(orders_reserve, tenant=world["tenant"], order_ids=[order.pk])
        assert order_reserve_retry(order=order) == "short"

        # A receipt retries waiting orders once it commits.
        commit(receive, sku=world["mug"], warehouse=world["own"], units=5)

        assert level_of(world["mug"], world["own"]).reserved == 3
        assert active_codes(order) == set()
        order.refresh_from_db()
        assert order.status == OrderStatus.READY
        assert order_reserve_retry(order=order) == "unchanged"

    def test_arriving_stock_goes_to_the_waiting_orders_oldest_paid_first_in_batches(
        self, world, commit, monkeypatch
    ):
        import inventory.reservations as reservations

        # Two orders to a transaction, so that the turn carries over from one to the next.
        monkeypatch.setattr(reservations, "WAITING_BATCH", 2)
        now = timezone.now()
        # Stored newest paid first, so ascending id is the wrong turn.
        paid = {n: now - timedelta(minutes=n) for n in range(5)}
        waiting = {
            n: paid_order(shop=world["shop"], lines=[(world["mug"], 1)], paid_at=paid[n])
            for n in range(5)
        }
        big = paid_order(
            shop=world["shop"], lines=[(world["mug"], 3)], paid_at=now - timedelta(minutes=9)
        )
        ids = sorted(order.pk for order in [*waiting.values(), big])
        commit(orders_reserve, tenant=world["tenant"], order_ids=ids)
        assert all(active_codes(order) == {"stock.short"} for order in [*waiting.values(), big])

        # Five units: the oldest order wants three, then the two oldest of the rest one each
        # (the second of them in the second transaction).
        commit(receive, sku=world["mug"], warehouse=world["own"], units=5)

        assert active_codes(big) == set()
        assert {n for n, order in waiting.items() if not active_codes(order)} == {4, 3}
        assert level_of(world["mug"], world["own"]).reserved == 5
        assert_ledger(world["mug"], world["own"])

    def test_an_order_the_batch_cannot_take_still_gets_its_turn(self, world, commit):
        """An order that held stock before (a released reservation row) takes the per-order
        path; it was paid first, so it is served before the younger orders of the batch."""
        now = timezone.now()
        older = paid_order(
            shop=world["shop"], lines=[(world["mug"], 1)], paid_at=now - timedelta(hours=1)
        )
        receive(sku=world["mug"], warehouse=world["own"], units=1)
        commit(orders_reserve, tenant=world["tenant"], order_ids=[older.pk])
        commit(order_release, order=older)  # its reservation row stays, released
        stock_count_to(world["mug"], world["own"], 0)
        younger = [
            paid_order(shop=world["shop"], lines=[(world["mug"], 1)], paid_at=now) for _ in range(2)
        ]
        ids = [older.pk, *(order.pk for order in younger)]
        commit(orders_reserve, tenant=world["tenant"], order_ids=ids)
        assert Reservation._base_manager.filter(order=older).exists()
        assert all(active_codes(order) == {"stock.short"} for order in [older, *younger])

        commit(receive, sku=world["mug"], warehouse=world["own"], units=2)

        assert active_codes(older) == set()
        assert [active_codes(order) for order in younger] == [set(), {"stock.short"}]
        assert level_of(world["mug"], world["own"]).reserved == 2
        assert_ledger(world["mug"], world["own"])

    def test_route_to_a_dropship_supplier_that_carries_the_sku(self, world):
        tenant = world["tenant"]
        supplier = SupplierFactory(tenant=tenant, code="SUP-1")
        provider = ProviderFactory(tenant=tenant, code="DS-1", kind="dropship", supplier=supplier)
        dropship = WarehouseFactory(
            tenant=tenant, code="A-DS", kind=WarehouseKind.SUPPLIER, provider=provider
        )
        other = WarehouseFactory(tenant=tenant, code="A-DS2", kind=WarehouseKind.SUPPLIER)
        ShopWarehouseFactory(tenant=tenant, shop=world["shop"], warehouse=world["own"])
        receive(sku=world["mug"], warehouse=other, units=9)  # no supplier carries it there
        order = paid_order(shop=world["shop"], lines=[(world["mug"], 2)])
        assert orders_reserve(tenant=tenant, order_ids=[order.pk]).short == [order.pk]
        assert order_route_dropship(order=order) == "short"  # nobody carries it yet

        SupplierItemFactory(tenant=tenant, supplier=supplier, sku=world["mug"])
        receive(sku=world["mug"], warehouse=dropship, units=4)
        assert order_route_dropship(order=order) == "reserved"

        assert level_of(world["mug"], dropship).reserved == 2
        assert level_of(world["mug"], other).reserved == 0
        assert active_codes(order) == set()


class TestLowStock:
    def test_a_low_stock_alert_names_the_suppliers_and_resolves_above_the_point(
        self, world, commit
    ):
        tenant = world["tenant"]
        supplier = SupplierFactory(tenant=tenant, code="SUP-1", name="Acme Mugs")
        SupplierItemFactory(tenant=tenant, supplier=supplier, sku=world["mug"], lead_time_days=12)
        commit(receive, sku=world["mug"], warehouse=world["own"], units=5, reorder_point=3)
        order = paid_order(shop=world["shop"], lines=[(world["mug"], 2)])

        commit(orders_reserve, tenant=tenant, order_ids=[order.pk])

        with all_tenants():
            alert = Alert.objects.get(key="stock.low:MUG", resolved_at__isnull=True)
        assert "Acme Mugs (12 days)" in alert.message
        assert "3 free" in alert.message

        commit(order_release, order=order)
        with all_tenants():
            assert not Alert.objects.filter(key="stock.low:MUG", resolved_at__isnull=True).exists()

    def test_a_count_below_reserved_is_still_refused(self, world):
        receive(sku=world["mug"], warehouse=world["own"], units=5)
        order = paid_order(shop=world["shop"], lines=[(world["mug"], 3)])
        orders_reserve(tenant=world["tenant"], order_ids=[order.pk])
        from django.core.exceptions import ValidationError

        with tenant_context(world["tenant"]), pytest.raises(ValidationError):
            stock_count(sku=world["mug"], warehouse=world["own"], counted=2, user=None)
