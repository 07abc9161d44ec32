"""The stock push against the sandboxes of all four platforms, over real in-process HTTP."""

from __future__ import annotations

import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.utils import timezone

from inventory.availability import listing_available, skus_changed
from inventory.models import InventoryPush, Listing, PushResult, Sku
from inventory.push import push_pending, shop_reconcile
from inventory.stock import stock_adjust, stock_count
from inventory.tasks import flush_shop_pushes
from sandbox.base import reset_rate_limits
from sandbox.models import SandboxProduct
from shops.models import ShopCredentials
from shops.platforms import connector_for
from tests.e2e.helpers import connect_shop
from tests.factories import ShopWarehouseFactory, WarehouseFactory
from tkerp.tenancy import tenant_context

pytestmark = pytest.mark.django_db

PLATFORMS = ["tiktok", "shopify", "amazon", "ebay"]
SKUS = ("MUG-01", "CAP-02", "PIN-03")


@pytest.fixture(autouse=True)
def sandbox_http(settings):
    # A retried 429 waits the platform's Retry-After at most; the backoff itself stays short.
    settings.TKERP_HTTP_BACKOFF_BASE = 0.01
    reset_rate_limits()
    yield
    reset_rate_limits()


@pytest.fixture
def world(tenant_a):
    """Four shops of one tenant, each listing the same three SKUs in its sandbox, and stock."""
    shops = {}
    stores = {}
    for platform in PLATFORMS:
        shops[platform], stores[platform] = connect_shop(tenant_a, platform, sku_codes=SKUS)
    warehouse = WarehouseFactory(tenant=tenant_a, code="MAIN")
    skus = {sku.code: sku for sku in Sku._base_manager.filter(tenant=tenant_a)}
    with tenant_context(tenant_a):
        for number, code in enumerate(SKUS):
            stock_count(sku=skus[code], warehouse=warehouse, counted=20 + number, user=None)
    return {"shops": shops, "stores": stores, "warehouse": warehouse, "skus": skus}


def sandbox_quantity(listing: Listing) -> int:
    return SandboxProduct.objects.get(
        store__shop_key=listing.shop.platform_shop_id,
        store__platform=listing.shop.platform,
        sku_id=listing.platform_sku_id,
    ).quantity


def flush_all(tenant, shops) -> None:
    with tenant_context(tenant):
        for shop in shops.values():
            push_pending(shop=shop, force=True)


def all_listings(tenant) -> list[Listing]:
    return list(
        Listing._base_manager.filter(tenant=tenant).select_related("shop", "sku").order_by("pk")
    )


