"""Benchmark: reserving stock under contention, and a 2,800-order spike that must never oversell.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tkerp .venv/bin/python bench/stock.py

Creates a throwaway PostgreSQL database next to the one DATABASE_URL names (dropped at the end
unless --keep-db) and builds its tables from the models. Then:

1. contention: --threads workers (each with its own connection, released together) reserve
   --orders single-unit orders, one `orders_reserve` call per order, all on ONE SKU whose free
   stock covers half of them. Prints reservations per second and checks nothing oversold
   (reserved == min(orders, stock), reserved <= on hand, the ledger sums to the stored numbers).
2. spike: a 2,800-order spike for one SKU with limited stock, ingested through `orders_ingest`
   from two shops (TikTok and Shopify) in pages by four workers, while a monitor samples, in one
   REPEATABLE READ snapshot at a time, what every listing would publish
   (`inventory.availability.listings_available`) and the SKU's free stock. Asserts no sample
   publishes more than the free stock and that exactly the free units were reserved. Pushes to
   the platforms themselves are not made here: `bench_push()` from bench/stock_push.py (the
   availability helper's bench, called at the end when it exists) measures those against the
   sandboxes. Any `InventoryPush` rows written meanwhile are compared with the free stock the
   ledger had at the time they were recorded.
3. restock: --restock paid orders wait for a SKU (held `stock.short`), and a receipt brings
   units for half of them, which it gives to the oldest paid once it commits
   (`inventory.reservations.orders_reserve_waiting`): timed from the receipt to the end of its
   retry, with each waiting order in a transaction of its own (the retry as it was, the
   baseline) and as now, in the same run; both must serve exactly the oldest paid half.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from harness import (  # noqa: E402
    audit_stats,
    audit_stats_enable,
    audit_triggers_set,
    django_on,
    machine_limits,
    machine_limits_line,
    throwaway_database,
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--orders", type=int, default=1000, help="Contention run orders.")
    parser.add_argument("--spike", type=int, default=2800, help="Spike orders.")
    parser.add_argument("--spike-stock", type=int, default=900, help="Free units in the spike.")
    parser.add_argument(
        "--restock", type=int, default=1000, help="Orders waiting when stock arrives."
    )
    parser.add_argument("--keep-db", action="store_true", help="Leave the bench database.")
    parser.add_argument("--no-push", action="store_true", help="Skip bench/stock_push.py.")
    parser.add_argument(
        "--audit",
        choices=["both", "on", "off"],
        default="both",
        help="With the audit trail's triggers (on, as in production), without (off), or both, "
        "one after the other in fresh databases, with the difference (default).",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    source_url = os.environ.get("DATABASE_URL", "")
    modes = ["off", "on"] if args.audit == "both" else [args.audit]
    results = {}
    if len(modes) == 2:
        # The first run in a process pays for imports and first-use set-up: a small one first.
        print("=== warm-up (not compared) ===")
        warm = argparse.Namespace(
            **{**vars(args), "orders": 200, "spike": 400, "spike_stock": 100, "restock": 200}
        )
        with throwaway_database("stock_warm", script="bench/stock.py") as url:
            run(warm, url, audit=True)
    for mode in modes:
        print(f"=== audit trail {mode} ===")
        label = f"stock_audit_{mode}"
        with throwaway_database(label, script="bench/stock.py", keep=args.keep_db) as url:
            results[mode] = run(args, url, audit=mode == "on")
    if len(results) == 2:
        off, on = results["off"], results["on"]
        print("=== the audit trail's cost (same work, fresh database each) ===")
        for key, what in (("contention", "contention"), ("spike", "spike"), ("cpu", "bench CPU")):
            change = (on[key] - off[key]) / off[key] * 100
            print(f"  {what:11} off {off[key]:7.2f} s   on {on[key]:7.2f} s   {change:+6.1f} %")
        if on["trigger_seconds"] is not None:
            print(
                f"  inside the audit triggers (PostgreSQL): {on['trigger_seconds']:.2f} s, "
                f"{on['audit_rows']} audit rows"
            )
    if not args.no_push and (ROOT / "bench" / "stock_push.py").exists():
        # The availability helper's bench (its own database and sandboxes): push latency.
        os.environ["DATABASE_URL"] = source_url
        from stock_push import bench_push

        print("\n--- availability pushes (bench/stock_push.py) ---")
        bench_push()
    elif not args.no_push:
        print("\nbench/stock_push.py not found: push latency not measured here.")


# Set by run(): each worker thread's changes name a task, as in production (tkerp.audit).
AUDIT = {"on": False}


def run_together(jobs):
    """Run `jobs` in threads released together; returns (seconds, errors)."""
    from django.db import connection

    from tkerp.audit import audit_context

    barrier = threading.Barrier(len(jobs) + 1)
    errors: list[BaseException] = []

    def wrap(job):
        try:
            barrier.wait()
            if AUDIT["on"]:
                with audit_context(
                    actor="task", task="bench", task_id=threading.current_thread().name
                ):
                    job()
            else:
                job()
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=wrap, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, errors


def run(args: argparse.Namespace, url: str, *, audit: bool = True) -> dict:
    django_on(url)
    AUDIT["on"] = audit
    triggers = audit_triggers_set(enabled=audit)
    stats = audit_stats_enable() if audit else False

    from django.db import connection

    from shops.models import Shop, Tenant
    from tkerp.tenancy import tenant_context

    tenant = Tenant.objects.create(name="Bench Seller", slug="bench-stock")
    with tenant_context(tenant):
        tiktok = Shop.objects.create(tenant=tenant, name="Bench TikTok", platform="tiktok")
        shopify = Shop.objects.create(tenant=tenant, name="Bench Shopify", platform="shopify")
    print(f"PostgreSQL {connection.pg_version // 10000}, {args.threads} threads")
    print(machine_limits_line(machine_limits()))
    cpu = time.process_time()
    figures = {"contention": contention(args, tenant, tiktok)}
    figures["spike"] = spike(args, tenant, tiktok, shopify)
    figures["restock"] = restock(args, tenant, tiktok)
    figures["cpu"] = time.process_time() - cpu
    figures["trigger_seconds"], figures["audit_rows"] = audit_stats() if stats else (None, 0)
    print(f"audit trail: {'on' if audit else 'off'} ({triggers} triggers)", end="")
    if figures["trigger_seconds"] is not None:
        print(f", {figures['trigger_seconds']:.2f} s inside them, {figures['audit_rows']} rows")
    else:
        print()
    return figures


def _receive(tenant, sku, warehouse, units):
    from inventory.models import MovementKind
    from inventory.stock import stock_adjust
    from tkerp.tenancy import tenant_context

    with tenant_context(tenant):
        stock_adjust(
            sku=sku, warehouse=warehouse, delta=units, kind=MovementKind.RECEIVE, user=None, note=""
        )


def _check_ledger(tenant, sku):
    from inventory.models import StockLevel
    from inventory.stock import stock_ledger_balance
    from tkerp.tenancy import tenant_context

    with tenant_context(tenant):
        for level in StockLevel.objects.filter(sku=sku).select_related("warehouse"):
            ledger = stock_ledger_balance(sku=sku, warehouse=level.warehouse)
            assert ledger == (level.on_hand, level.reserved), (ledger, level)
            assert 0 <= level.reserved <= level.on_hand


def _one_unit_orders(tenant, shop, sku, orders: list) -> list:
    """Paid orders of one unit of `sku` each, one per (platform order id, paid at)."""
    from orders.models import Order, OrderLine

    stored = Order.objects.bulk_create(
        [
            Order(tenant=tenant, shop=shop, platform_order_id=platform_id, paid_at=paid_at)
            for platform_id, paid_at in orders
        ]
    )
    OrderLine.objects.bulk_create(
        [
            OrderLine(
                tenant=tenant,
                order=order,
                platform_line_id="1",
                sku=sku,
                seller_sku=sku.code,
                quantity=1,
            )
            for order in stored
        ]
    )
    return stored


def contention(args, tenant, shop) -> float:
    from django.utils import timezone

    from inventory.models import Sku, StockLevel, Warehouse
    from inventory.reservations import orders_reserve
    from tkerp.tenancy import tenant_context

    stock = args.orders // 2
    with tenant_context(tenant):
        warehouse = Warehouse.objects.create(tenant=tenant, code="MAIN", name="Main")
        sku = Sku.objects.create(tenant=tenant, code="HOT-1", name="Hot item")
        _receive(tenant, sku, warehouse, stock)
        now = timezone.now()
        orders = _one_unit_orders(tenant, shop, sku, [(f"C-{n}", now) for n in range(args.orders)])
    ids = [order.pk for order in orders]

    def worker(share):
        def job():
            for order_id in share:
                orders_reserve(tenant=tenant, order_ids=[order_id])

        return job

    seconds, errors = run_together([worker(ids[i :: args.threads]) for i in range(args.threads)])
    assert not errors, errors[:3]
    with tenant_context(tenant):
        level = StockLevel.objects.get(sku=sku, warehouse=warehouse)
    _check_ledger(tenant, sku)
    oversold = max(0, level.reserved - stock)
    print(
        f"contention: {args.orders} single-unit orders on one SKU ({stock} free), "
        f"{args.threads} threads: {seconds:.2f} s, {args.orders / seconds:,.0f} orders/s, "
        f"{level.reserved / seconds:,.0f} reservations/s; reserved {level.reserved}, "
        f"oversold {oversold}"
    )
    assert level.reserved == stock and oversold == 0
    return seconds


def _waiting_one_at_a_time(*, tenant, sku_ids):
    """The retry as it was: each waiting order in its own `orders_reserve` call, oldest paid
    first (the baseline of `restock`)."""
    from inventory.reservations import ReserveSummary, orders_reserve
    from orders.holds import HoldReason
    from orders.models import OPEN_STATUSES, Order
    from tkerp.tenancy import tenant_context

    with tenant_context(tenant):
        order_ids = list(
            Order.objects.filter(
                holds__code=HoldReason.STOCK_SHORT,
                holds__released_at__isnull=True,
                lines__sku_id__in=sku_ids,
                status__in=OPEN_STATUSES,
            )
            .order_by("paid_at", "pk")
            .values_list("pk", flat=True)
            .distinct()
        )
    summary = ReserveSummary()
    for order_id in order_ids:
        summary.reserved += orders_reserve(tenant=tenant, order_ids=[order_id]).reserved
    return summary


def restock(args, tenant, shop) -> dict:
    """Stock arrives for a SKU that --restock paid orders wait for (held `stock.short` after an
    oversell), enough for half of them: the receipt retries them once it commits
    (`inventory.reservations.orders_reserve_waiting`). Timed from the receipt to the end of its
    retry, once with each waiting order in its own transaction (the baseline) and once as now;
    each time, the units must go to the oldest paid orders and the ledger must balance."""
    import random
    from datetime import timedelta

    from django.utils import timezone

    import inventory.reservations as reservations
    from inventory.models import Sku, StockLevel, Warehouse
    from orders.models import Order, OrderHold
    from tkerp.tenancy import tenant_context

    units = args.restock // 2
    figures = {}
    for name, retry in (
        ("one at a time", _waiting_one_at_a_time),
        ("in turn, batched (now)", reservations.orders_reserve_waiting),
    ):
        tag = "BATCHED" if retry is reservations.orders_reserve_waiting else "ONE"
        with tenant_context(tenant):
            warehouse = Warehouse.objects.get(code="MAIN")
            sku = Sku.objects.create(tenant=tenant, code=f"RESTOCK-{tag}", name="Restocked")
            now = timezone.now()
            # Paid in an order unlike their ids, as a spike's pages store them.
            minutes = list(range(args.restock))
            random.Random(7).shuffle(minutes)
            orders = _one_unit_orders(
                tenant,
                shop,
                sku,
                [
                    (f"R-{tag}-{n}", now - timedelta(minutes=minute))
                    for n, minute in enumerate(minutes)
                ],
            )
        ids = [order.pk for order in orders]
        # Nothing in stock: every order is held short.
        short = reservations.orders_reserve(tenant=tenant, order_ids=ids).short
        assert len(short) == len(ids), len(short)
        real = reservations.orders_reserve_waiting
        reservations.orders_reserve_waiting = retry
        try:
            started = time.perf_counter()
            _receive(tenant, sku, warehouse, units)
            seconds = time.perf_counter() - started
        finally:
            reservations.orders_reserve_waiting = real
        with tenant_context(tenant):
            level = StockLevel.objects.get(sku=sku, warehouse=warehouse)
            served = set(
                Order.objects.filter(pk__in=ids)
                .exclude(
                    pk__in=OrderHold.objects.filter(
                        code="stock.short", released_at__isnull=True
                    ).values("order_id")
                )
                .values_list("pk", flat=True)
            )
        oldest = {order.pk for order in sorted(orders, key=lambda o: (o.paid_at, o.pk))[:units]}
        _check_ledger(tenant, sku)
        assert level.reserved == units and served == oldest, (level.reserved, len(served))
        figures[name] = seconds
        print(
            f"restock: {args.restock} orders waiting for one SKU, {units} units arrive, "
            f"{name}: {seconds:.2f} s from the receipt to the end of its retry, "
            f"{units / seconds:,.0f} reservations/s; the {units} oldest paid served, "
            "ledger balances"
        )
    baseline, now = figures.values()
    print(f"restock: {baseline / now:.1f}x faster than one at a time")
    return figures


def spike(args, tenant, tiktok, shopify) -> float:
    from datetime import UTC, datetime, timedelta
    from decimal import Decimal

    from django.db import connection, transaction

    from inventory.availability import listings_available
    from inventory.models import InventoryPush, Listing, Sku, StockLevel, StockMovement, Warehouse
    from orders.ingest import orders_ingest
    from orders.models import OrderHold
    from shops.platforms.base import PlatformAddress, PlatformLine, PlatformOrder
    from tkerp.tenancy import tenant_context

    with tenant_context(tenant):
        warehouse = Warehouse.objects.get(code="MAIN")
        sku = Sku.objects.create(tenant=tenant, code="SPIKE-1", name="Live stream item")
        _receive(tenant, sku, warehouse, args.spike_stock)
        listings = [
            Listing.objects.create(tenant=tenant, shop=shop, sku=sku, platform_sku_id=f"P-{n}")
            for n, shop in enumerate((tiktok, shopify))
        ]
    t0 = datetime(2026, 4, 12, 20, 0, tzinfo=UTC)

    def order(shop, n):
        return PlatformOrder(
            platform_order_id=f"S{shop.pk}-{n}",
            platform_status="AWAITING_SHIPMENT",
            status="new",
            updated_at=t0 + timedelta(milliseconds=n),
            placed_at=t0,
            paid_at=t0,
            subtotal=Decimal("9.99"),
            total=Decimal("9.99"),
            buyer_name=f"Buyer {shop.pk}-{n}",
            # A distinct, complete address each, so review holds nothing but stock.short.
            address=PlatformAddress(
                name=f"Buyer {shop.pk}-{n}",
                phone=f"+1415555{n:04d}",
                line1=f"{n + 1} Market St Unit {shop.pk}",
                city="San Francisco",
                state="CA",
                postal_code="94105",
            ),
            lines=[
                PlatformLine(
                    platform_line_id="1", quantity=1, seller_sku=sku.code, total=Decimal("9.99")
                )
            ],
        )

    per_shop = args.spike // 2
    batches = {shop: [order(shop, n) for n in range(per_shop)] for shop in (tiktok, shopify)}
    done = threading.Event()
    samples: list[tuple[int, int]] = []  # (max published, free) per snapshot

    def monitor():
        try:
            with tenant_context(tenant):
                while not done.is_set():
                    with transaction.atomic():
                        connection.cursor().execute(
                            "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"
                        )
                        level = StockLevel.objects.get(sku=sku, warehouse=warehouse)
                        fresh = list(Listing.objects.filter(pk__in=[lst.pk for lst in listings]))
                        published = listings_available(fresh)
                    samples.append((max(published.values()), level.on_hand - level.reserved))
                    time.sleep(0.01)
        finally:
            connection.close()

    def ingest(shop, share):
        def job():
            for start in range(0, len(share), 50):
                orders_ingest(shop=shop, platform_orders=share[start : start + 50], source="bench")

        return job

    watcher = threading.Thread(target=monitor)
    watcher.start()
    jobs = [ingest(shop, orders[half::2]) for shop, orders in batches.items() for half in range(2)]
    try:
        seconds, errors = run_together(jobs)
    finally:
        done.set()
        watcher.join()
    assert not errors, errors[:3]
    _check_ledger(tenant, sku)
    with tenant_context(tenant):
        level = StockLevel.objects.get(sku=sku, warehouse=warehouse)
        short = (
            OrderHold.objects.filter(
                code="stock.short", released_at__isnull=True, order__lines__sku=sku
            )
            .distinct()
            .count()
        )
        pushes = list(InventoryPush.objects.filter(listing__in=listings).order_by("created_at"))
        movements = list(
            StockMovement.objects.filter(sku=sku)
            .order_by("created_at")
            .values_list("created_at", "on_hand_delta", "reserved_delta")
        )
    over = [(published, free) for published, free in samples if published > free]
    print(
        f"spike: {args.spike} orders from 2 shops for {args.spike_stock} free units, ingested "
        f"in {seconds:.2f} s ({args.spike / seconds:,.0f} orders/s): reserved {level.reserved}, "
        f"{short} held stock.short, oversold {max(0, level.reserved - level.on_hand)}"
    )
    print(
        f"  publish check: {len(samples)} snapshots, max published "
        f"{max((p for p, _ in samples), default=0)}, snapshots publishing more than free: "
        f"{len(over)}"
    )
    if pushes:
        late = 0
        for push in pushes:
            on_hand = sum(d for at, d, _ in movements if at <= push.created_at)
            reserved = sum(r for at, _, r in movements if at <= push.created_at)
            free = on_hand - reserved
            late += push.quantity > free
        print(
            f"  InventoryPush rows during the spike: {len(pushes)}, max quantity "
            f"{max(p.quantity for p in pushes)}; above the ledger's free stock when recorded: "
            f"{late}"
        )
    else:
        print("  no InventoryPush rows: no push ran during this part (see bench_push below)")
    assert not over, over[:5]
    assert level.reserved == args.spike_stock
    assert short == args.spike - args.spike_stock
    return seconds


if __name__ == "__main__":
    main()
