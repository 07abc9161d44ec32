"""Platform labels: orders TikTok ships get TikTok's own label, through the TikTok sandbox over
real HTTP: the package is shipped, its shipping documents fetched, and the PDF downloaded at
once (the link expires) and stored."""

from __future__ import annotations

import random
import time

import pytest
from django.utils import timezone

from logistics.labels.base import LabelError
from logistics.labels.labelapi import LabelApiSource
from logistics.labels.manual import ManualLabelSource
from logistics.labels.platform import TikTokLabelSource, order_ships_with_platform
from logistics.labels.sources import label_source_for
from logistics.labels.store import shipment_label_buy, shipment_label_void
from logistics.models import Shipment, ShipmentStatus
from logistics.tracking_numbers import tracking_number_valid
from sandbox import tiktok as tiktok_sandbox
from sandbox.connect import sandbox_connect
from sandbox.models import SandboxOrder
from sandbox.tiktok import TikTokSandbox
from shops.models import ShopCredentials
from shops.platforms import connector_for
from shops.platforms.base import PlatformRequestError
from tests.factories import (
    CarrierFactory,
    CarrierServiceFactory,
    ListingFactory,
    OrderFactory,
    OrderLineFactory,
    ShipmentFactory,
    ShipmentLineFactory,
    ShopFactory,
    SkuFactory,
    WarehouseFactory,
)
from tests.logistics.labels_helpers import label_world, pdf_text
from tkerp.tenancy import tenant_context

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("label_media")]


@pytest.fixture
def tiktok(tenant_a):
    shop = ShopFactory(tenant=tenant_a, platform="tiktok", name="Live Shop")
    sku = SkuFactory(tenant=tenant_a, code="LIP-01", weight_grams=120)
    ListingFactory(tenant=tenant_a, shop=shop, sku=sku)
    store = sandbox_connect(shop=shop)
    ShopCredentials._base_manager.filter(shop=shop).update(
        extra={
            "location_id": store.warehouse_id,
            "shop_key": store.shop_key,
            "rate_limit": {"per_second": 10000, "burst": 10000},
        }
    )
    shop.refresh_from_db()
    return shop, store, sku


def tiktok_parcel(tenant, shop, store, sku, *, shipping_type="TIKTOK", service=None):
    """An order in the sandbox (as TikTok holds it) and in tkerp (as synced), with a parcel."""
    products = list(store.products.order_by("pk"))
    payload = TikTokSandbox().generate_order(
        store=store, rng=random.Random(7), products=products, now=timezone.now()
    )
    payload["shipping_type"] = shipping_type
    TikTokSandbox().load_orders(store=store, payloads=[payload])
    order = OrderFactory(tenant=tenant, shop=shop, platform_order_id=payload["id"], raw=payload)
    item = payload["line_items"][0]
    line = OrderLineFactory(order=order, sku=sku, platform_line_id=item["id"])
    parcel = ShipmentFactory(
        order=order,
        warehouse=WarehouseFactory(tenant=tenant),
        service=service,
    )
    ShipmentLineFactory(shipment=parcel, order_line=line)
    return parcel, payload


def stored_label(parcel) -> bytes:
    with parcel.label_file.open("rb") as handle:
        return handle.read()


