"""Order review: normalise the recipient and hold what should not ship unseen.

`orders_review` runs on every order as it arrives (orders/pipeline.py calls it after each ingest
page, whatever the door) and again only when the order's address, lines, note or total changed:
a fingerprint of those is stored on the order, and an unchanged order is skipped. It works on a
batch: orders, lines, holds and settings are read with a handful of queries, the rules run in
Python, and holds, events and statuses are written in bulk, so a 2,800-order spike costs a
fraction of its sync.

Review owns the holds it sets (its codes, no `created_by`): when a re-review finds a reason gone
(the address was fixed) it releases that hold. Manual holds, `stock.short` and holds a person
set with one of review's codes are never released here. An order with no active hold left is
`ready` once its stock is reserved (`inventory.reservations.orders_not_reserved`; until then it
stays `new`, and is decided again whenever review runs on it), any other `on_hold`; orders already
allocated, shipped or cancelled are never touched. Orders not paid (and not cash on delivery) wait
for their payment unreviewed, whatever the door they came in by.

`review_dry_run` runs the same rules over recent orders for settings not saved yet, writing
nothing, so the admin can show what a change would hold before it is made.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from inventory.reservations import orders_not_reserved
from orders.address import (
    NORMALISE_CACHE_SIZE,
    Address,
    address_from_order,
    address_normalise,
    address_to_order,
    incomplete_problem,
    is_military,
    is_po_box,
    phone_normalise,
    text_clean,
    too_long_problem,
    zip_state_problem,
)
from orders.events import order_event_add
from orders.holds import HoldReason, order_lock
from orders.models import (
    OPEN_STATUSES,
    EventSource,
    Order,
    OrderEvent,
    OrderHold,
    OrderLine,
    OrderStatus,
    ReviewSettings,
)
from tkerp.bulk import rows_copy, rows_update
from tkerp.tenancy import tenant_context

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    from shops.models import Tenant

# Review's own reason codes, in the order their messages are shown.
REVIEW_CODES = (
    HoldReason.ADDRESS_INCOMPLETE,
    HoldReason.ADDRESS_PO_BOX,
    HoldReason.ADDRESS_MILITARY,
    HoldReason.ADDRESS_ZIP_STATE_MISMATCH,
    HoldReason.ADDRESS_TOO_LONG,
    HoldReason.PHONE_INVALID,
    HoldReason.BUYER_NOTE,
    HoldReason.HIGH_VALUE,
    HoldReason.DUPLICATE_ADDRESS,
    HoldReason.PARTLY_SHIPPED,
)
REVIEWABLE_STATUSES = (OrderStatus.NEW, OrderStatus.READY, OrderStatus.ON_HOLD)
# How many sibling order ids a duplicate_address message names.
SIBLINGS_SHOWN = 10
DRY_RUN_SAMPLES = 10

ADDRESS_EDIT_FIELDS = (
    "recipient_name",
    "recipient_phone",
    "address_line1",
    "address_line2",
    "city",
    "state",
    "postal_code",
    "country",
)


@dataclass(frozen=True, slots=True)
class Finding:
    """One reason to hold an order: a stable code and what a person should know."""

    code: str
    message: str


@dataclass
class ReviewResult:
    reviewed: int = 0
    skipped: int = 0
    ready: int = 0
    held: int = 0
    waiting: int = 0  # passed review, stays "new" until its stock is reserved
    holds_added: int = 0
    holds_released: int = 0


@dataclass
class DryRunSummary:
    """What settings would hold among recent orders: counts per code and a few examples."""

    days: int
    orders: int = 0
    held: int = 0
    by_code: dict[str, int] = field(default_factory=dict)
    samples: dict[str, list[tuple[int, str, str]]] = field(default_factory=dict)


def review_settings_get(*, tenant: Tenant) -> ReviewSettings:
    """The tenant's review settings, created with the defaults on first use."""
    with tenant_context(tenant):
        settings = ReviewSettings.objects.first()
        if settings is None:
            settings, _ = ReviewSettings.objects.get_or_create(tenant=tenant)
    return settings


# --- the rules (pure) ---------------------------------------------------------------------


