"""Order sync end to end, with real commits: TikTok sandbox spikes, webhooks and polls racing,
a worker dying mid-pass, and a failing platform paging someone.

These run with `transaction=True`: every page, webhook and alert commits for real, so
`on_commit` hooks fire as in production and concurrent workers see each other's rows.
"""

import threading
from collections import Counter
from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection
from django.utils import timezone

from orders.ingest import orders_ingest, orders_store
from orders.models import Order, OrderEvent, OrderLine
from sandbox.actions import sandbox_spike
from sandbox.models import SandboxOrder, SandboxStore
from shops import sync as sync_module
from shops import webhooks as webhooks_module
from shops.models import Shop, SyncRun, WebhookDelivery
from shops.platforms import connector_for
from shops.sync import shop_sync
from shops.tasks import process_webhook
from tests.e2e.helpers import (
    LoopbackReceiver,
    connect_shop,
    django_q_sync,
)
from tkerp.models import Alert
from tkerp.tenancy import all_tenants, tenant_context

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def tiktok(tenant_a):
    shop, store = connect_shop(tenant_a, "tiktok")
    return shop, store


def fast_connector(shop, **options):
    return connector_for(shop, sleep=lambda _: None, backoff_base=0.001, **options)


def assert_each_order_once(shop, expected_ids):
    with tenant_context(shop.tenant):
        stored = list(Order.objects.values_list("platform_order_id", flat=True))
        assert Counter(stored) == Counter(expected_ids), "missing or duplicated orders"
        ingested = Counter(
            OrderEvent.objects.filter(kind="ingested").values_list("order_id", flat=True)
        )
        assert set(ingested.values()) == {1}, "an order was created twice"
        lines = OrderLine.objects.values_list("order_id", "platform_line_id")
        assert len(lines) == len(set(lines)), "a line was created twice"


def test_a_spike_with_webhooks_then_a_poll_stores_every_order_exactly_once(tiktok):
    shop, store = tiktok
    with django_q_sync():
        spike = sandbox_spike(shop=shop, orders=120, seed=7, cancel_rate=0.05, webhooks=True)
    assert spike.webhooks_sent >= spike.orders and spike.webhooks_failed == 0
    assert WebhookDelivery._base_manager.filter(processed_at__isnull=True).count() == 0

    connector = fast_connector(shop)
    with tenant_context(shop.tenant):
        run = shop_sync(shop=shop, connector=connector)

    expected = list(SandboxOrder.objects.filter(store=store).values_list("order_id", flat=True))
    assert run.status == "success", run.error
    assert run.created == 0  # the webhooks got there first; the poll confirms, changes nothing
    assert_each_order_once(shop, expected)
    with tenant_context(shop.tenant):
        lines = OrderLine.objects.count()
        cancel_requested = Order.objects.filter(cancel_answer_by__isnull=False).count()
    assert lines == sum(
        len(order.lines) for order in connector.fetch_orders_by_id(platform_order_ids=expected)
    )
    assert cancel_requested == spike.cancellations


