"""The Amazon SP-API connector against the Amazon sandbox, over real (in-process) HTTP.

Nothing is mocked: the connector sends through the shared client to /sandbox/amazon/, which
checks LWA tokens, pages, throttles and records like SP-API. Retry tests pass `sleep=` to
record the waits instead of sleeping.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from django.utils import timezone

from sandbox.amazon import AmazonSandbox
from sandbox.base import SandboxInputError, reset_rate_limits
from sandbox.connect import sandbox_connect
from sandbox.models import SandboxOrder, SandboxProduct, SandboxShipment, SandboxStore
from shops.models import ShopCredentials
from shops.platforms import connector_for
from shops.platforms.amazon import AmazonConnector, amazon_datetime
from shops.platforms.base import (
    InventoryUpdate,
    PlatformAuthError,
    PlatformNotFound,
    PlatformRequestError,
    PlatformResponseError,
    PlatformTokenExpired,
    ShipRequest,
    WebhookVerificationError,
)
from shops.platforms.http import sandbox_transport
from tests.factories import ListingFactory, ShopFactory, SkuFactory

pytestmark = pytest.mark.django_db

HOST = "http://sandbox.tkerp.internal"
BASE = "/sandbox/amazon"
US = "ATVPDKIKX0DER"
sandbox = AmazonSandbox()


@pytest.fixture(autouse=True)
def fresh_sandbox_buckets():
    reset_rate_limits()
    yield
    reset_rate_limits()


def amazon_shop(tenant, name="Amazon US", suffix="US"):
    shop = ShopFactory(tenant=tenant, platform="amazon", name=name, platform_shop_id="")
    for code, price in (("MUG-RED", "6.00"), ("MUG-BLUE", "6.00"), ("TEE-L", "4.00")):
        sku = SkuFactory(tenant=tenant, code=f"{code}-{suffix}", cost=Decimal(price))
        ListingFactory(tenant=tenant, shop=shop, sku=sku)
    return shop


def connect_store(shop) -> SandboxStore:
    """Connect `shop` to the sandbox with Amazon's limits scaled up 1000x on both sides."""
    store = sandbox_connect(shop=shop, rate_per_second=1000)
    credentials = ShopCredentials._base_manager.get(shop=shop)
    credentials.extra = {**credentials.extra, "rate_scale": 1000}
    credentials.save()
    return store


@pytest.fixture
def shop(tenant_a):
    return amazon_shop(tenant_a)


@pytest.fixture
def store(shop):
    return connect_store(shop)


@pytest.fixture
def recorded():
    return []


@pytest.fixture
def connector(shop, store, recorded) -> AmazonConnector:
    return connector_for(shop, sleep=recorded.append, backoff_base=0.001)


def add_orders(store, count, *, start, step=timedelta(seconds=20), seed=7) -> list[dict]:
    rng = random.Random(seed)
    products = list(store.products.order_by("pk"))
    payloads = []
    for number in range(count):
        payload = sandbox.generate_order(
            store=store, rng=rng, products=products, now=start + number * step
        )
        sandbox.load_order(store=store, payload=payload)
        payloads.append(payload)
    return payloads


def money(amount: str) -> dict:
    return {"CurrencyCode": "USD", "Amount": amount}


def amazon_order(order_id: str, *, updated: datetime, status="Unshipped", items=None, **extra):
    """A hand-written order in the sandbox's stored shape (getOrder payload + OrderItems)."""
    order = {
        "AmazonOrderId": order_id,
        "PurchaseDate": amazon_datetime(updated - timedelta(minutes=30)),
        "LastUpdateDate": amazon_datetime(updated),
        "OrderStatus": status,
        "FulfillmentChannel": "MFN",
        "MarketplaceId": US,
        "OrderTotal": money("10.00"),
        "LatestShipDate": amazon_datetime(updated + timedelta(days=2)),
        "IsPrime": False,
        "IsBusinessOrder": False,
        "ShippingAddress": {
            "Name": "Ava Nguyen",
            "AddressLine1": "1200 Pine St",
            "City": "Seattle",
            "StateOrRegion": "WA",
            "PostalCode": "98101",
            "CountryCode": "US",
            "Phone": "+12065550123",
        },
        "OrderItems": items
        or [
            {
                "OrderItemId": f"{order_id[-7:]}0001",
                "ASIN": "B0TESTASIN",
                "SellerSKU": "MUG-RED-US",
                "Title": "Red mug",
                "QuantityOrdered": 1,
                "QuantityShipped": 0,
                "ItemPrice": money("10.00"),
            }
        ],
    }
    order.update(extra)
    return order


def api(store, path, *, method="GET", token=None, **params) -> httpx.Response:
    """A raw SP-API call over the same in-process HTTP (protocol-level assertions)."""
    token = store.access_token if token is None else token
    with httpx.Client(transport=sandbox_transport()) as client:
        return client.request(
            method, f"{HOST}{BASE}{path}", params=params, headers={"x-amz-access-token": token}
        )