def order_needs_payment(order: Order) -> bool:
    """An order not paid yet (and not cash on delivery) is not reviewed: its recipient is
    usually hidden, it may never be paid, and it reserves no stock. Review runs when the payment
    arrives (the ingest update; for a CSV order, an import that gives its `paid_at`). The same
    rule as `inventory.reservations.order_is_reservable`."""
    return order.paid_at is None and not order.is_cod


def order_findings(*, order: Order, address: Address, settings: ReviewSettings) -> list[Finding]:
    """Every rule but duplicate_address (which needs the other orders) for one order, whose
    normalised recipient is `address`."""
    found: list[Finding] = []
    if not order.address_masked:
        found += address_findings(address=address, settings=settings)
    note = text_clean(order.buyer_note)
    if settings.hold_buyer_notes and note:
        found.append(Finding(HoldReason.BUYER_NOTE, f"Buyer note: {note[:200]}"))
    if (
        settings.check_high_value
        and order.currency == settings.high_value_currency
        and order.total >= settings.high_value_threshold
    ):
        found.append(
            Finding(
                HoldReason.HIGH_VALUE,
                f"Total {order.total} {order.currency} is at or above the "
                f"{settings.high_value_threshold} {settings.high_value_currency} threshold.",
            )
        )
    return found


def address_findings(*, address: Address, settings: ReviewSettings) -> list[Finding]:
    """The address rules `settings` switch on, for a normalised recipient. Pure, so answered
    from a per-process cache keyed by the address and the settings it reads (a re-review of an
    unchanged recipient, a repeat buyer, costs a lookup)."""
    checks = tuple(getattr(settings, name) for name in _ADDRESS_CHECKS)
    return list(_address_findings(address, checks))


#: The review settings `address_findings` reads, in `_address_findings`' order.
_ADDRESS_CHECKS = (
    "check_incomplete",
    "check_po_box",
    "check_military",
    "check_zip_state",
    "check_too_long",
    "address_max_length",
    "check_phone",
)


@lru_cache(maxsize=NORMALISE_CACHE_SIZE)
def _address_findings(address: Address, checks: tuple) -> tuple[Finding, ...]:
    settings = SimpleNamespace(**dict(zip(_ADDRESS_CHECKS, checks, strict=True)))
    found: list[Finding] = []
    if settings.check_incomplete and (problem := incomplete_problem(address)):
        found.append(Finding(HoldReason.ADDRESS_INCOMPLETE, problem))
    if settings.check_po_box:
        boxes = [line for line in (address.line1, address.line2) if is_po_box(line)]
        if boxes:
            found.append(
                Finding(
                    HoldReason.ADDRESS_PO_BOX,
                    f"PO box ({boxes[0]}): carriers that need a street address will not "
                    "deliver it.",
                )
            )
    military = is_military(address)
    if settings.check_military and military:
        found.append(
            Finding(
                HoldReason.ADDRESS_MILITARY,
                f"Military address ({address.city} {address.state}): needs a carrier and "
                "customs form that serve APO/FPO/DPO.",
            )
        )
    if settings.check_zip_state and (problem := zip_state_problem(address)):
        found.append(Finding(HoldReason.ADDRESS_ZIP_STATE_MISMATCH, problem))
    if settings.check_too_long and (
        problem := too_long_problem(address, max_length=settings.address_max_length)
    ):
        found.append(Finding(HoldReason.ADDRESS_TOO_LONG, problem))
    if settings.check_phone:
        _, valid = phone_normalise(address.phone, address.country)
        if not valid:
            found.append(
                Finding(
                    HoldReason.PHONE_INVALID,
                    f"Phone number {address.phone!r} is not valid for {address.country or '?'}."
                    if address.phone
                    else "No phone number.",
                )
            )
    return tuple(found)


def address_key_hash(address: Address) -> str:
    """The duplicate-address key; empty (never a duplicate) for an address with no street, which
    is held `address.incomplete` anyway and would otherwise group every such order together."""
    if not address.line1.strip():
        return ""
    return hashlib.sha256(address.key().encode()).hexdigest()


