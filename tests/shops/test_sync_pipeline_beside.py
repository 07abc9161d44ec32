"""A sync pass of more than one page runs its pipeline beside it while it stores the next pages,
in two stages a batch apart (stock, then review): each in a process of its own
(`shops.sync._PassProcess`), or on a thread of the pass where a process cannot be forked
(`shops.sync.PIPELINE_PROCESS` off).

Real commits (`transaction=True`): the pipeline has its own PostgreSQL connection, which sees
the pages once they are committed, as a worker's does. A pass inside a transaction keeps the
pipeline in its own thread (tests/shops/test_sync.py, TestPipelineBatches). What the pipeline
does in a forked child is reported back through a pipe created before the pass (`Recorder`).
"""

import multiprocessing
import os
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from orders.models import Order
from orders.pipeline import PIPELINE_STEPS
from orders.sla import orders_stranded
from shops import sync as sync_module
from shops.platforms.base import PlatformError
from tests.e2e.helpers import add_orders, connect_shop
from tests.shops.test_sync_lease import fast_connector
from tkerp.tenancy import all_tenants, tenant_context

pytestmark = pytest.mark.django_db(transaction=True)

FORK = multiprocessing.get_context("fork")


@pytest.fixture(params=["process", "thread"])
def vehicle(request, monkeypatch) -> str:
    monkeypatch.setattr(sync_module, "PIPELINE_PROCESS", request.param == "process")
    return request.param


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


def stranded(shop) -> set[int]:
    """The orders the SLA sweep would run the pipeline on again once its minutes are up
    (`orders.sla.orders_stranded`): paid orders never reviewed, or not reserved and not held
    for their stock."""
    with tenant_context(shop.tenant):
        later = timezone.now() + timedelta(hours=1)
        return set(orders_stranded(tenant=shop.tenant, now=later).values_list("pk", flat=True))


class Recorder:
    """What each pipeline batch saw, wherever it ran: a pipe made before the pass forks."""

    def __init__(self):
        self._queue = FORK.SimpleQueue()

    def put(self, **seen) -> None:
        self._queue.put(seen)

    def taken(self) -> list[dict]:
        seen = []
        while not self._queue.empty():
            seen.append(self._queue.get())
        return seen


def where() -> dict:
    """The process, thread and PostgreSQL backend a batch runs on."""
    return {
        "pid": os.getpid(),
        "thread": threading.current_thread().name,
        "backend": connection.connection.info.backend_pid,
    }


def third_page_watched(monkeypatch):
    """Count the pages the pass stores; the event (seen by a forked child too) is set once it
    has stored its third."""
    pages_stored: list = []
    third_page_stored = FORK.Event()
    store = sync_module.orders_store

    def storing(**kwargs):
        result = store(**kwargs)
        pages_stored.append(result)
        if len(pages_stored) == 3:
            third_page_stored.set()
        return result

    monkeypatch.setattr(sync_module, "orders_store", storing)
    return pages_stored, third_page_stored


def backend_gone(pid: int) -> bool:
    """The backend ends a moment after its client closed the connection: wait for it."""
    for _ in range(100):
        with all_tenants(), connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
            if cursor.fetchone()[0] == 0:
                return True
        time.sleep(0.05)
    return False


def pass_threads() -> set[str]:
    """The pass's fetch and pipeline threads still alive (its lease heartbeat may take a moment
    longer to notice the pass ended: it is not ours to check here)."""
    return {
        thread.name
        for thread in threading.enumerate()
        if thread.name.startswith(("sync-fetch-", "sync-stock-", "sync-review-"))
    }


