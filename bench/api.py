"""Benchmark: the provider API's parcel list under gunicorn, against a bare DRF list.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tkerp .venv/bin/python bench/api.py

Builds a throwaway database (dropped at the end unless --keep-db) with one seller, a 3PL with a
warehouse, `--parcels` parcels routed to it (two lines each, with the supplier's item codes) and
another provider's parcels next to them; makes a key; starts gunicorn on 127.0.0.1 with the
project plus a bare DRF list (bench/api_urls.py) and then, in the same run, at `--connections`
concurrent connections for `--seconds` each:

1. bare: `GET /bench/bare-parcels/`, a ModelSerializer over the same 50 rows, no key, no scope;
2. api: `GET /api/v1/parcels/?limit=50`, authenticated, scoped, throttled, with lines, item
   codes, recipient and deadlines.

Prints requests/s, p50 and p99 of each and the API's share of the bare figure (target: at least
60 %, p99 at most 100 ms). The number of queries per page is held constant by a test
(tests/logistics/test_api_parcels.py), not here. Never part of the test run.
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

from harness import django_on, throwaway_database  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parcels", type=int, default=500)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=(os.cpu_count() or 2) * 2)
    parser.add_argument("--threads", type=int, default=4, help="gthread threads per worker")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--keep-db", action="store_true", help="Leave the bench database.")
    return parser.parse_args()


def seed(parcels: int) -> str:
    """The seller, its providers and parcels; returns the provider's key."""
    from decimal import Decimal

    from django.utils import timezone

    from inventory.models import Sku, Supplier, SupplierItem, Warehouse, WarehouseKind
    from logistics.models import (
        ApiKeyScope,
        Carrier,
        CarrierService,
        Provider,
        Shipment,
        ShipmentLine,
        ShipmentStatus,
    )
    from logistics.providers import provider_key_create
    from orders.models import Order, OrderLine, OrderStatus
    from shops.models import Shop, Tenant
    from tkerp.tenancy import tenant_context

    tenant = Tenant.objects.create(name="Bench Seller", slug="bench-seller")
    now = timezone.now()
    with tenant_context(tenant):
        shop = Shop.objects.create(tenant=tenant, name="Bench TikTok", platform="tiktok")
        carrier = Carrier.objects.create(tenant=tenant, code="usps", name="USPS")
        service = CarrierService.objects.create(
            tenant=tenant, carrier=carrier, code="ground", name="Ground Advantage"
        )
        supplier = Supplier.objects.create(tenant=tenant, code="YIWU", name="Yiwu factory")
        provider = Provider.objects.create(
            tenant=tenant, code="3PL", name="Bench 3PL", kind="3pl", supplier=supplier
        )
        other = Provider.objects.create(tenant=tenant, code="OTHER", name="Other", kind="3pl")
        warehouse = Warehouse.objects.create(
            tenant=tenant, code="3PL-NJ", name="NJ", kind=WarehouseKind.THREE_PL, provider=provider
        )
        other_wh = Warehouse.objects.create(
            tenant=tenant, code="OTHER-CA", name="CA", kind=WarehouseKind.THREE_PL, provider=other
        )
        skus = Sku.objects.bulk_create(
            Sku(tenant=tenant, code=f"SKU-{n:03d}", name=f"Product {n}", cost=Decimal("3.20"))
            for n in range(40)
        )
        SupplierItem.objects.bulk_create(
            SupplierItem(tenant=tenant, supplier=supplier, sku=sku, supplier_item_code=f"Y-{n}")
            for n, sku in enumerate(skus)
        )
        orders = Order.objects.bulk_create(
            Order(
                tenant=tenant,
                shop=shop,
                platform_order_id=f"5766{n:012d}",
                status=OrderStatus.READY,
                recipient_name=f"Buyer {n}",
                recipient_phone="+14155550123",
                address_line1=f"{n} Market St",
                city="San Francisco",
                state="CA",
                postal_code="94105",
                paid_at=now,
                placed_at=now,
                ship_by=now + timezone.timedelta(hours=24),
                total=Decimal("24.98"),
            )
            for n in range(parcels * 2)
        )
        lines = OrderLine.objects.bulk_create(
            OrderLine(
                tenant=tenant,
                order=order,
                platform_line_id=f"{order.platform_order_id}-{k}",
                sku=skus[(n + k) % len(skus)],
                seller_sku=skus[(n + k) % len(skus)].code,
                product_name=skus[(n + k) % len(skus)].name,
                quantity=1 + k,
            )
            for n, order in enumerate(orders)
            for k in range(2)
        )
        shipments = Shipment.objects.bulk_create(
            Shipment(
                tenant=tenant,
                order=order,
                reference=f"TK{order.pk}",
                warehouse=warehouse if n % 2 == 0 else other_wh,
                service=service,
                status=ShipmentStatus.SENT_TO_PROVIDER,
                dispatched_at=now,
            )
            for n, order in enumerate(orders)
        )
        by_order: dict[int, list] = {}
        for line in lines:
            by_order.setdefault(line.order_id, []).append(line)
        ShipmentLine.objects.bulk_create(
            ShipmentLine(tenant=tenant, shipment=shipment, order_line=line, quantity=line.quantity)
            for shipment in shipments
            for line in by_order[shipment.order_id]
        )
        # The bare list's 50 rows are the API's first page: the provider's oldest changes.
        Shipment.objects.filter(warehouse=other_wh).update(updated_at=now + timezone.timedelta(1))
    _, key = provider_key_create(
        provider=provider, name="bench", scope=ApiKeyScope.READ, expires_days=None
    )
    return key


