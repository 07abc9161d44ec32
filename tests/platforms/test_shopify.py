"""Shopify connector against the Shopify sandbox, over real HTTP (in-process WSGI)."""

import base64
import hashlib
import hmac
import json
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from sandbox.base import SandboxInputError, sandbox_for
from sandbox.models import (
    SandboxCancellation,
    SandboxOrder,
    SandboxProduct,
    SandboxStore,
    SandboxWebhook,
)
from shops.models import ShopCredentials
from shops.platforms import connector_for
from shops.platforms.base import (
    InventoryUpdate,
    PlatformAuthError,
    PlatformRequestError,
    PlatformResponseError,
    ShipRequest,
    parse_iso_datetime,
)
from shops.platforms.http import sandbox_transport
from shops.platforms.shopify import ShopifyConnector
from tests.factories import ListingFactory, ShopFactory

T0 = datetime(2025, 3, 10, 15, 0, tzinfo=UTC)
API = "http://sandbox.tkerp.internal/sandbox/shopify/admin/api/2025-01"


@pytest.fixture
def shop(tenant_a):
    shop = ShopFactory(tenant=tenant_a, platform="shopify", name="Glow Lab", platform_shop_id="")
    for code in ("GLOW-SERUM", "GLOW-MASK", "GLOW-OIL"):
        ListingFactory(tenant=tenant_a, shop=shop, sku__tenant=tenant_a, sku__code=code)
    return shop


@pytest.fixture
def sandbox():
    return sandbox_for("shopify")


def add_order(sandbox, store, *, at: datetime, seed: int = 0, **changes) -> SandboxOrder:
    products = list(SandboxProduct.objects.filter(store=store).order_by("pk"))
    payload = sandbox.generate_order(
        store=store, rng=random.Random(seed), products=products, now=at
    )
    payload.update(changes)
    return sandbox.load_order(store=store, payload=payload)


def fetch_all(connector, **window) -> tuple[list, int]:
    orders, pages, token = [], 0, None
    while True:
        page = connector.fetch_orders(page_token=token, **window)
        pages += 1
        orders.extend(page.orders)
        token = page.next_page_token
        if not token:
            return orders, pages


# --- the shop's domain ------------------------------------------------------------------------


def test_connect_gives_a_myshopify_domain(shop, store):
    assert store.shop_key == f"glow-lab-{shop.pk}.myshopify.com"
    assert shop.platform_shop_id == store.shop_key


# --- orders -----------------------------------------------------------------------------------


def test_fetch_orders_pages_through_the_link_header_to_the_end(connector, sandbox, store):
    for number in range(600):
        add_order(sandbox, store, at=T0 + timedelta(seconds=number), seed=number)

    orders, pages = fetch_all(connector, updated_since=T0)

    assert pages == 3  # 250 + 250 + 100
    ids = [order.platform_order_id for order in orders]
    assert len(ids) == len(set(ids)) == 600
    stamps = [order.updated_at for order in orders]
    assert stamps == sorted(stamps)  # updated_at asc across pages


def test_fetch_orders_window_is_since_inclusive_until_exclusive(connector, sandbox, store):
    until = T0 + timedelta(hours=1)
    before = add_order(sandbox, store, at=T0 - timedelta(seconds=1), seed=1)
    at_start = add_order(sandbox, store, at=T0, seed=2)
    inside = add_order(sandbox, store, at=T0 + timedelta(minutes=30), seed=3)
    at_end = add_order(sandbox, store, at=until, seed=4)
    after = add_order(sandbox, store, at=until + timedelta(minutes=5), seed=5)

    orders, _ = fetch_all(connector, updated_since=T0, updated_until=until)

    got = {order.platform_order_id for order in orders}
    assert got == {at_start.order_id, inside.order_id}
    assert not got & {before.order_id, at_end.order_id, after.order_id}


