"""Benchmark: a live stream's 2,800-order spike through one TikTok sync pass, end to end.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tkerp .venv/bin/python bench/sync_spike.py

Runs the spike eight times, each in a throwaway PostgreSQL database next to the one
DATABASE_URL names (dropped at the end unless --keep-db, tables built from the models):

1. the old path: the ORM's `bulk_create`, parcels split order by order
   (`tkerp.bulk.COPY_ENABLED` and `logistics.routing.SPLIT_SET_BASED` off), the pipeline after
   every page;
2. the set-based path (COPY, one split for a batch), the pipeline after every page;
3. the set-based path, the pipeline over 500 stored orders at a time
   (`shops.sync._PipelineBatch`) on the pass's own thread (`shops.sync.PIPELINE_THREAD` off);
4. the same on threads of the pass (`shops.sync.PIPELINE_PROCESS` off: stock, then review,
   one batch apart), beside the pass storing the next pages;
5. as 4, the next page asked for on the pass's fetch thread while one is stored
   (`shops.sync._PageFetcher`);
6. as 5, with the parcel split the pipeline queues run by a second worker process
   (`SplitWorker`), as the second worker of a q cluster (`Q_WORKERS=2`) picks it up;
7. now: as 6, the pipeline in two processes the pass forks, one batch apart (stock, then
   review: `shops.sync._PassProcess`), rather than on its thread;
8. as 7, the platform's answers recorded before the pass and replayed to it
   (`harness.replayed_transport`): the platform's own work (the in-process sandbox's views,
   queries and JSON) off this machine's cores, as a real platform's is, while the connector
   still sends, parses and maps every page.

Runs 1-5 split inline, in the pass's process, so the whole pipeline is in one process's figure;
runs 6-8 end when the second worker has split the last batch, and 7 and 8 count the pipeline
processes' CPU and their backends' with the pass's (`ProcessMeasure`). From 2 on, the process
is warmed and frozen as a q worker is when it starts (`tkerp.workers`). Each run makes a
tenant with the demo's carrier rules, a TikTok shop with SKUs and listings, connects it to the
TikTok sandbox, lands the spike there and times `shop_sync` with the connector's real page size
and rate limits over the sandbox's HTTP API (served in-process): sync, ingest, reservation,
review, parcel split, carrier rules.

Reported per run: orders/s end to end, the CPU per order of its processes and of their
PostgreSQL backends (read from /proc, so when the server runs on this machine), and each
stage's seconds, share and CPU seconds: the platform (inside the sandbox: its views,
its queries, JSON), the connector's mapping, ingest, shipping commits and reservation, review,
parcel split, carrier rules (and dispatch), and the rest (sync bookkeeping, leases,
cancellations). A second pass over the same window (nothing new) shows the cost of the overlap.

`--floor` then measures, on the rows the set-based run stored, the CPU any design would pay
(`floor_measure`) and the throughput that bounds on this machine's cores; `--unsaid-baseline`
adds a run with `pgtrigger.ignore` unset, as connections were before tkerp said it.
Never part of the test run.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402
    audit_triggers_set,
    backend_cpu,
    bench_tiktok_shop,
    django_on,
    machine,
    machine_limits,
    machine_limits_line,
    replayed_transport,
    throwaway_database,
    timed_transport,
)

STAGES = (
    ("platform", "inside the sandbox (the platform's share)"),
    ("mapping", "connector: JSON to platform orders"),
    ("ingest", "orders, lines, events stored"),
    ("reservation", "shipping commits and reservation"),
    ("review", "address normalisation and review rules"),
    ("split", "parcel split"),
    ("rules", "carrier rules and dispatch"),
    ("other", "sync bookkeeping, leases, cancellations, waiting for the pipeline"),
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=2800)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--cancel-rate", type=float, default=0.03)
    parser.add_argument("--keep-db", action="store_true", help="Leave the bench databases.")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile the set-based pass; print the top 30."
    )
    parser.add_argument(
        "--only",
        choices=(
            "old path",
            "set-based, pipeline every page",
            "set-based, worker not frozen",
            "set-based, pipeline inline",
            "set-based, pipeline thread",
            "set-based, page prefetch",
            "set-based, split apart",
            "set-based",
            "set-based, platform elsewhere",
        ),
        help="Run one path only (no baseline).",
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help=(
            "Milliseconds of network each platform request waits before the in-process sandbox "
            "answers, as a real platform's API is a round trip away (default 0: none)."
        ),
    )
    parser.add_argument(
        "--audit",
        choices=("on", "off"),
        default="on",
        help="The audit trail's triggers on (as in production) or off: run both to see its cost.",
    )
    parser.add_argument(
        "--timeline",
        action="store_true",
        help=(
            "Draw when each stage ran during each path's pass (fetch, store, stock, review, "
            "split: one lane a stage), and how long the pipeline ran after the last page."
        ),
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help=(
            "After the set-based run, measure the work no design can skip on this machine "
            "(see `floor_measure`) and the most orders/s and reservations/s it allows."
        ),
    )
    parser.add_argument(
        "--unsaid-baseline",
        action="store_true",
        help=(
            "Also run the set-based path with `pgtrigger.ignore` unset on the connection, as "
            "every connection had it before tkerp.db.postgres.base said it: each audited row "
            "then raises and catches an error in its trigger."
        ),
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    every = [
        SpikePath("old path", set_based=False, every_page=True, frozen=False),
        SpikePath("set-based, pipeline every page", every_page=True),
        SpikePath("set-based, worker not frozen", frozen=False),
        SpikePath("set-based, pipeline inline"),
        SpikePath("set-based, pipeline thread", threaded=True),
        SpikePath("set-based, page prefetch", threaded=True, prefetch=True),
        SpikePath("set-based, split apart", threaded=True, prefetch=True, split_apart=True),
        SpikePath("set-based", threaded=True, process=True, prefetch=True, split_apart=True),
        SpikePath(
            "set-based, platform elsewhere",
            threaded=True,
            process=True,
            prefetch=True,
            split_apart=True,
            platform_elsewhere=True,
        ),
    ]
    paths = [path for path in every if path.label != "set-based, worker not frozen"]
    if args.only:
        paths = [path for path in every if path.label == args.only]
    if args.unsaid_baseline:
        paths.insert(
            -1,
            SpikePath(
                "set-based, pgtrigger.ignore unset",
                ignore_said=False,
                threaded=True,
                process=True,
                prefetch=True,
                split_apart=True,
            ),
        )
    results = []
    for path in paths:
        with throwaway_database("sync", script="bench/sync_spike.py", keep=args.keep_db) as url:
            try:
                result = run(args, url, path)
            finally:
                gc.unfreeze()  # the next path starts as this one did
            results.append((path.label, result))
    report(args, results)


#: The timeline's lanes: where each stage runs when the pass runs its pipeline beside it (the
#: fetch thread maps pages, the pass stores them, its stock and review processes reserve and
#: review, the split worker splits and applies the carrier rules).
TIMELINE_LANES = (
    ("mapping", "fetch"),
    ("ingest", "store"),
    ("reservation", "stock"),
    ("review", "review"),
    ("split", "split"),
)


class CoresBusy:
    """How busy the machine's cores were during a pass (`--timeline`): /proc/stat read every
    25 ms on a thread, whatever runs (the pass, its processes, their PostgreSQL backends).
    `since(begun)` gives (seconds from `begun`, cores busy over the interval ending then)."""

    INTERVAL = 0.025

    def __init__(self):
        self.samples: list[tuple[float, int, int]] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._sample, name="bench-cores", daemon=True)
        self.thread.start()

    @staticmethod
    def _read() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            jiffies = [int(field) for field in stat.readline().split()[1:]]
        idle = jiffies[3] + jiffies[4]  # idle, iowait
        return sum(jiffies) - idle, sum(jiffies)

    def _sample(self) -> None:
        while not self.stopped.is_set():
            self.samples.append((time.perf_counter(), *self._read()))
            self.stopped.wait(self.INTERVAL)

    def since(self, begun: float) -> list[tuple[float, float]]:
        self.stopped.set()
        self.thread.join()
        cores = os.cpu_count() or 1
        return [
            (at - begun, cores * (busy - busy0) / (total - total0))
            for (_, busy0, total0), (at, busy, total) in itertools.pairwise(self.samples)
            if total > total0
        ]


@dataclass
class Timeline:
    """When each stage ran during one pass (`--timeline`): spans of (stage, start, end) in
    seconds from the pass's start, one lane a stage, and how many cores were busy."""

    seconds: float
    spans: list[tuple[str, float, float]]
    cores: list[tuple[float, float]]

    def chart(self, columns: int = 60) -> str:
        """One row a lane, one column `seconds / columns` long: '#' busy for at least half of
        it, '-' for less, '.' idle; then the lane's busy share of the pass and when its last
        call ended. Shows the critical stage (the lane busy to the end) and the pass's tail
        (the pipeline still running after the last page was stored)."""
        cell = self.seconds / columns
        lines = [f"  timeline, {self.seconds:.2f} s, one column {cell * 1000:.0f} ms:"]
        for stage, lane in TIMELINE_LANES:
            spans = [(a, b) for name, a, b in self.spans if name == stage]
            if not spans:
                continue
            row = []
            for column in range(columns):
                left, right = column * cell, (column + 1) * cell
                busy = sum(max(0.0, min(b, right) - max(a, left)) for a, b in spans)
                row.append("#" if busy >= cell / 2 else "-" if busy > 0 else ".")
            busy = sum(b - a for a, b in spans)
            lines.append(
                f"  {lane:<7}|{''.join(row)}| {100 * busy / self.seconds:3.0f} % busy, "
                f"last done at {max(b for _, b in spans):.2f} s"
            )
        if self.cores:
            cores = os.cpu_count() or 1
            row = []
            for column in range(columns):
                left, right = column * cell, (column + 1) * cell
                seen = [busy for at, busy in self.cores if left < at <= right + CoresBusy.INTERVAL]
                share = sum(seen) / len(seen) / cores if seen else 0.0
                row.append(str(min(9, int(share * 10))))
            lines.append(
                f"  cores  |{''.join(row)}| {self._busy(0.0):.2f} of {cores} busy on average "
                "(a column: tenths of all cores, 9 = at least 90 %)"
            )
        stored = [b for name, _, b in self.spans if name == "ingest"]
        if stored:
            after = max(stored)
            busy = f", {self._busy(after):.2f} cores busy then" if self.cores else ""
            lines.append(
                f"  the last page was stored at {after:.2f} s: the pipeline ran "
                f"{self.seconds - after:.2f} s after it{busy}"
            )
        return "\n".join(lines)

    def _busy(self, since: float) -> float:
        seen = [busy for at, busy in self.cores if since < at <= self.seconds]
        return sum(seen) / len(seen) if seen else 0.0


