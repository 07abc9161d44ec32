"""Benchmark: what row-level security costs, with and without it in the same run.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tkerp .venv/bin/python bench/rls.py

Builds a throwaway database (dropped at the end unless --keep-db) the way `migrate` does, so
the application role and the policies of `tkerp.rls` are installed, with a seller of `--parcels`
3PL parcels (bench/api.py's seed, orders with two lines each) and a second seller with as many
orders (rows the policies must skip). Then, in rounds with row-level security off and on (the
order swapped each round; off: `ALTER TABLE ... DISABLE ROW LEVEL SECURITY` on every tenant
table and no scope sent to the server, i.e. the scoped managers alone; on: what production
runs), it times:

1. the order list: the admin changelist `/admin/orders/order/`, a member's first page;
2. the API list: `GET /api/v1/parcels/?limit=50` with the provider's key;
3. the sync: one TikTok `shop_sync` pass of `--orders` spike orders into a fresh shop.

Requests go through Django's test client in this process (no HTTP server: the cost measured is
Django's and PostgreSQL's). Prints the median wall time of each (the server's work is part of
it) and this process's CPU time, off vs on, and the slowdown (target: under 10 %).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

from harness import admin_sql, django_on, throwaway_database  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parcels", type=int, default=1000)
    parser.add_argument("--orders", type=int, default=300, help="spike orders per sync pass")
    parser.add_argument("--runs", type=int, default=30, help="requests per list and round")
    parser.add_argument("--rounds", type=int, default=3, help="off/on rounds, alternating")
    parser.add_argument("--keep-db", action="store_true", help="Leave the bench database.")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    with throwaway_database("rls", script="bench/rls.py", keep=args.keep_db) as url:
        run(args, url)


def rls_switch(url: str, *, on: bool) -> None:
    """Row-level security on or off for every tenant table (as the owner), and the scope sent
    to the server or not."""
    from django.db import connection

    from tkerp import rls

    verb = "ENABLE" if on else "DISABLE"
    admin_sql(
        url,
        "; ".join(
            f'ALTER TABLE "{table}" {verb} ROW LEVEL SECURITY' for table in rls.tenant_tables()
        ),
    )
    connection.close()
    wrapper = connection._send_scope
    if on and wrapper not in connection.execute_wrappers:
        connection.execute_wrappers.append(wrapper)
    if not on and wrapper in connection.execute_wrappers:
        connection.execute_wrappers.remove(wrapper)


def world(args):
    """The API seller (bench/api.py's seed), its member's client, a second seller's orders."""
    from api import seed
    from django.contrib.auth import get_user_model
    from django.test import Client

    from orders.models import Order
    from shops.models import Membership, Role, Shop, Tenant
    from tkerp.tenancy import tenant_context

    key = seed(args.parcels)
    tenant = Tenant.objects.get(slug="bench-seller")
    Tenant.objects.filter(pk=tenant.pk).update(slug="bench-api")
    user = get_user_model().objects.create_user("bench", password="bench-pass-123", is_staff=True)
    other = Tenant.objects.create(name="Other Seller", slug="other-seller")
    with tenant_context(tenant):
        Membership.objects.create(tenant=tenant, user=user, role=Role.OWNER)
        template = list(Order.objects.all()[: args.parcels * 2])
    with tenant_context(other):
        shop = Shop.objects.create(tenant=other, name="Other TikTok", platform="tiktok")
        for order in template:
            order.pk = None
            order.tenant = other
            order.shop = shop
        Order.objects.bulk_create(template)
    client = Client()
    client.force_login(user)
    return client, key


def timed_gets(client, url: str, runs: int, **headers) -> tuple[list[float], float]:
    """Wall milliseconds of each of `runs` GETs, and the CPU seconds they took here."""
    client.get(url, **headers)  # warm: connection, scope, caches
    times = []
    cpu = time.process_time()
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(url, **headers)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    return times, time.process_time() - cpu


def run(args: argparse.Namespace, url: str) -> None:
    django_on(url)
    from django.db import connection

    from tkerp import rls

    assert rls.rls_problems() == [], rls.rls_problems()
    client, key = world(args)
    # Fresh tables have no statistics yet; production's autovacuum keeps them (without them the
    # planner guesses one row per table, with or without the policies' filters).
    admin_sql(url, "ANALYZE")
    auth = {"HTTP_AUTHORIZATION": f"Api-Key {key}"}
    results = {name: {False: [], True: []} for name in ("order list", "API list", "sync")}
    cpu = {name: {False: 0.0, True: 0.0} for name in results}
    sync_orders = {False: 0, True: 0}
    number = 0
    sync_once(orders=args.orders, number=number)  # warm: imports, sandbox, first connections
    for round_ in range(args.rounds):
        # Off first in even rounds, on first in odd ones: neither profits from going second.
        for on in (False, True) if round_ % 2 == 0 else (True, False):
            rls_switch(url, on=on)
            times, seconds = timed_gets(client, "/admin/orders/order/", args.runs)
            results["order list"][on] += times
            cpu["order list"][on] += seconds
            times, seconds = timed_gets(client, "/api/v1/parcels/?limit=50", args.runs, **auth)
            results["API list"][on] += times
            cpu["API list"][on] += seconds
            number += 1
            wall, seconds, stored = sync_once(orders=args.orders, number=number)
            results["sync"][on].append(wall * 1000)
            cpu["sync"][on] += seconds
            sync_orders[on] += stored
    rls_switch(url, on=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user")
        role = cursor.fetchone()[0]
    print(
        f"PostgreSQL {connection.pg_version // 10000}, database {connection.settings_dict['NAME']},"
        f" role {role}; {args.rounds} rounds (off/on swapped each), {args.runs} requests a list"
    )
    print(f"{'':12} {'off ms':>9} {'on ms':>9} {'slower':>8} {'CPU off s':>10} {'CPU on s':>9}")
    for name, by in results.items():
        off, on = statistics.median(by[False]), statistics.median(by[True])
        print(
            f"{name:12} {off:9.1f} {on:9.1f} {(on / off - 1) * 100:7.1f}% "
            f"{cpu[name][False]:10.2f} {cpu[name][True]:9.2f}"
        )
    print(
        f"sync: {args.orders} spike orders per pass, {sync_orders[False]} + {sync_orders[True]} "
        "stored (off + on); medians of the passes (target: under 10 % slower)"
    )


def sync_once(*, orders: int, number: int) -> tuple[float, float, int]:
    """A fresh seller with a TikTok shop on its sandbox, a spike landed there, one sync pass
    timed: (wall seconds, CPU seconds, orders stored)."""
    from inventory.models import Listing, Sku, StockLevel, Warehouse
    from orders.models import Order
    from sandbox.actions import sandbox_spike
    from sandbox.connect import sandbox_connect
    from shops.models import Shop, Tenant
    from shops.platforms import connector_for
    from shops.platforms.http import sandbox_transport
    from shops.sync import shop_sync
    from tkerp.tenancy import tenant_context

    tenant = Tenant.objects.create(name=f"Sync Seller {number}", slug=f"sync-{number}")
    with tenant_context(tenant):
        shop = Shop.objects.create(tenant=tenant, name=f"Sync {number}", platform="tiktok")
        warehouse = Warehouse.objects.create(tenant=tenant, code="MAIN", name="Main")
        for n in range(1, 41):
            sku = Sku.objects.create(tenant=tenant, code=f"BENCH-{n:03d}", name=f"Product {n}")
            Listing.objects.create(tenant=tenant, shop=shop, sku=sku)
            StockLevel.objects.create(tenant=tenant, sku=sku, warehouse=warehouse, on_hand=5000)
        sandbox_connect(shop=shop)
        shop.refresh_from_db()
        sandbox_spike(shop=shop, orders=orders, seed=number, cancel_rate=0.02)
        connector = connector_for(shop, transport=sandbox_transport(), sleep=lambda s: None)
        cpu = time.process_time()
        started = time.perf_counter()
        result = shop_sync(shop=shop, trigger="bench", connector=connector)
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu
        connector.http.close()
        assert result.status == "success", result.error
        return wall, cpu, Order.objects.count()


if __name__ == "__main__":
    main()
