"""The TikTok connector against the TikTok sandbox, over real HTTP (in-process WSGI), on
PostgreSQL. Nothing of the connector is mocked; where a test needs the platform to misbehave it
uses the store's fault injection or a transport that corrupts what the sandbox said."""

from __future__ import annotations

import copy
import json
import random
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from django.utils import timezone

from logistics.tracking_numbers import tracking_number_valid
from sandbox import tiktok as tiktok_sandbox
from sandbox.actions import sandbox_spike
from sandbox.base import reset_rate_limits
from sandbox.connect import sandbox_connect
from sandbox.models import SandboxOrder, SandboxStore, SandboxWebhook
from sandbox.tiktok import TikTokSandbox, issue_auth_code
from shops.credentials import credentials_store_tokens
from shops.models import ShopCredentials
from shops.platforms import connector_for
from shops.platforms.base import (
    InventoryUpdate,
    PlatformAuthError,
    PlatformNotFound,
    PlatformRateLimited,
    PlatformRequestError,
    PlatformResponseError,
    ShipRequest,
    TokenSet,
)
from shops.platforms.http import sandbox_transport
from shops.platforms.tiktok import TikTokConnector, query_string, sign
from tests.factories import ListingFactory, ShopFactory, SkuFactory

USPS = "7117858858072016686"
UPS = "7117859084333745966"
LONG_AGO = timedelta(days=3)


@pytest.fixture(autouse=True)
def fresh_sandbox_rate_limits():
    """The sandbox's rate-limit buckets live in the process: start every test with full ones."""
    reset_rate_limits()


class ScriptedFaults:
    """The sandbox's fault dice, loaded: the given rolls first (below the store's fault rate
    means a fault), then never a fault again."""

    def __init__(self, *rolls: float):
        self.rolls = list(rolls)

    def random(self) -> float:
        return self.rolls.pop(0) if self.rolls else 0.999

    def choice(self, kinds):
        return kinds[0]


def make_shop(tenant, *, skus: int = 3, name: str = "Live Shop"):
    shop = ShopFactory(tenant=tenant, platform="tiktok", name=name)
    for number in range(skus):
        sku = SkuFactory(tenant=tenant, code=f"{name[:4].upper()}-{number}", cost=Decimal("5"))
        ListingFactory(tenant=tenant, shop=shop, sku=sku)
    store = sandbox_connect(shop=shop)
    # No client-side throttling in tests: the sandbox's own limit is what is under test.
    ShopCredentials._base_manager.filter(shop=shop).update(
        extra={
            "location_id": store.warehouse_id,
            "shop_key": store.shop_key,
            "rate_limit": {"per_second": 10000, "burst": 10000},
        }
    )
    return shop, store


@pytest.fixture
def shop_store(tenant_a):
    return make_shop(tenant_a)


@pytest.fixture
def shop(shop_store):
    return shop_store[0]


@pytest.fixture
def store(shop_store):
    return shop_store[1]


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def connector(shop, sleeps) -> TikTokConnector:
    return connector_for(shop, sleep=sleeps.append, backoff_base=0.01)


def generated(store, count: int, *, seed: int = 1, now=None) -> list[dict]:
    sandbox = TikTokSandbox()
    rng = random.Random(seed)
    products = list(store.products.order_by("pk"))
    now = now or timezone.now()
    return [
        sandbox.generate_order(store=store, rng=rng, products=products, now=now)
        for _ in range(count)
    ]


def load(store, payloads: list[dict]) -> list[dict]:
    TikTokSandbox().load_orders(store=store, payloads=payloads)
    return payloads


def all_pages(connector, **window):
    pages = []
    token = None
    while True:
        page = connector.fetch_orders(page_token=token, **window)
        pages.append(page)
        token = page.next_page_token
        if not token:
            return pages


def show(store, what):
    return TikTokSandbox().show(store=store, what=what)


def stored(store, order_id) -> dict:
    return SandboxOrder.objects.get(store=store, order_id=order_id).payload


class RecordingTransport(httpx.BaseTransport):
    """The sandbox transport, noting each request (to count calls and read what was sent)."""

    def __init__(self, rewrite=None):
        self.inner = sandbox_transport()
        self.requests: list[httpx.Request] = []
        self.rewrite = rewrite

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        response = self.inner.handle_request(request)
        if self.rewrite is None:
            return response
        response.read()
        return self.rewrite(response)


# --- orders -------------------------------------------------------------------------------------