@dataclass(frozen=True)
class SpikePath:
    """One way through the spike: the old path's parts or the set-based ones (COPY and the
    set-based split), `pgtrigger.ignore` said on the connection, the pipeline after every page
    or over the product's batch, the process warmed and frozen as a q worker is when it starts
    (tkerp.workers), the pipeline beside the pass (`shops.sync.PIPELINE_THREAD`) on threads of
    it or in processes of its own (`shops.sync.PIPELINE_PROCESS`), the next page asked for while
    one is stored (`shops.sync.PAGE_PREFETCH`), the parcel split in a second worker process
    (`SplitWorker`) rather than in the pass's, and the platform's answers replayed
    (`harness.replayed_transport`) rather than made by the in-process sandbox."""

    label: str
    set_based: bool = True
    ignore_said: bool = True
    every_page: bool = False
    frozen: bool = True
    threaded: bool = False
    process: bool = False
    prefetch: bool = False
    split_apart: bool = False
    platform_elsewhere: bool = False


class Stages:
    """Wall and CPU seconds per stage, by wrapping the functions that do each stage.

    Each thread keeps its own stack and its own CPU clock: the pass's pipeline threads (or
    processes, whose stages `ProcessMeasure` adds) run reservation and review, the split
    worker the split and rules, and the fetch thread asks for the next page, while the pass
    itself stores, so stages overlap in wall time (their wall seconds add up to more than the
    pass). `main` is the seconds the pass's own thread spent in stages. `spans` holds each
    outermost stage call as (stage, start, end) in `time.perf_counter` seconds, the system's
    monotonic clock, one for every process: `--timeline` draws them.
    """

    def __init__(self):
        self.wall = dict.fromkeys([name for name, _ in STAGES], 0.0)
        self.cpu = dict.fromkeys([name for name, _ in STAGES], 0.0)
        self.main = 0.0
        self.spans: list[tuple[str, float, float]] = []
        self.local = threading.local()

    def wrap(self, module, attribute: str, stage: str) -> None:
        inner = getattr(module, attribute)

        def timed(*args, **kwargs):
            # A stage inside another (rules inside split) is charged to the inner one only.
            stack = self.local.__dict__.setdefault("stack", [])
            stack.append(stage)
            start, cpu = time.perf_counter(), time.thread_time()
            try:
                return inner(*args, **kwargs)
            finally:
                end = time.perf_counter()
                wall, cpu = end - start, time.thread_time() - cpu
                stack.pop()
                if not stack:
                    self.spans.append((stage, start, end))
                if not stack and threading.current_thread() is threading.main_thread():
                    self.main += wall
                self.wall[stage] += wall
                self.cpu[stage] += cpu
                if stack:
                    self.wall[stack[-1]] -= wall
                    self.cpu[stack[-1]] -= cpu

        setattr(module, attribute, timed)

    def mark(self) -> tuple[dict[str, float], dict[str, float], int]:
        """Where the counts stand, for `since`: taken before a process is forked."""
        return dict(self.wall), dict(self.cpu), len(self.spans)

    def since(self, mark: tuple) -> tuple[dict[str, float], dict[str, float], list]:
        """What was added since `mark`: a forked process sends it back for `add`."""
        wall, cpu, spans = mark
        return (
            {name: self.wall[name] - seconds for name, seconds in wall.items()},
            {name: self.cpu[name] - seconds for name, seconds in cpu.items()},
            self.spans[spans:],
        )

    def add(self, wall: dict[str, float], cpu: dict[str, float], spans: list) -> None:
        """Add another process's stage seconds and spans (its `since` the fork)."""
        for name, seconds in wall.items():
            self.wall[name] += seconds
            self.cpu[name] += cpu[name]
        self.spans += spans


