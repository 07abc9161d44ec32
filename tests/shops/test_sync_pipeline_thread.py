"""A sync pass runs its pipeline on a thread of its own while it stores the next pages.

Real commits (`transaction=True`): the thread has its own PostgreSQL connection, which sees the
pages once they are committed, as a worker's does. A pass inside a transaction keeps the
pipeline on its own thread (tests/shops/test_sync.py, TestPipelineBatches).
"""

import threading
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone

from orders.models import Order
from shops import sync as sync_module
from shops.platforms.base import PlatformError
from tests.e2e.helpers import add_orders, connect_shop
from tests.shops.test_sync_lease import fast_connector
from tkerp.tenancy import tenant_context

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def spike(tenant_a, settings):
    """A TikTok shop with three and a half pages waiting, the pipeline run a page at a time."""
    shop, store = connect_shop(tenant_a, "tiktok")
    connector = fast_connector(shop)
    settings.TKERP_SYNC_PIPELINE_BATCH = connector.page_size
    count = 3 * connector.page_size + connector.page_size // 2
    add_orders(store, count, start=timezone.now() - timedelta(hours=1))
    return shop, connector, count


def sync(shop, connector):
    with tenant_context(shop.tenant):
        return sync_module.shop_sync(shop=shop, connector=connector)


def order_ids(shop, **filters) -> set[int]:
    with tenant_context(shop.tenant):
        return set(Order.objects.filter(**filters).values_list("pk", flat=True))


def waiting(shop) -> set[int]:
    """Paid orders the pipeline has not run on (a paid order leaves `new` once it has)."""
    return order_ids(shop, status="new", paid_at__isnull=False)


def third_page_watched(monkeypatch) -> tuple[list, threading.Event]:
    """Count the pages the pass stores; the event is set once it has stored its third."""
    pages_stored: list = []
    third_page_stored = threading.Event()
    store = sync_module.orders_store

    def storing(**kwargs):
        result = store(**kwargs)
        pages_stored.append(result)
        if len(pages_stored) == 3:
            third_page_stored.set()
        return result

    monkeypatch.setattr(sync_module, "orders_store", storing)
    return pages_stored, third_page_stored


def test_batches_run_in_turn_on_the_pipeline_thread_while_the_pass_stores(spike, monkeypatch):
    shop, connector, count = spike
    _pages_stored, third_page_stored = third_page_watched(monkeypatch)
    batches: list[tuple[str, list[int]]] = []
    wrappers = []
    after_ingest = sync_module.orders_after_ingest

    def recording(**kwargs):
        if not batches:
            # The first batch waits for the pass to store its third page: only a pipeline
            # running beside the pass gets past this (inline, the pass would be waiting on it).
            assert third_page_stored.wait(timeout=30), "the pass stored nothing meanwhile"
        batches.append((threading.current_thread().name, sorted(kwargs["created_ids"])))
        wrappers.append(connections["default"])  # this thread's own connection
        return after_ingest(**kwargs)

    monkeypatch.setattr(sync_module, "orders_after_ingest", recording)
    run = sync(shop, connector)

    assert run.status == "success" and run.created == count, run.error
    assert {name for name, _ in batches} == {f"sync-pipeline-{shop.pk}"}
    assert [len(ids) for _, ids in batches] == [connector.page_size] * 3 + [
        count % connector.page_size
    ]
    # Orders keep their turn: each batch's orders come after the one before.
    flat = [order_id for _, ids in batches for order_id in ids]
    assert flat == sorted(flat) and set(flat) == order_ids(shop)
    assert not waiting(shop)  # every order reserved and reviewed before the pass returned
    # One connection for the thread, not the pass's, and closed once the pass ended.
    assert len({id(wrapper) for wrapper in wrappers}) == 1
    assert wrappers[0] is not connections["default"]
    assert wrappers[0].connection is None
    assert not pass_threads()


def test_a_batch_failing_on_the_thread_fails_the_pass_and_the_others_still_run(spike, monkeypatch):
    shop, connector, _count = spike
    pages_stored, third_page_stored = third_page_watched(monkeypatch)
    after_ingest = sync_module.orders_after_ingest
    failed: list[int] = []

    def first_fails(**kwargs):
        if not failed:
            failed.extend(kwargs["created_ids"])
            assert third_page_stored.wait(timeout=30), "the pass stored nothing meanwhile"
            raise RuntimeError("the pipeline broke")
        return after_ingest(**kwargs)

    monkeypatch.setattr(sync_module, "orders_after_ingest", first_fails)
    run = sync(shop, connector)

    assert run.status == "failed" and run.error == "RuntimeError: the pipeline broke"
    # The pass stopped once it learnt of the error; the batches handed over by then still ran,
    # and only the failed one waits for the SLA sweep, as after any failed step.
    assert len(failed) == connector.page_size and len(pages_stored) >= 3
    assert waiting(shop) == set(failed)
    shop.refresh_from_db()
    assert shop.consecutive_sync_failures == 1 and shop.sync_lease_until is None


def pass_threads() -> set[str]:
    """The pass's fetch and pipeline threads still alive (its lease heartbeat may take a moment
    longer to notice the pass ended: it is not ours to check here)."""
    return {
        thread.name
        for thread in threading.enumerate()
        if thread.name.startswith(("sync-fetch-", "sync-pipeline-"))
    }


def test_the_next_page_is_asked_for_while_the_pass_stores_one(spike, monkeypatch):
    shop, connector, count = spike
    fetch, store = connector.fetch_orders, sync_module.orders_store
    asked: list[tuple[str, str | None]] = []
    second_page_asked = threading.Event()

    def fetching(**kwargs):
        asked.append((threading.current_thread().name, kwargs["page_token"]))
        if kwargs["page_token"] is not None:
            second_page_asked.set()
        return fetch(**kwargs)

    def storing(**kwargs):
        # Page one is stored only once page two is on its way: a pass asking inline, after
        # storing, would be waiting on itself here.
        assert second_page_asked.wait(timeout=30), "page two was not asked for meanwhile"
        return store(**kwargs)

    monkeypatch.setattr(connector, "fetch_orders", fetching)
    monkeypatch.setattr(sync_module, "orders_store", storing)
    run = sync(shop, connector)

    assert run.status == "success" and (run.pages, run.created) == (4, count), run.error
    assert {name for name, _ in asked} == {f"sync-fetch-{shop.pk}"}
    assert len(asked) == 4 and asked[0][1] is None  # one request a page, in order
    assert not waiting(shop)
    assert not pass_threads()  # the fetch and pipeline threads ended with the pass


def test_a_platform_error_on_the_fetch_thread_fails_the_pass_after_the_page_before(
    spike, monkeypatch
):
    shop, connector, _count = spike
    fetch = connector.fetch_orders
    calls = []

    def fails_on_page_three(**kwargs):
        calls.append(kwargs["page_token"])
        if len(calls) == 3:
            raise PlatformError("the platform went away", platform=shop.platform)
        return fetch(**kwargs)

    monkeypatch.setattr(connector, "fetch_orders", fails_on_page_three)
    run = sync(shop, connector)

    assert run.status == "failed" and run.error == "tiktok: the platform went away"
    # Page two was stored (and its pipeline run) before the pass learnt of page three.
    assert (run.pages, run.created) == (2, 2 * connector.page_size)
    assert len(order_ids(shop)) == 2 * connector.page_size and not waiting(shop)
    assert len(calls) == 3 and not pass_threads()