def test_a_page_request_sends_only_page_info_and_limit(store):
    """Shopify refuses filters next to page_info; the sandbox does too."""
    client = httpx.Client(transport=sandbox_transport())
    headers = {"X-Shopify-Access-Token": store.access_token}
    response = client.get(
        f"{API}/orders.json",
        params={"page_info": "abc", "limit": 10, "status": "any"},
        headers=headers,
    )
    assert response.status_code == 400
    assert "page_info" in response.json()["errors"]


def test_previous_link_walks_back_to_the_first_page(sandbox, store):
    for number in range(5):
        add_order(sandbox, store, at=T0 + timedelta(seconds=number), seed=number)
    client = httpx.Client(transport=sandbox_transport())
    headers = {"X-Shopify-Access-Token": store.access_token}
    first = client.get(
        f"{API}/orders.json",
        params={"status": "any", "limit": 2, "order": "updated_at asc"},
        headers=headers,
    )
    assert "previous" not in first.links

    second = client.get(first.links["next"]["url"], headers=headers)
    back = client.get(second.links["previous"]["url"], headers=headers)

    ids = [[order["id"] for order in r.json()["orders"]] for r in (first, second, back)]
    assert ids[2] == ids[0]
    assert not set(ids[0]) & set(ids[1])


def test_fetch_orders_by_id_includes_cancelled_and_skips_unknown(connector, sandbox, store):
    kept = add_order(sandbox, store, at=T0, seed=1)
    cancelled = add_order(sandbox, store, at=T0, seed=2, cancelled_at="2025-03-10T11:00:00-04:00")

    orders = connector.fetch_orders_by_id(
        platform_order_ids=[kept.order_id, cancelled.order_id, "5999999999999"]
    )

    by_id = {order.platform_order_id: order for order in orders}
    assert set(by_id) == {kept.order_id, cancelled.order_id}
    assert by_id[cancelled.order_id].status == "cancelled"
    assert by_id[kept.order_id].status == "new"


SHOPIFY_ORDER = {
    "id": 5600000009001,
    "name": "#1042",
    "email": "maria.lopez@example.com",
    "created_at": "2025-03-10T10:58:30-04:00",
    "updated_at": "2025-03-10T11:02:05-04:00",
    "processed_at": "2025-03-10T10:58:31-04:00",
    "cancelled_at": None,
    "closed_at": None,
    "financial_status": "paid",
    "fulfillment_status": None,
    "currency": "USD",
    "subtotal_price": "53.97",
    "total_discounts": "5.99",
    "total_tax": "4.45",
    "total_price": "63.41",
    "total_shipping_price_set": {
        "shop_money": {"amount": "4.99", "currency_code": "USD"},
        "presentment_money": {"amount": "4.99", "currency_code": "USD"},
    },
    "shipping_lines": [{"id": 1, "title": "Standard", "price": "4.99"}],
    "note": "Gift — please don't include the receipt!",
    "tags": "vip, Cancel Requested",
    "customer": {"id": 7100000000042, "first_name": "Maria", "last_name": "Lopez"},
    "shipping_address": {
        "first_name": "Maria",
        "last_name": "Lopez",
        "name": "Maria Lopez",
        "address1": "4410 W Sunset Blvd",
        "address2": "Apt 2B",
        "city": "Los Angeles",
        "province": "California",
        "province_code": "CA",
        "zip": "90012",
        "country": "United States",
        "country_code": "US",
        "phone": "+12135550147",
    },
    "line_items": [
        {
            "id": 13900000009101,
            "variant_id": 1730000000000001,
            "sku": "GLOW-SERUM",
            "title": "Glow serum",
            "quantity": 2,
            "price": "19.99",
            "total_discount": "5.99",
            "fulfillable_quantity": 2,
            "fulfillment_status": None,
            "tax_lines": [{"price": "2.47", "rate": 0.0725}],
        },
        {
            "id": 13900000009102,
            "variant_id": 1730000000000002,
            "sku": "GLOW-MASK",
            "title": "Glow mask",
            "quantity": 1,
            "price": "19.98",
            "total_discount": "0.00",
            "fulfillable_quantity": 1,
            "fulfillment_status": None,
            "tax_lines": [{"price": "1.98", "rate": 0.0725}],
        },
    ],
}


