"""Order sync: pull every order a shop's platform changed since the last pass, and store it.

One pass (`shop_sync`) holds a lease on the shop (one conditional UPDATE), then pages through the
platform's changed orders from the watermark minus an overlap. The lease is short
(`TKERP_SYNC_LEASE_SECONDS`, a minute) and kept alive while the pass lives: renewed with every
page, and by a heartbeat thread in between (one platform call with its retries can outlast the
lease). A killed worker renews nothing, so its shop is free again a lease later, well inside the
task timeout; a live pass whose lease another pass took over stops before its next write
(`SyncLeaseLost`), so two passes never both write. Each page is stored in its own transaction,
and only then does the watermark advance past it, so a pass that dies half-way resumes where the
last stored page ended: nothing is missed (the overlap and ascending order guarantee it) and
nothing is duplicated (ingest is an idempotent upsert). No database transaction is ever open
while the platform is being asked (the sandbox even shares our database connection).

The pipeline (`orders.pipeline`: stock, review, parcels) runs on the pass's stored orders a few
pages at a time (`TKERP_SYNC_PIPELINE_BATCH` orders, 500 by default), not page by page: its
statements cost about the same for 100 orders or 500. In a pass of more than one page it runs
in two processes the pass forks (`_PassProcess`: stock, then review, a batch apart), each with
its own connection, while the pass fetches and stores the next pages (`_PipelineBatch`), and
the pass returns once they are done; a thread asks for the next page while one is stored
(`_PageFetcher`), so the platform's round trips overlap our writes. A pass that fails (a
platform error, a lost lease) still runs it on what it stored before it raises; a killed worker
leaves those orders to the SLA sweep, which re-runs the pipeline on stranded orders.

Three failed passes in a row open an alert; the next successful pass resolves it.
"""

from __future__ import annotations

import collections
import contextvars
import logging
import multiprocessing.connection
import os
import pickle
import queue
import secrets
import signal
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import connections, transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from orders.ingest import IngestResult, orders_store
from orders.pipeline import PIPELINE_STEPS, REVIEW_STEPS, STOCK_STEPS, orders_after_ingest
from orders.returns import returns_supported, returns_sync
from shops.models import Shop, SyncRun, SyncRunStatus
from shops.platforms import connector_for
from shops.platforms.base import Connector, OrderPage, PlatformError
from tkerp.alerts import alert_raise, alert_resolve
from tkerp.audit import audit_actor_metadata, audit_context
from tkerp.db.durability import commits_deferred
from tkerp.models import AlertSeverity
from tkerp.outbound import scrub_reason
from tkerp.tenancy import tenant_context

if TYPE_CHECKING:
    from shops.platforms.base import CancellationRequest

logger = logging.getLogger("tkerp.sync")

MAX_REJECTS_KEPT = 200  # per SyncRun; the count is exact, the list is a sample
MAX_PAGES_PER_PASS = 5_000  # a platform handing out page tokens forever must not pin a worker
# The pipeline beside the pass (_PipelineBatch) rather than inline, in processes of the pass's
# own (_PassProcess) rather than on threads of it, the next page asked for while one is stored
# (_PageFetcher); bench/sync_spike.py turns them off for its baselines.
PIPELINE_THREAD = True
PIPELINE_PROCESS = hasattr(os, "fork")
PAGE_PREFETCH = True
# Held while the pass forks its pipeline processes, and by the lease heartbeat while it talks to
# the database: no other thread of the pass is inside a driver (its locks, its TLS) at the fork.
_FORK_LOCK = threading.Lock()
# The pass's ends of the pipes to its processes (`_PassProcess`), open while they live.
_PASS_PIPES: set[multiprocessing.connection.Connection] = set()


def _setting(name: str, default):
    return getattr(settings, name, default)


def sync_overlap() -> timedelta:
    """How far before the watermark each pass starts again (clock skew, late commits)."""
    return timedelta(seconds=_setting("TKERP_SYNC_OVERLAP_SECONDS", 120))


def sync_initial_window() -> timedelta:
    """How far back the first pass of a newly connected shop looks."""
    return timedelta(days=_setting("TKERP_SYNC_INITIAL_DAYS", 7))


