"""Benchmark: buying 500 parcels' labels from the label sandbox in parallel.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tkerp .venv/bin/python bench/label_buying.py

A throwaway database (dropped unless --keep-db) with one seller, its label account connected to
the label sandbox answering each purchase in --latency-ms at --rate requests a second (the
account's own pace too), and --parcels pending USPS parcels. Then `shipments_label_buy` over all
of them (threads bounded by the rate limit), and once more (a re-run: nothing is bought, the
sandbox's purchase counter proves it). Labels are written to a temporary MEDIA_ROOT.

Never part of the test run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import django_on, throwaway_database  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parcels", type=int, default=500)
    parser.add_argument("--latency-ms", type=int, default=200)
    parser.add_argument("--rate", type=float, default=100.0, help="Requests a second.")
    parser.add_argument("--workers", type=int, default=None, help="Cap on threads.")
    parser.add_argument("--keep-db", action="store_true", help="Leave the bench database.")
    parser.add_argument("--profile", action="store_true", help="cProfile the first run.")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    with throwaway_database("labels", script="bench/label_buying.py", keep=args.keep_db) as url:
        run(args, url)


def seed(parcels: int):
    from decimal import Decimal

    from inventory.models import Sku, Warehouse
    from logistics.models import Carrier, CarrierService, LabelAccount, Shipment, ShipmentLine
    from orders.models import Order, OrderLine
    from shops.models import Shop, Tenant

    tenant = Tenant.objects.create(name="Bench Labels", slug="bench-labels")
    shop = Shop(tenant=tenant, name="Bench Shop", platform="tiktok")
    shop.save()
    carrier = Carrier(tenant=tenant, code="usps", name="USPS")
    carrier.save()
    service = CarrierService(tenant=tenant, carrier=carrier, code="ground_advantage", name="GA")
    service.save()
    warehouse = Warehouse(
        tenant=tenant,
        code="MAIN",
        name="Main",
        address_line1="500 Commerce Way",
        city="Reno",
        state="NV",
        postal_code="89502",
    )
    warehouse.save()
    sku = Sku(tenant=tenant, code="SKU-1", name="Lip tint", weight_grams=120, cost=Decimal("2"))
    sku.save()
    orders = Order.objects.bulk_create(
        Order(
            tenant=tenant,
            shop=shop,
            platform_order_id=f"5760{n:012d}",
            recipient_name=f"Buyer {n}",
            address_line1=f"{100 + n} Market St",
            city="San Francisco",
            state="CA",
            postal_code="94105",
            total=Decimal("19.99"),
        )
        for n in range(parcels)
    )
    lines = OrderLine.objects.bulk_create(
        OrderLine(tenant=tenant, order=o, platform_line_id=f"L{o.pk}", sku=sku, quantity=1)
        for o in orders
    )
    shipments = Shipment.objects.bulk_create(
        Shipment(
            tenant=tenant,
            order=o,
            reference=f"BENCH-{o.pk}",
            warehouse=warehouse,
            service=service,
            weight_grams=180,
        )
        for o in orders
    )
    ShipmentLine.objects.bulk_create(
        ShipmentLine(tenant=tenant, shipment=s, order_line=line)
        for s, line in zip(shipments, lines, strict=True)
    )
    account = LabelAccount(tenant=tenant, name="EasyPost", carriers="usps")
    account.save()
    return tenant, account, [s.pk for s in shipments]


def run(args: argparse.Namespace, url: str) -> None:
    import os

    # The sandbox is served in-process over plain HTTP: no redirect to HTTPS here.
    os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
    django_on(url)
    from django.conf import settings

    settings.MEDIA_ROOT = tempfile.mkdtemp(prefix="tkerp-bench-labels-")

    from logistics.labels.store import shipments_label_buy
    from logistics.models import LabelAccount
    from sandbox.labelapi import sandbox_label_account_connect
    from sandbox.models import SandboxLabelAccount
    from tkerp.tenancy import all_tenants

    started = time.perf_counter()
    with all_tenants():
        tenant, account, ids = seed(args.parcels)
    LabelAccount._base_manager.filter(pk=account.pk).update(requests_per_second=args.rate)
    account.refresh_from_db()
    remote = sandbox_label_account_connect(
        account=account,
        rate_per_second=args.rate,
        rate_burst=max(1, int(args.rate)),
        purchase_latency_ms=args.latency_ms,
    )
    print(f"seeded {len(ids)} parcels in {time.perf_counter() - started:.1f} s")

    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    started = time.perf_counter()
    results = shipments_label_buy(tenant=tenant, shipment_ids=ids, max_workers=args.workers)
    first = time.perf_counter() - started
    if profiler is not None:
        import pstats

        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
    failed = [r for r in results if not r.ok]
    bought = SandboxLabelAccount.objects.get(pk=remote.pk).purchases
    print(
        f"first run: {len(results) - len(failed)} labelled, {len(failed)} failed, "
        f"{bought} purchases in {first:.2f} s ({len(results) / first:.0f} labels/s; sandbox "
        f"{args.latency_ms} ms a purchase at {args.rate:g} req/s)"
    )
    for result in failed[:5]:
        print(f"  {result.shipment_id}: {result.reason}")

    started = time.perf_counter()
    again = shipments_label_buy(tenant=tenant, shipment_ids=ids, max_workers=args.workers)
    rerun = time.perf_counter() - started
    bought_after = SandboxLabelAccount.objects.get(pk=remote.pk).purchases
    print(
        f"re-run: {sum(r.ok for r in again)} already labelled, "
        f"{bought_after - bought} new purchases, {rerun:.2f} s"
    )


if __name__ == "__main__":
    main()
