"""Benchmark: what one audited row costs PostgreSQL, with `pgtrigger.ignore` said and unset.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tkerp .venv/bin/python bench/audit_triggers.py

Every audit trigger (django-pgtrigger, tkerp.audit) first asks whether it is ignored: it reads
the setting `pgtrigger.ignore` in a PL/pgSQL block with an `EXCEPTION` clause. On a connection
that never set it the read raises, and the block catches the error by rolling back a
subtransaction, once for every row written. tkerp's database backend now sets an empty list on
every connection (`tkerp.db.postgres.base.TRIGGERS_IGNORE_NONE_SQL`), so the read succeeds.

In a throwaway database next to DATABASE_URL's, through the application's own connection (its
role, row-level security, a tenant scope), each round inserts `--rows` stock movements in one
statement and updates their note in another (one audit row each time), in a transaction that
is rolled back. Rounds alternate between the setting unset (as every connection had it before)
and said, and each round's CPU is read from the PostgreSQL backend in /proc (so the server must
run on this machine). Printed: the median per round and per audited row, both ways, side by side.
Never part of the test run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import backend_cpu, bench_tiktok_shop, django_on, machine, throwaway_database

INSERT_SQL = """
INSERT INTO inventory_stockmovement
    (tenant_id, sku_id, warehouse_id, kind, on_hand_delta, reserved_delta, reference, note,
     created_at)
SELECT %(tenant)s, %(sku)s, %(warehouse)s, 'adjust', 1, 0, 'bench-' || n, '', now()
FROM generate_series(1, %(rows)s) AS n
"""
UPDATE_SQL = "UPDATE inventory_stockmovement SET note = 'counted' WHERE reference LIKE 'bench-%%'"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rows",
        default="250,1000,4000",
        help="Rows inserted then updated by one statement each, per size (comma-separated).",
    )
    parser.add_argument("--rounds", type=int, default=5, help="Rounds each way, alternating.")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    with throwaway_database("audit", script="bench/audit_triggers.py") as url:
        django_on(url)
        from django.db import connection, transaction

        from inventory.models import StockLevel
        from tkerp.tenancy import tenant_context

        tenant, _shop = bench_tiktok_shop(on_hand=0, skus=1)
        with tenant_context(tenant):
            level = StockLevel.objects.get()
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid(), current_user")
                backend, role = cursor.fetchone()
            if backend_cpu(backend) is None:
                sys.exit("PostgreSQL must run on this machine: its CPU is read in /proc")
            sizes = [int(rows) for rows in args.rows.split(",")]
            seconds = {(rows, way): [] for rows in sizes for way in ("unset", "said")}
            for rows in sizes:
                params = {
                    "tenant": tenant.pk,
                    "sku": level.sku_id,
                    "warehouse": level.warehouse_id,
                    "rows": rows,
                }
                for _ in range(args.rounds + 1):  # the first pair warms the caches, not counted
                    for way in ("unset", "said"):
                        value = None if way == "unset" else "{}"
                        with transaction.atomic(), connection.cursor() as cursor:
                            cursor.execute(
                                "SELECT set_config('pgtrigger.ignore', %s, false)", [value]
                            )
                            before = backend_cpu(backend)
                            cursor.execute(INSERT_SQL, params)
                            cursor.execute(UPDATE_SQL)
                            seconds[rows, way].append(backend_cpu(backend) - before)
                            transaction.set_rollback(True)
            with connection.cursor() as cursor:
                cursor.execute("SELECT set_config('pgtrigger.ignore', '{}', false)")
        version = connection.pg_version // 10000

    print(f"machine: {machine()}; PostgreSQL {version}; role {role}")
    print(
        "stock movements inserted by one statement, then updated by another (two audit rows "
        f"each), {args.rounds} rounds each way, alternating; PostgreSQL backend CPU, medians "
        "(its clock ticks in 10 ms: read the larger sizes):"
    )
    print(f"  {'rows a statement':>16}  {'unset (before)':>22}  {'said (now)':>22}  saved")
    for rows in sizes:
        unset = statistics.median(seconds[rows, "unset"][1:])
        said = statistics.median(seconds[rows, "said"][1:])
        audited = 2 * rows
        print(
            f"  {rows:>16,}  {unset * 1000:6.0f} ms {unset / audited * 1e6:6.1f} µs/row  "
            f"{said * 1000:6.0f} ms {said / audited * 1e6:6.1f} µs/row  "
            f"{(unset - said) / audited * 1e6:5.1f} µs/row"
        )


if __name__ == "__main__":
    main()