def test_order_mapping(connector, sandbox, store):
    sandbox.load_order(store=store, payload=SHOPIFY_ORDER)

    [order] = connector.fetch_orders_by_id(platform_order_ids=["5600000009001"])

    assert order.platform_order_id == "5600000009001"
    assert order.status == "new"
    assert order.platform_status == "paid/unfulfilled"
    assert order.updated_at == datetime(2025, 3, 10, 15, 2, 5, tzinfo=UTC)
    assert order.placed_at == datetime(2025, 3, 10, 14, 58, 30, tzinfo=UTC)
    assert order.paid_at == datetime(2025, 3, 10, 14, 58, 31, tzinfo=UTC)
    assert order.subtotal == Decimal("53.97")
    assert order.shipping_fee == Decimal("4.99")
    assert order.seller_discount == Decimal("5.99")
    assert order.tax == Decimal("4.45")
    assert order.total == Decimal("63.41")
    assert order.buyer_name == "Maria Lopez"
    assert order.buyer_email == "maria.lopez@example.com"
    assert order.buyer_user_id == "7100000000042"
    assert order.buyer_note == "Gift — please don't include the receipt!"
    assert order.cancel_requested is True  # the tag, case-insensitive
    assert order.cancel_requested_at == order.updated_at  # no note attribute: the upper bound
    address = order.address
    assert (address.name, address.phone) == ("Maria Lopez", "+12135550147")
    assert (address.line1, address.line2) == ("4410 W Sunset Blvd", "Apt 2B")
    assert (address.city, address.state, address.postal_code, address.country) == (
        "Los Angeles",
        "CA",
        "90012",
        "US",
    )
    first, second = order.lines
    assert first.platform_line_id == "13900000009101"
    assert (first.seller_sku, first.platform_sku_id) == ("GLOW-SERUM", "1730000000000001")
    assert (first.quantity, first.unit_price, first.discount) == (
        2,
        Decimal("19.99"),
        Decimal("5.99"),
    )
    assert first.total == Decimal("33.99")
    assert first.tax == Decimal("2.47")
    assert second.quantity == 1 and second.total == Decimal("19.98")


@pytest.mark.parametrize(
    "text",
    [
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-05:00",
        "1970-01-01",
    ],
)
def test_a_timestamp_outside_the_accepted_years_is_refused(text):
    with pytest.raises(PlatformResponseError, match="timestamp"):
        parse_iso_datetime(text, platform="shopify")


def test_parse_iso_datetime_reads_offsets_and_naive_text_as_utc():
    assert parse_iso_datetime("2026-04-12T14:00:00-04:00") == datetime(2026, 4, 12, 18, tzinfo=UTC)
    assert parse_iso_datetime("2026-04-12T18:00:00") == datetime(2026, 4, 12, 18, tzinfo=UTC)
    assert parse_iso_datetime("") is None


def test_an_order_placed_in_year_one_is_left_out_by_id(connector, sandbox, store):
    good = add_order(sandbox, store, at=T0, seed=1)
    bad = add_order(sandbox, store, at=T0 + timedelta(seconds=1), seed=2)
    row = SandboxOrder.objects.get(pk=bad.pk)
    row.payload["created_at"] = "0001-01-01T00:00:00-05:00"
    row.save()

    page = connector.fetch_orders(updated_since=T0, updated_until=T0 + timedelta(hours=1))

    assert [order.platform_order_id for order in page.orders] == [good.order_id]
    (unmapped,) = page.unmapped
    assert unmapped.platform_order_id == bad.order_id and "0001-01-01" in unmapped.message


