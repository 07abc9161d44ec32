"""Orders described once (`OrderDraft`) and held by each platform's sandbox in its own shape:
what the connector reads back, and the store-side changes the demo seeds with (a request to
cancel, shipping with a tracking number, the carrier's progress, a cancellation)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from sandbox.actions import sandbox_show, sandbox_store_drafts
from sandbox.base import (
    DraftAddress,
    DraftLine,
    OrderDraft,
    SandboxInputError,
    reset_rate_limits,
    sandbox_for,
)
from shops.platforms import connector_for
from tests.e2e.helpers import connect_shop

pytestmark = pytest.mark.django_db

ORDER_IDS = {
    "tiktok": ("576600000000000101", "576600000000000102"),
    "shopify": ("5900000000101", "5900000000102"),
    "amazon": ("112-0000101-0000101", "112-0000102-0000102"),
    "ebay": ("12-00101-00101", "12-00102-00102"),
}
PLATFORMS = list(ORDER_IDS)


@pytest.fixture(autouse=True)
def fresh_sandbox_rate_limits():
    reset_rate_limits()


def drafts(store, platform: str, *, now):
    products = {product.seller_sku: product for product in store.products.all()}
    address = DraftAddress(
        name="Maria Lopez",
        phone="+15125550142",
        line1="2100 E 5th St",
        line2="Apt 4B",
        city="Austin",
        state="TX",
        postal_code="78702",
    )
    paid = OrderDraft(
        order_id=ORDER_IDS[platform][0],
        number=101,
        placed_at=now - timedelta(hours=5, minutes=4),
        paid_at=now - timedelta(hours=5),
        buyer_name="Maria Lopez",
        buyer_email="maria@example.com",
        address=address,
        lines=(
            DraftLine(products["MUG-01"], 2, Decimal("12.50"), Decimal("2.50"), Decimal("1.86")),
            DraftLine(products["CAP-02"], 1, Decimal("19.99"), tax=Decimal("1.65")),
        ),
        shipping_fee=Decimal("4.99"),
        note="Please gift wrap",
        ship_by=now + timedelta(hours=19),
    )
    unpaid = OrderDraft(
        order_id=ORDER_IDS[platform][1],
        number=102,
        placed_at=now - timedelta(hours=1),
        paid_at=None,
        buyer_name="Sam Lee",
        buyer_email="sam@example.com",
        address=address,
        lines=(DraftLine(products["PIN-03"], 1, Decimal("5.00")),),
    )
    return paid, unpaid


def fetch(shop, order_id: str):
    connector = connector_for(shop)
    try:
        (order,) = connector.fetch_orders_by_id(platform_order_ids=[order_id])
    finally:
        connector.http.close()
    return order


@pytest.mark.parametrize("platform", PLATFORMS)
def test_a_draft_reads_back_through_the_connector_as_described(tenant_a, platform):
    shop, store = connect_shop(tenant_a, platform)
    now = timezone.now().replace(microsecond=0)
    paid, unpaid = drafts(store, platform, now=now)
    rows = sandbox_store_drafts(shop=shop, drafts=[paid, unpaid])
    assert set(rows) == set(ORDER_IDS[platform])

    order = fetch(shop, paid.order_id)
    assert order.status == "new"
    # Amazon charges at purchase: the order's payment time is its purchase time.
    assert order.paid_at == (paid.placed_at if platform == "amazon" else paid.paid_at)
    assert order.placed_at == paid.placed_at
    assert sum(line.total for line in order.lines) == Decimal("42.49")
    assert order.seller_discount == Decimal("2.50")
    # eBay reports its subtotal before discounts; the others net of them.
    assert order.subtotal == (Decimal("44.99") if platform == "ebay" else Decimal("42.49"))
    assert order.tax == Decimal("3.51")
    assert order.shipping_fee == Decimal("4.99")
    assert order.total == Decimal("50.99")
    # eBay's SKU is the listing's platform SKU id; the others send the seller SKU.
    products = {product.seller_sku: product for product in store.products.all()}
    sent = {
        code: products[code].sku_id if platform == "ebay" else code for code in ("MUG-01", "CAP-02")
    }
    assert {line.seller_sku: line.quantity for line in order.lines} == {
        sent["MUG-01"]: 2,
        sent["CAP-02"]: 1,
    }
    assert order.address.line1 == "2100 E 5th St"
    assert order.address.postal_code == "78702"
    if platform == "shopify":
        assert order.ship_by is None  # Shopify has no deadline of its own: the shop's applies
    else:
        assert order.ship_by == paid.ship_by
    # Amazon orders carry no buyer notes.
    assert order.buyer_note == ("" if platform == "amazon" else "Please gift wrap")

    assert fetch(shop, unpaid.order_id).paid_at is None


@pytest.mark.parametrize("platform", PLATFORMS)
def test_shipping_and_delivering_in_the_store_is_what_the_platform_reports(tenant_a, platform):
    shop, store = connect_shop(tenant_a, platform)
    now = timezone.now().replace(microsecond=0)
    paid, unpaid = drafts(store, platform, now=now)
    rows = sandbox_store_drafts(shop=shop, drafts=[paid, unpaid])
    sandbox = sandbox_for(platform)

    shipped_at = now - timedelta(hours=2)
    sandbox.ship_order(
        store=store,
        order=rows[paid.order_id],
        tracking_number="1Z4W7R210300000174",
        carrier="ups",
        at=shipped_at,
    )
    assert fetch(shop, paid.order_id).status == "shipped"
    shown = sandbox_show(shop=shop, what="shipments")
    assert len(shown) == 1 and "1Z4W7R210300000174" in str(shown)

    tracked = sandbox.advance_order(
        store=store, order=rows[paid.order_id], status="delivered", at=now - timedelta(minutes=5)
    )
    # TikTok and Shopify follow the parcel; on Amazon and eBay that is the carrier's to tell.
    assert tracked == (platform in ("tiktok", "shopify"))
    assert fetch(shop, paid.order_id).status == ("delivered" if tracked else "shipped")

    sandbox.cancel_order(store=store, order=rows[unpaid.order_id], at=now - timedelta(minutes=3))
    assert fetch(shop, unpaid.order_id).status == "cancelled"


@pytest.mark.parametrize("platform", ["tiktok", "shopify", "ebay"])
def test_a_cancellation_request_keeps_the_time_it_was_asked(tenant_a, platform):
    shop, store = connect_shop(tenant_a, platform)
    now = timezone.now().replace(microsecond=0)
    paid, _ = drafts(store, platform, now=now)
    rows = sandbox_store_drafts(shop=shop, drafts=[paid])
    asked = now - timedelta(hours=3)
    sandbox_for(platform).request_cancellation(store=store, order=rows[paid.order_id], at=asked)
    order = fetch(shop, paid.order_id)
    assert order.cancel_requested
    assert order.cancel_requested_at == asked


@pytest.mark.parametrize("platform", PLATFORMS)
def test_loading_many_orders_is_all_or_nothing_and_names_the_bad_one(tenant_a, platform):
    _, store = connect_shop(tenant_a, platform)
    sandbox = sandbox_for(platform)
    paid, unpaid = drafts(store, platform, now=timezone.now())
    good = sandbox.compose_order(store=store, draft=paid)
    bad = sandbox.compose_order(store=store, draft=unpaid)
    items = {"tiktok": "line_items", "shopify": "line_items", "amazon": "OrderItems"}
    bad[items.get(platform, "lineItems")] = []
    with pytest.raises(SandboxInputError, match=r"^order 1: "):
        sandbox.load_orders(store=store, payloads=[good, bad])
    assert not store.orders.exists()
    assert sandbox.load_orders(store=store, payloads=[good]) == 1
    assert store.orders.get().order_id == paid.order_id
