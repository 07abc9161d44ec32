"""When the oldest transaction still open on the database began: the horizon of a feed paged by
a change stamp.

A row is stamped (`updated_at`) when its transaction writes it and seen by others when that
transaction commits, which may be after a newer stamp committed. A reader paging by stamp that
moved past the newer one would never see the older one (the provider API's parcel feed,
`logistics.api.serializers`). Every change stamped before the oldest open transaction began is
committed or will never be, so a page that stops there skips nothing.

`pg_stat_activity` shows a session's transaction start only to its own role (or a superuser,
or `pg_read_all_stats`), and the application runs as `tkerp_app` (`tkerp.rls`), which is none
of those. So the answer comes from a `SECURITY DEFINER` function owned by the tables' owner,
the login role every application session runs under, installed after every migrate
(`tkerp.rls.rls_install`), callable by its owner and the application role, and telling nothing
but one time. Where web and workers log in as a role of their own (the strictest setup in
docs/row-level-security.md), the owner sees their sessions only with `pg_read_all_stats` (or as
a member of that role); without it the function answers NULL and the feed falls back to its
settling seconds alone.
"""

from __future__ import annotations

from django.db import connection

FUNCTION = "tkerp_open_transactions_began"

#: Client sessions of this database inside a transaction, the caller's own excepted: autovacuum
#: and replication are not transactions that write rows of ours, and an idle session between
#: transactions holds nothing back.
_BODY = (
    "SELECT min(a.xact_start) FROM pg_stat_activity a "
    "WHERE a.datname = current_database() AND a.pid <> pg_backend_pid() "
    "AND a.backend_type = 'client backend' AND a.state <> 'idle' "
    "AND a.xact_start IS NOT NULL"
)


def open_transactions_function_install(cursor, *, role: str | None) -> None:
    """(Re)create the function, callable by its owner and `role` alone. Idempotent."""
    cursor.execute("SELECT current_schema()")
    function = f"{connection.ops.quote_name(cursor.fetchone()[0])}.{FUNCTION}"
    cursor.execute(
        f"CREATE OR REPLACE FUNCTION {function}() RETURNS timestamptz LANGUAGE sql VOLATILE "
        f"SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$ {_BODY} $$"
    )
    cursor.execute(f"REVOKE ALL ON FUNCTION {function}() FROM PUBLIC")
    if role:
        cursor.execute(
            f"GRANT EXECUTE ON FUNCTION {function}() TO {connection.ops.quote_name(role)}"
        )