def sync_lease() -> timedelta:
    """How long a pass holds its shop past its last sign of life (acquire, page, heartbeat)."""
    return timedelta(seconds=_setting("TKERP_SYNC_LEASE_SECONDS", 60))


def sync_pipeline_batch() -> int:
    """How many stored orders a pass gathers (over pages) before it runs the pipeline on them."""
    return max(1, _setting("TKERP_SYNC_PIPELINE_BATCH", 500))


def sync_failure_threshold() -> int:
    return _setting("TKERP_SYNC_FAILURE_ALERT_THRESHOLD", 3)


def sync_alert_key(shop: Shop) -> str:
    return f"shop:{shop.pk}:sync"


def rejects_alert_key(shop: Shop) -> str:
    return f"shop:{shop.pk}:ingest_rejects"


class SyncLeaseLost(Exception):
    """Another worker took the shop over (our lease expired mid-pass); stop writing."""


@dataclass(slots=True)
class _Totals:
    pages: int = 0
    created: int = 0
    updated: int = 0
    skipped: int = 0
    rejected: int = 0
    cancellations: int = 0


def shop_sync(
    *, shop: Shop, trigger: str = "schedule", connector: Connector | None = None
) -> SyncRun:
    """Run one sync pass over `shop` now and return its `SyncRun`.

    When another pass holds the shop, nothing runs and an unsaved run with status "skipped" is
    returned. Platform and storage errors are recorded on the run (status "failed"), never
    raised: the next scheduled pass simply tries again. `connector` lets tests pass one built
    with their own HTTP options.
    """
    tenant = shop.tenant
    started = timezone.now()
    token = secrets.token_hex(8)
    with tenant_context(tenant):
        if not _acquire_lease(shop=shop, token=token, now=started):
            return SyncRun(
                tenant=tenant,
                shop=shop,
                trigger=trigger,
                status=SyncRunStatus.SKIPPED,
                started_at=started,
                finished_at=started,
                error="another sync pass of this shop is running",
            )
        # We hold the lease, so a run still marked running was left by a worker that died.
        SyncRun.objects.filter(shop=shop, status=SyncRunStatus.RUNNING).update(
            status=SyncRunStatus.FAILED,
            finished_at=started,
            error="the worker stopped before the pass finished",
        )
        watermark = Shop.objects.values_list("sync_watermark", flat=True).get(pk=shop.pk)
        run = SyncRun.objects.create(
            tenant=tenant,
            shop=shop,
            trigger=trigger,
            status=SyncRunStatus.RUNNING,
            started_at=started,
            watermark_from=watermark,
        )
        try:
            totals = _Totals()
            rejects: list[dict] = []
            with _lease_heartbeat(shop=shop, token=token):
                try:
                    _sync_pass(
                        shop=shop,
                        run=run,
                        token=token,
                        started=started,
                        watermark=watermark,
                        connector=connector,
                        totals=totals,
                        rejects=rejects,
                    )
                except Exception as exc:
                    _record_failure(shop=shop, run=run, exc=exc)
                else:
                    _record_success(shop=shop, run=run, started=started, rejects=rejects)
        finally:
            Shop.objects.filter(pk=shop.pk, sync_lease_token=token).update(
                sync_lease_until=None, sync_lease_token=""
            )
    return run


def _sync_pass(
    *,
    shop: Shop,
    run: SyncRun,
    token: str,
    started: datetime,
    watermark: datetime | None,
    connector: Connector | None,
    totals: _Totals,
    rejects: list[dict],
) -> None:
    own_connector = connector is None
    if connector is None:
        connector = connector_for(shop)
    try:
        _page_through(
            shop=shop,
            run=run,
            token=token,
            started=started,
            watermark=watermark,
            connector=connector,
            totals=totals,
            rejects=rejects,
        )
    finally:
        if own_connector:
            connector.http.close()


