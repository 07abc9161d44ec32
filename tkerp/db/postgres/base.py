"""Django's PostgreSQL backend, with the database's own tenant wall (row-level security).

Three things are added, and nothing else changes:

- **The application role.** Every connection runs `SET ROLE <TKERP_DB_APP_ROLE>` (default
  `tkerp_app`, a NOLOGIN role that is neither owner nor superuser, created by `tkerp.rls` after
  migrations), so the row-level security policies apply to everything the application does.
  Migrations, `flush` and test-database creation run as the login role, the tables' owner, inside
  `database_owner()`.
- **The tenant scope, sent to the server.** Before each statement the connection makes two
  settings match the Python scope of `tkerp.tenancy`: `tkerp.tenant_id` (the tenant in scope, or
  empty) and `tkerp.all_tenants` (`on` inside `all_tenants()`). The policies of `tkerp.rls` read
  them. They are set at session level and only when they differ from the last value sent on this
  connection, so a request scoped to one tenant pays one `set_config` for all its queries. The
  remembered value is forgotten whenever the server may have undone it (a rollback, a rollback to
  a savepoint, a new or closed connection), so it is never stale.
- **No ignored triggers, said once.** Every connection starts with `pgtrigger.ignore` set to an
  empty list, which spares every audited row an error raised and caught (see
  `TRIGGERS_IGNORE_NONE_SQL`).

Why session level rather than `set_config(..., true)` (transaction-local): Django runs most
statements in autocommit mode, where a transaction-local setting vanishes before the next
statement; it would have to be resent with every query outside `atomic()`. Session-level values
live exactly as long as Django's (persistent, per-thread) connection, which is what the cache
tracks. The price: a pooler that hands one server connection to several clients between
transactions (PgBouncer `pool_mode = transaction`) must not sit between tkerp and PostgreSQL;
session pooling, or none, is required (README, "Row-level security").
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.db.backends.postgresql import base

# tkerp.tenancy defines models, which need this backend loaded first: import it on first use.
tenancy = None

SET_SCOPE_SQL = (
    "SELECT set_config('tkerp.tenant_id', %s, false), set_config('tkerp.all_tenants', %s, false)"
)

# Every audit trigger (django-pgtrigger) first asks whether it is ignored: it reads the setting
# `pgtrigger.ignore` inside a PL/pgSQL `EXCEPTION` block, which on a connection that never set
# it raises and catches an error (a subtransaction rolled back) for every row written, and each
# one costs more than the last within a transaction. Holding an empty list at session level
# makes the read succeed: 4,000 audited rows in one statement went from 105 to 32.5 µs a row
# (bench/audit_triggers.py). `pgtrigger.ignore()` still works on top of it (tested); it leaves
# the connection unset when it ends, which costs speed only (tkerp never calls it).
TRIGGERS_IGNORE_NONE_SQL = "SELECT set_config('pgtrigger.ignore', '{}', false)"

TRANSACTION_FAILED = base.Database.pq.TransactionStatus.INERROR

NOTHING = ("", "off")
EVERYTHING = ("", "on")

# What a statement run with no tenant scope sees: nothing. Only the test suite widens it, for
# the test body's own look at the database (tests/conftest.py); every request is strict again
# (TenantMiddleware), and so is tests/tkerp/test_rls.py.
_unscoped: ContextVar[tuple[str, str]] = ContextVar("tkerp_db_unscoped", default=NOTHING)

# >0 while the block of `database_owner()` runs: connections opened then skip SET ROLE.
_owner_depth = 0


def scope_settings() -> tuple[str, str]:
    """The (`tkerp.tenant_id`, `tkerp.all_tenants`) values the current Python scope stands for."""
    global tenancy
    if tenancy is None:
        from tkerp import tenancy
    scope = tenancy.get_scope()
    if scope is None:
        return _unscoped.get()
    if scope is tenancy.ALL_TENANTS:
        return EVERYTHING
    return (str(scope.pk), "off")


@contextmanager
def unscoped_sees(setting: tuple[str, str]) -> Iterator[None]:
    """Run the block with statements that have no tenant scope seeing `setting` (NOTHING, the
    production rule, or EVERYTHING: the test suite's observer)."""
    token = _unscoped.set(setting)
    try:
        yield
    finally:
        _unscoped.reset(token)


def owner_mode() -> bool:
    """True inside `database_owner()`."""
    return _owner_depth > 0


def app_role() -> str:
    """The role the application runs as; empty when `DATABASE_URL` already logs in as it."""
    return settings.TKERP_DB_APP_ROLE


@contextmanager
def database_owner() -> Iterator[None]:
    """Run the block as the login role (the tables' owner) with every tenant in scope.

    For migrations, `flush` and test-database creation only. Open connections are closed on the
    way in and out (never inside a transaction: a rolled-back `SET ROLE` would leave a connection
    on the wrong role), so each next connection starts with the right role.
    """
    global _owner_depth
    from tkerp.tenancy import all_tenants

    _close_connections()
    _owner_depth += 1
    try:
        with all_tenants():
            yield
    finally:
        _owner_depth -= 1
        if _owner_depth == 0:
            _close_connections()


def _close_connections() -> None:
    for connection in connections.all(initialized_only=True):
        if isinstance(connection, DatabaseWrapper) and connection.connection is not None:
            if connection.in_atomic_block:
                raise RuntimeError("database_owner() cannot switch roles inside a transaction")
            connection.close()


class DatabaseWrapper(base.DatabaseWrapper):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The (tenant_id, all_tenants) pair the server holds for this connection; None: unknown.
        self.rls_scope_sent: tuple[str, str] | None = None
        self.execute_wrappers.append(self._send_scope)

    def _send_scope(self, execute, sql, params, many, context):
        wanted = scope_settings()
        # An aborted transaction runs nothing but its rollback (which forgets the value).
        if (
            wanted == self.rls_scope_sent
            or self.connection.info.transaction_status == TRANSACTION_FAILED
        ):
            return execute(sql, params, many, context)
        if isinstance(sql, str) and sql.lstrip()[:15].upper() == "SET TRANSACTION":
            # It must be its transaction's first statement: the scope follows it.
            result = execute(sql, params, many, context)
            self._scope_send(context, wanted)
            return result
        self._scope_send(context, wanted)
        return execute(sql, params, many, context)

    def _scope_send(self, context, wanted: tuple[str, str]) -> None:
        # The raw driver cursor: the statement is plumbing, not another wrapped query.
        context["cursor"].cursor.execute(SET_SCOPE_SQL, wanted)
        self.rls_scope_sent = wanted

    def _configure_role(self, connection):
        role = app_role()
        if not role or _owner_depth:
            return False
        try:
            with connection.cursor() as cursor:
                cursor.execute(self.ops.compose_sql("SET ROLE %s", [role]))
        except base.Database.Error as error:
            raise ImproperlyConfigured(
                f"tkerp could not switch to its application role {role!r} ({error}). Run "
                "`manage.py migrate` as the database owner, which creates the role and grants it "
                "to the login user, or have a DBA do so (README, 'Row-level security')."
            ) from error
        return True

    def _configure_connection(self, connection):
        super()._configure_connection(connection)
        with connection.cursor() as cursor:
            cursor.execute(TRIGGERS_IGNORE_NONE_SQL)
        return True  # Django commits: the setting must outlive this first transaction

    def init_connection_state(self):
        self.rls_scope_sent = None
        super().init_connection_state()

    def _rollback(self):
        self.rls_scope_sent = None
        return super()._rollback()

    def _savepoint_rollback(self, sid):
        try:
            return super()._savepoint_rollback(sid)
        finally:
            self.rls_scope_sent = None

    def _close(self):
        self.rls_scope_sent = None
        return super()._close()

    @contextmanager
    def _nodb_cursor(self):
        # CREATE/DROP DATABASE (test databases) need the login role, not the application's.
        global _owner_depth
        _owner_depth += 1
        try:
            with super()._nodb_cursor() as cursor:
                yield cursor
        finally:
            _owner_depth -= 1
