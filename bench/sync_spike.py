"""Benchmark: a live stream's 2,800-order spike through one TikTok sync pass, end to end.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tkerp .venv/bin/python bench/sync_spike.py

Runs the spike twice, each in a throwaway PostgreSQL database next to the one DATABASE_URL
names (dropped at the end unless --keep-db, tables built from the models): first through the
old path (the ORM's `bulk_create`, parcels split order by order: `tkerp.bulk.COPY_ENABLED` and
`logistics.routing.SPLIT_SET_BASED` off), then through the set-based one (COPY, one split for
the page). Each run makes a tenant with the demo's carrier rules, a TikTok shop with SKUs and
listings, connects it to the TikTok sandbox, lands the spike there and times `shop_sync` with
the connector's real page size and rate limits over the sandbox's HTTP API (served in-process).
The split task the pipeline queues runs inline, so the whole pipeline is
in the figure: sync, ingest, reservation, review, parcel split, carrier rules.

Reported per run: orders/s end to end and each stage's seconds, share and CPU seconds of this
process (PostgreSQL's own CPU is not in it): the platform (inside the sandbox: its views, its
queries, JSON), the connector's mapping, ingest, shipping commits and reservation, review,
parcel split, carrier rules (and dispatch), and the rest (sync bookkeeping, leases,
cancellations). A second pass over the same window (nothing new) shows the cost of the overlap.
Never part of the test run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402
    audit_triggers_set,
    bench_tiktok_shop,
    django_on,
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
    ("other", "sync bookkeeping, leases, cancellations"),
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
        "--only", choices=("old", "set-based"), help="Run one path only (no baseline)."
    )
    parser.add_argument(
        "--audit",
        choices=("on", "off"),
        default="on",
        help="The audit trail's triggers on (as in production) or off: run both to see its cost.",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    paths = [("old path", False), ("set-based", True)]
    if args.only:
        paths = [path for path in paths if path[0].startswith(args.only)]
    results = []
    for label, set_based in paths:
        with throwaway_database("sync", script="bench/sync_spike.py", keep=args.keep_db) as url:
            results.append((label, run(args, url, set_based=set_based)))
    report(args, results)


class Stages:
    """Wall and CPU seconds per stage, by wrapping the functions that do each stage."""

    def __init__(self):
        self.wall = dict.fromkeys([name for name, _ in STAGES], 0.0)
        self.cpu = dict.fromkeys([name for name, _ in STAGES], 0.0)
        self.stack: list[str] = []

    def wrap(self, module, attribute: str, stage: str) -> None:
        inner = getattr(module, attribute)

        def timed(*args, **kwargs):
            # A stage inside another (rules inside split) is charged to the inner one only.
            self.stack.append(stage)
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                return inner(*args, **kwargs)
            finally:
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                self.stack.pop()
                self.wall[stage] += wall
                self.cpu[stage] += cpu
                if self.stack:
                    self.wall[self.stack[-1]] -= wall
                    self.cpu[self.stack[-1]] -= cpu

        setattr(module, attribute, timed)


def run(args: argparse.Namespace, url: str, *, set_based: bool) -> dict:
    django_on(url)
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
    # The split task the pipeline queues on commit runs inline: its time is the pipeline's.
    # Other tasks (availability pushes, alerts) are queued as in production.
    queue = pipeline.async_task

    def split_inline(func, *task_args, **kwargs):
        if func == "logistics.tasks.split_ready_orders":
            return logistics_tasks.split_ready_orders(*task_args)
        return queue(func, *task_args, **kwargs)

    pipeline.async_task = split_inline

    # Enough stock for the whole spike: the live stream was planned for.
    tenant, shop = bench_tiktok_shop(on_hand=5000)
    demo_rule_set(tenant)
    stages = Stages()
    stages.wrap(tiktok.TikTokConnector, "fetch_orders", "mapping")
    stages.wrap(shop_sync_module, "orders_ingest", "ingest")
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

        def timed_pass():
            transport = timed_transport(sandbox_transport())
            waits: list[float] = []

            def sleep(seconds: float) -> None:
                waits.append(seconds)
                time.sleep(seconds)

            connector = connector_for(shop, transport=transport, sleep=sleep)
            begun, cpu = time.perf_counter(), time.process_time()
            run = shop_sync(shop=shop, trigger="bench", connector=connector)
            total, cpu = time.perf_counter() - begun, time.process_time() - cpu
            connector.http.close()
            return run, total, cpu, transport, sum(waits)

        profiler = None
        if args.profile and set_based:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        first, total, cpu, transport, waited = timed_pass()
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
        second, total2, _, transport2, waited2 = timed_pass()

    assert first.status == "success", first.error
    assert orders == spike.orders, (orders, spike.orders)
    # The platform's time is inside the connector's; waits are the rate limiter's.
    wall["mapping"] -= transport.seconds + waited
    wall["platform"] = transport.seconds
    wall["other"] = total - sum(wall.values()) - waited
    cpu_stages["other"] = cpu - sum(cpu_stages.values())
    return {
        "pg": connection.pg_version // 10000,
        "spike": spike,
        "spike_seconds": spike_seconds,
        "first": first,
        "total": total,
        "cpu": cpu,
        "waited": waited,
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
    }


def report(args: argparse.Namespace, results: list[tuple[str, dict]]) -> None:
    import os
    import platform

    first = results[0][1]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, load "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; PostgreSQL {first['pg']}"
    )
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
        print(
            f"  end to end        {result['total']:7.2f} s   "
            f"{run.created / result['total']:7.0f} orders/s   (CPU here {result['cpu']:.2f} s)"
        )
        for name, what in STAGES:
            seconds = result["wall"][name]
            cpu = result["cpu_stages"].get(name, 0.0)
            share = 100 * seconds / result["total"]
            cpu_text = "" if name == "platform" else f"cpu {cpu:6.2f} s"
            print(f"  {name:<12} {seconds:7.2f} s {share:5.1f} %  {cpu_text:<14} {what}")
        if result["waited"]:
            print(f"  rate-limit waits  {result['waited']:7.2f} s")
        print(
            f"  second pass (nothing new): {result['total2']:.2f} s, "
            f"{result['second'].skipped} unchanged, {result['second'].created} created"
        )
    if len(results) == 2:
        old, new = results[0][1], results[1][1]
        print(
            f"\nset-based vs old path: {old['total'] / new['total']:.1f}x end to end, "
            f"{old['cpu'] / new['cpu']:.1f}x CPU here"
        )


if __name__ == "__main__":
    main()
