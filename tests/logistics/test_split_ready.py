"""Ready orders with reserved stock get their parcels: one shipment per warehouse, once."""

import pytest

from inventory.models import MovementKind, WarehouseKind
from inventory.stock import stock_adjust
from logistics.models import Shipment
from logistics.routing import orders_split_ready
from orders.holds import HoldReason, order_hold, order_release
from orders.models import Order, OrderStatus
from orders.pipeline import orders_after_ingest
from orders.sla import sla_sweep_tenant
from tests.e2e.helpers import django_q_sync
from tests.factories import (
    OrderFactory,
    OrderLineFactory,
    ShopFactory,
    SkuFactory,
    WarehouseFactory,
)
from tkerp.tenancy import tenant_context

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(tenant_a):
    shop = ShopFactory(tenant=tenant_a, name="TikTok A")
    first = WarehouseFactory(tenant=tenant_a, code="A-1", kind=WarehouseKind.OWN)
    second = WarehouseFactory(tenant=tenant_a, code="A-2", kind=WarehouseKind.OWN)
    mug, cap = SkuFactory(tenant=tenant_a, code="MUG"), SkuFactory(tenant=tenant_a, code="CAP")
    with tenant_context(tenant_a):
        for sku, warehouse in ((mug, first), (cap, second)):
            stock_adjust(
                sku=sku,
                warehouse=warehouse,
                delta=10,
                kind=MovementKind.RECEIVE,
                user=None,
                note="delivery",
            )
    return {"tenant": tenant_a, "shop": shop, "mug": mug, "cap": cap}


def paid_order(world, **overrides):
    from django.utils import timezone

    order = OrderFactory(
        tenant=world["tenant"], shop=world["shop"], paid_at=timezone.now(), **overrides
    )
    OrderLineFactory(order=order, tenant=world["tenant"], sku=world["mug"], quantity=1)
    OrderLineFactory(order=order, tenant=world["tenant"], sku=world["cap"], quantity=2)
    return order


def parcels(order) -> dict[str, list[tuple[str, int]]]:
    with tenant_context(order.tenant):
        return {
            shipment.warehouse.code: sorted(
                (line.order_line.sku.code, line.quantity) for line in shipment.lines.all()
            )
            for shipment in Shipment.objects.filter(order=order).select_related("warehouse")
        }


def test_an_ingested_clean_order_gets_one_parcel_per_warehouse(
    world, django_capture_on_commit_callbacks
):
    order = paid_order(world)
    with django_q_sync(), django_capture_on_commit_callbacks(execute=True):
        orders_after_ingest(shop=world["shop"], created_ids=[order.pk], updated_ids=[])

    order.refresh_from_db()
    assert order.status == OrderStatus.READY
    assert parcels(order) == {"A-1": [("MUG", 1)], "A-2": [("CAP", 2)]}


def test_splitting_again_changes_nothing(world, django_capture_on_commit_callbacks):
    order = paid_order(world)
    with django_q_sync(), django_capture_on_commit_callbacks(execute=True):
        orders_after_ingest(shop=world["shop"], created_ids=[order.pk], updated_ids=[])
    before = sorted(Shipment._base_manager.filter(order=order).values_list("pk", flat=True))
    assert len(before) == 2

    assert orders_split_ready(tenant=world["tenant"]) == 0
    assert sorted(Shipment._base_manager.filter(order=order).values_list("pk", flat=True)) == before


def test_a_held_order_waits_and_the_sweep_splits_it_once_released(world):
    order = paid_order(world, buyer_note="Please gift wrap")
    orders_after_ingest(shop=world["shop"], created_ids=[order.pk], updated_ids=[])
    order.refresh_from_db()
    assert order.status == OrderStatus.ON_HOLD
    assert orders_split_ready(tenant=world["tenant"]) == 0
    assert parcels(order) == {}

    with tenant_context(world["tenant"]):
        order_release(order=Order.objects.get(pk=order.pk), user=None)
    result = sla_sweep_tenant(tenant=world["tenant"])

    assert result["split"] == 1
    assert parcels(order) == {"A-1": [("MUG", 1)], "A-2": [("CAP", 2)]}


def test_a_short_order_gets_no_parcel(world):
    order = paid_order(world)
    OrderLineFactory(order=order, tenant=world["tenant"], sku=world["mug"], quantity=50)
    orders_after_ingest(shop=world["shop"], created_ids=[order.pk], updated_ids=[])
    with tenant_context(world["tenant"]):
        assert order.holds.filter(code=HoldReason.STOCK_SHORT).exists()
        order_hold(order=order, code="manual", message="x", user=None)
    assert orders_split_ready(tenant=world["tenant"]) == 0
    assert parcels(order) == {}


def test_other_tenants_orders_are_never_split(world, tenant_b):
    order = paid_order(world)
    orders_after_ingest(shop=world["shop"], created_ids=[order.pk], updated_ids=[])
    assert orders_split_ready(tenant=tenant_b) == 0
    assert parcels(order) == {}


def test_the_task_for_a_tenant_deleted_since_it_was_queued_does_nothing(tenant_b):
    from logistics.tasks import split_ready_orders

    tenant_id = tenant_b.pk
    tenant_b.delete()
    assert split_ready_orders(tenant_id, [1, 2]) == 0