class ThreadBackends:
    """CPU seconds of the PostgreSQL backends of the pass's own threads (`shops.sync._PassThread`:
    its pipeline threads when it has no processes, its fetch thread; each opens a connection
    when it first needs one and closes it when the pass ends), read from /proc as each thread
    finishes: a backend's life."""

    def __init__(self, thread_class: type):
        self.cpu = 0.0
        self.unknown = False
        inner = thread_class._serve
        backends = self

        def measured(instance):
            from django.db import connection

            try:
                return inner(instance)
            finally:
                raw = connection.connection
                if raw is not None and not raw.closed:
                    seconds = backend_cpu(raw.info.backend_pid)
                    if seconds is None:
                        backends.unknown = True
                    else:
                        backends.cpu += seconds

        thread_class._serve = measured
        self.restore = lambda: setattr(thread_class, "_serve", inner)


class ProcessMeasure:
    """The pass's pipeline process (`shops.sync._PassProcess`): its CPU, its PostgreSQL
    backend's (read from /proc before it closes, a backend's life) and what it added to each
    stage, sent back by the child as its calls end (wrapping `_serve`, which runs in the child)
    and added to the pass's by `collect`."""

    def __init__(self, process_class: type, stages: Stages):
        import multiprocessing

        self.stages = stages
        self.results = multiprocessing.get_context("fork").SimpleQueue()
        inner = process_class._serve
        results = self.results

        def measured(instance, pipe):
            from django.db import connection

            mark = stages.mark()
            cpu = time.process_time()
            try:
                return inner(instance, pipe)
            finally:
                raw = connection.connection
                pg = None
                if raw is not None and not raw.closed:
                    pg = backend_cpu(raw.info.backend_pid)
                results.put(
                    {
                        "cpu": time.process_time() - cpu,
                        "pg_cpu": pg,
                        "stages": stages.since(mark),
                    }
                )

        process_class._serve = measured
        self.restore = lambda: setattr(process_class, "_serve", inner)

    def collect(self) -> tuple[float, float | None]:
        """The CPU seconds of the processes that ended since, and of their backends."""
        cpu, pg_cpu = 0.0, 0.0
        while not self.results.empty():
            result = self.results.get()
            cpu += result["cpu"]
            pg_cpu = (
                None if pg_cpu is None or result["pg_cpu"] is None else pg_cpu + result["pg_cpu"]
            )
            self.stages.add(*result["stages"])
        return cpu, pg_cpu


