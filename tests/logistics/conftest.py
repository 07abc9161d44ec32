"""Logistics data for two tenants whose every label carries the tenant's marker (ALPHA/BRAVO)."""

import pytest

from tests.factories import (
    CarrierFactory,
    CarrierRuleFactory,
    CarrierServiceFactory,
    OrderFactory,
    OrderLineFactory,
    ProviderFactory,
    ShipmentFactory,
    ShipmentLineFactory,
    ShopFactory,
    SkuFactory,
    SupplierFactory,
    WarehouseFactory,
)


@pytest.fixture
def label_media(settings, tmp_path):
    """Label files in a throwaway folder, and the sandboxes' rate limits from zero: the label
    test modules use it for every test (`pytestmark`)."""
    from sandbox.base import reset_rate_limits

    settings.MEDIA_ROOT = tmp_path
    reset_rate_limits()


def logistics_world(tenant, marker: str) -> dict:
    shop = ShopFactory(tenant=tenant, name=f"{marker} shop")
    carrier = CarrierFactory(tenant=tenant, code=f"{marker}-CAR", name=f"{marker} carrier")
    service = CarrierServiceFactory(
        tenant=tenant, carrier=carrier, code=f"{marker}-SVC", name=f"{marker} ground"
    )
    provider = ProviderFactory(
        tenant=tenant,
        code=f"{marker}-PRV",
        name=f"{marker} 3PL",
        supplier=SupplierFactory(tenant=tenant, code=f"{marker}-SUP", name=f"{marker} supplies"),
    )
    warehouse = WarehouseFactory(
        tenant=tenant, code=f"{marker}-WH", name=f"{marker} warehouse", provider=provider
    )
    order = OrderFactory(tenant=tenant, shop=shop, platform_order_id=f"{marker}-ORDER")
    line = OrderLineFactory(
        order=order, sku=SkuFactory(tenant=tenant, code=f"{marker}-SKU"), seller_sku=f"{marker}-SKU"
    )
    shipment = ShipmentFactory(
        order=order,
        reference=f"{marker}-SHP",
        warehouse=warehouse,
        service=service,
        provider=provider,
        tracking_number=f"{marker}-TRK",
    )
    return {
        "shop": shop,
        "carrier": carrier,
        "carrierservice": service,
        "carrierrule": CarrierRuleFactory(
            tenant=tenant, name=f"{marker} rule", service=service, shop=shop, tag=f"{marker}-TAG"
        ),
        "provider": provider,
        "warehouse": warehouse,
        "order": order,
        "orderline": line,
        "shipment": shipment,
        "shipmentline": ShipmentLineFactory(shipment=shipment, order_line=line),
    }


@pytest.fixture
def world_a(tenant_a):
    return logistics_world(tenant_a, "ALPHA")


@pytest.fixture
def world_b(tenant_b):
    return logistics_world(tenant_b, "BRAVO")