def lwa(**form) -> httpx.Response:
    with httpx.Client(transport=sandbox_transport()) as client:
        return client.post(f"{HOST}{BASE}/auth/o2/token", data=form)


# --- LWA tokens ---------------------------------------------------------------------------------


def test_expired_access_token_is_refreshed_before_the_call_and_persisted(shop, store, connector):
    credentials = ShopCredentials._base_manager.get(shop=shop)
    old_token = credentials.access_token
    credentials.access_token_expires_at = timezone.now() - timedelta(minutes=1)
    credentials.save()
    connector.credentials.access_token_expires_at = credentials.access_token_expires_at

    page = connector.fetch_orders(updated_since=timezone.now() - timedelta(days=1))

    assert page.orders == []
    credentials.refresh_from_db()
    store.refresh_from_db()
    assert credentials.access_token != old_token
    assert credentials.access_token.startswith("Atza|")
    assert credentials.access_token == store.access_token == connector.credentials.access_token
    assert credentials.access_token_expires_at > timezone.now() + timedelta(minutes=55)
    assert credentials.refresh_token == store.refresh_token


def test_token_the_api_calls_expired_is_refreshed_once_and_the_call_retried(shop, store, connector):
    """Our clock says the token is fine; Amazon's says it expired (403): refresh, retry."""
    old_token = connector.credentials.access_token
    SandboxStore.objects.filter(pk=store.pk).update(
        access_token_expires_at=timezone.now() - timedelta(seconds=5)
    )
    raw = api(
        store, "/orders/v0/orders", MarketplaceIds=US, LastUpdatedAfter="2024-01-01T00:00:00Z"
    )
    assert raw.status_code == 403
    assert raw.json()["errors"][0] == {
        "code": "Unauthorized",
        "message": "Access to requested resource is denied.",
        "details": "The access token you provided has expired.",
    }

    page = connector.fetch_orders(updated_since=timezone.now() - timedelta(days=1))

    assert page.orders == []
    credentials = ShopCredentials._base_manager.get(shop=shop)
    assert credentials.access_token != old_token
    assert credentials.access_token == connector.credentials.access_token


def test_revoked_refresh_token_is_an_auth_error(shop, store, connector):
    SandboxStore.objects.filter(pk=store.pk).update(refresh_token="Atzr|revoked")
    connector.credentials.access_token_expires_at = timezone.now() - timedelta(seconds=1)

    with pytest.raises(PlatformAuthError) as caught:
        connector.fetch_orders(updated_since=timezone.now() - timedelta(days=1))

    assert caught.value.code == "invalid_grant"
    assert caught.value.status == 400


def test_token_refused_again_after_refresh_is_a_plain_auth_error(shop, store, connector):
    SandboxStore.objects.filter(pk=store.pk).update(fault_rate=1.0, fault_kinds=["badsign"])

    with pytest.raises(PlatformAuthError) as caught:
        connector.fetch_orders(updated_since=timezone.now() - timedelta(days=1))

    assert not isinstance(caught.value, PlatformTokenExpired)  # nobody loops on refreshing
    assert caught.value.code == "Unauthorized"
    assert "revoked, malformed or invalid" in caught.value.message


def test_lwa_endpoint_checks_client_and_refresh_token(store):
    form = {
        "grant_type": "refresh_token",
        "client_id": store.app_key,
        "client_secret": store.app_secret,
        "refresh_token": store.refresh_token,
    }
    ok = lwa(**form)
    assert ok.status_code == 200
    assert ok.json()["expires_in"] == 3600
    assert ok.json()["token_type"] == "bearer"
    second = lwa(**form)
    assert second.json()["access_token"] != ok.json()["access_token"]  # rotated
    # Earlier tokens stay valid until they expire, as with LWA.
    assert (
        api(
            store, "/orders/v0/orders/112-0000000-0000000", token=ok.json()["access_token"]
        ).status_code
        == 404
    )

    bad_client = lwa(**{**form, "client_secret": "nope"})
    assert bad_client.status_code == 401
    assert bad_client.json()["error"] == "invalid_client"
    bad_grant = lwa(**{**form, "refresh_token": "Atzr|nope"})
    assert bad_grant.status_code == 400
    assert bad_grant.json()["error"] == "invalid_grant"


# --- getOrders ----------------------------------------------------------------------------------