@pytest.mark.django_db
class TestOrderSearch:
    def test_pages_to_the_end_with_tokens_holding_plus_and_slash(self, shop, store, connector):
        sandbox_spike(shop=shop, orders=250, seed=3, cancel_rate=0)
        pages = all_pages(connector, updated_since=timezone.now() - LONG_AGO)
        assert [len(page.orders) for page in pages] == [100, 100, 50]
        tokens = [page.next_page_token for page in pages[:-1]]
        assert all("+" in token and "/" in token for token in tokens)
        ids = [order.platform_order_id for page in pages for order in page.orders]
        assert len(set(ids)) == 250
        assert set(ids) == set(store.orders.values_list("order_id", flat=True))
        updated = [order.updated_at for page in pages for order in page.orders]
        assert updated == sorted(updated)

    def test_update_time_window_is_ge_inclusive_and_lt_exclusive(self, store, connector):
        base = int(time.time()) - 3600
        payloads = generated(store, 4)
        for offset, payload in zip((0, 10, 20, 30), payloads, strict=True):
            payload["update_time"] = base + offset
        load(store, payloads)
        window = {
            "updated_since": datetime.fromtimestamp(base + 10, tz=UTC),
            "updated_until": datetime.fromtimestamp(base + 30, tz=UTC),
        }
        (page,) = all_pages(connector, **window)
        assert [o.platform_order_id for o in page.orders] == [
            payloads[1]["id"],
            payloads[2]["id"],
        ]

    def test_an_order_changed_while_paging_is_found_by_the_next_window(self, store, connector):
        load(store, generated(store, 3))
        before = timezone.now() - LONG_AGO
        (page,) = all_pages(connector, updated_since=before)
        watermark = page.orders[-1].updated_at
        order = store.orders.order_by("pk").first()
        TikTokSandbox().request_cancellation(store=store, order=order)
        (again,) = all_pages(connector, updated_since=watermark)
        assert order.order_id in [o.platform_order_id for o in again.orders]

    def test_page_size_bounds_are_enforced(self, connector):
        connector.page_size = 101
        with pytest.raises(PlatformRequestError, match="page_size"):
            connector.fetch_orders(updated_since=timezone.now())


@pytest.mark.django_db
class TestOrderDetail:
    def test_detail_is_fetched_fifty_ids_at_a_time(self, shop, store):
        payloads = load(store, generated(store, 120))
        transport = RecordingTransport()
        connector = connector_for(shop, transport=transport)
        wanted = [p["id"] for p in payloads] + ["576999999999999999"]  # one unknown id
        orders = connector.fetch_orders_by_id(platform_order_ids=wanted + wanted[:5])
        assert sorted(o.platform_order_id for o in orders) == sorted(wanted[:-1])
        sizes = [len(r.url.params["ids"].split(",")) for r in transport.requests]
        assert sizes == [50, 50, 21]
        assert all(r.method == "GET" for r in transport.requests)

    def test_generated_orders_add_up(self, store, connector):
        payloads = load(store, generated(store, 60, seed=11))
        orders = connector.fetch_orders_by_id(platform_order_ids=[p["id"] for p in payloads])
        assert len(orders) == 60
        for order in orders:
            raw = order.raw
            units = len(raw["line_items"])
            assert sum(line.quantity for line in order.lines) == units
            assert sum(line.total for line in order.lines) == order.subtotal
            assert order.total == order.subtotal + order.shipping_fee + order.tax
            original = Decimal(raw["payment"]["original_total_product_price"])
            assert order.subtotal == original - order.seller_discount - order.platform_discount
            assert order.status == "new" and order.platform_status == "AWAITING_SHIPMENT"
            assert order.ship_by == order.paid_at + timedelta(hours=72 if order.is_presale else 48)
            assert not order.address.masked and order.address.state and order.address.city
            assert all(ch.isdigit() for ch in order.platform_order_id)

    def test_mapping_through_the_api(self, store, connector):
        seller, unpaid, platform_shipped = generated(store, 3, seed=5)
        item = seller["line_items"][0]
        seller["line_items"] = [
            {**copy.deepcopy(item), "id": str(int(item["id"]) + offset)} for offset in (30, 10, 20)
        ]
        other = copy.deepcopy(item)
        other.update({"id": str(int(item["id"]) + 40), "sku_id": "99", "seller_sku": "GIFT"})
        seller["line_items"].append(other)
        seller["buyer_message"] = "Gift — please don't include the receipt!"
        seller["payment"]["creator_commission"] = "1.75"  # non-standard, read when present
        unpaid["status"] = "UNPAID"
        del unpaid["paid_time"]
        platform_shipped["shipping_type"] = "TIKTOK"
        load(store, [seller, unpaid, platform_shipped])

        by_id = {
            o.platform_order_id: o
            for o in connector.fetch_orders_by_id(
                platform_order_ids=[seller["id"], unpaid["id"], platform_shipped["id"]]
            )
        }
        order = by_id[seller["id"]]
        first, gift = order.lines
        assert (first.quantity, first.platform_line_id) == (3, str(int(item["id"]) + 10))
        assert first.platform_line_ids == [str(int(item["id"]) + n) for n in (10, 20, 30)]
        assert first.total == 3 * (
            Decimal(item["original_price"])
            - Decimal(item["seller_discount"])
            - Decimal(item["platform_discount"])
        )
        assert (gift.quantity, gift.seller_sku) == (1, "GIFT")
        assert order.buyer_note.startswith("Gift")
        assert order.creator_commission == Decimal("1.75")
        assert order.ship_by.timestamp() == seller["rts_sla_time"]
        assert isinstance(order.total, Decimal)

        hidden = by_id[unpaid["id"]]
        assert hidden.address.masked and "recipient_address" not in hidden.raw
        masked = by_id[platform_shipped["id"]]
        assert masked.address.masked and "*" in masked.address.phone
        assert masked.address.city  # TikTok still says where the parcel goes


