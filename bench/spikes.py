"""Benchmark: ten spikes at once, synced by several django-q clusters on one PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tkerp .venv/bin/python bench/spikes.py

Creates a throwaway PostgreSQL database next to the one DATABASE_URL names (dropped at the end
unless --keep-db) and seeds it once: --tenants tenants with --shops shops between them (TikTok
and Shopify in turn), every shop of a tenant listing all of that tenant's SKUs (so two shops sell
the same stock), the first --hot SKUs with only --hot-stock units (oversell is possible), and a
spike of --orders orders in all landed in the shops' sandboxes. The periodic schedules are
removed: only the spikes run.

Then for each count of clusters (--clusters, 1 first: the baseline) and each broker (--brokers:
the database, `orm`, and Redis, `redis`, when it answers), a copy of that database is made, N
`manage.py qcluster` processes are started on it (--workers each), and two dispatchers run
`shops.tasks.sync_due_shops` at the same moment (two machines' schedulers firing the same
minute). Reported per configuration: orders/s synced (stored, reserved, reviewed) from the first
pass's start to the last one's end, the ratio to the 1-cluster run, the CPU seconds the clusters
and PostgreSQL's backends spent meanwhile (orders per CPU-second is what a busy shared machine
changes least), the largest peak RSS (VmHWM) of any cluster process, whether the follow-up tasks
(parcel splits, stock pushes) drained within --drain seconds after the last pass, and the SQL
checks: no duplicate order, every sandbox order stored, reserved <= on hand and equal to the live
reservations for every stock row, every order ready (reserved; with a parcel once drained) or on
hold (with an open hold), one successful pass per shop. Never part of the test run;
`tests/e2e/test_spikes_multiworker.py` runs a small spike through the same functions.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import database_copy, django_on, machine, throwaway_database  # noqa: E402

PLATFORMS = ("tiktok", "shopify")  # the two with a spike-sized rate limit and order webhooks
RSS_LIMIT_MB = 500


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=28000, help="Orders over all shops.")
    parser.add_argument("--tenants", type=int, default=3)
    parser.add_argument("--shops", type=int, default=10)
    parser.add_argument("--skus", type=int, default=30, help="SKUs per tenant.")
    parser.add_argument("--hot", type=int, default=4, help="SKUs per tenant with little stock.")
    parser.add_argument("--hot-stock", type=int, default=150)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--clusters", default="1,2,4", help="Cluster counts; 1 is the baseline.")
    parser.add_argument("--workers", type=int, default=1, help="Worker processes per cluster.")
    parser.add_argument("--brokers", default="orm,redis", help="orm, redis or both.")
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("Q_REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="Redis for the redis broker (a queue of its own name is used, then deleted).",
    )
    parser.add_argument("--timeout", type=float, default=1200, help="Seconds to sync, at most.")
    parser.add_argument(
        "--drain",
        type=float,
        default=90,
        help="Seconds to wait, after the last pass, for the follow-up tasks (parcels, pushes).",
    )
    parser.add_argument("--keep-db", action="store_true", help="Leave the seeded database.")
    parser.add_argument("--verbose", action="store_true", help="Progress every 15 s.")
    return parser.parse_args()


# --- seeding ------------------------------------------------------------------------------


def spikes_seed(
    *,
    tenants: Sequence,
    shops: int,
    orders: int,
    skus: int = 30,
    hot: int = 4,
    hot_stock: int = 150,
    seed: int = 42,
) -> list:
    """Give `tenants` `shops` sandbox-connected shops in all (round robin, TikTok and Shopify in
    turn), each tenant one warehouse and `skus` SKUs listed on every one of its shops, the first
    `hot` with `hot_stock` units and the rest with plenty, and land a spike of `orders` orders
    in all (spread evenly) in the shops' sandboxes. Returns the shops."""
    from decimal import Decimal

    from inventory.models import Listing, Sku, StockLevel, Warehouse
    from sandbox.actions import sandbox_spike
    from shops.models import Shop
    from tkerp.tenancy import tenant_context

    made = []
    for number in range(shops):
        tenant = tenants[number % len(tenants)]
        platform = PLATFORMS[(number // len(tenants)) % len(PLATFORMS)]
        with tenant_context(tenant):
            made.append(
                Shop.objects.create(
                    tenant=tenant, name=f"Spike {platform} {number + 1}", platform=platform
                )
            )
    plenty = orders * 4  # more than any SKU can sell
    for tenant in tenants:
        with tenant_context(tenant):
            warehouse = Warehouse.objects.create(tenant=tenant, code="MAIN", name="Main")
            own = [shop for shop in made if shop.tenant_id == tenant.pk]
            for number in range(1, skus + 1):
                sku = Sku.objects.create(
                    tenant=tenant,
                    code=f"SPIKE-{number:03d}",
                    name=f"Spike product {number}",
                    cost=Decimal("2.50") + number,
                )
                StockLevel.objects.create(
                    tenant=tenant,
                    sku=sku,
                    warehouse=warehouse,
                    on_hand=hot_stock if number <= hot else plenty,
                )
                Listing.objects.bulk_create(
                    [Listing(tenant=tenant, shop=shop, sku=sku) for shop in own]
                )
    for number, shop in enumerate(made):
        share = orders // shops + (1 if number < orders % shops else 0)
        with tenant_context(shop.tenant):
            sandbox_spike(shop=shop, orders=share, seed=seed + number)
    return made


# --- clusters -----------------------------------------------------------------------------


@dataclass
class ProcessUse:
    """What one process used, from its last sample: peak RSS (VmHWM) and CPU seconds."""

    peak_mb: float = 0.0
    cpu: float = 0.0


@dataclass
class Clusters:
    """Running `manage.py qcluster` processes and what their process trees used so far."""

    processes: list[subprocess.Popen]
    logs: list[Path]
    database: str
    used: dict[int, ProcessUse] = field(default_factory=dict)
    postgres_cpu: dict[int, float] = field(default_factory=dict)

    def sample(self) -> None:
        """Record each cluster process's peak RSS and CPU, and the CPU of PostgreSQL's backends
        serving this database (found by their process title)."""
        import psutil

        for process in self.processes:
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(process.pid)
                for each in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error, OSError):
                        use = self.used.setdefault(each.pid, ProcessUse())
                        use.peak_mb = max(use.peak_mb, _peak_rss_mb(each.pid))
                        times = each.cpu_times()
                        use.cpu = max(use.cpu, times.user + times.system)
        for each in psutil.process_iter(["name", "cmdline"]):
            with contextlib.suppress(psutil.Error):
                title = " ".join(each.info["cmdline"] or ())
                if each.info["name"] == "postgres" and f" {self.database} " in f"{title} ":
                    times = each.cpu_times()
                    self.postgres_cpu[each.pid] = times.user + times.system

    @property
    def peak_mb(self) -> float:
        return max((use.peak_mb for use in self.used.values()), default=0.0)

    @property
    def cpu(self) -> float:
        return sum(use.cpu for use in self.used.values())

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(
            f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
            for log in self.logs
        )


def _peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cluster_env(*, database_url: str, workers: int, redis_url: str | None, **extra) -> dict:
    """The environment of a process on the bench (or test) database: ours, with the database,
    the worker count and the broker set."""
    env = {**os.environ, "DATABASE_URL": database_url, "Q_WORKERS": str(workers), **extra}
    env.pop("Q_REDIS_URL", None)
    if redis_url:
        env["Q_REDIS_URL"] = redis_url
    return env


@contextlib.contextmanager
def q_clusters(count: int, *, env: dict, database: str, ready_within: float = 120) -> Iterator:
    """Start `count` `manage.py qcluster` processes with `env`, wait until each says it is
    running, yield a `Clusters`, then stop them: SIGTERM to each main process (django-q stops
    its workers), and its whole process group killed after 30 s if it is still there."""
    folder = Path(tempfile.mkdtemp(prefix="tkerp-qclusters-"))
    env = {**env, "LOG_LEVEL": "INFO"}  # django-q says "Q Cluster ... running" at INFO
    logs = [folder / f"cluster-{number + 1}.log" for number in range(count)]
    processes = []
    try:
        for log in logs:
            with log.open("w") as out:
                processes.append(
                    subprocess.Popen(
                        [sys.executable, str(ROOT / "manage.py"), "qcluster"],
                        cwd=ROOT,
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        clusters = Clusters(processes=processes, logs=logs, database=database)
        deadline = time.monotonic() + ready_within
        while not all("running." in log.read_text(errors="replace") for log in logs):
            ended = [p for p in processes if p.poll() is not None]
            if ended or time.monotonic() > deadline:
                raise RuntimeError(
                    f"a q cluster did not start ({len(ended)} exited):\n{clusters.log_tail()}"
                )
            time.sleep(0.2)
        yield clusters
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            # Workers a killed sentinel left behind share its process group.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        for log in logs:
            log.unlink(missing_ok=True)
        folder.rmdir()


def dispatch_together(*, env: dict, schedulers: int = 2) -> list[int]:
    """Run `shops.tasks.sync_due_shops` in `schedulers` processes at once (machines whose
    schedulers fire the same minute); returns the shop ids they queued, all of them."""
    code = (
        "import django; django.setup()\n"
        "from shops.tasks import sync_due_shops\n"
        "print(' '.join(map(str, sync_due_shops()['queued'])))\n"
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env={**env, "LOG_LEVEL": "WARNING"},
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(schedulers)
    ]
    queued: list[int] = []
    for process in processes:
        out, _ = process.communicate(timeout=120)
        if process.returncode:
            raise RuntimeError(f"a dispatcher failed with exit code {process.returncode}")
        queued += [int(part) for part in out.split()]
    return queued


# --- progress and checks ------------------------------------------------------------------

UNSPLIT_SQL = """
    SELECT count(*) FROM orders_order o
    WHERE o.status = 'ready'
      AND EXISTS (SELECT 1 FROM inventory_reservation r
                  WHERE r.order_id = o.id AND r.state = 'reserved')
      AND NOT EXISTS (SELECT 1 FROM logistics_shipment s
                      WHERE s.order_id = o.id AND s.status <> 'cancelled')
"""


@dataclass
class Progress:
    """How far a run is, read in SQL (and from the broker)."""

    synced: int  # shops with a successful pass
    running: int  # passes running
    failed: int  # failed passes
    stored: int  # orders stored
    queued: int  # tasks waiting in the broker (with the database broker: or running)
    unsplit: int  # ready orders with reserved stock and no parcel yet

    def synced_all(self, shops: int) -> bool:
        return self.synced == shops and not self.running

    def drained(self, shops: int) -> bool:
        """Every pass done, no task left, every ready order split into its parcels."""
        return self.synced_all(shops) and not self.queued and not self.unsplit

    def __str__(self) -> str:
        return (
            f"{self.synced} shops synced, {self.running} running, {self.failed} failed passes, "
            f"{self.stored} orders stored, {self.queued} tasks queued, {self.unsplit} ready "
            "orders without parcel"
        )


def spikes_progress(*, queue_size) -> Progress:
    """Where the run stands; `queue_size()` counts the broker's waiting tasks."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(DISTINCT shop_id) FILTER (WHERE status = 'success'),"
            " count(*) FILTER (WHERE status = 'running'),"
            " count(*) FILTER (WHERE status = 'failed') FROM shops_syncrun"
        )
        synced, running, failed = cursor.fetchone()
        cursor.execute("SELECT count(*) FROM orders_order")
        (stored,) = cursor.fetchone()
        cursor.execute(UNSPLIT_SQL)
        (unsplit,) = cursor.fetchone()
    return Progress(synced, running, failed, stored, queue_size(), unsplit)


CHECKS_SQL = {
    "duplicate orders (shop, platform order id)": """
        SELECT count(*) FROM (SELECT 1 FROM orders_order
                              GROUP BY shop_id, platform_order_id HAVING count(*) > 1) d""",
    "sandbox orders not stored": """
        SELECT count(*) FROM sandbox_sandboxorder so
        JOIN sandbox_sandboxstore st ON st.id = so.store_id
        JOIN shops_shop s ON s.platform = st.platform AND s.platform_shop_id = st.shop_key
        WHERE NOT EXISTS (SELECT 1 FROM orders_order o
                          WHERE o.shop_id = s.id AND o.platform_order_id = so.order_id)""",
    "stock rows with reserved > on hand or < 0": """
        SELECT count(*) FROM inventory_stocklevel WHERE reserved > on_hand OR reserved < 0""",
    "stock rows whose reserved differs from their live reservations": """
        SELECT count(*) FROM inventory_stocklevel sl
        WHERE sl.reserved <> COALESCE((SELECT sum(r.quantity) FROM inventory_reservation r
                                       WHERE r.stock_level_id = sl.id
                                         AND r.state = 'reserved'), 0)""",
    "order lines reserved twice": """
        SELECT count(*) FROM (SELECT 1 FROM inventory_reservation
                              GROUP BY order_line_id HAVING count(*) > 1) d""",
    "orders with two live parcels from one warehouse": """
        SELECT count(*) FROM (SELECT 1 FROM logistics_shipment WHERE status <> 'cancelled'
                              GROUP BY order_id, warehouse_id HAVING count(*) > 1) d""",
    "ready orders with a line not reserved": """
        SELECT count(*) FROM orders_order o WHERE o.status = 'ready' AND EXISTS (
            SELECT 1 FROM orders_orderline l WHERE l.order_id = o.id AND l.sku_id IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM inventory_reservation r
                              WHERE r.order_line_id = l.id AND r.state = 'reserved'))""",
    "ready orders without a parcel": UNSPLIT_SQL,
    "on-hold orders without an open hold": """
        SELECT count(*) FROM orders_order o WHERE o.status = 'on_hold' AND NOT EXISTS (
            SELECT 1 FROM orders_orderhold h WHERE h.order_id = o.id AND h.released_at IS NULL)""",
    "orders neither ready nor on hold": """
        SELECT count(*) FROM orders_order WHERE status NOT IN ('ready', 'on_hold')""",
    "shops without exactly one successful pass": """
        SELECT count(*) FROM shops_shop s WHERE (SELECT count(*) FROM shops_syncrun r
                                                 WHERE r.shop_id = s.id
                                                   AND r.status = 'success') <> 1""",
}


def spikes_check() -> tuple[dict[str, int], dict[str, int]]:
    """After a run, in SQL over every tenant: ({check: rows that break it}, {status: orders})."""
    from django.db import connection

    broken = {}
    with connection.cursor() as cursor:
        for name, sql in CHECKS_SQL.items():
            cursor.execute(sql)
            broken[name] = cursor.fetchone()[0]
        cursor.execute("SELECT status, count(*) FROM orders_order GROUP BY 1 ORDER BY 1")
        statuses = dict(cursor.fetchall())
    return broken, statuses


# --- the bench ----------------------------------------------------------------------------


@dataclass
class Figures:
    broker: str
    clusters: int
    orders: int
    seconds: float
    cluster_cpu: float
    postgres_cpu: float
    peak_mb: float
    processes: int
    queued: int
    broken: dict[str, int | None]
    statuses: dict[str, int]
    drain: float | None  # seconds from the last pass's end until no task was left
    left: Progress  # where the run stood when it ended

    @property
    def rate(self) -> float:
        return self.orders / self.seconds

    @property
    def per_cpu(self) -> float:
        return self.orders / max(self.cluster_cpu + self.postgres_cpu, 1e-9)


def main() -> None:
    args = parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    # Stopped with SIGTERM (or run in the background, where SIGINT is ignored), the clusters
    # are still stopped and the databases dropped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped"))
    brokers = [name.strip() for name in args.brokers.split(",") if name.strip()]
    if "redis" in brokers and not _redis_answers(args.redis_url):
        print(f"Redis at {args.redis_url} does not answer: the redis broker is left out")
        brokers.remove("redis")
    with throwaway_database("spikes", script="bench/spikes.py", keep=args.keep_db) as url:
        run(args, url, brokers)


def _redis_answers(url: str) -> bool:
    try:
        import redis
    except ImportError:
        return False
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=2).ping())
    except redis.RedisError:
        return False


def run(args: argparse.Namespace, url: str, brokers: list[str]) -> None:
    django_on(url)
    from django.db import connection
    from django_q.models import Schedule

    from shops.models import Tenant

    print(f"machine: {machine()}")
    tenants = [
        Tenant.objects.create(name=f"Spike Seller {n + 1}", slug=f"spike-{n + 1}")
        for n in range(args.tenants)
    ]
    started = time.perf_counter()
    shops = spikes_seed(
        tenants=tenants,
        shops=args.shops,
        orders=args.orders,
        skus=args.skus,
        hot=args.hot,
        hot_stock=args.hot_stock,
        seed=args.seed,
    )
    Schedule.objects.all().delete()  # only the spikes run: no sweep, push or poll on a timer
    print(
        f"seeded {args.tenants} tenants, {len(shops)} shops "
        f"({', '.join(f'{p} {sum(s.platform == p for s in shops)}' for p in PLATFORMS)}), "
        f"{args.skus} SKUs per tenant listed on each of its shops ({args.hot} with "
        f"{args.hot_stock} units), {args.orders} orders in the sandboxes: "
        f"{time.perf_counter() - started:.0f} s"
    )
    print(
        f"PostgreSQL {connection.pg_version // 10000}.{connection.pg_version % 100}; "
        f"each configuration: a copy of that database, N clusters x {args.workers} worker"
    )
    counts = [int(part) for part in args.clusters.split(",") if part.strip()]
    figures: list[Figures] = []
    for count in counts:  # the brokers side by side at each size: the load drifts alike
        for broker in brokers:
            figure = configuration(args, url, broker=broker, clusters=count, shops=len(shops))
            figures.append(figure)
            report(figure, figures)
    print()
    summary(figures)
    failed = [f for f in figures if any(f.broken.values()) or f.peak_mb >= RSS_LIMIT_MB]
    if failed:
        sys.exit(f"{len(failed)} configuration(s) broke a check (see above)")


def configuration(
    args: argparse.Namespace, url: str, *, broker: str, clusters: int, shops: int
) -> Figures:
    from django.db import connection

    label = f"{broker}{clusters}"
    redis_url = args.redis_url if broker == "redis" else None
    name = f"tkerp-bench-{os.getpid()}-{label}"  # its own queue (Redis is shared)
    with database_copy(url, label=label) as copy:
        django_on(copy, build=False)
        env = cluster_env(
            database_url=copy, workers=args.workers, redis_url=redis_url, Q_CLUSTER_NAME=name
        )
        queue_size = _queue_size(redis_url, name)
        try:
            database = connection.settings_dict["NAME"]
            with q_clusters(clusters, env=env, database=database) as running:
                queued = dispatch_together(env=env)
                synced = drained = None
                deadline = time.monotonic() + args.timeout
                said = time.monotonic()
                while True:
                    running.sample()
                    progress = spikes_progress(queue_size=queue_size)
                    if synced is None and progress.synced_all(shops):
                        synced = time.monotonic()
                        sync_cpu = running.cpu, sum(running.postgres_cpu.values())
                        deadline = min(deadline, synced + args.drain)
                    if progress.drained(shops):
                        drained = time.monotonic()
                        break
                    if args.verbose and time.monotonic() - said > 15:
                        print(f"      {label}: {progress}")
                        said = time.monotonic()
                    if time.monotonic() > deadline:
                        if synced is None:
                            raise RuntimeError(f"{label}: not synced in {args.timeout:.0f} s")
                        break
                    time.sleep(0.25)
                running.sample()
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT extract(epoch FROM max(finished_at) - min(started_at)) "
                    "FROM shops_syncrun WHERE status = 'success'"
                )
                (seconds,) = cursor.fetchone()
            broken, statuses = spikes_check()
            if drained is None:
                broken["ready orders without a parcel"] = None  # still being split: not a fault
        finally:
            if redis_url:
                _redis_forget(redis_url, name)
    return Figures(
        broker=broker,
        clusters=clusters,
        orders=progress.stored,
        seconds=float(seconds),
        cluster_cpu=sync_cpu[0],
        postgres_cpu=sync_cpu[1],
        peak_mb=running.peak_mb,
        processes=len(running.used),
        queued=len(queued),
        broken=broken,
        statuses=statuses,
        drain=(drained - synced) if drained is not None else None,
        left=progress,
    )


def _queue_size(redis_url: str | None, name: str):
    if redis_url:
        import redis

        client = redis.Redis.from_url(redis_url)
        return lambda: client.llen(f"django_q:{name}:q")

    def orm_queue() -> int:  # a task stays in the table, locked, until its result is saved
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM django_q_ormq")
            return cursor.fetchone()[0]

    return orm_queue


def _redis_forget(url: str, name: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"django_q:{name}:*"))
    if keys:
        client.delete(*keys)


def report(figure: Figures, figures: list[Figures]) -> None:
    base = next(f for f in figures if f.broker == figure.broker)
    problems = {name: count for name, count in figure.broken.items() if count}
    print(
        f"{figure.broker:>5} broker, {figure.clusters} cluster(s): {figure.orders} orders synced "
        f"(stored, reserved, reviewed) in {figure.seconds:6.1f} s = {figure.rate:5.0f} orders/s "
        f"({figure.rate / base.rate:.2f}x the 1-cluster run); CPU clusters "
        f"{figure.cluster_cpu:.0f} s + PostgreSQL {figure.postgres_cpu:.0f} s = "
        f"{figure.per_cpu:.0f} orders/CPU-s; peak RSS {figure.peak_mb:.0f} MB (largest of "
        f"{figure.processes} processes); {figure.queued} passes queued by 2 dispatchers"
    )
    left = figure.left
    follow_up = (
        f"follow-up tasks (parcels, stock pushes) drained {figure.drain:.0f} s after the last pass"
        if figure.drain is not None
        else f"follow-up tasks not drained within --drain: {left.queued} tasks and "
        f"{left.unsplit} ready orders without parcel left"
    )
    print(
        f"      {follow_up}; states: {', '.join(f'{k} {v}' for k, v in figure.statuses.items())}; "
        "checks: "
        + (", ".join(f"{name}: {count}" for name, count in problems.items()) or "all pass")
    )


def summary(figures: list[Figures]) -> None:
    print(
        "| broker | clusters | orders/s synced | vs 1 cluster | orders/CPU-s | peak RSS MB | "
        "follow-up drained | checks |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for figure in figures:
        base = next(f for f in figures if f.broker == figure.broker)
        ok = "pass" if not any(figure.broken.values()) else "FAIL"
        drain = f"{figure.drain:.0f} s" if figure.drain is not None else "no"
        print(
            f"| {figure.broker} | {figure.clusters} | {figure.rate:.0f} | "
            f"{figure.rate / base.rate:.2f}x | {figure.per_cpu:.0f} | {figure.peak_mb:.0f} | "
            f"{drain} | {ok} |"
        )
    for name in CHECKS_SQL:
        counts = ", ".join(
            f"{f.broker}/{f.clusters}: {'n/a' if f.broken[name] is None else f.broken[name]}"
            for f in figures
        )
        print(f"  {name}: {counts}")


if __name__ == "__main__":
    main()