def duplicate_findings(
    *,
    tenant: Tenant,
    settings: ReviewSettings,
    batch: dict[int, tuple[str, datetime]],
    statuses: Collection[str] = OPEN_STATUSES,
) -> dict[int, Finding]:
    """duplicate_address for the orders of `batch` ({order id: (address key, when)}) and any
    other open order of the tenant they duplicate: one query over the batch's keys.

    Two orders are duplicates when they go to the same normalised address and were placed
    within the window of each other. Returns a finding for every order involved, in or out of
    the batch, naming its siblings.
    """
    if not settings.check_duplicate_address or not batch:
        return {}
    keys = {key for key, _ in batch.values() if key}
    if not keys:
        return {}
    window = timedelta(hours=settings.duplicate_window_hours)
    by_key: dict[str, dict[int, datetime]] = defaultdict(dict)
    stored = (
        Order.objects.filter(address_key__any=keys, status__in=statuses, address_masked=False)
        .exclude(pk__any=list(batch))
        .values_list("pk", "address_key", "placed_at", "created_at")
    )
    for pk, key, placed_at, created_at in stored:
        by_key[key][pk] = placed_at or created_at
    for pk, (key, when) in batch.items():
        if key:
            by_key[key][pk] = when
    found: dict[int, Finding] = {}
    for group in by_key.values():
        if len(group) < 2:
            continue
        for pk, when in group.items():
            siblings = sorted(
                other
                for other, other_when in group.items()
                if other != pk and abs(other_when - when) <= window
            )
            if siblings:
                shown = ", ".join(str(sibling) for sibling in siblings[:SIBLINGS_SHOWN])
                more = len(siblings) - SIBLINGS_SHOWN
                found[pk] = Finding(
                    HoldReason.DUPLICATE_ADDRESS,
                    f"Same address as open order(s) {shown}"
                    + (f" and {more} more" if more > 0 else "")
                    + f" within {settings.duplicate_window_hours} h: merge or fraud?",
                )
    return found


def review_fingerprint(*, order: Order, lines: Iterable[tuple], partly: bool = False) -> str:
    """A hash of what review looks at: the recipient, the lines, the note and the total, and
    whether the platform says part of the order shipped outside tkerp (`partly`; added only
    then, so the orders it never concerned keep the hash they had)."""
    payload = [
        [str(getattr(order, name) or "") for name in ADDRESS_EDIT_FIELDS],
        order.address_masked,
        order.buyer_note or "",
        str(order.total),
        order.currency,
        sorted([list(map(str, line)) for line in lines]),
    ]
    if partly:
        payload.append("partly_shipped")
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()


_LINE_VALUES = ("order_id", "platform_line_id", "sku_id", "seller_sku", "quantity", "is_cancelled")


def _partly_shipped_outside(orders: list[Order]) -> set[int]:
    """The orders whose platform says some of them shipped (`Connector.partly_shipped`) while
    none of their parcels got past pending in tkerp: someone shipped lines elsewhere (or before
    the shop was connected), and tkerp would send them again. An order with a parcel labelled,
    with a provider or shipped is partly shipped by tkerp's own doing (a split order), and its
    parcels say which lines are left."""
    from logistics.models import Shipment, ShipmentStatus
    from shops.models import Platform, Shop
    from shops.platforms import platform_status_partly_shipped

    statuses = {order.platform_status for order in orders if order.platform_status}
    platforms = Platform.values
    if not any(
        platform_status_partly_shipped(platform, status)
        for status in statuses
        for platform in platforms
    ):
        return set()  # the usual page: nothing shipped in part, no query
    platform_of = dict(
        Shop._base_manager.filter(pk__in={order.shop_id for order in orders}).values_list(
            "pk", "platform"
        )
    )
    partly = {
        order.pk
        for order in orders
        if platform_status_partly_shipped(platform_of.get(order.shop_id, ""), order.platform_status)
    }
    # A parcel past pending is tkerp fulfilling the order: a labelled parcel's number goes to the
    # platform at once (which then counts that package shipped), a provider's parcel may have
    # left; only an order none of whose parcels got that far was shipped in part elsewhere.
    started = Shipment.objects.filter(order_id__any=sorted(partly)).exclude(
        status__in=(ShipmentStatus.PENDING, ShipmentStatus.CANCELLED)
    )
    return partly - set(started.values_list("order_id", flat=True))


def _lines_by_order(order_ids: Collection[int]) -> dict[int, list[tuple]]:
    lines: dict[int, list[tuple]] = defaultdict(list)
    # No ordering: the fingerprint sorts the lines, and OrderLine's default one joins the orders.
    for order_id, *rest in (
        OrderLine.objects.filter(order_id__any=order_ids).order_by().values_list(*_LINE_VALUES)
    ):
        lines[order_id].append(tuple(rest))
    return lines