# --- tokens -------------------------------------------------------------------------------------


@pytest.mark.django_db
class TestTokens:
    def test_expired_token_is_refreshed_persisted_and_the_call_retried(self, shop, store):
        old = ShopCredentials._base_manager.get(shop=shop)
        SandboxStore.objects.filter(pk=store.pk).update(
            access_token_expires_at=timezone.now() - timedelta(minutes=1)
        )
        transport = RecordingTransport()
        connector = connector_for(shop, transport=transport)
        load(store, generated(store, 2))

        (page,) = all_pages(connector, updated_since=timezone.now() - LONG_AGO)

        assert len(page.orders) == 2
        store.refresh_from_db()
        saved = ShopCredentials._base_manager.get(shop=shop)
        assert saved.access_token == store.access_token != old.access_token
        assert saved.refresh_token == store.refresh_token != old.refresh_token
        assert saved.access_token_expires_at == store.access_token_expires_at
        assert saved.refresh_token_expires_at == store.refresh_token_expires_at
        assert saved.access_token_expires_at > timezone.now() + timedelta(days=6)
        paths = [r.url.path.removeprefix("/sandbox/tiktok") for r in transport.requests]
        assert paths == [
            "/order/202309/orders/search",
            "/auth/api/v2/token/refresh",
            "/order/202309/orders/search",
        ]
        # The refresh call carries no shop cipher and no access token header.
        refresh = transport.requests[1]
        assert "shop_cipher" not in refresh.url.params
        assert "x-tts-access-token" not in refresh.headers

    def test_a_token_another_worker_rotated_is_picked_up(self, shop, store):
        stale = connector_for(shop)
        fresh = connector_for(shop)
        fresh.credentials = credentials_store_tokens(
            credentials=fresh.credentials, tokens=fresh.refresh_access_token()
        )
        assert stale.credentials.access_token != fresh.credentials.access_token
        assert stale.warehouses()[0]["id"] == store.warehouse_id
        assert stale.credentials.access_token == fresh.credentials.access_token

    def test_refused_refresh_is_an_auth_error(self, shop, store):
        SandboxStore.objects.filter(pk=store.pk).update(
            access_token_expires_at=timezone.now() - timedelta(minutes=1),
            refresh_token="rft.revoked",
        )
        with pytest.raises(PlatformAuthError, match="re-authorize"):
            connector_for(shop).warehouses()

    def test_two_workers_refreshing_at_once_keep_the_newest_pair(self, shop):
        worker_a = ShopCredentials._base_manager.get(shop=shop)
        worker_b = ShopCredentials._base_manager.get(shop=shop)
        soon = timezone.now() + timedelta(days=1)
        year = timedelta(days=365)
        # B's pair was issued last (expires last) but A's write lands after B's.
        credentials_store_tokens(
            credentials=worker_b, tokens=TokenSet("b", soon, "b-r", soon + year)
        )
        result = credentials_store_tokens(
            credentials=worker_a,
            tokens=TokenSet("a", soon - timedelta(seconds=5), "a-r", soon + year),
        )
        assert (result.access_token, result.refresh_token) == ("b", "b-r")
        saved = ShopCredentials._base_manager.get(shop=shop)
        assert (saved.access_token, saved.refresh_token) == ("b", "b-r")
        # Nobody else rotated since this read: its pair is written even if it expires sooner
        # than what the row believed (a token the platform revoked early).
        credentials_store_tokens(
            credentials=saved,
            tokens=TokenSet("c", soon - timedelta(hours=1), "c-r", soon + year),
        )
        saved = ShopCredentials._base_manager.get(shop=shop)
        assert (saved.access_token, saved.refresh_token) == ("c", "c-r")

    def test_auth_code_exchange(self, shop, store):
        credentials = ShopCredentials._base_manager.get(shop=shop)
        code = issue_auth_code(store=store)
        exchange = {
            "app_key": credentials.app_key,
            "app_secret": credentials.app_secret,
            "auth_code": code,
            "auth_base_url": f"{credentials.api_base_url}/auth",
        }
        tokens = TikTokConnector.exchange_auth_code(**exchange)
        store.refresh_from_db()
        assert tokens.access_token == store.access_token
        assert tokens.refresh_token == store.refresh_token
        assert tokens.access_token_expires_at == store.access_token_expires_at
        with pytest.raises(PlatformAuthError, match="auth code"):
            TikTokConnector.exchange_auth_code(**exchange)  # single use

    def test_authorized_shops_carry_the_cipher(self, shop, store, connector):
        (listed,) = connector.list_authorized_shops()
        assert listed["id"] == store.shop_key == shop.platform_shop_id
        assert listed["cipher"] == connector.credentials.shop_cipher