def gunicorn(args, url: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "DJANGO_SETTINGS_MODULE": "api_settings",
        "PYTHONPATH": os.pathsep.join([str(BENCH), str(ROOT)]),
        "TKERP_API_THROTTLE_RATE": "100000000/min",
        "ALLOWED_HOSTS": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "tkerp.wsgi:application",
            "--bind",
            f"127.0.0.1:{args.port}",
            "--workers",
            str(args.workers),
            "--worker-class",
            "gthread",
            "--threads",
            str(args.threads),
            "--no-control-socket",
            "--log-level",
            "warning",
        ],
        env=env,
        cwd=str(ROOT),
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", args.port, timeout=20)
            connection.request("GET", "/bench/bare-parcels/")
            connection.getresponse().read()
            return process
        except OSError:
            time.sleep(0.2)
    process.terminate()
    sys.exit("gunicorn did not start")


def load(args, path: str, headers: dict[str, str]) -> dict:
    """`args.connections` keep-alive connections hammering `path` for `args.seconds`."""
    latencies: list[float] = []
    errors = []
    lock = threading.Lock()
    stop = time.monotonic() + args.seconds

    def worker():
        connection = http.client.HTTPConnection("127.0.0.1", args.port, timeout=30)
        mine = []
        while time.monotonic() < stop:
            started = time.perf_counter()
            try:
                connection.request("GET", path, headers=headers)
                response = connection.getresponse()
                body = response.read()
                if response.status != 200 or not body:
                    errors.append(response.status)
                if response.getheader("Connection", "").lower() == "close":
                    connection.close()
            except (OSError, http.client.HTTPException) as exc:
                errors.append(type(exc).__name__)
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", args.port, timeout=30)
                continue
            mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(args.connections)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50": statistics.median(latencies) * 1000 if latencies else float("nan"),
        "p99": latencies[int(len(latencies) * 0.99) - 1] * 1000 if latencies else float("nan"),
        "errors": len(errors),
    }


def check_same_rows(args, key: str) -> None:
    import json

    def get(path, headers):
        connection = http.client.HTTPConnection("127.0.0.1", args.port, timeout=30)
        connection.request("GET", path, headers=headers)
        return json.loads(connection.getresponse().read())

    api = get("/api/v1/parcels/?limit=50", {"Authorization": f"Api-Key {key}"})["results"]
    bare = get("/bench/bare-parcels/", {})
    assert [p["id"] for p in api] == [p["id"] for p in bare], "the two lists differ"
    assert len(api) == 50


def main() -> None:
    args = parse_args()
    with throwaway_database("api", script="bench/api.py", keep=args.keep_db) as url:
        django_on(url)
        key = seed(args.parcels)
        from django.db import connections

        connections.close_all()
        server = gunicorn(args, url)
        try:
            check_same_rows(args, key)
            print(
                f"{args.parcels} parcels of the provider (and as many of another), page of 50, "
                f"{args.connections} connections, gunicorn {args.workers} workers x "
                f"{args.threads} threads, {args.seconds:.0f} s each"
            )
            load(args, "/bench/bare-parcels/", {})  # warm both up
            load(args, "/api/v1/parcels/?limit=50", {"Authorization": f"Api-Key {key}"})
            bare = load(args, "/bench/bare-parcels/", {})
            api = load(args, "/api/v1/parcels/?limit=50", {"Authorization": f"Api-Key {key}"})
        finally:
            server.terminate()
            server.wait(timeout=30)
        for name, figures in (("bare DRF list", bare), ("provider API", api)):
            print(
                f"  {name:14} {figures['rps']:7.1f} req/s  p50 {figures['p50']:6.1f} ms  "
                f"p99 {figures['p99']:6.1f} ms  ({figures['requests']} requests, "
                f"{figures['errors']} errors)"
            )
        share = api["rps"] / bare["rps"] if bare["rps"] else 0.0
        print(
            f"  API / bare: {share:.0%} (target >= 60 %)   API p99: {api['p99']:.1f} ms "
            f"(target <= 100 ms)   -> {'OK' if share >= 0.6 and api['p99'] <= 100 else 'MISS'}"
        )


if __name__ == "__main__":
    main()
