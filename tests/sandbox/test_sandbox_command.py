"""`manage.py sandbox spike|load|show|faults` on the TikTok sandbox (PostgreSQL)."""

from __future__ import annotations

import json
import random
from decimal import Decimal
from io import StringIO

import httpx
import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from sandbox import tiktok as tiktok_sandbox
from sandbox.base import reset_rate_limits
from sandbox.models import SandboxOrder, SandboxStore, SandboxWebhook
from sandbox.tiktok import TikTokSandbox
from shops.models import ApiEndpoint, ShopCredentials
from tests.factories import ListingFactory, ShopCredentialsFactory, ShopFactory, SkuFactory


@pytest.fixture(autouse=True)
def fresh_sandbox_rate_limits():
    """The sandbox's rate-limit buckets live in the process: start every test with full ones."""
    reset_rate_limits()


@pytest.fixture
def shop(tenant_a):
    shop = ShopFactory(tenant=tenant_a, platform="tiktok", name="Creator Live")
    for number in range(4):
        sku = SkuFactory(tenant=tenant_a, code=f"LIVE-{number}", cost=Decimal("6"))
        ListingFactory(tenant=tenant_a, shop=shop, sku=sku)
    return shop


def run(*args: str) -> str:
    out = StringIO()
    call_command("sandbox", *args, stdout=out)
    return out.getvalue()


def store_of(shop) -> SandboxStore:
    return SandboxStore.objects.get(platform="tiktok", shop_key=shop.platform_shop_id)


def orders_file(tmp_path, payloads, name="orders.json"):
    path = tmp_path / name
    path.write_text(json.dumps(payloads))
    return str(path)


def generated(store, count: int, seed: int = 2) -> list[dict]:
    sandbox = TikTokSandbox()
    rng = random.Random(seed)
    products = list(store.products.order_by("pk"))
    return [
        sandbox.generate_order(store=store, rng=rng, products=products, now=timezone.now())
        for _ in range(count)
    ]


@pytest.mark.django_db
class TestSpike:
    def test_connects_the_shop_and_lands_orders_and_cancellations(self, shop):
        output = run("spike", "--shop", str(shop.pk), "--orders", "40", "--seed", "4",
                     "--cancel-rate", "0.25")  # fmt: skip
        store = store_of(shop)
        credentials = ShopCredentials._base_manager.get(shop=shop)
        assert credentials.api_endpoint == ApiEndpoint.SANDBOX
        assert store.products.count() == 4
        assert store.orders.count() == 40
        cancellations = store.cancellations.count()
        assert 0 < cancellations < 40
        assert "40 orders" in output and f"{cancellations} cancellation requests" in output
        flagged = [o for o in store.orders.all() if o.payload["is_buyer_request_cancel"]]
        assert len(flagged) == cancellations

    def test_the_same_seed_gives_the_same_orders(self, shop, tenant_b):
        twin = ShopFactory(tenant=tenant_b, platform="tiktok", name="Twin")
        for number in range(4):
            sku = SkuFactory(tenant=tenant_b, code=f"LIVE-{number}", cost=Decimal("6"))
            ListingFactory(tenant=tenant_b, shop=twin, sku=sku)
        for target in (shop, twin):
            run("spike", "--shop", str(target.pk), "--orders", "5", "--seed", "9")

        def summary(target):
            return [
                (o.payload["payment"]["total_amount"], o.payload["recipient_address"]["name"])
                for o in store_of(target).orders.order_by("pk")
            ]

        assert summary(shop) == summary(twin)

    def test_webhooks_option_sends_signed_order_webhooks(self, shop, monkeypatch):
        received = []

        def receiver(request: httpx.Request) -> httpx.Response:
            received.append(json.loads(request.content))
            return httpx.Response(200)

        monkeypatch.setattr(
            tiktok_sandbox, "webhook_transport", lambda url: httpx.MockTransport(receiver)
        )
        output = run("spike", "--shop", str(shop.pk), "--orders", "6", "--cancel-rate", "1",
                     "--webhooks")  # fmt: skip
        types = sorted(event["type"] for event in received)
        assert types == [1] * 6 + [11] * 6
        assert "12 delivered, 0 not" in output
        assert (
            SandboxWebhook.objects.filter(store=store_of(shop), response_status=200).count() == 12
        )

    def test_no_webhooks_by_default(self, shop):
        run("spike", "--shop", str(shop.pk), "--orders", "3")
        assert not SandboxWebhook.objects.exists()

    def test_a_shop_on_the_real_platform_is_refused(self, tenant_a):
        live = ShopCredentialsFactory(
            shop=ShopFactory(tenant=tenant_a, platform="tiktok"), access_token="real"
        ).shop
        with pytest.raises(CommandError, match="real platform"):
            run("spike", "--shop", str(live.pk), "--orders", "3")
        assert not SandboxStore.objects.exists()

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["--shop", "999999", "--orders", "3"], "does not exist"),
            (["--orders", "0"], "at least one order"),
            (["--orders", "3", "--cancel-rate", "2"], "between 0 and 1"),
        ],
    )
    def test_bad_input(self, shop, args, message):
        if "--shop" not in args:
            args = ["--shop", str(shop.pk), *args]
        with pytest.raises(CommandError, match=message):
            run("spike", *args)

    def test_a_platform_without_sandbox(self, tenant_a):
        manual = ShopFactory(tenant=tenant_a, platform="manual")
        with pytest.raises(CommandError, match="no sandbox"):
            run("spike", "--shop", str(manual.pk), "--orders", "1")


