"""A tenant with something in every cockpit widget, at a chosen scale."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone

from logistics.models import LabelBatchItem, ShipmentStatus
from orders.models import CancellationStatus, OrderStatus
from shops.models import Shop
from tests.factories import (
    CancellationRequestFactory,
    InventoryPushFactory,
    LabelBatchFactory,
    ListingFactory,
    OrderFactory,
    OrderHoldFactory,
    ProviderFactory,
    ShipmentFactory,
    ShopFactory,
    ShopSlaFiguresFactory,
    StockLevelFactory,
    WarehouseFactory,
)
from tkerp.tenancy import tenant_context


@dataclass
class World:
    shop: Shop
    batch_id: int


def cockpit_world(tenant, *, scale: int = 1, shop: Shop | None = None) -> World:
    """Every widget has something to count (`scale` times over), and the charts have orders."""
    now = timezone.now()
    first = shop is None
    with tenant_context(tenant):
        shop = shop or ShopFactory(tenant=tenant, name=f"{tenant.name} TikTok")

        def order(**fields):
            fields.setdefault("placed_at", now - timedelta(hours=2))
            fields.setdefault("paid_at", fields["placed_at"])
            return OrderFactory(tenant=tenant, shop=shop, **fields)

        for _ in range(scale):
            # Deadlines: 2 overdue, 3 due within 4 h, 1 due later.
            for hours in (-3, -1):
                order(status=OrderStatus.READY, ship_by=now + timedelta(hours=hours))
            for hours in (1, 2, 3.5):
                order(status=OrderStatus.ALLOCATED, ship_by=now + timedelta(hours=hours))
            order(status=OrderStatus.READY, ship_by=now + timedelta(hours=20))
            # A shipped order overdue for its cancelled neighbour does not count.
            order(status=OrderStatus.CANCELLED, ship_by=now - timedelta(hours=5))
            # Tracking: 2 shipped awaiting the write-back (1 past tracking_by), 1 accepted.
            order(status=OrderStatus.SHIPPED, shipped_at=now, tracking_by=now + timedelta(hours=9))
            order(status=OrderStatus.SHIPPED, shipped_at=now, tracking_by=now - timedelta(hours=1))
            order(
                status=OrderStatus.SHIPPED,
                shipped_at=now,
                tracking_by=now - timedelta(hours=1),
                tracking_uploaded_at=now - timedelta(hours=2),
            )
            # Holds: 2 PO boxes, 1 buyer note + phone on the same order, one released hold.
            for _ in range(2):
                OrderHoldFactory(
                    tenant=tenant, order=order(status=OrderStatus.ON_HOLD), code="address.po_box"
                )
            noted = order(status=OrderStatus.ON_HOLD)
            OrderHoldFactory(tenant=tenant, order=noted, code="buyer_note")
            OrderHoldFactory(tenant=tenant, order=noted, code="phone.invalid")
            OrderHoldFactory(tenant=tenant, order=order(status=OrderStatus.READY), released_at=now)
            # Cancellation requests: 2 pending (one due within 4 h), 1 answered.
            for hours in (2, 30):
                CancellationRequestFactory(
                    tenant=tenant,
                    order=order(status=OrderStatus.READY),
                    answer_by=now + timedelta(hours=hours),
                )
            CancellationRequestFactory(
                tenant=tenant, order=order(), status=CancellationStatus.APPROVED
            )
            # Stock: 1 at its reorder point, 1 out of stock, 1 healthy.
            StockLevelFactory(tenant=tenant, on_hand=10, reserved=2, reorder_point=8)
            StockLevelFactory(tenant=tenant, on_hand=5, reserved=5)
            StockLevelFactory(tenant=tenant, on_hand=50, reorder_point=5)
            # Pushes: 1 listing failing, 2 failed pushes today, 1 ok.
            failing = ListingFactory(tenant=tenant, shop=shop, push_failures=2)
            InventoryPushFactory(tenant=tenant, listing=failing, result="error", error="500")
            InventoryPushFactory(tenant=tenant, listing=failing, result="error", error="429")
            InventoryPushFactory(tenant=tenant, listing=failing, result="ok")
            # Parcels: 2 ready to print (1 past ship-by), 1 at a provider late to acknowledge,
            # 1 acknowledged but late with its tracking, 1 acknowledged in time.
            own = WarehouseFactory(tenant=tenant)
            for hours in (-1, 5):
                ShipmentFactory(
                    tenant=tenant,
                    warehouse=own,
                    order=order(status=OrderStatus.ALLOCATED, ship_by=now + timedelta(hours=hours)),
                )
            provider = ProviderFactory(
                tenant=tenant, confirm_within_minutes=30, tracking_within_minutes=120
            )
            third = WarehouseFactory(tenant=tenant, kind="3pl", provider=provider)

            def parcel(warehouse=third, provider=provider, **fields):
                return ShipmentFactory(
                    tenant=tenant,
                    warehouse=warehouse,
                    provider=provider,
                    order=order(status=OrderStatus.ALLOCATED),
                    **fields,
                )

            parcel(status=ShipmentStatus.SENT_TO_PROVIDER, dispatched_at=now - timedelta(hours=1))
            parcel(status=ShipmentStatus.SENT_TO_PROVIDER, dispatched_at=now - timedelta(minutes=5))
            parcel(
                status=ShipmentStatus.CONFIRMED,
                dispatched_at=now - timedelta(hours=4),
                acknowledged_at=now - timedelta(hours=3),
            )
            parcel(
                status=ShipmentStatus.CONFIRMED,
                dispatched_at=now - timedelta(hours=1),
                acknowledged_at=now - timedelta(minutes=50),
            )
        if first:
            # Sync: one shop failing, one never synced (lagging), the main one healthy.
            Shop._base_manager.filter(pk=shop.pk).update(last_sync_success_at=now)
            ShopFactory(
                tenant=tenant,
                name=f"{tenant.name} Shopify",
                platform="shopify",
                consecutive_sync_failures=3,
                last_sync_success_at=now - timedelta(minutes=2),
            )
            ShopFactory(tenant=tenant, name=f"{tenant.name} eBay", platform="ebay")
            ShopFactory(tenant=tenant, name=f"{tenant.name} CSV", platform="manual")
            ShopSlaFiguresFactory(
                tenant=tenant, shop=shop, due_30d=100, late_30d=7, late_rate_30d=0.07
            )
            # Parcels in trouble on their way: one returned, one never scanned.
            for exception in ("returned", "no_scan"):
                ShipmentFactory(
                    tenant=tenant,
                    order=order(status=OrderStatus.DELIVERED),
                    status=ShipmentStatus.SHIPPED,
                    tracking_exception=exception,
                )
        # A label batch running, 3 of 4 parcels done.
        batch = LabelBatchFactory(tenant=tenant, shop=shop, status="running")
        for position, status in enumerate(("labelled", "labelled", "failed", "pending")):
            LabelBatchItem.objects.create(
                tenant=tenant,
                batch=batch,
                shipment=ShipmentFactory(tenant=tenant, order=order(status=OrderStatus.DELIVERED)),
                position=position,
                status=status,
                live=status == "pending",
            )
    return World(shop=shop, batch_id=batch.pk)
