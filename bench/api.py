"""Benchmark: the provider API's parcel list under gunicorn, against a bare DRF list.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tkerp .venv/bin/python bench/api.py
    ... bench/api.py --profile     # where one request's time goes (test client, no server)

Builds a throwaway database (dropped at the end unless --keep-db) with one seller, a 3PL with a
warehouse, `--parcels` parcels routed to it (two lines each, with the supplier's item codes) and
another provider's parcels next to them, analysed as autovacuum would; makes a key; starts
gunicorn on 127.0.0.1 (DEBUG off, as in production) with the project plus a bare DRF list
(bench/api_urls.py) and then, in the same run, loads each with the same generator
(bench/loadgen.py: wrk when installed, `apt-get install wrk`) at `--connections` keep-alive
connections for `--seconds`, `--rounds` times alternately:

1. bare: `GET /bench/bare-parcels/`, a ModelSerializer over the same 50 rows, no key, no scope;
2. api: `GET /api/v1/parcels/?limit=50`, authenticated, scoped, throttled, with lines, item
   codes, recipient and deadlines.

Prints the machine, PostgreSQL's version, the server's and the generator's set-up, then
requests/s and p50/p95/p99 of each and the API's share of the bare figure (target: at least
60 %, p99 at most 100 ms). The number of queries per page is held constant by a test
(tests/logistics/test_api_parcels.py); --profile prints it too. Never part of the test run.
"""

from __future__ import annotations

import argparse
import http.client
import os
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

from harness import analyse, django_on, machine, throwaway_database  # noqa: E402
from loadgen import generator, load  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parcels", type=int, default=500)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    # The deployment's setting (README, "Deployment on more than one machine"): two workers per
    # core, one thread each, keep-alive (gthread). Measured here, idle, API p99 at 16
    # connections: 4 x 1 thread 72-86 ms; 3 x 2 threads 91-126 ms; 2 x 8 threads 206-226 ms;
    # 1 x 16 threads 149-184 ms (threads of one process queue on its interpreter lock, and a
    # worker with two threads takes more keep-alive connections than it can serve evenly).
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 2))
    parser.add_argument("--worker-class", default="gthread", choices=["sync", "gthread"])
    parser.add_argument("--threads", type=int, default=1, help="gthread threads per worker")
    parser.add_argument(
        "--generator", default="wrk", choices=["wrk", "python"], help="python: without wrk"
    )
    parser.add_argument(
        "--config",
        default=str(ROOT / "gunicorn.conf.py"),
        help="gunicorn's settings file (the deployment's; an empty file measures without its "
        "gc.freeze hook)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="bare then API, this many times")
    parser.add_argument("--profile", action="store_true", help="Profile requests in-process.")
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
        # As in production: DEBUG off whatever the shell says (DEBUG keeps every query).
        "DEBUG": "false",
        "SECURE_SSL_REDIRECT": "false",
        # Never reached, and counted over one second: the throttle's history (one entry per
        # request in its window) stays as short as production's 1200/min gives it.
        "TKERP_API_THROTTLE_RATE": "100000/s",
        "ALLOWED_HOSTS": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
    }
    command = [str(Path(sys.executable).parent / "gunicorn"), "tkerp.wsgi:application"]
    command += ["--config", args.config]
    command += ["--bind", f"127.0.0.1:{args.port}", "--workers", str(args.workers)]
    command += ["--worker-class", args.worker_class, "--no-control-socket"]
    if args.worker_class == "gthread":
        command += ["--threads", str(args.threads)]
    command += ["--log-level", "warning"]
    process = subprocess.Popen(command, env=env, cwd=str(ROOT))
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


def cpu_seconds(pids) -> dict[int, float]:
    """user + system CPU seconds of each live process of `pids` (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    seconds = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seconds[pid] = (int(fields[11]) + int(fields[12])) / tick
    return seconds


def server_cpu(master: int) -> dict[str, dict[int, float]]:
    """CPU seconds so far of gunicorn's workers and of the PostgreSQL backends serving them."""
    from django.db import connection

    try:
        workers = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    except OSError:
        workers = []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
        backends = [pid for (pid,) in cursor.fetchall()]
    return {
        "gunicorn": cpu_seconds([master, *map(int, workers)]),
        "PostgreSQL": cpu_seconds(backends),
    }


def cpu_per_request(before: dict, after: dict, requests: int) -> dict[str, float]:
    """Milliseconds of CPU per request of each side between two `server_cpu` readings (a
    process that started in between counts from zero)."""
    return {
        side: sum(now - before[side].get(pid, 0.0) for pid, now in after[side].items())
        / max(requests, 1)
        * 1000
        for side in after
    }


def postgres_version() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        return f"PostgreSQL {cursor.fetchone()[0]}"