def test_fetch_orders_pages_to_the_end_with_items(store, connector):
    start = timezone.now() - timedelta(hours=3)
    payloads = add_orders(store, 230, start=start)

    pages, token = [], None
    while True:
        page = connector.fetch_orders(updated_since=start, page_token=token)
        pages.append(page.orders)
        token = page.next_page_token
        if token is None:
            break

    assert [len(orders) for orders in pages] == [100, 100, 30]
    fetched = [order for orders in pages for order in orders]
    assert [o.platform_order_id for o in fetched] == [p["AmazonOrderId"] for p in payloads]
    assert [o.updated_at for o in fetched] == sorted(o.updated_at for o in fetched)
    by_id = {p["AmazonOrderId"]: p for p in payloads}
    for order in fetched:
        items = by_id[order.platform_order_id]["OrderItems"]
        assert [line.platform_line_id for line in order.lines] == [i["OrderItemId"] for i in items]
        assert [line.quantity for line in order.lines] == [i["QuantityOrdered"] for i in items]
        assert order.total == Decimal(by_id[order.platform_order_id]["OrderTotal"]["Amount"])
        assert order.total == order.subtotal + order.shipping_fee + order.tax


def test_a_malformed_order_is_left_out_by_id_and_the_rest_is_mapped(store, connector):
    start = timezone.now() - timedelta(hours=1)
    good, bad, last = add_orders(store, 3, start=start)
    row = SandboxOrder.objects.get(store=store, order_id=bad["AmazonOrderId"])
    row.payload["OrderTotal"]["Amount"] = "12,50"
    row.save()

    page = connector.fetch_orders(updated_since=start - timedelta(seconds=1))

    ids = [order.platform_order_id for order in page.orders]
    assert ids == [good["AmazonOrderId"], last["AmazonOrderId"]]
    (unmapped,) = page.unmapped
    assert (unmapped.platform_order_id, unmapped.field) == (bad["AmazonOrderId"], "OrderTotal")
    assert "12,50" in unmapped.message
    rejects = []
    wanted = [good["AmazonOrderId"], bad["AmazonOrderId"]]
    found = connector.fetch_orders_by_id(platform_order_ids=wanted, unmapped=rejects)
    assert [order.platform_order_id for order in found] == [good["AmazonOrderId"]]
    assert [reject.platform_order_id for reject in rejects] == [bad["AmazonOrderId"]]
    with pytest.raises(PlatformResponseError, match=bad["AmazonOrderId"]):
        connector.fetch_orders_by_id(platform_order_ids=wanted)


def test_order_items_are_followed_through_their_next_token(store, connector):
    updated = timezone.now() - timedelta(hours=1)
    items = [
        {
            "OrderItemId": f"{n:014d}",
            "ASIN": "B0ITEM",
            "SellerSKU": f"SKU-{n}",
            "QuantityOrdered": 1,
            "ItemPrice": money("1.00"),
        }
        for n in range(23)
    ]
    sandbox.load_order(
        store=store, payload=amazon_order("112-1111111-2222222", updated=updated, items=items)
    )
    first = api(store, "/orders/v0/orders/112-1111111-2222222/orderItems").json()["payload"]
    assert len(first["OrderItems"]) == 10 and first["NextToken"]

    (order,) = connector.fetch_orders_by_id(platform_order_ids=["112-1111111-2222222"])

    assert [line.seller_sku for line in order.lines] == [f"SKU-{n}" for n in range(23)]
    assert order.subtotal == Decimal("23.00")


def test_last_updated_window_is_inclusive_and_stops_two_minutes_ago(store, connector):
    now = timezone.now().replace(microsecond=0)
    times = {
        "112-0000001-0000001": now - timedelta(hours=3),
        "112-0000002-0000002": now - timedelta(hours=2),
        "112-0000003-0000003": now - timedelta(hours=1),
        "112-0000004-0000004": now - timedelta(seconds=30),  # not settled yet
    }
    for order_id, updated in times.items():
        sandbox.load_order(store=store, payload=amazon_order(order_id, updated=updated))

    window = connector.fetch_orders(
        updated_since=now - timedelta(hours=2), updated_until=now - timedelta(hours=1)
    )
    open_ended = connector.fetch_orders(updated_since=now - timedelta(hours=4))
    asked_for_now = connector.fetch_orders(
        updated_since=now - timedelta(hours=4), updated_until=timezone.now()
    )

    assert [o.platform_order_id for o in window.orders] == [
        "112-0000002-0000002",
        "112-0000003-0000003",
    ]
    assert [o.platform_order_id for o in open_ended.orders] == list(times)[:3]
    assert [o.platform_order_id for o in asked_for_now.orders] == list(times)[:3]


def test_a_window_inside_the_last_two_minutes_asks_nothing(shop, store):
    fresh = connector_for(shop)
    page = fresh.fetch_orders(updated_since=timezone.now() - timedelta(seconds=60))
    assert page.orders == [] and page.next_page_token is None
    assert fresh.http.last_attempts == 0