def _when(order: Order) -> datetime:
    return order.placed_at or order.created_at or timezone.now()


def _normalise_in_place(order: Order) -> tuple[Address, list[str]]:
    """Normalise the order's recipient fields (masked recipients are left as sent); returns
    the normalised address and the fields that changed. `original_address` is filled from the
    fields only when no door stored one (CSV, API), and never overwritten."""
    if not order.original_address:
        order.original_address = {
            name: getattr(order, name) for name in ADDRESS_EDIT_FIELDS if getattr(order, name)
        }
    current = address_from_order(order)
    if order.address_masked:
        return current, []
    normalised = address_normalise(current)
    return normalised, address_to_order(order, normalised)


# --- review (writes) ------------------------------------------------------------------------


def orders_review(
    *,
    tenant: Tenant,
    order_ids: Collection[int],
    user: AbstractBaseUser | None = None,
    force: bool = False,
) -> ReviewResult:
    """Normalise and review the given orders of `tenant` (see the module docstring).

    Orders whose address, lines, note and total are as review last saw them are skipped unless
    `force` (a person asked for a re-review). Idempotent: a second run changes nothing.
    """
    result = ReviewResult()
    if not order_ids:
        return result
    user = user if user is not None and user.is_authenticated else None
    settings = review_settings_get(tenant=tenant)
    now = timezone.now()
    with tenant_context(tenant), transaction.atomic():
        # Lock in ascending pk order (the house order), like order_hold/order_release do.
        orders = list(
            Order.objects.select_for_update(of=("self",))
            .filter(pk__any=sorted(set(order_ids)), status__in=REVIEWABLE_STATUSES)
            .only(*REVIEW_READ_FIELDS)
            .order_by("pk")
        )
        lines = _lines_by_order([order.pk for order in orders])
        # Ready means its parcels can be made from its reservations: an order whose stock is not
        # reserved (short, unknown SKU, or the stock step has not run) never passes to ready.
        # Reservations change only under the order's lock, which we hold: this read is exact.
        not_reserved = orders_not_reserved(order_ids=[order.pk for order in orders])
        shipped_outside = _partly_shipped_outside(orders)
        todo: list[tuple[Order, list[Finding], list[str]]] = []
        # Platform doors store `original_address` with the order; it is written back only when
        # review filled one (CSV, API), not re-sent (JSON both ways) for every order of a page.
        original_filled = False
        for order in orders:
            if order_needs_payment(order):
                result.skipped += 1
                continue
            # An unchanged order is skipped only when its status is what review would set:
            # "new" (waiting for its stock) and "ready" without its stock are decided again.
            settled = order.status == OrderStatus.ON_HOLD or (
                order.status == OrderStatus.READY and order.pk not in not_reserved
            )
            if (
                not force
                and settled
                and order.review_fingerprint
                == review_fingerprint(
                    order=order, lines=lines[order.pk], partly=order.pk in shipped_outside
                )
            ):
                result.skipped += 1
                continue
            original_filled |= not order.original_address
            address, changed = _normalise_in_place(order)
            order.address_key = "" if order.address_masked else address_key_hash(address)
            findings = order_findings(order=order, address=address, settings=settings)
            if order.pk in shipped_outside:
                findings.append(
                    Finding(
                        HoldReason.PARTLY_SHIPPED,
                        f"The platform says part of this order has shipped "
                        f"({order.platform_status}), and no parcel of it left through tkerp: "
                        "check at the platform which lines are still to send before releasing "
                        "this hold; its parcels hold every line, so the lines already gone "
                        "would ship twice.",
                    )
                )
            todo.append((order, findings, changed))
        if not todo:
            return result

        duplicates = duplicate_findings(
            tenant=tenant,
            settings=settings,
            batch={order.pk: (order.address_key, _when(order)) for order, _, _ in todo},
        )
        reviewed_ids = {order.pk for order, _, _ in todo}
        # Orders outside this review that the batch duplicates get the hold too (a merge or
        # fraud candidate has two sides), if nobody started fulfilling them yet. They are only
        # known once the batch is normalised, so they are locked after it (still in pk order).
        siblings = list(
            Order.objects.select_for_update(of=("self",))
            .filter(
                pk__any=sorted(set(duplicates) - reviewed_ids),
                status__in=REVIEWABLE_STATUSES,
                reviewed_at__isnull=False,
            )
            .only(*REVIEW_READ_FIELDS)
            .order_by("pk")
        )

        not_reserved |= orders_not_reserved(order_ids=[order.pk for order in siblings])
        all_ids = [order.pk for order, _, _ in todo] + [order.pk for order in siblings]
        active: dict[int, list[OrderHold]] = defaultdict(list)
        # Each order's holds oldest first, as OrderHold's default ordering gives them, without
        # the join to the orders that ordering costs.
        for hold in OrderHold.objects.filter(
            order_id__any=all_ids, released_at__isnull=True
        ).order_by("order_id", "created_at"):
            active[hold.order_id].append(hold)

        new_holds: list[OrderHold] = []
        release_ids: list[int] = []
        events: list[OrderEvent] = []
        order_updates: list[Order] = []
        source = EventSource.USER if user is not None else EventSource.SYSTEM

        plans = [(order, findings, changed, True) for order, findings, changed in todo]
        plans += [(order, [], [], False) for order in siblings]
        for order, findings, changed, full in plans:
            if order.pk in duplicates:
                findings = [*findings, duplicates[order.pk]]
            wanted = {finding.code: finding for finding in findings}
            holds = active[order.pk]
            held_codes = {hold.code for hold in holds}
            added = [code for code in wanted if code not in held_codes]
            released = [
                hold
                for hold in holds
                if full
                and hold.code in REVIEW_CODES
                and hold.created_by_id is None
                and hold.code not in wanted
            ]
            for code in added:
                new_holds.append(
                    OrderHold(
                        tenant_id=order.tenant_id,
                        order_id=order.pk,
                        code=code,
                        message=wanted[code].message[:500],
                        created_by=user,
                    )
                )
            release_ids += [hold.pk for hold in released]
            still_active = (held_codes - {hold.code for hold in released}) | set(added)
            previous_status = order.status
            if still_active:
                order.status = OrderStatus.ON_HOLD
            elif order.pk in not_reserved:
                order.status = OrderStatus.NEW  # passed; ready once its stock is reserved
            else:
                order.status = OrderStatus.READY
            if full:
                order.review_fingerprint = review_fingerprint(
                    order=order, lines=lines[order.pk], partly=order.pk in shipped_outside
                )
                order.reviewed_at = now
                if changed:
                    order.address_normalised_at = now
            order.updated_at = now
            order_updates.append(order)
            if not full and not added:
                continue
            result.reviewed += full
            result.held += bool(still_active)
            result.ready += order.status == OrderStatus.READY
            result.waiting += order.status == OrderStatus.NEW
            result.holds_added += len(added)
            result.holds_released += len(released)
            codes = [finding.code for finding in findings]
            kind = "review.held" if codes else "review.passed"
            message = (
                "Review held: " + "; ".join(f"{f.code} — {f.message}" for f in findings)
                if codes
                else "Review passed"
            )
            if order.status == OrderStatus.NEW:
                message += "; waiting for its stock to be reserved"
            if released:
                message += ". Released: " + ", ".join(hold.code for hold in released)
            other = sorted(still_active - set(REVIEW_CODES))
            if other:
                message += ". Still held for: " + ", ".join(other)
            events.append(
                OrderEvent(
                    tenant_id=order.tenant_id,
                    order_id=order.pk,
                    kind=kind,
                    message=message[:500],
                    data={
                        "codes": codes,
                        "added": added,
                        "released": [hold.code for hold in released],
                        "messages": {f.code: f.message for f in findings},
                        "normalised_fields": changed,
                        "previous_status": previous_status,
                        "status": order.status,
                        "forced": force,
                    },
                    source=source,
                    user=user,
                )
            )

        if release_ids:
            OrderHold.objects.filter(pk__any=release_ids).update(released_at=now, released_by=user)
        if new_holds:
            rows_copy(OrderHold, new_holds)
        written = [
            name for name in REVIEW_WRITE_FIELDS if original_filled or name != "original_address"
        ]
        rows_update(Order, order_updates, written, tenant_id=tenant.pk)
        if events:
            rows_copy(OrderEvent, events)
    return result