class SplitWorker:
    """A second worker process that runs the parcel splits the pipeline queues, as the second
    worker of a q cluster picks them off the broker: forked with the pass's code loaded (and
    frozen, when the pass is), its own database connection, the tasks in the order queued.

    `finish` waits for the tasks queued so far and returns the process's CPU, its backend's
    and the moment it finished (perf_counter is the system's monotonic clock, one for both
    processes); its stage times are added to the pass's `stages`."""

    def __init__(self, stages: Stages):
        import multiprocessing

        from django.db import connections

        context = multiprocessing.get_context("fork")
        self.stages = stages
        self.forked = stages.mark()
        self.tasks = context.SimpleQueue()
        self.results = context.SimpleQueue()
        connections.close_all()  # the child opens its own; the parent reconnects on next use
        self.process = context.Process(target=self._serve, daemon=True)
        self.process.start()

    def _serve(self) -> None:
        from django.db import connection

        import logistics.tasks as logistics_tasks

        cpu, backend = time.process_time(), None
        pg_cpu = 0.0
        while (task_args := self.tasks.get()) is not None:
            if backend is None:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_backend_pid()")
                    backend = cursor.fetchone()[0]
                pg_cpu = backend_cpu(backend)
            logistics_tasks.split_ready_orders(*task_args)
        finished = time.perf_counter()
        after = backend_cpu(backend) if backend is not None else pg_cpu
        self.results.put(
            {
                "finished": finished,
                "cpu": time.process_time() - cpu,
                "pg_cpu": None if after is None or pg_cpu is None else after - pg_cpu,
                "stages": self.stages.since(self.forked),
            }
        )
        connection.close()

    def finish(self) -> dict:
        self.tasks.put(None)
        result = self.results.get()
        self.process.join()
        self.stages.add(*result["stages"])  # what the child added since the fork
        return result


# The pipeline batch the product is configured with, read before a baseline run overrides it.
_BATCH: dict[str, int] = {}