class TestEveryChannelGetsTheRulesNumber:
    def test_after_a_stock_change_every_sandbox_shows_what_the_rules_say(self, tenant_a, world):
        mug = world["skus"]["MUG-01"]
        # Different buffers on each platform's MUG listing.
        rules = {
            "tiktok": {"buffer_units": 2},
            "shopify": {"buffer_percent": Decimal("25")},
            "amazon": {"max_publish": 5},
            "ebay": {"zero_below": 50},
        }
        for platform, fields in rules.items():
            Listing._base_manager.filter(shop=world["shops"][platform], sku=mug).update(**fields)
        with tenant_context(tenant_a):
            stock_adjust(
                sku=mug,
                warehouse=world["warehouse"],
                delta=10,
                kind="receive",
                user=None,
                note="delivery",
            )
            skus_changed(tenant=tenant_a, sku_ids=[mug.pk])
        flush_all(tenant_a, world["shops"])

        expected = {"tiktok": 28, "shopify": 22, "amazon": 5, "ebay": 0}  # free 30
        for listing in all_listings(tenant_a):
            wanted = listing_available(listing)
            if listing.sku_id == mug.pk:
                assert wanted == expected[listing.shop.platform], listing.shop.platform
            else:
                # Stock untouched by the change: never pushed, never marked due.
                assert listing.published_quantity is None
                continue
            assert sandbox_quantity(listing) == wanted, listing.shop.platform
            assert listing.published_quantity == wanted
            push = InventoryPush._base_manager.get(listing=listing)
            assert push.result == PushResult.OK
            assert push.quantity == wanted
            assert push.latency_ms is not None and push.requested_at is not None

    def test_all_skus_reach_all_four_platforms(self, tenant_a, world):
        with tenant_context(tenant_a):
            skus_changed(tenant=tenant_a, sku_ids=[s.pk for s in world["skus"].values()])
        flush_all(tenant_a, world["shops"])
        listings = all_listings(tenant_a)
        assert len(listings) == 12
        for listing in listings:
            assert sandbox_quantity(listing) == 20 + SKUS.index(listing.sku.code)

    def test_only_the_shops_warehouses_count(self, tenant_a, world):
        mug = world["skus"]["MUG-01"]
        far = WarehouseFactory(tenant=tenant_a, code="FAR")
        with tenant_context(tenant_a):
            stock_count(sku=mug, warehouse=far, counted=100, user=None)
            ShopWarehouseFactory(
                tenant=tenant_a, shop=world["shops"]["ebay"], warehouse=world["warehouse"]
            )
            skus_changed(tenant=tenant_a, sku_ids=[mug.pk])
        flush_all(tenant_a, world["shops"])
        for listing in all_listings(tenant_a):
            if listing.sku_id != mug.pk:
                continue
            wanted = 20 if listing.shop.platform == "ebay" else 120
            assert sandbox_quantity(listing) == wanted, listing.shop.platform

    def test_a_push_the_platform_already_shows_is_skipped(self, tenant_a, world):
        mug = world["skus"]["MUG-01"]
        with tenant_context(tenant_a):
            skus_changed(tenant=tenant_a, sku_ids=[mug.pk])
            flush_all(tenant_a, world["shops"])
            skus_changed(tenant=tenant_a, sku_ids=[mug.pk])
            flush_all(tenant_a, world["shops"])
        results = list(
            InventoryPush._base_manager.filter(listing__sku=mug)
            .order_by("pk")
            .values_list("result", flat=True)
        )
        assert results == [PushResult.OK] * 4 + [PushResult.SKIPPED] * 4


class TestCoalescing:
    def test_three_changes_make_one_push_with_the_latest_number(self, tenant_a, world):
        mug = world["skus"]["MUG-01"]
        shopify = world["shops"]["shopify"]
        with tenant_context(tenant_a):
            for delta in (5, -3, 7):
                stock_adjust(
                    sku=mug,
                    warehouse=world["warehouse"],
                    delta=delta,
                    kind="adjust",
                    user=None,
                    note="recount",
                )
                skus_changed(tenant=tenant_a, sku_ids=[mug.pk])
            listing = Listing._base_manager.get(shop=shopify, sku=mug)
            first_requested = listing.push_requested_at
            assert listing.push_due_at is not None
            # The flush task waits out the debounce window, then pushes once.
            waited: list[float] = []
            result = flush_shop_pushes(tenant_a.pk, shopify.pk, sleep=waited.append)
        assert result["pushed"] == 1
        assert len(waited) == 1 and 0 < waited[0] <= 0.3
        pushes = list(InventoryPush._base_manager.filter(listing__shop=shopify))
        assert len(pushes) == 1
        assert pushes[0].quantity == 29 == sandbox_quantity(listing)
        assert pushes[0].requested_at == first_requested

    def test_the_debounce_window_is_not_extended_by_later_changes(self, tenant_a, world):
        mug = world["skus"]["MUG-01"]
        now = timezone.now()
        with tenant_context(tenant_a):
            skus_changed(tenant=tenant_a, sku_ids=[mug.pk], now=now)
            skus_changed(tenant=tenant_a, sku_ids=[mug.pk], now=now + timedelta(milliseconds=200))
        listing = Listing._base_manager.get(shop=world["shops"]["tiktok"], sku=mug)
        assert listing.push_requested_at == now
        assert listing.push_due_at == now + timedelta(milliseconds=300)

    def test_a_flush_before_the_window_closes_pushes_nothing(self, tenant_a, world):
        mug = world["skus"]["MUG-01"]
        tiktok = world["shops"]["tiktok"]
        now = timezone.now()
        with tenant_context(tenant_a):
            skus_changed(tenant=tenant_a, sku_ids=[mug.pk], now=now)
            early = push_pending(shop=tiktok, now=now + timedelta(milliseconds=100))
            late = push_pending(shop=tiktok, now=now + timedelta(milliseconds=400))
        assert (early.pushed, late.pushed) == (0, 1)


