"""Benchmark: order review on a live stream's 2,800-order spike, alone and inside the sync.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tkerp .venv/bin/python bench/review.py

Builds a throwaway database like bench/sync_spike.py (dropped at the end unless --keep-db): a
tenant, a TikTok shop with SKUs, listings and plenty of stock, connected to the TikTok sandbox,
and lands the spike there (the sandbox's buyers include PO boxes, military addresses, wrong ZIPs,
over-long lines and buyer notes). Then:

1. one `shop_sync` pass, which stores the orders and runs the pipeline on each page (reserve,
   then review): reported end to end, with the time spent inside `orders_review`;
2. review on its own: the review state is reset and `orders_review` runs again over all the
   orders, once in page-sized batches (as the sync calls it) and once as one batch;
3. a re-run over unchanged orders (what every later sync pass costs: fingerprints only).

Never part of the test run.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402
    bench_tiktok_shop,
    django_on,
    throwaway_database,
    timed_transport,
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=2800)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--page", type=int, default=100, help="Batch size of the paged re-run.")
    parser.add_argument("--keep-db", action="store_true", help="Leave the bench database.")
    parser.add_argument("--profile", action="store_true", help="cProfile the one-batch review.")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    with throwaway_database("sync", script="bench/review.py", keep=args.keep_db) as url:
        run(args, url)


def run(args: argparse.Namespace, url: str) -> None:
    django_on(url)

    import inventory.reservations as reservations_module
    import orders.review as review_module
    from orders.models import Order, OrderEvent, OrderHold, OrderStatus
    from sandbox.actions import sandbox_spike
    from shops.platforms import connector_for
    from shops.platforms.http import sandbox_transport
    from shops.sync import shop_sync
    from tkerp.tenancy import tenant_context

    tenant, shop = bench_tiktok_shop(on_hand=100_000, warehouse_priority=True)
    with tenant_context(tenant):
        spike = sandbox_spike(shop=shop, orders=args.orders, seed=args.seed, cancel_rate=0.03)

        # 1. The sync pass, with the time spent inside review measured around it.
        inner_review = review_module.orders_review
        in_review = {"seconds": 0.0, "calls": 0}

        def timed_review(**kwargs):
            started = time.perf_counter()
            try:
                return inner_review(**kwargs)
            finally:
                in_review["seconds"] += time.perf_counter() - started
                in_review["calls"] += 1

        review_module.orders_review = timed_review
        # The stock step runs just before review on each page: timed too, for comparison.
        inner_reserve = reservations_module.orders_reserve
        in_reserve = {"seconds": 0.0}

        def timed_reserve(**kwargs):
            started = time.perf_counter()
            try:
                return inner_reserve(**kwargs)
            finally:
                in_reserve["seconds"] += time.perf_counter() - started

        reservations_module.orders_reserve = timed_reserve
        transport = timed_transport(sandbox_transport())
        waits: list[float] = []

        def sleep(seconds: float) -> None:
            waits.append(seconds)
            time.sleep(seconds)

        connector = connector_for(shop, transport=transport, sleep=sleep)
        begun = time.perf_counter()
        sync_run = shop_sync(shop=shop, trigger="bench", connector=connector)
        sync_total = time.perf_counter() - begun
        review_module.orders_review = inner_review
        reservations_module.orders_reserve = inner_reserve
        assert sync_run.status == "success", sync_run.error
        ids = list(Order.objects.order_by("pk").values_list("pk", flat=True))
        statuses = Counter(Order.objects.values_list("status", flat=True))
        codes = Counter(
            OrderHold.objects.filter(released_at__isnull=True).values_list("code", flat=True)
        )

        # 2. Review alone: forget what review did, then run it again over every order.
        def reset():
            OrderHold.objects.exclude(code="stock.short").delete()
            OrderEvent.objects.filter(kind__startswith="review.").delete()
            Order.objects.filter(status__in=(OrderStatus.READY, OrderStatus.ON_HOLD)).update(
                status=OrderStatus.NEW, review_fingerprint="", reviewed_at=None
            )

        reset()
        begun = time.perf_counter()
        paged = None
        for start in range(0, len(ids), args.page):
            result = inner_review(tenant=tenant, order_ids=ids[start : start + args.page])
            paged = (paged or 0) + result.reviewed
        paged_seconds = time.perf_counter() - begun

        reset()
        profiler = None
        if args.profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        begun = time.perf_counter()
        one = inner_review(tenant=tenant, order_ids=ids)
        one_seconds = time.perf_counter() - begun
        if profiler is not None:
            import pstats

            profiler.disable()
            pstats.Stats(profiler).sort_stats("cumtime").print_stats(25)

        # 3. Unchanged orders: fingerprints only.
        begun = time.perf_counter()
        again = inner_review(tenant=tenant, order_ids=ids)
        again_seconds = time.perf_counter() - begun
        assert again.reviewed == 0, again

    reviewed_in_sync = statuses[OrderStatus.READY] + statuses[OrderStatus.ON_HOLD]
    print(f"spike: {spike.orders} orders landed in the TikTok sandbox")
    print(
        f"sync pass: {sync_run.created} orders stored in {sync_run.pages} pages, "
        f"{sync_total:.2f} s end to end ({sync_run.created / sync_total:.0f} orders/s); "
        f"sandbox {transport.seconds:.2f} s, rate-limit waits {sum(waits):.2f} s"
    )
    print(
        f"  of which review  {in_review['seconds']:6.2f} s over {in_review['calls']} calls "
        f"({in_review['seconds'] / sync_total:.0%} of the pass; "
        f"{reviewed_in_sync / max(in_review['seconds'], 1e-9):.0f} orders/s)"
    )
    print(
        f"  stock reservation {in_reserve['seconds']:6.2f} s "
        f"({in_reserve['seconds'] / sync_total:.0%} of the pass)"
    )
    print(
        "  outcome: "
        + ", ".join(f"{status} {count}" for status, count in sorted(statuses.items()))
        + "; holds: "
        + ", ".join(f"{code} {count}" for code, count in codes.most_common())
    )
    print(
        f"review alone, {args.page}-order batches: {paged} orders in {paged_seconds:.2f} s "
        f"({paged / paged_seconds:.0f} orders/s)"
    )
    print(
        f"review alone, one batch: {one.reviewed} orders in {one_seconds:.2f} s "
        f"({one.reviewed / one_seconds:.0f} orders/s)"
    )
    print(
        f"re-run over unchanged orders: {len(ids)} skipped in {again_seconds:.2f} s "
        f"({len(ids) / again_seconds:.0f} orders/s)"
    )


if __name__ == "__main__":
    main()