def run(args: argparse.Namespace, url: str, path: SpikePath) -> dict:
    set_based, ignore_said, every_page = path.set_based, path.ignore_said, path.every_page
    frozen, threaded, split_apart = path.frozen, path.threaded, path.split_apart
    django_on(url)
    from django.conf import settings

    # The pipeline after every stored page (as before this round) or over several pages.
    # The product's own batch (its setting as configured) unless this run is the baseline.
    _BATCH.setdefault("product", settings.TKERP_SYNC_PIPELINE_BATCH)
    settings.TKERP_SYNC_PIPELINE_BATCH = 1 if every_page else _BATCH["product"]
    triggers = audit_triggers_set(enabled=args.audit == "on")
    print(f"audit trail {args.audit} ({triggers} triggers)")

    from django.db import connection

    import inventory.reservations as reservations
    import logistics.routing as routing
    import logistics.tasks as logistics_tasks
    import orders.pipeline as pipeline
    import orders.review as review
    import shops.platforms.tiktok as tiktok
    import shops.sync as shop_sync_module
    import tkerp.bulk as bulk
    from logistics.models import Shipment
    from orders.models import Order, OrderLine
    from sandbox.actions import sandbox_spike
    from shops.platforms import connector_for
    from shops.platforms.http import sandbox_transport
    from shops.sync import shop_sync
    from tests.logistics.rules_world import demo_rule_set
    from tkerp.tenancy import tenant_context

    bulk.COPY_ENABLED = set_based
    routing.SPLIT_SET_BASED = set_based
    shop_sync_module.PIPELINE_THREAD = threaded
    shop_sync_module.PIPELINE_PROCESS = path.process
    shop_sync_module.PAGE_PREFETCH = path.prefetch
    # The split task the pipeline queues on commit runs inline (its time is the pipeline's), or
    # in a second worker process (`split_apart`: SplitWorker), as a q cluster of two runs it.
    # Other tasks (availability pushes, alerts) are queued as in production.
    queue = pipeline.async_task
    split_worker: list[SplitWorker] = []

    def split_inline(func, *task_args, **kwargs):
        if func == "logistics.tasks.split_ready_orders":
            if split_worker:
                return split_worker[0].tasks.put(task_args)
            return logistics_tasks.split_ready_orders(*task_args)
        return queue(func, *task_args, **kwargs)

    pipeline.async_task = split_inline

    # Enough stock for the whole spike: the live stream was planned for.
    tenant, shop = bench_tiktok_shop(on_hand=5000)
    demo_rule_set(tenant)
    stages = Stages()
    stages.wrap(tiktok.TikTokConnector, "fetch_orders", "mapping")
    stages.wrap(shop_sync_module, "orders_store", "ingest")
    stages.wrap(reservations, "orders_ship_commit", "reservation")
    stages.wrap(reservations, "orders_reserve", "reservation")
    stages.wrap(review, "orders_review", "review")
    stages.wrap(logistics_tasks, "split_ready_orders", "split")
    stages.wrap(routing, "shipments_rules_apply", "rules")
    stages.wrap(routing, "shipments_dispatch", "rules")
    with tenant_context(tenant):
        started = time.perf_counter()
        spike = sandbox_spike(
            shop=shop, orders=args.orders, seed=args.seed, cancel_rate=args.cancel_rate
        )
        spike_seconds = time.perf_counter() - started

        def timed_pass(platform=None):
            if split_apart:
                split_worker[:] = [SplitWorker(stages)]
            platform = platform or sandbox_transport()
            transport = timed_transport(platform, latency=args.latency_ms / 1000)
            waits: list[float] = []

            def sleep(seconds: float) -> None:
                waits.append(seconds)
                time.sleep(seconds)

            connector = connector_for(shop, transport=transport, sleep=sleep)
            with connection.cursor() as cursor:  # the pass's statements run on this backend
                if not ignore_said:
                    cursor.execute("SELECT set_config('pgtrigger.ignore', NULL, false)")
                cursor.execute("SELECT pg_backend_pid()")
                backend = cursor.fetchone()[0]
            collections.clear()
            thread_backends = ThreadBackends(shop_sync_module._PassThread)
            pipeline_process = ProcessMeasure(shop_sync_module._PassProcess, stages)
            main, spans = stages.main, len(stages.spans)
            cores = CoresBusy() if args.timeline else None
            begun, cpu, pg_cpu = time.perf_counter(), time.process_time(), backend_cpu(backend)
            gc.callbacks.append(collected)
            try:
                run = shop_sync(shop=shop, trigger="bench", connector=connector)
            finally:
                gc.callbacks.remove(collected)
                thread_backends.restore()
                pipeline_process.restore()
            total, cpu = time.perf_counter() - begun, time.process_time() - cpu
            pg_after = backend_cpu(backend)
            pg_cpu = None if pg_cpu is None or pg_after is None else pg_after - pg_cpu
            # The pipeline's process and its backend, when the pass forked one.
            child_cpu, child_pg = pipeline_process.collect()
            cpu += child_cpu
            pg_cpu = None if pg_cpu is None or child_pg is None else pg_cpu + child_pg
            apart = None
            if split_worker:  # the pass is done once the second worker has split every batch
                apart = split_worker.pop().finish()
                total = max(total, apart["finished"] - begun)
                cpu += apart["cpu"]
                pg_cpu = (
                    None
                    if pg_cpu is None or apart["pg_cpu"] is None
                    else (pg_cpu + apart["pg_cpu"])
                )
            # The pipeline's and the fetches' statements ran on their threads' own backends.
            pg_cpu = (
                None
                if pg_cpu is None or thread_backends.unknown
                else (pg_cpu + thread_backends.cpu)
            )
            connector.http.close()
            timeline = Timeline(
                seconds=total,
                spans=[(name, a - begun, b - begun) for name, a, b in stages.spans[spans:]],
                cores=cores.since(begun) if cores else [],
            )
            return run, total, cpu, pg_cpu, transport, sum(waits), stages.main - main, timeline

        # Garbage collections during a pass: (generation, seconds) each.
        collections: list[tuple[int, float]] = []
        started_at: list[float] = []

        def collected(phase: str, info: dict) -> None:
            if phase == "start":
                started_at[:] = [time.process_time()]
            elif started_at:
                collections.append((info["generation"], time.process_time() - started_at[0]))

        if frozen:  # as a q worker process does when it starts (tkerp.workers)
            from tkerp.workers import worker_spawned

            worker_spawned(proc_name="bench")

        profiler = None
        if args.profile and set_based:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        replayed = None
        if path.platform_elsewhere:
            replayed = replayed_transport(sandbox_transport())
            counted = dict(stages.wall), dict(stages.cpu)
            platform_record(shop, replayed)
            stages.wall, stages.cpu = counted  # the recording is not the pass's
        first, total, cpu, pg_cpu, transport, waited, main, timeline = timed_pass(replayed)
        gc_first = list(collections)
        if profiler is not None:
            import pstats

            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
        wall, cpu_stages = dict(stages.wall), dict(stages.cpu)
        orders = Order.objects.count()
        parcels = Shipment.objects.count()
        ready = Order.objects.filter(status="ready").count()
        held = Order.objects.filter(status="on_hold").count()
        lines = OrderLine.objects.count()
        second, total2, _, _, transport2, waited2, _, _ = timed_pass()
        floor = floor_measure(shop, orders) if args.floor and set_based and not every_page else None

    assert first.status == "success", first.error
    assert orders == spike.orders, (orders, spike.orders)
    # Stage seconds on the pass's other threads (pipeline, fetch) and in the split worker ran
    # beside its own; what the pass did besides stages is its total less its own stages.
    beside = sum(wall.values()) - main
    # The platform's time is inside the connector's; waits are the rate limiter's.
    wall["mapping"] -= transport.seconds + waited
    wall["platform"] = transport.seconds
    wall["other"] = total - main
    cpu_stages["other"] = cpu - sum(cpu_stages.values())
    return {
        "pg": connection.pg_version // 10000,
        "limits": machine_limits(),
        "spike": spike,
        "spike_seconds": spike_seconds,
        "first": first,
        "total": total,
        "cpu": cpu,
        "pg_cpu": pg_cpu,
        "gc": gc_first,
        "waited": waited,
        "beside": beside,
        "requests": transport.requests,
        "wall": wall,
        "cpu_stages": cpu_stages,
        "orders": orders,
        "lines": lines,
        "parcels": parcels,
        "ready": ready,
        "held": held,
        "second": second,
        "total2": total2,
        "sandbox2": transport2.seconds,
        "waited2": waited2,
        "floor": floor,
        "replayed": replayed,
        "timeline": timeline,
    }