REVIEW_WRITE_FIELDS = (
    *ADDRESS_EDIT_FIELDS,
    "original_address",
    "address_key",
    "address_normalised_at",
    "review_fingerprint",
    "reviewed_at",
    "status",
    "updated_at",
)

#: What review reads of an order, and what it writes back. Loading only these keeps a page
#: from building sixty-column models and decoding the platform payload (kilobytes of JSON)
#: for nothing; reading any other field here would cost a query per order.
REVIEW_READ_FIELDS = (
    "id",
    "tenant_id",
    "status",
    "paid_at",
    "is_cod",
    "placed_at",
    "created_at",
    "address_masked",
    "buyer_note",
    "total",
    "currency",
    "shop_id",
    "platform_status",
    *REVIEW_WRITE_FIELDS,
)


def order_address_edit(
    *, order: Order, values: dict[str, Any], user: AbstractBaseUser | None = None
) -> ReviewResult:
    """A person corrects the recipient: store it, record who changed what, and re-review (which
    releases the address holds review set that no longer apply)."""
    tenant = order.tenant
    with tenant_context(tenant), transaction.atomic():
        order = order_lock(order=order)
        if order.status not in REVIEWABLE_STATUSES:
            raise ValueError(
                f"Order {order.platform_order_id} is {order.get_status_display().lower()}; "
                "its address can no longer change."
            )
        before = {name: getattr(order, name) for name in ADDRESS_EDIT_FIELDS}
        changed = {}
        for name in ADDRESS_EDIT_FIELDS:
            if name in values and values[name] != before[name]:
                setattr(order, name, values[name])
                changed[name] = {"from": before[name], "to": values[name]}
        if changed:
            order.save(update_fields=[*changed, "updated_at"])
            order_event_add(
                order=order,
                kind="address.edited",
                message="Address edited: " + ", ".join(changed),
                data={"changes": changed},
                user=user,
            )
    return orders_review(tenant=tenant, order_ids=[order.pk], user=user, force=True)


