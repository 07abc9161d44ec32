"""Spikes on several shops of two tenants, synced by two q clusters at once: every order stored
once, no unit oversold, every order ready or on hold.

Two `manage.py qcluster` processes (one worker each) on the test database, the database as the
broker; each shop's pass is queued twice (the dispatcher, and a person pressing "sync now"), so
the two clusters do race for the same shop and the sync lease must keep the second pass off it.
The seeding, the cluster processes and the SQL checks are `bench/spikes.py`'s own.
"""

import time

import pytest
from django.db import connection
from django_q.models import Schedule
from django_q.tasks import async_task

from bench.spikes import cluster_env, q_clusters, spikes_check, spikes_progress, spikes_seed
from orders.models import Order, OrderEvent
from shops.models import SyncRun
from shops.tasks import sync_due_shops
from tkerp.tenancy import all_tenants

SHOPS = 4
ORDERS = 240  # 60 a shop
HOT_STOCK = 8  # each tenant's two hot SKUs: far fewer units than their orders ask for


def database_url() -> str:
    """What this process really connects to (the embedded backend fills the socket in)."""
    from urllib.parse import quote

    params = connection.get_connection_params()
    host = quote(str(params.get("host") or "localhost"), safe="")
    return f"postgres://{params['user']}@{host}:{params.get('port') or 5432}/{params['dbname']}"


def queued_tasks() -> int:
    from django_q.models import OrmQ

    return OrmQ.objects.count()


@pytest.mark.django_db(transaction=True)
def test_two_clusters_sync_spikes_of_two_tenants_once_without_overselling(tenant_a, tenant_b):
    Schedule.objects.all().delete()  # no sweep or poll on a timer: only what the test queues
    shops = spikes_seed(
        tenants=[tenant_a, tenant_b], shops=SHOPS, orders=ORDERS, skus=6, hot=2, hot_stock=HOT_STOCK
    )
    env = cluster_env(
        database_url=database_url(),
        workers=1,
        redis_url=None,
        DJANGO_SETTINGS_MODULE="tkerp.settings_test",
        Q_CLUSTER_NAME="tkerp",  # the name this process enqueues under
    )
    with q_clusters(2, env=env, database=connection.settings_dict["NAME"]) as clusters:
        queued = sync_due_shops()["queued"]
        for shop in shops:
            async_task("shops.tasks.sync_shop", shop.tenant_id, shop.pk, "manual")
        deadline = time.monotonic() + 300
        progress = spikes_progress(queue_size=queued_tasks)
        while not progress.drained(SHOPS) and time.monotonic() < deadline:
            time.sleep(0.5)
            progress = spikes_progress(queue_size=queued_tasks)
        assert progress.drained(SHOPS), f"not done in 300 s: {progress}\n{clusters.log_tail()}"

    assert sorted(queued) == sorted(shop.pk for shop in shops)
    broken, statuses = spikes_check()
    # Each shop was passed twice, so it may have two successful passes (the second one finding
    # nothing new); every other check must find nothing.
    del broken["shops without exactly one successful pass"]
    assert broken == dict.fromkeys(broken, 0)
    assert sum(statuses.values()) == ORDERS
    assert statuses["on_hold"] > 0, "the hot SKUs should have run short"
    with all_tenants():
        runs = SyncRun.objects.exclude(status="running")
        assert sum(run.created for run in runs) == ORDERS
        assert set(runs.values_list("status", flat=True)) <= {"success", "skipped"}
        # One ingest per order, whichever cluster's pass stored it.
        ingested = OrderEvent.objects.filter(kind="ingested").values_list("order_id", flat=True)
        assert sorted(ingested) == sorted(Order.objects.values_list("pk", flat=True))
        for tenant in (tenant_a, tenant_b):
            assert Order.objects.filter(tenant=tenant).count() == ORDERS // 2