# --- gateway checks, faults, malformed answers --------------------------------------------------


@pytest.mark.django_db
class TestGateway:
    def test_bad_signature_is_an_auth_error(self, connector):
        connector.credentials.app_secret = "not-the-secret"
        with pytest.raises(PlatformAuthError) as caught:
            connector.warehouses()
        assert caught.value.code == 106001
        assert caught.value.status == 401

    def test_injected_badsign_is_not_retried(self, store, connector, monkeypatch):
        store.fault_rate, store.fault_kinds = 0.5, ["badsign"]
        store.save()
        monkeypatch.setattr("sandbox.base._rng", ScriptedFaults(0.1))
        with pytest.raises(PlatformAuthError):
            connector.warehouses()
        assert connector.http.last_attempts == 1

    def test_shop_cipher_required_and_refused_where_tiktok_says(self, connector):
        with pytest.raises(PlatformRequestError) as missing:
            connector.request("GET", "/logistics/202309/warehouses", shop_scoped=False)
        assert missing.value.code == 106013
        with pytest.raises(PlatformRequestError, match="Unexpected identifier"):
            connector.request("GET", "/authorization/202309/shops", shop_scoped=True)

    def test_timestamp_window(self, shop, store):
        credentials = ShopCredentials._base_manager.get(shop=shop)
        path = "/logistics/202309/warehouses"
        params = {
            "app_key": credentials.app_key,
            "timestamp": str(int(time.time()) - 301),
            "shop_cipher": credentials.shop_cipher,
        }
        params["sign"] = sign(path, params, None, credentials.app_secret)
        with httpx.Client(transport=sandbox_transport()) as client:
            response = client.get(
                f"{credentials.api_base_url}{path}?{query_string(params)}",
                headers={"x-tts-access-token": credentials.access_token},
            )
        body = response.json()
        assert body["code"] == 36009004 and "timestamp" in body["message"]
        assert body["request_id"]

    def test_every_attempt_is_signed_afresh(self, shop, store, monkeypatch):
        clock = iter([1000.0, 1007.0])
        real = time.time()
        monkeypatch.setattr(
            "shops.platforms.tiktok.time",
            type("Clock", (), {"time": staticmethod(lambda: real - 60 + next(clock) - 1000)}),
        )
        store.fault_rate, store.fault_kinds = 0.5, ["503"]
        store.save()
        monkeypatch.setattr("sandbox.base._rng", ScriptedFaults(0.1))
        transport = RecordingTransport()
        connector = connector_for(shop, transport=transport, sleep=lambda _: None)
        assert connector.warehouses()
        first, second = (r.url.params for r in transport.requests)
        assert int(second["timestamp"]) - int(first["timestamp"]) == 7
        assert first["sign"] != second["sign"]

    def test_sandbox_refusals_in_tiktok_words(self, shop):
        credentials = ShopCredentials._base_manager.get(shop=shop)

        def call(method, path, *, query=None, body=None, cipher=True, token=True):
            params = {"app_key": credentials.app_key, "timestamp": str(int(time.time()))}
            if cipher:
                params["shop_cipher"] = credentials.shop_cipher
            params.update(query or {})
            params["sign"] = sign(path, params, body, credentials.app_secret)
            headers = {"x-tts-access-token": credentials.access_token} if token else {}
            with httpx.Client(transport=sandbox_transport()) as client:
                response = client.request(
                    method,
                    f"{credentials.api_base_url}{path}?{query_string(params)}",
                    content=body,
                    headers=headers,
                )
            return response.status_code, response.json()

        search = "/order/202309/orders/search"
        assert call("POST", search, query={"page_size": "10"}, body=b"{}")[1]["code"] == 0
        status, body = call("POST", search, body=b"{}")
        assert (status, body["code"]) == (400, 36009004) and "page_size" in body["message"]
        _, body = call("POST", search, query={"page_size": "10", "page_token": "bm9wZQ=="},
                       body=b"{}")  # fmt: skip
        assert "page_token" in body["message"]
        _, body = call("POST", search, query={"page_size": "10"}, body=b"not json")
        assert body["code"] == 36009022
        _, body = call("POST", search, query={"page_size": "10"}, body=b"{}", token=False)
        assert body["code"] == 36009004 and "access token" in body["message"]
        _, body = call("POST", search, query={"page_size": "10"}, body=b"{}", cipher=False)
        assert body["code"] == 106013
        _, body = call("GET", search, query={"page_size": "10"})
        assert body["code"] == 36009010
        _, body = call("POST", search, query={"page_size": "10", "sort_order": "UP"}, body=b"{}")
        assert "sort_order" in body["message"]
        _, body = call("GET", "/order/202309/orders", query={"ids": ",".join(["1"] * 51)})
        assert body["code"] == 0  # duplicates collapse to one id
        many = ",".join(str(n) for n in range(51))
        _, body = call("GET", "/order/202309/orders", query={"ids": many})
        assert "at most 50" in body["message"]

    def test_search_sorts_both_ways_and_filters(self, store, connector):
        payloads = generated(store, 5)
        base = int(time.time()) - 3600
        for offset, payload in enumerate(payloads):
            payload["create_time"] = base - 100 * offset
        payloads[0]["status"] = "IN_TRANSIT"
        load(store, payloads)
        newest_first = connector.request(
            "POST",
            "/order/202309/orders/search",
            query={"page_size": 2, "sort_field": "create_time", "sort_order": "DESC"},
            body={},
        )
        ids = [o["id"] for o in newest_first["orders"]]
        token = newest_first["next_page_token"]
        while token:
            page = connector.request(
                "POST",
                "/order/202309/orders/search",
                query={"page_size": 2, "sort_field": "create_time", "sort_order": "DESC",
                       "page_token": token},
                body={},
            )  # fmt: skip
            ids += [o["id"] for o in page["orders"]]
            token = page["next_page_token"]
        assert ids == [p["id"] for p in payloads]
        assert newest_first["total_count"] == 5
        in_transit = connector.request(
            "POST",
            "/order/202309/orders/search",
            query={"page_size": 10},
            body={"order_status": "IN_TRANSIT"},
        )
        assert [o["id"] for o in in_transit["orders"]] == [payloads[0]["id"]]

    def test_unknown_path(self, connector):
        with pytest.raises(PlatformRequestError) as caught:
            connector.request("GET", "/order/202309/nothing")
        assert caught.value.code == 36009009

    def test_429_with_retry_after_is_waited_out(self, store, connector, sleeps, monkeypatch):
        store.fault_rate, store.fault_kinds = 0.5, ["429"]
        store.save()
        monkeypatch.setattr("sandbox.base._rng", ScriptedFaults(0.1, 0.1))
        assert connector.warehouses()[0]["id"] == store.warehouse_id
        assert connector.http.last_attempts == 3
        # Retry-After: 1 beats the 10 ms backoff both times.
        assert connector.http.last_delays == [1.0, 1.0]
        assert sleeps == [1.0, 1.0]

    @pytest.mark.parametrize("kind", ["500", "503"])
    def test_server_errors_are_retried(self, store, connector, sleeps, monkeypatch, kind):
        store.fault_rate, store.fault_kinds = 0.5, [kind]
        store.save()
        monkeypatch.setattr("sandbox.base._rng", ScriptedFaults(0.1, 0.1))
        assert connector.warehouses()
        assert connector.http.last_attempts == 3
        assert len(sleeps) == 2 and all(0 < delay <= 0.04 for delay in sleeps)

    def test_the_store_rate_limit_answers_429_and_36009002(self, shop, store):
        store.rate_per_second, store.rate_burst = 0.01, 1
        store.save()
        connector = connector_for(shop, max_retries=0)
        connector.warehouses()
        with pytest.raises(PlatformRateLimited) as caught:
            connector.warehouses()
        assert caught.value.status == 429
        assert caught.value.retry_after == 100
        # Another path has its own bucket, as TikTok limits per API.
        assert connector.list_authorized_shops()

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            (b"<html>502 Bad Gateway</html>", "not JSON"),
            (b'{"data": {}}', "no integer 'code'"),
            (b'{"code": 0, "data": []}', "'data' is a JSON list"),
            (b"[]", "JSON list, not an object"),
        ],
    )
    def test_malformed_answers(self, shop, body, message):
        def corrupt(response: httpx.Response) -> httpx.Response:
            return httpx.Response(200, content=body, headers={"content-type": "text/html"})

        connector = connector_for(shop, transport=RecordingTransport(rewrite=corrupt))
        with pytest.raises(PlatformResponseError, match=message):
            connector.warehouses()

    def test_a_malformed_order_names_the_field(self, store, connector):
        (payload,) = load(store, generated(store, 1))
        row = SandboxOrder.objects.get(store=store, order_id=payload["id"])
        row.payload["payment"]["sub_total"] = "12,50"
        row.save()
        with pytest.raises(PlatformResponseError, match=r"payment\.sub_total"):
            connector.fetch_orders_by_id(platform_order_ids=[payload["id"]])


