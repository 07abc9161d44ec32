"""Building carrier-rule worlds for the rules suites: the demo's own rule set, and parcels made
by hand with the weight, value, destination and contents a test needs."""

from __future__ import annotations

from decimal import Decimal

from logistics.models import Carrier, CarrierRule, CarrierService, Shipment, ShipmentStatus
from orders.models import OrderHold, OrderStatus, Tag
from shops.demo import CARRIER_RULES, CARRIERS
from tests.factories import (
    OrderFactory,
    OrderLineFactory,
    OrderTagFactory,
    ShipmentFactory,
    ShipmentLineFactory,
    ShopFactory,
    SkuFactory,
    WarehouseFactory,
)

ALLOWANCE = 60  # TKERP_PACKAGING_ALLOWANCE_GRAMS's default, which these worlds keep


def demo_rule_set(tenant) -> dict:
    """The demo's carriers, services and rules (shops.demo's own tables) for `tenant`."""
    services = {}
    for code, name, url, service_specs in CARRIERS:
        carrier = Carrier._base_manager.create(
            tenant=tenant, code=code, name=name, tracking_url_template=url
        )
        for service_code, service_name, max_weight, po_box in service_specs:
            services[(code, service_code)] = CarrierService._base_manager.create(
                tenant=tenant,
                carrier=carrier,
                code=service_code,
                name=service_name,
                max_weight_grams=max_weight,
                accepts_po_box=po_box,
            )
    rules = {
        spec.name: CarrierRule._base_manager.create(
            tenant=tenant,
            name=spec.name,
            priority=spec.priority,
            tag=spec.tag,
            states=spec.states,
            min_weight_grams=spec.min_weight_grams,
            max_weight_grams=spec.max_weight_grams,
            min_total=spec.min_total,
            max_total=spec.max_total,
            service=services[spec.service],
        )
        for spec in CARRIER_RULES
    }
    return {"services": services, "rules": rules}


class ParcelMaker:
    """Parcels of one tenant: an order to a destination, with lines of SKUs of given weights,
    and its pending shipment (no service yet) from one warehouse."""

    def __init__(self, tenant, *, warehouse=None, shop=None):
        self.tenant = tenant
        self.shop = shop or ShopFactory(tenant=tenant)
        self.warehouse = warehouse or WarehouseFactory(tenant=tenant, country="US")
        self.skus = {}

    def sku(self, grams: int, code: str | None = None):
        code = code or f"SKU-{grams}G"
        if code not in self.skus:
            self.skus[code] = SkuFactory(tenant=self.tenant, code=code, weight_grams=grams)
        return self.skus[code]

    def __call__(
        self,
        *,
        total: str = "20.00",
        grams: int = 200,
        quantity: int = 1,
        lines: list[tuple] | None = None,
        state: str = "TX",
        city: str = "Austin",
        postal_code: str = "78704",
        country: str = "US",
        address_line1: str = "1200 Barton Springs Rd",
        tags: tuple[str, ...] = (),
        shop=None,
        status: str = OrderStatus.READY,
        placed_at=None,
        **shipment_fields,
    ) -> Shipment:
        order = OrderFactory(
            tenant=self.tenant,
            shop=shop or self.shop,
            total=Decimal(total),
            state=state,
            city=city,
            postal_code=postal_code,
            country=country,
            address_line1=address_line1,
            status=status,
            placed_at=placed_at,
        )
        shipment = ShipmentFactory(
            order=order, warehouse=self.warehouse, service=None, **shipment_fields
        )
        for sku, count in lines or [(self.sku(grams), quantity)]:
            line = OrderLineFactory(
                order=order,
                sku=sku,
                quantity=count,
                unit_price=Decimal(total) / count,
                total=Decimal(total),
            )
            ShipmentLineFactory(shipment=shipment, order_line=line, quantity=count)
        for name in tags:
            tag, _ = Tag._base_manager.get_or_create(tenant=self.tenant, name=name)
            OrderTagFactory(order=order, tag=tag)
        return shipment


def reloaded(shipment: Shipment) -> Shipment:
    return Shipment._base_manager.select_related("service__carrier", "carrier_rule").get(
        pk=shipment.pk
    )


def active_holds(order) -> dict[str, str]:
    return dict(
        OrderHold._base_manager.filter(order=order, released_at__isnull=True).values_list(
            "code", "message"
        )
    )


def labelled(maker: ParcelMaker, **fields) -> Shipment:
    """A parcel whose label is already bought."""
    shipment = maker(**fields)
    Shipment._base_manager.filter(pk=shipment.pk).update(
        status=ShipmentStatus.LABELLED, tracking_number=f"9400{shipment.pk:018d}"
    )
    return reloaded(shipment)