def test_sandbox_get_orders_refuses_what_amazon_refuses(store):
    settled = amazon_datetime(timezone.now() - timedelta(minutes=5))
    hour_ago = amazon_datetime(timezone.now() - timedelta(hours=1))

    cases = {
        "no marketplace": {"LastUpdatedAfter": hour_ago},
        "no date": {"MarketplaceIds": US},
        "mixed families": {
            "MarketplaceIds": US,
            "CreatedAfter": hour_ago,
            "LastUpdatedBefore": settled,
        },
        "before too recent": {
            "MarketplaceIds": US,
            "LastUpdatedAfter": hour_ago,
            "LastUpdatedBefore": amazon_datetime(timezone.now()),
        },
        "page too big": {
            "MarketplaceIds": US,
            "LastUpdatedAfter": hour_ago,
            "MaxResultsPerPage": "101",
        },
        "token with dates": {"MarketplaceIds": US, "NextToken": "x", "LastUpdatedAfter": hour_ago},
        "forged token": {"MarketplaceIds": US, "NextToken": "forged"},
    }
    for name, params in cases.items():
        response = api(store, "/orders/v0/orders", **params)
        assert response.status_code == 400, name
        assert response.json()["errors"][0]["code"] == "InvalidInput", name

    ok = api(store, "/orders/v0/orders", MarketplaceIds=US, CreatedAfter=hour_ago)
    assert ok.status_code == 200
    assert ok.json()["payload"]["Orders"] == []
    assert ok.headers["x-amzn-RateLimit-Limit"] == "16.7"  # 0.0167/s x the store's scale of 1000
    assert ok.headers["x-amzn-RequestId"]
    missing_token = api(
        store, "/orders/v0/orders", token="", MarketplaceIds=US, CreatedAfter=hour_ago
    )
    assert missing_token.status_code == 403
    assert missing_token.json()["errors"][0]["code"] == "Unauthorized"


def test_sandbox_throttles_per_operation_with_amazon_headers(store):
    # Scale 0.01: getOrders becomes 0.000167/s with a burst of one.
    SandboxStore.objects.filter(pk=store.pk).update(rate_per_second=0.01)
    hour_ago = amazon_datetime(timezone.now() - timedelta(hours=1))

    first = api(store, "/orders/v0/orders", MarketplaceIds=US, LastUpdatedAfter=hour_ago)
    second = api(store, "/orders/v0/orders", MarketplaceIds=US, LastUpdatedAfter=hour_ago)
    other_operation = api(store, "/orders/v0/orders/112-0000000-0000000")

    assert first.status_code == 200
    assert second.status_code == 429
    assert second.json()["errors"][0]["code"] == "QuotaExceeded"
    assert second.headers["x-amzn-RateLimit-Limit"] == "0.000167"
    assert int(second.headers["Retry-After"]) >= 5000
    assert other_operation.status_code == 404  # getOrder has its own bucket


# --- mapping ------------------------------------------------------------------------------------


def test_mapping_money_address_lines_ship_by_and_buyer(store, connector):
    updated = datetime(2026, 3, 2, 15, 4, 5, tzinfo=UTC)
    items = [
        {
            "OrderItemId": "68828574383266",
            "ASIN": "B071VG5N9D",
            "SellerSKU": "MUG-RED-US",
            "Title": "Red mug",
            "QuantityOrdered": 2,
            "QuantityShipped": 0,
            "ItemPrice": money("24.00"),
            "ItemTax": money("1.98"),
            "ShippingPrice": money("4.99"),
            "ShippingTax": money("0.41"),
            "PromotionDiscount": money("2.40"),
            "BuyerRequestedCancel": {"IsBuyerRequestedCancel": "false", "BuyerCancelReason": ""},
        },
        {
            "OrderItemId": "68828574383267",
            "ASIN": "B071VG5N9E",
            "SellerSKU": "TEE-L-US",
            "Title": "Tee, large",
            "QuantityOrdered": 1,
            "QuantityShipped": 0,
            "ItemPrice": money("12.00"),
            "ItemTax": money("0.99"),
            "ShippingPrice": money("0.00"),
            "ShippingDiscount": money("0.00"),
            "PromotionDiscount": money("0.00"),
        },
    ]
    payload = amazon_order(
        "113-7654321-1234567",
        updated=updated,
        items=items,
        OrderTotal=money("41.97"),
        LatestShipDate="2026-03-04T06:59:59Z",
        IsPrime=True,
        BuyerInfo={"BuyerEmail": "abc123@marketplace.amazon.com", "BuyerName": "Ava N."},
        ShippingAddress={
            "Name": "Ava Nguyen",
            "AddressLine1": "1200 Pine St",
            "AddressLine2": "Apt 14",
            "City": "Seattle",
            "StateOrRegion": "WA",
            "PostalCode": "98101",
            "CountryCode": "US",
            "Phone": "+12065550123",
        },
    )
    sandbox.load_order(store=store, payload=payload)

    (order,) = connector.fetch_orders_by_id(platform_order_ids=["113-7654321-1234567"])

    assert order.platform_status == "Unshipped" and order.status == "new"
    assert order.updated_at == updated
    assert order.placed_at == order.paid_at == updated - timedelta(minutes=30)
    assert order.ship_by == datetime(2026, 3, 4, 6, 59, 59, tzinfo=UTC)
    assert (order.subtotal, order.shipping_fee, order.tax, order.seller_discount) == (
        Decimal("33.60"),
        Decimal("4.99"),
        Decimal("3.38"),
        Decimal("2.40"),
    )
    assert order.total == Decimal("41.97") == order.subtotal + order.shipping_fee + order.tax
    assert order.currency == "USD"
    assert (order.buyer_name, order.buyer_email) == ("Ava N.", "abc123@marketplace.amazon.com")
    address = order.address
    assert (address.name, address.line1, address.line2, address.city, address.state) == (
        "Ava Nguyen",
        "1200 Pine St",
        "Apt 14",
        "Seattle",
        "WA",
    )
    assert (address.postal_code, address.country, address.phone) == ("98101", "US", "+12065550123")
    assert address.masked is False
    mug, tee = order.lines
    assert (mug.platform_line_id, mug.seller_sku, mug.platform_sku_id) == (
        "68828574383266",
        "MUG-RED-US",
        "MUG-RED-US",
    )
    assert (mug.quantity, mug.unit_price, mug.discount, mug.tax, mug.total) == (
        2,
        Decimal("12.00"),
        Decimal("2.40"),
        Decimal("1.98"),
        Decimal("21.60"),
    )
    assert (tee.quantity, tee.unit_price, tee.total) == (1, Decimal("12.00"), Decimal("12.00"))
    assert order.cancel_requested is False
    assert order.raw["IsPrime"] is True and order.raw["OrderItems"][0]["ASIN"] == "B071VG5N9D"