# --- cancellations ------------------------------------------------------------------------------


@pytest.mark.django_db
class TestCancellations:
    def test_search_approve_and_reject(self, store, connector):
        payloads = load(store, generated(store, 3))
        sandbox = TikTokSandbox()
        for order in store.orders.order_by("pk"):
            sandbox.request_cancellation(store=store, order=order)
        requests = connector.fetch_cancellations(updated_since=timezone.now() - LONG_AGO)
        assert len(requests) == 3
        assert {r.platform_order_id for r in requests} == {p["id"] for p in payloads}
        first, second, third = sorted(requests, key=lambda r: r.cancel_id)
        assert first.status == "CANCELLATION_REQUEST_PENDING"
        assert first.answer_by - first.requested_at == timedelta(hours=48)
        assert first.platform_line_ids

        connector.answer_cancellation(
            cancel_id=first.cancel_id, platform_order_id=first.platform_order_id, approve=True
        )
        connector.answer_cancellation(
            cancel_id=second.cancel_id,
            platform_order_id=second.platform_order_id,
            approve=False,
            reason="Already packed and labelled",
        )

        statuses = {c["cancel_id"]: c["cancel_status"] for c in show(store, "cancellations")}
        assert statuses == {
            first.cancel_id: "CANCELLATION_REQUEST_SUCCESS",
            second.cancel_id: "CANCELLATION_REQUEST_CANCEL",
            third.cancel_id: "CANCELLATION_REQUEST_PENDING",
        }
        orders = {o["id"]: o for o in show(store, "orders")}
        assert orders[first.platform_order_id]["status"] == "CANCELLED"
        assert orders[second.platform_order_id]["status"] == "AWAITING_SHIPMENT"
        assert not orders[second.platform_order_id]["is_buyer_request_cancel"]
        rejected = store.cancellations.get(cancel_id=second.cancel_id)
        assert rejected.decision == "reject"
        assert rejected.reject_reason == "seller_reject_apply_product_has_been_packed"

        (cancelled,) = connector.fetch_orders_by_id(platform_order_ids=[first.platform_order_id])
        assert cancelled.status == "cancelled"
        assert cancelled.cancelled_at is not None
        assert all(line.is_cancelled for line in cancelled.lines)

        # The same answer again is harmless; a different one is refused.
        connector.answer_cancellation(
            cancel_id=first.cancel_id, platform_order_id=first.platform_order_id, approve=True
        )
        with pytest.raises(PlatformRequestError):
            connector.answer_cancellation(
                cancel_id=second.cancel_id,
                platform_order_id=second.platform_order_id,
                approve=True,
            )

    def test_search_pages_through_many_requests(self, store, connector):
        load(store, generated(store, 55))
        sandbox = TikTokSandbox()
        for order in store.orders.order_by("pk"):
            sandbox.request_cancellation(store=store, order=order)
        transport = RecordingTransport()
        connector = connector_for(connector.shop, transport=transport)
        requests = connector.fetch_cancellations(updated_since=timezone.now() - LONG_AGO)
        assert len({r.cancel_id for r in requests}) == 55
        assert len(transport.requests) == 2  # 50 + 5

    def test_unknown_cancellation(self, connector):
        with pytest.raises(PlatformNotFound):
            connector.answer_cancellation(cancel_id="1", platform_order_id="2", approve=True)


