"""What every bench script shares: a throwaway PostgreSQL database and Django set up on it.

    with throwaway_database("sync", script="bench/sync_spike.py", keep=args.keep_db) as url:
        django_on(url)
        ...

The database is created next to the one DATABASE_URL names (the embedded PostgreSQL when it is
unset) and its tables are built straight from the models (like the test suite's
--nomigrations). Never part of the test run.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit


def machine() -> str:
    """The machine a bench's figures were measured on, for its first line: the CPU, its cores
    and memory, the load when it starts (other work slows every figure), and the Python that
    ran it. The interpreter's build counts: on this 2-core machine pyenv's default build (no
    profile-guided optimisation) spent 8-10 % more CPU per order in our processes in
    bench/sync_spike.py than Debian's packaged python3.11 (the README's performance section)."""
    import contextlib
    import platform

    import psutil

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    memory = psutil.virtual_memory().total / 2**30
    load = " ".join(f"{figure:.1f}" for figure in os.getloadavg())
    return (
        f"{cpu}, {os.cpu_count()} cores, {memory:.1f} GiB RAM, load average {load}; "
        f"Python {platform.python_version()} ({Path(sys.executable).resolve()})"
    )


_LIMITS: dict = {}


def machine_limits() -> dict:
    """How fast this machine is at this hour, measured once per bench process (on the Django
    connection of the first database that asks) and printed beside its figures, since this
    machine's speed has differed more than twofold between days for the same code:

    - Python's own speed: CPU seconds for a loop of ten million additions;
    - one conditional UPDATE of one hot row, committed one at a time (`reserved = reserved + 1
      WHERE on_hand - reserved >= 1`, one connection): what a path that takes a live stream's
      stock row once per order could at most reach;
    - 5,000 orders written with COPY (`tkerp.bulk.rows_copy`) and with `bulk_create`, indexes,
      audit trigger and all, each in a transaction rolled back.

    The spike issue quoted 3,900 updates/s and 75,000 / 12,500 rows/s as this machine's limits,
    measured in a way it does not give (the rows of which table, with which indexes): compare
    runs of these lines with each other, not with those."""
    if _LIMITS:
        return _LIMITS
    import psycopg
    from django.db import connection, transaction

    from orders.models import Order
    from shops.models import Shop
    from tkerp.bulk import rows_copy
    from tkerp.tenancy import all_tenants, tenant_context

    started, total = time.process_time(), 0
    for number in range(10_000_000):
        total += number
    _LIMITS["python"] = time.process_time() - started

    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params, autocommit=True) as raw:
        raw.execute(
            "CREATE TEMP TABLE hot_row (id int PRIMARY KEY, on_hand int, reserved int,"
            " CHECK (reserved BETWEEN 0 AND on_hand))"
        )
        raw.execute("INSERT INTO hot_row VALUES (1, 1000000, 0)")
        updates, started = 3000, time.perf_counter()
        for _ in range(updates):
            raw.execute(
                "UPDATE hot_row SET reserved = reserved + 1"
                " WHERE id = 1 AND on_hand - reserved >= 1"
            )
        _LIMITS["hot_row"] = updates / (time.perf_counter() - started)

    with all_tenants():
        shop = Shop.objects.select_related("tenant").order_by("pk").first()
    rows = 5000
    for name, write in (("copy", rows_copy), ("bulk_create", None)):
        orders = [
            Order(tenant=shop.tenant, shop=shop, platform_order_id=f"LIMITS-{n}")
            for n in range(rows)
        ]
        with tenant_context(shop.tenant), transaction.atomic():
            started = time.perf_counter()
            if write is None:
                Order.objects.bulk_create(orders)
            else:
                write(Order, orders)
            _LIMITS[name] = rows / (time.perf_counter() - started)
            transaction.set_rollback(True)
    return _LIMITS


def machine_limits_line(limits: dict) -> str:
    """`machine_limits` in words, for the line after a bench's machine line."""
    return (
        f"this hour's limits: Python {limits['python']:.2f} s of CPU for 10M additions; "
        f"one hot row's conditional UPDATE {limits['hot_row']:,.0f}/s (each committed); "
        f"5,000 orders written with COPY {limits['copy']:,.0f} rows/s, with bulk_create "
        f"{limits['bulk_create']:,.0f} rows/s"
    )


def bench_database_url(url: str, *, label: str, script: str) -> tuple[str, str, str]:
    """(bench database URL, bench database name, maintenance database URL)."""
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql", "pgsql"}:
        sys.exit(f"{script} needs DATABASE_URL=postgres://... (PostgreSQL)")
    base = parts.path.lstrip("/") or "tkerp"
    name = f"{base}_bench_{label}_{os.getpid()}"
    return (
        urlunsplit(parts._replace(path=f"/{name}")),
        name,
        urlunsplit(parts._replace(path="/postgres")),
    )


