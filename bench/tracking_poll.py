"""Benchmark: one tracking poll of 200 parcels against the label sandbox's trackers, serial
(the old path) next to concurrent (threads per source), in the same run.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tkerp .venv/bin/python bench/tracking_poll.py

A throwaway database (dropped unless --keep-db) with two sellers, each with its label account
connected to the label sandbox and --parcels handed-over USPS parcels whose journeys began 100 h
ago (most delivered, some stalled, failed or returned: the sandbox's own mix). Every sandbox
answer waits --latency seconds (a real service's round trip; the in-process sandbox has none).
Then:

- baseline: the HTTP round trips alone (one tracker read per parcel, serial, nothing stored);
- first poll, serial (`TKERP_TRACKING_POLL_WORKERS=1`, the old path) on one seller and
  concurrent (the setting's default) on the other: creating each tracker, storing every event,
  delivering parcels and orders, marking exceptions;
- second poll of each: the same parcels again (forced): every event comes back, none is stored.

Wall-clock figures are noisy on a shared machine: compare the lines of one run. Never part of
the test run.
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
    parser.add_argument(
        "--latency", type=float, default=0.05, help="Seconds each sandbox answer waits."
    )
    parser.add_argument("--keep-db", action="store_true", help="Leave the bench database.")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    with throwaway_database("tracking", script="bench/tracking_poll.py", keep=args.keep_db) as url:
        run(args, url)


def seed(parcels: int, slug: str):
    from datetime import timedelta
    from decimal import Decimal

    from django.utils import timezone

    from inventory.models import Warehouse
    from logistics.models import Carrier, CarrierService, LabelAccount, Shipment
    from orders.models import Order
    from shops.models import Shop, Tenant

    tenant = Tenant.objects.create(name=f"Bench Tracking {slug}", slug=f"bench-tracking-{slug}")
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

    from django.conf import settings

    from logistics.labels.labelapi import LabelApiSource
    from logistics.models import Shipment, TrackingEvent
    from logistics.tracking_events import tracking_poll
    from sandbox.labelapi import sandbox_label_account_connect
    from sandbox.models import SandboxTrackingScenario
    from sandbox.tracking import scenario_for
    from tkerp.tenancy import all_tenants

    sellers = {}
    for slug in ("serial", "threads"):
        with all_tenants():
            tenant, account, shipped = seed(args.parcels, slug)
            numbers = list(
                Shipment.objects.filter(tenant=tenant).values_list("tracking_number", flat=True)
            )
        remote = sandbox_label_account_connect(
            account=account, rate_per_second=1000, rate_burst=1000
        )
        remote.slow_seconds = args.latency
        remote.save(update_fields=["slow_seconds"])
        account.refresh_from_db()
        # Every journey starts when the parcel left, 100 h ago; each keeps the mix's scenario.
        SandboxTrackingScenario.objects.bulk_create(
            SandboxTrackingScenario(
                tracking_code=n, scenario=scenario_for(n)[0], started_at=shipped
            )
            for n in numbers
        )
        sellers[slug] = (tenant, account, numbers)

    tenant, account, numbers = sellers["serial"]
    source = LabelApiSource(account=account)
    trackers = [source.tracker(tracking_code=n, carrier_code="usps")["id"] for n in numbers]
    started = time.perf_counter()
    for tracker_id in trackers:
        source.tracker(tracking_code="", carrier_code="usps", tracker_id=tracker_id)
    baseline = time.perf_counter() - started
    source.close()
    print(
        f"baseline, tracker reads only: {len(trackers)} in {baseline:.2f} s "
        f"({len(trackers) / baseline:.0f} parcels/s; {args.latency * 1000:.0f} ms a round trip)"
    )

    default_workers = settings.TKERP_TRACKING_POLL_WORKERS
    for label in ("first poll", "second poll"):
        for slug, workers in (("serial", 1), ("threads", default_workers)):
            tenant = sellers[slug][0]
            settings.TKERP_TRACKING_POLL_WORKERS = workers
            before = TrackingEvent._base_manager.filter(tenant=tenant).count()
            cpu = time.process_time()
            started = time.perf_counter()
            result = tracking_poll(tenant=tenant, force=True, limit=args.parcels)
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu
            stored = TrackingEvent._base_manager.filter(tenant=tenant).count() - before
            print(
                f"{label}, {workers} worker{'s' if workers > 1 else ''}: {result.summary()} in "
                f"{elapsed:.2f} s ({result.parcels / elapsed:.0f} parcels/s, {cpu:.2f} s CPU; "
                f"{stored} events stored)"
            )
    settings.TKERP_TRACKING_POLL_WORKERS = default_workers


if __name__ == "__main__":
    main()