# --- fulfilment ---------------------------------------------------------------------------------


@pytest.mark.django_db
class TestShipping:
    def test_ship_then_update_tracking(self, store, connector):
        (payload,) = load(store, generated(store, 1))
        result = connector.ship(
            request=ShipRequest(
                platform_order_id=payload["id"],
                tracking_number="9400111899223197428490",
                carrier_code="usps",
                platform_provider_id=USPS,
            )
        )
        assert result.platform_package_id == payload["packages"][0]["id"]
        (shipment,) = show(store, "shipments")
        assert shipment["tracking_number"] == "9400111899223197428490"
        assert shipment["orders"][0]["id"] == payload["id"]
        (order,) = connector.fetch_orders_by_id(platform_order_ids=[payload["id"]])
        assert (order.platform_status, order.status) == ("AWAITING_COLLECTION", "shipped")
        assert order.shipped_at is not None

        connector.update_tracking(
            request=ShipRequest(
                platform_order_id=payload["id"],
                tracking_number="1Z999AA10123456784",
                carrier_code="ups",
                platform_provider_id=UPS,
                platform_package_id=result.platform_package_id,
            )
        )
        (shipment,) = show(store, "shipments")
        assert (shipment["tracking_number"], shipment["shipping_provider_name"]) == (
            "1Z999AA10123456784",
            "UPS",
        )
        assert stored(store, payload["id"])["tracking_number"] == "1Z999AA10123456784"

    def test_partial_shipment_splits_a_package(self, store, connector):
        (payload,) = generated(store, 1)
        item = payload["line_items"][0]
        payload["line_items"] = [
            item,
            {**copy.deepcopy(item), "id": str(int(item["id"]) + 1), "sku_id": "4242"},
        ]
        load(store, [payload])
        result = connector.ship(
            request=ShipRequest(
                platform_order_id=payload["id"],
                tracking_number="TRACK1",
                carrier_code="usps",
                platform_provider_id=USPS,
                platform_line_ids=[item["id"]],
            )
        )
        assert result.platform_package_id != payload["packages"][0]["id"]
        assert stored(store, payload["id"])["status"] == "PARTIALLY_SHIPPING"
        connector.ship(
            request=ShipRequest(
                platform_order_id=payload["id"],
                tracking_number="TRACK2",
                carrier_code="usps",
                platform_provider_id=USPS,
            )
        )
        final = stored(store, payload["id"])
        assert final["status"] == "AWAITING_COLLECTION"
        assert len(final["packages"]) == 2
        assert [s["tracking_number"] for s in show(store, "shipments")] == ["TRACK1", "TRACK2"]

    def test_ship_an_existing_package(self, store, connector):
        (payload,) = load(store, generated(store, 1))
        package_id = payload["packages"][0]["id"]
        connector.ship(
            request=ShipRequest(
                platform_order_id=payload["id"],
                tracking_number="PKG-TRACK",
                carrier_code="usps",
                platform_provider_id=USPS,
                platform_package_id=package_id,
            )
        )
        (shipment,) = show(store, "shipments")
        assert (shipment["id"], shipment["tracking_number"]) == (package_id, "PKG-TRACK")
        with pytest.raises(PlatformRequestError, match="already been shipped"):
            connector.ship(
                request=ShipRequest(
                    platform_order_id=payload["id"],
                    tracking_number="AGAIN",
                    carrier_code="usps",
                    platform_provider_id=USPS,
                    platform_package_id=package_id,
                )
            )

    def test_update_tracking_by_order_and_tiktok_shipped_packages(self, store, connector):
        seller, platform = generated(store, 2)
        platform["shipping_type"] = "TIKTOK"
        load(store, [seller, platform])
        usps = {"carrier_code": "usps", "platform_provider_id": USPS}
        connector.ship(
            request=ShipRequest(platform_order_id=seller["id"], tracking_number="A1", **usps)
        )
        connector.update_tracking(
            request=ShipRequest(platform_order_id=seller["id"], tracking_number="A2", **usps)
        )
        assert stored(store, seller["id"])["line_items"][0]["tracking_number"] == "A2"
        with pytest.raises(PlatformRequestError, match="TikTok logistics"):
            connector.ship(
                request=ShipRequest(platform_order_id=platform["id"], tracking_number="X", **usps)
            )
        connector.ship(
            request=ShipRequest(
                platform_order_id=platform["id"],
                tracking_number="ignored",
                platform_package_id=platform["packages"][0]["id"],
                **usps,
            )
        )
        shipped = stored(store, platform["id"])
        assert shipped["status"] == "AWAITING_COLLECTION"
        # TikTok's carrier (USPS) issued the number: it passes the IMpb check digit.
        assert tracking_number_valid(carrier="usps", number=shipped["tracking_number"])

    def test_refusals(self, store, connector):
        pending, _ = load(store, generated(store, 2))
        TikTokSandbox().request_cancellation(
            store=store, order=store.orders.get(order_id=pending["id"])
        )
        ship = {"tracking_number": "T", "carrier_code": "usps", "platform_provider_id": USPS}
        with pytest.raises(PlatformRequestError, match="pending cancellation"):
            connector.ship(request=ShipRequest(platform_order_id=pending["id"], **ship))
        with pytest.raises(PlatformNotFound):
            connector.ship(request=ShipRequest(platform_order_id="576999999999999999", **ship))
        with pytest.raises(PlatformRequestError, match="shipping_provider_id"):
            connector.ship(
                request=ShipRequest(
                    platform_order_id=pending["id"], tracking_number="T", carrier_code="usps"
                )
            )
        assert show(store, "shipments") == []

    def test_providers_and_warehouses(self, store, connector):
        (payload,) = generated(store, 1)
        providers = connector.shipping_providers(delivery_option_id=payload["delivery_option_id"])
        assert {"id": USPS, "name": "USPS"} in providers
        assert [w["id"] for w in connector.warehouses()] == [store.warehouse_id]