def test_batches_run_in_turn_beside_the_pass_while_it_stores(spike, vehicle, monkeypatch):
    shop, connector, count = spike
    _pages_stored, third_page_stored = third_page_watched(monkeypatch)
    recorder = Recorder()
    after_ingest = sync_module.orders_after_ingest
    first = FORK.Event()

    def recording(**kwargs):
        if kwargs["steps"] == ("shipping", "stock") and not first.is_set():
            first.set()
            # The first batch waits for the pass to store its third page: only a pipeline
            # running beside the pass gets past this (inline, the pass would be waiting on it).
            assert third_page_stored.wait(timeout=30), "the pass stored nothing meanwhile"
        began = time.monotonic()  # the system's clock, one for every process
        result = after_ingest(**kwargs)
        recorder.put(
            ids=sorted(kwargs["created_ids"]),
            steps=kwargs["steps"],
            began=began,
            ended=time.monotonic(),
            **where(),
        )
        return result

    monkeypatch.setattr(sync_module, "orders_after_ingest", recording)
    run = sync(shop, connector)

    assert run.status == "success" and run.created == count, run.error
    seen = recorder.taken()
    stock = [batch for batch in seen if batch["steps"] == ("shipping", "stock")]
    review = [batch for batch in seen if batch["steps"] == ("review",)]
    assert len(stock) + len(review) == len(seen)
    sizes = [connector.page_size] * 3 + [count % connector.page_size]
    assert [len(batch["ids"]) for batch in stock] == sizes
    # Orders keep their turn: each batch's orders come after the one before, in both stages,
    # and a batch is reviewed once its stock stage is done.
    flat = [order_id for batch in stock for order_id in batch["ids"]]
    assert flat == sorted(flat) and set(flat) == order_ids(shop)
    assert [batch["ids"] for batch in review] == [batch["ids"] for batch in stock]
    for before, after in zip(stock, review, strict=True):
        assert after["began"] >= before["ended"]
    assert not stranded(shop)  # every order reserved and reviewed before the pass returned
    # One process (or thread) a stage, not the pass's, each on one connection of its own,
    # closed once the pass ended.
    stages = [
        {(b["pid"], b["thread"], b["backend"]) for b in batches} for batches in (stock, review)
    ]
    assert [len(places) for places in stages] == [1, 1] and stages[0] != stages[1]
    places = [batches[0] for batches in (stock, review)]
    if vehicle == "process":
        assert len({place["pid"] for place in places} | {os.getpid()}) == 3
        for place in places:
            with pytest.raises(ChildProcessError):
                os.waitpid(place["pid"], os.WNOHANG)  # the pass waited for it: reaped
    else:
        assert {place["pid"] for place in places} == {os.getpid()}
        assert [place["thread"] for place in places] == [
            f"sync-stock-{shop.pk}",
            f"sync-review-{shop.pk}",
        ]
    with all_tenants(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] not in {place["backend"] for place in places}
    assert all(backend_gone(place["backend"]) for place in places)
    assert not pass_threads()


def test_a_batch_failing_beside_the_pass_fails_it_and_the_others_still_run(
    spike, vehicle, monkeypatch
):
    shop, connector, _count = spike
    pages_stored, third_page_stored = third_page_watched(monkeypatch)
    recorder = Recorder()
    after_ingest = sync_module.orders_after_ingest
    first = FORK.Event()

    def first_fails(**kwargs):
        if not first.is_set():
            first.set()
            recorder.put(ids=kwargs["created_ids"])
            assert third_page_stored.wait(timeout=30), "the pass stored nothing meanwhile"
            raise RuntimeError("the pipeline broke")
        return after_ingest(**kwargs)

    monkeypatch.setattr(sync_module, "orders_after_ingest", first_fails)
    run = sync(shop, connector)

    # The error travelled back from the process as it was raised there.
    assert run.status == "failed" and run.error == "RuntimeError: the pipeline broke"
    # The pass stopped once it learnt of the error; the batches handed over by then still ran,
    # and only the failed one waits for the SLA sweep, as after any failed step.
    [failed] = [batch["ids"] for batch in recorder.taken()]
    assert len(failed) == connector.page_size and len(pages_stored) >= 3
    assert stranded(shop) == set(failed)
    shop.refresh_from_db()
    assert shop.consecutive_sync_failures == 1 and shop.sync_lease_until is None


def test_an_error_that_cannot_travel_arrives_as_its_kind_and_message(spike, monkeypatch):
    shop, connector, _count = spike

    class Unpicklable(Exception):
        def __reduce__(self):
            raise TypeError("not this one")

    def fails(**kwargs):
        raise Unpicklable("a lock went away")

    monkeypatch.setattr(sync_module, "orders_after_ingest", fails)
    run = sync(shop, connector)

    assert run.status == "failed"
    assert run.error == "RuntimeError: Unpicklable: a lock went away"
    assert len(stranded(shop)) == len(order_ids(shop))  # all left for the SLA sweep


def test_a_pipeline_process_that_dies_fails_the_pass_and_leaves_its_orders_to_the_sweep(
    spike, monkeypatch
):
    shop, connector, _count = spike
    recorder = Recorder()
    after_ingest = sync_module.orders_after_ingest
    batches = FORK.Value("i", 0)

    def dies_in_the_second_batch(**kwargs):
        if kwargs["steps"] == ("review",):
            return after_ingest(**kwargs)
        batches.value += 1
        if batches.value == 2:
            recorder.put(pid=os.getpid())
            os._exit(9)  # as the kernel's OOM killer or a kill -9 would end it
        recorder.put(done=kwargs["created_ids"])
        return after_ingest(**kwargs)

    monkeypatch.setattr(sync_module, "orders_after_ingest", dies_in_the_second_batch)
    run = sync(shop, connector)

    assert run.status == "failed"
    assert run.error == (
        f"RuntimeError: the sync-stock-{shop.pk} process ended before its work was done"
    )
    [done, died] = recorder.taken()
    with pytest.raises(ChildProcessError):
        os.waitpid(died["pid"], os.WNOHANG)  # reaped, no zombie left
    # The first batch was done; the pass stopped storing once it learnt of the death, and what
    # it stored after the first batch (reviewed, never reserved) is stranded where the SLA
    # sweep finds it.
    stored = order_ids(shop)
    assert len(stored) >= 2 * connector.page_size
    assert stranded(shop) == stored - set(done["done"]) and len(done["done"]) == connector.page_size
    assert not pass_threads()


