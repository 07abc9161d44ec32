"""Live-session stock pools: what the sandboxes publish during the window and after it, which
orders may take pooled units, and no oversell when channels race for them."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from inventory.availability import listing_available
from inventory.models import ReservationState, StockLevel
from inventory.reservations import orders_reserve
from live.models import LivePool, LivePoolDraw, LiveSession
from live.pools import PoolLedger, pools_tick
from tests.factories import ShopFactory, SkuFactory, WarehouseFactory
from tests.inventory.test_push_sandboxes import all_listings, flush_all, sandbox_quantity
from tests.inventory.test_reservations import active_codes, paid_order, receive
from tkerp.tenancy import tenant_context

pytestmark = pytest.mark.django_db


def live_pool(*, shop, sku, quantity, starts_at, ends_at) -> LivePool:
    session = LiveSession._base_manager.create(
        tenant=shop.tenant,
        shop=shop,
        title="Friday live",
        creator_username="sunny.live",
        starts_at=starts_at,
        ends_at=ends_at,
    )
    return LivePool._base_manager.create(
        tenant=shop.tenant, session=session, sku=sku, quantity=quantity
    )


def published(tenant, sku) -> dict[str, tuple[int, int]]:
    """platform -> (what the listing computes, what its sandbox shows) for `sku`."""
    return {
        listing.shop.platform: (listing_available(listing), sandbox_quantity(listing))
        for listing in all_listings(tenant)
        if listing.sku_id == sku.pk
    }


class TestThePoolChangesWhatTheSandboxesPublish:
    def test_during_the_window_only_the_pools_shop_sees_the_pooled_units(self, tenant_a, world):
        mug = world["skus"]["MUG-01"]  # 20 free
        now = timezone.now()
        pool = live_pool(
            shop=world["shops"]["tiktok"],
            sku=mug,
            quantity=15,
            starts_at=now - timedelta(minutes=1),
            ends_at=now + timedelta(hours=2),
        )

        # The minute tick notices the window opened and every channel is told.
        assert pools_tick(tenant=tenant_a) == [mug.pk]
        assert pools_tick(tenant=tenant_a) == []  # once
        flush_all(tenant_a, world["shops"])
        assert published(tenant_a, mug) == {
            "tiktok": (20, 20),
            "shopify": (5, 5),
            "amazon": (5, 5),
            "ebay": (5, 5),
        }
        pool.refresh_from_db()
        assert pool.opened_at is not None and pool.closed_at is None

        # When the session ends, the rest returns to everyone.
        with time_machine.travel(now + timedelta(hours=2, minutes=1)):
            assert pools_tick(tenant=tenant_a) == [mug.pk]
            flush_all(tenant_a, world["shops"])
            assert published(tenant_a, mug) == {
                "tiktok": (20, 20),
                "shopify": (20, 20),
                "amazon": (20, 20),
                "ebay": (20, 20),
            }
        pool.refresh_from_db()
        assert pool.closed_at is not None

    def test_a_scheduled_pool_changes_nothing_before_its_window(self, tenant_a, world):
        mug = world["skus"]["MUG-01"]
        now = timezone.now()
        live_pool(
            shop=world["shops"]["tiktok"],
            sku=mug,
            quantity=15,
            starts_at=now + timedelta(hours=1),
            ends_at=now + timedelta(hours=3),
        )
        assert pools_tick(tenant=tenant_a) == []
        assert {platform: wanted for platform, (wanted, _) in published(tenant_a, mug).items()} == {
            "tiktok": 20,
            "shopify": 20,
            "amazon": 20,
            "ebay": 20,
        }


@pytest.fixture
def two_shops(tenant_a):
    tiktok = ShopFactory(tenant=tenant_a, name="TikTok")
    shopify = ShopFactory(tenant=tenant_a, name="Shopify", platform="shopify")
    warehouse = WarehouseFactory(tenant=tenant_a, code="OWN")
    sku = SkuFactory(tenant=tenant_a, code="LIVE-1")
    receive(sku=sku, warehouse=warehouse, units=10)
    now = timezone.now()
    pool = live_pool(
        shop=tiktok,
        sku=sku,
        quantity=6,
        starts_at=now - timedelta(minutes=5),
        ends_at=now + timedelta(hours=1),
    )
    return {"tiktok": tiktok, "shopify": shopify, "warehouse": warehouse, "sku": sku, "pool": pool}


class TestOrdersAndThePool:
    def test_the_pools_shop_draws_first_and_the_others_keep_their_share(self, tenant_a, two_shops):
        sku, pool = two_shops["sku"], two_shops["pool"]
        live = paid_order(shop=two_shops["tiktok"], lines=[(sku, 4)])
        orders_reserve(tenant=tenant_a, order_ids=[live.pk])
        pool.refresh_from_db()
        assert pool.drawn == 4
        draw = LivePoolDraw._base_manager.get(pool=pool)
        assert draw.quantity == 4
        # 6 free, 2 still pooled: Shopify may have 4, not 5.
        too_many = paid_order(shop=two_shops["shopify"], lines=[(sku, 5)])
        orders_reserve(tenant=tenant_a, order_ids=[too_many.pk])
        assert active_codes(too_many) == {"stock.short"}
        fits = paid_order(shop=two_shops["shopify"], lines=[(sku, 4)])
        orders_reserve(tenant=tenant_a, order_ids=[fits.pk])
        assert active_codes(fits) == set()
        level = StockLevel._base_manager.get(sku=sku)
        assert (level.on_hand, level.reserved) == (10, 8)

    def test_a_batch_of_orders_respects_the_pool(self, tenant_a, two_shops):
        sku, pool = two_shops["sku"], two_shops["pool"]
        others = [paid_order(shop=two_shops["shopify"], lines=[(sku, 1)]) for _ in range(6)]
        live = [paid_order(shop=two_shops["tiktok"], lines=[(sku, 1)]) for _ in range(7)]
        summary = orders_reserve(tenant=tenant_a, order_ids=[o.pk for o in others + live])
        # Shopify gets the 4 units outside the pool; TikTok its 6 pooled units and nothing else
        # is left for its 7th order.
        assert sorted(summary.reserved) == sorted(
            [o.pk for o in others[:4]] + [o.pk for o in live[:6]]
        )
        pool.refresh_from_db()
        assert pool.drawn == 6

    def test_after_the_window_the_rest_is_everyones(self, tenant_a, two_shops):
        sku = two_shops["sku"]
        order = paid_order(shop=two_shops["shopify"], lines=[(sku, 10)])
        with time_machine.travel(timezone.now() + timedelta(hours=2)):
            orders_reserve(tenant=tenant_a, order_ids=[order.pk])
        assert active_codes(order) == set()

    def test_the_ledger_without_pools_costs_one_query(
        self, tenant_a, two_shops, django_assert_num_queries
    ):
        other = SkuFactory(tenant=tenant_a, code="PLAIN")
        with django_assert_num_queries(1):
            ledger = PoolLedger.lock(tenant_id=tenant_a.pk, sku_ids=[other.pk])
        assert not ledger


@pytest.mark.django_db(transaction=True)
def test_channels_racing_for_a_pooled_sku_never_oversell(tenant_a):
    from tests.inventory.test_concurrency import assert_ledger_matches, run_together

    tiktok = ShopFactory(tenant=tenant_a, name="TikTok")
    shopify = ShopFactory(tenant=tenant_a, name="Shopify", platform="shopify")
    amazon = ShopFactory(tenant=tenant_a, name="Amazon", platform="amazon")
    warehouse = WarehouseFactory(tenant=tenant_a, code="OWN")
    sku = SkuFactory(tenant=tenant_a, code="LIVE-1")
    receive(sku=sku, warehouse=warehouse, units=30)
    now = timezone.now()
    pool = live_pool(
        shop=tiktok,
        sku=sku,
        quantity=20,
        starts_at=now - timedelta(minutes=1),
        ends_at=now + timedelta(hours=1),
    )
    orders = {
        shop: [paid_order(shop=shop, lines=[(sku, 1)]) for _ in range(25)]
        for shop in (tiktok, shopify, amazon)
    }

    def reserve(ids):
        return lambda: orders_reserve(tenant=tenant_a, order_ids=ids)

    jobs = []
    for shop_orders in orders.values():
        ids = [o.pk for o in shop_orders]
        jobs += [reserve(ids[0::3]), reserve(ids[1::3]), reserve(ids[2::3][::-1])]
    # And single-order calls (the per-order path) racing the batches.
    jobs += [reserve([o.pk]) for o in orders[shopify][:3] + orders[tiktok][:3]]

    assert run_together(jobs) == []

    with tenant_context(tenant_a):
        level = StockLevel.objects.get(sku=sku)
        assert (level.on_hand, level.reserved) == (30, 30)
        held = {
            shop: sum(
                r.quantity
                for o in shop_orders
                for r in o.reservations.filter(state=ReservationState.RESERVED)
            )
            for shop, shop_orders in orders.items()
        }
        # The two other channels shared the 10 units outside the pool; TikTok had its 20.
        assert held[shopify] + held[amazon] == 10
        assert held[tiktok] == 20
        pool.refresh_from_db()
        assert pool.drawn == 20
        assert sum(d.quantity for d in LivePoolDraw.objects.filter(pool=pool)) == 20
    assert_ledger_matches(tenant_a)


def test_the_minute_schedule_opens_and_closes_pools(tenant_a, two_shops):
    from live.tasks import tick_live_pools
    from shops.schedules import schedule_specs

    funcs = {spec.func for spec in schedule_specs()}
    assert {"live.tasks.tick_live_pools", "live.tasks.sync_live_creators"} <= funcs
    assert tick_live_pools() == {"tenants": 1, "skus": 1}
    assert tick_live_pools() == {"tenants": 0, "skus": 0}
    with time_machine.travel(timezone.now() + timedelta(hours=2)):
        assert tick_live_pools() == {"tenants": 1, "skus": 1}
