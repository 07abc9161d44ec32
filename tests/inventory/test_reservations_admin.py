"""The oversold action list on the order admin, and the stock admins added with reservations."""

from __future__ import annotations

import pytest
from django.urls import reverse

from inventory.models import Reservation, ReservationState, WarehouseKind
from logistics.models import ShipmentStatus
from orders.models import OrderEvent, OrderStatus
from tests.factories import (
    CancellationRequestFactory,
    ReservationFactory,
    ShopFactory,
    ShopWarehouseFactory,
    SkuFactory,
    WarehouseFactory,
)
from tests.inventory.test_reservations import (
    active_codes,
    assert_ledger,
    level_of,
    paid_order,
    receive,
)

CHANGELIST = "admin:orders_order_changelist"


@pytest.fixture
def oversold(tenant_a):
    shop = ShopFactory(tenant=tenant_a)
    warehouse = WarehouseFactory(tenant=tenant_a, code="OWN", kind=WarehouseKind.OWN)
    sku = SkuFactory(tenant=tenant_a, code="MUG")
    receive(sku=sku, warehouse=warehouse, units=1)
    order = paid_order(shop=shop, lines=[(sku, 2)])
    from inventory.reservations import orders_reserve

    assert orders_reserve(tenant=tenant_a, order_ids=[order.pk]).short == [order.pk]
    return {"order": order, "sku": sku, "warehouse": warehouse}


def run_action(client, action, order):
    return client.post(
        reverse(CHANGELIST), {"action": action, "_selected_action": [order.pk]}, follow=True
    )


@pytest.mark.django_db
class TestOversoldActions:
    def test_wait_for_stock_reserves_once_stock_is_there(self, client_a, oversold):
        receive(sku=oversold["sku"], warehouse=oversold["warehouse"], units=5)

        response = run_action(client_a, "stock_wait", oversold["order"])

        assert response.status_code == 200
        assert "1 reserved" in response.content.decode()
        assert level_of(oversold["sku"], oversold["warehouse"]).reserved == 2
        assert active_codes(oversold["order"]) == set()

    def test_another_tenant_cannot_act_on_the_order(self, client_b, oversold):
        receive(sku=oversold["sku"], warehouse=oversold["warehouse"], units=5)

        run_action(client_b, "stock_wait", oversold["order"])
        run_action(client_b, "stock_cancel_through_platform", oversold["order"])

        assert level_of(oversold["sku"], oversold["warehouse"]).reserved == 0
        assert not OrderEvent._base_manager.filter(kind="cancel.intent").exists()

    def test_route_to_dropship_without_a_supplier_stays_short(self, client_a, oversold):
        response = run_action(client_a, "stock_route_dropship", oversold["order"])

        assert "1 short" in response.content.decode()
        assert active_codes(oversold["order"]) == {"stock.short"}

    def test_cancel_through_platform_records_the_intent(self, client_a, oversold):
        run_action(client_a, "stock_cancel_through_platform", oversold["order"])

        event = OrderEvent._base_manager.get(order=oversold["order"], kind="cancel.intent")
        assert "seller centre" in event.message
        assert event.user.username == "owner-a"


@pytest.mark.django_db
class TestStockAdmins:
    def test_reservation_changelist_is_query_bounded(
        self, client_a, tenant_a, django_assert_max_num_queries
    ):
        for _ in range(15):
            ReservationFactory(tenant=tenant_a)
        with django_assert_max_num_queries(12):
            response = client_a.get(reverse("admin:inventory_reservation_changelist"))
        assert response.status_code == 200
        assert Reservation._base_manager.count() == 15

    def test_shop_warehouse_changelist_is_query_bounded(
        self, client_a, tenant_a, django_assert_max_num_queries
    ):
        for _ in range(15):
            ShopWarehouseFactory(tenant=tenant_a)
        with django_assert_max_num_queries(12):
            response = client_a.get(reverse("admin:inventory_shopwarehouse_changelist"))
        assert response.status_code == 200

    def test_another_tenants_reservation_is_not_found(self, client_b, tenant_a):
        reservation = ReservationFactory(tenant=tenant_a)
        url = reverse("admin:inventory_reservation_change", args=[reservation.pk])
        response = client_b.get(url, follow=True)
        assert reservation.order.platform_order_id not in response.content.decode()


