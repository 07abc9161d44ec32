"""The sync lease: a killed pass frees its shop within a minute; live passes never overlap.

Real commits (`transaction=True`) wherever a second worker is involved: each pass runs on its
own thread with its own PostgreSQL connection, against the TikTok sandbox over real HTTP.
"""

import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from orders.models import Order, OrderEvent
from sandbox.models import SandboxOrder
from shops import sync as sync_module
from shops import tasks
from shops.models import Shop, SyncRun
from shops.platforms import connector_for
from shops.sync import shop_sync
from tests.e2e.helpers import add_orders, connect_shop
from tkerp.tenancy import all_tenants, tenant_context

LEASE_ROW = (
    "sync_interval_seconds",
    "sync_lease_until",
    "sync_queued_at",
    "last_sync_started_at",
)


@pytest.fixture
def tiktok(tenant_a):
    shop, store = connect_shop(tenant_a, "tiktok")
    add_orders(store, 5, start=timezone.now() - timedelta(minutes=30))
    return shop, store


def fast_connector(shop):
    return connector_for(shop, sleep=lambda _: None, backoff_base=0.001)


def fresh_pass(shop_id: int) -> SyncRun:
    """A pass as a worker runs it: its own shop row, scope and connector."""
    with all_tenants():  # a worker's task gets the ids; its thread starts with no scope
        shop = Shop._base_manager.select_related("tenant").get(pk=shop_id)
    with tenant_context(shop.tenant):
        return shop_sync(shop=shop, connector=fast_connector(shop))


def in_thread(work):
    """Run `work` on its own thread (and connection); returns (thread, outcome dict)."""
    outcome: dict = {}

    def run():
        try:
            outcome["result"] = work()
        except BaseException as exc:  # re-raised by the test, on its own thread
            outcome["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def result_of(thread, outcome):
    thread.join(timeout=120)
    assert not thread.is_alive(), "the pass never finished"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def assert_each_order_once(shop, store):
    expected = SandboxOrder.objects.filter(store=store).values_list("order_id", flat=True)
    with tenant_context(shop.tenant):
        stored = Order.objects.values_list("platform_order_id", flat=True)
        assert Counter(stored) == Counter(expected)
        ingested = OrderEvent.objects.filter(kind="ingested").values_list("order_id", flat=True)
        assert set(Counter(ingested).values()) == {1}, "an order was ingested twice"


@pytest.mark.django_db
def test_a_killed_pass_frees_its_shop_within_a_minute(tiktok, monkeypatch):
    shop, _store = tiktok
    killed_at = timezone.now()
    # The worker took the lease, then was SIGKILLed: nothing renewed it, nothing released it.
    with tenant_context(shop.tenant):
        assert sync_module._acquire_lease(shop=shop, token="killed", now=killed_at)
    held = Shop._base_manager.get(pk=shop.pk)
    assert held.sync_lease_until - killed_at <= timedelta(seconds=60)
    assert held.sync_lease_until - killed_at < timedelta(seconds=settings.Q_CLUSTER["timeout"])
    assert fresh_pass(shop.pk).status == "skipped"  # still held for now

    a_minute_later = killed_at + timedelta(seconds=61)
    row = Shop._base_manager.filter(pk=shop.pk).values(*LEASE_ROW).get()
    assert tasks.shop_sync_due(row, now=a_minute_later)  # the dispatcher queues it again
    real_now = timezone.now
    monkeypatch.setattr(timezone, "now", lambda: real_now() + timedelta(seconds=61))
    run = fresh_pass(shop.pk)

    assert run.status == "success", run.error
    assert run.created == 5


@pytest.mark.django_db(transaction=True)
def test_two_passes_started_together_run_once(tiktok):
    shop, store = tiktok
    barrier = threading.Barrier(2)

    def together():
        barrier.wait(timeout=30)
        return fresh_pass(shop.pk)

    started = [in_thread(together) for _ in range(2)]
    runs = [result_of(*each) for each in started]

    assert sorted(run.status for run in runs) == ["skipped", "success"]
    assert_each_order_once(shop, store)


@pytest.mark.django_db(transaction=True)
def test_a_live_pass_whose_lease_was_taken_over_stops_before_writing(tiktok, monkeypatch):
    shop, store = tiktok
    connector = fast_connector(shop)
    fetch = connector.fetch_orders
    taken_over = {}

    def frozen_then_taken_over(**kwargs):
        if not taken_over:
            # Pass A froze past its lease (a stopped VM, a stuck heartbeat) while asking the
            # platform; pass B finds the lease expired and runs the whole shop meanwhile.
            Shop._base_manager.filter(pk=shop.pk).update(
                sync_lease_until=timezone.now() - timedelta(seconds=1)
            )
            taken_over["run"] = result_of(*in_thread(lambda: fresh_pass(shop.pk)))
        return fetch(**kwargs)

    monkeypatch.setattr(connector, "fetch_orders", frozen_then_taken_over)
    with tenant_context(shop.tenant):
        stale = shop_sync(shop=shop, connector=connector)

    assert taken_over["run"].status == "success", taken_over["run"].error
    assert taken_over["run"].created == 5
    assert stale.status == "failed" and "lease" in stale.error
    assert (stale.pages, stale.created, stale.updated) == (0, 0, 0)
    assert_each_order_once(shop, store)
    shop.refresh_from_db()
    assert shop.sync_lease_until is None  # B released it; A touched nothing of B's


@pytest.mark.django_db(transaction=True)
def test_a_page_slower_than_the_lease_keeps_the_shop(tiktok, monkeypatch):
    shop, store = tiktok
    monkeypatch.setattr(settings, "TKERP_SYNC_LEASE_SECONDS", 1)
    connector = fast_connector(shop)
    fetch = connector.fetch_orders
    seen = {}

    def slow_page(**kwargs):
        if not seen:
            first_lease_end = Shop._base_manager.get(pk=shop.pk).sync_lease_until
            # The platform takes longer than the whole lease to answer this page: wait (for
            # the event, bounded) until the first lease is over and the shop is still held.
            for _ in range(600):
                lease_until = Shop._base_manager.get(pk=shop.pk).sync_lease_until
                now = timezone.now()
                if now > first_lease_end + timedelta(milliseconds=300) and lease_until > now:
                    break
                time.sleep(0.05)
            else:
                pytest.fail("the lease was not renewed while the page was slow")
            seen["second pass"] = result_of(*in_thread(lambda: fresh_pass(shop.pk)))
        return fetch(**kwargs)

    monkeypatch.setattr(connector, "fetch_orders", slow_page)
    with tenant_context(shop.tenant):
        run = shop_sync(shop=shop, connector=connector)

    assert seen["second pass"].status == "skipped"
    assert run.status == "success", run.error
    assert run.created == 5
    assert_each_order_once(shop, store)