def platform_record(shop, replayed) -> None:
    """Have the platform answer, through `replayed` (recording), every request a pass of `shop`
    makes: its pages of orders, then its cancellations and returns; then stop recording."""
    from datetime import timedelta

    from django.utils import timezone

    from orders.returns import returns_supported
    from shops.platforms import connector_for
    from shops.sync import cancellations_supported

    connector = connector_for(shop, transport=replayed, sleep=lambda seconds: None)
    since, token = timezone.now() - timedelta(days=30), None
    while True:
        token = connector.fetch_orders(updated_since=since, page_token=token).next_page_token
        if not token:
            break
    if cancellations_supported(connector):
        connector.fetch_cancellations(updated_since=since)
    if returns_supported(connector):
        connector.fetch_returns(updated_since=since)
    replayed.recording = False


# The rows one spike leaves, in the order their foreign keys need; the parcels' tables are not
# the webhook path's (its parcels are split later, by another task).
FLOOR_TABLES = (
    "orders_order",
    "orders_orderline",
    "orders_orderevent",
    "inventory_stockmovement",
    "inventory_reservation",
    "orders_orderhold",
    "logistics_shipment",
    "logistics_shipmentline",
)
PARCEL_TABLES = ("logistics_shipment", "logistics_shipmentline")


def floor_measure(shop, orders: int) -> dict:
    """The CPU no implementation of this pipeline can avoid on this machine, measured on the
    spike the run just stored:

    - the platform answering every page and the connector mapping it (one more pass over the
      sandbox's pages, this process and its PostgreSQL backend: the sandbox runs in-process);
    - address normalisation of every order's original address (usaddress, scourgify,
      phonenumbers: third-party parsers), without the per-process cache;
    - PostgreSQL writing the final rows once each, with their indexes, audit triggers and
      foreign-key checks: the rows are taken out and put back with one INSERT ... SELECT per
      table inside a transaction that is rolled back, on the login role's own connection.

    Nothing else is counted: no reads, no planning, no Python building a row, no commit. Any
    design pays at least this, so `cores / floor` bounds its throughput."""
    from datetime import timedelta

    import psycopg
    from django.db import connection
    from django.utils import timezone

    import orders.address as address_module
    from orders.address import ORDER_ADDRESS_FIELDS, Address, address_normalise
    from shops.platforms import connector_for
    from shops.platforms.http import sandbox_transport

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    connector = connector_for(shop, transport=sandbox_transport(), sleep=lambda seconds: None)
    since, token, fetched = timezone.now() - timedelta(days=30), None, 0
    received = []
    cpu, pg = time.process_time(), backend_cpu(backend)
    while True:
        page = connector.fetch_orders(updated_since=since, page_token=token)
        fetched += len(page.orders)
        received.extend(po.address for po in page.orders if po.address is not None)
        token = page.next_page_token
        if not token:
            break
    platform = (time.process_time() - cpu) + ((backend_cpu(backend) or 0.0) - (pg or 0.0))
    connector.http.close()

    names = ORDER_ADDRESS_FIELDS.keys()
    originals = [
        Address(**{name: str(getattr(address, name, "") or "") for name in names})
        for address in received
        if not address.masked
    ]
    # Every buyer of a spike is new: forget what the pass cached (addresses, phones).
    for value in vars(address_module).values():
        if hasattr(value, "cache_clear"):
            value.cache_clear()
    address_module._E164_ANSWERS.clear()
    cpu = time.process_time()
    for address in originals:
        address_normalise(address)
    addresses = time.process_time() - cpu

    writes: dict[str, float] = {}
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params) as raw, raw.cursor() as cursor:
        cursor.execute(
            "SELECT pg_backend_pid(), rolsuper FROM pg_roles WHERE rolname = current_user"
        )
        raw_backend, superuser = cursor.fetchone()
        if not superuser:
            return {"skipped": "the login role is not a superuser (rows are taken out unchecked)"}
        cursor.execute("SELECT set_config('pgtrigger.ignore', '{}', false)")
        for table in FLOOR_TABLES:
            cursor.execute(f"CREATE TEMP TABLE floor_{table} AS SELECT * FROM {table}")
        cursor.execute("SET session_replication_role = replica")  # out without triggers or checks
        for table in reversed(FLOOR_TABLES):
            cursor.execute(f"DELETE FROM {table}")
        cursor.execute("SET session_replication_role = origin")
        for table in FLOOR_TABLES:
            before = backend_cpu(raw_backend)
            cursor.execute(f"INSERT INTO {table} SELECT * FROM floor_{table}")
            writes[table] = (backend_cpu(raw_backend) or 0.0) - (before or 0.0)
        before = backend_cpu(raw_backend)
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the deferred foreign-key checks
        writes["foreign keys"] = (backend_cpu(raw_backend) or 0.0) - (before or 0.0)
        raw.rollback()
    return {
        "orders": orders,
        "fetched": fetched,
        "platform": platform,
        "addresses": addresses,
        "writes": writes,
    }


