"""Benchmark: latency from one stock change to the last platform push, across all four channels.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tkerp .venv/bin/python bench/stock_push.py

Creates a throwaway PostgreSQL database next to the one DATABASE_URL names (dropped at the end),
builds its tables from the models, makes a tenant with a TikTok, a Shopify, an Amazon and an
eBay shop listing the same SKUs, each connected to its platform's sandbox at the sandbox's
realistic rate limits (TikTok 50/s, Shopify's 2/s leaky bucket of 40, Amazon's per-operation
usage plans, eBay 5/s) with the connectors' own client-side limits, over real HTTP (served
in-process).

Each round changes the stock of ONE SKU (`stock_adjust`, then `skus_changed` inside the same
transaction, as the stock code does); on commit one flush per shop is queued, and the queued
tasks run on a pool of worker threads standing in for a django-q cluster (one worker per shop,
each with its own database connection). Latency = from just before the stock change to the
platform's acknowledgement of the last of the four pushes (`InventoryPush.pushed_at`), which
includes the debounce window (TKERP_PUSH_DEBOUNCE_MS, default 300 ms). After each round every
sandbox must show what the rules say. Prints p50/p95/max; target p95 <= 5 s.

`bench_push()` is also called at the end of bench/stock.py; it then re-points the already
configured Django at its own throwaway database.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import django_on, throwaway_database  # noqa: E402

PLATFORMS = ("tiktok", "shopify", "amazon", "ebay")
TARGET_P95_S = 5.0


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(share * len(ordered) + 0.5) - 1))
    return ordered[index]


def bench_push(*, repeats: int = 20, skus: int = 20, pause: float = 0.5) -> dict:
    """Run the benchmark on a throwaway database; prints and returns p50/p95/max (seconds)."""
    with throwaway_database("push", script="bench/stock_push.py") as url:
        django_on(url)
        return _run(repeats=repeats, sku_count=skus, pause=pause)


def _run(*, repeats: int, sku_count: int, pause: float) -> dict:
    from decimal import Decimal

    from django.conf import settings
    from django.db import close_old_connections, connection, transaction

    import inventory.tasks as inventory_tasks
    from inventory.availability import listings_available, skus_changed
    from inventory.models import InventoryPush, Listing, Sku, Warehouse
    from inventory.stock import stock_adjust, stock_count
    from sandbox.base import reset_rate_limits
    from sandbox.connect import sandbox_connect
    from sandbox.models import SandboxProduct
    from shops.models import Shop, Tenant
    from shops.platforms import http as platform_http
    from tkerp.tenancy import tenant_context

    reset_rate_limits()
    platform_http._buckets.clear()  # a previous run in this process may have used the same ids

    tenant = Tenant.objects.create(name="Push Bench Seller", slug="push-bench-seller")
    with tenant_context(tenant):
        warehouse = Warehouse.objects.create(tenant=tenant, code="MAIN", name="Main")
        sku_rows = [
            Sku.objects.create(
                tenant=tenant,
                code=f"PUSH-{number:03d}",
                name=f"Push bench product {number}",
                cost=Decimal("4.10") + number,
            )
            for number in range(1, sku_count + 1)
        ]
        for sku in sku_rows:
            stock_count(sku=sku, warehouse=warehouse, counted=500, user=None)
        shops = {}
        for platform in PLATFORMS:
            shop = Shop.objects.create(
                tenant=tenant, name=f"Push bench {platform}", platform=platform
            )
            for sku in sku_rows:
                Listing.objects.create(
                    tenant=tenant, shop=shop, sku=sku, buffer_units=2, max_publish=400
                )
            sandbox_connect(shop=shop)
            shop.refresh_from_db()
            shops[platform] = shop

    # The django-q cluster: one worker per shop, each thread with its own DB connection.
    pool = ThreadPoolExecutor(max_workers=len(PLATFORMS), thread_name_prefix="q-worker")
    futures = []

    def worker(func_path: str, *args):
        from django.utils.module_loading import import_string

        try:
            return import_string(func_path)(*args)
        finally:
            close_old_connections()
            connection.close()

    def async_task(func_path, *args, **kwargs):
        futures.append(pool.submit(worker, func_path, *args))

    inventory_tasks.async_task = async_task

    latencies: list[float] = []
    mismatches = 0
    try:
        for round_number in range(repeats):
            sku = sku_rows[round_number % len(sku_rows)]
            futures.clear()
            with tenant_context(tenant):
                started = time.time()
                with transaction.atomic():
                    stock_adjust(
                        sku=sku,
                        warehouse=warehouse,
                        delta=-1 if round_number % 2 else 3,
                        kind="adjust",
                        user=None,
                        note=f"bench round {round_number}",
                    )
                    skus_changed(tenant=tenant, sku_ids=[sku.pk])
                wait(futures)
                for future in futures:
                    future.result()  # a worker's exception surfaces here
                pushes = list(
                    InventoryPush.objects.filter(
                        listing__sku=sku, result="ok", requested_at__gte=_utc(started - 1)
                    ).values_list("listing__shop__platform", "pushed_at")
                )
                platforms_pushed = {platform for platform, _ in pushes}
                if platforms_pushed != set(PLATFORMS):
                    raise RuntimeError(f"round {round_number}: pushed to {platforms_pushed}")
                last = max(pushed_at for _, pushed_at in pushes).timestamp()
                latencies.append(last - started)
                listings = list(Listing.objects.filter(sku=sku).select_related("shop", "sku"))
                wanted = listings_available(listings)
                for listing in listings:
                    shown = SandboxProduct.objects.get(
                        store__platform=listing.shop.platform,
                        store__shop_key=listing.shop.platform_shop_id,
                        sku_id=listing.platform_sku_id,
                    ).quantity
                    if shown != wanted[listing.pk]:
                        mismatches += 1
            time.sleep(pause)
    finally:
        pool.shutdown(wait=True)

    p50 = statistics.median(latencies)
    p95 = percentile(latencies, 0.95)
    print(
        f"push latency, one stock change -> last of {len(PLATFORMS)} platform pushes "
        f"({', '.join(PLATFORMS)}), {len(latencies)} rounds, "
        f"debounce {getattr(settings, 'TKERP_PUSH_DEBOUNCE_MS', 300)} ms:"
    )
    print(
        f"  p50 {p50:.3f} s   p95 {p95:.3f} s   max {max(latencies):.3f} s   "
        f"(target p95 <= {TARGET_P95_S:.0f} s: {'met' if p95 <= TARGET_P95_S else 'MISSED'})"
    )
    print(f"  sandbox quantities differing from the rules after a round: {mismatches}")
    return {"p50": p50, "p95": p95, "max": max(latencies), "mismatches": mismatches}


def _utc(timestamp: float):
    from datetime import UTC, datetime

    return datetime.fromtimestamp(timestamp, tz=UTC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--skus", type=int, default=20, help="SKUs listed on every shop.")
    parser.add_argument("--pause", type=float, default=0.5, help="Seconds between rounds.")
    args = parser.parse_args()
    result = bench_push(repeats=args.repeats, skus=args.skus, pause=args.pause)
    if result["mismatches"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