class TestRetries:
    def test_a_429_from_the_sandbox_is_retried(self, tenant_a, world, caplog):
        shopify = world["shops"]["shopify"]
        store = world["stores"]["shopify"]
        # The platform allows one call and then throttles; our client would send faster.
        store.rate_per_second = 2.0
        store.rate_burst = 1
        store.save()
        ShopCredentials._base_manager.filter(shop=shopify).update(
            extra={
                **ShopCredentials._base_manager.get(shop=shopify).extra,
                "rate_limit": {"per_second": 100, "burst": 100},
            }
        )
        with tenant_context(tenant_a):
            skus_changed(tenant=tenant_a, sku_ids=[s.pk for s in world["skus"].values()])
            with caplog.at_level("INFO", logger="tkerp.platforms"):
                summary = push_pending(shop=shopify, force=True)
        assert any("-> 429" in message for message in caplog.messages)
        assert (summary.pushed, summary.failed) == (3, 0)
        for listing in Listing._base_manager.filter(shop=shopify):
            assert sandbox_quantity(listing) == listing.published_quantity

    def test_a_failed_push_is_requeued_with_backoff(self, tenant_a, world, settings):
        settings.TKERP_HTTP_MAX_RETRIES = 0
        ebay = world["shops"]["ebay"]
        store = world["stores"]["ebay"]
        store.fault_rate = 1.0
        store.fault_kinds = ["500"]
        store.save()
        mug = world["skus"]["MUG-01"]
        with tenant_context(tenant_a):
            skus_changed(tenant=tenant_a, sku_ids=[mug.pk])
            summary = push_pending(shop=ebay, force=True)
            assert (summary.failed, summary.requeued) == (1, 1)
            listing = Listing._base_manager.get(shop=ebay, sku=mug)
            assert listing.push_due_at > timezone.now()
            assert listing.push_failures == 1
            failed = InventoryPush._base_manager.get(listing=listing)
            assert failed.result == PushResult.ERROR and "500" in failed.error
            store.fault_rate = 0
            store.save()
            summary = push_pending(shop=ebay, force=True)
        listing.refresh_from_db()
        assert summary.pushed == 1
        assert listing.push_failures == 0 and listing.push_due_at is None
        assert sandbox_quantity(listing) == 20
        latest = InventoryPush._base_manager.filter(listing=listing).order_by("-pk").first()
        assert (latest.result, latest.attempts) == (PushResult.OK, 2)
        # Latency counts from the first stock change, across the failed attempt.
        assert latest.requested_at == failed.requested_at


class TestReconcile:
    def test_reconcile_repairs_a_quantity_changed_behind_our_back(self, tenant_a, world):
        with tenant_context(tenant_a):
            skus_changed(tenant=tenant_a, sku_ids=[s.pk for s in world["skus"].values()])
        flush_all(tenant_a, world["shops"])
        mug = world["skus"]["MUG-01"]
        for platform in PLATFORMS:
            SandboxProduct.objects.filter(
                store=world["stores"][platform], seller_sku="MUG-01"
            ).update(quantity=999)
        with tenant_context(tenant_a):
            reports = {p: shop_reconcile(shop=world["shops"][p]) for p in PLATFORMS}
        for platform, report in reports.items():
            assert report.error == "", platform
            assert report.checked == 3 and report.in_sync == 2, platform
            assert [
                (r.sku_code, r.platform_quantity, r.quantity, r.ok) for r in report.repaired
            ] == [("MUG-01", 999, 20, True)], platform
        for listing in all_listings(tenant_a):
            assert sandbox_quantity(listing) == 20 + SKUS.index(listing.sku.code)
        repaired = InventoryPush._base_manager.filter(result=PushResult.REPAIRED)
        assert repaired.count() == 4
        assert set(repaired.values_list("platform_quantity", flat=True)) == {999}
        assert set(repaired.values_list("listing__sku", flat=True)) == {mug.pk}

    def test_reconcile_of_a_shop_in_sync_repairs_nothing(self, tenant_a, world):
        with tenant_context(tenant_a):
            skus_changed(tenant=tenant_a, sku_ids=[s.pk for s in world["skus"].values()])
        flush_all(tenant_a, world["shops"])
        with tenant_context(tenant_a):
            report = shop_reconcile(shop=world["shops"]["tiktok"])
        assert (report.checked, report.in_sync, report.repaired) == (3, 3, [])


