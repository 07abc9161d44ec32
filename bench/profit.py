"""Benchmark: profit rollups (live/profit.py) over many orders, against a per-order baseline.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tkerp .venv/bin/python bench/profit.py

Builds a throwaway database (dropped at the end unless --keep-db): a tenant, a TikTok, a Shopify
and an eBay shop, 22 SKUs in two warehouses, and --orders orders of one to three lines, most
reserved, half shipped with a label cost, a few cancelled and a few returned. Then times:

1. the set-based rollup (one SQL statement) per order, SKU, shop and day over every order;
2. the baseline: `order_profit` called once per order (one statement each, what a naive
   per-order loop costs) over the first --baseline orders, and the set-based rollup over the
   same orders, so the two are compared on equal work in the same run.

Never part of the test run.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import analyse, django_on, throwaway_database  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=20000)
    parser.add_argument("--baseline", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--keep-db", action="store_true", help="Leave the bench database.")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    with throwaway_database("profit", script="bench/profit.py", keep=args.keep_db) as url:
        run(args, url)


def build(args, tenant):
    from django.utils import timezone

    from inventory.models import Reservation, Sku, StockLevel, Warehouse
    from live.models import ShopFees
    from logistics.models import Shipment
    from orders.models import Order, OrderLine, ReturnRequest
    from shops.models import Shop

    rng = random.Random(args.seed)
    shops = [
        Shop.objects.create(tenant=tenant, name=f"{p} shop", platform=p)
        for p in ("tiktok", "shopify", "ebay")
    ]
    ShopFees.objects.create(tenant=tenant, shop=shops[0], packaging_per_parcel=Decimal("0.45"))
    warehouses = [
        Warehouse.objects.create(tenant=tenant, code=code, name=code) for code in ("OWN", "3PL")
    ]
    skus = Sku.objects.bulk_create(
        Sku(tenant=tenant, code=f"SKU-{n:02d}", name=f"Item {n}", cost=Decimal(3 + n % 7))
        for n in range(22)
    )
    levels = StockLevel.objects.bulk_create(
        StockLevel(
            tenant=tenant,
            sku=sku,
            warehouse=warehouse,
            on_hand=10**6,
            reserved=10**5,
            unit_cost=Decimal(2 + sku.pk % 5) if warehouse.code == "3PL" else None,
        )
        for sku in skus
        for warehouse in warehouses
    )
    level_of = {(level.sku_id, level.warehouse_id): level for level in levels}
    now = timezone.now()
    orders = []
    for n in range(args.orders):
        cancelled = rng.random() < 0.04
        orders.append(
            Order(
                tenant=tenant,
                shop=rng.choice(shops),
                platform_order_id=f"B{n:08d}",
                status="cancelled" if cancelled else rng.choice(("ready", "shipped", "delivered")),
                placed_at=now - timedelta(minutes=rng.randint(0, 30 * 24 * 60)),
                total=Decimal(rng.randint(1500, 9000)) / 100,
                tax=Decimal(rng.randint(0, 500)) / 100,
                platform_discount=Decimal(rng.choice((0, 0, 200))) / 100,
                creator_commission=Decimal(rng.choice((0, 150, 300))) / 100,
            )
        )
    Order.objects.bulk_create(orders, batch_size=2000)
    lines, reservations, shipments, returns = [], [], [], []
    for order in orders:
        for index, sku in enumerate(rng.sample(skus, rng.randint(1, 3))):
            quantity = rng.randint(1, 3)
            lines.append(
                OrderLine(
                    tenant=tenant,
                    order=order,
                    platform_line_id=f"{order.platform_order_id}-{index}",
                    sku=sku,
                    seller_sku=sku.code,
                    quantity=quantity,
                    total=Decimal(rng.randint(500, 3000)) / 100,
                )
            )
    OrderLine.objects.bulk_create(lines, batch_size=5000)
    for line in lines:
        order = line.order
        warehouse = rng.choice(warehouses)
        state = (
            "released"
            if order.status == "cancelled"
            else ("committed" if order.status != "ready" else "reserved")
        )
        reservations.append(
            Reservation(
                tenant=tenant,
                order=order,
                order_line=line,
                stock_level=level_of[(line.sku_id, warehouse.pk)],
                sku_id=line.sku_id,
                warehouse=warehouse,
                quantity=line.quantity,
                state=state,
            )
        )
    Reservation.objects.bulk_create(reservations, batch_size=5000)
    for order in orders:
        if order.status in ("shipped", "delivered"):
            shipments.append(
                Shipment(
                    tenant=tenant,
                    order=order,
                    reference=f"P{order.platform_order_id}",
                    warehouse=warehouses[0],
                    status="shipped",
                    shipping_cost=Decimal(rng.randint(350, 900)) / 100,
                )
            )
            if rng.random() < 0.05:
                returns.append(
                    ReturnRequest(
                        tenant=tenant,
                        shop=order.shop,
                        order=order,
                        platform_order_id=order.platform_order_id,
                        platform_return_id=f"R{order.platform_order_id}",
                        status="RETURN_OR_REFUND_REQUEST_COMPLETE",
                        lines=[{"seller_sku": "SKU-01", "quantity": 1}],
                    )
                )
    Shipment.objects.bulk_create(shipments, batch_size=5000)
    ReturnRequest.objects.bulk_create(returns, batch_size=5000)
    return orders


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def run(args, url: str) -> None:
    django_on(url)
    from live.profit import order_profit, profit_rollup
    from orders.models import Order
    from shops.models import Tenant
    from tkerp.tenancy import tenant_context

    tenant = Tenant.objects.create(name="Bench", slug="bench")
    with tenant_context(tenant):
        seconds, orders = timed(lambda: build(args, tenant))
        print(f"built {len(orders)} orders in {seconds:.1f} s")

        analyse()  # what autovacuum does to a live database
        everything = Order.objects.all()
        for by in ("order", "sku", "shop", "day"):
            seconds, rows = timed(
                lambda by=by: profit_rollup(tenant_id=tenant.pk, orders=everything, by=by)
            )
            print(f"set-based rollup by {by:5}: {len(rows):6} rows in {seconds * 1000:8.1f} ms")
        sample = orders[: args.baseline]
        ids = [order.pk for order in sample]
        seconds_set, rows = timed(
            lambda: profit_rollup(
                tenant_id=tenant.pk, orders=Order.objects.filter(pk__in=ids), by="order"
            )
        )
        seconds_loop, loop_rows = timed(lambda: [order_profit(order=order) for order in sample])
        assert {r.key: r.profit for r in rows} == {r.key: r.profit for r in loop_rows if r}
        print(
            f"{len(sample)} orders: set-based {seconds_set * 1000:.1f} ms, per-order baseline "
            f"{seconds_loop * 1000:.1f} ms ({seconds_loop / seconds_set:.0f}x)"
        )


if __name__ == "__main__":
    main()
