"""Benchmark: a live stream's 2,800-order spike through one TikTok sync pass, end to end.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tkerp .venv/bin/python bench/sync_spike.py

Creates a throwaway PostgreSQL database next to the one DATABASE_URL names (dropped at the end
unless --keep-db), builds its tables from the models, makes a tenant, a TikTok shop with SKUs and
listings, connects it to the TikTok sandbox, lands the spike there, and times `shop_sync` with
the connector's real page size and rate limits over the sandbox's HTTP API (served in-process).

Reported: total seconds and orders/s end to end; the time spent inside the sandbox (the
platform's share: its views, its queries, JSON) and waiting for the rate limiter, measured
around the HTTP transport; and what remains, tkerp's own share. A second pass over the same
window (nothing new) shows the cost of the overlap. Never part of the test run.
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
    audit_stats,
    audit_stats_enable,
    audit_triggers_set,
    bench_tiktok_shop,
    django_on,
    throwaway_database,
    timed_transport,
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=2800)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--cancel-rate", type=float, default=0.03)
    parser.add_argument("--keep-db", action="store_true", help="Leave the bench database.")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile the first pass; print the top 30."
    )
    parser.add_argument(
        "--audit",
        choices=["both", "on", "off"],
        default="both",
        help="With the audit trail's triggers (on, as in production), without (off), or both, "
        "one after the other in fresh databases, with the difference (default).",
    )
    parser.add_argument(
        "--no-pipeline",
        action="store_true",
        help="Leave stock and review (orders.pipeline) out: sync and ingest alone.",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    modes = ["off", "on"] if args.audit == "both" else [args.audit]
    results = {}
    if len(modes) == 2:
        # The first run in a process pays for imports and first-use set-up: a small one first,
        # so neither compared run does.
        print("=== warm-up (not compared) ===")
        warm = argparse.Namespace(**{**vars(args), "orders": min(args.orders, 200)})
        with throwaway_database("sync_warm", script="bench/sync_spike.py") as url:
            run(warm, url, audit=True)
    for mode in modes:
        print(f"=== audit trail {mode} ===")
        label = f"sync_audit_{mode}"
        with throwaway_database(label, script="bench/sync_spike.py", keep=args.keep_db) as url:
            results[mode] = run(args, url, audit=mode == "on")
    if len(results) == 2:
        off, on = results["off"], results["on"]
        print("=== the audit trail's cost (first pass, same spike, fresh database each) ===")
        for key, what in (("total", "end to end"), ("ours", "tkerp's share"), ("cpu", "bench CPU")):
            change = (on[key] - off[key]) / off[key] * 100
            print(f"  {what:15} off {off[key]:7.2f} s   on {on[key]:7.2f} s   {change:+6.1f} %")
        if on["trigger_seconds"] is not None:
            both = on["total"] + on["total2"]
            share = on["trigger_seconds"] / both * 100
            print(
                f"  inside the audit triggers (PostgreSQL), both passes: "
                f"{on['trigger_seconds']:.2f} s of {both:.2f} s ({share:.1f} %), "
                f"{on['audit_rows']} audit rows"
            )


def run(args: argparse.Namespace, url: str, *, audit: bool = True) -> dict:
    django_on(url)
    trigger_count = audit_triggers_set(enabled=audit)
    stats = audit_stats_enable() if audit else False

    from django.db import connection

    from orders import ingest as ingest_module
    from orders.models import Order, OrderLine
    from sandbox.actions import sandbox_spike
    from shops.platforms import connector_for
    from shops.platforms.http import sandbox_transport
    from shops.sync import shop_sync
    from tkerp.audit import audit_context
    from tkerp.tenancy import tenant_context

    # Enough stock for the whole spike: the live stream was planned for.
    tenant, shop = bench_tiktok_shop(on_hand=5000)
    with tenant_context(tenant):
        started = time.perf_counter()
        spike = sandbox_spike(
            shop=shop, orders=args.orders, seed=args.seed, cancel_rate=args.cancel_rate
        )
        spike_seconds = time.perf_counter() - started

        # Time stock and review (orders.pipeline, run by ingest on each stored page) apart.
        pipeline = {"seconds": 0.0}
        after_ingest = ingest_module.orders_after_ingest

        def timed_after_ingest(**kwargs):
            if args.no_pipeline:
                return None
            begun = time.perf_counter()
            try:
                return after_ingest(**kwargs)
            finally:
                pipeline["seconds"] += time.perf_counter() - begun

        ingest_module.orders_after_ingest = timed_after_ingest

        timing = {}

        def timed_pass():
            transport = timed_transport(sandbox_transport())
            waits: list[float] = []

            def sleep(seconds: float) -> None:
                waits.append(seconds)
                time.sleep(seconds)

            connector = connector_for(shop, transport=transport, sleep=sleep)
            begun, cpu_begun = time.perf_counter(), time.process_time()
            if audit:  # as the worker runs it: every change names the task
                with audit_context(actor="task", task="shops.tasks.sync_shop", task_id="bench"):
                    run = shop_sync(shop=shop, trigger="bench", connector=connector)
            else:
                run = shop_sync(shop=shop, trigger="bench", connector=connector)
            total = time.perf_counter() - begun
            timing["cpu"] = time.process_time() - cpu_begun
            connector.http.close()
            return run, total, transport, sum(waits)

        profiler = None
        if args.profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        first, total, transport, waited = timed_pass()
        first_cpu = timing["cpu"]
        pipeline_seconds = pipeline["seconds"]
        if profiler is not None:
            import pstats

            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
        orders = Order.objects.count()
        clocks = Order.objects.filter(cancel_answer_by__isnull=False).count()
        lines = OrderLine.objects.count()
        second, total2, transport2, waited2 = timed_pass()

    trigger_seconds, audit_rows = audit_stats() if stats else (None, 0)
    assert first.status == "success", first.error
    assert orders == spike.orders, (orders, spike.orders)
    ours = total - transport.seconds - waited - pipeline_seconds
    print(
        f"PostgreSQL {connection.pg_version // 10000}, database {connection.settings_dict['NAME']}"
    )
    print(
        f"spike: {spike.orders} orders ({spike.cancellations} with a cancellation request) "
        f"landed in the TikTok sandbox in {spike_seconds:.1f} s"
    )
    print(
        f"first pass: {first.pages} pages, {first.created} orders / {lines} lines stored, "
        f"{clocks} cancellation answer clocks"
    )
    print(f"  end to end        {total:7.2f} s   {first.created / total:7.0f} orders/s")
    print(
        f"  inside sandbox    {transport.seconds:7.2f} s   ({transport.requests} HTTP requests: "
        "the platform's share)"
    )
    print(f"  rate-limit waits  {waited:7.2f} s")
    if args.no_pipeline:
        print("  stock and review  skipped (--no-pipeline)")
    else:
        print(f"  stock and review  {pipeline_seconds:7.2f} s   (orders.pipeline after each page)")
    print(f"  sync and ingest   {ours:7.2f} s   {first.created / ours:7.0f} orders/s")
    print(
        f"second pass (nothing new, overlap re-read): {total2:.2f} s, {second.pages} pages, "
        f"{second.skipped} unchanged, {second.created} created, sandbox {transport2.seconds:.2f} s,"
        f" waits {waited2:.2f} s"
    )
    print(f"audit trail: {'on' if audit else 'off'} ({trigger_count} triggers)", end="")
    if trigger_seconds is not None:
        print(f", {trigger_seconds:.2f} s inside them over both passes, {audit_rows} rows")
    else:
        print()
    return {
        "total": total,
        "total2": total2,
        "ours": ours,
        "cpu": first_cpu,
        "trigger_seconds": trigger_seconds,
        "audit_rows": audit_rows,
    }


if __name__ == "__main__":
    main()