def test_buyer_cancel_request_maps_to_cancel_requested(store, connector):
    (payload,) = add_orders(store, 1, start=timezone.now() - timedelta(hours=1))
    row = SandboxOrder.objects.get(store=store, order_id=payload["AmazonOrderId"])

    sandbox.request_cancellation(store=store, order=row)

    (order,) = connector.fetch_orders_by_id(platform_order_ids=[row.order_id])
    assert order.cancel_requested is True
    assert order.status == "new"  # still the seller's to cancel or ship
    (request,) = sandbox.show(store=store, what="cancellations")
    assert request["AmazonOrderId"] == row.order_id
    assert request["BuyerCancelReason"]
    assert all(
        item["BuyerRequestedCancel"]["IsBuyerRequestedCancel"] == "true"
        for item in order.raw["OrderItems"]
    )
    assert order.updated_at > datetime.fromisoformat(payload["LastUpdateDate"])


@pytest.mark.parametrize(
    ("amazon_status", "extra", "status", "paid", "address", "note"),
    [
        ("Pending", {}, "new", False, "none", ""),
        ("PendingAvailability", {"OrderType": "Preorder"}, "new", False, "none", ""),
        ("PartiallyShipped", {}, "new", True, "full", ""),  # the rest is still to ship
        ("Shipped", {}, "shipped", True, "full", ""),
        ("Canceled", {}, "cancelled", True, "none", ""),
        ("Unfulfillable", {"FulfillmentChannel": "AFN"}, "new", True, "none", "Unfulfillable"),
        (
            "Shipped",
            {"FulfillmentChannel": "AFN"},
            "shipped",
            True,
            "masked",
            "Fulfilled by Amazon",
        ),
    ],
)
def test_status_mapping(store, connector, amazon_status, extra, status, paid, address, note):
    updated = timezone.now() - timedelta(hours=1)
    sandbox.load_order(
        store=store,
        payload=amazon_order("114-0000009-0000009", updated=updated, status=amazon_status, **extra),
    )

    (order,) = connector.fetch_orders_by_id(platform_order_ids=["114-0000009-0000009"])

    assert (order.platform_status, order.status) == (amazon_status, status)
    assert (order.paid_at is not None) is paid
    if address == "none":
        assert order.address is None  # Amazon shows no address in this status
    else:
        assert order.address.masked is (address == "masked")
        assert order.address.city == "Seattle"
    assert note in order.seller_note
    assert order.is_presale is (amazon_status == "PendingAvailability")
    assert all(line.is_cancelled for line in order.lines) is (amazon_status == "Canceled")
    if amazon_status == "Pending":
        assert order.subtotal == Decimal("0")  # items come without prices until paid


def test_address_without_restricted_fields_is_masked(store, connector):
    payload = amazon_order(
        "111-2222222-3333333",
        updated=timezone.now() - timedelta(hours=1),
        ShippingAddress={
            "City": "Austin",
            "StateOrRegion": "TX",
            "PostalCode": "78701",
            "CountryCode": "US",
        },
    )
    sandbox.load_order(store=store, payload=payload)

    (order,) = connector.fetch_orders_by_id(platform_order_ids=["111-2222222-3333333"])

    assert order.address.masked is True
    assert (order.address.city, order.address.postal_code, order.address.name) == (
        "Austin",
        "78701",
        "",
    )


