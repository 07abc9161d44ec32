"""Benchmark: the cockpit (the admin home page) and its fragments as a tenant's orders grow.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tkerp .venv/bin/python bench/cockpit.py

Builds a throwaway database (dropped at the end unless --keep-db): one tenant with four shops,
SKUs with stock, and orders in every state spread over 30 days plus a live stream's spike in the
last two hours, holds, cancellation requests, listings and pushes. At each size it times, through
Django's test client as a logged-in seller (median of --runs):

- the cockpit page (every widget and chart), with its query count;
- each widget's and each chart's fragment (what htmx fetches every 15 or 60 s);
- the baseline: the order list (100 rows), the page sellers already open most, in the same run.

The query count must not change with the size; the times are what a person waits for. Never part
of the test run.
"""

from __future__ import annotations

import argparse
import random
import statistics
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
    parser.add_argument(
        "--sizes",
        default="10000,100000",
        help="Comma-separated order counts to measure at (each adds to the previous).",
    )
    parser.add_argument("--runs", type=int, default=7, help="Requests per measurement.")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--keep-db", action="store_true", help="Leave the bench database.")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    with throwaway_database("cockpit", script="bench/cockpit.py", keep=args.keep_db) as url:
        run(args, url)


def world():
    """A tenant with shops, SKUs, stock and listings, and a logged-in member's client."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    from inventory.models import Listing, Sku, StockLevel, Warehouse
    from shops.models import Membership, Role, Shop, Tenant
    from tkerp.tenancy import tenant_context

    tenant = Tenant.objects.create(
        name="Bench Seller", slug="bench-seller", timezone="America/Chicago"
    )
    user = get_user_model().objects.create_user("bench", password="bench-pass-123", is_staff=True)
    with tenant_context(tenant):
        Membership.objects.create(tenant=tenant, user=user, role=Role.OWNER)
        shops = [
            Shop.objects.create(tenant=tenant, name=f"Bench {platform}", platform=platform)
            for platform in ("tiktok", "shopify", "amazon", "manual")
        ]
        warehouse = Warehouse.objects.create(tenant=tenant, code="MAIN", name="Main")
        for number in range(40):
            sku = Sku.objects.create(
                tenant=tenant, code=f"B-{number:03d}", name=f"Product {number}", cost=Decimal(3)
            )
            StockLevel.objects.create(
                tenant=tenant, sku=sku, warehouse=warehouse, on_hand=50, reorder_point=60
            )
            for shop in shops[:3]:
                Listing.objects.create(
                    tenant=tenant, shop=shop, sku=sku, push_failures=number % 13 == 0
                )
    client = Client()
    client.force_login(user)
    return tenant, shops, client


def orders_add(*, tenant, shops, count: int, rng: random.Random, start_id: int) -> None:
    """`count` orders over the last 30 days (a tenth of them in a spike in the last two hours),
    in every state, with holds on the held ones and a few cancellation requests."""
    from django.utils import timezone

    from inventory.models import InventoryPush, Listing
    from orders.models import CancellationRequest, Order, OrderHold, OrderStatus
    from tkerp.tenancy import tenant_context

    now = timezone.now()
    statuses = [
        (OrderStatus.DELIVERED, 50),
        (OrderStatus.IN_TRANSIT, 15),
        (OrderStatus.SHIPPED, 10),
        (OrderStatus.READY, 8),
        (OrderStatus.ALLOCATED, 7),
        (OrderStatus.ON_HOLD, 5),
        (OrderStatus.CANCELLED, 5),
    ]
    names, weights = zip(*statuses, strict=True)
    with tenant_context(tenant):
        batch: list[Order] = []
        for n in range(count):
            spike = n % 10 == 0
            placed = now - (
                timedelta(minutes=rng.uniform(0, 120))
                if spike
                else timedelta(minutes=rng.uniform(120, 30 * 24 * 60))
            )
            status = rng.choices(names, weights)[0]
            shipped = status in (OrderStatus.SHIPPED, OrderStatus.IN_TRANSIT, OrderStatus.DELIVERED)
            batch.append(
                Order(
                    tenant=tenant,
                    shop=shops[n % len(shops)],
                    platform_order_id=f"B{start_id + n:09d}",
                    status=status,
                    placed_at=placed,
                    paid_at=placed,
                    ship_by=placed + timedelta(hours=24),
                    tracking_by=placed + timedelta(hours=48),
                    shipped_at=placed + timedelta(hours=rng.uniform(2, 30)) if shipped else None,
                    tracking_uploaded_at=now if status != OrderStatus.SHIPPED else None,
                    total=Decimal("24.90"),
                )
            )
            if len(batch) == 5000:
                Order.objects.bulk_create(batch)
                batch = []
        Order.objects.bulk_create(batch)
        held = Order.objects.filter(status=OrderStatus.ON_HOLD, holds__isnull=True)
        codes = ["address.po_box", "buyer_note", "stock.short", "phone.invalid", "high_value"]
        OrderHold.objects.bulk_create(
            [
                OrderHold(tenant=tenant, order_id=pk, code=codes[pk % len(codes)])
                for pk in held.values_list("pk", flat=True)
            ],
            batch_size=5000,
        )
        ready = Order.objects.filter(status=OrderStatus.READY).order_by("-pk")[: count // 200]
        CancellationRequest.objects.bulk_create(
            [
                CancellationRequest(
                    tenant=tenant,
                    shop_id=order.shop_id,
                    order=order,
                    platform_order_id=order.platform_order_id,
                    platform_cancel_id=f"C{order.pk}",
                    requested_at=now,
                    answer_by=now + timedelta(hours=rng.uniform(1, 48)),
                )
                for order in ready
            ]
        )
        listings = list(Listing.objects.values_list("pk", flat=True))
        InventoryPush.objects.bulk_create(
            [
                InventoryPush(
                    tenant=tenant,
                    listing_id=rng.choice(listings),
                    quantity=10,
                    result="error" if rng.random() < 0.05 else "ok",
                )
                for _ in range(count // 10)
            ],
            batch_size=5000,
        )


def timed(client, url: str, runs: int) -> tuple[float, int]:
    """Median milliseconds of `runs` GETs of `url`, and the queries one took."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.get(url)  # warm
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    with CaptureQueriesContext(connection) as queries:
        client.get(url)
    return statistics.median(times), len(queries)


