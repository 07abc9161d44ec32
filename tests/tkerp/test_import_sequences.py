"""Imports under real concurrency: no id-sequence reset (issue 9, item 3), jobs run once.

django-import-export's `ModelResource.after_import` resets the sequence to the highest id the
importing transaction can see. Ids a concurrent transaction has taken but not committed are
invisible to it, so the counter moves below them and the next insert collides: tenant B's order
sync failed with `duplicate key value violates unique constraint "orders_orderline_pkey"`.
These tests commit for real (`transaction=True`) and race real threads on real connections.
"""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest
import tablib
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from inventory.models import Sku
from inventory.resources import (
    ListingResource,
    SkuResource,
    StockLevelResource,
    SupplierItemResource,
    SupplierResource,
)
from logistics.resources import CarrierRuleResource
from orders.ingest import orders_ingest
from orders.models import Order, OrderLine
from orders.resources import CSV_COLUMNS, OrderLineResource
from tests.factories import (
    CarrierServiceFactory,
    OrderFactory,
    OrderLineFactory,
    ShopFactory,
    SkuFactory,
    SupplierFactory,
    WarehouseFactory,
)
from tests.inventory.test_concurrency import platform_order, run_together
from tkerp.tenancy import tenant_context

pytestmark = pytest.mark.django_db(transaction=True)

IMPORT_COLUMNS = [c for c in CSV_COLUMNS if c not in ("status", "total")]


def order_file(rows: list[tuple[str, str]]) -> tablib.Dataset:
    """(order id, SKU code) per line; the rest is a complete US address."""
    data = tablib.Dataset(headers=IMPORT_COLUMNS)
    for order_id, code in rows:
        row = {
            "shop": "Alpha CSV",
            "order_id": order_id,
            "recipient_name": "Jamie Buyer",
            "address_line1": "1 Market St",
            "city": "San Francisco",
            "state": "CA",
            "postal_code": "94105",
            "country": "US",
            "sku": code,
            "quantity": "1",
            "unit_price": "10.00",
        }
        data.append([row.get(column, "") for column in IMPORT_COLUMNS])
    return data


def wait_for_a_lock_wait() -> None:
    """Return once some session of this database waits for a row lock (bounded)."""
    for _ in range(600):
        with connection.cursor() as cursor:
            # pg_locks, not pg_stat_activity's wait_event: the application role (row-level
            # security) may not read other sessions' wait details, only their pid and database.
            cursor.execute(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE a.datname = current_database() AND NOT l.granted"
            )
            if cursor.fetchone()[0]:
                return
        time.sleep(0.05)
    raise AssertionError("the import never reached the locked row")


ROUNDS = 3


def test_tenant_b_syncs_while_tenant_a_imports_orders_again_and_again(tenant_a, tenant_b):
    """Each round pauses tenant A's import right after it took its last line id (the window
    where the sequence reset did its harm), lets tenant B store a page of orders meanwhile, and
    has B store its next page once A committed."""
    manual = ShopFactory(tenant=tenant_a, name="Alpha CSV", platform="manual", platform_shop_id="")
    mug = SkuFactory(tenant=tenant_a, code="A-1")
    last = SkuFactory(tenant=tenant_a, code="A-LAST")
    # One existing order per round; the file adds line A-LAST to it, on its last row.
    existing = [
        OrderLineFactory(
            order=OrderFactory(tenant=tenant_a, shop=manual, platform_order_id=f"A{round_}-OLD"),
            sku=mug,
            platform_line_id="A-1",
            unit_price=Decimal("10.00"),
            total=Decimal("10.00"),
        ).order
        for round_ in range(ROUNDS)
    ]
    shop_b = ShopFactory(tenant=tenant_b, name="Bravo TikTok")
    codes_b = [SkuFactory(tenant=tenant_b, code=f"B-{n}").code for n in range(3)]

    def page_b(name: str):
        orders = [platform_order(f"{name}-{n}", [(code, 1) for code in codes_b]) for n in (1, 2)]
        result = orders_ingest(shop=shop_b, platform_orders=orders, source="poll")
        assert not result.rejects, result.rejects

    for round_, order in enumerate(existing):
        key_held = threading.Event()
        release_key = threading.Event()
        import_parked = threading.Event()
        page_in_flight = threading.Event()
        import_done = threading.Event()

        def hold_the_last_line_key(order=order, key_held=key_held, release_key=release_key):
            # An uncommitted line with the same (order, line id) makes the import's last INSERT
            # wait after it took its id from the sequence and before `after_import`; it is
            # rolled back, so the import then goes through.
            with tenant_context(tenant_a), transaction.atomic():
                OrderLine.objects.create(
                    tenant=tenant_a, order=order, sku=last, platform_line_id="A-LAST",
                    quantity=1, unit_price=Decimal("1.00"), total=Decimal("1.00"),
                )  # fmt: skip
                key_held.set()
                assert release_key.wait(timeout=60)
                transaction.set_rollback(True)

        def tenant_a_imports(round_=round_, order=order, key_held=key_held, done=import_done):
            assert key_held.wait(timeout=60)
            try:
                rows = [
                    (f"A{round_}-NEW", "A-1"),
                    (order.platform_order_id, "A-1"),
                    (order.platform_order_id, "A-LAST"),
                ]
                with tenant_context(tenant_a):
                    result = OrderLineResource(tenant=tenant_a).import_data(
                        order_file(rows), file_name=f"round-{round_}.csv"
                    )
                problems = [str(e.error) for _, errors in result.row_errors() for e in errors]
                problems += [(r.number, r.error_dict) for r in result.invalid_rows]
                assert not problems, problems
            finally:
                done.set()

        def tenant_b_syncs(
            round_=round_, parked=import_parked, in_flight=page_in_flight, done=import_done
        ):
            assert parked.wait(timeout=60)
            # A sync page whose transaction is still open while tenant A's import finishes...
            with transaction.atomic():
                page_b(f"B{round_}a")
                in_flight.set()
                assert done.wait(timeout=60)
            # ...and the next page, stored once both committed.
            page_b(f"B{round_}b")

        def conductor(
            key_held=key_held, parked=import_parked, in_flight=page_in_flight, release=release_key
        ):
            assert key_held.wait(timeout=60)
            wait_for_a_lock_wait()  # tenant A's import waits on the held line key
            parked.set()
            assert in_flight.wait(timeout=60)
            release.set()

        errors = run_together([hold_the_last_line_key, tenant_a_imports, tenant_b_syncs, conductor])

        assert errors == [], f"round {round_}: {errors!r}"

    with tenant_context(tenant_a):
        assert Order.objects.count() == ROUNDS * 2
        assert OrderLine.objects.count() == ROUNDS * 3
    with tenant_context(tenant_b):
        assert Order.objects.count() == ROUNDS * 4
        assert OrderLine.objects.count() == ROUNDS * 4 * 3