def admin_sql(maintenance_url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(maintenance_url, autocommit=True) as conn:
        conn.execute(sql)


@contextmanager
def throwaway_database(label: str, *, script: str, keep: bool = False) -> Iterator[str]:
    """Create a bench database next to DATABASE_URL's, yield its URL, then drop it.

    `keep` leaves it (and says so). DATABASE_URL is put back afterwards, so a later bench in the
    same process (bench/stock.py runs bench_push()) starts from the original one.
    """
    source_url = os.environ.get("DATABASE_URL", "")
    if not source_url:
        from pathlib import Path

        from tkerp import embedded_postgres

        data_dir = Path(
            os.environ.get(
                "TKERP_EMBEDDED_PGDATA", Path(__file__).resolve().parent.parent / "var/pgdata"
            )
        )
        embedded_postgres.server_ensure(data_dir, database="tkerp")
        source_url = embedded_postgres.server_url(data_dir, database="tkerp")
    url, name, maintenance = bench_database_url(source_url, label=label, script=script)
    admin_sql(maintenance, f'CREATE DATABASE "{name}"')
    # Tables are built from the models, not the migrations: the extension the search indexes
    # need comes first.
    admin_sql(url, "CREATE EXTENSION IF NOT EXISTS pg_trgm")
    try:
        yield url
    finally:
        if keep:
            print(f"kept database {name}")
        else:
            from django.db import connections

            connections.close_all()
            admin_sql(maintenance, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        os.environ["DATABASE_URL"] = source_url


@contextmanager
def database_copy(url: str, *, label: str) -> Iterator[str]:
    """A copy of the bench database at `url` (PostgreSQL's CREATE DATABASE ... TEMPLATE, a file
    copy), yielded as a URL and dropped afterwards: each configuration of a bench starts from
    the same seeded state. Nothing may be connected to `url` meanwhile (this closes Django's
    connections; Django is re-pointed at the copy by the caller, with `django_on(copy,
    build=False)`)."""
    from django.db import connections

    parts = urlsplit(url)
    source = parts.path.lstrip("/")
    name = f"{source}_{label}"
    maintenance = urlunsplit(parts._replace(path="/postgres"))
    connections.close_all()
    admin_sql(maintenance, f'CREATE DATABASE "{name}" TEMPLATE "{source}"')
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        connections.close_all()
        admin_sql(maintenance, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def django_on(url: str, *, build: bool = True) -> None:
    """Set Django up on the bench database (or re-point it there if already set up); `build`
    creates its tables (a second process on the same database passes False)."""
    name = urlsplit(url).path.lstrip("/")
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tkerp.settings")
    os.environ.setdefault("SECRET_KEY", "bench-only-not-secret")
    # Benches run with DEBUG off whatever the shell or a demo checkout's `var/demo.env` says:
    # DEBUG wraps every cursor to log its queries, which is not what production measures. So
    # they set what production would: an encryption key, and no HTTPS redirect for the
    # in-process sandbox (below).
    os.environ["DEBUG"] = "false"
    os.environ.setdefault("TKERP_FERNET_KEYS", "YmVuY2gtb25seS1ub3Qtc2VjcmV0LWJlbmNoLWtleSE=")
    # Benches talk to the sandboxes (bench_push may run later in the same process): settings
    # read this once.
    os.environ.setdefault("TKERP_SANDBOX_ENABLED", "1")
    # The in-process sandboxes answer on http://sandbox.tkerp.internal; with DEBUG off (the
    # default) the HTTPS redirect would bounce every call to them.
    os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django
    from django.apps import apps

    if apps.ready:
        from django.conf import settings
        from django.db import connections

        connections.close_all()
        settings.DATABASES["default"]["NAME"] = name
        connections["default"].settings_dict["NAME"] = name
    else:
        django.setup()
    # A bench seeds sellers of its own, as an operator's script would: every tenant in scope
    # (row-level security refuses rows written with none). What it measures sets its own
    # tenant, as requests and tasks do.
    from tkerp.tenancy import ALL_TENANTS, set_scope

    set_scope(ALL_TENANTS)
    if not build:
        return
    from django.conf import settings
    from django.core.management import call_command

    # Tables straight from the models (like the test suite's --nomigrations).
    settings.MIGRATION_MODULES = {app.label: None for app in apps.get_app_configs()}
    call_command("migrate", run_syncdb=True, verbosity=0)
    # ...which leaves out the triggers the migrations install: the audit trail's, among others.
    import pgtrigger

    from tkerp.db.postgres.base import database_owner

    with database_owner():  # installing triggers is the tables' owner's right
        pgtrigger.install()


# --- the audit trail's cost (tkerp.audit) -------------------------------------------------------


def audit_triggers_set(*, enabled: bool) -> int:
    """Install or drop the audit trail's triggers (every other trigger stays); returns how many.
    A bench runs the same work both ways in one run to print what the audit costs."""
    import pgtrigger

    from tkerp.audit import AuditTrigger
    from tkerp.db.postgres.base import database_owner

    pairs = [(m, t) for m, t in pgtrigger.registered() if isinstance(t, AuditTrigger)]
    with database_owner():  # triggers are the tables' owner's
        for model, trigger in pairs:
            trigger.install(model) if enabled else trigger.uninstall(model)
    return len(pairs)


def audit_stats_enable() -> bool:
    """Count the time PostgreSQL spends in PL/pgSQL functions (the audit triggers among them)
    from the next connection on; False where the role may not (not a superuser)."""
    from django.db import DatabaseError, connection, connections

    from tkerp.db.postgres.base import database_owner

    try:
        with database_owner(), connection.cursor() as cursor:
            cursor.execute(f'ALTER DATABASE "{connection.settings_dict["NAME"]}" '
                           "SET track_functions = 'pl'")  # fmt: skip
    except DatabaseError:
        return False
    connections.close_all()
    return True


def audit_stats() -> tuple[float, int]:
    """(seconds PostgreSQL spent in the audit triggers, audit rows written) so far in this
    database, the triggers' time as pg_stat_user_functions counts it."""
    from django.apps import apps
    from django.db import connection

    from tkerp.audit import audit_event_model

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")
    connection.close()  # the session's pending counts are flushed as it ends
    time.sleep(1.2)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT COALESCE(SUM(self_time), 0) FROM pg_stat_user_functions "
            "WHERE funcname LIKE 'pgtrigger_audit_%%'"
        )
        seconds = cursor.fetchone()[0] / 1000
        rows = 0
        for model in apps.get_models():
            event_model = audit_event_model(model)
            if event_model is not None:
                cursor.execute(f'SELECT COUNT(*) FROM "{event_model._meta.db_table}"')
                rows += cursor.fetchone()[0]
    return seconds, rows


def backend_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) a PostgreSQL backend on this machine has used so far; None
    when /proc cannot tell (a server elsewhere, another user's process)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed_transport(inner, *, latency: float = 0.0):
    """The in-process sandbox transport, adding up the time the platform took; `latency`
    seconds more a request stand for the network between us and a real platform (a round
    trip to a platform's API region, its TLS and queueing: not our CPU, nor the sandbox's)."""
    import httpx

    class TimedTransport(httpx.BaseTransport):
        def __init__(self):
            self.inner = inner
            self.seconds = 0.0
            self.requests = 0

        def handle_request(self, request):
            started = time.perf_counter()
            try:
                if latency:
                    time.sleep(latency)
                response = self.inner.handle_request(request)
                response.read()  # the body is produced lazily: count it as the platform's time
                return response
            finally:
                self.seconds += time.perf_counter() - started
                self.requests += 1

        def close(self) -> None:
            self.inner.close()

    return TimedTransport()


def replayed_transport(inner):
    """The platform's answers recorded once, then served as recorded: the platform's own work
    (the sandbox's views, its queries, its JSON) done before the timed pass, as a real
    platform does it on its own machines rather than on our cores.

    While `recording`, requests go to `inner` and each answer (status, headers, body) is kept
    under its method and path, in order; then the n-th request for a method and path gets the
    n-th answer recorded for it (the tokens and signatures in the query differ run to run: the
    sequence is the same). A request with no answer left goes to `inner` (`missed` counts
    them). Our side is untouched: the connector still sends, parses and maps every page."""
    from collections import defaultdict

    import httpx

    class ReplayedTransport(httpx.BaseTransport):
        def __init__(self):
            self.inner = inner
            self.recording = True
            self.answers: dict[tuple[str, str], list] = defaultdict(list)
            self.served: dict[tuple[str, str], int] = defaultdict(int)
            self.missed = 0

        def handle_request(self, request):
            key = (request.method, request.url.path)
            if self.recording:
                response = self.inner.handle_request(request)
                answer = (response.status_code, response.headers.raw, response.read())
                self.answers[key].append(answer)
            else:
                index = self.served[key]
                if index >= len(self.answers[key]):
                    self.missed += 1
                    return self.inner.handle_request(request)
                self.served[key] += 1
                answer = self.answers[key][index]
            status, headers, body = answer
            return httpx.Response(status, headers=headers, content=body, request=request)

        def close(self) -> None:
            self.inner.close()

    return ReplayedTransport()


def orders_by_id_transport(inner):
    """TikTok's order detail (`GET /order/202309/orders?ids=...`) answered from orders recorded
    once, whatever ids a call asks for: the webhook path's counterpart of `replayed_transport`.
    Webhook workers claim deliveries as they come, so which ids share a call differs run to
    run; each order's JSON is kept by its id and a call's answer is put together from them (a
    string join: the platform's work stays off our cores).

    While `recording`, calls go to `inner` and the orders in each answer are kept; then a call
    whose ids were all recorded is answered from them, any other goes to `inner` (`missed`
    counts them). Every other request goes to `inner`. Our side is untouched: the connector
    still signs, sends, parses and maps every call."""
    import json

    import httpx

    class OrdersByIdTransport(httpx.BaseTransport):
        PATH = "/order/202309/orders"

        def __init__(self):
            self.inner = inner
            self.recording = True
            self.orders: dict[str, str] = {}
            self.envelope: tuple[int, list, str, str] | None = None
            self.missed = 0

        def handle_request(self, request):
            if request.method != "GET" or not request.url.path.endswith(self.PATH):
                return self.inner.handle_request(request)
            ids = [
                part
                for value in request.url.params.get_list("ids")
                for part in value.split(",")
                if part
            ]
            if self.recording or not all(order_id in self.orders for order_id in ids):
                if not self.recording:
                    self.missed += 1
                response = self.inner.handle_request(request)
                body = response.read()
                if self.recording and response.status_code == 200:
                    self._keep(response, body)
                headers = response.headers.raw
                return httpx.Response(
                    response.status_code, headers=headers, content=body, request=request
                )
            status, headers, head, tail = self.envelope
            body = head + ",".join(self.orders[order_id] for order_id in ids) + tail
            return httpx.Response(status, headers=headers, content=body.encode(), request=request)

        def _keep(self, response, body: bytes) -> None:
            envelope = json.loads(body)
            for order in envelope["data"]["orders"]:
                self.orders[str(order["id"])] = json.dumps(order)
            # The answer around its orders, kept once: the same for every call.
            envelope["data"]["orders"] = ["ORDERS"]
            head, tail = json.dumps(envelope).split('"ORDERS"')
            headers = [(k, v) for k, v in response.headers.raw if k.lower() != b"content-length"]
            self.envelope = (response.status_code, headers, head, tail)

        def close(self) -> None:
            self.inner.close()

    return OrdersByIdTransport()


def bench_tiktok_shop(*, on_hand: int, skus: int = 40, warehouse_priority: bool = False):
    """A throwaway seller with one TikTok shop connected to its sandbox, `skus` listed SKUs and
    `on_hand` units of each in one warehouse. Returns (tenant, shop)."""
    from decimal import Decimal

    from inventory.models import Listing, ShopWarehouse, Sku, StockLevel, Warehouse
    from sandbox.connect import sandbox_connect
    from shops.models import Shop, Tenant
    from tkerp.tenancy import tenant_context

    tenant = Tenant.objects.create(name="Bench Seller", slug="bench-seller")
    with tenant_context(tenant):
        shop = Shop.objects.create(tenant=tenant, name="Bench TikTok", platform="tiktok")
        warehouse = Warehouse.objects.create(tenant=tenant, code="MAIN", name="Main warehouse")
        if warehouse_priority:
            ShopWarehouse.objects.create(tenant=tenant, shop=shop, warehouse=warehouse, priority=1)
        for number in range(1, skus + 1):
            sku = Sku.objects.create(
                tenant=tenant,
                code=f"BENCH-{number:03d}",
                name=f"Bench product {number}",
                cost=Decimal("3.20") + number,
            )
            Listing.objects.create(tenant=tenant, shop=shop, sku=sku)
            StockLevel.objects.create(tenant=tenant, sku=sku, warehouse=warehouse, on_hand=on_hand)
        sandbox_connect(shop=shop)
        shop.refresh_from_db()
    return tenant, shop


def analyse() -> None:
    """Statistics for the planner, as autovacuum would have them on a live database. As the
    tables' owner: ANALYZE run by the application role skips every table with only a warning,
    and the planner then guesses one row per table (bench/api.py's page cost 19 ms of
    PostgreSQL instead of 2)."""
    from django.db import connection

    from tkerp.db.postgres.base import database_owner

    with database_owner(), connection.cursor() as cursor:
        cursor.execute("ANALYZE")
