"""Benchmark: a live stream's order webhooks, all for ONE SKU, processed by several workers.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tkerp .venv/bin/python bench/webhook_spike.py

For each path, a throwaway PostgreSQL database next to the one DATABASE_URL names (dropped at
the end unless --keep-db, tables built from the models) gets a tenant with one TikTok shop
selling one SKU, connected to the TikTok sandbox; the sandbox lands --orders orders and POSTs
their order webhooks to our endpoint (in-process HTTP, real signatures: `webhook_receive`
records each delivery). Then --workers worker processes (forked, each with its own
connection, released together) process the deliveries:

1. today's path (the baseline): one delivery at a time, as `shops.tasks.process_webhook` did
   before micro-batches (the retired `webhook_delivery_process`, kept here as
   `_delivery_process`: fetch the order by id, ingest it, run the pipeline for it), the
   deliveries dealt round-robin to the workers;
2. micro-batches: every worker runs `webhook_deliveries_drain` on the shop, as each queued
   `process_webhook` task now does: it claims up to `WEBHOOK_BATCH` waiting deliveries
   (SKIP LOCKED), fetches their orders 50 ids a call and ingests them as one page;
3. as 2, the platform elsewhere: the sandbox's order detail answers recorded before the
   workers start and served by id (`harness.orders_by_id_transport`), so the platform's own
   work (its views, queries and JSON, 50 orders a call) is off this machine's cores as a real
   platform's is, while each worker still signs, sends, parses and maps every call.

The workers stand for task workers already running when the spike comes: per-process caches
(the review's ZIP index) are built before the fork unless --cold.

Printed per path: seconds, deliveries/s, reservations/s (Reservation rows written per second,
in aggregate), units reserved, and CPU: the workers' own and their PostgreSQL backends' (read
from /proc, so on this machine only), which a shared machine's load does not inflate; then
checks that nothing was oversold (reserved <= on hand, the stock ledger sums to the stored
numbers) and that every delivery was processed once. The stock covers about three quarters of
the spike, so both outcomes (reserved, held short) occur. Never part of the test run.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402
    backend_cpu,
    bench_tiktok_shop,
    django_on,
    machine,
    machine_limits,
    machine_limits_line,
    orders_by_id_transport,
    throwaway_database,
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=2800)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--stock", type=int, default=0, help="Units of the SKU (default: 3/4 of the demand)."
    )
    parser.add_argument(
        "--baseline-orders",
        type=int,
        default=0,
        help="Webhooks for today's path (default --orders; it is slow: a rate is a rate).",
    )
    parser.add_argument(
        "--only",
        choices=("today", "batches", "elsewhere"),
        help="Run one path only (no baseline).",
    )
    parser.add_argument(
        "--cold",
        action="store_true",
        help="Workers start with cold per-process caches (the review's ZIP index).",
    )
    parser.add_argument("--keep-db", action="store_true", help="Leave the bench databases.")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    paths = [
        ("today's path (one delivery at a time)", "today"),
        ("micro-batches", "batches"),
        ("micro-batches, the platform elsewhere", "elsewhere"),
    ]
    if args.only:
        paths = [path for path in paths if path[1] == args.only]
    results = []
    for label, path in paths:
        with throwaway_database(
            "webhooks", script="bench/webhook_spike.py", keep=args.keep_db
        ) as url:
            results.append((label, run(args, url, path=path)))
    report(args, results)


def _delivery_process(*, delivery):
    """The old per-delivery task body (retired from `shops.webhooks`, kept here as the
    baseline): claim the one delivery, fetch its orders by id, ingest them (the whole pipeline
    runs for that one page), mark it processed."""
    from django.db.models import F
    from django.utils import timezone

    from orders.ingest import orders_ingest
    from shops.models import WebhookDelivery
    from shops.platforms import connector_for
    from tkerp.tenancy import tenant_context

    shop = delivery.shop
    with tenant_context(delivery.tenant):
        claimed = WebhookDelivery.objects.filter(pk=delivery.pk, processed_at__isnull=True).update(
            attempts=F("attempts") + 1
        )
        if not claimed:
            return None
        connector = connector_for(shop)
        try:
            orders = connector.fetch_orders_by_id(platform_order_ids=delivery.platform_order_ids)
            result = orders_ingest(shop=shop, platform_orders=orders, source="webhook")
        finally:
            connector.http.close()
        error = "; ".join(str(reject) for reject in result.rejects)[:2000]
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            processed_at=timezone.now(), error=error
        )
    return result


def _today(shop_id: int, delivery_ids: list[int]) -> None:
    """The old task body, one delivery after another."""
    from orders.cancellations import cancellations_from_orders
    from shops.models import WebhookDelivery
    from tkerp.tenancy import all_tenants

    for delivery_id in delivery_ids:
        with all_tenants():
            delivery = WebhookDelivery.objects.select_related("tenant", "shop").get(pk=delivery_id)
        result = _delivery_process(delivery=delivery)
        if result is not None:
            cancellations_from_orders(
                tenant=delivery.tenant, order_ids=[*result.created_ids, *result.updated_ids]
            )


def _batches(shop_id: int, delivery_ids: list[int]) -> None:
    """What each queued `process_webhook` task does now: drain the shop."""
    from orders.cancellations import cancellations_from_orders
    from shops.models import Shop
    from shops.webhooks import webhook_deliveries_drain
    from tkerp.tenancy import all_tenants

    with all_tenants():
        shop = Shop.objects.select_related("tenant").get(pk=shop_id)
    drained = webhook_deliveries_drain(shop=shop)
    cancellations_from_orders(
        tenant=shop.tenant, order_ids=[*drained.created_ids, *drained.updated_ids]
    )


def _worker(path: str, shop_id: int, delivery_ids: list[int], barrier, done, platform=None) -> None:
    from django.db import connection, connections

    import inventory.reservations as reservations
    import shops.webhooks as webhooks

    if platform is not None:  # the drain's connector asks the recorded platform
        connector_for = webhooks.connector_for
        webhooks.connector_for = lambda shop, **kwargs: connector_for(
            shop, transport=platform, **kwargs
        )

    connections.close_all()  # a fresh connection of its own (forked from the parent)
    from tkerp.workers import worker_spawned

    worker_spawned(proc_name=f"bench-{os.getpid()}")  # as a q worker process starts
    with connection.cursor() as cursor:  # connected before the clock starts
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    spans: list[tuple[float, float]] = []  # CLOCK_MONOTONIC is one clock for every process
    reserve = reservations.orders_reserve

    def timed_reserve(**kwargs):
        began = time.monotonic()
        try:
            return reserve(**kwargs)
        finally:
            spans.append((began, time.monotonic()))

    reservations.orders_reserve = timed_reserve
    error = ""
    cpu, backend_seconds = time.process_time(), backend_cpu(backend)
    try:
        barrier.wait()
        cpu, backend_seconds = time.process_time(), backend_cpu(backend)
        (_today if path == "today" else _batches)(shop_id, delivery_ids)
        if platform is not None and platform.missed:
            raise RuntimeError(f"{platform.missed} order detail calls were not recorded")
    except BaseException as exc:  # reported by the parent
        error = f"{type(exc).__name__}: {exc}"
    finally:
        cpu = time.process_time() - cpu
        after = backend_cpu(backend)
        before = backend_seconds
        backend_seconds = None if after is None or before is None else after - before
        done.put((os.getpid(), error, spans, cpu, backend_seconds))
        connections.close_all()


def run(args: argparse.Namespace, url: str, *, path: str) -> dict:
    django_on(url)
    orders = (args.baseline_orders or args.orders) if path == "today" else args.orders

    from django.db import connection, connections

    from inventory.models import MovementKind, Reservation, StockLevel
    from inventory.stock import stock_adjust, stock_ledger_balance
    from orders.models import Order, OrderLine
    from sandbox.actions import sandbox_spike, sandbox_store_for_shop
    from shops.models import WebhookDelivery
    from tkerp.tenancy import tenant_context

    tenant, shop = bench_tiktok_shop(on_hand=0, skus=1)
    with tenant_context(tenant):
        started = time.perf_counter()
        spike = sandbox_spike(
            shop=shop, orders=orders, seed=args.seed, cancel_rate=0, webhooks=True
        )
        landed = time.perf_counter() - started
        deliveries = list(
            WebhookDelivery.objects.filter(shop=shop, processed_at__isnull=True)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        # The stock: about three quarters of the units the spike asks for (TikTok sends one
        # line item per unit).
        store = sandbox_store_for_shop(shop=shop)
        demand = sum(
            len(payload.get("line_items", []))
            for payload in store.orders.values_list("payload", flat=True)
        )
        stock = args.stock or max(1, demand * 3 // 4)
        level = StockLevel.objects.select_related("sku", "warehouse").get()
        stock_adjust(
            sku=level.sku,
            warehouse=level.warehouse,
            delta=stock,
            kind=MovementKind.RECEIVE,
            user=None,
            note="bench stock",
        )

    platform = None
    if path == "elsewhere":
        platform = platform_record(shop, store)
    if not args.cold:
        # The workers stand for task workers that have been running for a while: they loaded
        # the review's ZIP -> state table (a millisecond since it ships compact with the code,
        # `orders/zip_table.py`; about a second when it was indexed from the zipcodes package)
        # long before the live stream. Loaded here, before the fork.
        from orders.zip_table import _table

        _table()
    connections.close_all()
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(args.workers + 1)
    done = context.Queue()
    shares = [deliveries[i :: args.workers] for i in range(args.workers)]
    workers = [
        context.Process(target=_worker, args=(path, shop.pk, share, barrier, done, platform))
        for share in shares
    ]
    for worker in workers:
        worker.start()
    barrier.wait()
    started = time.perf_counter()
    outcomes = [done.get() for _ in workers]
    seconds = time.perf_counter() - started
    for worker in workers:
        worker.join()
    errors = [error for _, error, _, _, _ in outcomes if error]
    spans = sorted(span for _, _, worker_spans, _, _ in outcomes for span in worker_spans)
    in_reserve = sum(end - began for began, end in spans)
    # Wall time during which at least one worker was reserving (the union of the spans).
    reserving, reach = 0.0, float("-inf")
    for began, end in spans:
        reserving += max(0.0, end - max(began, reach))
        reach = max(reach, end)
    cpu = sum(cpu for *_, cpu, _ in outcomes)
    backends = [backend for *_, backend in outcomes]
    backend_cpu = None if None in backends else sum(backends)

    with tenant_context(tenant):
        level = StockLevel.objects.get()
        ledger = stock_ledger_balance(sku=level.sku, warehouse=level.warehouse)
        reservations = Reservation.objects.count()
        units = sum(Reservation.objects.values_list("quantity", flat=True))
        result = {
            "pg": connection.pg_version // 10000,
            "limits": machine_limits(),
            "spike": spike,
            "landed": landed,
            "deliveries": len(deliveries),
            "seconds": seconds,
            "errors": errors,
            "in_reserve": in_reserve,
            "reserving": reserving,
            "cpu": cpu,
            "backend_cpu": backend_cpu,
            "stock": stock,
            "reserved": level.reserved,
            "on_hand": level.on_hand,
            "ledger_ok": ledger == (level.on_hand, level.reserved),
            "reservations": reservations,
            "units": units,
            "orders": Order.objects.count(),
            "lines": OrderLine.objects.count(),
            "short": Order.objects.filter(holds__code="stock.short").distinct().count(),
            "pending": WebhookDelivery.objects.filter(processed_at__isnull=True).count(),
            "attempts": sorted(set(WebhookDelivery.objects.values_list("attempts", flat=True))),
        }
    return result


def platform_record(shop, store):
    """The platform's order detail for every order of the spike, recorded before the workers
    start (`harness.orders_by_id_transport`) and served from then on."""
    from shops.platforms import connector_for
    from shops.platforms.http import sandbox_transport
    from tkerp.tenancy import tenant_context

    platform = orders_by_id_transport(sandbox_transport())
    ids = list(store.orders.order_by("pk").values_list("order_id", flat=True))
    with tenant_context(shop.tenant):
        connector = connector_for(shop, transport=platform, sleep=lambda seconds: None)
        recorded = connector.fetch_orders_by_id(platform_order_ids=ids)
    platform.recording = False
    assert len(recorded) == len(ids) == len(platform.orders), (len(recorded), len(ids))
    return platform


def report(args: argparse.Namespace, results: list[tuple[str, dict]]) -> None:
    first = results[0][1]
    print(f"machine: {machine()}; PostgreSQL {first['pg']}; {args.workers} worker processes")
    print(machine_limits_line(first["limits"]))
    for label, result in results:
        print(
            f"\n{label}: {result['deliveries']} order webhooks for one SKU "
            f"({result['spike'].webhooks_sent} sent by the sandbox, landed in "
            f"{result['landed']:.1f} s)"
        )
        seconds = result["seconds"]
        oversold = max(0, result["reserved"] - result["on_hand"])
        print(
            f"  {seconds:7.2f} s   {result['deliveries'] / seconds:7.0f} deliveries/s   "
            f"{result['reservations'] / seconds:7.0f} reservations/s in aggregate"
        )
        print(
            f"  {result['orders']} orders, {result['reservations']} reservations "
            f"({result['units']} units of {result['stock']}), {result['short']} held stock.short; "
            f"reserved {result['reserved']} <= on hand {result['on_hand']}: oversold {oversold}; "
            f"ledger {'balances' if result['ledger_ok'] else 'DOES NOT BALANCE'}"
        )
        backend = result["backend_cpu"]
        print(
            f"  CPU: {result['cpu']:.2f} s in the workers"
            + (f" + {backend:.2f} s in their PostgreSQL backends" if backend is not None else "")
            + f" = {(result['cpu'] + (backend or 0)) * 1000 / max(result['reservations'], 1):.2f}"
            " ms per reservation"
        )
        print(
            f"  inside the reservation step: {result['in_reserve']:.2f} s summed over workers "
            f"({result['reservations'] / max(result['in_reserve'], 1e-9):.0f} reservations per "
            "worker-second); some worker was reserving during "
            f"{result['reserving']:.2f} s: "
            f"{result['reservations'] / max(result['reserving'], 1e-9):.0f} reservations/s "
            "in aggregate while reserving"
        )
        print(
            f"  deliveries left unprocessed {result['pending']}, attempts per delivery "
            f"{result['attempts']}, worker errors {len(result['errors'])}"
        )
        for error in result["errors"][:3]:
            print(f"    {error}")
        assert oversold == 0 and result["ledger_ok"] and result["units"] == result["reserved"]
    rates = {label: r["reservations"] / r["seconds"] for label, r in results}
    for before, after in (
        ("today's path (one delivery at a time)", "micro-batches"),
        ("micro-batches", "micro-batches, the platform elsewhere"),
    ):
        if before in rates and after in rates:
            print(f"\n{after} vs {before}: {rates[after] / rates[before]:.2f}x reservations/s")


if __name__ == "__main__":
    main()