def test_missing_orders_are_left_out(store, connector):
    (payload,) = add_orders(store, 1, start=timezone.now() - timedelta(hours=1))
    orders = connector.fetch_orders_by_id(
        platform_order_ids=["112-9999999-9999999", payload["AmazonOrderId"]]
    )
    assert [o.platform_order_id for o in orders] == [payload["AmazonOrderId"]]


# --- shipment confirmation ----------------------------------------------------------------------


def two_item_order(store, order_id="112-3000000-0000001"):
    items = [
        {
            "OrderItemId": "50000000000001",
            "ASIN": "B0A",
            "SellerSKU": "MUG-RED-US",
            "QuantityOrdered": 2,
            "QuantityShipped": 0,
            "ItemPrice": money("12.00"),
        },
        {
            "OrderItemId": "50000000000002",
            "ASIN": "B0B",
            "SellerSKU": "TEE-L-US",
            "QuantityOrdered": 1,
            "QuantityShipped": 0,
            "ItemPrice": money("4.00"),
        },
    ]
    sandbox.load_order(
        store=store,
        payload=amazon_order(order_id, updated=timezone.now() - timedelta(hours=1), items=items),
    )
    return order_id


def test_ship_whole_order_is_recorded_and_the_order_shipped(store, connector):
    order_id = two_item_order(store)
    shipped_at = datetime(2026, 3, 3, 18, 0, tzinfo=UTC)

    result = connector.ship(
        request=ShipRequest(
            platform_order_id=order_id,
            tracking_number="9400111899223197428490",
            carrier_code="usps",
            shipped_at=shipped_at,
        )
    )

    (shipment,) = sandbox.show(store=store, what="shipments")
    assert shipment["AmazonOrderId"] == order_id
    assert shipment["marketplaceId"] == US
    detail = shipment["packageDetail"]
    assert detail["packageReferenceId"] == result.platform_package_id
    assert detail["packageReferenceId"].isdigit()
    assert (detail["carrierCode"], detail["trackingNumber"], detail["shipDate"]) == (
        "USPS",
        "9400111899223197428490",
        "2026-03-03T18:00:00Z",
    )
    assert detail["orderItems"] == [
        {"orderItemId": "50000000000001", "quantity": 2},
        {"orderItemId": "50000000000002", "quantity": 1},
    ]
    (shown,) = sandbox.show(store=store, what="orders")
    assert shown["OrderStatus"] == "Shipped"
    assert shown["NumberOfItemsShipped"] == 3 and shown["NumberOfItemsUnshipped"] == 0
    assert [item["QuantityShipped"] for item in shown["OrderItems"]] == [2, 1]

    # Sent again (a retry after a lost answer): nothing new is recorded, nothing fails.
    again = connector.ship(
        request=ShipRequest(
            platform_order_id=order_id,
            tracking_number="9400111899223197428490",
            carrier_code="usps",
            shipped_at=shipped_at,
        )
    )
    assert again.warnings
    assert SandboxShipment.objects.filter(store=store).count() == 1


def test_partial_shipment_moves_the_order_to_partially_shipped(store, connector):
    order_id = two_item_order(store)

    connector.ship(
        request=ShipRequest(
            platform_order_id=order_id,
            tracking_number="1Z999AA10123456784",
            carrier_code="ups",
            line_quantities={"50000000000001": 1},
        )
    )

    (shown,) = sandbox.show(store=store, what="orders")
    assert shown["OrderStatus"] == "PartiallyShipped"
    assert [item["QuantityShipped"] for item in shown["OrderItems"]] == [1, 0]
    (order,) = connector.fetch_orders_by_id(platform_order_ids=[order_id])
    assert (order.platform_status, order.status) == ("PartiallyShipped", "new")


def test_refused_confirmation_carries_amazons_code_and_message(store, connector):
    order_id = two_item_order(store)

    with pytest.raises(PlatformRequestError) as caught:
        connector.ship(
            request=ShipRequest(
                platform_order_id=order_id,
                tracking_number="1Z999AA10123456784",
                carrier_code="ups",
                line_quantities={"50000000000002": 5},
            )
        )

    assert caught.value.status == 400
    assert caught.value.code == "InvalidInput"
    assert "exceeds the 1 unshipped" in caught.value.message
    assert caught.value.request_id
    assert not SandboxShipment.objects.filter(store=store).exists()
    with pytest.raises(PlatformNotFound):
        connector.ship(
            request=ShipRequest(
                platform_order_id="112-0000000-4040404",
                tracking_number="1Z999AA10123456784",
                carrier_code="ups",
                line_quantities={"1": 1},
            )
        )


def test_unknown_carrier_is_sent_as_other_with_its_name(store, connector):
    order_id = two_item_order(store)
    connector.ship(
        request=ShipRequest(
            platform_order_id=order_id,
            tracking_number="YT2412345678901234",
            carrier_code="yunexpress",
        )
    )
    (shipment,) = sandbox.show(store=store, what="shipments")
    assert shipment["packageDetail"]["carrierCode"] == "Other"
    assert shipment["packageDetail"]["carrierName"] == "yunexpress"


