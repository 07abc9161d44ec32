"""Benchmark: one tracking poll of 200 parcels against the label sandbox's trackers.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tkerp .venv/bin/python bench/tracking_poll.py

A throwaway database (dropped unless --keep-db) with one seller, its label account connected to
the label sandbox, and --parcels handed-over USPS parcels whose journeys began 100 h ago (most
delivered, some stalled, failed or returned: the sandbox's own mix). Then, in the same run:

- baseline: the HTTP round trips alone (one tracker read per parcel, nothing stored);
- first poll: `tracking_poll` creating each tracker, storing every event, delivering parcels and
  orders, marking exceptions;
- second poll: the same parcels again (forced): every event comes back, none is stored.

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

from harness import django_on, throwaway_database  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parcels", type=int, default=200)
    parser.add_argument("--keep-db", action="store_true", help="Leave the bench database.")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    with throwaway_database("tracking", script="bench/tracking_poll.py", keep=args.keep_db) as url:
        run(args, url)


def seed(parcels: int):
    from datetime import timedelta
    from decimal import Decimal

    from django.utils import timezone

    from inventory.models import Warehouse
    from logistics.models import Carrier, CarrierService, LabelAccount, Shipment
    from orders.models import Order
    from shops.models import Shop, Tenant

    tenant = Tenant.objects.create(name="Bench Tracking", slug="bench-tracking")
    shop = Shop(tenant=tenant, name="Bench Shop", platform="shopify")
    shop.save()
    carrier = Carrier(tenant=tenant, code="usps", name="USPS")
    carrier.save()
    service = CarrierService(tenant=tenant, carrier=carrier, code="ground_advantage", name="GA")
    service.save()
    warehouse = Warehouse(tenant=tenant, code="MAIN", name="Main", postal_code="89502")
    warehouse.save()
    shipped = timezone.now() - timedelta(hours=100)
    orders = Order.objects.bulk_create(
        Order(
            tenant=tenant,
            shop=shop,
            platform_order_id=f"#{1000 + n}",
            status="shipped",
            shipped_at=shipped,
            total=Decimal("19.99"),
        )
        for n in range(parcels)
    )
    Shipment.objects.bulk_create(
        Shipment(
            tenant=tenant,
            order=o,
            reference=f"BENCH-{o.pk}",
            warehouse=warehouse,
            service=service,
            status="shipped",
            tracking_number=f"9400111899223{o.pk:09d}",
            labelled_at=shipped,
            shipped_at=shipped,
        )
        for o in orders
    )
    account = LabelAccount(
        tenant=tenant, name="EasyPost", carriers="usps", requests_per_second=1000
    )
    account.save()
    return tenant, account, shipped


def run(args: argparse.Namespace, url: str) -> None:
    import os

    os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
    django_on(url)

    from logistics.labels.labelapi import LabelApiSource
    from logistics.models import Shipment, TrackingEvent
    from logistics.tracking_events import tracking_poll
    from sandbox.labelapi import sandbox_label_account_connect
    from sandbox.models import SandboxTrackingScenario
    from tkerp.tenancy import all_tenants

    with all_tenants():
        tenant, account, shipped = seed(args.parcels)
        numbers = list(
            Shipment.objects.filter(tenant=tenant).values_list("tracking_number", flat=True)
        )
    sandbox_label_account_connect(account=account, rate_per_second=1000, rate_burst=1000)
    account.refresh_from_db()
    # Every journey starts when the parcel left, 100 h ago; each keeps the mix's scenario.
    from sandbox.tracking import scenario_for

    SandboxTrackingScenario.objects.bulk_create(
        SandboxTrackingScenario(tracking_code=n, scenario=scenario_for(n)[0], started_at=shipped)
        for n in numbers
    )

    source = LabelApiSource(account=account)
    trackers = [source.tracker(tracking_code=n, carrier_code="usps")["id"] for n in numbers]
    started = time.perf_counter()
    for tracker_id in trackers:
        source.tracker(tracking_code="", carrier_code="usps", tracker_id=tracker_id)
    baseline = time.perf_counter() - started
    source.close()
    print(
        f"baseline, tracker reads only: {len(trackers)} in {baseline:.2f} s "
        f"({len(trackers) / baseline:.0f} parcels/s)"
    )

    started = time.perf_counter()
    first = tracking_poll(tenant=tenant, force=True, limit=args.parcels)
    elapsed = time.perf_counter() - started
    stored = TrackingEvent._base_manager.filter(tenant=tenant).count()
    print(
        f"first poll: {first.summary()} in {elapsed:.2f} s "
        f"({first.parcels / elapsed:.0f} parcels/s; {stored} events stored)"
    )

    started = time.perf_counter()
    again = tracking_poll(tenant=tenant, force=True, limit=args.parcels)
    elapsed = time.perf_counter() - started
    stored_after = TrackingEvent._base_manager.filter(tenant=tenant).count()
    print(
        f"second poll: {again.parcels} parcels, {stored_after - stored} new events stored, "
        f"{elapsed:.2f} s ({max(again.parcels, 1) / elapsed:.0f} parcels/s)"
    )


if __name__ == "__main__":
    main()