class TestTikTokShipping:
    def test_the_platform_label_is_fetched_and_stored(self, tenant_a, tiktok):
        shop, store, sku = tiktok
        usps = CarrierServiceFactory(
            tenant=tenant_a,
            carrier=CarrierFactory(tenant=tenant_a, code="usps", name="USPS"),
            code="ground_advantage",
        )
        parcel, payload = tiktok_parcel(tenant_a, shop, store, sku)
        assert isinstance(label_source_for(parcel), TikTokLabelSource)

        stored = shipment_label_buy(shipment=parcel)

        package_id = payload["packages"][0]["id"]
        assert stored.status == ShipmentStatus.LABELLED
        assert stored.label_source == "tiktok"
        assert stored.platform_package_id == package_id == stored.source_label_id
        assert stored.service_id == usps.pk  # TikTok's carrier, as the seller names it
        assert tracking_number_valid(carrier="usps", number=stored.tracking_number)
        assert stored.shipping_cost == 0  # TikTok bills its shipping in the settlement
        text = pdf_text(stored_label(stored)).replace(" ", "")
        assert stored.tracking_number in text and "TIKTOKSHIPPING" in text
        platform_order = SandboxOrder.objects.get(store=store, order_id=payload["id"])
        assert platform_order.payload["status"] == "AWAITING_COLLECTION"
        assert platform_order.payload["tracking_number"] == stored.tracking_number

    def test_asking_again_gets_the_same_label(self, tenant_a, tiktok):
        shop, store, sku = tiktok
        parcel, _ = tiktok_parcel(tenant_a, shop, store, sku)
        with tenant_context(tenant_a):
            parcel = Shipment.objects.select_related("order__shop", "service").get(pk=parcel.pk)
        source = TikTokLabelSource(shop=shop)
        try:
            first = source.buy(shipment=parcel)
            second = source.buy(shipment=parcel)  # the package is already shipped: recognised
        finally:
            source.close()
        assert second.tracking_number == first.tracking_number
        assert store.shipments.count() == 1
        assert shipment_label_buy(shipment=parcel).tracking_number == first.tracking_number

    def test_tiktoks_packing_slip_can_be_fetched_too(self, tenant_a, tiktok):
        shop, store, sku = tiktok
        parcel, payload = tiktok_parcel(tenant_a, shop, store, sku)
        shipment_label_buy(shipment=parcel)
        source = TikTokLabelSource(shop=shop)
        try:
            slip = source.document(
                shipment=Shipment._base_manager.select_related("order__shop").get(pk=parcel.pk)
            )
        finally:
            source.close()
        text = pdf_text(slip)
        assert "PACKING SLIP" in text and payload["id"] in text
        assert payload["line_items"][0]["seller_sku"] in text

    def test_the_document_link_expires(self, tenant_a, tiktok, monkeypatch):
        shop, store, sku = tiktok
        parcel, payload = tiktok_parcel(tenant_a, shop, store, sku)
        shipment_label_buy(shipment=parcel)
        connector = connector_for(shop, max_retries=0)
        url = connector.shipping_document_url(package_id=payload["packages"][0]["id"])
        assert connector.download_document(url=url).startswith(b"%PDF")

        later = time.time() + tiktok_sandbox.DOC_URL_LIFETIME + 5
        monkeypatch.setattr(tiktok_sandbox.time, "time", lambda: later)
        with pytest.raises(PlatformRequestError, match="expired"):
            connector.download_document(url=url)
        connector.http.close()

    def test_documents_tiktok_refuses(self, tenant_a, tiktok):
        shop, store, sku = tiktok
        _, own = tiktok_parcel(tenant_a, shop, store, sku, shipping_type="SELLER")
        connector = connector_for(shop, max_retries=0)
        package_id = own["packages"][0]["id"]
        with pytest.raises(PlatformRequestError) as caught:
            connector.shipping_document_url(package_id=package_id)
        assert caught.value.code == tiktok_sandbox.CODE_NOT_SHIPPED
        connector.http.close()

    def test_tiktok_labels_are_not_voided_here(self, tenant_a, tiktok):
        shop, store, sku = tiktok
        parcel, _ = tiktok_parcel(tenant_a, shop, store, sku)
        stored = shipment_label_buy(shipment=parcel)
        with pytest.raises(LabelError) as caught:
            shipment_label_void(shipment=stored)
        assert caught.value.code == "not_supported"

    def test_a_shop_without_credentials_fails_with_a_reason(self, tenant_a, tiktok):
        shop, store, sku = tiktok
        parcel, _ = tiktok_parcel(tenant_a, shop, store, sku)
        ShopCredentials._base_manager.filter(shop=shop).delete()
        with pytest.raises(LabelError, match="not connected to TikTok"):
            shipment_label_buy(shipment=parcel)


def test_seller_shipped_orders_use_the_sellers_own_sources(tenant_a, tiktok):
    shop, store, sku = tiktok
    world = label_world(tenant_a, carriers="usps")
    parcel, _ = tiktok_parcel(
        tenant_a, shop, store, sku, shipping_type="SELLER", service=world.services["usps"]
    )
    assert not order_ships_with_platform(parcel.order)
    assert isinstance(label_source_for(parcel), LabelApiSource)
    other, _ = tiktok_parcel(
        tenant_a, shop, store, sku, shipping_type="SELLER", service=world.services["ups"]
    )
    assert isinstance(label_source_for(other), ManualLabelSource)
