"""Row-level security: the database refuses another tenant's rows even to raw SQL.

The tables are taken from the model registry (`tkerp.rls.tenant_tables`) and from the catalog,
so a new tenant-owned model is covered without editing this file. Rows are seeded with every
factory of `tests/factories.py`, two tenants each.
"""

import inspect

import pytest
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction
from django.http import HttpResponse
from django.test import RequestFactory
from factory.django import DjangoModelFactory

from tests import factories
from tests.factories import OrderFactory, SkuFactory
from tkerp import rls
from tkerp.db.postgres.base import EVERYTHING, unscoped_sees
from tkerp.middleware import TenantMiddleware
from tkerp.search import search_functions
from tkerp.tenancy import TenantOwnedModel, all_tenants, tenant_context

TENANT_TABLES = rls.tenant_tables()

# Unscoped statements see nothing here, as in production (tests/conftest.py widens them for
# other test bodies).
pytestmark = pytest.mark.usefixtures("strict_database")


def raw(sql, params=None):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def count(table: str) -> int:
    return raw(f'SELECT count(*) FROM "{table}"')[0][0]


@pytest.fixture
def world(db):
    """Two rows of every tenant-owned model that has a factory, each in its own tenants."""
    made = set()
    for _, factory_class in inspect.getmembers(factories, inspect.isclass):
        if not issubclass(factory_class, DjangoModelFactory):
            continue
        model = factory_class._meta.model
        if model is not None and issubclass(model, TenantOwnedModel):
            factory_class.create_batch(2)
            made.add(model._meta.db_table)
    return made


def test_the_registry_has_tenant_tables():
    assert {"orders_order", "inventory_stocklevel", "shops_membership"} <= set(TENANT_TABLES)


@pytest.mark.django_db
def test_every_table_with_a_tenant_column_has_rls_enabled_forced_and_both_policies():
    # Given the catalog of the migrated test database
    tables = {
        name
        for (name,) in raw(
            "SELECT c.relname FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') "
            "AND a.attname = 'tenant_id' AND NOT a.attisdropped "
            "AND c.relrowsecurity AND c.relforcerowsecurity"
        )
    }
    # Then every tenant table of the registry is enabled and forced, and nothing lacks a policy
    assert set(TENANT_TABLES) <= tables
    assert rls.rls_problems() == []


@pytest.mark.django_db
def test_the_application_runs_as_a_role_that_is_neither_owner_nor_superuser():
    # The connection's own temporary tables (rows_copy's staging, made by whichever test used
    # this connection first) are the role's, and no one else's to see: they do not count.
    [(user, superuser, bypass, owns)] = raw(
        "SELECT current_user, r.rolsuper, r.rolbypassrls, "
        "EXISTS (SELECT 1 FROM pg_tables t WHERE t.tableowner = current_user "
        "AND t.schemaname NOT LIKE 'pg\\_temp\\_%%') "
        "FROM pg_roles r WHERE r.rolname = current_user"
    )
    assert (user, superuser, bypass, owns) == ("tkerp_app", False, False, False)


@pytest.mark.django_db
def test_raw_sql_with_no_tenant_set_reads_no_row_of_any_tenant_table(world):
    # Given rows of several tenants in every table a factory can fill
    with all_tenants():
        seeded = {table: count(table) for table in TENANT_TABLES}
    assert all(seeded[table] >= 2 for table in world)
    # When raw SQL runs with no tenant in scope, Then it reads nothing from any tenant table
    assert {table: count(table) for table in TENANT_TABLES} == dict.fromkeys(TENANT_TABLES, 0)


@pytest.mark.django_db
def test_raw_sql_under_one_tenant_reads_none_of_the_other_tenants_rows(world):
    # Given every table's rows per tenant, read with every tenant in scope
    grouped = 'SELECT tenant_id, count(*) FROM "{}" GROUP BY tenant_id'
    with all_tenants():
        everyone = {table: dict(raw(grouped.format(table))) for table in TENANT_TABLES}
        tenants = list(factories.Tenant.objects.all())
    assert len(tenants) > 2
    for tenant in tenants:
        # When raw SQL runs under that one tenant
        with tenant_context(tenant):
            seen = {table: dict(raw(grouped.format(table))) for table in TENANT_TABLES}
        # Then each table shows exactly that tenant's rows, nobody else's
        expected = {
            table: {tenant.pk: rows[tenant.pk]} if tenant.pk in rows else {}
            for table, rows in everyone.items()
        }
        assert seen == expected, f"tenant {tenant.pk} sees other tenants' rows"