@pytest.mark.parametrize(
    ("changes", "status"),
    [
        ({"fulfillment_status": "partial"}, "new"),  # the rest is still to ship
        ({"fulfillment_status": "fulfilled"}, "shipped"),
        (
            {
                "fulfillment_status": "fulfilled",
                "fulfillments": [{"status": "success", "shipment_status": "delivered"}],
            },
            "delivered",
        ),
        (
            {"cancelled_at": "2025-03-10T12:00:00-04:00", "financial_status": "refunded"},
            "cancelled",
        ),
        ({"financial_status": "voided"}, "cancelled"),
        ({"financial_status": "pending"}, "new"),
    ],
)
def test_status_mapping(connector, sandbox, store, changes, status):
    sandbox.load_order(store=store, payload={**SHOPIFY_ORDER, "tags": "", **changes})

    [order] = connector.fetch_orders_by_id(platform_order_ids=["5600000009001"])

    assert order.status == status


def test_buyer_cancel_request_shows_on_the_next_sync(connector, sandbox, store):
    order = add_order(sandbox, store, at=T0, seed=7)
    [before] = connector.fetch_orders_by_id(platform_order_ids=[order.order_id])
    assert before.cancel_requested is False

    sandbox.request_cancellation(store=store, order=order)

    [after] = connector.fetch_orders_by_id(platform_order_ids=[order.order_id])
    assert after.cancel_requested is True
    assert before.updated_at < after.cancel_requested_at <= after.updated_at
    assert after.updated_at > before.updated_at
    assert "Buyer asked to cancel" in after.buyer_note


def test_load_order_names_the_bad_field(sandbox, store):
    payload = json.loads(json.dumps(SHOPIFY_ORDER))
    payload["line_items"][1]["quantity"] = 0
    with pytest.raises(SandboxInputError, match=r"line_items\[1\]\.quantity"):
        sandbox.load_order(store=store, payload=payload)


# --- fulfilment -------------------------------------------------------------------------------


def test_ship_whole_order_with_tracking(connector, sandbox, store):
    order = add_order(sandbox, store, at=T0, seed=3)

    result = connector.ship(
        request=ShipRequest(
            platform_order_id=order.order_id,
            tracking_number="9400111899223197428490",
            carrier_code="usps",
        )
    )

    [shipment] = sandbox.show(store=store, what="shipments")
    assert str(shipment["id"]) == result.platform_package_id
    assert shipment["tracking_number"] == "9400111899223197428490"
    assert shipment["tracking_company"] == "USPS"
    assert "9400111899223197428490" in shipment["tracking_url"]
    [shown] = sandbox.show(store=store, what="orders")
    assert shown["fulfillment_status"] == "fulfilled"
    [synced] = connector.fetch_orders_by_id(platform_order_ids=[order.order_id])
    assert synced.status == "shipped"

    connector.update_tracking(
        request=ShipRequest(
            platform_order_id=order.order_id,
            tracking_number="1Z999AA10123456784",
            carrier_code="ups",
            platform_package_id=result.platform_package_id,
        )
    )

    [shipment] = sandbox.show(store=store, what="shipments")
    assert (shipment["tracking_number"], shipment["tracking_company"]) == (
        "1Z999AA10123456784",
        "UPS",
    )


def test_partial_ship_by_line_quantities(connector, sandbox, store):
    payload = json.loads(json.dumps(SHOPIFY_ORDER))
    sandbox.load_order(store=store, payload=payload)
    serum, mask = "13900000009101", "13900000009102"

    connector.ship(
        request=ShipRequest(
            platform_order_id="5600000009001",
            tracking_number="9400111899223197428491",
            carrier_code="usps",
            line_quantities={serum: 1},
        )
    )

    [shown] = sandbox.show(store=store, what="orders")
    assert shown["fulfillment_status"] == "partial"
    remaining = {str(line["id"]): line["fulfillable_quantity"] for line in shown["line_items"]}
    assert remaining == {serum: 1, mask: 1}
    [synced] = connector.fetch_orders_by_id(platform_order_ids=["5600000009001"])
    assert synced.status == "new"  # open: the rest is still to ship
    assert synced.platform_status == "paid/partial"

    with pytest.raises(PlatformRequestError, match=serum):
        connector.ship(
            request=ShipRequest(
                platform_order_id="5600000009001",
                tracking_number="9400111899223197428492",
                carrier_code="usps",
                line_quantities={serum: 2},
            )
        )

    connector.ship(
        request=ShipRequest(
            platform_order_id="5600000009001",
            tracking_number="9400111899223197428493",
            carrier_code="usps",
        )
    )

    [shown] = sandbox.show(store=store, what="orders")
    assert shown["fulfillment_status"] == "fulfilled"
    assert len(sandbox.show(store=store, what="shipments")) == 2