@pytest.mark.django_db
class TestLoad:
    def test_loads_and_replaces(self, shop, tmp_path):
        run("spike", "--shop", str(shop.pk), "--orders", "1", "--cancel-rate", "0")
        store = store_of(shop)
        payloads = generated(store, 2)
        assert "2 orders loaded" in run(
            "load", "--shop", str(shop.pk), orders_file(tmp_path, payloads)
        )
        payloads[0]["status"] = "IN_TRANSIT"
        run("load", "--shop", str(shop.pk), orders_file(tmp_path, payloads[:1]))
        assert store.orders.count() == 3
        assert store.orders.get(order_id=payloads[0]["id"]).status == "IN_TRANSIT"

    def test_a_bad_order_loads_nothing_and_names_index_and_field(self, shop, tmp_path):
        run("spike", "--shop", str(shop.pk), "--orders", "1", "--cancel-rate", "0")
        store = store_of(shop)
        payloads = generated(store, 3)
        payloads[2]["payment"]["sub_total"] = 12.5
        with pytest.raises(CommandError, match=r"order 2: payment\.sub_total: expected a decimal"):
            run("load", "--shop", str(shop.pk), orders_file(tmp_path, payloads))
        assert store.orders.count() == 1  # only the spike's order: nothing of the file

    @pytest.mark.parametrize(
        ("mutate", "message"),
        [
            (lambda p: p[1].pop("line_items"), r"order 1: line_items: expected a non-empty list"),
            (lambda p: p[0].update(id=576), r"order 0: id: expected a digit string"),
            (lambda p: p[1].update(status="SHIPPED"), r"order 1: status: expected one of"),
            (
                lambda p: p[0]["line_items"][0].update(sale_price="free"),
                r"order 0: line_items\[0\]\.sale_price",
            ),
            (
                lambda p: p[1]["recipient_address"].pop("postal_code"),
                r"order 1: recipient_address\.postal_code",
            ),
            (lambda p: p[1].update(id=p[0]["id"]), r"order 1: id: .* is also order 0"),
        ],
    )
    def test_shape_errors(self, shop, tmp_path, mutate, message):
        run("spike", "--shop", str(shop.pk), "--orders", "1", "--cancel-rate", "0")
        payloads = generated(store_of(shop), 2)
        mutate(payloads)
        with pytest.raises(CommandError, match=message):
            run("load", "--shop", str(shop.pk), orders_file(tmp_path, payloads))
        assert SandboxOrder.objects.count() == 1

    def test_platforms_without_bulk_load_get_the_same_all_or_nothing(
        self, shop, tmp_path, monkeypatch
    ):
        class OneByOne(TikTokSandbox):
            load_orders = None  # as a sandbox without the optional bulk hook

        monkeypatch.setattr("sandbox.actions.sandbox_for", lambda platform: OneByOne())
        run("spike", "--shop", str(shop.pk), "--orders", "1", "--cancel-rate", "0")
        payloads = generated(store_of(shop), 3)
        payloads[2]["payment"]["total_amount"] = None
        with pytest.raises(CommandError, match=r"order 2: payment\.total_amount"):
            run("load", "--shop", str(shop.pk), orders_file(tmp_path, payloads))
        assert SandboxOrder.objects.count() == 1
        run("load", "--shop", str(shop.pk), orders_file(tmp_path, payloads[:2]))
        assert SandboxOrder.objects.count() == 3

    @pytest.mark.parametrize(
        ("content", "message"),
        [("{not json", "not valid JSON"), ('{"id": "1"}', "JSON list"), ("[]", "JSON list")],
    )
    def test_bad_files(self, shop, tmp_path, content, message):
        path = tmp_path / "bad.json"
        path.write_text(content)
        with pytest.raises(CommandError, match=message):
            run("load", "--shop", str(shop.pk), str(path))

    def test_missing_file(self, shop, tmp_path):
        with pytest.raises(CommandError, match="cannot read"):
            run("load", "--shop", str(shop.pk), str(tmp_path / "nope.json"))


