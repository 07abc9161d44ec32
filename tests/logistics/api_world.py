"""A seller whose parcels sit at two providers, with real reservations, for the provider API.

`provider_world(tenant, marker)` gives: provider `prv` (a 3PL whose supplier record maps MUG to
its own item code) with warehouse `wh`, a second provider `other` with warehouse `other_wh`,
a USPS service, stock of MUG and CAP in both warehouses, and one paid order per warehouse,
reserved and split into its parcel (`parcel` at `wh`, `other_parcel` at `other_wh`), dispatched
to the provider. `api(client, key)` returns request helpers that send the key.
"""

from __future__ import annotations

import json
import uuid

from django.test import Client
from django.utils import timezone

from inventory.models import MovementKind, ShopWarehouse, WarehouseKind
from inventory.reservations import orders_reserve
from inventory.stock import stock_adjust
from logistics.models import ApiKeyScope, Shipment, ShipmentStatus
from logistics.providers import provider_key_create
from logistics.routing import order_shipments_split
from tests.factories import (
    CarrierFactory,
    CarrierServiceFactory,
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

# Valid numbers (format and check digit) of each carrier.
USPS_NUMBER = "9400111000000000000019"
USPS_NUMBER_2 = "9400111000000000000026"
UPS_NUMBER = "1Z999AA10123456784"


def routed_order(world: dict, *, shop, lines: list[tuple[object, int]]) -> Shipment:
    """A paid order of `shop` for `lines` [(sku, quantity)], reserved and split: its parcel."""
    tenant = world["tenant"]
    order = OrderFactory(
        tenant=tenant,
        shop=shop,
        paid_at=timezone.now(),
        ship_by=timezone.now() + timezone.timedelta(hours=24),
    )
    for sku, quantity in lines:
        OrderLineFactory(
            order=order, tenant=tenant, sku=sku, quantity=quantity, product_name=sku.name
        )
    orders_reserve(tenant=tenant, order_ids=[order.pk])
    (parcel,) = order_shipments_split(order=order, apply_rules=False)
    with tenant_context(tenant):
        Shipment.objects.filter(pk=parcel.pk).update(
            service=world["service"],
            status=ShipmentStatus.SENT_TO_PROVIDER,
            dispatched_at=timezone.now(),
        )
        parcel.refresh_from_db()
    return parcel


def provider_world(tenant, marker: str = "A") -> dict:
    usps = CarrierFactory(tenant=tenant, code="usps", name="USPS")
    service = CarrierServiceFactory(tenant=tenant, carrier=usps, code="ground", name="Ground")
    ups = CarrierFactory(tenant=tenant, code="ups", name="UPS")
    CarrierServiceFactory(tenant=tenant, carrier=ups, code="ground", name="UPS Ground")
    supplier = SupplierFactory(tenant=tenant, code=f"{marker}-SUP")
    prv = ProviderFactory(tenant=tenant, code=f"{marker}-PRV", name=f"{marker} 3PL", kind="3pl")
    prv.supplier = supplier
    prv.save()
    other = ProviderFactory(tenant=tenant, code=f"{marker}-OTH", name=f"{marker} other 3PL")
    wh = WarehouseFactory(
        tenant=tenant, code=f"{marker}-WH", kind=WarehouseKind.THREE_PL, provider=prv
    )
    other_wh = WarehouseFactory(
        tenant=tenant, code=f"{marker}-WH2", kind=WarehouseKind.THREE_PL, provider=other
    )
    mug = SkuFactory(tenant=tenant, code=f"{marker}-MUG", name="Mug")
    cap = SkuFactory(tenant=tenant, code=f"{marker}-CAP", name="Cap")
    SupplierItemFactory(tenant=tenant, supplier=supplier, sku=mug, supplier_item_code="X-MUG")
    shop = ShopFactory(tenant=tenant, name=f"{marker} shop")
    other_shop = ShopFactory(tenant=tenant, name=f"{marker} other shop")
    with tenant_context(tenant):
        ShopWarehouse.objects.create(tenant=tenant, shop=shop, warehouse=wh, priority=1)
        ShopWarehouse.objects.create(tenant=tenant, shop=other_shop, warehouse=other_wh, priority=1)
        for warehouse in (wh, other_wh):
            for sku in (mug, cap):
                stock_adjust(
                    sku=sku,
                    warehouse=warehouse,
                    delta=100,
                    kind=MovementKind.RECEIVE,
                    user=None,
                    note="delivery",
                )
    world = {
        "tenant": tenant,
        "prv": prv,
        "other": other,
        "wh": wh,
        "other_wh": other_wh,
        "mug": mug,
        "cap": cap,
        "service": service,
        "usps": usps,
        "shop": shop,
        "other_shop": other_shop,
    }
    world["parcel"] = routed_order(world, shop=shop, lines=[(mug, 1), (cap, 2)])
    world["other_parcel"] = routed_order(world, shop=other_shop, lines=[(mug, 1)])
    _, world["key"] = provider_key_create(
        provider=prv, name="test", scope=ApiKeyScope.WRITE, expires_days=None
    )
    return world


class Api:
    """Requests to the API with a key (and a fresh Idempotency-Key on each POST)."""

    def __init__(self, key: str | None, client: Client | None = None):
        self.client = client or Client()
        self.key = key

    def headers(self, extra: dict | None = None) -> dict:
        headers = {"Authorization": f"Api-Key {self.key}"} if self.key else {}
        return {**headers, **(extra or {})}

    def get(self, path: str, **params):
        return self.client.get(path, params, headers=self.headers())

    def post(self, path: str, body, *, idempotency_key: str | None = None, headers=None):
        extra = {"Idempotency-Key": idempotency_key or str(uuid.uuid4()), **(headers or {})}
        return self.client.post(
            path, json.dumps(body), content_type="application/json", headers=self.headers(extra)
        )