# --- listings -----------------------------------------------------------------------------------


def test_set_inventory_patches_the_listing_and_reads_back(shop, store, connector):
    product = store.products.order_by("pk").first()
    sku = product.seller_sku

    results = connector.set_inventory(updates=[InventoryUpdate(platform_sku_id=sku, quantity=17)])

    assert [(r.platform_sku_id, r.ok, r.error) for r in results] == [(sku, True, "")]
    (level,) = connector.get_inventory(platform_sku_ids=[sku])
    assert (level.platform_sku_id, level.quantity) == (sku, 17)
    shown = {row["sku"]: row for row in sandbox.show(store=store, what="inventory")}
    assert shown[sku]["fulfillmentAvailability"] == [
        {"fulfillmentChannelCode": "DEFAULT", "quantity": 17}
    ]
    # The numeric sku id the listing carries reaches the same listing.
    connector.set_inventory(updates=[InventoryUpdate(platform_sku_id=product.sku_id, quantity=3)])
    product.refresh_from_db()
    assert product.quantity == 3


def test_invalid_listing_updates_are_per_item_failures(store, connector):
    good, other = store.products.order_by("pk")[:2]
    SandboxProduct.objects.filter(pk=other.pk).update(quantity=9)

    results = connector.set_inventory(
        updates=[
            InventoryUpdate(platform_sku_id=good.seller_sku, quantity=4),
            InventoryUpdate(platform_sku_id=other.seller_sku, quantity=-1),
            InventoryUpdate(platform_sku_id="NO-SUCH-SKU", quantity=1),
        ]
    )

    assert [r.ok for r in results] == [True, False, False]
    assert results[1].code == "90244" and "0 or more" in results[1].error
    assert results[2].code == "4000001" and "NO-SUCH-SKU" in results[2].error
    other.refresh_from_db()
    assert other.quantity == 9
    assert connector.get_inventory(platform_sku_ids=["NO-SUCH-SKU"]) == []


# --- retries ------------------------------------------------------------------------------------


def test_injected_429_is_retried_after_the_rate_limit_header(store, connector, recorded):
    """Amazon's 429s carry x-amzn-RateLimit-Limit but no Retry-After: wait one token."""
    SandboxStore.objects.filter(pk=store.pk).update(fault_rate=1.0, fault_kinds=["429"])

    def sleep(seconds):
        recorded.append(seconds)
        SandboxStore.objects.filter(pk=store.pk).update(fault_rate=0.0)

    connector.http.sleep = sleep
    page = connector.fetch_orders(updated_since=timezone.now() - timedelta(days=1))

    assert page.orders == []
    assert connector.http.last_attempts == 2
    assert recorded[0] >= 1 / 16.7  # getOrders: 0.0167/s x 1000


def test_throttled_call_waits_for_retry_after_and_recovers(store, connector, recorded):
    first, second = two_item_order(store), two_item_order(store, "112-3000000-0000002")
    # Scale 0.1: confirmShipment becomes 0.2/s with a burst of one; Retry-After is 5 s.
    SandboxStore.objects.filter(pk=store.pk).update(rate_per_second=0.1)
    connector.ship(
        request=ShipRequest(platform_order_id=first, tracking_number="1Z1", carrier_code="ups")
    )

    def sleep(seconds):
        recorded.append(seconds)
        SandboxStore.objects.filter(pk=store.pk).update(rate_per_second=1000)

    connector.http.sleep = sleep
    connector.ship(
        request=ShipRequest(platform_order_id=second, tracking_number="1Z2", carrier_code="ups")
    )

    assert connector.http.last_attempts == 2
    assert len(recorded) == 1 and recorded[0] >= 4.9
    assert SandboxShipment.objects.filter(store=store).count() == 2


def test_server_errors_are_retried(store, connector, recorded):
    SandboxStore.objects.filter(pk=store.pk).update(fault_rate=1.0, fault_kinds=["503"])
    (payload,) = add_orders(store, 1, start=timezone.now() - timedelta(hours=1))

    def sleep(seconds):
        recorded.append(seconds)
        SandboxStore.objects.filter(pk=store.pk).update(fault_rate=0.0)

    connector.http.sleep = sleep
    (order,) = connector.fetch_orders_by_id(platform_order_ids=[payload["AmazonOrderId"]])

    assert order.platform_order_id == payload["AmazonOrderId"]
    assert len(recorded) == 1


# --- isolation ----------------------------------------------------------------------------------