# --- inventory ----------------------------------------------------------------------------------


@pytest.mark.django_db
class TestInventory:
    def test_set_and_read_back_with_a_per_item_error(self, store, connector):
        first, second, third = store.products.order_by("pk")
        results = connector.set_inventory(
            updates=[
                InventoryUpdate(first.sku_id, 42, platform_product_id=first.product_id),
                InventoryUpdate(second.sku_id, 0, platform_product_id=second.product_id),
                InventoryUpdate("1739999999999", 5, platform_product_id=first.product_id),
                InventoryUpdate(third.sku_id, 5),  # no product id: cannot be sent
            ]
        )
        assert [r.ok for r in results] == [True, True, False, False]
        assert results[2].code == "12052990" and "not in this product" in results[2].error
        assert results[3].code == "missing_product_id"

        levels = connector.get_inventory(platform_sku_ids=[first.sku_id, second.sku_id])
        assert {level.platform_sku_id: level.quantity for level in levels} == {
            first.sku_id: 42,
            second.sku_id: 0,
        }
        shown = {
            sku["id"]: sku["total_available_quantity"]
            for product in show(store, "inventory")
            for sku in product["skus"]
        }
        assert shown[first.sku_id] == 42
        first.refresh_from_db()
        assert first.version == 1

    def test_a_bad_count_fails_only_its_product(self, store, connector):
        first, second, _ = store.products.order_by("pk")
        results = connector.set_inventory(
            updates=[
                InventoryUpdate(first.sku_id, 99999, platform_product_id=first.product_id),
                InventoryUpdate(second.sku_id, 3, platform_product_id=second.product_id),
            ]
        )
        assert (results[0].ok, results[0].code) == (False, "12019024")
        assert results[1].ok
        first.refresh_from_db()
        assert first.quantity == 0


