"""Parcels ready to print, made in bulk: a tenant's shop, own warehouse with binned stock, and
ready orders with one pending parcel each (the state routing leaves them in)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from inventory.models import Sku, StockLevel, Warehouse
from logistics.models import Carrier, CarrierService, Shipment, ShipmentLine
from orders.models import Order, OrderLine, OrderStatus
from shops.models import Shop

#: SKUs of the print world: code, name (some Chinese), bin.
SKUS = (
    ("EAR-01", "蓝牙耳机 无线降噪", "C-10"),
    ("CASE-02", "Phone case 透明防摔手机壳", "A-2"),
    ("CUP-03", "Thermos 保温杯 500ml", "B-7"),
    ("CAP-04", "Baseball cap", "A-10"),
    ("PIN-05", "Enamel pin", ""),
)


@dataclass
class PrintWorld:
    tenant: object
    shop: Shop
    warehouse: Warehouse
    service: CarrierService
    skus: dict[str, Sku] = field(default_factory=dict)


def print_world(tenant, *, marker: str = "ALPHA", carrier_code: str = "usps") -> PrintWorld:
    shop = Shop._base_manager.create(tenant=tenant, name=f"{marker} TikTok", platform="tiktok")
    warehouse = Warehouse._base_manager.create(
        tenant=tenant,
        code=f"{marker}-WH",
        name=f"{marker} warehouse",
        address_line1="1 Dock Rd",
        city="Reno",
        state="NV",
        postal_code="89502",
    )
    carrier = Carrier._base_manager.create(tenant=tenant, code=carrier_code, name="USPS")
    service = CarrierService._base_manager.create(
        tenant=tenant, carrier=carrier, code="GroundAdvantage", name="Ground Advantage"
    )
    world = PrintWorld(tenant=tenant, shop=shop, warehouse=warehouse, service=service)
    for code, name, bin_location in SKUS:
        sku = Sku._base_manager.create(
            tenant=tenant, code=f"{marker}-{code}", name=name, weight_grams=300
        )
        StockLevel._base_manager.create(
            tenant=tenant,
            sku=sku,
            warehouse=warehouse,
            on_hand=100000,
            reserved=0,
            bin_location=bin_location,
        )
        world.skus[code] = sku
    return world


def ready_parcels(world: PrintWorld, count: int, *, start: int = 0, shop=None) -> list[Shipment]:
    """`count` ready orders of the world's shop, each with one pending parcel of one or two
    SKUs (rotating through SKUS, so the pick path has something to sort)."""
    tenant, shop = world.tenant, shop or world.shop
    now = timezone.now()
    codes = list(world.skus)
    orders = Order._base_manager.bulk_create(
        [
            Order(
                tenant=tenant,
                shop=shop,
                platform_order_id=f"{shop.pk}-{start + n:06d}",
                status=OrderStatus.READY,
                buyer_name=f"Buyer {n}",
                recipient_name=f"Buyer {start + n}",
                address_line1=f"{n + 1} Market St",
                city="San Francisco",
                state="CA",
                postal_code="94105",
                country="US",
                total=Decimal("19.99"),
                placed_at=now - timedelta(hours=2),
                ship_by=now + timedelta(hours=(start + n) % 48),
                buyer_note="请小心包装" if n % 7 == 0 else "",
            )
            for n in range(count)
        ]
    )
    lines = []
    for n, order in enumerate(orders):
        picked = [codes[n % len(codes)]] + ([codes[(n + 2) % len(codes)]] if n % 3 == 0 else [])
        for number, code in enumerate(picked):
            sku = world.skus[code]
            lines.append(
                OrderLine(
                    tenant=tenant,
                    order=order,
                    platform_line_id=f"{order.platform_order_id}-{number}",
                    sku=sku,
                    seller_sku=sku.code,
                    product_name=sku.name,
                    quantity=1 + (n + number) % 2,
                    unit_price=Decimal("9.99"),
                )
            )
    lines = OrderLine._base_manager.bulk_create(lines)
    shipments = Shipment._base_manager.bulk_create(
        [
            Shipment(
                tenant=tenant,
                order=order,
                reference=f"TK{order.pk}-W{world.warehouse.pk}",
                warehouse=world.warehouse,
                service=world.service,
                weight_grams=300,
            )
            for order in orders
        ]
    )
    by_order = {shipment.order_id: shipment for shipment in shipments}
    ShipmentLine._base_manager.bulk_create(
        [
            ShipmentLine(
                tenant=tenant,
                shipment=by_order[line.order_id],
                order_line=line,
                quantity=line.quantity,
            )
            for line in lines
        ]
    )
    return shipments


def connect_label_api(world: PrintWorld, **remote_settings):
    """The tenant's account at the label service, connected to the label sandbox (real HTTP,
    in-process transport); returns the sandbox's own record of it (purchases counted there)."""
    from logistics.models import LabelAccount
    from sandbox.labelapi import sandbox_label_account_connect

    account = LabelAccount._base_manager.create(
        tenant=world.tenant,
        name="EasyPost",
        carriers=world.service.carrier.code,
        requests_per_second=remote_settings.pop("requests_per_second", 1000),
    )
    remote_settings.setdefault("rate_per_second", 1000)
    remote_settings.setdefault("rate_burst", 1000)
    return sandbox_label_account_connect(account=account, **remote_settings)


def purchases(remote) -> int:
    """Labels the sandbox really sold on this account (idempotent replays are not purchases)."""
    from sandbox.models import SandboxLabelAccount

    return SandboxLabelAccount.objects.get(pk=remote.pk).purchases


@pytest.fixture(autouse=True)
def batch_media(settings, tmp_path):
    """Labels and batch PDFs go to the test's own folder (import this fixture to use it), and
    the sandbox's rate-limit buckets start empty."""
    from sandbox.base import reset_rate_limits

    settings.MEDIA_ROOT = tmp_path / "media"
    reset_rate_limits()
    return settings.MEDIA_ROOT