# --- inventory --------------------------------------------------------------------------------


def test_set_and_get_inventory_roundtrip_with_a_per_item_error(connector, store):
    products = list(SandboxProduct.objects.filter(store=store).order_by("pk"))
    updates = [
        InventoryUpdate(platform_sku_id=products[0].sku_id, quantity=17),
        InventoryUpdate(platform_sku_id="999000111", quantity=5),
        InventoryUpdate(platform_sku_id=products[1].sku_id, quantity=0),
    ]

    results = connector.set_inventory(updates=updates)

    assert [(r.platform_sku_id, r.ok) for r in results] == [
        (products[0].sku_id, True),
        ("999000111", False),
        (products[1].sku_id, True),
    ]
    assert results[1].error and results[1].code == "404"
    levels = connector.get_inventory(platform_sku_ids=[p.sku_id for p in products])
    assert {level.platform_sku_id: level.quantity for level in levels} == {
        products[0].sku_id: 17,
        products[1].sku_id: 0,
        products[2].sku_id: 0,
    }


def test_set_inventory_at_a_location_not_stocked_fails_per_item(connector, store):
    product = SandboxProduct.objects.filter(store=store).first()

    [result] = connector.set_inventory(
        updates=[InventoryUpdate(platform_sku_id=product.sku_id, quantity=3, location_id="42")]
    )

    assert result.ok is False and "not stocked" in result.error
    product.refresh_from_db()
    assert product.quantity == 0


# --- cancellation -----------------------------------------------------------------------------


def test_approving_a_cancellation_cancels_the_order(connector, sandbox, store):
    order = add_order(sandbox, store, at=T0, seed=9)
    sandbox.request_cancellation(store=store, order=order)

    connector.answer_cancellation(
        cancel_id=order.order_id, platform_order_id=order.order_id, approve=True
    )

    [synced] = connector.fetch_orders_by_id(platform_order_ids=[order.order_id])
    assert synced.status == "cancelled" and synced.cancel_requested is False
    cancellation = SandboxCancellation.objects.get(store=store, cancel_id=order.order_id)
    assert (cancellation.status, cancellation.decision) == ("approved", "approve")


def test_rejecting_is_refused_with_an_explanation(connector, sandbox, store):
    order = add_order(sandbox, store, at=T0, seed=9)
    with pytest.raises(PlatformRequestError, match="no cancellation requests"):
        connector.answer_cancellation(
            cancel_id=order.order_id, platform_order_id=order.order_id, approve=False
        )


# --- errors, limits, retries ------------------------------------------------------------------


def test_bad_token_is_an_auth_error_and_not_retried(shop, store, sleeps):
    ShopCredentials._base_manager.filter(shop=shop).update(access_token="shpat_wrong")
    connector = connector_for(shop, sleep=sleeps.append, backoff_base=0.01)

    with pytest.raises(PlatformAuthError, match="Invalid API key or access token"):
        connector.fetch_orders(updated_since=T0)
    assert connector.http.last_attempts == 1


def test_429_waits_at_least_retry_after_then_succeeds(connector, sandbox, store, sleeps):
    add_order(sandbox, store, at=T0, seed=1)
    SandboxStore.objects.filter(pk=store.pk).update(fault_rate=1.0, fault_kinds=["429"])

    def recover(delay: float) -> None:
        sleeps.append(delay)
        SandboxStore.objects.filter(pk=store.pk).update(fault_rate=0.0)

    connector.http.sleep = recover

    page = connector.fetch_orders(updated_since=T0 - timedelta(minutes=1))

    assert len(page.orders) == 1
    assert connector.http.last_attempts == 2
    assert connector.http.last_delays[0] >= 2.0  # Retry-After: 2.0
    assert sleeps and sleeps[-1] >= 2.0


