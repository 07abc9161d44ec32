"""Inventory data for two tenants whose every label carries the tenant's marker (ALPHA/BRAVO),
so a page can be searched for the other tenant's marker."""

import pytest

from tests.factories import (
    ListingFactory,
    ProviderFactory,
    ShopFactory,
    SkuFactory,
    StockLevelFactory,
    StockMovementFactory,
    SupplierFactory,
    SupplierItemFactory,
    WarehouseFactory,
)


def inventory_world(tenant, marker: str) -> dict:
    provider = ProviderFactory(tenant=tenant, code=f"{marker}-PRV", name=f"{marker} 3PL")
    warehouse = WarehouseFactory(
        tenant=tenant, code=f"{marker}-WH", name=f"{marker} warehouse", provider=provider
    )
    sku = SkuFactory(
        tenant=tenant, code=f"{marker}-SKU", name=f"{marker} mug", barcode=f"{marker}-EAN"
    )
    shop = ShopFactory(tenant=tenant, name=f"{marker} shop")
    supplier = SupplierFactory(tenant=tenant, code=f"{marker}-SUP", name=f"{marker} supplies")
    return {
        "provider": provider,
        "warehouse": warehouse,
        "sku": sku,
        "shop": shop,
        "supplier": supplier,
        "stocklevel": StockLevelFactory(
            tenant=tenant,
            sku=sku,
            warehouse=warehouse,
            on_hand=10,
            reserved=2,
            bin_location=f"{marker}-BIN",
        ),
        "stockmovement": StockMovementFactory(
            tenant=tenant, sku=sku, warehouse=warehouse, reference=f"{marker}-REF"
        ),
        "listing": ListingFactory(
            tenant=tenant, shop=shop, sku=sku, platform_sku_id=f"{marker}-PSKU"
        ),
        "supplieritem": SupplierItemFactory(
            tenant=tenant, supplier=supplier, sku=sku, supplier_item_code=f"{marker}-ITEM"
        ),
    }


@pytest.fixture
def world_a(tenant_a):
    return inventory_world(tenant_a, "ALPHA")


@pytest.fixture
def world_b(tenant_b):
    return inventory_world(tenant_b, "BRAVO")
