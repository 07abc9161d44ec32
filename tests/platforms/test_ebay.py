"""eBay connector against the eBay sandbox, over real HTTP (in-process WSGI)."""

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
    SandboxShipment,
    SandboxStore,
)
from shops.models import ShopCredentials
from shops.platforms import connector_for
from shops.platforms.base import (
    InventoryUpdate,
    PlatformAuthError,
    PlatformRequestError,
    PlatformResponseError,
    PlatformTokenExpired,
    ShipRequest,
)
from shops.platforms.ebay import EbayConnector
from shops.platforms.http import sandbox_transport
from tests.factories import ListingFactory, ShopFactory

T0 = datetime(2025, 3, 10, 15, 0, tzinfo=UTC)
API = "http://sandbox.tkerp.internal/sandbox/ebay"


@pytest.fixture
def shop(tenant_a):
    shop = ShopFactory(tenant=tenant_a, platform="ebay", name="Retro Finds", platform_shop_id="")
    for code in ("RF-CAMERA", "RF-LENS", "RF-STRAP"):
        ListingFactory(tenant=tenant_a, shop=shop, sku__tenant=tenant_a, sku__code=code)
    return shop


@pytest.fixture
def sandbox():
    return sandbox_for("ebay")


def add_order(
    sandbox, store, *, at: datetime, modified: datetime | None = None, seed: int = 0, **changes
) -> SandboxOrder:
    products = list(SandboxProduct.objects.filter(store=store).order_by("pk"))
    payload = sandbox.generate_order(
        store=store, rng=random.Random(seed), products=products, now=at
    )
    if modified is not None:
        payload["lastModifiedDate"] = modified.strftime("%Y-%m-%dT%H:%M:%S.000Z")
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


# --- orders -----------------------------------------------------------------------------------


def test_fetch_orders_pages_by_offset_to_the_end(connector, sandbox, store):
    for number in range(450):
        add_order(sandbox, store, at=T0 + timedelta(seconds=number), seed=number)

    orders, pages = fetch_all(connector, updated_since=T0, updated_until=T0 + timedelta(hours=1))

    assert pages == 3  # 200 + 200 + 50
    ids = [order.platform_order_id for order in orders]
    assert len(ids) == len(set(ids)) == 450


def test_an_order_modified_while_paging_does_not_make_another_skipped(connector, sandbox, store):
    """Offset paging over a window: an order leaving it shifts later ones back by one."""
    for number in range(450):
        add_order(sandbox, store, at=T0 + timedelta(seconds=number), seed=number)
    window = {"updated_since": T0, "updated_until": T0 + timedelta(hours=1)}
    first = connector.fetch_orders(**window)
    # The buyer's order on page 1 ships now: its lastModifiedDate leaves the window.
    moved = first.orders[0].platform_order_id
    connector.ship(
        request=ShipRequest(
            platform_order_id=moved, tracking_number="9400100000000000000001", carrier_code="usps"
        )
    )

    seen = {order.platform_order_id for order in first.orders}
    token = first.next_page_token
    while token:
        page = connector.fetch_orders(page_token=token, **window)
        seen |= {order.platform_order_id for order in page.orders}
        token = page.next_page_token

    assert len(seen) == 450
    assert set(SandboxOrder.objects.filter(store=store).values_list("order_id", flat=True)) == seen


def test_fetch_orders_window_is_since_inclusive_until_exclusive(connector, sandbox, store):
    until = T0 + timedelta(hours=1)
    created = T0 - timedelta(days=3)
    before = add_order(sandbox, store, at=created, modified=T0 - timedelta(seconds=1), seed=1)
    at_start = add_order(sandbox, store, at=created, modified=T0, seed=2)
    inside = add_order(sandbox, store, at=created, modified=T0 + timedelta(minutes=30), seed=3)
    at_end = add_order(sandbox, store, at=created, modified=until, seed=4)
    after = add_order(sandbox, store, at=created, modified=until + timedelta(minutes=5), seed=5)

    orders, _ = fetch_all(connector, updated_since=T0, updated_until=until)

    got = {order.platform_order_id for order in orders}
    assert got == {at_start.order_id, inside.order_id}
    assert not got & {before.order_id, at_end.order_id, after.order_id}
    assert [o.updated_at for o in orders] == sorted(o.updated_at for o in orders)