def test_a_pass_stopped_mid_way_stops_its_pipeline_processes_with_it(spike, monkeypatch):
    shop, connector, _count = spike
    recorder = Recorder()
    after_ingest = sync_module.orders_after_ingest
    store = sync_module.orders_store
    pages = []

    def recording(**kwargs):
        recorder.put(**where())
        return after_ingest(**kwargs)

    def stopped_on_page_three(**kwargs):
        pages.append(1)
        if len(pages) == 3:
            raise SystemExit("the worker is being stopped")
        return store(**kwargs)

    monkeypatch.setattr(sync_module, "orders_after_ingest", recording)
    monkeypatch.setattr(sync_module, "orders_store", stopped_on_page_three)
    with pytest.raises(SystemExit):
        sync(shop, connector)

    # Its processes ended with it (nothing left waiting on a pipe, as a killed worker's would
    # be), reaped, their connections closed; what they did not finish is the sweep's.
    places = recorder.taken()
    assert places and {place["pid"] for place in places}.isdisjoint({os.getpid()})
    for pid in {place["pid"] for place in places}:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
    assert all(backend_gone(place["backend"]) for place in places)
    assert not pass_threads() and not sync_module._PASS_PIPES
    assert stranded(shop) <= order_ids(shop)


def test_a_pass_of_one_page_runs_its_pipeline_itself(tenant_a, vehicle, monkeypatch):
    shop, store = connect_shop(tenant_a, "tiktok")
    connector = fast_connector(shop)
    add_orders(store, 5, start=timezone.now() - timedelta(hours=1))
    recorder = Recorder()
    after_ingest = sync_module.orders_after_ingest

    def recording(**kwargs):
        recorder.put(steps=kwargs["steps"], **where())
        return after_ingest(**kwargs)

    monkeypatch.setattr(sync_module, "orders_after_ingest", recording)
    run = sync(shop, connector)

    assert run.status == "success" and run.created == 5, run.error
    # Nothing to overlap: no process forked, no thread started for it.
    [batch] = recorder.taken()
    assert (batch["pid"], batch["thread"]) == (os.getpid(), threading.main_thread().name)
    assert batch["steps"] == ("shipping", "stock", "review")
    assert not stranded(shop)


def test_a_pass_that_cannot_fork_runs_its_pipeline_itself(spike, monkeypatch):
    shop, connector, count = spike
    recorder = Recorder()
    after_ingest = sync_module.orders_after_ingest

    def recording(**kwargs):
        recorder.put(steps=kwargs["steps"], **where())
        return after_ingest(**kwargs)

    def no_fork():
        raise BlockingIOError(11, "Resource temporarily unavailable")  # EAGAIN: a process limit

    monkeypatch.setattr(sync_module, "orders_after_ingest", recording)
    monkeypatch.setattr(sync_module.os, "fork", no_fork)
    run = sync(shop, connector)

    assert run.status == "success" and run.created == count, run.error
    seen = recorder.taken()
    assert len(seen) == 4 and {batch["steps"] for batch in seen} == {PIPELINE_STEPS}
    assert {(batch["pid"], batch["thread"]) for batch in seen} == {
        (os.getpid(), threading.main_thread().name)
    }
    assert not stranded(shop) and not pass_threads()


def test_the_pipeline_process_writes_as_the_task_that_runs_the_pass(spike):
    from django_q.tasks import async_task

    from tests.tkerp.test_audit import trail

    shop, _connector, _count = spike
    async_task("shops.tasks.sync_shop", shop.tenant_id, shop.pk, "manual", sync=True)

    with tenant_context(shop.tenant):
        orders = list(Order.objects.order_by("pk"))
    assert len(orders) == 350
    for order in orders[:: len(orders) // 7]:
        inserted = trail(order, label="insert")[0]
        reviewed = trail(order, label="update")[-1]
        assert reviewed.status == order.status != "new"
        # Review ran in the pass's pipeline process; the task is its actor there too.
        assert reviewed.pgh_context["actor"] == "task"
        assert reviewed.pgh_context["task"] == "shops.tasks.sync_shop"
        assert reviewed.pgh_context["task_id"] == inserted.pgh_context["task_id"]


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
    assert not stranded(shop)
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
    assert len(order_ids(shop)) == 2 * connector.page_size and not stranded(shop)
    assert len(calls) == 3 and not pass_threads()
