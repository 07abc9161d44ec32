"""A tenant whose orders ship from a drop-ship supplier's warehouse: the provider flow's world."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from django.utils import timezone

from inventory.models import MovementKind, WarehouseKind
from inventory.stock import stock_adjust
from logistics.models import Provider, Shipment
from logistics.routing import orders_split_ready
from orders.models import Order
from orders.pipeline import orders_after_ingest
from tests.factories import (
    OrderFactory,
    OrderLineFactory,
    ProviderFactory,
    ShopFactory,
    SkuFactory,
    SupplierFactory,
    SupplierItemFactory,
    WarehouseFactory,
)
from tkerp.tenancy import tenant_context

#: A Standard Webhooks secret as a provider would be given it.
SECRET = "whsec_" + base64.b64encode(b"provider-signing-key-0123456789ab").decode()


@dataclass
class ProviderWorld:
    tenant: object
    shop: object
    provider: Provider
    warehouse: object
    mug: object
    cap: object

    def order(self, *, mugs: int = 1, caps: int = 2, **fields) -> Order:
        """A paid order, ingested: reviewed, reserved at the supplier, split and dispatched."""
        order = OrderFactory(tenant=self.tenant, shop=self.shop, paid_at=timezone.now(), **fields)
        if mugs:
            OrderLineFactory(order=order, tenant=self.tenant, sku=self.mug, quantity=mugs)
        if caps:
            OrderLineFactory(order=order, tenant=self.tenant, sku=self.cap, quantity=caps)
        orders_after_ingest(shop=self.shop, created_ids=[order.pk], updated_ids=[])
        orders_split_ready(tenant=self.tenant)
        order.refresh_from_db()
        return order

    def parcel(self, order: Order) -> Shipment:
        with tenant_context(self.tenant):
            return Shipment.objects.select_related("provider").get(order=order)


def provider_world(
    tenant, *, webhook_url: str = "", contact_email: str = "orders@factory.example"
) -> ProviderWorld:
    supplier = SupplierFactory(tenant=tenant, code="FAC", name="Factory 1688")
    provider = ProviderFactory(
        tenant=tenant,
        code="FAC",
        name="Factory 1688",
        kind="dropship",
        supplier=supplier,
        webhook_url=webhook_url,
        webhook_secret=SECRET,
        contact_email=contact_email,
    )
    warehouse = WarehouseFactory(
        tenant=tenant, code="FAC-WH", kind=WarehouseKind.SUPPLIER, provider=provider
    )
    # A shop without a platform answer API: cancellations are answered here only.
    shop = ShopFactory(
        tenant=tenant, name=f"{tenant.name} shop", platform="manual", platform_shop_id=""
    )
    mug = SkuFactory(tenant=tenant, code="MUG", name="Mug")
    cap = SkuFactory(tenant=tenant, code="CAP", name="Cap")
    SupplierItemFactory(tenant=tenant, supplier=supplier, sku=mug, supplier_item_code="F-MUG-01")
    SupplierItemFactory(tenant=tenant, supplier=supplier, sku=cap, supplier_item_code="F-CAP-07")
    with tenant_context(tenant):
        for sku in (mug, cap):
            stock_adjust(
                sku=sku,
                warehouse=warehouse,
                delta=20,
                kind=MovementKind.RECEIVE,
                user=None,
                note="opening stock",
            )
    return ProviderWorld(tenant, shop, provider, warehouse, mug, cap)