def test_a_malformed_filter_is_refused(store):
    client = httpx.Client(transport=sandbox_transport())
    response = client.get(
        f"{API}/sell/fulfillment/v1/order",
        params={"filter": "lastmodifieddate:[yesterday..today]"},
        headers={"Authorization": f"Bearer {store.access_token}"},
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["errorId"] == 30700


def test_fetch_orders_by_id_in_chunks_of_50_and_skips_unknown(connector, sandbox, store):
    orders = [add_order(sandbox, store, at=T0, seed=n) for n in range(55)]
    wanted = [order.order_id for order in orders] + ["99-99999-99999"]

    found = connector.fetch_orders_by_id(platform_order_ids=wanted)

    assert sorted(o.platform_order_id for o in found) == sorted(o.order_id for o in orders)


def test_a_malformed_order_is_left_out_by_id_and_the_rest_is_mapped(connector, sandbox, store):
    good = add_order(sandbox, store, at=T0, seed=1)
    bad = add_order(sandbox, store, at=T0 + timedelta(seconds=1), seed=2)
    row = SandboxOrder.objects.get(pk=bad.pk)
    row.payload["pricingSummary"]["total"]["value"] = "12,50"
    row.save()

    page = connector.fetch_orders(updated_since=T0, updated_until=T0 + timedelta(hours=1))

    assert [order.platform_order_id for order in page.orders] == [good.order_id]
    (unmapped,) = page.unmapped
    assert (unmapped.platform_order_id, unmapped.field) == (bad.order_id, "total")
    assert "12,50" in unmapped.message
    rejects = []
    found = connector.fetch_orders_by_id(
        platform_order_ids=[good.order_id, bad.order_id], unmapped=rejects
    )
    assert [order.platform_order_id for order in found] == [good.order_id]
    assert [reject.platform_order_id for reject in rejects] == [bad.order_id]
    with pytest.raises(PlatformResponseError, match=f"order {bad.order_id}: total"):
        connector.fetch_orders_by_id(platform_order_ids=[good.order_id, bad.order_id])


EBAY_ORDER = {
    "orderId": "12-34567-89012",
    "creationDate": "2025-03-10T14:58:30.000Z",
    "lastModifiedDate": "2025-03-10T15:02:05.123Z",
    "orderFulfillmentStatus": "NOT_STARTED",
    "orderPaymentStatus": "PAID",
    "buyer": {"username": "retro_buyer_77"},
    "buyerCheckoutNotes": "Please double-wrap the lens",
    "pricingSummary": {
        "priceSubtotal": {"value": "120.00", "currency": "USD"},
        "priceDiscount": {"value": "-12.00", "currency": "USD"},
        "deliveryCost": {"value": "6.95", "currency": "USD"},
        "tax": {"value": "7.83", "currency": "USD"},
        "total": {"value": "122.78", "currency": "USD"},
    },
    "cancelStatus": {"cancelState": "NONE_REQUESTED", "cancelRequests": []},
    "paymentSummary": {
        "payments": [{"paymentDate": "2025-03-10T14:58:41.000Z", "paymentStatus": "PAID"}]
    },
    "fulfillmentStartInstructions": [
        {
            "shippingStep": {
                "shipTo": {
                    "fullName": "Daniel Nguyen",
                    "contactAddress": {
                        "addressLine1": "88 Magnolia Ave",
                        "addressLine2": "Unit 305",
                        "city": "Austin",
                        "stateOrProvince": "TX",
                        "postalCode": "78701",
                        "countryCode": "US",
                    },
                    "primaryPhone": {"phoneNumber": "5125550188"},
                    "email": "1a2b3c@members.ebay.com",
                }
            }
        }
    ],
    "lineItems": [
        {
            "lineItemId": "10000000000101",
            "sku": "RF-CAMERA",
            "title": "Vintage 35mm camera",
            "quantity": 1,
            "lineItemCost": {"value": "90.00", "currency": "USD"},
            "discountedLineItemCost": {"value": "78.00", "currency": "USD"},
            "lineItemFulfillmentStatus": "NOT_STARTED",
            "lineItemFulfillmentInstructions": {"shipByDate": "2025-03-12T06:59:59.000Z"},
        },
        {
            "lineItemId": "10000000000102",
            "sku": "RF-STRAP",
            "title": "Leather strap",
            "quantity": 3,
            "lineItemCost": {"value": "30.00", "currency": "USD"},
            "lineItemFulfillmentStatus": "NOT_STARTED",
            "lineItemFulfillmentInstructions": {"shipByDate": "2025-03-13T06:59:59.000Z"},
        },
    ],
}


def test_order_mapping(connector, sandbox, store):
    sandbox.load_order(store=store, payload=EBAY_ORDER)

    [order] = connector.fetch_orders_by_id(platform_order_ids=["12-34567-89012"])

    assert order.status == "new" and order.platform_status == "NOT_STARTED"
    assert order.updated_at == datetime(2025, 3, 10, 15, 2, 5, 123000, tzinfo=UTC)
    assert order.placed_at == datetime(2025, 3, 10, 14, 58, 30, tzinfo=UTC)
    assert order.paid_at == datetime(2025, 3, 10, 14, 58, 41, tzinfo=UTC)
    assert order.ship_by == datetime(2025, 3, 12, 6, 59, 59, tzinfo=UTC)  # the earliest line
    assert (order.subtotal, order.shipping_fee, order.seller_discount) == (
        Decimal("120.00"),
        Decimal("6.95"),
        Decimal("12.00"),
    )
    assert (order.tax, order.total, order.currency) == (Decimal("7.83"), Decimal("122.78"), "USD")
    assert order.buyer_user_id == "retro_buyer_77"
    assert order.buyer_name == "Daniel Nguyen"
    assert order.buyer_note == "Please double-wrap the lens"
    address = order.address
    assert (address.line1, address.line2, address.city, address.state) == (
        "88 Magnolia Ave",
        "Unit 305",
        "Austin",
        "TX",
    )
    assert (address.postal_code, address.country, address.phone) == ("78701", "US", "5125550188")
    camera, strap = order.lines
    assert (camera.platform_line_id, camera.platform_sku_id, camera.seller_sku) == (
        "10000000000101",
        "RF-CAMERA",
        "RF-CAMERA",
    )
    assert (camera.unit_price, camera.discount, camera.total) == (
        Decimal("90.00"),
        Decimal("12.00"),
        Decimal("78.00"),
    )
    assert (strap.quantity, strap.unit_price, strap.discount, strap.total) == (
        3,
        Decimal("10.00"),
        Decimal("0.00"),
        Decimal("30.00"),
    )
    assert order.cancel_requested is False


@pytest.mark.parametrize(
    ("changes", "status", "platform_status"),
    [
        ({"orderFulfillmentStatus": "IN_PROGRESS"}, "new", "IN_PROGRESS"),  # partly shipped
        ({"orderFulfillmentStatus": "FULFILLED"}, "shipped", "FULFILLED"),
        (
            {"cancelStatus": {"cancelState": "CANCELED", "cancelRequests": []}},
            "cancelled",
            "NOT_STARTED/CANCELED",
        ),
    ],
)
def test_status_mapping(connector, sandbox, store, changes, status, platform_status):
    sandbox.load_order(store=store, payload={**EBAY_ORDER, **changes})

    [order] = connector.fetch_orders_by_id(platform_order_ids=["12-34567-89012"])

    assert (order.status, order.platform_status) == (status, platform_status)


def test_buyer_cancel_request_maps_and_is_answered(connector, sandbox, store):
    order = add_order(sandbox, store, at=T0, seed=4)
    sandbox.request_cancellation(store=store, order=order)

    [synced] = connector.fetch_orders_by_id(platform_order_ids=[order.order_id])

    assert synced.status == "new" and synced.cancel_requested is True
    assert synced.cancel_requested_at is not None
    request = synced.raw["cancelStatus"]["cancelRequests"][0]
    connector.answer_cancellation(
        cancel_id=request["cancelRequestId"], platform_order_id=order.order_id, approve=True
    )
    [answered] = connector.fetch_orders_by_id(platform_order_ids=[order.order_id])
    assert answered.status == "cancelled" and answered.cancel_requested is False
    cancellation = SandboxCancellation.objects.get(store=store, order_id=order.order_id)
    assert cancellation.decision == "approve"


def test_rejecting_a_cancel_request_keeps_the_order(connector, sandbox, store):
    order = add_order(sandbox, store, at=T0, seed=5)
    sandbox.request_cancellation(store=store, order=order)
    [synced] = connector.fetch_orders_by_id(platform_order_ids=[order.order_id])
    cancel_id = synced.raw["cancelStatus"]["cancelRequests"][0]["cancelRequestId"]

    connector.answer_cancellation(
        cancel_id=cancel_id, platform_order_id=order.order_id, approve=False, reason="Shipped"
    )

    [answered] = connector.fetch_orders_by_id(platform_order_ids=[order.order_id])
    assert answered.status == "new" and answered.cancel_requested is False
    assert SandboxCancellation.objects.get(cancel_id=cancel_id).reject_reason == "Shipped"


def test_load_order_names_the_bad_field(sandbox, store):
    payload = json.loads(json.dumps(EBAY_ORDER))
    payload["lineItems"][1]["lineItemCost"] = {"value": "thirty", "currency": "USD"}
    with pytest.raises(SandboxInputError, match=r"lineItems\[1\]\.lineItemCost"):
        sandbox.load_order(store=store, payload=payload)


# --- fulfilment -------------------------------------------------------------------------------


def test_ship_whole_order_then_visible_in_sandbox(connector, sandbox, store):
    sandbox.load_order(store=store, payload=EBAY_ORDER)

    result = connector.ship(
        request=ShipRequest(
            platform_order_id="12-34567-89012",
            tracking_number="9400111899223197428490",
            carrier_code="usps",
        )
    )

    [shipment] = sandbox.show(store=store, what="shipments")
    assert shipment["fulfillmentId"] == result.platform_package_id
    assert shipment["shipmentTrackingNumber"] == "9400111899223197428490"
    assert shipment["shippingCarrierCode"] == "USPS"
    assert {(i["lineItemId"], i["quantity"]) for i in shipment["lineItems"]} == {
        ("10000000000101", 1),
        ("10000000000102", 3),
    }
    [synced] = connector.fetch_orders_by_id(platform_order_ids=["12-34567-89012"])
    assert (synced.status, synced.platform_status) == ("shipped", "FULFILLED")


def test_partial_ship(connector, sandbox, store):
    sandbox.load_order(store=store, payload=EBAY_ORDER)
    strap = "10000000000102"

    connector.ship(
        request=ShipRequest(
            platform_order_id="12-34567-89012",
            tracking_number="1Z999AA10123456784",
            carrier_code="ups",
            line_quantities={strap: 2},
        )
    )

    [synced] = connector.fetch_orders_by_id(platform_order_ids=["12-34567-89012"])
    assert (synced.status, synced.platform_status) == ("new", "IN_PROGRESS")
    with pytest.raises(PlatformRequestError, match="exceeds"):
        connector.ship(
            request=ShipRequest(
                platform_order_id="12-34567-89012",
                tracking_number="1Z999AA10123456785",
                carrier_code="ups",
                line_quantities={strap: 2},
            )
        )
    connector.ship(
        request=ShipRequest(
            platform_order_id="12-34567-89012",
            tracking_number="1Z999AA10123456786",
            carrier_code="ups",
            platform_line_ids=["10000000000101"],
            line_quantities={strap: 1},
        )
    )
    [synced] = connector.fetch_orders_by_id(platform_order_ids=["12-34567-89012"])
    assert synced.platform_status == "FULFILLED"
    assert SandboxShipment.objects.filter(store=store).count() == 2


# --- inventory --------------------------------------------------------------------------------


def test_set_and_get_inventory_roundtrip_with_a_per_item_error(connector, store):
    products = list(SandboxProduct.objects.filter(store=store).order_by("pk"))
    updates = [InventoryUpdate(platform_sku_id=products[0].sku_id, quantity=12)]
    # 27 unknown SKUs as well: two calls of at most 25.
    updates += [InventoryUpdate(platform_sku_id=f"NOPE-{n}", quantity=1) for n in range(27)]
    updates.append(InventoryUpdate(platform_sku_id=products[1].sku_id, quantity=4))

    results = connector.set_inventory(updates=updates)

    assert len(results) == 29
    by_sku = {result.platform_sku_id: result for result in results}
    assert by_sku[products[0].sku_id].ok and by_sku[products[1].sku_id].ok
    assert not by_sku["NOPE-3"].ok and by_sku["NOPE-3"].code == "25702"
    assert "not available" in by_sku["NOPE-3"].error
    levels = connector.get_inventory(platform_sku_ids=[p.sku_id for p in products] + ["NOPE-1"])
    assert {level.platform_sku_id: level.quantity for level in levels} == {
        products[0].sku_id: 12,
        products[1].sku_id: 4,
        products[2].sku_id: 0,
    }


def test_seller_sku_is_used_when_the_listing_has_no_platform_sku_id(connector, store):
    product = SandboxProduct.objects.filter(store=store).first()

    [result] = connector.set_inventory(
        updates=[InventoryUpdate(platform_sku_id="", seller_sku=product.sku_id, quantity=9)]
    )

    assert result.ok
    product.refresh_from_db()
    assert product.quantity == 9


# --- auth, limits, retries --------------------------------------------------------------------


def test_bad_token_is_an_auth_error(shop, store, sleeps):
    ShopCredentials._base_manager.filter(shop=shop).update(access_token="v^1.1#wrong")
    connector = connector_for(shop, sleep=sleeps.append, backoff_base=0.01)

    with pytest.raises(PlatformAuthError) as caught:
        connector.fetch_orders(updated_since=T0)
    assert caught.value.code == 1001 and caught.value.status == 401
    assert connector.http.last_attempts == 1


def test_token_refresh(shop, store, connector):
    old_token = store.access_token
    before = datetime.now(UTC)

    tokens = connector.refresh_access_token()

    after = datetime.now(UTC)
    assert tokens.access_token and tokens.access_token != old_token
    assert (
        before + timedelta(seconds=7200)
        <= tokens.access_token_expires_at
        <= after + timedelta(seconds=7200)
    )
    assert tokens.refresh_token == store.refresh_token  # eBay keeps the refresh token
    with pytest.raises(PlatformTokenExpired):
        connector.fetch_orders(updated_since=T0)  # still the old token
    ShopCredentials._base_manager.filter(shop=shop).update(access_token=tokens.access_token)
    refreshed = connector_for(shop, backoff_base=0.01)
    assert refreshed.fetch_orders(updated_since=T0).orders == []


def test_token_refresh_with_a_bad_refresh_token_is_an_auth_error(shop, store):
    ShopCredentials._base_manager.filter(shop=shop).update(refresh_token="v^1.1#stale")
    connector = connector_for(shop, backoff_base=0.01)

    with pytest.raises(PlatformAuthError, match="refresh token is invalid"):
        connector.refresh_access_token()


def test_expired_access_token_is_refused(shop, store, connector):
    SandboxStore.objects.filter(pk=store.pk).update(
        access_token_expires_at=datetime.now(UTC) - timedelta(minutes=1)
    )
    with pytest.raises(PlatformTokenExpired):
        connector.fetch_orders(updated_since=T0)


def test_429_is_retried_with_backoff(connector, sandbox, store, sleeps):
    add_order(sandbox, store, at=T0, seed=1)
    SandboxStore.objects.filter(pk=store.pk).update(fault_rate=1.0, fault_kinds=["429"])

    def recover(delay: float) -> None:
        sleeps.append(delay)
        SandboxStore.objects.filter(pk=store.pk).update(fault_rate=0.0)

    connector.http.sleep = recover

    page = connector.fetch_orders(updated_since=T0, updated_until=T0 + timedelta(minutes=1))

    assert len(page.orders) == 1
    assert connector.http.last_attempts == 2
    assert len(connector.http.last_delays) == 1


def test_rate_limit_answers_error_2001(store):
    SandboxStore.objects.filter(pk=store.pk).update(rate_burst=1, rate_per_second=0.001)
    client = httpx.Client(transport=sandbox_transport())
    headers = {"Authorization": f"Bearer {store.access_token}"}

    answers = [
        client.get(f"{API}/sell/inventory/v1/inventory_item/X", headers=headers) for _ in range(2)
    ]

    assert [a.status_code for a in answers] == [404, 429]
    assert answers[1].json()["errors"][0]["errorId"] == 2001


def test_5xx_is_retried(connector, sandbox, store, sleeps):
    add_order(sandbox, store, at=T0, seed=1)
    SandboxStore.objects.filter(pk=store.pk).update(fault_rate=1.0, fault_kinds=["500"])

    def recover(delay: float) -> None:
        sleeps.append(delay)
        SandboxStore.objects.filter(pk=store.pk).update(fault_rate=0.0)

    connector.http.sleep = recover

    page = connector.fetch_orders(updated_since=T0, updated_until=T0 + timedelta(minutes=1))

    assert len(page.orders) == 1
    assert connector.http.last_attempts == 2


def test_webhooks_are_not_claimed(sandbox, store):
    assert sandbox.send_webhook(store=store, topic="ORDER", data={}) is None
    assert not EbayConnector.verify_webhook(
        headers={"X-EBAY-SIGNATURE": "x"}, body=b"{}", credentials=ShopCredentials()
    )


def test_shipping_the_rest_after_a_partial_shipment(connector, sandbox, store):
    sandbox.load_order(store=store, payload=EBAY_ORDER)
    strap = "10000000000102"
    connector.ship(
        request=ShipRequest(
            platform_order_id="12-34567-89012",
            tracking_number="1Z999AA10123456784",
            carrier_code="ups",
            line_quantities={strap: 2},
        )
    )

    connector.ship(
        request=ShipRequest(
            platform_order_id="12-34567-89012",
            tracking_number="1Z999AA10123456787",
            carrier_code="ups",
        )
    )

    second = SandboxShipment.objects.filter(store=store).order_by("pk").last()
    assert {(i["lineItemId"], i["quantity"]) for i in second.payload["lineItems"]} == {
        ("10000000000101", 1),
        (strap, 1),
    }
    with pytest.raises(PlatformRequestError, match="nothing left to ship"):
        connector.ship(
            request=ShipRequest(
                platform_order_id="12-34567-89012",
                tracking_number="1Z999AA10123456788",
                carrier_code="ups",
            )
        )