def _page_through(
    *,
    shop: Shop,
    run: SyncRun,
    token: str,
    started: datetime,
    watermark: datetime | None,
    connector: Connector,
    totals: _Totals,
    rejects: list[dict],
) -> None:
    since = watermark - sync_overlap() if watermark else started - sync_initial_window()
    pipeline = _PipelineBatch(shop=shop, size=sync_pipeline_batch())
    try:
        _pages_store(
            shop=shop,
            run=run,
            token=token,
            started=started,
            since=since,
            connector=connector,
            totals=totals,
            rejects=rejects,
            pipeline=pipeline,
        )
    except Exception:
        # Pages already stored still get their reservation and review, whatever stopped the
        # pass (a platform error, a lost lease): the pipeline is safe to run next to another.
        try:
            pipeline.finish()
        except Exception:  # the pass's own error is the one to record; the sweep finishes these
            logger.exception("the pipeline of shop %s's stored orders failed", shop.pk)
        raise
    except BaseException:
        # The worker is being stopped (SystemExit, KeyboardInterrupt): the pipeline stops with
        # it, as a killed worker's does, and the SLA sweep finishes what it stored.
        pipeline.abandon()
        raise
    pipeline.finish()
    requests = []
    if cancellations_supported(connector):
        requests = connector.fetch_cancellations(updated_since=since)  # no tx open
    totals.cancellations = cancellations_apply(shop=shop, requests=requests)
    SyncRun.objects.filter(pk=run.pk).update(cancellations=totals.cancellations)
    if returns_supported(connector):
        returns_sync(shop=shop, connector=connector)  # no tx open


class _PipelineBatch:
    """The orders a pass stored and has not yet run the pipeline on (`orders.pipeline`).

    The pipeline's statements each cost about the same for one order or many, so running it on
    one page of the platform's (100 orders) at a time paid those costs 28 times a spike; over
    `size` orders at a time it pays them six times (bench/sync_spike.py).

    A full batch goes to the pass's stock process, which ships and reserves it, then to its
    review process, which reviews it and queues its parcels (`_PassProcess`; threads of the
    pass, `_PassThread`, where a process cannot be forked), each on its own database
    connection, while the pass fetches and stores the next pages: batch N is reviewed while
    N+1 is reserved and N+2 stored, their statements on three PostgreSQL backends at once and
    their Python on every core (bench/sync_spike.py). Each process is fed in order: orders keep
    their turn (a batch reserves in ascending id, the order pages were stored in, and batches
    run one after another). `finish` hands over what is left, waits for both, and raises the
    first error a batch met, so a pass ends only once its pipeline has run. `prepare` starts
    them once the pass knows it has more than one page; a pass of one page has nothing to
    overlap and runs its pipeline itself, as do a caller holding a transaction (another
    connection could not see orders stored in that transaction) and a pass that cannot fork.

    Stored orders whose pipeline never runs (the worker is killed in between) are stranded in a
    state the SLA sweep re-runs, as after a failed step.
    """

    def __init__(self, *, shop: Shop, size: int):
        self.shop = shop
        self.size = size
        self.created: list[int] = []
        self.updated: list[int] = []
        self.inline = not PIPELINE_THREAD or transaction.get_connection().in_atomic_block
        vehicle = _PassProcess if PIPELINE_PROCESS else _PassThread
        self._stock = vehicle(name=f"sync-stock-{shop.pk}")
        self._review = vehicle(name=f"sync-review-{shop.pk}")
        self._running: list[Future] = []
        self._lock = threading.Lock()  # `_running`: the stock stage's outcomes add to it

    def prepare(self) -> None:
        """The pass has more than one page to store: start the pipeline's processes (or
        threads) now, while no other thread of the pass is talking to a server (see
        `_PassProcess`)."""
        if self.inline:
            return
        try:
            self._stock.start()
            self._review.start()
        except OSError:  # no process to be had (a limit, memory): the pass runs it itself
            logger.warning("shop %s: pipeline processes not started", self.shop.pk, exc_info=True)
            self.inline = True

    def add(self, result: IngestResult) -> None:
        self.created.extend(result.created_ids)
        self.updated.extend(result.updated_ids)
        if len(self.created) + len(self.updated) >= self.size:
            self._hand_over()
        self._raise_error()

    def finish(self) -> None:
        """Run the pipeline on what is left, wait for the batches handed over, and raise the
        first error any of them met."""
        self._hand_over()
        self._stock.close()  # every batch's stock stage done, and its review handed over
        self._review.close()
        self._raise_error()

    def abandon(self) -> None:
        """Stop the pipeline now, without running what waits (see `_PassProcess.abandon`)."""
        self._stock.abandon()
        self._review.abandon()

    def _hand_over(self) -> None:
        created, updated = self.created, self.updated
        if not created and not updated:
            return
        self.created, self.updated = [], []
        if self.inline or not self._stock.started:
            # A pass of one page has nothing to overlap: no process, no thread.
            _pipeline_run(self.shop, created, updated, PIPELINE_STEPS)
            return
        stock = self._stock.submit(partial(_pipeline_run, self.shop, created, updated, STOCK_STEPS))
        self._track(stock)
        # Reviewed once its stock stage is done, whatever came of it (a failed step never
        # stops the next ones: see orders.pipeline), after the batches before it.
        stock.add_done_callback(
            lambda _stock: self._track(
                self._review.submit(
                    partial(_pipeline_run, self.shop, created, updated, REVIEW_STEPS)
                )
            )
        )

    def _track(self, future: Future) -> None:
        with self._lock:
            self._running.append(future)

    def _raise_error(self) -> None:
        """Forget the batches done; raise the first error among them."""
        with self._lock:
            done = [future for future in self._running if future.done()]
            self._running = [future for future in self._running if future not in done]
        errors = [future.exception() for future in done]
        for error in errors:
            if error is not None:
                raise error


