"""`field__any=ids`: `field = ANY(%s)`, the whole list bound as one array parameter.

A spike's batch names thousands of ids. `__in=[...]` binds each as its own parameter, which
costs more than the query; `__in=(SELECT unnest(...))` makes PostgreSQL guess ten rows and, with
a fresh table's statistics, rescan the list for every row of the other side (34 s for one page of
100 parcels in bench/sync_spike.py). `= ANY(array)` is estimated from the array itself and
drives an index scan on the column.
"""

from __future__ import annotations

from django.db.models import Field, ForeignObject, Lookup


class AnyOf(Lookup):
    lookup_name = "any"
    prepare_rhs = False

    def as_sql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        field = self.lhs.output_field
        values = [field.get_db_prep_value(value, connection) for value in self.rhs]
        array_type = field.cast_db_type(connection)
        return f"{lhs} = ANY(%s::{array_type}[])", [*lhs_params, values]


def lookups_register() -> None:
    Field.register_lookup(AnyOf)
    ForeignObject.register_lookup(AnyOf)  # related fields keep a lookup table of their own
