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
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce
from operator import or_

from django.contrib.postgres.indexes import GinIndex, OpClass
from django.db.models import Q, QuerySet
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

    Fields of the model itself are ORed in one arm (a BitmapOr over their trigram indexes);
    each path through a relation (`lines__seller_sku`) is an arm of its own, so its index on
    the related table answers it; the arms are combined with UNION ALL inside `pk IN (...)`.
    The arms are built from the model's default manager, so they keep the tenant scope.
    """
    own = [field for field in fields if "__" not in field]
    related = [field for field in fields if "__" in field]
    manager = queryset.model._default_manager
    for term in terms:
        arms = []
        if own:
            arms.append(
                manager.filter(reduce(or_, (Q(**{f"{field}__icontains": term}) for field in own)))
            )
        arms += [manager.filter(**{f"{path}__icontains": term}) for path in related]
        arms = [arm.order_by().values("pk") for arm in arms]
        queryset = queryset.filter(pk__in=arms[0].union(*arms[1:], all=True))
    return queryset


def trigram_index(*, table: str, field: str) -> GinIndex:
    """A GIN trigram index on `UPPER(field)`: what `icontains` compares on PostgreSQL."""
    return GinIndex(OpClass(Upper(field), name="gin_trgm_ops"), name=f"{table}_{field}_trgm")