def _pipeline_run(
    shop: Shop, created: list[int], updated: list[int], steps: tuple[str, ...]
) -> None:
    """Steps of the pipeline for one batch of a pass (module level, so a batch can be sent to
    a process)."""
    try:
        with commits_deferred():  # as the pages' own commits (see _pages_store)
            orders_after_ingest(shop=shop, created_ids=created, updated_ids=updated, steps=steps)
    except Exception:  # the next batches still run; the pass raises
        logger.exception("the pipeline of shop %s failed", shop.pk)
        raise


class _PageFetcher:
    """Asks the platform for a pass's pages on a thread of the pass (`_PassThread`), so the next
    page is on its way while the pass stores the one before: the platform's answer (a network
    round trip and its rate limit, 28 of them a spike) overlaps our writes. One request at a
    time, in order. `ask` returns what to call for the page: it waits for the answer and raises
    what the call raised. A caller holding a transaction asks inline, when it calls (the
    in-process sandbox answers on the asking thread's connection, which must see that
    transaction's rows). `close` lets a call under way end (the connector closes next)."""

    def __init__(self, connector: Connector, *, since: datetime, name: str):
        self.connector = connector
        self.since = since
        self.inline = not PAGE_PREFETCH or transaction.get_connection().in_atomic_block
        self._thread = _PassThread(name=name)

    def ask(self, page_token: str | None) -> Callable[[], OrderPage]:
        call = partial(self.connector.fetch_orders, updated_since=self.since, page_token=page_token)
        return call if self.inline else self._thread.submit(call).result

    def close(self) -> None:
        self._thread.close()