def _files(tenant):
    shop = ShopFactory(tenant=tenant, name="Main shop")
    SkuFactory(tenant=tenant, code="MUG")
    WarehouseFactory(tenant=tenant, code="MAIN")
    SupplierFactory(tenant=tenant, code="ACME")
    service = CarrierServiceFactory(tenant=tenant)
    ShopFactory(tenant=tenant, name="Alpha CSV", platform="manual", platform_shop_id="")
    order = order_file([("M-1", "MUG")])
    return [
        (SkuResource, tablib.Dataset(["NEW", "New thing"], headers=["code", "name"])),
        (
            StockLevelResource,
            tablib.Dataset(["MUG", "MAIN", "5"], headers=["sku", "warehouse", "on_hand"]),
        ),
        (ListingResource, tablib.Dataset([shop.name, "MUG"], headers=["shop", "sku"])),
        (SupplierResource, tablib.Dataset(["ZED", "Zed"], headers=["code", "name"])),
        (
            SupplierItemResource,
            tablib.Dataset(
                ["ACME", "MUG", "AC-1"], headers=["supplier", "sku", "supplier_item_code"]
            ),
        ),
        (
            CarrierRuleResource,
            tablib.Dataset(
                ["Rule", service.carrier.code, service.code],
                headers=["name", "carrier", "service"],
            ),
        ),
        (OrderLineResource, order),
    ]


def test_no_resource_touches_a_sequence_when_its_import_creates_rows(tenant_a):
    with tenant_context(tenant_a):
        for resource_class, dataset in _files(tenant_a):
            with CaptureQueriesContext(connection) as queries:
                result = resource_class(tenant=tenant_a).import_data(dataset)

            assert not result.has_errors() and not result.has_validation_errors(), resource_class
            assert result.totals["new"] == 1, resource_class
            statements = [q["sql"] for q in queries.captured_queries]
            assert not [sql for sql in statements if "setval" in sql.lower()], resource_class


def test_a_job_delivered_twice_at_once_runs_once(tenant_a, settings, tmp_path):
    """Two workers given the same import job at the same moment (a broker re-delivery): one
    runs it, the other leaves it alone, and every row is written once."""
    from tkerp.imports import StoredUpload, import_job_start
    from tkerp.jobs import job_execute
    from tkerp.models import Job, JobStatus

    settings.MEDIA_ROOT = tmp_path
    stored = StoredUpload(name="imports/skus.csv", rows=300, encoding="utf-8", delimiter=",")
    stored.path.parent.mkdir(parents=True)
    stored.path.write_text("code,name\n" + "".join(f"S-{n},Thing {n}\n" for n in range(300)))
    with tenant_context(tenant_a):
        job = import_job_start(
            tenant=tenant_a, user=None, resource_class=SkuResource, stored=stored, file_name="s.csv"
        )
    outcomes = []

    def worker():
        outcomes.append(job_execute(job_id=job.pk, tenant=tenant_a))

    errors = run_together([worker, worker])

    assert errors == []
    assert sum(outcome is not None for outcome in outcomes) == 1
    job = Job._base_manager.get(pk=job.pk)
    assert (job.status, job.attempts, job.result["new"]) == (JobStatus.SUCCEEDED, 1, 300)
    with tenant_context(tenant_a):
        assert Sku.objects.count() == 300
