"""Webhooks processed in micro-batches: a worker takes every delivery its shop has waiting.

Orders live in the TikTok sandbox and are re-fetched over its HTTP API by the shop's real
connector. The concurrency test commits for real (`transaction=True`): two workers drain the
same shop at once, on one hot SKU with too little stock.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from inventory.models import StockLevel
from orders.models import Order
from sandbox.models import SandboxOrder, SandboxStore
from shops import tasks
from shops.models import Shop, WebhookDelivery
from shops.platforms import connector_for
from shops.platforms.base import PlatformError
from shops.webhooks import webhook_deliveries_claim, webhook_deliveries_drain
from tests.e2e.helpers import add_orders, connect_shop
from tests.factories import StockLevelFactory, WarehouseFactory, WebhookDeliveryFactory
from tkerp.tenancy import all_tenants, tenant_context

pytestmark = pytest.mark.django_db(transaction=True)


def _hot_shop(tenant, *, orders: int, on_hand: int):
    """A TikTok shop selling one SKU, `orders` paid orders in its sandbox, a delivery each."""
    shop, store = connect_shop(tenant, "tiktok", sku_codes=("HOT-1",))
    with tenant_context(tenant):
        from inventory.models import Sku

        StockLevelFactory(
            tenant=tenant,
            sku=Sku.objects.get(code="HOT-1"),
            warehouse=WarehouseFactory(tenant=tenant),
            on_hand=on_hand,
        )
    generated = add_orders(store, orders, start=timezone.now() - timedelta(minutes=5))
    deliveries = [
        WebhookDeliveryFactory(tenant=tenant, shop=shop, platform_order_ids=[order.order_id])
        for order in generated
    ]
    return shop, store, generated, deliveries


def test_one_task_takes_every_waiting_delivery_of_its_shop(tenant_a):
    _shop, _, _generated, deliveries = _hot_shop(tenant_a, orders=12, on_hand=500)

    outcome = tasks.process_webhook(deliveries[3].pk)

    assert outcome["status"] == "processed"
    assert outcome["deliveries"] == 12 and outcome["batches"] == 1 and outcome["created"] == 12
    assert tasks.process_webhook(deliveries[0].pk)["status"] == "already processed"
    with tenant_context(tenant_a):
        assert Order.objects.count() == 12
        assert not Order.objects.filter(status="new").exists()  # reserved and reviewed
        rows = WebhookDelivery.objects.all()
        assert all(d.processed_at and d.claimed_until is None for d in rows)
        assert {d.attempts for d in rows} == {1}


def test_two_workers_drain_a_hot_sku_without_overselling_or_doing_anything_twice(tenant_a):
    shop, _, _generated, deliveries = _hot_shop(tenant_a, orders=60, on_hand=40)
    barrier = threading.Barrier(2)
    errors, results = [], []

    def worker():
        try:
            with all_tenants():  # a worker knows its shop's tenant only after reading it
                fresh = Shop.objects.select_related("tenant").get(pk=shop.pk)
            barrier.wait(timeout=30)
            results.append(webhook_deliveries_drain(shop=fresh, limit=7))
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)

    assert errors == []
    taken = [pk for result in results for pk in result.deliveries]
    assert sorted(taken) == sorted(d.pk for d in deliveries)  # each delivery by one worker
    with tenant_context(tenant_a):
        assert Order.objects.count() == 60
        assert {d.attempts for d in WebhookDelivery.objects.all()} == {1}
        level = StockLevel.objects.get()
        reserved = sum(
            line.quantity
            for order in Order.objects.exclude(reservations=None)
            for line in order.lines.all()
        )
    assert level.reserved == reserved <= level.on_hand == 40
    assert level.on_hand - level.reserved < 4  # nothing left that a short order could take


def test_a_failed_batch_releases_its_claim_and_the_next_drain_finishes_it(tenant_a):
    shop, store, _, _deliveries = _hot_shop(tenant_a, orders=5, on_hand=50)
    SandboxStore.objects.filter(pk=store.pk).update(fault_rate=1.0, fault_kinds=["500"])
    failing = connector_for(shop, sleep=lambda _: None, max_retries=0)

    with pytest.raises(PlatformError):
        webhook_deliveries_drain(shop=shop, connector=failing)

    with tenant_context(tenant_a):
        rows = list(WebhookDelivery.objects.all())
        assert all(d.processed_at is None and d.claimed_until is None for d in rows)
        assert all("500" in d.error for d in rows)
        assert not Order.objects.exists()
    SandboxStore.objects.filter(pk=store.pk).update(fault_rate=0.0)
    assert len(webhook_deliveries_drain(shop=shop).deliveries) == 5
    with tenant_context(tenant_a):
        assert Order.objects.count() == 5
        assert all(d.error == "" and d.attempts == 2 for d in WebhookDelivery.objects.all())


def test_a_live_claim_is_left_alone_and_an_expired_one_is_taken_again(tenant_a):
    shop, _, _, deliveries = _hot_shop(tenant_a, orders=3, on_hand=50)
    first = webhook_deliveries_claim(shop=shop)
    assert [d.pk for d in first] == [d.pk for d in deliveries]
    assert webhook_deliveries_claim(shop=shop) == []  # another worker holds them

    with tenant_context(tenant_a):
        WebhookDelivery.objects.update(claimed_until=timezone.now() - timedelta(seconds=1))
    assert len(webhook_deliveries_drain(shop=shop).deliveries) == 3  # that worker died


def test_a_drain_never_takes_another_tenants_deliveries(tenant_a, tenant_b):
    shop_a, _, _, _ = _hot_shop(tenant_a, orders=2, on_hand=50)
    _hot_shop(tenant_b, orders=2, on_hand=50)

    assert len(webhook_deliveries_drain(shop=shop_a).deliveries) == 2
    with tenant_context(tenant_b):
        assert not WebhookDelivery.objects.filter(processed_at__isnull=False).exists()
        assert not Order.objects.exists()


def test_a_malformed_order_fails_its_own_delivery_not_the_batch(tenant_a):
    shop, _store, generated, deliveries = _hot_shop(tenant_a, orders=3, on_hand=50)
    bad = generated[1]
    row = SandboxOrder.objects.get(pk=bad.pk)
    row.payload["payment"]["total_amount"] = "12,50"
    row.save()

    result = webhook_deliveries_drain(shop=shop)

    assert result.rejected == 1 and len(result.created_ids) == 2
    with tenant_context(tenant_a):
        stored = set(Order.objects.values_list("platform_order_id", flat=True))
        assert stored == {generated[0].order_id, generated[2].order_id}
        rows = {d.pk: d for d in WebhookDelivery.objects.all()}
        assert all(d.processed_at and d.claimed_until is None for d in rows.values())
        failed = rows[deliveries[1].pk]
        assert f"order {bad.order_id}: payment.total_amount" in failed.error
        assert "12,50" in failed.error
        assert rows[deliveries[0].pk].error == rows[deliveries[2].pk].error == ""