class _PassThread:
    """A thread of a sync pass, started with the first call submitted (`_thread_start`): it runs
    the calls one at a time, in the order submitted, each call's outcome (its result or what it
    raised) in the `Future` `submit` returns. `close` lets the calls submitted run, then ends
    the thread."""

    def __init__(self, *, name: str):
        self.name = name
        self._calls: queue.SimpleQueue[tuple[Callable, Future] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    @property
    def started(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        if self._thread is None:
            self._thread = _thread_start(self._serve, name=self.name)

    def submit(self, call: Callable[[], object]) -> Future:
        self.start()
        future: Future = Future()
        self._calls.put((call, future))
        return future

    def _serve(self) -> None:
        while (item := self._calls.get()) is not None:
            call, future = item
            try:
                future.set_result(call())
            except BaseException as error:  # raised on the pass's thread by `result`
                future.set_exception(error)

    def close(self) -> None:
        if self._thread is not None:
            self._calls.put(None)
            self._thread.join()
            self._thread = None

    def abandon(self) -> None:
        """End the thread after the calls submitted, without waiting for them: a thread
        cannot be stopped, and it dies with its process."""
        if self._thread is not None:
            self._calls.put(None)
            self._thread = None


class _PassProcess:
    """A process of a sync pass, forked from it, that runs the calls submitted one at a time, in
    the order submitted, each call's outcome (its result or what it raised) in the `Future`
    `submit` returns; a call and its outcome travel pickled over a pipe. `close` lets the calls
    submitted run, then ends the process and waits for it.

    The pass's pipeline runs here rather than on a thread: a thread shares the interpreter with
    the pass, so the pass's Python (mapping pages, building rows) and the pipeline's (review,
    reservation) took turns on one core; a process of its own runs beside it on another
    (bench/sync_spike.py). The child is the pass as it was at the fork: the same code, settings,
    tenant scope and audit actor (the forking thread's, the only one a child has); it leaves
    the pass's database connections alone and opens its own, closed when it ends. It is forked
    at `start` (or the first `submit`): `_pages_store` starts it between two pages, when the
    fetch thread has no request under way, and the lease heartbeat holds `_FORK_LOCK` while it
    talks to the database, so no thread of the pass is inside a driver when the process is
    copied. A child whose pass dies ends after its current call (its pipe is closed); a pass
    whose child dies gets the error on every call still waiting, and the SLA sweep finishes
    their orders, as after a failed step."""

    def __init__(self, *, name: str):
        self.name = name
        self._pid: int | None = None
        self._pipe: multiprocessing.connection.Connection | None = None
        self._waiting: collections.deque[Future] = collections.deque()
        self._lock = threading.Lock()  # `_waiting` and `_gone` between submit and the reader
        self._gone = False
        self._reader: threading.Thread | None = None

    @property
    def started(self) -> bool:
        return self._pid is not None

    def start(self) -> None:
        if self._pid is not None:
            return
        ours, theirs = multiprocessing.connection.Pipe()
        with _FORK_LOCK:
            pid = os.fork()
        if pid == 0:  # the child: never returns
            code = 1
            try:
                # The pass's ends of its pipes, this one's and its other process's: a pass's
                # process must see its pipe end when the pass does, whoever else lives on.
                for pipe in (ours, *_PASS_PIPES):
                    pipe.close()
                for wrapper in connections.all(initialized_only=True):
                    # The pass's: left as they are (psycopg never closes a connection another
                    # process opened); this process connects on its first statement.
                    wrapper.connection = None
                code = self._serve(theirs)
            finally:
                try:
                    connections.close_all()
                finally:
                    os._exit(code)
        theirs.close()
        self._pid, self._pipe = pid, ours
        _PASS_PIPES.add(ours)
        self._reader = _thread_start(self._read, name=f"{self.name}-outcomes")

    def submit(self, call: Callable[[], object]) -> Future:
        self.start()
        future: Future = Future()
        with self._lock:
            if self._gone:
                future.set_exception(self._gone_error())
                return future
            self._waiting.append(future)
        with suppress(OSError):  # the child is gone: `_read` fails what waits, this call included
            self._pipe.send(call)
        return future

    def _serve(self, pipe: multiprocessing.connection.Connection) -> int:
        """The child's work: each call sent, until the pass says stop (or is gone), each
        outcome sent back. Returns the child's exit code."""
        while True:
            try:
                call = pipe.recv()
            except EOFError:  # the pass is gone
                return 1
            if call is None:
                return 0
            try:
                outcome = (True, call())
            except Exception as error:
                outcome = (False, _picklable(error))
            pipe.send(outcome)

    def _read(self) -> None:
        """The pass's side: each outcome to the call it answers, in order; should the child
        die, its error to every call still waiting."""
        while True:
            try:
                ok, value = self._pipe.recv()
            except (EOFError, OSError):
                break
            with self._lock:
                future = self._waiting.popleft()
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
        self._fail_waiting()

    def _fail_waiting(self) -> None:
        with self._lock:
            self._gone = True
            waiting, self._waiting = list(self._waiting), collections.deque()
        for future in waiting:
            future.set_exception(self._gone_error())

    def _gone_error(self) -> RuntimeError:
        return RuntimeError(f"the {self.name} process ended before its work was done")

    def close(self) -> None:
        if self._pid is None:
            return
        pid, self._pid = self._pid, None
        with suppress(OSError):
            self._pipe.send(None)
        self._reap(pid)

    def abandon(self) -> None:
        """End the process now, its current call unfinished (its transaction rolls back) and
        the calls waiting never run, as when the worker is killed with it: for a pass being
        stopped (SystemExit, KeyboardInterrupt) in a process that lives on."""
        if self._pid is None:
            return
        pid, self._pid = self._pid, None
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        self._reap(pid)

    def _reap(self, pid: int) -> None:
        """Wait for the child to end, then for its outcomes: the reader has read every one the
        child sent once its end of the pipe is closed. Calls still waiting then (the child died
        before answering them) get its error."""
        os.waitpid(pid, 0)
        self._reader.join()
        self._pipe.close()
        _PASS_PIPES.discard(self._pipe)
        self._fail_waiting()


def _picklable(error: Exception) -> Exception:
    """`error`, or one that says the same, if it cannot travel between processes."""
    try:
        pickle.dumps(error)
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")
    return error


def _thread_start(target: Callable[[], None], *, name: str) -> threading.Thread:
    """Run `target` on a daemon thread that carries this one's context: the tenant scope (a
    context variable) and the audit actor (pghistory keeps it per thread), so what it writes
    is scoped and attributed as the pass's own. Its database connections close when it ends."""
    context = contextvars.copy_context()
    actor = audit_actor_metadata()

    def run() -> None:
        try:
            with audit_context(**actor) if actor else nullcontext():
                target()
        finally:
            connections.close_all()  # this thread's connections only

    thread = threading.Thread(target=context.run, args=(run,), name=name, daemon=True)
    thread.start()
    return thread


def _pages_store(
    *,
    shop: Shop,
    run: SyncRun,
    token: str,
    started: datetime,
    since: datetime,
    connector: Connector,
    totals: _Totals,
    rejects: list[dict],
    pipeline: _PipelineBatch,
) -> None:
    """Store every page the platform hands out for `since`, the watermark following them."""
    seen_tokens: set[str] = set()
    # Pages come oldest update first, so the watermark may follow each stored page; where the
    # connector says they do not (`pages_in_update_order`), or should a platform ever break
    # that order, from then on it only advances once the pass is stored.
    in_order = connector.pages_in_update_order
    previous_max: datetime | None = None
    pass_max: datetime | None = None
    fetcher = _PageFetcher(connector, since=since, name=f"sync-fetch-{shop.pk}")
    next_page = fetcher.ask(None)
    try:
        while True:
            page = next_page()  # no tx open
            page_token = page.next_page_token
            looping = page_token in seen_tokens or totals.pages + 1 >= MAX_PAGES_PER_PASS
            if page_token and not looping:  # the next page is asked for while this one is stored
                pipeline.prepare()  # before the fetch thread has a request under way
                next_page = fetcher.ask(page_token)
            times = [
                order.updated_at for order in page.orders if isinstance(order.updated_at, datetime)
            ]
            if times and previous_max is not None and min(times) < previous_max:
                in_order = False
            # Still ours? A pass whose lease expired stops before writing another page.
            _renew_lease(shop=shop, token=token, advance_to=None)
            # The page commits on its own (stock and review run on the stored orders every
            # `sync_pipeline_batch()` of them, see _PipelineBatch); only once it is stored may
            # the watermark pass it. Dying in between costs a re-read.
            # So its commits need not wait for the disk: the watermark's commit below does, and
            # takes every earlier one with it (tkerp.db.durability).
            with commits_deferred():
                result = orders_store(
                    shop=shop, platform_orders=page.orders, source="poll", unmapped=page.unmapped
                )
            pipeline.add(result)
            page_max = result.max_updated_at
            if page_max is not None:
                previous_max = max(previous_max or page_max, page_max)
                pass_max = previous_max
            with transaction.atomic():
                _store_progress(
                    shop=shop,
                    run=run,
                    token=token,
                    result=result,
                    totals=totals,
                    rejects=rejects,
                    advance_to=_cap(page_max, started) if in_order else None,
                )
            if not page_token:
                break
            if looping:
                raise PlatformError(
                    f"paging did not end after {totals.pages} pages (token repeated or too many)",
                    platform=shop.platform,
                )
            seen_tokens.add(page_token)
    finally:
        fetcher.close()
    if not in_order and pass_max is not None:
        advance_to = _cap(pass_max, started)
        _renew_lease(shop=shop, token=token, advance_to=advance_to)
        run.watermark_to = max(filter(None, (run.watermark_from, run.watermark_to, advance_to)))
        SyncRun.objects.filter(pk=run.pk).update(watermark_to=run.watermark_to)


def _cap(when: datetime | None, started: datetime) -> datetime | None:
    """Never move the watermark past this pass's start: a platform clock running ahead would
    otherwise make the next pass skip orders our clock has not reached yet."""
    if when is None:
        return None
    return min(when, started)


def _acquire_lease(*, shop: Shop, token: str, now: datetime) -> bool:
    """Take the shop for a pass when no live pass holds it (no lease, or an expired one)."""
    return bool(
        Shop.objects.filter(pk=shop.pk)
        .filter(Q(sync_lease_until__isnull=True) | Q(sync_lease_until__lt=now))
        .update(
            sync_lease_until=now + sync_lease(),
            sync_lease_token=token,
            last_sync_started_at=now,
        )
    )


@contextmanager
def _lease_heartbeat(*, shop: Shop, token: str) -> Iterator[None]:
    """Keep the pass's lease alive while the block runs, however long one platform call takes.

    Renewing per page is not enough on its own: one call with its retries, backoffs and
    `Retry-After` waits can outlast a short lease. A thread renews the lease every third of it
    (on its own database connection, closed when it ends) until the block exits, and stops by
    itself once the lease is no longer ours: the pass then learns so at its next renewal, before
    it writes anything. The thread dies with a killed worker, which frees the shop a lease later.
    """
    interval = sync_lease().total_seconds() / 3
    stop = threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(interval):
                with _FORK_LOCK:
                    extended = _extend_lease(shop=shop, token=token)
                if not extended:
                    return
        except Exception:
            # A database hiccup here only costs the lease; the pass's own renewal decides.
            logger.exception("sync lease heartbeat of shop %s failed", shop.pk)

    thread = _thread_start(beat, name=f"sync-lease-{shop.pk}")  # the pass's scope, closed after
    try:
        yield
    finally:
        stop.set()
        # Bounded: a renewal waiting on a row lock the caller's own transaction holds must not
        # hang the pass; one finishing late is harmless (it matches our token only).
        thread.join(timeout=10)


def _extend_lease(*, shop: Shop, token: str, **updates) -> bool:
    """Push our lease one lease ahead (with `updates` in the same UPDATE); False when the shop
    is no longer held with our token."""
    updates["sync_lease_until"] = timezone.now() + sync_lease()
    return bool(Shop.objects.filter(pk=shop.pk, sync_lease_token=token).update(**updates))


def _renew_lease(*, shop: Shop, token: str, advance_to: datetime | None) -> None:
    """Extend our lease and move the watermark forward to `advance_to` (never back) in one
    conditional UPDATE; raises `SyncLeaseLost` when another pass holds the shop now."""
    updates = {}
    if advance_to is not None:
        updates["sync_watermark"] = Greatest(
            Coalesce("sync_watermark", Value(advance_to)), Value(advance_to)
        )
    if not _extend_lease(shop=shop, token=token, **updates):
        raise SyncLeaseLost("the sync lease expired and another pass took over")


def _store_progress(
    *,
    shop: Shop,
    run: SyncRun,
    token: str,
    result: IngestResult,
    totals: _Totals,
    rejects: list[dict],
    advance_to: datetime | None,
) -> None:
    """In the page's transaction: renew the lease, advance the watermark, count the page."""
    _renew_lease(shop=shop, token=token, advance_to=advance_to)
    totals.pages += 1
    totals.created += result.created
    totals.updated += result.updated
    totals.skipped += result.skipped
    totals.rejected += len(result.rejects)
    room = MAX_REJECTS_KEPT - len(rejects)
    rejects.extend(reject.as_dict() for reject in result.rejects[: max(room, 0)])
    updates = {
        "pages": totals.pages,
        "created": totals.created,
        "updated": totals.updated,
        "skipped": totals.skipped,
        "rejected": totals.rejected,
    }
    if result.rejects:
        updates["rejects"] = rejects
    if advance_to is not None:
        # Only this pass moves the watermark while it holds the lease.
        watermark_to = max(filter(None, (run.watermark_from, run.watermark_to, advance_to)))
        run.watermark_to = updates["watermark_to"] = watermark_to
    SyncRun.objects.filter(pk=run.pk).update(**updates)


def _record_success(*, shop: Shop, run: SyncRun, started: datetime, rejects: list[dict]) -> None:
    finished = timezone.now()
    SyncRun.objects.filter(pk=run.pk).update(status=SyncRunStatus.SUCCESS, finished_at=finished)
    Shop.objects.filter(pk=shop.pk).update(
        consecutive_sync_failures=0, last_sync_success_at=started, last_sync_error=""
    )
    alert_resolve(tenant=shop.tenant, key=sync_alert_key(shop))
    if rejects:
        sample = "; ".join(
            f"order {r['order'] or '(no id)'}: {r['field']}: {r['message']}" for r in rejects[:5]
        )
        alert_raise(
            tenant=shop.tenant,
            key=rejects_alert_key(shop),
            kind="ingest_rejected",
            severity=AlertSeverity.WARNING,
            title=f"Orders from {shop.name} could not be stored",
            message=f"The platform sent orders tkerp cannot store: {sample}. See sync run "
            f"#{run.pk} for the full list.",
            shop=shop,
        )
    run.refresh_from_db()


def _record_failure(*, shop: Shop, run: SyncRun, exc: Exception) -> None:
    if isinstance(exc, PlatformError | SyncLeaseLost):
        logger.warning("sync of shop %s failed: %s", shop.pk, exc)
        error = str(exc)
    else:
        # Not a platform's answer, but shown to the operator role all the same: one scrubbed
        # line (the traceback stays in the server log).
        logger.exception("sync of shop %s failed", shop.pk)
        error = f"{type(exc).__name__}: {scrub_reason(exc)}"
    SyncRun.objects.filter(pk=run.pk).update(
        status=SyncRunStatus.FAILED, finished_at=timezone.now(), error=error
    )
    Shop.objects.filter(pk=shop.pk).update(
        consecutive_sync_failures=F("consecutive_sync_failures") + 1, last_sync_error=error
    )
    failures = Shop.objects.values_list("consecutive_sync_failures", flat=True).get(pk=shop.pk)
    if failures >= sync_failure_threshold():
        try:
            alert_raise(
                tenant=shop.tenant,
                key=sync_alert_key(shop),
                kind="sync_failing",
                title=f"Order sync failing for {shop.name}",
                message=f"{failures} sync passes in a row failed; orders may be missing. "
                f"Last error: {error}",
                shop=shop,
            )
        except Exception:
            logger.exception("could not raise the sync alert of shop %s", shop.pk)
    run.refresh_from_db()


def cancellations_supported(connector: Connector) -> bool:
    """Whether the connector overrides the base `fetch_cancellations` (which returns nothing):
    a pass asks the platform for cancellation requests only then."""
    return type(connector).fetch_cancellations is not Connector.fetch_cancellations


def cancellations_apply(*, shop: Shop, requests: list[CancellationRequest]) -> int:
    """Store the platform's cancellation requests in the inbox (orders.cancellations), and give
    orders that arrived carrying a request one too; returns how many requests changed."""
    from orders.cancellations import cancellations_apply as inbox_apply
    from orders.cancellations import cancellations_from_orders

    changed = inbox_apply(shop=shop, requests=requests) if requests else 0
    return changed + cancellations_from_orders(tenant=shop.tenant)


def sync_runs_prune(*, older_than: timedelta | None = None) -> int:
    """Delete finished sync runs older than the retention (`TKERP_SYNC_RUN_RETENTION_DAYS`,
    default 14); call it under `all_tenants()` or a tenant scope. The shop keeps its own sync
    state, so nothing but history is lost."""
    if older_than is None:
        older_than = timedelta(days=_setting("TKERP_SYNC_RUN_RETENTION_DAYS", 14))
    cutoff = timezone.now() - older_than
    deleted, _ = (
        SyncRun.objects.filter(started_at__lt=cutoff).exclude(status=SyncRunStatus.RUNNING).delete()
    )
    return deleted
