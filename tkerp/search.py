"""Back-office search that cannot be turned into a denial of service, and that uses indexes.

Django's admin search turns every word of the search box into one `ILIKE '%word%'` per search
field, all ANDed: 6,000 pasted words made a query the database worked on for minutes. Two walls:

- `search_capped` keeps the first `MAX_SEARCH_TERMS` words of at most `MAX_SEARCH_LENGTH`
  characters, and the admin says so in a message, never an error page (`tkerp.admin`: every
  tenant admin is capped);
- `search_filter` matches each word with one query per table, UNION ALL, so every arm is a
  condition a trigram index (`pg_trgm`, GIN on `UPPER(column)`, the expression Django's
  `icontains` compares) can answer, instead of an OR spanning joined tables that only a
  sequential scan can. The indexes live in each model's `Meta.indexes` (`trigram_index`).

Under row-level security (`tkerp.rls`) PostgreSQL evaluates a table's policy before any
condition whose functions are not `LEAKPROOF`, and `upper()` and `LIKE` are not: a plain
`UPPER(column) LIKE ...` under the application role scans every row of the tenant and never
uses its trigram index. So each trigram-indexed column has a search function
(`search_functions_install`, after every migrate): `SECURITY DEFINER` (it runs as the tables'
owner, whose plan may use the index), it returns the ids of the rows whose column matches the
pattern *and* whose tenant is the one the connection's scope names (the policies' own
conditions, written into it), and only the application role may call it. Search asks it for
ids, and the rows are then read under the policies as always: the function can only narrow
what the wall lets through. Where the owner is neither a superuser nor `BYPASSRLS`, the policies
apply inside it too: search is then as correct and as slow as without it.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import reduce
from operator import or_

from django.apps import apps
from django.contrib.postgres.indexes import GinIndex, OpClass
from django.db import connection
from django.db.models import F, Model, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.db.models.functions import Upper
from django.utils.text import smart_split, unescape_string_literal

MAX_SEARCH_TERMS = 10
MAX_SEARCH_LENGTH = 200


@dataclass(frozen=True, slots=True)
class CappedSearch:
    """The words a search will use, and how many were given (for the admin's message)."""

    terms: tuple[str, ...]
    given: int
    cut: bool

    @property
    def text(self) -> str:
        """The kept words as a search box would hold them (phrases quoted again)."""
        return " ".join(
            '"' + term.replace("\\", "\\\\").replace('"', '\\"') + '"'
            if any(char.isspace() or char in "\"'" for char in term)
            else term
            for term in self.terms
        )


def _words(text: str) -> list[str]:
    words = []
    for bit in smart_split(text):
        if bit.startswith(('"', "'")) and bit[0] == bit[-1] and len(bit) > 1:
            bit = unescape_string_literal(bit)
        if bit.strip():
            words.append(bit)
    return words


def search_capped(text: str) -> CappedSearch:
    """The first `MAX_SEARCH_TERMS` words (quoted phrases count as one) of the first
    `MAX_SEARCH_LENGTH` characters of `text`, and whether anything was left out."""
    text = text or ""
    words = _words(text[:MAX_SEARCH_LENGTH])
    kept = tuple(words[:MAX_SEARCH_TERMS])
    if len(text) <= MAX_SEARCH_LENGTH:
        return CappedSearch(terms=kept, given=len(words), cut=len(words) > len(kept))
    # Past the length cap only a count for the message is needed: never parse all of it.
    return CappedSearch(terms=kept, given=max(len(text.split()), len(kept)), cut=True)


def search_cut_message(capped: CappedSearch) -> str:
    return (
        f"The search was too long: it used the first {len(capped.terms)} of {capped.given:,} "
        f"words (at most {MAX_SEARCH_TERMS} words and {MAX_SEARCH_LENGTH} characters are "
        "searched)."
    )


def search_filter(*, queryset: QuerySet, fields: list[str] | tuple[str, ...], terms) -> QuerySet:
    """Rows of `queryset` where every term occurs (case-insensitively) in one of `fields`.

    Fields of the model itself are ORed in one arm; each path through a relation
    (`lines__seller_sku`) is an arm of its own, so its index on the related table answers it;
    the arms are combined with UNION ALL inside `pk IN (...)`. A trigram-indexed column is
    matched through its search function (the module docstring), any other with `icontains`.
    The arms are built from the model's default manager, so they keep the tenant scope.
    """
    model = queryset.model
    manager = model._default_manager
    own = [field for field in fields if "__" not in field]
    indexed = [field for field in own if field in trigram_columns(model)]
    plain = [field for field in own if field not in indexed]
    # Each path through a relation: (path, its prefix, its field, the related model when the
    # field is trigram-indexed there, else None).
    related = []
    for path in (field for field in fields if "__" in field):
        prefix, field = path.rsplit("__", 1)
        target = _model_at(model, prefix)
        related.append((path, prefix, field, target if field in trigram_columns(target) else None))
    for term in terms:
        pattern = "%" + connection.ops.prep_for_like_query(term) + "%"
        arms = []
        if indexed:
            arms.append(manager.filter(pk__in=_ids_matching(model, indexed, pattern)))
        if plain:
            arms.append(
                manager.filter(reduce(or_, (Q(**{f"{field}__icontains": term}) for field in plain)))
            )
        for path, prefix, field, target in related:
            if target is not None:
                arms.append(
                    manager.filter(**{f"{prefix}__in": _ids_matching(target, [field], pattern)})
                )
            else:
                arms.append(manager.filter(**{f"{path}__icontains": term}))
        arms = [arm.order_by().values("pk") for arm in arms]
        queryset = queryset.filter(pk__in=arms[0].union(*arms[1:], all=True))
    return queryset


def _ids_matching(model: type[Model], fields: list[str], pattern: str) -> RawSQL:
    """The ids of `model`'s rows (of the scope's tenant) where one of `fields` matches the LIKE
    `pattern`, upper-cased by PostgreSQL as `icontains` does, through the search functions."""
    columns = trigram_columns(model)
    sql = " UNION ALL ".join(
        f"SELECT {search_function_name(model._meta.db_table, columns[field])}(UPPER(%s))"
        for field in fields
    )
    return RawSQL(sql, [pattern] * len(fields))


def _model_at(model: type[Model], path: str) -> type[Model]:
    for name in path.split("__"):
        model = model._meta.get_field(name).related_model
    return model


def trigram_index(*, table: str, field: str) -> GinIndex:
    """A GIN trigram index on `UPPER(field)`: what `icontains` compares on PostgreSQL."""
    return GinIndex(OpClass(Upper(field), name="gin_trgm_ops"), name=f"{table}_{field}_trgm")


def trigram_columns(model: type[Model]) -> dict[str, str]:
    """{field name: column} of `model`'s fields with a trigram index of `trigram_index`'s shape
    (read from the index itself: Django's model options keep clones of `Meta.indexes`)."""
    meta = model._meta
    columns = {}
    for index in meta.indexes:
        if not isinstance(index, GinIndex) or len(index.expressions) != 1:
            continue
        opclass = index.expressions[0]
        if not isinstance(opclass, OpClass) or opclass.extra.get("name") != "gin_trgm_ops":
            continue
        [upper] = opclass.get_source_expressions()
        if isinstance(upper, Upper) and isinstance(upper.get_source_expressions()[0], F):
            field = meta.get_field(upper.get_source_expressions()[0].name)
            columns[field.name] = field.column
    return columns


# --- the search functions ------------------------------------------------------------------

SEARCH_FUNCTION_PREFIX = "tkerp_search_"


def search_function_name(table: str, column: str) -> str:
    """The search function of one trigram-indexed column (within PostgreSQL's 63 characters)."""
    name = f"{SEARCH_FUNCTION_PREFIX}{table}__{column}"
    if len(name) > 63:
        digest = zlib.crc32(name.encode())
        name = f"{name[:54]}_{digest:08x}"
    return name


def search_functions() -> dict[str, tuple[type[Model], str]]:
    """{function name: (model, column)} for every trigram index of the model registry."""
    functions = {}
    for model in apps.get_models():
        for column in trigram_columns(model).values():
            functions[search_function_name(model._meta.db_table, column)] = (model, column)
    return functions


def search_functions_install(cursor, *, role: str | None) -> None:
    """(Re)create every search function, callable by its owner and `role` (the application
    role) alone, and drop those whose index is gone. Idempotent; run by the tables' owner after
    every migrate (`tkerp.rls.rls_install`)."""
    from tkerp.rls import ALL_TENANTS_CONDITION, TENANT_CONDITION

    quote_name = connection.ops.quote_name
    cursor.execute("SELECT current_schema()")
    schema = quote_name(cursor.fetchone()[0])
    wanted = search_functions()
    for name, (model, column) in wanted.items():
        function = f"{schema}.{quote_name(name)}"
        table = f"{schema}.{quote_name(model._meta.db_table)}"
        cursor.execute(
            f"CREATE OR REPLACE FUNCTION {function}(pattern text) RETURNS SETOF bigint "
            "LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$ "
            f"SELECT {quote_name(model._meta.pk.column)}::bigint FROM {table} "
            f"WHERE UPPER({quote_name(column)}::text) LIKE pattern "
            f"AND ({TENANT_CONDITION} OR {ALL_TENANTS_CONDITION}) $$"
        )
        cursor.execute(f"REVOKE ALL ON FUNCTION {function}(text) FROM PUBLIC")
        if role:
            cursor.execute(f"GRANT EXECUTE ON FUNCTION {function}(text) TO {quote_name(role)}")
    for name in sorted(set(search_functions_present(cursor)) - set(wanted)):
        cursor.execute(f"DROP FUNCTION {schema}.{quote_name(name)}(text)")


def search_functions_present(cursor) -> list[str]:
    """The search functions of the current schema, by name."""
    cursor.execute(
        "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = current_schema() AND starts_with(p.proname::text, %s)",
        [SEARCH_FUNCTION_PREFIX],
    )
    return [row[0] for row in cursor.fetchall()]