# --- dry run (no writes) ----------------------------------------------------------------------


def review_dry_run(*, tenant: Tenant, settings: ReviewSettings, days: int) -> DryRunSummary:
    """What `settings` (saved or not) would hold among the tenant's orders of the last `days`
    days, by the same rules review runs. Writes nothing."""
    summary = DryRunSummary(days=days)
    since = timezone.now() - timedelta(days=days)
    with tenant_context(tenant):
        orders = list(
            Order.objects.filter(
                Q(placed_at__gte=since) | Q(placed_at__isnull=True, created_at__gte=since)
            )
            .exclude(status=OrderStatus.CANCELLED)
            .select_related("shop")
            .order_by("pk")
        )
    found: dict[int, list[Finding]] = {}
    batch: dict[int, tuple[str, datetime]] = {}
    by_pk = {}
    for order in orders:
        if order_needs_payment(order):
            continue
        by_pk[order.pk] = order
        address = address_from_order(order)
        if not order.address_masked:
            address = address_normalise(address)
        found[order.pk] = order_findings(order=order, address=address, settings=settings)
        batch[order.pk] = ("" if order.address_masked else address_key_hash(address), _when(order))
    with tenant_context(tenant):
        duplicates = duplicate_findings(tenant=tenant, settings=settings, batch=batch)
    for pk, finding in duplicates.items():
        if pk in found:
            found[pk].append(finding)
    summary.orders = len(found)
    counts: Counter[str] = Counter()
    samples: dict[str, list[tuple[int, str, str]]] = defaultdict(list)
    for pk, findings in found.items():
        if findings:
            summary.held += 1
        for finding in findings:
            counts[finding.code] += 1
            if len(samples[finding.code]) < DRY_RUN_SAMPLES:
                samples[finding.code].append((pk, by_pk[pk].platform_order_id, finding.message))
    summary.by_code = {str(code): counts[code] for code in REVIEW_CODES if counts[code]}
    summary.samples = {code: samples[code] for code in summary.by_code}
    return summary


__all__ = [
    "REVIEW_CODES",
    "DryRunSummary",
    "Finding",
    "ReviewResult",
    "order_address_edit",
    "orders_review",
    "review_dry_run",
    "review_settings_get",
]
