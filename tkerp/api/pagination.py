"""Pagination of API lists: opaque cursors over a stable ordering, bounded page sizes."""

from rest_framework.pagination import CursorPagination


class ApiCursorPagination(CursorPagination):
    """`?cursor=` pages of `limit` (default 50, at most 200) rows, oldest change first, so a
    client polling with `updated_since` walks forward without gaps or repeats."""

    page_size = 50
    max_page_size = 200
    page_size_query_param = "limit"
    ordering = ("updated_at", "id")
    invalid_cursor_message = "The cursor is not one this API gave out; start again without it."
