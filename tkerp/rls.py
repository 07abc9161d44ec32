"""Row-level security: the database's own tenant wall, behind the scoped managers.

After every `migrate` (post_migrate, run as the tables' owner) this module:

- creates the application role (`settings.TKERP_DB_APP_ROLE`, NOLOGIN, neither owner nor
  superuser), grants it to the login role (so `SET ROLE` works) and grants it the rows of every
  table (SELECT/INSERT/UPDATE/DELETE, never TRUNCATE, which ignores row-level security);
- for every table of the model registry with a `tenant_id` column: ENABLE and FORCE row-level
  security, a policy `tkerp_tenant` (the row's tenant is `tkerp.tenant_id`) and a separate,
  explicit policy `tkerp_all_tenants` (`tkerp.all_tenants` is `on`: `tkerp.tenancy.all_tenants()`).

A new tenant-owned model therefore gets its policies at its first migrate, without anyone writing
them; `rls_problems()` (the `tkerp.E010` database check, and `tests/tkerp/test_rls.py` from the
catalog) fails when a table with a `tenant_id` column lacks them. Every tenant-owned table carries
`tenant_id` itself (TenantOwnedModel), so no policy has to reach the tenant through a join.
`tkerp.db.postgres` sends both settings on each scope change.
"""

from __future__ import annotations

from django.apps import apps
from django.conf import settings
from django.db import connections

from tkerp.db.open_transactions import open_transactions_function_install
from tkerp.search import search_functions, search_functions_install, search_functions_present

TENANT_POLICY = "tkerp_tenant"
ALL_TENANTS_POLICY = "tkerp_all_tenants"

# An unset custom setting reads as NULL (missing_ok) or '' (set, then reset): both match no row.
# Each setting is read in a sub-SELECT, so PostgreSQL evaluates it once per query (an InitPlan)
# rather than once per row: the difference between a few per cent and several times slower on
# the API's joined parcel list (bench/rls.py).
TENANT_CONDITION = (
    "tenant_id = (SELECT NULLIF(current_setting('tkerp.tenant_id', true), '')::bigint)"
)
ALL_TENANTS_CONDITION = "(SELECT current_setting('tkerp.all_tenants', true)) = 'on'"


def tenant_tables() -> list[str]:
    """Every table of the model registry with a `tenant_id` column, sorted."""
    tables = set()
    for model in apps.get_models(include_auto_created=True):
        meta = model._meta
        owned = any(field.column == "tenant_id" for field in meta.local_concrete_fields)
        if owned and meta.managed and not meta.proxy and not meta.swapped:
            tables.add(meta.db_table)
    return sorted(tables)


def role_ensure(cursor, role: str) -> None:
    """Create the application role if missing and let the login role switch to it."""
    cursor.execute(
        f"DO $$ BEGIN CREATE ROLE {_quote(role)} NOLOGIN; "
        "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
    )
    cursor.execute(f"GRANT {_quote(role)} TO SESSION_USER")


def grants_apply(cursor, role: str) -> None:
    """Row privileges on every table and sequence of the schema (and on those made later)."""
    quoted = _quote(role)
    cursor.execute(f"GRANT USAGE ON SCHEMA public TO {quoted}")
    cursor.execute(
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {quoted}"
    )
    cursor.execute(f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {quoted}")
    cursor.execute(
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {quoted}"
    )
    cursor.execute(
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO "
        f"{quoted}"
    )


def policies_apply(cursor, table: str) -> None:
    """Enable, force and (re)create the two policies of one tenant table."""
    quoted = _quote(table)
    cursor.execute(f"ALTER TABLE {quoted} ENABLE ROW LEVEL SECURITY")
    cursor.execute(f"ALTER TABLE {quoted} FORCE ROW LEVEL SECURITY")
    for name, condition in (
        (TENANT_POLICY, TENANT_CONDITION),
        (ALL_TENANTS_POLICY, ALL_TENANTS_CONDITION),
    ):
        cursor.execute(f"DROP POLICY IF EXISTS {name} ON {quoted}")
        cursor.execute(
            f"CREATE POLICY {name} ON {quoted} USING ({condition}) WITH CHECK ({condition})"
        )


def rls_install(*, using: str = "default") -> None:
    """Role, grants and policies for the whole schema; idempotent (run after every migrate)."""
    role = settings.TKERP_DB_APP_ROLE
    with connections[using].cursor() as cursor:
        if role:
            role_ensure(cursor, role)
            grants_apply(cursor, role)
        for table in tenant_tables():
            policies_apply(cursor, table)
        # Search by trigram index under the policies (tkerp.search's module docstring).
        search_functions_install(cursor, role=role)
        # The parcel feed's horizon (tkerp.db.open_transactions).
        open_transactions_function_install(cursor, role=role)


def rls_problems(*, using: str = "default") -> list[str]:
    """What the catalog lacks: each tenant table without RLS enabled, forced, or a policy, and
    each trigram index without its search function."""
    with connections[using].cursor() as cursor:
        cursor.execute(
            """
            SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
                   array(SELECT p.polname::text FROM pg_policy p WHERE p.polrelid = c.oid)
            FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
              AND EXISTS (
                SELECT 1 FROM pg_attribute a
                WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
              )
            ORDER BY c.relname
            """
        )
        rows = cursor.fetchall()
        functions = set(search_functions_present(cursor))
    problems = []
    for table, enabled, forced, policies in rows:
        missing = [
            what
            for what, ok in (
                ("row level security is not enabled", enabled),
                ("row level security is not forced", forced),
                (f"policy {TENANT_POLICY} is missing", TENANT_POLICY in policies),
                (f"policy {ALL_TENANTS_POLICY} is missing", ALL_TENANTS_POLICY in policies),
            )
            if not ok
        ]
        problems.extend(f"{table}: {what}" for what in missing)
    for name, (model, _column) in sorted(search_functions().items()):
        if name not in functions:
            problems.append(f"{model._meta.db_table}: search function {name} is missing")
    return problems


def post_migrate_install(sender, using="default", **kwargs) -> None:
    rls_install(using=using)


def rls_check(app_configs=None, databases=None, **kwargs):
    """`manage.py check --database default` (CI): every tenant table has its policies."""
    from django.core import checks

    from tkerp.db.postgres import base

    # `migrate` checks before it migrates: the policies it is about to install are not a fault.
    if not databases or "default" not in databases or base.owner_mode():
        return []
    return [
        checks.Error(problem, hint="run `manage.py migrate`", id="tkerp.E010")
        for problem in rls_problems()
    ]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
