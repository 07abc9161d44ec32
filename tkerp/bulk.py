"""Inserting many rows at once with PostgreSQL's COPY, ids included.

`bulk_create` on PostgreSQL sends each column as one array (`INSERT ... SELECT * FROM
UNNEST(...)`), and psycopg escapes every element of a text array in Python, one regular
expression per element: for a spike's orders, lines and events (JSON payloads full of quotes)
that is most of ingest's own time. COPY formats rows in psycopg's C code and PostgreSQL parses
them without planning an INSERT.

`rows_copy(Model, instances)` does what `bulk_create` does for the simple case the pipeline
has (new rows, no conflict handling, no signals): it takes the ids from the table's sequence in
one query (`nextval` over `generate_series`), fills defaults and `auto_now`/`auto_now_add`
stamps like `save()` would, COPYs the rows and marks the instances saved. A unique violation
raises `IntegrityError` and aborts the surrounding transaction, as `bulk_create` would.

PostgreSQL refuses COPY FROM into a table with row-level security (every tenant table, see
`tkerp.rls`), so the rows are copied into a temporary table of the same columns and moved with
one INSERT ... SELECT, which the tenant policy checks row by row: a row of another tenant fails
the whole call. The temporary table is the connection's own, made once (`ON COMMIT DELETE
ROWS`) rather than created and dropped by every call: creating a table writes the system
catalogs, and a spike's pipeline made and dropped nine per page. A call is three round trips:
the ids with the staging table, the COPY, and the move (which empties the staging table).

`COPY_ENABLED` is the path switch the benches flip to measure the ORM's `bulk_create` (the old
path) in the same run; nothing else changes it.
"""

from __future__ import annotations

import datetime
import json
import zlib
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.db.models import JSONField, Model

#: False makes `rows_copy` call `bulk_create` (the benches' baseline).
COPY_ENABLED = True

#: Below this many rows an INSERT is as cheap as COPY's extra id query.
COPY_MIN_ROWS = 8

_PLAIN = (str, int, Decimal, bool, datetime.date, type(None))
_JSON_PLAIN = (str, int, bool, type(None))

# `count` ids from the table's sequence, ascending. The sequence is looked up once, in a
# materialised CTE: written inline, `pg_get_serial_sequence` (a catalog lookup) ran again for
# every id, 5 µs each against 0.25 µs for `nextval` itself (a spike takes 26,000 ids).
_IDS_SQL = (
    "WITH seq AS MATERIALIZED (SELECT pg_get_serial_sequence(%s, %s)::regclass AS id) "
    "SELECT nextval(seq.id) FROM seq, generate_series(1, %s) ORDER BY 1"
)


def ids_take(model: type[Model], count: int) -> list[int]:
    """`count` fresh ids from the table's own sequence (one query, whether or not this process
    asked before: a query count must not depend on which test ran first)."""
    if count <= 0:
        return []
    with connection.cursor() as cursor:
        cursor.execute(_IDS_SQL, [model._meta.db_table, model._meta.pk.column, count])
        return [row[0] for row in cursor.fetchall()]