def test_a_seller_cannot_reach_another_sellers_orders_or_listings(
    tenant_a, tenant_b, store, connector
):
    other_shop = amazon_shop(tenant_b, name="Other seller", suffix="B")
    other_store = connect_store(other_shop)
    (payload,) = add_orders(other_store, 1, start=timezone.now() - timedelta(hours=1))
    other_sku = other_store.products.first().seller_sku

    assert connector.fetch_orders_by_id(platform_order_ids=[payload["AmazonOrderId"]]) == []
    assert connector.fetch_orders(updated_since=timezone.now() - timedelta(days=1)).orders == []
    assert connector.get_inventory(platform_sku_ids=[other_sku]) == []
    # Our token on the other seller's listing path: refused outright.
    response = api(
        store,
        f"/listings/2021-08-01/items/{other_store.shop_key}/{other_sku}",
        marketplaceIds=US,
    )
    assert response.status_code == 403


# --- sandbox --------------------------------------------------------------------------------------


def test_show_orders_is_get_order_plus_get_order_items(store):
    (payload,) = add_orders(store, 1, start=timezone.now() - timedelta(hours=1))
    order_id = payload["AmazonOrderId"]

    (shown,) = sandbox.show(store=store, what="orders")

    order = api(store, f"/orders/v0/orders/{order_id}").json()["payload"]
    items = api(store, f"/orders/v0/orders/{order_id}/orderItems").json()["payload"]["OrderItems"]
    assert shown == {**order, "OrderItems": items}
    assert order["AmazonOrderId"] == order_id and "OrderItems" not in order
    assert order["OrderStatus"] == "Unshipped" and order["FulfillmentChannel"] == "MFN"
    for field in ("PurchaseDate", "LastUpdateDate", "LatestShipDate", "EarliestShipDate"):
        assert order[field].endswith("Z")
    assert order["NumberOfItemsUnshipped"] == sum(i["QuantityOrdered"] for i in items)


def test_generated_orders_add_up(store):
    payloads = add_orders(store, 40, start=timezone.now() - timedelta(hours=2), seed=3)
    assert len({p["AmazonOrderId"] for p in payloads}) == 40
    for payload in payloads:
        items = payload["OrderItems"]
        total = sum(
            Decimal(i[f]["Amount"]) * sign
            for i in items
            for f, sign in (
                ("ItemPrice", 1),
                ("ItemTax", 1),
                ("ShippingPrice", 1),
                ("ShippingTax", 1),
                ("PromotionDiscount", -1),
            )
        )
        assert Decimal(payload["OrderTotal"]["Amount"]) == total
        assert payload["MarketplaceId"] == US


def test_load_orders_names_the_order_and_field_and_loads_nothing_on_error(store):
    good = amazon_order("112-0000001-0000001", updated=timezone.now())
    bad_item = {
        **amazon_order("112-0000002-0000002", updated=timezone.now()),
        "OrderItems": [
            good["OrderItems"][0],
            {"OrderItemId": "2", "ASIN": "B0", "QuantityOrdered": -1},
        ],
    }

    with pytest.raises(SandboxInputError, match=r"^order 1: OrderItems\[1\]\.QuantityOrdered: "):
        sandbox.load_orders(store=store, payloads=[good, bad_item])
    with pytest.raises(SandboxInputError, match=r"^order 1: AmazonOrderId: .* is also order 0"):
        sandbox.load_orders(store=store, payloads=[good, good])
    with pytest.raises(SandboxInputError, match=r"^OrderStatus: must be one of"):
        sandbox.load_order(store=store, payload={**good, "OrderStatus": "Lost"})
    with pytest.raises(SandboxInputError, match=r"^AmazonOrderId: "):
        sandbox.load_order(store=store, payload={**good, "AmazonOrderId": "12345"})
    with pytest.raises(SandboxInputError, match=r"^OrderItems\[0\]\.ItemPrice\.Amount: "):
        sandbox.load_order(
            store=store,
            payload={
                **good,
                "OrderItems": [
                    {**good["OrderItems"][0], "ItemPrice": {"CurrencyCode": "USD", "Amount": "ten"}}
                ],
            },
        )
    assert not SandboxOrder.objects.filter(store=store).exists()

    assert sandbox.load_orders(store=store, payloads=[good]) == 1
    sandbox.load_order(store=store, payload={**good, "OrderStatus": "Shipped"})  # upsert
    row = SandboxOrder.objects.get(store=store)
    assert (row.status, row.payload["MarketplaceId"]) == ("Shipped", US)


def test_buyers_cannot_ask_to_cancel_a_shipped_order(store):
    sandbox.load_order(
        store=store,
        payload=amazon_order("112-0000005-0000005", updated=timezone.now(), status="Shipped"),
    )
    with pytest.raises(SandboxInputError, match="before it ships"):
        sandbox.request_cancellation(store=store, order=SandboxOrder.objects.get(store=store))


def test_no_webhooks_on_amazon(store, shop):
    credentials = ShopCredentials._base_manager.get(shop=shop)
    assert AmazonConnector.verify_webhook(headers={}, body=b"{}", credentials=credentials) is False
    with pytest.raises(WebhookVerificationError):
        AmazonConnector.parse_webhook(headers={}, body=b"{}")
    assert sandbox.send_webhook(store=store, topic="ORDER_CHANGE", data={}) is None
