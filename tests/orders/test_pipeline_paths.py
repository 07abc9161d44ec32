"""The set-based pipeline ends a spike exactly as the old per-order path does.

A TikTok sandbox spike is synced through the old path (`bulk_create`, parcels split order by
order), and the very pages it ingested are replayed, in the same order, into a second tenant
with the same stock and carrier rules through the set-based one (COPY through
`tkerp.bulk.rows_copy`, one split per page). Every order must
end with the same status, holds, reservations, parcels (warehouse, service, lines) and events,
and every stock level with the same numbers. Stock is short on purpose, so some orders are
held `stock.short` and some are split across two warehouses.
"""

from __future__ import annotations

import pytest

import logistics.routing as routing
import shops.sync as sync_module
import tkerp.bulk as bulk
from inventory.models import Reservation, Sku, StockLevel
from inventory.reservations import orders_reserve
from logistics.models import Shipment
from logistics.routing import orders_shipments_split, orders_split_ready
from orders.ingest import orders_ingest
from orders.models import Order, OrderEvent, OrderHold
from sandbox.actions import sandbox_spike
from shops.sync import shop_sync
from tests.e2e.helpers import connect_shop
from tests.factories import (
    ShopFactory,
    ShopWarehouseFactory,
    SkuFactory,
    StockLevelFactory,
    WarehouseFactory,
)
from tests.logistics.rules_world import demo_rule_set
from tkerp.tenancy import tenant_context

pytestmark = pytest.mark.django_db

SKUS = ("MUG-01", "CAP-02", "PIN-03")


def _world(tenant, *, connected: bool = True):
    """A TikTok shop (connected to its sandbox, or only named like it), two warehouses with
    short stock of three SKUs, and the demo's carrier rules."""
    if connected:
        shop, _ = connect_shop(tenant, "tiktok", sku_codes=SKUS)
    else:
        shop = ShopFactory(tenant=tenant, platform="tiktok", name="Replayed TikTok")
        for code in SKUS:
            SkuFactory(tenant=tenant, code=code)
    demo_rule_set(tenant)
    with tenant_context(tenant):
        near = WarehouseFactory(tenant=tenant, code="NEAR")
        far = WarehouseFactory(tenant=tenant, code="FAR")
        ShopWarehouseFactory(tenant=tenant, shop=shop, warehouse=near, priority=1)
        ShopWarehouseFactory(tenant=tenant, shop=shop, warehouse=far, priority=2)
        for sku in Sku.objects.filter(code__in=SKUS).order_by("code"):
            StockLevelFactory(tenant=tenant, sku=sku, warehouse=near, on_hand=25)
            StockLevelFactory(tenant=tenant, sku=sku, warehouse=far, on_hand=20)
    return shop


def _outcome(tenant) -> dict:
    """Everything the pipeline decided, by platform order id."""
    with tenant_context(tenant):
        orders = list(Order.objects.all())
        rank = {order.pk: order.platform_order_id for order in orders}
        result: dict = {order.platform_order_id: {"status": order.status} for order in orders}
        for index in result:
            result[index].update(holds=[], reservations=[], parcels=[], events=[])
        for hold in OrderHold.objects.filter(released_at__isnull=True):
            result[rank[hold.order_id]]["holds"].append(hold.code)
        for reservation in Reservation.objects.select_related("sku", "warehouse"):
            result[rank[reservation.order_id]]["reservations"].append(
                (
                    reservation.sku.code,
                    reservation.warehouse.code,
                    reservation.quantity,
                    reservation.state,
                )
            )
        for shipment in Shipment.objects.select_related("warehouse", "service").prefetch_related(
            "lines__order_line"
        ):
            lines = sorted(
                (line.order_line.seller_sku, line.quantity) for line in shipment.lines.all()
            )
            result[rank[shipment.order_id]]["parcels"].append(
                (
                    shipment.warehouse.code,
                    shipment.reference.split("-W")[0] == f"TK{shipment.order_id}",
                    shipment.status,
                    shipment.service.code if shipment.service else None,
                    lines,
                )
            )
        for event in OrderEvent.objects.all():
            result[rank[event.order_id]]["events"].append(event.kind)
        for value in result.values():
            for key in ("holds", "reservations", "parcels", "events"):
                value[key].sort()
        levels = sorted(
            (level.sku.code, level.warehouse.code, level.on_hand, level.reserved)
            for level in StockLevel.objects.select_related("sku", "warehouse")
        )
    return {"orders": result, "levels": levels}


def test_the_set_based_path_ends_a_spike_as_the_old_path_does(tenant_a, tenant_b, monkeypatch):
    # The old path syncs the spike from the sandbox; the pages it ingested, in its order, are
    # replayed into a second tenant through the set-based path.
    monkeypatch.setattr(bulk, "COPY_ENABLED", False)
    monkeypatch.setattr(routing, "SPLIT_SET_BASED", False)
    shop = _world(tenant_a)
    with tenant_context(tenant_a):
        sandbox_spike(shop=shop, orders=160, seed=11, cancel_rate=0.05)
    pages = []
    store = sync_module.orders_store

    def recording(**kwargs):
        pages.append(list(kwargs["platform_orders"]))
        return store(**kwargs)

    monkeypatch.setattr(sync_module, "orders_store", recording)
    run = shop_sync(shop=shop, trigger="test")
    assert run.status == "success", run.error
    orders_split_ready(tenant=tenant_a)  # the task the pipeline queues on commit
    old = _outcome(tenant_a)

    monkeypatch.setattr(bulk, "COPY_ENABLED", True)
    monkeypatch.setattr(routing, "SPLIT_SET_BASED", True)
    replay = _world(tenant_b, connected=False)
    for page in pages:
        orders_ingest(shop=replay, platform_orders=page, source="poll")
    orders_split_ready(tenant=tenant_b)
    new = _outcome(tenant_b)

    assert len(new["orders"]) == 160
    statuses = {value["status"] for value in new["orders"].values()}
    assert {"ready", "on_hold"} <= statuses  # stock ran short: both outcomes are exercised
    assert any(len(value["parcels"]) == 2 for value in new["orders"].values())
    assert new["levels"] == old["levels"]
    differing = [key for key in old["orders"] if old["orders"][key] != new["orders"].get(key)]
    assert not differing, [(old["orders"][k], new["orders"].get(k)) for k in differing[:3]]


def test_a_page_processed_twice_creates_nothing_twice(tenant_a):
    shop = _world(tenant_a)
    with tenant_context(tenant_a):
        sandbox_spike(shop=shop, orders=60, seed=5, cancel_rate=0)
    shop_sync(shop=shop, trigger="test")
    orders_split_ready(tenant=tenant_a)
    before = _outcome(tenant_a)
    with tenant_context(tenant_a):
        ids = list(Order.objects.values_list("pk", flat=True))
        split = list(Shipment.objects.values_list("order_id", flat=True))
        parcels = len(split)

    # The same page again, step by step: reservation, split, and the whole sync pass.
    orders_reserve(tenant=tenant_a, order_ids=ids)
    assert orders_shipments_split(tenant=tenant_a, order_ids=split) == []
    shop_sync(shop=shop, trigger="test")
    orders_split_ready(tenant=tenant_a)

    with tenant_context(tenant_a):
        assert Shipment.objects.count() == parcels > 0
    assert _outcome(tenant_a) == before