def test_a_webhook_and_a_poll_racing_for_the_same_orders_store_them_once(tiktok, monkeypatch):
    shop, store = tiktok
    spike = sandbox_spike(shop=shop, orders=30, seed=11, cancel_rate=0)
    ids = list(SandboxOrder.objects.filter(store=store).values_list("order_id", flat=True))
    assert spike.orders == len(ids) == 30
    delivery = WebhookDelivery._base_manager.create(
        tenant=shop.tenant,
        shop=shop,
        platform="tiktok",
        delivery_id="race-1",
        topic="ORDER_STATUS_CHANGE",
        platform_order_ids=ids,
        received_at=timezone.now(),
    )

    # Both doors have fetched from the platform; release them into ingest at the same instant.
    barrier = threading.Barrier(2)

    def store_together(**kwargs):  # the pass stores its page, then runs the pipeline
        barrier.wait(timeout=30)
        return orders_store(**kwargs)

    def ingest_together(**kwargs):
        barrier.wait(timeout=30)
        return orders_ingest(**kwargs)

    monkeypatch.setattr(sync_module, "orders_store", store_together)
    monkeypatch.setattr(webhooks_module, "orders_ingest", ingest_together)
    errors, results = [], {}

    def run(name, work):
        try:
            results[name] = work()
        except BaseException as exc:  # re-raised below, in the test's thread
            errors.append(exc)
            barrier.abort()
        finally:
            connection.close()

    def poll():
        with all_tenants():  # a worker gets the ids; its thread starts with no scope
            fresh = Shop._base_manager.select_related("tenant").get(pk=shop.pk)
        with tenant_context(fresh.tenant):
            return shop_sync(shop=fresh, connector=fast_connector(fresh))

    threads = [
        threading.Thread(target=run, args=("webhook", lambda: process_webhook(delivery.pk))),
        threading.Thread(target=run, args=("poll", poll)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    assert results["poll"].status == "success", results["poll"].error
    assert results["webhook"]["status"] == "processed"
    created = results["poll"].created + results["webhook"]["created"]
    assert created == 30  # one door created each order, the other found it there
    assert_each_order_once(shop, ids)


def test_a_worker_killed_on_page_three_is_finished_by_the_next_pass(tiktok, monkeypatch):
    shop, store = tiktok
    sandbox_spike(shop=shop, orders=260, seed=3, cancel_rate=0.02)
    expected = list(SandboxOrder.objects.filter(store=store).values_list("order_id", flat=True))
    pages = {"n": 0}

    def dies_on_page_three(**kwargs):
        pages["n"] += 1
        if pages["n"] == 3:
            raise SystemExit("worker killed")  # not an Exception: nothing may swallow it
        return orders_store(**kwargs)

    monkeypatch.setattr(sync_module, "orders_store", dies_on_page_three)
    with tenant_context(shop.tenant), pytest.raises(SystemExit):
        shop_sync(shop=shop, connector=fast_connector(shop))
    with tenant_context(shop.tenant):
        assert Order.objects.count() == 200  # two pages committed, the third never
    (killed,) = SyncRun._base_manager.filter(shop=shop)
    assert killed.status == "running" and killed.pages == 2
    # A SIGKILLed worker would not even release its lease: it expires.
    Shop._base_manager.filter(pk=shop.pk).update(
        sync_lease_until=timezone.now() - timedelta(seconds=1), sync_lease_token="dead"
    )

    monkeypatch.setattr(sync_module, "orders_store", orders_store)
    with tenant_context(shop.tenant):
        rerun = shop_sync(shop=shop, connector=fast_connector(shop))

    assert rerun.status == "success", rerun.error
    assert rerun.created == 60
    killed.refresh_from_db()
    assert killed.status == "failed"
    assert_each_order_once(shop, expected)
    with tenant_context(shop.tenant):
        again = shop_sync(shop=shop, connector=fast_connector(shop))
    assert (again.created, again.updated) == (0, 0)


def sync_emails():
    # The orders stored after recovery have no stock in this test: their own alerts (stock
    # short) are told too, and are not what this test is about.
    return [email for email in mail.outbox if "Order sync failing" in email.subject]


def test_three_failed_passes_page_the_team_once_and_a_success_resolves(tiktok, outbound_loopback):
    shop, store = tiktok
    SandboxStore.objects.filter(pk=store.pk).update(fault_rate=1.0, fault_kinds=["500"])
    with LoopbackReceiver() as receiver, django_q_sync():
        tenant = shop.tenant
        tenant.alert_email = "ops@alpha.example"
        tenant.alert_webhook_url = receiver.url
        tenant.save()
        with tenant_context(tenant):
            runs = [
                shop_sync(shop=shop, connector=fast_connector(shop, max_retries=1))
                for _ in range(5)
            ]
        assert [run.status for run in runs] == ["failed"] * 5
        with tenant_context(tenant):
            (alert,) = Alert.objects.filter(resolved_at__isnull=True)
        assert alert.occurrences == 3 and alert.notified_at is not None
        assert len(sync_emails()) == 1 and len(receiver.received) == 1
        assert receiver.json()["title"] == f"Order sync failing for {shop.name}"

        SandboxStore.objects.filter(pk=store.pk).update(fault_rate=0.0)
        sandbox_spike(shop=shop, orders=5, seed=1, cancel_rate=0)
        with tenant_context(tenant):
            recovered = shop_sync(shop=shop, connector=fast_connector(shop))

    assert recovered.status == "success" and recovered.created == 5
    alert.refresh_from_db()
    assert alert.resolved_at is not None
    assert len(sync_emails()) == 1  # resolving tells nobody; nothing was sent twice