def profile(key: str, requests: int = 200) -> None:
    """Where one request's time goes, in-process (Django's test client, no server): CPU time
    and queries per request of each list, then cProfile's heaviest functions of the API's (in
    CPU time, so that waiting on PostgreSQL or a busy machine does not count)."""
    import cProfile
    import logging
    import pstats

    from django.db import connection
    from django.test import Client

    logging.disable(logging.WARNING)
    client = Client()
    lists = {
        "bare DRF list": ("/bench/bare-parcels/", {}),
        "provider API": ("/api/v1/parcels/?limit=50", {"HTTP_AUTHORIZATION": f"Api-Key {key}"}),
    }
    for name, (path, headers) in lists.items():
        for _ in range(20):
            assert client.get(path, **headers).status_code == 200
        queries = []

        def count(execute, sql, params, many, context, queries=queries):
            queries.append(sql)
            return execute(sql, params, many, context)

        with connection.execute_wrapper(count):
            client.get(path, **headers)
        started = time.process_time()
        for _ in range(requests):
            client.get(path, **headers)
        cpu = (time.process_time() - started) / requests * 1000
        print(f"  {name:14} {cpu:6.2f} ms CPU per request (this process), {len(queries)} queries")
    path, headers = lists["provider API"]
    profiler = cProfile.Profile(time.process_time)  # CPU time: the machine may be busy
    profiler.enable()
    for _ in range(requests):
        client.get(path, **headers)
    profiler.disable()
    pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative").print_stats(40)


def main() -> None:
    args = parse_args()
    if not args.profile:
        os.environ["DEBUG"] = "false"  # the seeding process too: DEBUG keeps every query
    os.environ["DJANGO_SETTINGS_MODULE"] = "api_settings"
    os.environ["TKERP_API_THROTTLE_RATE"] = "100000/s"
    with throwaway_database("api", script="bench/api.py", keep=args.keep_db) as url:
        django_on(url)
        key = seed(args.parcels)
        analyse()
        print(f"machine: {machine()}; {postgres_version()}")
        if args.profile:
            profile(key)
            return
        from django.db import connections

        connections.close_all()
        server = gunicorn(args, url)
        base = f"http://127.0.0.1:{args.port}"
        api_headers = {"Authorization": f"Api-Key {key}"}
        rounds = []
        try:
            check_same_rows(args, key)
            threads = f" x {args.threads} threads" if args.worker_class == "gthread" else ""
            print(
                f"{args.parcels} parcels of the provider (and as many of another), page of 50; "
                f"gunicorn {args.workers} {args.worker_class} workers{threads} "
                f"({Path(args.config).name}); load: "
                f"{generator(args.generator)}, {args.connections} connections, "
                f"{args.seconds:.0f} s each"
            )

            def measured(url: str, headers: dict[str, str], seconds: float) -> dict:
                before = server_cpu(server.pid)
                figures = load(
                    url,
                    headers=headers,
                    connections=args.connections,
                    seconds=seconds,
                    prefer=args.generator,
                )
                cpu = cpu_per_request(before, server_cpu(server.pid), figures["requests"])
                return {**figures, "cpu": cpu}

            def both(seconds: float) -> tuple[dict, dict]:
                return (
                    measured(f"{base}/bench/bare-parcels/", {}, seconds),
                    measured(f"{base}/api/v1/parcels/?limit=50", api_headers, seconds),
                )

            both(2)  # warm both up
            rounds = [both(args.seconds) for _ in range(args.rounds)]
        finally:
            server.terminate()
            server.wait(timeout=30)
        for number, (bare, api) in enumerate(rounds, 1):
            print(f" round {number}:")
            for name, figures in (("bare DRF list", bare), ("provider API", api)):
                print(
                    f"  {name:14} {figures['rps']:7.1f} req/s  p50 {figures['p50']:6.1f} ms  "
                    f"p95 {figures['p95']:6.1f} ms  p99 {figures['p99']:6.1f} ms  "
                    f"({figures['requests']} requests, {figures['errors']} errors)"
                )
                cpu = figures["cpu"]
                total = cpu["gunicorn"] + cpu["PostgreSQL"] + figures["generator_cpu"]
                ceiling = (os.cpu_count() or 1) * 1000 / total if total else float("nan")
                print(
                    f"  {'':14} CPU per request: gunicorn {cpu['gunicorn']:.1f} ms, PostgreSQL "
                    f"{cpu['PostgreSQL']:.1f} ms, load generator {figures['generator_cpu']:.1f} "
                    f"ms: at most {ceiling:.0f} req/s on these cores were they idle, a mean "
                    f"latency of {args.connections / ceiling * 1000:.0f} ms at "
                    f"{args.connections} connections"
                )
            share = api["rps"] / bare["rps"] if bare["rps"] else 0.0
            met = share >= 0.6 and api["p99"] <= 100 and not api["errors"]
            print(
                f"  API / bare: {share:.0%} (target >= 60 %)   API p99: {api['p99']:.1f} ms "
                f"(target <= 100 ms)   -> {'OK' if met else 'MISS'}"
            )
        print(f"machine after: {machine()}")


if __name__ == "__main__":
    main()