def run(args: argparse.Namespace, url: str) -> None:
    django_on(url)

    from tkerp.cockpit import CHARTS, WIDGETS

    rng = random.Random(args.seed)
    tenant, shops, client = world()
    sizes = [int(size) for size in args.sizes.split(",")]
    have = 0
    print(f"cockpit bench: medians of {args.runs} requests; times in ms (queries)")
    for size in sizes:
        started = time.perf_counter()
        orders_add(tenant=tenant, shops=shops, count=size - have, rng=rng, start_id=have)
        have = size
        analyse()
        print(f"\n{size:,} orders (built in {time.perf_counter() - started:.0f} s)")
        baseline, baseline_q = timed(client, "/admin/orders/order/", args.runs)
        page, page_q = timed(client, "/admin/", args.runs)
        print(f"  baseline: order list, 100 rows      {baseline:8.1f} ms ({baseline_q} queries)")
        print(f"  cockpit page, everything            {page:8.1f} ms ({page_q} queries)")
        for key in sorted(WIDGETS):
            ms, q = timed(client, f"/admin/cockpit/widgets/{key}/", args.runs)
            print(f"    widget {key:<28} {ms:8.1f} ms ({q} queries)")
        for key in sorted(CHARTS):
            ms, q = timed(client, f"/admin/cockpit/charts/{key}/", args.runs)
            print(f"    chart  {key:<28} {ms:8.1f} ms ({q} queries)")


if __name__ == "__main__":
    main()
