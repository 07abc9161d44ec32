"""A seller ready to buy labels: carriers and services, a warehouse with an address, a label
account connected to the label sandbox, and parcels with weights and recipients."""

from __future__ import annotations

import io
from dataclasses import dataclass
from decimal import Decimal

from pypdf import PdfReader

from logistics.models import LabelAccount
from sandbox.labelapi import sandbox_label_account_connect
from sandbox.models import SandboxLabelAccount
from tests.factories import (
    CarrierFactory,
    CarrierServiceFactory,
    OrderFactory,
    OrderLineFactory,
    ShipmentFactory,
    ShipmentLineFactory,
    ShopFactory,
    SkuFactory,
    WarehouseFactory,
)


@dataclass
class LabelWorld:
    tenant: object
    shop: object
    warehouse: object
    services: dict
    account: LabelAccount
    remote: SandboxLabelAccount

    def parcel(self, service: str = "usps", reference: str = "", **order_fields):
        order = OrderFactory(tenant=self.tenant, shop=self.shop, **order_fields)
        line = OrderLineFactory(
            order=order,
            sku=SkuFactory(tenant=self.tenant, weight_grams=340),
            quantity=2,
        )
        extra = {"reference": reference} if reference else {}
        shipment = ShipmentFactory(
            order=order,
            warehouse=self.warehouse,
            service=self.services[service] if service else None,
            **extra,
        )
        ShipmentLineFactory(shipment=shipment, order_line=line, quantity=2)
        return shipment


def label_world(tenant, *, carriers="usps,ups,fedex", **remote_settings) -> LabelWorld:
    usps = CarrierFactory(tenant=tenant, code="usps", name="USPS")
    ups = CarrierFactory(tenant=tenant, code="ups", name="UPS")
    fedex = CarrierFactory(tenant=tenant, code="fedex", name="FedEx")
    services = {
        "usps": CarrierServiceFactory(
            tenant=tenant, carrier=usps, code="ground_advantage", name="Ground Advantage"
        ),
        "ups": CarrierServiceFactory(tenant=tenant, carrier=ups, code="ground", name="Ground"),
        "fedex": CarrierServiceFactory(
            tenant=tenant, carrier=fedex, code="home_delivery", name="Home Delivery"
        ),
        "fedex_2day": CarrierServiceFactory(tenant=tenant, carrier=fedex, code="2day", name="2Day"),
        "teleport": CarrierServiceFactory(
            tenant=tenant, carrier=usps, code="teleport", name="Teleport"
        ),
    }
    warehouse = WarehouseFactory(
        tenant=tenant,
        code="MAIN",
        name=f"{tenant.name} Warehouse",
        address_line1="500 Commerce Way",
        city="Reno",
        state="NV",
        postal_code="89502",
    )
    account = LabelAccount._base_manager.create(
        tenant=tenant, name="EasyPost", carriers=carriers, requests_per_second=1000
    )
    remote = sandbox_label_account_connect(
        account=account, rate_per_second=1000, rate_burst=1000, **remote_settings
    )
    return LabelWorld(
        tenant=tenant,
        shop=ShopFactory(tenant=tenant, platform="tiktok"),
        warehouse=warehouse,
        services=services,
        account=account,
        remote=remote,
    )


def purchases(world: LabelWorld) -> int:
    return SandboxLabelAccount.objects.get(pk=world.remote.pk).purchases


def pdf_text(data: bytes) -> str:
    reader = PdfReader(io.BytesIO(data))
    return "\n".join(page.extract_text() for page in reader.pages)


def page_size(data: bytes) -> tuple[float, float]:
    box = PdfReader(io.BytesIO(data)).pages[0].mediabox
    return float(box.width), float(box.height)


ZERO = Decimal("0")


def refunds_then_stop(monkeypatch) -> list[str]:
    """The label service's refund is asked for, then the worker dies before it records that
    (the first time only): the ids asked for, as the refunds go."""
    from logistics.labels.labelapi import LabelApiSource

    asked: list[str] = []
    real = LabelApiSource._refund

    def refund_then_stop(self, label_id):
        asked.append(label_id)
        real(self, label_id)
        if len(asked) == 1:
            raise SystemExit("killed")  # refunded, nothing recorded yet

    monkeypatch.setattr(LabelApiSource, "_refund", refund_then_stop)
    return asked
