"""Benchmark: carrier rules on a live stream's 2,800-order spike.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tkerp .venv/bin/python bench/rules.py

Builds a throwaway database (dropped at the end unless --keep-db): a tenant with the demo's
carriers and rule set (shops.demo), one warehouse with stock of 40 SKUs, and the spike's orders,
ready and reserved (destinations across the demo's cities, totals $5-$80, one to three lines).
Then measures:

1. routing: `orders_split_ready` called the way the minute sweep and the split task call it
   (500 orders a call) until every order has its parcel, and the share of that spent in the
   rules (`shipments_rules_apply`);
2. "Re-apply carrier rules" on every parcel at once, and in 500-parcel chunks;
3. the same with the catch-all rule switched off (a third of the parcels hold their order);
4. the dry run (`rules_dry_run`) a rule's Preview runs over the spike's parcels.

Never part of the test run.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import django_on, throwaway_database  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=2800)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--keep-db", action="store_true", help="Leave the bench database.")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    with throwaway_database("rules", script="bench/rules.py", keep=args.keep_db) as url:
        run(args, url)


def spike(args, tenant):
    """The spike's orders, paid, reserved and ready, like review leaves clean ones."""
    from decimal import Decimal

    from django.utils import timezone

    from inventory.models import MovementKind, Sku, Warehouse
    from inventory.reservations import orders_reserve
    from inventory.stock import stock_adjust
    from orders.models import Order, OrderLine, OrderStatus
    from shops.demo import CITIES
    from shops.models import Shop
    from tkerp.tenancy import tenant_context

    rng = random.Random(args.seed)
    with tenant_context(tenant):
        shop = Shop.objects.create(tenant=tenant, name="Bench TikTok", platform="tiktok")
        warehouse = Warehouse.objects.create(tenant=tenant, code="MAIN", name="Main", country="US")
        skus = Sku.objects.bulk_create(
            Sku(tenant=tenant, code=f"B-{n:03d}", name=f"Product {n}", weight_grams=w)
            for n, w in enumerate(rng.choices((80, 150, 300, 650, 1200, 2400), k=40))
        )
        for sku in skus:
            stock_adjust(
                sku=sku,
                warehouse=warehouse,
                delta=10_000,
                kind=MovementKind.RECEIVE,
                user=None,
                note="bench",
            )
        now = timezone.now()
        orders = []
        for n in range(args.orders):
            city, state, postal, _ = rng.choice(CITIES)
            orders.append(
                Order(
                    tenant=tenant,
                    shop=shop,
                    platform_order_id=f"S-{n:05d}",
                    paid_at=now,
                    placed_at=now,
                    status=OrderStatus.READY,
                    city=city,
                    state=state,
                    postal_code=postal,
                    address_line1=f"{100 + n} Main St",
                    total=Decimal(rng.randint(500, 8000)) / 100,
                )
            )
        orders = Order.objects.bulk_create(orders)
        lines = []
        for order in orders:
            for index, sku in enumerate(rng.sample(skus, rng.choice((1, 1, 2, 3)))):
                lines.append(
                    OrderLine(
                        tenant=tenant,
                        order=order,
                        platform_line_id=str(index),
                        sku=sku,
                        seller_sku=sku.code,
                        quantity=rng.choice((1, 1, 1, 2)),
                        total=order.total,
                    )
                )
        OrderLine.objects.bulk_create(lines)
    orders_reserve(tenant=tenant, order_ids=[order.pk for order in orders])
    return orders


def timed(label, fn):
    from django.db import connection

    statements = [0]

    def count(execute, sql, params, many, context):
        statements[0] += 1
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        started = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - started
    print(f"{label:<58} {seconds:7.2f} s  {statements[0]:6d} queries")
    return result, seconds


def run(args: argparse.Namespace, url: str) -> None:
    django_on(url)

    from datetime import timedelta

    from django.utils import timezone

    import logistics.routing as routing
    import logistics.rules as rules
    from logistics.models import CarrierRule, Shipment
    from orders.models import Order, OrderStatus
    from shops.models import Tenant
    from tests.logistics.rules_world import demo_rule_set
    from tkerp.tenancy import tenant_context

    tenant = Tenant.objects.create(name="Bench Seller", slug="bench-rules")
    demo_rule_set(tenant)
    started = time.perf_counter()
    spike(args, tenant)
    print(
        f"{args.orders} orders, reserved and ready, built in {time.perf_counter() - started:.1f} s"
    )

    # 1. routing, with the time the rules take inside it
    in_rules = [0.0]
    apply = rules.shipments_rules_apply

    def counting_apply(**kwargs):
        began = time.perf_counter()
        try:
            return apply(**kwargs)
        finally:
            in_rules[0] += time.perf_counter() - began

    routing.shipments_rules_apply = counting_apply

    def split_all():
        calls = 0
        while routing.orders_split_ready(tenant=tenant):
            calls += 1
        return calls

    calls, seconds = timed("routing: orders_split_ready until all are split", split_all)
    routing.shipments_rules_apply = apply
    with tenant_context(tenant):
        ids = list(Shipment.objects.order_by("pk").values_list("pk", flat=True))
        held = Order.objects.filter(status=OrderStatus.ON_HOLD).count()
    print(
        f"  {calls} calls, {len(ids)} parcels, {held} held; rules: {in_rules[0]:.2f} s "
        f"({100 * in_rules[0] / seconds:.0f} % of routing)"
    )
    with tenant_context(tenant):
        hits = dict(CarrierRule.objects.values_list("name", "hit_count"))
    print(f"  hits: {hits}")

    # 2. re-apply
    timed(
        f"re-apply: {len(ids)} parcels at once",
        lambda: rules.shipments_rules_apply(tenant=tenant, shipment_ids=ids),
    )

    def chunks():
        for start in range(0, len(ids), 500):
            rules.shipments_rules_apply(tenant=tenant, shipment_ids=ids[start : start + 500])

    timed("re-apply: in 500-parcel chunks", chunks)

    # 3. without a catch-all: many holds, then releases once it is back
    with tenant_context(tenant):
        CarrierRule.objects.filter(priority=100).update(is_active=False)
    result, _ = timed(
        "re-apply without the catch-all (holds)",
        lambda: rules.shipments_rules_apply(tenant=tenant, shipment_ids=ids),
    )
    print(f"  {result.unmatched} parcels matched no rule, {result.held} orders held")
    with tenant_context(tenant):
        CarrierRule.objects.filter(priority=100).update(is_active=True)
    result, _ = timed(
        "re-apply with it back (releases)",
        lambda: rules.shipments_rules_apply(tenant=tenant, shipment_ids=ids),
    )
    print(f"  {result.released} orders released")

    # 4. the dry run behind Preview and the import's confirm page
    summary, _ = timed(
        "dry run over the spike's parcels",
        lambda: rules.rules_dry_run(
            tenant=tenant,
            rules=rules.carrier_rules_load(tenant=tenant),
            since=timezone.now() - timedelta(days=30),
        ),
    )
    print(f"  {summary.parcels} parcels, {summary.changed} changed, {summary.unmatched} unmatched")


if __name__ == "__main__":
    main()