def report(args: argparse.Namespace, results: list[tuple[str, dict]]) -> None:
    first = results[0][1]
    print(f"machine: {machine()}; PostgreSQL {first['pg']}")
    print(machine_limits_line(first["limits"]))
    spike = first["spike"]
    print(
        f"spike: {spike.orders} orders ({spike.cancellations} with a cancellation request), "
        f"TikTok sandbox, {first['first'].pages} pages"
    )
    for label, result in results:
        run = result["first"]
        print(
            f"\n{label}: {run.created} orders / {result['lines']} lines stored, "
            f"{result['ready']} ready, {result['held']} on hold, {result['parcels']} parcels"
        )
        if result["replayed"] is not None:
            replayed = result["replayed"]
            recorded = sum(len(answers) for answers in replayed.answers.values())
            print(
                f"  the platform's {recorded} answers recorded before the pass and replayed, "
                f"{replayed.missed} asked of it live (harness.replayed_transport)"
            )
        print(
            f"  end to end        {result['total']:7.2f} s   "
            f"{run.created / result['total']:7.0f} orders/s   (CPU {result['cpu']:.2f} s)"
        )
        full = [seconds for generation, seconds in result["gc"] if generation == 2]
        print(
            f"  garbage collection {sum(seconds for _, seconds in result['gc']):5.2f} s of CPU "
            f"({len(result['gc'])} collections; {len(full)} full: {sum(full):.2f} s)"
        )
        if result["pg_cpu"] is not None:
            per_order = 1000 / run.created
            print(
                f"  CPU per order     {result['cpu'] * per_order:.2f} ms workers + "
                f"{result['pg_cpu'] * per_order:.2f} ms PostgreSQL "
                f"({result['pg_cpu']:.2f} s in its backend)"
            )
        if result["beside"] > 0.005:
            print(
                f"  beside the pass   {result['beside']:.2f} s in stages on its pipeline and "
                "fetch threads and in the split worker: stage seconds add up to more than the "
                f"pass's {result['total']:.2f} s; shares are of their sum"
            )
        worked = sum(result["wall"].values())
        for name, what in STAGES:
            seconds = result["wall"][name]
            cpu = result["cpu_stages"].get(name, 0.0)
            share = 100 * seconds / worked
            cpu_text = "" if name == "platform" else f"cpu {cpu:6.2f} s"
            print(f"  {name:<12} {seconds:7.2f} s {share:5.1f} %  {cpu_text:<14} {what}")
        if result["waited"]:
            print(f"  rate-limit waits  {result['waited']:7.2f} s")
        if args.timeline:
            print(result["timeline"].chart())
        print(
            f"  second pass (nothing new): {result['total2']:.2f} s, "
            f"{result['second'].skipped} unchanged, {result['second'].created} created"
        )
    for _label, result in results:
        if result["floor"]:
            floor_report(result["floor"])
    if len(results) >= 2 and results[0][0] == "old path":
        old, new = results[0][1], results[-1][1]
        by_label = dict(results)
        steps = (
            ("set-based, worker not frozen", "set-based, pipeline inline", "worker frozen"),
            (
                "set-based, pipeline every page",
                "set-based, pipeline inline",
                f"pipeline over {_BATCH['product']} orders",
            ),
            ("set-based, pipeline inline", "set-based, pipeline thread", "pipeline thread"),
            ("set-based, pipeline thread", "set-based, page prefetch", "page prefetch"),
            ("set-based, page prefetch", "set-based, split apart", "split by a second worker"),
            ("set-based, split apart", "set-based", "pipeline process"),
            ("set-based", "set-based, platform elsewhere", "the platform's work off this machine"),
        )
        for before_label, after_label, what in steps:
            before, after = by_label.get(before_label), by_label.get(after_label)
            if before is None or after is None:
                continue
            print(
                f"{what} ({after_label} vs {before_label}): "
                f"{before['total'] / after['total']:.2f}x end to end, CPU "
                f"{before['cpu'] / after['cpu']:.2f}x"
                + (
                    f", PostgreSQL {before['pg_cpu'] / after['pg_cpu']:.2f}x"
                    if before["pg_cpu"] and after["pg_cpu"]
                    else ""
                )
            )
        print(
            f"\nset-based vs old path: {old['total'] / new['total']:.1f}x end to end, "
            f"{old['cpu'] / new['cpu']:.1f}x CPU"
        )