@pytest.mark.django_db
def test_tenant_a_cannot_change_move_or_plant_tenant_b_rows(tenant_a, tenant_b):
    sku_a = SkuFactory(tenant=tenant_a, code="A-1")
    sku_b = SkuFactory(tenant=tenant_b, code="B-1", name="Bravo thing")
    with tenant_context(tenant_a):
        update = "UPDATE inventory_sku SET name = 'taken' WHERE id = %s RETURNING id"
        assert raw(update, [sku_b.pk]) == []
        assert raw("DELETE FROM inventory_sku WHERE id = %s RETURNING id", [sku_b.pk]) == []
        with pytest.raises(DatabaseError, match="row-level security"), transaction.atomic():
            raw("UPDATE inventory_sku SET tenant_id = %s WHERE id = %s", [tenant_b.pk, sku_a.pk])
        with pytest.raises(DatabaseError, match="row-level security"), transaction.atomic():
            SkuFactory.build(tenant=tenant_b, code="B-2").save()
    with all_tenants():
        assert raw("SELECT name FROM inventory_sku WHERE id = %s", [sku_b.pk]) == [("Bravo thing",)]
        assert count("inventory_sku") == 2


@pytest.mark.django_db
def test_the_base_manager_is_walled_too(tenant_a, tenant_b):
    order_b = OrderFactory(tenant=tenant_b)
    with tenant_context(tenant_a):
        assert not type(order_b)._base_manager.filter(pk=order_b.pk).exists()
    assert not type(order_b)._base_manager.filter(pk=order_b.pk).exists()


@pytest.mark.django_db
def test_the_scope_sent_is_never_stale_after_a_savepoint_rollback(tenant_a, tenant_b):
    # Given a tenant A row, and the scope sent inside a savepoint that then rolls back
    SkuFactory(tenant=tenant_a, code="A-1")
    with tenant_context(tenant_a):
        with pytest.raises(RuntimeError), transaction.atomic():
            assert count("inventory_sku") == 1
            raise RuntimeError("undo: the server forgets tkerp.tenant_id")
        # Then the next statement under the same scope still sees A's row
        assert count("inventory_sku") == 1
        assert raw("SELECT current_setting('tkerp.tenant_id')") == [(str(tenant_a.pk),)]


@pytest.mark.django_db(transaction=True)
def test_a_transaction_may_still_set_its_isolation_level_first(tenant_a, tenant_b):
    """SET TRANSACTION must be a transaction's first statement, and the scope is sent before
    the first statement under a new scope: it is sent after that one instead."""
    SkuFactory(tenant=tenant_a, code="A-1")
    SkuFactory(tenant=tenant_b, code="B-1")
    with tenant_context(tenant_a), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        assert raw("SHOW transaction_isolation") == [("repeatable read",)]
        assert count("inventory_sku") == 1


@pytest.mark.django_db
def test_a_request_never_inherits_a_wider_database_scope(tenant_a):
    # Given unscoped statements that would see every tenant (the test suite's observer)
    OrderFactory(tenant=tenant_a)
    seen = {}

    def view(request):
        seen["orders"] = count("orders_order")
        return HttpResponse()

    with unscoped_sees(EVERYTHING):
        assert count("orders_order") == 1
        # When an anonymous request runs, Then its unscoped statements see nothing
        request = RequestFactory().get("/")
        request.user = AnonymousUser()
        request.session = {}
        TenantMiddleware(view)(request)
    assert seen == {"orders": 0}


