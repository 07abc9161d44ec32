"""Returns: synced from the TikTok sandbox's returns search, received back into stock once."""

from datetime import timedelta

import pytest
from django.utils import timezone

from inventory.models import MovementKind, Sku, StockLevel, StockMovement
from orders.models import ReturnRequest
from orders.returns import ReturnError, return_receive, returns_sync
from sandbox.base import sandbox_for
from sandbox.models import SandboxOrder
from shops.sync import shop_sync
from tests.e2e.helpers import add_orders, connect_shop
from tests.factories import ReturnRequestFactory, SkuFactory, WarehouseFactory
from tests.orders.admin_helpers import admin_url, assert_not_found, changelist_pks, run_action
from tkerp.tenancy import tenant_context

pytestmark = pytest.mark.django_db


@pytest.fixture
def returned(tenant_a):
    """A TikTok shop, one synced order, and the buyer's return request in the sandbox."""
    shop, store = connect_shop(tenant_a, "tiktok")
    (generated,) = add_orders(store, 1, start=timezone.now() - timedelta(minutes=30))
    with tenant_context(tenant_a):
        assert shop_sync(shop=shop).status == "success"
    sandbox = sandbox_for("tiktok")
    row = sandbox.request_return(store=store, order=SandboxOrder.objects.get(pk=generated.pk))
    return shop, store, row


def test_the_sync_brings_returns_into_the_inbox_once(tenant_a, returned):
    shop, store, sandbox_row = returned

    with tenant_context(tenant_a):
        assert shop_sync(shop=shop).status == "success"
        assert returns_sync(shop=shop) == 0  # again: nothing new
        row = ReturnRequest.objects.get()

    assert row.platform_return_id == sandbox_row.cancel_id
    assert row.status == "AWAITING_BUYER_SHIP" and row.return_type == "RETURN_AND_REFUND"
    assert row.order is not None and row.order.platform_order_id == sandbox_row.order_id
    units = len(sandbox_row.payload["return_line_items"])
    assert sum(line["quantity"] for line in row.lines) == units
    assert {line["seller_sku"] for line in row.lines} <= {"MUG-01", "CAP-02", "PIN-03"}
    # Returns never show up as cancellations.
    assert sandbox_for("tiktok").show(store=store, what="cancellations") == []

    sandbox_for("tiktok").return_status_set(
        store=store, return_id=sandbox_row.cancel_id, status="BUYER_SHIPPED_ITEM"
    )
    assert returns_sync(shop=shop) == 1
    with tenant_context(tenant_a):
        assert ReturnRequest.objects.get().status == "BUYER_SHIPPED_ITEM"


def test_receiving_restocks_once(tenant_a, user_a, returned):
    shop, _store, _row = returned
    returns_sync(shop=shop)
    warehouse = WarehouseFactory(tenant=tenant_a)
    with tenant_context(tenant_a):
        row = ReturnRequest.objects.get()
        expected = {}
        for line in row.lines:
            sku_id = Sku.objects.get(code=line["seller_sku"]).pk
            expected[sku_id] = expected.get(sku_id, 0) + line["quantity"]

        first = return_receive(return_request=row, warehouse=warehouse, user=user_a)
        second = return_receive(return_request=row, warehouse=warehouse, user=user_a)

        on_hand = dict(
            StockLevel.objects.filter(warehouse=warehouse).values_list("sku_id", "on_hand")
        )
        movements = StockMovement.objects.filter(kind=MovementKind.RETURN).count()
        row.refresh_from_db()

    assert len(first) == len(expected) and second == []
    assert on_hand == expected
    assert movements == len(expected)
    assert row.received_at is not None and row.received_warehouse == warehouse
    assert row.received_by == user_a


def test_a_return_of_an_unknown_sku_restocks_nothing(tenant_a, user_a):
    warehouse = WarehouseFactory(tenant=tenant_a)
    row = ReturnRequestFactory(tenant=tenant_a, lines=[{"seller_sku": "NOPE", "quantity": 2}])
    with tenant_context(tenant_a), pytest.raises(ReturnError, match="NOPE"):
        return_receive(return_request=row, warehouse=warehouse, user=user_a)
    row.refresh_from_db()
    assert row.received_at is None


def test_another_tenants_warehouse_is_refused(tenant_a, tenant_b, user_a):
    SkuFactory(tenant=tenant_a, code="MUG-01")
    row = ReturnRequestFactory(tenant=tenant_a)
    with tenant_context(tenant_a), pytest.raises(ReturnError, match="another tenant"):
        return_receive(return_request=row, warehouse=WarehouseFactory(tenant=tenant_b), user=None)


class TestAdmin:
    def test_the_receive_action_asks_for_a_warehouse_then_restocks(self, tenant_a, client_a):
        sku = SkuFactory(tenant=tenant_a, code="MUG-01")
        warehouse = WarehouseFactory(tenant=tenant_a)
        row = ReturnRequestFactory(tenant=tenant_a)

        page = run_action(client_a, ReturnRequest, "receive_returns", [row.pk])
        assert page.status_code == 200 and warehouse.code in page.content.decode()
        done = run_action(
            client_a, ReturnRequest, "receive_returns", [row.pk], apply="1", warehouse=warehouse.pk
        )
        assert done.status_code == 302
        assert StockLevel._base_manager.get(sku=sku, warehouse=warehouse).on_hand == 1

    def test_the_inbox_is_scoped_to_the_tenant(self, tenant_a, client_a, client_b, tenant_b):
        row = ReturnRequestFactory(tenant=tenant_a)
        assert changelist_pks(client_a, ReturnRequest) == {row.pk}
        assert changelist_pks(client_b, ReturnRequest) == set()
        assert_not_found(client_b, admin_url(ReturnRequest, "change", row.pk))
        # Tenant B's warehouses are not offered to tenant A.
        other = WarehouseFactory(tenant=tenant_b, code="B-WH")
        page = run_action(client_a, ReturnRequest, "receive_returns", [row.pk])
        assert other.code not in page.content.decode()