@pytest.fixture
def reserved(tenant_a):
    """A paid order holding 2 MUG in its parcel, ready to ship."""
    from inventory.reservations import orders_reserve
    from logistics.routing import order_shipments_split

    shop = ShopFactory(tenant=tenant_a)
    warehouse = WarehouseFactory(tenant=tenant_a, code="OWN", kind=WarehouseKind.OWN)
    sku = SkuFactory(tenant=tenant_a, code="MUG")
    receive(sku=sku, warehouse=warehouse, units=5)
    order = paid_order(shop=shop, lines=[(sku, 2)], status=OrderStatus.READY)
    assert orders_reserve(tenant=tenant_a, order_ids=[order.pk]).reserved == [order.pk]
    (parcel,) = order_shipments_split(order=order)
    return {"order": order, "sku": sku, "warehouse": warehouse, "parcel": parcel}


@pytest.mark.django_db
class TestMarkShipped:
    def test_the_stock_leaves_once_the_parcel_and_the_order_are_shipped(self, client_a, reserved):
        order, parcel = reserved["order"], reserved["parcel"]

        response = run_action(client_a, "mark_shipped", order)

        assert "Marked 1 order shipped; 2 units left stock." in response.content.decode()
        level = level_of(reserved["sku"], reserved["warehouse"])
        assert (level.on_hand, level.reserved) == (3, 0)
        assert Reservation._base_manager.get(order=order).state == ReservationState.COMMITTED
        order.refresh_from_db()
        parcel.refresh_from_db()
        assert order.status == OrderStatus.SHIPPED and order.shipped_at is not None
        assert parcel.status == ShipmentStatus.SHIPPED and parcel.shipped_at == order.shipped_at
        event = OrderEvent._base_manager.get(order=order, kind="stock.shipped")
        assert event.user.username == "owner-a" and parcel.reference in event.message
        assert_ledger(reserved["sku"], reserved["warehouse"])

        again = run_action(client_a, "mark_shipped", order)

        assert "1 had shipped already" in again.content.decode()
        assert level_of(reserved["sku"], reserved["warehouse"]).on_hand == 3
        assert OrderEvent._base_manager.filter(order=order, kind="stock.shipped").count() == 1

    def test_an_order_without_reserved_stock_is_refused_and_nothing_changes(
        self, client_a, oversold
    ):
        response = run_action(client_a, "mark_shipped", oversold["order"])

        page = response.content.decode()
        assert "Marked 0 orders shipped" in page
        assert "is on hold (stock.short); release it first" in page
        oversold["order"].refresh_from_db()
        assert oversold["order"].status == OrderStatus.ON_HOLD
        assert level_of(oversold["sku"], oversold["warehouse"]).on_hand == 1

    def test_a_pending_cancellation_request_is_refused(self, client_a, reserved):
        order = reserved["order"]
        CancellationRequestFactory(tenant=order.tenant, order=order, shop=order.shop)

        page = run_action(client_a, "mark_shipped", order).content.decode()

        assert "can&#x27;t ship: the buyer asked to cancel" in page
        assert level_of(reserved["sku"], reserved["warehouse"]).reserved == 2

    def test_another_tenant_cannot_ship_the_order(self, client_b, reserved):
        run_action(client_b, "mark_shipped", reserved["order"])

        level = level_of(reserved["sku"], reserved["warehouse"])
        assert (level.on_hand, level.reserved) == (5, 2)
        reserved["order"].refresh_from_db()
        assert reserved["order"].status == OrderStatus.READY