@pytest.mark.django_db
def test_a_link_to_another_tenants_row_is_still_refused_when_rls_hides_that_row(tenant_a, tenant_b):
    # Given tenant B's SKU, invisible to tenant A at the database
    sku_b = SkuFactory(tenant=tenant_b)
    warehouse_a = factories.WarehouseFactory(tenant=tenant_a)
    level = factories.StockLevel(tenant=tenant_a, sku_id=sku_b.pk, warehouse=warehouse_a)
    # When tenant A validates a stock level pointing at it, Then the link is refused
    with tenant_context(tenant_a), pytest.raises(ValidationError) as excinfo:
        level.check_same_tenant()
    assert "sku" in excinfo.value.message_dict


# The search functions (tkerp.search) run as the tables' owner, past the policies, so that a
# trigram index can answer search: each must keep the wall itself.
SEARCH_FUNCTIONS = search_functions()


def test_every_trigram_index_has_a_search_function():
    assert {(model._meta.db_table, column) for model, column in SEARCH_FUNCTIONS.values()} >= {
        ("orders_order", "buyer_name"),
        ("orders_orderline", "seller_sku"),
        ("logistics_shipment", "tracking_number"),
        ("inventory_sku", "code"),
    }


@pytest.mark.django_db
def test_a_search_function_returns_the_rows_of_the_scope_and_nothing_else(world):
    # Given rows of several tenants in every table a factory can fill
    def searched(name: str) -> list[int]:
        return sorted(row[0] for row in raw(f"SELECT {name}('%%')"))  # '%' matches every row

    def stored(table: str) -> list[int]:
        return sorted(row[0] for row in raw(f'SELECT id FROM "{table}"'))

    with all_tenants():
        tenants = list(factories.Tenant.objects.all())
        everyone = {name: searched(name) for name in SEARCH_FUNCTIONS}
        assert everyone == {
            name: stored(model._meta.db_table) for name, (model, _) in SEARCH_FUNCTIONS.items()
        }
    assert all(everyone.values())  # the factories filled every searched table
    # When nobody is in scope, Then a search finds nothing
    assert all(searched(name) == [] for name in SEARCH_FUNCTIONS)
    # When one tenant is, Then exactly its rows, as the policies let it read them
    for tenant in tenants:
        with tenant_context(tenant):
            assert {name: searched(name) for name in SEARCH_FUNCTIONS} == {
                name: stored(model._meta.db_table) for name, (model, _) in SEARCH_FUNCTIONS.items()
            }


@pytest.mark.django_db
def test_only_the_owner_and_the_application_role_may_call_a_search_function():
    grantees = raw(
        "SELECT p.proname, array_agg(DISTINCT COALESCE(r.rolname, 'PUBLIC') ORDER BY "
        "COALESCE(r.rolname, 'PUBLIC')) FROM pg_proc p, aclexplode(p.proacl) acl "
        "LEFT JOIN pg_roles r ON r.oid = acl.grantee WHERE p.proname = ANY(%s) GROUP BY 1",
        [list(SEARCH_FUNCTIONS)],
    )
    [(owner,)] = raw("SELECT tableowner FROM pg_tables WHERE tablename = 'orders_order'")
    assert dict(grantees) == {
        name: sorted({owner, settings.TKERP_DB_APP_ROLE}) for name in SEARCH_FUNCTIONS
    }


@pytest.mark.django_db
def test_a_missing_search_function_is_a_problem_of_the_catalog():
    name = "tkerp_search_orders_order__buyer_name"
    assert name in SEARCH_FUNCTIONS
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL ROLE NONE")  # the owner's, as migrate's
        cursor.execute(f"DROP FUNCTION {name}(text)")
        cursor.execute(
            connection.ops.compose_sql("SET LOCAL ROLE %s", [settings.TKERP_DB_APP_ROLE])
        )
    assert rls.rls_problems() == [f"orders_order: search function {name} is missing"]
    # And migrate's installation puts it back
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL ROLE NONE")
    rls.rls_install()
    with connection.cursor() as cursor:
        cursor.execute(
            connection.ops.compose_sql("SET LOCAL ROLE %s", [settings.TKERP_DB_APP_ROLE])
        )
    assert rls.rls_problems() == []