class TestCommand:
    def test_push_inventory_pushes_pending_and_reconciles(self, tenant_a, world):
        mug = world["skus"]["MUG-01"]
        with tenant_context(tenant_a):
            skus_changed(tenant=tenant_a, sku_ids=[mug.pk])
        out = io.StringIO()
        call_command("push_inventory", "--shop", str(world["shops"]["amazon"].pk), stdout=out)
        assert '"pushed": 1' in out.getvalue()
        amazon_mug = Listing._base_manager.get(shop=world["shops"]["amazon"], sku=mug)
        assert sandbox_quantity(amazon_mug) == 20
        # Other shops were not touched by --shop.
        tiktok_mug = Listing._base_manager.get(shop=world["shops"]["tiktok"], sku=mug)
        assert tiktok_mug.push_due_at is not None

        SandboxProduct.objects.filter(store=world["stores"]["amazon"], seller_sku="MUG-01").update(
            quantity=3
        )
        out = io.StringIO()
        call_command("push_inventory", "--reconcile", stdout=out)
        text = out.getvalue()
        assert text.count("reconcile ") == 4
        assert '"platform": 3, "now": 20' in text
        assert sandbox_quantity(amazon_mug) == 20
        assert sandbox_quantity(tiktok_mug) == 20


def test_connectors_read_back_what_was_pushed(tenant_a, world):
    """Sanity for the reconcile: every connector's get_inventory sees the pushed number."""
    with tenant_context(tenant_a):
        skus_changed(tenant=tenant_a, sku_ids=[s.pk for s in world["skus"].values()])
    flush_all(tenant_a, world["shops"])
    for platform, shop in world["shops"].items():
        listings = list(Listing._base_manager.filter(shop=shop))
        levels = connector_for(shop).get_inventory(
            platform_sku_ids=[listing.platform_sku_id for listing in listings]
        )
        shown = {level.platform_sku_id: level.quantity for level in levels}
        assert shown == {lst.platform_sku_id: lst.published_quantity for lst in listings}, platform


@pytest.mark.django_db(transaction=True)
def test_no_transaction_is_open_while_the_platform_is_called(tenant_a, world, monkeypatch):
    """Quantities are computed and the claim committed before the platform is called, and no
    row of the listing or its stock is locked meanwhile (another connection can lock them)."""
    import threading

    from django.db import connection, connections

    import inventory.push as push_module

    seen = []
    real_send = push_module._send

    def spying_send(shop, updates):
        locked_elsewhere = []

        def try_lock():
            # A second connection: NOWAIT fails at once if any row is still locked.
            try:
                with transaction_atomic():
                    list(Listing._base_manager.select_for_update(nowait=True).filter(shop=shop))
                    locked_elsewhere.append(False)
            finally:
                connections.close_all()

        thread = threading.Thread(target=try_lock)
        thread.start()
        thread.join()
        seen.append((connection.in_atomic_block, locked_elsewhere))
        return real_send(shop, updates)

    from django.db.transaction import atomic as transaction_atomic

    monkeypatch.setattr(push_module, "_send", spying_send)
    mug = world["skus"]["MUG-01"]
    with tenant_context(tenant_a):
        skus_changed(tenant=tenant_a, sku_ids=[mug.pk])
        summary = push_pending(shop=world["shops"]["tiktok"], force=True)
    # Committed for real here, so the fixture's stock counts already marked all three SKUs due
    # through the stock code's on-commit hook (inventory.reservations -> skus_changed).
    assert summary.pushed == 3
    assert seen == [(False, [False])]