@pytest.mark.django_db
class TestShow:
    def test_orders_as_order_detail_and_the_other_views(self, shop, tmp_path):
        run("spike", "--shop", str(shop.pk), "--orders", "2", "--cancel-rate", "1")
        orders = json.loads(run("show", "--shop", str(shop.pk)))
        assert len(orders) == 2
        assert {"id", "status", "payment", "line_items", "recipient_address"} <= set(orders[0])
        cancellations = json.loads(run("show", "--shop", str(shop.pk), "cancellations"))
        assert {c["order_id"] for c in cancellations} == {o["id"] for o in orders}
        inventory = json.loads(run("show", "--shop", str(shop.pk), "inventory"))
        assert sum(len(product["skus"]) for product in inventory) == 4
        assert json.loads(run("show", "--shop", str(shop.pk), "shipments")) == []

    def test_unpaid_orders_show_no_recipient(self, shop, tmp_path):
        run("spike", "--shop", str(shop.pk), "--orders", "1", "--cancel-rate", "0")
        (payload,) = generated(store_of(shop), 1)
        payload["status"] = "UNPAID"
        run("load", "--shop", str(shop.pk), orders_file(tmp_path, [payload]))
        shown = {o["id"]: o for o in json.loads(run("show", "--shop", str(shop.pk), "orders"))}
        assert "recipient_address" not in shown[payload["id"]]

    def test_unknown_view(self, shop):
        with pytest.raises(CommandError):
            run("show", "--shop", str(shop.pk), "parcels")


@pytest.mark.django_db
class TestFaults:
    def test_sets_and_clears_faults(self, shop):
        output = run("faults", "--shop", str(shop.pk), "--rate", "0.2", "--kinds", "429,500",
                     "--slow", "0.5")  # fmt: skip
        store = store_of(shop)
        assert (store.fault_rate, store.fault_kinds, store.slow_seconds) == (
            0.2,
            ["429", "500"],
            0.5,
        )
        assert "fault rate 0.2" in output
        run("faults", "--shop", str(shop.pk), "--rate", "0", "--slow", "0")
        store.refresh_from_db()
        assert (store.fault_rate, store.fault_kinds, store.slow_seconds) == (0.0, ["429", "500"], 0)

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["--rate", "1.5"], "between 0 and 1"),
            (["--rate", "0.1", "--kinds", "429,explode"], "unknown fault kind"),
            (["--rate", "0.1", "--slow", "-1"], "negative"),
        ],
    )
    def test_bad_input(self, shop, args, message):
        with pytest.raises(CommandError, match=message):
            run("faults", "--shop", str(shop.pk), *args)
