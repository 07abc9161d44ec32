"""Pagination of API lists: opaque cursors over a stable ordering, bounded page sizes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db import connection, models
from rest_framework.exceptions import NotFound
from rest_framework.pagination import Cursor, CursorPagination

from tkerp.dates import datetime_in_range

Row = TypeVar("Row")


class ApiCursorPagination(CursorPagination):
    """`?cursor=` pages of `limit` (default 50, at most 200) rows, oldest change first, so a
    client polling with `updated_since` walks forward without gaps or repeats."""

    page_size = 50
    max_page_size = 200
    page_size_query_param = "limit"
    ordering = ("updated_at", "id")
    invalid_cursor_message = "The cursor is not one this API gave out; start again without it."

    def paginate_queryset(self, queryset, request, view=None):
        self._cursor_model = queryset.model
        try:
            return super().paginate_queryset(queryset, request, view)
        except (ValueError, TypeError, OverflowError, ValidationError):
            # Whatever `decode_cursor` let through that the filter still could not take.
            raise NotFound(self.invalid_cursor_message) from None

    def decode_cursor(self, request):
        """DRF's cursor, its position checked against the ordering field: DRF puts it straight
        into the query's filter, so a made-up one (`p=abc`, a day 45, a 400-digit id) was a
        server error instead of a 404."""
        cursor = super().decode_cursor(request)
        model = getattr(self, "_cursor_model", None)
        if cursor is None or cursor.position is None or model is None:
            return cursor
        if not _position_fits(model, self.ordering[0].lstrip("-"), cursor.position):
            raise NotFound(self.invalid_cursor_message)
        return cursor


def _position_fits(model, name: str, position: str) -> bool:
    """True when `position` (a cursor's text) is a value of `model`'s field `name` that
    PostgreSQL can compare with: the field's type, in its range, no NUL."""
    if "\x00" in position or len(position) > 255:
        return False
    try:
        field = model._meta.get_field(name)
    except FieldDoesNotExist:
        return True  # not a plain column; `paginate_queryset` catches what the filter refuses
    try:
        value = field.to_python(position)
    except (ValidationError, ValueError, TypeError, OverflowError):
        return False
    if isinstance(field, models.DateTimeField):
        return isinstance(value, datetime) and value.tzinfo is not None and datetime_in_range(value)
    if isinstance(field, models.IntegerField):
        low, high = connection.ops.integer_field_range(field.get_internal_type())
        return (low is None or value >= low) and (high is None or value <= high)
    return True


@dataclass(frozen=True)
class Keyset:
    """Which page a request asks for: up to `limit` rows after `position` (an `(updated_at,
    id)` pair; None: from the start), or with `reverse`, the `limit` rows just before it."""

    limit: int
    reverse: bool = False
    position: tuple[datetime, int] | None = None


class KeysetPagination(ApiCursorPagination):
    """The same `cursor` and `limit` parameters and links, for lists whose page is read by one
    SQL statement of the caller's (`keyset`, then `page`) rather than from a queryset.

    A cursor holds the `(updated_at, id)` of the row it continues from, so the next page starts
    with `(updated_at, id) > position` through the index, however many rows share a timestamp
    (DRF's cursor keeps the timestamp alone and counts past its ties)."""

    def keyset(self, request) -> Keyset:
        self.base_url = request.build_absolute_uri()
        limit = self.get_page_size(request)
        cursor = self.decode_cursor(request)
        if cursor is None:
            return Keyset(limit)
        try:
            stamp, pk = (cursor.position or "").split("|")
            position = (datetime.fromisoformat(stamp), int(pk))
        except ValueError:
            raise NotFound(self.invalid_cursor_message) from None
        if position[0].tzinfo is None or cursor.offset or not 0 < position[1] < 2**63:
            raise NotFound(self.invalid_cursor_message)
        return Keyset(limit, cursor.reverse, position)

    def page(
        self, keyset: Keyset, rows: Sequence[Row], position: Callable[[Row], tuple[str, int]]
    ) -> tuple[list[Row], str | None, str | None]:
        """The page's rows in list order with its next and previous links, from `rows`: up to
        `limit + 1` of them read in walking order (nearest the position first), the extra one
        only saying there is more. `position(row)` is the row's updated_at (ISO 8601, to the
        microsecond) and id."""
        more = len(rows) > keyset.limit
        rows = list(rows[: keyset.limit])
        if keyset.reverse:
            rows.reverse()
        first = position(rows[0]) if rows else None
        last = position(rows[-1]) if rows else None
        if keyset.reverse:
            # Walking back from a page: the rows after these exist (that page).
            following = self._link(last, reverse=False) if last else None
            preceding = self._link(first, reverse=True) if more else None
        else:
            following = self._link(last, reverse=False) if more else None
            preceding = self._link(first, reverse=True) if first and keyset.position else None
        return rows, following, preceding

    def _link(self, position: tuple[str, int], *, reverse: bool) -> str:
        stamp, pk = position
        return self.encode_cursor(Cursor(offset=0, reverse=reverse, position=f"{stamp}|{pk}"))
