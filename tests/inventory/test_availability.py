"""What a listing publishes (buffers, serving warehouses, dynamic buffer), scheduling pushes,
and the push admin's tenant isolation."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from inventory import tasks
from inventory.availability import (
    dynamic_buffers_recompute,
    listing_available,
    listings_available,
    skus_changed,
)
from inventory.models import InventoryPush, Listing
from shops.schedules import schedules_ensure
from tests.e2e.helpers import django_q_sync
from tests.factories import (
    InventoryPushFactory,
    ListingFactory,
    OrderFactory,
    OrderLineFactory,
    ShopFactory,
    ShopWarehouseFactory,
    SkuFactory,
    StockLevelFactory,
    WarehouseFactory,
)
from tests.orders.admin_helpers import admin_url, assert_not_found, changelist_pks
from tkerp.tenancy import tenant_context

pytestmark = pytest.mark.django_db


@pytest.fixture
def stocked(tenant_a):
    """One SKU with 40 free units (50 on hand, 10 reserved) and a listing of it."""
    sku = SkuFactory(tenant=tenant_a, code="MUG")
    warehouse = WarehouseFactory(tenant=tenant_a, code="W1")
    StockLevelFactory(tenant=tenant_a, sku=sku, warehouse=warehouse, on_hand=50, reserved=10)
    listing = ListingFactory(tenant=tenant_a, sku=sku)
    return {"sku": sku, "warehouse": warehouse, "listing": listing}


class TestBuffers:
    @pytest.mark.parametrize(
        "rules, expected",
        [
            ({}, 40),
            ({"buffer_units": 5}, 35),
            ({"buffer_percent": Decimal("10")}, 36),
            ({"buffer_percent": Decimal("12.5")}, 35),  # 5 held: the share rounds up
            ({"buffer_units": 3, "buffer_percent": Decimal("10")}, 33),
            ({"max_publish": 12}, 12),
            ({"max_publish": 100}, 40),
            ({"zero_below": 41}, 0),
            ({"zero_below": 40}, 40),
            ({"buffer_units": 60}, 0),  # never below zero
            ({"buffer_units": 30, "zero_below": 11}, 0),
        ],
    )
    def test_rules(self, stocked, rules, expected):
        listing = stocked["listing"]
        Listing._base_manager.filter(pk=listing.pk).update(**rules)
        listing.refresh_from_db()
        assert listing_available(listing) == expected

    def test_free_stock_adds_up_across_active_warehouses(self, tenant_a, stocked):
        second = WarehouseFactory(tenant=tenant_a, code="W2")
        StockLevelFactory(tenant=tenant_a, sku=stocked["sku"], warehouse=second, on_hand=7)
        closed = WarehouseFactory(tenant=tenant_a, code="W3", is_active=False)
        StockLevelFactory(tenant=tenant_a, sku=stocked["sku"], warehouse=closed, on_hand=100)
        assert listing_available(stocked["listing"]) == 47

    def test_a_shops_warehouse_list_limits_what_it_publishes(self, tenant_a, stocked):
        second = WarehouseFactory(tenant=tenant_a, code="W2")
        StockLevelFactory(tenant=tenant_a, sku=stocked["sku"], warehouse=second, on_hand=7)
        ShopWarehouseFactory(tenant=tenant_a, shop=stocked["listing"].shop, warehouse=second)
        other_shop = ListingFactory(tenant=tenant_a, sku=stocked["sku"])
        assert listings_available([stocked["listing"], other_shop]) == {
            stocked["listing"].pk: 7,
            other_shop.pk: 47,
        }

    def test_another_tenants_stock_never_counts(self, tenant_a, tenant_b, stocked):
        sku_b = SkuFactory(tenant=tenant_b, code="MUG")
        StockLevelFactory(tenant=tenant_b, sku=sku_b, on_hand=999)
        assert listing_available(stocked["listing"]) == 40

    def test_batch_is_a_fixed_number_of_queries(self, tenant_a, stocked, django_assert_num_queries):
        listings = [stocked["listing"]] + [
            ListingFactory(tenant=tenant_a, sku=SkuFactory(tenant=tenant_a)) for _ in range(5)
        ]
        # Serving warehouses, free stock, and the open live-session pools (live.pools).
        with django_assert_num_queries(3):
            listings_available(listings)


class TestSkusChanged:
    def test_marks_every_listing_of_the_sku_on_every_shop(self, tenant_a, stocked):
        other = ListingFactory(tenant=tenant_a, sku=stocked["sku"])
        unrelated = ListingFactory(tenant=tenant_a)
        no_platform_id = ListingFactory(tenant=tenant_a, sku=stocked["sku"], platform_sku_id="")
        now = timezone.now()
        with tenant_context(tenant_a):
            shops = skus_changed(tenant=tenant_a, sku_ids=[stocked["sku"].pk], now=now)
        assert shops == {stocked["listing"].shop_id, other.shop_id}
        due = set(
            Listing._base_manager.filter(push_due_at=now + timedelta(milliseconds=300)).values_list(
                "pk", flat=True
            )
        )
        assert due == {stocked["listing"].pk, other.pk}
        assert unrelated.pk not in due and no_platform_id.pk not in due

    def test_queues_one_flush_per_shop_on_commit(
        self, tenant_a, stocked, django_capture_on_commit_callbacks, monkeypatch
    ):
        queued = []
        monkeypatch.setattr(
            tasks, "async_task", lambda func, *args, **kw: queued.append((func, args))
        )
        # Two SKUs listed on one shop: one flush for the shop, not one per listing.
        second = ListingFactory(tenant=tenant_a, shop=stocked["listing"].shop)
        with (
            django_capture_on_commit_callbacks(execute=False) as callbacks,
            tenant_context(tenant_a),
        ):
            skus_changed(tenant=tenant_a, sku_ids=[stocked["sku"].pk, second.sku_id])
        assert queued == []  # nothing before the commit
        for callback in callbacks:
            callback()
        assert queued == [
            ("inventory.tasks.flush_shop_pushes", (tenant_a.pk, stocked["listing"].shop_id))
        ]

    def test_a_burst_queues_one_flush_and_urgent_skips_the_debounce(self, tenant_a, stocked):
        sku_id = stocked["sku"].pk
        now = timezone.now()
        with tenant_context(tenant_a):
            first = skus_changed(tenant=tenant_a, sku_ids=[sku_id], now=now)
            # Within the window: already due later than now, its flush is queued.
            second = skus_changed(
                tenant=tenant_a, sku_ids=[sku_id], now=now + timedelta(milliseconds=100)
            )
            # Oversold: due at once, and a flush is queued again.
            urgent = skus_changed(
                tenant=tenant_a,
                sku_ids=[sku_id],
                now=now + timedelta(milliseconds=150),
                urgent=True,
            )
        shop_id = stocked["listing"].shop_id
        assert (first, second, urgent) == ({shop_id}, set(), {shop_id})
        stocked["listing"].refresh_from_db()
        assert stocked["listing"].push_due_at == now + timedelta(milliseconds=150)
        assert stocked["listing"].push_requested_at == now

    def test_marked_due_by_a_caller_then_skus_changed_still_queues(self, tenant_a, stocked):
        """The reservations helper marks oversold listings due with no delay itself, then calls
        skus_changed: the flush must still be queued."""
        from django.db.models import Q

        from inventory.availability import listings_mark_due

        sku_id = stocked["sku"].pk
        with tenant_context(tenant_a):
            listings_mark_due(
                tenant_id=tenant_a.pk, listing_filter=Q(sku_id=sku_id), delay=timedelta(0)
            )
            assert skus_changed(tenant=tenant_a, sku_ids=[sku_id]) == {stocked["listing"].shop_id}

    def test_another_tenants_listings_are_untouched(self, tenant_a, tenant_b, stocked):
        listing_b = ListingFactory(tenant=tenant_b)
        with tenant_context(tenant_a):
            skus_changed(tenant=tenant_a, sku_ids=[listing_b.sku_id, stocked["sku"].pk])
        listing_b.refresh_from_db()
        assert listing_b.push_due_at is None

    def test_the_sweeper_queues_shops_with_due_listings(self, tenant_a, tenant_b, monkeypatch):
        queued = []
        monkeypatch.setattr(tasks, "async_task", lambda func, *args, **kw: queued.append(args))
        past = timezone.now() - timedelta(seconds=5)
        due_a = ListingFactory(tenant=tenant_a, push_due_at=past)
        due_b = ListingFactory(tenant=tenant_b, push_due_at=past)
        ListingFactory(tenant=tenant_a, push_due_at=timezone.now() + timedelta(minutes=5))
        tasks.push_due_listings()
        assert sorted(queued) == sorted(
            [(tenant_a.pk, due_a.shop_id), (tenant_b.pk, due_b.shop_id)]
        )

    def test_schedules_include_the_push_jobs(self):
        from django_q.models import Schedule

        schedules_ensure()
        funcs = set(Schedule.objects.values_list("func", flat=True))
        assert {
            "inventory.tasks.push_due_listings",
            "inventory.tasks.recompute_dynamic_buffers",
            "inventory.tasks.reconcile_all_shops",
        } <= funcs
        reconcile = Schedule.objects.get(func="inventory.tasks.reconcile_all_shops")
        assert reconcile.minutes == 15


class TestDynamicBuffer:
    def sell(self, tenant, shop, sku, quantity, *, ago=timedelta(minutes=1)):
        order = OrderFactory(tenant=tenant, shop=shop, placed_at=timezone.now() - ago)
        OrderLineFactory(order=order, sku=sku, quantity=quantity)

    def test_off_by_default(self, stocked):
        assert stocked["listing"].dynamic_buffer is False
        assert listing_available(stocked["listing"]) == 40

    def test_widens_with_the_other_channels_velocity(self, tenant_a, stocked):
        listing = stocked["listing"]
        Listing._base_manager.filter(pk=listing.pk).update(
            dynamic_buffer=True, dynamic_buffer_margin=2
        )
        other_shop = ShopFactory(tenant=tenant_a)
        # This channel's pushes take 10 s at p95.
        for latency in (1000, 2000, 10000):
            InventoryPushFactory(tenant=tenant_a, listing=listing, latency_ms=latency)
        with tenant_context(tenant_a):
            calm = dynamic_buffers_recompute(tenant=tenant_a)
            assert calm == {listing.pk: 2}  # no sales elsewhere: just the margin
            # A spike on another channel: 600 units in the 10-minute window = 1 unit/s.
            self.sell(tenant_a, other_shop, stocked["sku"], 600)
            # Sales on this listing's own shop and old sales don't count.
            self.sell(tenant_a, listing.shop, stocked["sku"], 6000)
            self.sell(tenant_a, other_shop, stocked["sku"], 6000, ago=timedelta(hours=1))
            spike = dynamic_buffers_recompute(tenant=tenant_a)
        assert spike == {listing.pk: 12}  # 1 unit/s x 10 s + 2
        listing.refresh_from_db()
        assert listing.dynamic_buffer_units == 12
        assert listing_available(listing) == 28
        assert listing.push_due_at is not None  # the wider buffer gets pushed

    def test_the_task_covers_every_tenant_and_only_enabled_listings(self, tenant_a, tenant_b):
        on_a = ListingFactory(tenant=tenant_a, dynamic_buffer=True, dynamic_buffer_margin=4)
        on_b = ListingFactory(tenant=tenant_b, dynamic_buffer=True, dynamic_buffer_margin=1)
        off = ListingFactory(tenant=tenant_a, dynamic_buffer_margin=9)
        with django_q_sync():
            tasks.recompute_dynamic_buffers()
        units = dict(
            Listing._base_manager.filter(pk__in=[on_a.pk, on_b.pk, off.pk]).values_list(
                "pk", "dynamic_buffer_units"
            )
        )
        assert units == {on_a.pk: 4, on_b.pk: 1, off.pk: 0}


class TestPushAdmin:
    def test_another_tenant_cannot_see_or_open_pushes(self, client_a, tenant_a, tenant_b):
        mine = InventoryPushFactory(tenant=tenant_a, listing=ListingFactory(tenant=tenant_a))
        theirs = InventoryPushFactory(tenant=tenant_b, listing=ListingFactory(tenant=tenant_b))
        assert changelist_pks(client_a, InventoryPush) == {mine.pk}
        assert client_a.get(admin_url(InventoryPush, "change", mine.pk)).status_code == 200
        assert_not_found(client_a, admin_url(InventoryPush, "change", theirs.pk))

    def test_pushes_are_read_only(self, client_a, tenant_a):
        push = InventoryPushFactory(tenant=tenant_a, listing=ListingFactory(tenant=tenant_a))
        assert client_a.get(admin_url(InventoryPush, "add")).status_code == 403
        response = client_a.post(admin_url(InventoryPush, "delete", push.pk), {"post": "yes"})
        assert response.status_code == 403
        assert InventoryPush._base_manager.filter(pk=push.pk).exists()

    def test_push_changelist_query_count(self, client_a, tenant_a, django_assert_max_num_queries):
        for _ in range(15):
            InventoryPushFactory(tenant=tenant_a, listing=ListingFactory(tenant=tenant_a))
        with django_assert_max_num_queries(14):
            assert len(changelist_pks(client_a, InventoryPush)) == 15

    def test_listing_changelist_shows_last_push_and_drift(
        self, client_a, tenant_a, tenant_b, stocked, django_assert_max_num_queries
    ):
        listing = stocked["listing"]
        Listing._base_manager.filter(pk=listing.pk).update(published_quantity=35)
        InventoryPushFactory(tenant=tenant_a, listing=listing, quantity=35, result="ok")
        for _ in range(10):
            ListingFactory(tenant=tenant_a, published_quantity=1)
        foreign = ListingFactory(tenant=tenant_b)
        InventoryPushFactory(tenant=tenant_b, listing=foreign)
        with django_assert_max_num_queries(16):
            response = client_a.get(admin_url(Listing, "changelist"))
        assert response.status_code == 200
        rows = {obj.pk: obj for obj in response.context["cl"].result_list}
        assert foreign.pk not in rows
        assert rows[listing.pk].available_now == 40
        assert rows[listing.pk].last_push_result == "ok"
        assert "35" in response.content.decode()