def rows_copy(model: type[Model], instances: Sequence[Model]) -> list[Model]:
    """Insert `instances` (new, unsaved, all of `model`) with COPY; returns them with their
    ids set. Like `bulk_create` it sends no signal and calls no `save()`."""
    instances = list(instances)
    if not instances:
        return instances
    if not COPY_ENABLED or len(instances) < COPY_MIN_ROWS:
        return model._base_manager.bulk_create(instances)
    meta = model._meta
    pk = meta.pk
    fields = [field for field in meta.concrete_fields if field is not pk]
    stamped = [
        field
        for field in fields
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False)
    ]
    quote = connection.ops.quote_name
    names = [pk.column, *(f.column for f in fields)]
    columns = ", ".join(quote(column) for column in names)
    table = quote(meta.db_table)
    staging = quote(_staging_name(meta.db_table, names))
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        # One round trip: this connection's staging table made on first use (it outlives the
        # transaction, emptied at commit; IF NOT EXISTS because a rolled-back transaction takes
        # a table it created with it), then the ids. The ids are the last result: psycopg
        # stands on the first one, the audit's wrapper (pghistory, whenever an actor is set)
        # moves to the last, so go to the last either way.
        cursor.execute(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {staging} ON COMMIT DELETE ROWS AS "
            f"SELECT {columns} FROM {table} WITH NO DATA; {_IDS_SQL}",
            [meta.db_table, pk.column, len(instances)],
        )
        while cursor.nextset():
            pass
        ids = [row[0] for row in cursor.fetchall()]
        for instance, new_id in zip(instances, ids, strict=True):
            setattr(instance, pk.attname, new_id)
        with cursor.cursor.copy(f"COPY {staging} ({columns}) FROM STDIN") as copy:
            for instance in instances:
                for field in stamped:
                    field.pre_save(instance, True)
                row: list[Any] = [getattr(instance, pk.attname)]
                for field in fields:
                    value = getattr(instance, field.attname)
                    if not isinstance(value, _PLAIN):
                        value = field.get_db_prep_save(value, connection)
                    row.append(value)
                copy.write_row(row)
        # Moved and emptied in one statement: a second call in the same transaction finds
        # the staging table empty.
        cursor.execute(
            f"WITH moved AS (DELETE FROM {staging} RETURNING {columns}) "
            f"INSERT INTO {table} ({columns}) SELECT {columns} FROM moved"
        )
    for instance in instances:
        instance._state.adding = False
        instance._state.db = connection.alias
    return instances


def _staging_name(table: str, columns: Sequence[str]) -> str:
    """The staging table of `table` on this connection; the column list's checksum is in the
    name, so a connection that outlives a migration never copies into a stale shape."""
    checksum = zlib.crc32(" ".join([table, *columns]).encode())
    return f"tkerp_copy_{table[:40]}_{checksum:08x}"  # within PostgreSQL's 63 characters


def rows_update(
    model: type[Model], instances: Sequence[Model], fields: Sequence[str], *, tenant_id: int
) -> None:
    """Write `fields` of many saved `instances` of `model` (of the tenant `tenant_id`) in one
    UPDATE ... FROM json_to_recordset(%s): the rows travel as one JSON document.

    `bulk_update` builds a CASE WHEN per field and row, and a VALUES list binds every cell:
    psycopg parses such a statement in Python each time (too long for its cache), and text
    arrays (`unnest`) are escaped element by element with a regular expression. One JSON
    parameter is encoded in C on both sides. The caller holds the row locks.
    """
    instances = list(instances)
    if not instances:
        return
    meta = model._meta
    model_fields = [meta.get_field(name) for name in fields]
    rows = []
    for instance in instances:
        row = {"id": instance.pk}
        for field in model_fields:
            value = getattr(instance, field.attname)
            # Strings, ints, booleans and None go as they are (what the field's preparation
            # gives back for them anyway), as in `rows_copy`.
            if not isinstance(field, JSONField) and not isinstance(value, _JSON_PLAIN):
                value = field.get_db_prep_save(value, connection)
            row[field.column] = value
        rows.append(row)
    quote = connection.ops.quote_name
    definitions = ", ".join(
        [
            f"id {meta.pk.db_type(connection)}",
            *(f"{quote(field.column)} {field.db_type(connection)}" for field in model_fields),
        ]
    )
    assignments = ", ".join(
        f"{quote(field.column)} = v.{quote(field.column)}" for field in model_fields
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {quote(meta.db_table)} AS t SET {assignments} "
            f"FROM json_to_recordset(%s::json) AS v({definitions}) "
            # The id array drives the scan: joined on v.id alone, a fresh table's statistics
            # (a row or two) made PostgreSQL hash every row of the tenant for each page.
            "WHERE t.id = ANY(%s::bigint[]) AND t.id = v.id AND t.tenant_id = %s",
            [json.dumps(rows, default=_json_value), [row["id"] for row in rows], tenant_id],
        )


def _json_value(value: Any) -> str:
    """A column value JSON has no type for, as PostgreSQL reads it back: datetimes in ISO form
    with every microsecond (Django's JSON encoder drops some), decimals exactly."""
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} has no JSON form for rows_update")