def floor_report(floor: dict) -> None:
    if "skipped" in floor:
        print(f"\nfloor: not measured, {floor['skipped']}")
        return
    cores, per_order = os.cpu_count() or 1, 1000 / floor["orders"]
    writes = floor["writes"]
    written = sum(writes.values())
    parcels = sum(writes[table] for table in PARCEL_TABLES)
    print(f"\nfloor: the CPU any design pays for these {floor['orders']} orders (floor_measure)")
    print(
        f"  platform answering {floor['fetched']} orders + mapping   {floor['platform']:5.2f} s"
        f"   {floor['platform'] * per_order:.2f} ms an order"
    )
    print(
        f"  address normalisation                  {floor['addresses']:5.2f} s"
        f"   {floor['addresses'] * per_order:.2f} ms an order"
    )
    print(
        f"  PostgreSQL writing the rows once       {written:5.2f} s   "
        f"{written * per_order:.2f} ms an order ("
        + ", ".join(f"{table} {seconds:.2f}" for table, seconds in writes.items())
        + ")"
    )
    pipeline = (floor["platform"] + floor["addresses"] + written) * per_order
    ours = (floor["addresses"] + written) * per_order
    webhook = (floor["platform"] + floor["addresses"] + written - parcels) * per_order
    print(
        f"  whole pipeline: {pipeline:.2f} ms an order -> at most {cores * 1000 / pipeline:,.0f} "
        f"orders/s on {cores} cores (aim 1,500); without the platform's share "
        f"{ours:.2f} ms -> {cores * 1000 / ours:,.0f}/s"
    )
    print(
        f"  webhook path (no parcels yet): {webhook:.2f} ms an order -> at most "
        f"{cores * 1000 / webhook:,.0f} reservations/s on {cores} cores even if every order "
        "reserves (aim 2,000)"
    )


if __name__ == "__main__":
    main()