def test_the_leaky_bucket_throttles_with_shopify_headers(store):
    SandboxStore.objects.filter(pk=store.pk).update(rate_burst=2, rate_per_second=0.001)
    client = httpx.Client(transport=sandbox_transport())
    headers = {"X-Shopify-Access-Token": store.access_token}
    params = {"status": "any", "limit": 1}

    answers = [client.get(f"{API}/orders.json", params=params, headers=headers) for _ in range(3)]

    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[1].headers["X-Shopify-Shop-Api-Call-Limit"] == "2/2"
    assert answers[2].headers["Retry-After"] == "2.0"
    assert "Exceeded" in answers[2].json()["errors"]


def test_5xx_is_retried(connector, sandbox, store, sleeps):
    add_order(sandbox, store, at=T0, seed=1)
    SandboxStore.objects.filter(pk=store.pk).update(fault_rate=1.0, fault_kinds=["503"])

    def recover(delay: float) -> None:
        sleeps.append(delay)
        SandboxStore.objects.filter(pk=store.pk).update(fault_rate=0.0)

    connector.http.sleep = recover

    page = connector.fetch_orders(updated_since=T0 - timedelta(minutes=1))

    assert len(page.orders) == 1
    assert connector.http.last_attempts == 2


# --- webhooks ---------------------------------------------------------------------------------

WEBHOOK_BODY = b'{"id":820982911946154508,"email":"jon@example.com","total_price":"19.99"}'
WEBHOOK_SECRET = "hush-webhook-secret"
# Computed outside Python: printf '%s' BODY | openssl dgst -sha256 -hmac SECRET -binary | base64
WEBHOOK_HMAC = "//ZV6Owf7d8K9ZmvvUIKPa8bR8VRcOhGOmF9bqEebmA="


def test_webhook_hmac_known_vector():
    computed = base64.b64encode(
        hmac.new(WEBHOOK_SECRET.encode(), WEBHOOK_BODY, hashlib.sha256).digest()
    ).decode()
    assert computed == WEBHOOK_HMAC
    credentials = ShopCredentials(webhook_secret=WEBHOOK_SECRET)
    headers = {"x-shopify-hmac-sha256": WEBHOOK_HMAC}

    assert ShopifyConnector.verify_webhook(
        headers=headers, body=WEBHOOK_BODY, credentials=credentials
    )
    tampered = WEBHOOK_BODY.replace(b"19.99", b"1.99")
    assert not ShopifyConnector.verify_webhook(
        headers=headers, body=tampered, credentials=credentials
    )
    assert not ShopifyConnector.verify_webhook(
        headers={}, body=WEBHOOK_BODY, credentials=credentials
    )
    assert not ShopifyConnector.verify_webhook(
        headers=headers,
        body=WEBHOOK_BODY,
        credentials=ShopCredentials(webhook_secret="another-secret"),
    )


def test_sandbox_webhook_is_signed_and_parsed(shop, sandbox, store, monkeypatch):
    received: list[httpx.Request] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        received.append(request)
        return httpx.Response(200)

    monkeypatch.setattr("sandbox.shopify.sandbox_transport", lambda: httpx.MockTransport(receiver))
    order = add_order(sandbox, store, at=T0, seed=2)

    status = sandbox.send_webhook(store=store, topic="orders/updated", data=order.payload)

    assert status == 200
    [request] = received
    credentials = ShopCredentials._base_manager.get(shop=shop)
    assert ShopifyConnector.verify_webhook(
        headers=request.headers, body=request.content, credentials=credentials
    )
    event = ShopifyConnector.parse_webhook(headers=request.headers, body=request.content)
    assert event.topic == "orders/updated"
    assert event.platform_order_ids == [order.order_id]
    assert event.shop_key == store.shop_key
    webhook = SandboxWebhook.objects.get(store=store)
    assert event.delivery_id == webhook.delivery_id and webhook.response_status == 200