# --- webhooks -----------------------------------------------------------------------------------


@pytest.mark.django_db
class TestWebhooks:
    def test_a_sandbox_sent_webhook_verifies_and_parses(self, shop, store, monkeypatch):
        received: list[httpx.Request] = []

        def receiver(request: httpx.Request) -> httpx.Response:
            received.append(request)
            return httpx.Response(200, json={"ok": True})

        monkeypatch.setattr(
            tiktok_sandbox, "webhook_transport", lambda url: httpx.MockTransport(receiver)
        )
        (payload,) = load(store, generated(store, 1))
        order = store.orders.get(order_id=payload["id"])
        sandbox = TikTokSandbox()
        sandbox.request_cancellation(store=store, order=order)
        order.refresh_from_db()
        assert sandbox.notify_order_changed(store=store, order=order) == [200, 200]

        credentials = ShopCredentials._base_manager.get(shop=shop)
        topics = []
        for request in received:
            assert TikTokConnector.verify_webhook(
                headers=request.headers, body=request.content, credentials=credentials
            )
            event = TikTokConnector.parse_webhook(headers=request.headers, body=request.content)
            assert event.platform_order_ids == [payload["id"]]
            assert event.shop_key == shop.platform_shop_id
            topics.append(event.topic)
            record = SandboxWebhook.objects.get(delivery_id=event.delivery_id)
            assert record.response_status == 200
            assert record.body.encode() == request.content
        assert topics == ["ORDER_STATUS_CHANGE", "CANCELLATION_STATUS_CHANGE"]
        tampered = received[0].content.replace(b"AWAITING_SHIPMENT", b"CANCELLED")
        assert not TikTokConnector.verify_webhook(
            headers=received[0].headers, body=tampered, credentials=credentials
        )


# --- isolation ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_one_shop_cannot_reach_another_shops_orders(tenant_a, tenant_b, store, connector):
    other_shop, _ = make_shop(tenant_b, name="Other Shop")
    intruder = connector_for(other_shop)
    (payload,) = load(store, generated(store, 1))
    TikTokSandbox().request_cancellation(
        store=store, order=store.orders.get(order_id=payload["id"])
    )
    (cancel,) = store.cancellations.all()

    assert intruder.fetch_orders_by_id(platform_order_ids=[payload["id"]]) == []
    assert intruder.fetch_orders(updated_since=timezone.now() - LONG_AGO).orders == []
    assert intruder.fetch_cancellations(updated_since=timezone.now() - LONG_AGO) == []
    with pytest.raises(PlatformNotFound):
        intruder.answer_cancellation(
            cancel_id=cancel.cancel_id, platform_order_id=payload["id"], approve=True
        )
    with pytest.raises(PlatformNotFound):
        intruder.ship(
            request=ShipRequest(
                platform_order_id=payload["id"],
                tracking_number="T",
                carrier_code="usps",
                platform_provider_id=USPS,
            )
        )
    # Using the other shop's cipher with one's own app key is refused too.
    intruder.credentials.shop_cipher = connector.credentials.shop_cipher
    with pytest.raises(PlatformRequestError, match="shop_cipher"):
        intruder.warehouses()
    assert json.loads(json.dumps(show(store, "cancellations")))[0]["cancel_status"] == (
        "CANCELLATION_REQUEST_PENDING"
    )
