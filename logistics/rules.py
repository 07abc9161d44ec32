"""Carrier rules: which carrier service (and package type) each parcel ships with.

A tenant's active `CarrierRule`s are read lowest priority first; the first rule whose conditions
all hold AND whose service can take the parcel wins. Conditions (each optional): order total,
parcel weight and item count ranges (both ends included), destination country / state / ZIP
prefix, shop, platform, SKU codes (any one), order tag. A rule whose conditions hold but whose
service cannot take the parcel (heavier than the service's limit, abroad on a domestic-only
service, a PO box the service does not deliver to, service or carrier switched off) is skipped,
and the reason is kept on the shipment (`Shipment.rule_skips`). No rule at all: the order is held
`carrier.no_rule`, with a message naming the parcel's weight, value and destination. A tenant with
no active rule does not use them (the platform or a person chooses the carrier): its parcels are
left as they are, never held.

The weight a rule sees is the parcel's SKU weights times quantities plus the tenant's packaging
allowance (`ShippingPolicy.packaging_allowance_grams`, else `TKERP_PACKAGING_ALLOWANCE_GRAMS`):
one allowance per tenant, because the weight must be known before any rule is chosen.

The engine has a pure core (`Parcel` facts in, `Decision` out: `rules_pick`) and a database layer
that works on batches with a constant number of queries whatever the batch size:
- `shipments_rules_apply` runs when routing creates parcels (`logistics.routing`, once over a
  whole batch of orders, with the rules loaded once) and on demand ("Re-apply carrier rules" in
  the shipment admin). It writes the service, package type, weight, chosen rule and skips, counts
  the rules' hits, holds orders whose parcel no rule fits and releases that hold once every parcel
  of the order has a service. Parcels that have a label (or are past `pending`) are left alone.
- `order_rules_after_release`: a person released a `carrier.no_rule` hold; the rules are tried
  once more (they may have been fixed) and a parcel still without a rule is left unheld.
- `rules_dry_run` shows what a proposed rule set (edited in a form, or imported) would do to the
  parcels of recent orders, writing nothing.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Case, Exists, F, OuterRef, PositiveBigIntegerField, Q, Value, When
from django.utils import timezone

from logistics.models import (
    CarrierRule,
    CarrierService,
    LabelBatchItem,
    Shipment,
    ShipmentLine,
    ShipmentStatus,
    ShippingPolicy,
)
from orders.address import is_po_box, state_normalise
from orders.holds import HoldReason, orders_hold_many, orders_release_many
from orders.models import OPEN_STATUSES, EventSource, Order, OrderEvent, OrderHold, OrderTag
from orders.tags import tag_name_normalise
from tkerp.bulk import rows_copy
from tkerp.tenancy import tenant_context

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    from shops.models import Tenant

NO_RULE = HoldReason.CARRIER_NO_RULE

#: Parcels the rules may still change: not labelled, not handed over, not gone.
# ... and not held by a live label batch (which buys for the service the parcel has). The base
# manager: this is built at import time; the outer query carries the tenant scope.
RULES_APPLICABLE = Q(status=ShipmentStatus.PENDING, tracking_number="", label_file="") & ~Q(
    Exists(
        LabelBatchItem._base_manager.filter(
            tenant_id=OuterRef("tenant_id"), shipment_id=OuterRef("pk"), live=True
        )
    )
)

#: The dry run looks at this many of the most recent parcels at most, and lists this many
#: examples of each kind.
DRY_RUN_MAX_PARCELS = 50_000
DRY_RUN_SAMPLES = 25


# --- the pure core ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServiceLimits:
    """What a carrier service can take, copied out of its row (and its carrier's)."""

    id: int | None
    label: str
    max_weight_grams: int | None
    domestic_only: bool
    accepts_po_box: bool
    is_active: bool

    @classmethod
    def of(cls, service: CarrierService) -> ServiceLimits:
        return cls(
            id=service.pk,
            label=str(service),
            max_weight_grams=service.max_weight_grams,
            domestic_only=service.domestic_only,
            accepts_po_box=service.accepts_po_box,
            is_active=service.is_active and service.carrier.is_active,
        )


@dataclass(frozen=True, slots=True)
class Rule:
    """One carrier rule, parsed once for matching many parcels (comma lists become sets)."""

    id: int | None
    name: str
    priority: int
    service: ServiceLimits
    package_type: str = ""
    shop_id: int | None = None
    platform: str = ""
    min_total: Decimal | None = None
    max_total: Decimal | None = None
    min_weight_grams: int | None = None
    max_weight_grams: int | None = None
    min_items: int | None = None
    max_items: int | None = None
    countries: frozenset[str] = frozenset()
    states: frozenset[str] = frozenset()
    postal_prefixes: tuple[str, ...] = ()
    sku_codes: frozenset[str] = frozenset()
    tag: str = ""

    @classmethod
    def of(cls, rule: CarrierRule) -> Rule:
        return cls(
            id=rule.pk,
            name=rule.name,
            priority=rule.priority,
            service=ServiceLimits.of(rule.service),
            package_type=rule.package_type,
            shop_id=rule.shop_id,
            platform=rule.platform,
            min_total=rule.min_total,
            max_total=rule.max_total,
            min_weight_grams=rule.min_weight_grams,
            max_weight_grams=rule.max_weight_grams,
            min_items=rule.min_items,
            max_items=rule.max_items,
            countries=frozenset(comma_list(rule.countries)),
            states=frozenset(comma_list(rule.states)),
            postal_prefixes=tuple(postal_key(p) for p in comma_list(rule.postal_prefixes)),
            sku_codes=frozenset(comma_list(rule.sku_codes)),
            tag=_tag_key(rule.tag),
        )


@dataclass(frozen=True, slots=True)
class Parcel:
    """What the rules look at for one parcel (built by `parcels_describe`, or by hand)."""

    weight_grams: int
    total: Decimal
    value: Decimal | None = None  # the parcel's share of the order's lines; None: the total
    currency: str = "USD"
    items: int = 1
    country: str = "US"
    state: str = ""
    postal_code: str = ""
    city: str = ""
    po_box: bool = False
    origin_country: str = "US"
    shop_id: int | None = None
    platform: str = ""
    sku_codes: frozenset[str] = frozenset()
    tags: frozenset[str] = frozenset()
    reference: str = ""


@dataclass(frozen=True, slots=True)
class Skip:
    """A rule whose conditions held but whose service could not take the parcel."""

    rule_id: int | None
    rule: str
    reason: str

    def as_json(self) -> dict:
        return {"rule_id": self.rule_id, "rule": self.rule, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Decision:
    """The rules' answer for one parcel: the winning rule (None: no rule) and the skips."""

    rule: Rule | None
    skipped: tuple[Skip, ...] = ()

    @property
    def service_id(self) -> int | None:
        return self.rule.service.id if self.rule is not None else None


def comma_list(text: str) -> list[str]:
    """A comma-separated condition as upper-case items, blanks dropped."""
    return [item.strip().upper() for item in (text or "").split(",") if item.strip()]


def postal_key(code: str) -> str:
    """A postal code as prefixes compare it: upper case, no spaces or dashes."""
    return "".join(ch for ch in (code or "").upper() if ch.isalnum())


def _tag_key(name: str) -> str:
    try:
        return tag_name_normalise(name) if name and name.strip() else ""
    except ValidationError:
        return ""


def _within(value, low, high) -> bool:
    return (low is None or value >= low) and (high is None or value <= high)


def rule_matches(rule: Rule, parcel: Parcel) -> bool:
    """Whether every condition of `rule` holds for `parcel` (the service is not looked at)."""
    return (
        (rule.shop_id is None or rule.shop_id == parcel.shop_id)
        and (not rule.platform or rule.platform == parcel.platform)
        and _within(parcel.total, rule.min_total, rule.max_total)
        and _within(parcel.weight_grams, rule.min_weight_grams, rule.max_weight_grams)
        and _within(parcel.items, rule.min_items, rule.max_items)
        and (not rule.countries or parcel.country.upper() in rule.countries)
        and (not rule.states or parcel.state.upper() in rule.states)
        and (
            not rule.postal_prefixes
            or postal_key(parcel.postal_code).startswith(rule.postal_prefixes)
        )
        and (not rule.sku_codes or not rule.sku_codes.isdisjoint(parcel.sku_codes))
        and (not rule.tag or rule.tag in parcel.tags)
    )


def service_misfit(service: ServiceLimits, parcel: Parcel) -> str:
    """Why `service` cannot take `parcel`, or "" when it can."""
    if not service.is_active:
        return f"{service.label} is switched off"
    if service.max_weight_grams is not None and parcel.weight_grams > service.max_weight_grams:
        return (
            f"{parcel.weight_grams:,} g is over {service.label}'s "
            f"{service.max_weight_grams:,} g limit"
        )
    if service.domestic_only and parcel.country.upper() != parcel.origin_country.upper():
        return (
            f"{service.label} ships within {parcel.origin_country} only; "
            f"this parcel goes to {parcel.country}"
        )
    if parcel.po_box and not service.accepts_po_box:
        return f"{service.label} does not deliver to PO boxes"
    return ""


def rules_pick(*, rules: Sequence[Rule], parcel: Parcel) -> Decision:
    """The first rule (in the given order) whose conditions hold and whose service fits."""
    skipped = []
    for rule in rules:
        if not rule_matches(rule, parcel):
            continue
        reason = service_misfit(rule.service, parcel)
        if reason:
            skipped.append(Skip(rule.id, rule.name, reason))
            continue
        return Decision(rule, tuple(skipped))
    return Decision(None, tuple(skipped))


def rules_compile(rules: Iterable[CarrierRule | Rule]) -> list[Rule]:
    """Active rules (saved or not) in the order they are tried: priority, then age (an unsaved
    rule after saved ones of its priority). Each rule needs its service and carrier loaded."""
    compiled = [
        rule if isinstance(rule, Rule) else Rule.of(rule)
        for rule in rules
        if isinstance(rule, Rule) or rule.is_active
    ]
    return sorted(compiled, key=lambda rule: (rule.priority, rule.id is None, rule.id or 0))


def parcel_destination(parcel: Parcel) -> str:
    place = " ".join(part for part in (parcel.city, parcel.state, parcel.postal_code) if part)
    return f"{place}, {parcel.country}" if place else parcel.country


def no_rule_message(parcel: Parcel, skipped: Sequence[Skip] = ()) -> str:
    """The `carrier.no_rule` hold message: the parcel's weight, value and destination, and the
    rules that matched but whose service could not take it."""
    value = parcel.total if parcel.value is None else parcel.value
    money = f"value {value} {parcel.currency}"
    if parcel.value is not None and parcel.value != parcel.total:
        money += f" (order total {parcel.total} {parcel.currency})"
    message = (
        f"No carrier rule fits parcel {parcel.reference or '(new)'}: "
        f"{parcel.weight_grams:,} g, {money}, to {parcel_destination(parcel)}."
    )
    if skipped:
        message += " Skipped: " + "; ".join(f"“{s.rule}” ({s.reason})" for s in skipped) + "."
    return message


# --- facts from the database ----------------------------------------------------------------------


def packaging_allowance_get(*, tenant: Tenant) -> int:
    """Grams of packaging added to every parcel of the tenant (see the module docstring)."""
    with tenant_context(tenant):
        grams = (
            ShippingPolicy.objects.filter(packaging_allowance_grams__isnull=False)
            .values_list("packaging_allowance_grams", flat=True)
            .first()
        )
    return grams if grams is not None else settings.TKERP_PACKAGING_ALLOWANCE_GRAMS


def carrier_rules_load(*, tenant: Tenant) -> list[Rule]:
    """The tenant's active rules in the order they are tried: one query."""
    with tenant_context(tenant):
        rows = CarrierRule.objects.filter(is_active=True).select_related("service__carrier")
        return rules_compile(rows)


# What `parcels_describe` reads of a parcel's order and shipment (an order's platform payload
# can weigh kilobytes: a spike's batch must not load it).
PARCEL_ORDER_FIELDS = (
    "tenant_id",
    "shop__platform",
    "status",
    "total",
    "currency",
    "country",
    "state",
    "postal_code",
    "city",
    "address_line1",
    "address_line2",
    "platform_order_id",
)
PARCEL_SHIPMENT_FIELDS = (
    "tenant_id",
    "order_id",
    "reference",
    "status",
    "tracking_number",
    "label_file",
    "service_id",
    "warehouse__country",
)


def parcels_describe(
    *, shipments: Sequence[Shipment], orders: dict[int, Order], allowance: int
) -> dict[int, Parcel]:
    """The facts of each shipment (with its warehouse loaded) of `orders` (with their shops):
    two queries whatever the number of parcels. Call with the tenant in scope."""
    ids = [shipment.pk for shipment in shipments]
    weight: Counter[int] = Counter()
    items: Counter[int] = Counter()
    value: dict[int, Decimal] = defaultdict(Decimal)
    skus: dict[int, set[str]] = defaultdict(set)
    # Summed per parcel: no ordering (the default one joins the shipments to sort).
    lines = (
        ShipmentLine.objects.filter(shipment_id__any=ids)
        .order_by()
        .values_list(
            "shipment_id",
            "quantity",
            "order_line__quantity",
            "order_line__total",
            "order_line__seller_sku",
            "order_line__sku__code",
            "order_line__sku__weight_grams",
        )
    )
    for shipment_id, quantity, line_quantity, line_total, seller_sku, code, grams in lines:
        weight[shipment_id] += (grams or 0) * quantity
        items[shipment_id] += quantity
        if line_quantity:
            value[shipment_id] += line_total * quantity / line_quantity
        skus[shipment_id].update(c.strip().upper() for c in (code, seller_sku) if c and c.strip())
    tags: dict[int, set[str]] = defaultdict(set)
    for order_id, name in OrderTag.objects.filter(order_id__any=orders).values_list(
        "order_id", "tag__name"
    ):
        tags[order_id].add(name)
    parcels = {}
    for shipment in shipments:
        order = orders[shipment.order_id]
        parcels[shipment.pk] = Parcel(
            reference=shipment.reference,
            weight_grams=weight[shipment.pk] + allowance,
            total=order.total,
            value=value[shipment.pk].quantize(Decimal("0.01")),
            currency=order.currency,
            items=items[shipment.pk],
            country=(order.country or "").upper(),
            # Review normalises the state; an order that arrived already shipped was never
            # reviewed and may still say "California".
            state=state_normalise(order.state or "", (order.country or "").upper()).upper(),
            postal_code=order.postal_code or "",
            city=order.city or "",
            po_box=is_po_box(order.address_line1) or is_po_box(order.address_line2),
            origin_country=(shipment.warehouse.country or "").upper(),
            shop_id=order.shop_id,
            platform=order.shop.platform,
            sku_codes=frozenset(skus[shipment.pk]),
            tags=frozenset(tags[order.pk]),
        )
    return parcels


# --- applying the rules (writes) ----------------------------------------------------------------


@dataclass
class ApplyResult:
    """What one application of the rules did."""

    applied: int = 0  # parcels the rules ran on
    matched: int = 0  # ... that a rule took
    changed: int = 0  # ... whose service is not the one they had
    unmatched: int = 0  # ... that no rule took
    left_alone: int = 0  # selected parcels with a label (or past pending): not touched
    held: int = 0  # orders newly held carrier.no_rule
    released: int = 0  # orders whose carrier.no_rule hold was released
    no_rules: bool = False  # the tenant has no active rule: nothing was decided
    by_rule: Counter = field(default_factory=Counter)  # rule id -> parcels


def shipments_rules_apply(
    *,
    tenant: Tenant,
    shipment_ids: Iterable[int],
    rules: Sequence[Rule] | None = None,
    user: AbstractBaseUser | None = None,
    hold_unmatched: bool = True,
    now: datetime | None = None,
) -> ApplyResult:
    """Run the rules on the given parcels of `tenant` and record the outcome (module docstring).

    `rules` (from `carrier_rules_load`) lets a batch caller load them once. Orders are locked
    before their parcels, each in ascending pk order; parcels that have a label by the time
    they are locked are left alone. With `hold_unmatched` off, a parcel no rule fits is
    recorded without holding its order (a person released that hold). A constant number of
    queries whatever the number of parcels.
    """
    result = ApplyResult()
    ids = sorted(set(shipment_ids))
    if not ids:
        return result
    now = now or timezone.now()
    user = user if user is not None and user.is_authenticated else None
    with tenant_context(tenant), transaction.atomic():
        # The parcels' orders are read first and locked by `pk = ANY(array)`: a subquery here
        # let PostgreSQL, on a fresh table's statistics (a new seller's first spike), take
        # the orders for one row and rescan the parcels for each of them (0.7 s a page).
        order_ids = sorted(
            set(Shipment.objects.filter(pk__any=ids).values_list("order_id", flat=True))
        )
        orders = {
            order.pk: order
            for order in Order.objects.select_for_update(of=("self",))
            .filter(pk__any=order_ids)
            .select_related("shop")
            .only(*PARCEL_ORDER_FIELDS)
            .order_by("pk")
        }
        locked = list(
            Shipment.objects.select_for_update(of=("self",))
            .filter(pk__any=ids)
            .select_related("warehouse")
            .only(*PARCEL_SHIPMENT_FIELDS)
            .order_by("pk")
        )
        # A parcel a live label batch holds keeps the service the batch is buying for.
        batched = set(
            LabelBatchItem.objects.filter(shipment_id__any=ids, live=True)
            .order_by()
            .values_list("shipment_id", flat=True)
        )
        shipments = [s for s in locked if _applicable(s) and s.pk not in batched]
        result.left_alone = len(locked) - len(shipments)
        if not shipments:
            return result
        if rules is None:
            rules = carrier_rules_load(tenant=tenant)
        if not rules:
            # Rules are not in use here: note that they ran (so the sweep does not come back)
            # and leave the service to whoever chooses it.
            result.no_rules = True
            Shipment.objects.filter(pk__any=[s.pk for s in shipments]).update(
                rules_applied_at=now, updated_at=now
            )
            return result
        parcels = parcels_describe(
            shipments=shipments, orders=orders, allowance=packaging_allowance_get(tenant=tenant)
        )
        for _ in range(3):
            decisions = {s.pk: rules_pick(rules=rules, parcel=parcels[s.pk]) for s in shipments}
            if _rules_keep(tenant=tenant, decisions=decisions.values()):
                break
            # A rule was deleted since the rules were loaded: decide again with today's.
            rules = carrier_rules_load(tenant=tenant)
        _shipments_write(tenant=tenant, shipments=shipments, parcels=parcels, decisions=decisions)

        events = []
        misses: dict[int, str] = {}
        for shipment in shipments:
            decision = decisions[shipment.pk]
            result.applied += 1
            if decision.rule is None:
                result.unmatched += 1
                message = no_rule_message(parcels[shipment.pk], decision.skipped)
                misses[shipment.order_id] = " ".join(
                    filter(None, [misses.get(shipment.order_id), message])
                )
                continue
            result.matched += 1
            result.by_rule[decision.rule.id] += 1
            if decision.service_id != shipment.service_id:
                result.changed += 1
                if shipment.service_id is not None:
                    events.append(_service_changed_event(shipment, decision, user=user))
        if events:
            rows_copy(OrderEvent, events)
        if misses and hold_unmatched:
            result.held = len(orders_hold_many(messages=misses, code=NO_RULE, user=user))
        served = {s.order_id for s in shipments} - set(misses)
        held = set(
            OrderHold.objects.filter(order_id__any=served, code=NO_RULE, released_at__isnull=True)
            .order_by()
            .values_list("order_id", flat=True)
        )
        if held:
            # An order's no_rule hold goes once every live parcel of it has a service.
            waiting = set(
                Shipment.objects.filter(order_id__in=held, service__isnull=True)
                .exclude(status=ShipmentStatus.CANCELLED)
                .values_list("order_id", flat=True)
            )
            result.released = len(
                orders_release_many(order_ids=sorted(held - waiting), code=NO_RULE, user=user)
            )
        # Last, so the rule rows this locks stay locked only until the commit: concurrent
        # batches queue on them for a moment, not for their whole run.
        _hits_count(decisions.values(), now=now)
    return result


def _applicable(shipment: Shipment) -> bool:
    return (
        shipment.status == ShipmentStatus.PENDING
        and not shipment.tracking_number
        and not shipment.label_file
    )


def _rules_keep(*, tenant: Tenant, decisions: Iterable[Decision]) -> bool:
    """Key-share lock the rules the decisions name, so none can be deleted before the parcels
    naming them are committed (the lock does not block counting hits). False when one is
    already gone."""
    used = sorted({d.rule.id for d in decisions if d.rule is not None})
    if not used:
        return True
    table = connection.ops.quote_name(CarrierRule._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM {table} WHERE id = ANY(%s) AND tenant_id = %s ORDER BY id "
            "FOR KEY SHARE",
            [used, tenant.pk],
        )
        return len(cursor.fetchall()) == len(used)


def _hits_count(decisions: Iterable[Decision], *, now: datetime) -> None:
    """Add each rule's parcels to its hit counter and stamp its last hit: one UPDATE."""
    hits = Counter(d.rule.id for d in decisions if d.rule is not None)
    if not hits:
        return
    CarrierRule.objects.filter(pk__in=list(hits)).update(
        hit_count=F("hit_count")
        + Case(
            *(When(pk=pk, then=Value(n)) for pk, n in hits.items()),
            default=Value(0),
            output_field=PositiveBigIntegerField(),
        ),
        last_hit_at=now,
    )


def _shipments_write(
    *,
    tenant: Tenant,
    shipments: Sequence[Shipment],
    parcels: dict[int, Parcel],
    decisions: dict[int, Decision],
) -> None:
    """Store every parcel's decision in one UPDATE ... FROM unnest(arrays): one parameter per
    column, whatever the batch size. Django's bulk_update builds a CASE per field and row, and
    a VALUES list binds every cell, both several times slower for a spike's batch."""
    columns: dict[str, list] = {name: [] for name in ("id", "service", "rule", "package", "grams")}
    skips: list[str] = []
    for shipment in shipments:
        decision = decisions[shipment.pk]
        rule = decision.rule
        columns["id"].append(shipment.pk)
        columns["service"].append(decision.service_id)
        columns["rule"].append(rule.id if rule is not None else None)
        columns["package"].append(rule.package_type if rule is not None else "")
        columns["grams"].append(parcels[shipment.pk].weight_grams)
        skips.append(json.dumps([skip.as_json() for skip in decision.skipped]))
    now = timezone.now()
    table = connection.ops.quote_name(Shipment._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} AS s SET service_id = v.service_id, carrier_rule_id = v.rule_id, "
            "package_type = v.package_type, weight_grams = v.weight_grams, "
            "rule_skips = v.skips::jsonb, rules_applied_at = %s, updated_at = %s "
            "FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::text[], %s::integer[], "
            "%s::text[]) AS v(id, service_id, rule_id, package_type, weight_grams, skips) "
            "WHERE s.id = v.id AND s.tenant_id = %s",
            [now, now, *columns.values(), skips, tenant.pk],
        )


def _service_changed_event(shipment: Shipment, decision: Decision, *, user) -> OrderEvent:
    rule = decision.rule
    return OrderEvent(
        tenant_id=shipment.tenant_id,
        order_id=shipment.order_id,
        kind="shipment.service_changed",
        message=f"Parcel {shipment.reference}: carrier rule “{rule.name}” chose "
        f"{rule.service.label}"[:500],
        data={
            "shipment": shipment.reference,
            "from_service_id": shipment.service_id,
            "to_service_id": rule.service.id,
            "rule_id": rule.id,
        },
        source=EventSource.USER if user is not None else EventSource.SYSTEM,
        user=user,
    )


def shipments_rules_pending(*, tenant: Tenant, limit: int) -> list[int]:
    """Open orders' parcels the rules never ran on and that have no service: new parcels of a
    split whose rules pass did not complete, or parcels added by hand. Oldest first."""
    with tenant_context(tenant):
        return list(
            Shipment.objects.filter(
                RULES_APPLICABLE,
                rules_applied_at__isnull=True,
                service__isnull=True,
                order__status__in=OPEN_STATUSES,
            )
            .order_by("pk")
            .values_list("pk", flat=True)[:limit]
        )


def order_rules_after_release(*, order: Order, user: AbstractBaseUser | None = None) -> None:
    """A person released the order's `carrier.no_rule` hold: try the rules once more on its
    parcels still without a service; one no rule fits stays without a service and unheld (the
    person will choose, or print through a source that needs none)."""
    tenant = order.tenant
    with tenant_context(tenant):
        ids = list(
            Shipment.objects.filter(RULES_APPLICABLE, order_id=order.pk, service__isnull=True)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
    if ids:
        shipments_rules_apply(tenant=tenant, shipment_ids=ids, user=user, hold_unmatched=False)


# --- dry run (no writes) -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DryRunParcel:
    """One parcel in a dry run's lists."""

    shipment_id: int
    reference: str
    order_id: int
    platform_order_id: str
    current: str  # today's service ("" none)
    proposed: str  # the proposed rules' service ("" none)
    rule: str  # the rule that would take it ("" none)
    labelled: bool  # has a label or left: re-applying would not touch it
    message: str = ""


@dataclass
class RuleEffect:
    """How many parcels one proposed rule would take, and how many it would skip."""

    rule_id: int | None
    name: str
    priority: int
    service: str
    parcels: int = 0
    skipped: int = 0


@dataclass
class RulesDryRun:
    """What a proposed rule set would do to the parcels of recent orders."""

    since: datetime
    parcels: int = 0
    truncated: bool = False  # more parcels than DRY_RUN_MAX_PARCELS: the most recent were read
    rules: list[RuleEffect] = field(default_factory=list)
    changed: int = 0
    changes: list[DryRunParcel] = field(default_factory=list)
    unmatched: int = 0
    unmatched_parcels: list[DryRunParcel] = field(default_factory=list)


def rules_dry_run(
    *, tenant: Tenant, rules: Iterable[CarrierRule | Rule], since: datetime
) -> RulesDryRun:
    """What `rules` (saved or not; inactive ones are ignored) would do to the live parcels of
    the tenant's orders placed since `since`: parcels per rule, parcels whose service would
    differ from the one they have today, and parcels no rule would take. Writes nothing."""
    compiled = rules_compile(rules)
    summary = RulesDryRun(
        since=since,
        rules=[RuleEffect(r.id, r.name, r.priority, r.service.label) for r in compiled],
    )
    # Rule names are unique per tenant, and an unsaved rule has no id yet.
    effects = {rule.name: effect for rule, effect in zip(compiled, summary.rules, strict=True)}
    with tenant_context(tenant):
        shipments = list(
            Shipment.objects.filter(
                Q(order__placed_at__gte=since)
                | Q(order__placed_at__isnull=True, order__created_at__gte=since)
            )
            .exclude(status=ShipmentStatus.CANCELLED)
            .select_related("order__shop", "warehouse", "service__carrier")
            .only(
                *PARCEL_SHIPMENT_FIELDS,
                *(f"order__{name}" for name in PARCEL_ORDER_FIELDS),
                "service__name",
                "service__carrier__name",
            )
            .order_by("-pk")[: DRY_RUN_MAX_PARCELS + 1]
        )
        summary.truncated = len(shipments) > DRY_RUN_MAX_PARCELS
        shipments = shipments[:DRY_RUN_MAX_PARCELS]
        orders = {s.order_id: s.order for s in shipments}
        parcels = parcels_describe(
            shipments=shipments, orders=orders, allowance=packaging_allowance_get(tenant=tenant)
        )
    summary.parcels = len(shipments)
    for shipment in reversed(shipments):
        parcel = parcels[shipment.pk]
        decision = rules_pick(rules=compiled, parcel=parcel)
        for skip in decision.skipped:
            effects[skip.rule].skipped += 1
        current = str(shipment.service) if shipment.service_id else ""
        if decision.rule is None:
            summary.unmatched += 1
            if len(summary.unmatched_parcels) < DRY_RUN_SAMPLES:
                summary.unmatched_parcels.append(
                    _dry_parcel(shipment, current, None, no_rule_message(parcel, decision.skipped))
                )
            continue
        effects[decision.rule.name].parcels += 1
        if decision.service_id != shipment.service_id:
            summary.changed += 1
            if len(summary.changes) < DRY_RUN_SAMPLES:
                summary.changes.append(_dry_parcel(shipment, current, decision.rule))
    return summary


def _dry_parcel(shipment: Shipment, current: str, rule: Rule | None, message: str = ""):
    return DryRunParcel(
        shipment_id=shipment.pk,
        reference=shipment.reference,
        order_id=shipment.order_id,
        platform_order_id=shipment.order.platform_order_id,
        current=current,
        proposed=rule.service.label if rule is not None else "",
        rule=rule.name if rule is not None else "",
        labelled=not _applicable(shipment),
        message=message,
    )


__all__ = [
    "RULES_APPLICABLE",
    "ApplyResult",
    "Decision",
    "Parcel",
    "Rule",
    "RulesDryRun",
    "ServiceLimits",
    "Skip",
    "carrier_rules_load",
    "no_rule_message",
    "order_rules_after_release",
    "packaging_allowance_get",
    "parcels_describe",
    "rules_compile",
    "rules_dry_run",
    "rules_pick",
    "shipments_rules_apply",
    "shipments_rules_pending",
]
