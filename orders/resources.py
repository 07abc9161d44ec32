"""CSV import and export of orders, one row per order line.

Rows that share `(shop, order_id)` are one order: the order columns may be repeated on every row
or given once on the order's first row, and the totals are computed, never read. Everything is
keyed by natural keys (shop name, the order's id, the SKU code); the tenant comes from the user.
Orders are imported only into "Manual / CSV" shops; platform orders arrive by sync.

django-import-export imports one model instance per row, so the resource is an `OrderLine`
resource: before the first row it reads and checks the whole file (an order's totals and
consistency span rows), then each row writes its line, and the first row of an order that is new
or changed writes the order. Any bad row rolls the whole file back; every bad row is reported with
its number, its column and the reason.

Payment: a CSV order is a sale the seller already agreed, so a new order counts as paid when it
was placed (and reserves its stock at once) unless the optional `paid_at` column says otherwise:
a date and time is when it was paid, `unpaid` imports it unpaid (it then reserves nothing and
waits unreviewed until an import gives its `paid_at`). On an order already stored, a blank
`paid_at` keeps what is stored. An export writes `unpaid` for an order not paid, so exporting and
importing again changes nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone
from import_export import fields, widgets

from inventory.models import Sku
from orders.address import ORDER_ADDRESS_FIELDS, Address, address_normalise
from orders.events import order_event_add
from orders.models import Order, OrderLine, OrderStatus
from orders.pipeline import orders_after_ingest
from orders.review import ADDRESS_EDIT_FIELDS
from orders.sla import sla_deadlines
from shops.models import Platform, Shop
from tkerp.dates import RANGE_TEXT as DATES_RANGE_TEXT
from tkerp.dates import datetime_in_range
from tkerp.resources import TenantResource, parse_amount, restore_formula

REQUIRED_COLUMNS = ("shop", "order_id", "sku", "quantity", "unit_price")

# Order columns: CSV column -> Order field. Text, copied as given (trimmed).
ORDER_TEXT_COLUMNS = {
    "buyer_name": "buyer_name",
    "buyer_email": "buyer_email",
    "recipient_name": "recipient_name",
    "phone": "recipient_phone",
    "address_line1": "address_line1",
    "address_line2": "address_line2",
    "city": "city",
    "state": "state",
    "postal_code": "postal_code",
    "country": "country",
    "buyer_note": "buyer_note",
    "currency": "currency",
}
# Money on the order, blank meaning zero.
ORDER_MONEY_COLUMNS = {"shipping_fee": "shipping_fee", "tax": "tax", "discount": "seller_discount"}
ORDER_COLUMNS = (
    "shop",
    "order_id",
    "placed_at",
    "paid_at",
    *ORDER_TEXT_COLUMNS,
    *ORDER_MONEY_COLUMNS,
)
# What a `paid_at` cell says for an order not paid yet.
UNPAID = "unpaid"
LINE_COLUMNS = ("sku", "quantity", "unit_price")
EXPORT_ONLY_COLUMNS = ("status", "total")
CSV_COLUMNS = (*ORDER_COLUMNS, *LINE_COLUMNS, *EXPORT_ONLY_COLUMNS)
# A shippable order needs somebody to ship to.
REQUIRED_ORDER_VALUES = ("recipient_name", "address_line1", "city")

# An import may change an order only until fulfilment starts; after that, stock is reserved and
# parcels exist for what the order said.
IMPORT_CHANGEABLE_STATUSES = (OrderStatus.NEW, OrderStatus.ON_HOLD, OrderStatus.READY)

MAX_MONEY = Decimal("9999999999.99")  # what Order's DecimalField(max_digits=12, 2) can hold
CENT = Decimal("0.01")

_US_DATE_FORMATS = ("%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M", "%m/%d/%Y")


class ImportFileError(ValueError):
    """The file as a whole cannot be imported (e.g. a required column is missing)."""


@dataclass
class LinePlan:
    """What one valid row will write: its line, and the order it belongs to."""

    sku: Sku
    quantity: int
    unit_price: Decimal
    existing: OrderLine | None
    # Decided once, while planning: the import later writes into `existing` itself.
    changed: bool = True

    @property
    def total(self) -> Decimal:
        return (self.unit_price * self.quantity).quantize(CENT)

    def differs_from_stored(self) -> bool:
        if self.existing is None:
            return True
        return (
            self.existing.sku_id != self.sku.pk
            or self.existing.quantity != self.quantity
            or self.existing.unit_price != self.unit_price
            or self.existing.total != self.total
            or self.existing.is_cancelled
        )


@dataclass
class OrderPlan:
    """One order of the file: the rows it spans, its values, and the existing order if any."""

    shop: Shop
    platform_order_id: str
    first_row: int
    values: dict[str, Any] = field(default_factory=dict)
    value_rows: dict[str, int] = field(default_factory=dict)
    lines: dict[int, LinePlan] = field(default_factory=dict)  # row number -> line
    existing: Order | None = None
    order: Order | None = None  # the order this import writes (existing or new)
    changed_fields: list[str] = field(default_factory=list)
    unmatched_lines: list[str] = field(default_factory=list)
    saved: bool = False

    @property
    def needs_save(self) -> bool:
        return self.existing is None or bool(self.changed_fields)


@dataclass
class RowPlan:
    """The outcome of checking one row: its errors by column, or the line it writes."""

    number: int
    errors: dict[str, list[str]] = field(default_factory=dict)
    blank: bool = False
    group: OrderPlan | None = None
    line: LinePlan | None = None

    def error(self, column: str, message: str) -> None:
        self.errors.setdefault(column, []).append(message)


class TenantDateTimeWidget(widgets.Widget):
    """Renders a datetime as ISO 8601 with its UTC offset, in the tenant's time zone, so an
    export is unambiguous and re-imports to the same instant."""

    def __init__(self, tz, **kwargs):
        super().__init__(**kwargs)
        self.tz = tz

    def render(self, value, obj=None, **kwargs):
        if not isinstance(value, datetime):
            return ""
        local = value.astimezone(self.tz)
        if kwargs.get("force_native_type"):
            return local.replace(tzinfo=None)  # spreadsheets cannot store an offset
        return local.isoformat(timespec="seconds")


class PaidAtWidget(TenantDateTimeWidget):
    """`paid_at` as `TenantDateTimeWidget` writes it, and `unpaid` for an order not paid (a blank
    cell would mean "paid when placed" to the import)."""

    def render(self, value, obj=None, **kwargs):
        if value is None:
            return UNPAID
        return super().render(value, obj, **kwargs)


def _money_field(attribute: str, column: str) -> fields.Field:
    return fields.Field(attribute=attribute, column_name=column, widget=widgets.DecimalWidget())


class OrderLineResource(TenantResource):
    """Orders as CSV, one row per line; see the module docstring for the rules."""

    shop = fields.Field(attribute="order__shop__name", column_name="shop")
    order_id = fields.Field(attribute="order__platform_order_id", column_name="order_id")
    placed_at = fields.Field(attribute="order__placed_at", column_name="placed_at")
    paid_at = fields.Field(attribute="order__paid_at", column_name="paid_at")
    buyer_name = fields.Field(attribute="order__buyer_name", column_name="buyer_name")
    buyer_email = fields.Field(attribute="order__buyer_email", column_name="buyer_email")
    recipient_name = fields.Field(attribute="order__recipient_name", column_name="recipient_name")
    phone = fields.Field(attribute="order__recipient_phone", column_name="phone")
    address_line1 = fields.Field(attribute="order__address_line1", column_name="address_line1")
    address_line2 = fields.Field(attribute="order__address_line2", column_name="address_line2")
    city = fields.Field(attribute="order__city", column_name="city")
    state = fields.Field(attribute="order__state", column_name="state")
    postal_code = fields.Field(attribute="order__postal_code", column_name="postal_code")
    country = fields.Field(attribute="order__country", column_name="country")
    buyer_note = fields.Field(attribute="order__buyer_note", column_name="buyer_note")
    currency = fields.Field(attribute="order__currency", column_name="currency")
    shipping_fee = _money_field("order__shipping_fee", "shipping_fee")
    tax = _money_field("order__tax", "tax")
    discount = _money_field("order__seller_discount", "discount")
    sku = fields.Field(attribute="seller_sku", column_name="sku")
    quantity = fields.Field(
        attribute="quantity", column_name="quantity", widget=widgets.IntegerWidget()
    )
    unit_price = _money_field("unit_price", "unit_price")
    # Export only: what happened to the order, and what it came to.
    status = fields.Field(attribute="order__status", column_name="status", readonly=True)
    total = fields.Field(
        attribute="order__total", column_name="total", readonly=True, widget=widgets.DecimalWidget()
    )

    class Meta:
        model = OrderLine
        fields = CSV_COLUMNS
        export_order = CSV_COLUMNS
        import_order = CSV_COLUMNS
        # The natural key of a row; the lookup itself is `get_instance` below.
        import_id_fields = ("shop", "order_id", "sku")
        name = "Orders, one row per line"

    def __init__(self, tenant=None, **kwargs):
        super().__init__(tenant=tenant, **kwargs)
        self.tz = _tenant_zone(self.tenant)
        self.fields["placed_at"].widget = TenantDateTimeWidget(self.tz)
        self.fields["paid_at"].widget = PaidAtWidget(self.tz)
        self._rows: dict[int, RowPlan] = {}
        self._current: RowPlan | None = None
        self.order_counts = {"new": 0, "updated": 0}
        self._ingested: dict[int, tuple[Shop, set[int]]] = {}

    # ----------------------------------------------------------------------------- import

    def get_import_fields(self):
        return [f for f in super().get_import_fields() if not f.readonly]

    def before_import(self, dataset, **kwargs):
        super().before_import(dataset, **kwargs)
        self._rows = {}
        self.order_counts = {"new": 0, "updated": 0}
        self._ingested = {}
        dataset.headers = [_column_key(header) for header in dataset.headers or []]
        missing = [column for column in REQUIRED_COLUMNS if column not in dataset.headers]
        if missing:
            # Nothing row by row makes sense without these: drop the rows, report the file.
            del dataset[0 : len(dataset)]
            raise ImportFileError(
                "The file has no column named "
                + ", ".join(missing)
                + ". Required columns: "
                + ", ".join(REQUIRED_COLUMNS)
                + "."
            )
        rows = [dict(zip(dataset.headers, values, strict=False)) for values in dataset]
        self._rows = plan_order_rows(tenant=self.require_tenant(), rows=rows, tz=self.tz)

    def before_import_row(self, row, **kwargs):
        super().before_import_row(row, **kwargs)
        self._current = self._rows.get(kwargs.get("row_number"))

    def get_instance(self, instance_loader, row):
        plan = self._current
        if plan is None or plan.line is None:
            return None
        return plan.line.existing

    def import_instance(self, instance, row, **kwargs):
        plan = self._current
        if plan is None:
            raise ValidationError("This row was not checked; import the file again.")
        if plan.errors:
            raise ValidationError(plan.errors)
        if plan.blank:
            return
        line, group = plan.line, plan.group
        instance.order = group.order
        instance.sku = line.sku
        instance.seller_sku = line.sku.code
        instance.quantity = line.quantity
        instance.unit_price = line.unit_price
        instance.total = line.total
        instance.is_cancelled = False
        if line.existing is None:
            # A manual order has one line per SKU, so the SKU code is the line's natural key.
            instance.platform_line_id = line.sku.code
            instance.product_name = line.sku.name[
                : OrderLine._meta.get_field("product_name").max_length
            ]

    def validate_instance(self, instance, import_validation_errors=None, validate_unique=True):
        # Every check ran over the whole file in `plan_order_rows`, with row and column named;
        # the model's own full_clean() would only add noise about the order not saved yet.
        if import_validation_errors:
            raise ValidationError(import_validation_errors)

    def skip_row(self, instance, original, row, import_validation_errors=None):
        plan = self._current
        if import_validation_errors or plan is None or plan.errors:
            return False
        if plan.blank:
            return True
        group = plan.group
        return not (plan.line.changed or (group.needs_save and not group.saved))

    def before_save_instance(self, instance, row, **kwargs):
        super().before_save_instance(instance, row, **kwargs)
        group = self._current.group
        if group.needs_save and not group.saved:
            self._save_order(group, user=kwargs.get("user"), file_name=kwargs.get("file_name"))
        instance.order = group.order

    def _save_order(self, group: OrderPlan, *, user, file_name) -> None:
        order = group.order
        is_new = order.pk is None
        order.save()
        group.saved = True
        # Review and stock run on what the import created or changed, once it committed.
        self._ingested.setdefault(order.shop_id, (order.shop, set()))[1].add(order.pk)
        source = {"file": file_name} if file_name else {}
        if is_new:
            self.order_counts["new"] += 1
            order_event_add(
                order=order,
                kind="order.imported",
                message="Imported from " + (file_name or "a CSV file"),
                data={**source, "lines": len(group.lines)},
                user=user,
            )
        else:
            self.order_counts["updated"] += 1
            order_event_add(
                order=order,
                kind="order.import_updated",
                message="Changed by import: " + ", ".join(group.changed_fields),
                data={**source, "fields": group.changed_fields},
                user=user,
            )

    def after_import(self, dataset, result, **kwargs):
        super().after_import(dataset, result, **kwargs)
        result.order_counts = dict(self.order_counts)
        if not kwargs.get("dry_run") and not result.has_errors():
            ingested = list(self._ingested.values())

            def after_commit() -> None:
                for shop, order_ids in ingested:
                    orders_after_ingest(shop=shop, created_ids=sorted(order_ids), updated_ids=())

            # A preview or a failed import rolls back, and its callbacks are dropped with it.
            transaction.on_commit(after_commit)

    # ----------------------------------------------------------------------------- export

    def filter_export(self, queryset, **kwargs):
        """Accept the order changelist's queryset and export the lines of those orders."""
        queryset = super().filter_export(queryset, **kwargs)
        if queryset is not None and queryset.model is Order:
            orders = queryset.prefetch_related(None).order_by().values("pk")
            queryset = OrderLine.objects.filter(order__in=orders)
        return queryset.select_related("order__shop", "sku").order_by(
            "-order__placed_at", "-order_id", "pk"
        )


def _tenant_zone(tenant):
    try:
        return ZoneInfo(tenant.timezone) if tenant is not None else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _column_key(header) -> str:
    """`Order ID`, ` order_id ` and `ORDER-ID` all name the `order_id` column."""
    return re.sub(r"[\s\-]+", "_", str(header or "").strip().lower())


def _cell(row: dict, column: str) -> Any:
    value = row.get(column)
    if value is None:
        return ""
    if isinstance(value, str):
        return restore_formula(value).strip()
    return value


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # spreadsheets turn 94105 into 94105.0
    return str(value).strip()


def _parse_money(value: Any) -> Decimal:
    """A non-negative amount with at most two decimals; raises ValueError with the reason.

    Written in plain decimal notation: `1e30` or `1e2` are refused (and never reach Decimal
    arithmetic that could overflow into a traceback).
    """
    if value in ("", None):
        return Decimal("0")
    text = _text(value)
    if text.startswith("-"):
        raise ValueError("must not be negative")
    return parse_amount(text, max_digits=12, decimal_places=2)


MAX_QUANTITY = 1_000_000  # units of one SKU on one order line


def _parse_quantity(value: Any) -> int:
    text = _text(value)
    if not re.fullmatch(r"\d+", text):
        raise ValueError(f"'{value}' is not a whole number")
    # Too long is too large, said before int(): past 4,300 digits it raises Python's sentence.
    if len(text.lstrip("0")) > len(str(MAX_QUANTITY)):
        raise ValueError("is too large")
    quantity = int(text)
    if quantity < 1:
        raise ValueError("must be at least 1")
    if quantity > MAX_QUANTITY:
        raise ValueError("is too large")
    return quantity


def _parse_datetime(value: Any, tz) -> datetime:
    """ISO 8601 (with or without an offset) or US month/day/year; naive means the tenant's
    time zone. Years outside 2000-2100 (in UTC) are refused (`tkerp.dates`): stored, year 1 or
    9999 would make every order list of the tenant an error page."""
    return _in_range(_read_datetime(value, tz), value)


def _in_range(parsed: datetime, value: Any) -> datetime:
    if not datetime_in_range(parsed):
        raise ValueError(f"'{value}' is outside {DATES_RANGE_TEXT}")
    return parsed


def _read_datetime(value: Any, tz) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    else:
        text = str(value).strip()
        parsed = None
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            for fmt in _US_DATE_FORMATS:
                try:
                    parsed = datetime.strptime(text, fmt)
                    break
                except ValueError:
                    continue
        if parsed is None:
            raise ValueError(f"'{value}' is not a date and time; write it like 2025-04-12 14:30")
    if timezone.is_naive(parsed):
        parsed = parsed.replace(tzinfo=tz)
    return parsed


def _max_length(model, name: str) -> int | None:
    return model._meta.get_field(name).max_length


def plan_order_rows(*, tenant, rows: list[dict], tz) -> dict[int, RowPlan]:
    """Check every row of an order file and work out what importing it would write.

    Returns one `RowPlan` per row, numbered from 1 like the import's result: either its errors
    by column, or the line it writes and the order (new or existing, with the changed fields)
    it belongs to. Existing orders named by the file are locked for the rest of the transaction.
    Reads the database a fixed number of times, whatever the file's size.
    """
    plans: dict[int, RowPlan] = {}
    cells: dict[int, dict[str, Any]] = {}
    for number, row in enumerate(rows, 1):
        values = {column: _cell(row, column) for column in row if column}
        plans[number] = RowPlan(number=number, blank=all(v in ("", None) for v in values.values()))
        cells[number] = values

    shop_names = {_text(c.get("shop", "")) for c in cells.values()} - {""}
    shops = {shop.name: shop for shop in Shop.objects.filter(tenant=tenant, name__in=shop_names)}
    sku_codes = {_text(c.get("sku", "")) for c in cells.values()} - {""}
    skus = {sku.code: sku for sku in Sku.objects.filter(tenant=tenant, code__in=sku_codes)}

    groups: dict[tuple[int, str], OrderPlan] = {}
    for number, values in cells.items():
        plan = plans[number]
        if plan.blank:
            continue
        shop = _check_shop(plan, _text(values.get("shop", "")), shops)
        order_id = _text(values.get("order_id", ""))
        if not order_id:
            plan.error("order_id", "is required")
        elif len(order_id) > _max_length(Order, "platform_order_id"):
            plan.error("order_id", "is too long")
        line = _check_line(plan, values, skus)
        if shop is None or not order_id:
            continue
        group = groups.get((shop.pk, order_id))
        if group is None:
            group = groups[(shop.pk, order_id)] = OrderPlan(
                shop=shop, platform_order_id=order_id, first_row=number
            )
        plan.group = group
        _merge_order_values(plan, group, values, tz)
        if line is not None:
            duplicate = next((n for n, other in group.lines.items() if other.sku == line.sku), None)
            if duplicate is not None:
                plan.error(
                    "sku",
                    f"{line.sku.code} is already on row {duplicate} of this order; "
                    "put the total quantity on one row",
                )
            else:
                group.lines[number] = line
                plan.line = line

    _attach_existing_orders(tenant, groups)
    for group in groups.values():
        _finish_order(group, plans[group.first_row], tz)
    return plans


def _check_shop(plan: RowPlan, name: str, shops: dict[str, Shop]) -> Shop | None:
    if not name:
        plan.error("shop", "is required")
        return None
    shop = shops.get(name)
    if shop is None:
        plan.error("shop", f"there is no shop named '{name}'")
        return None
    if shop.platform != Platform.MANUAL:
        plan.error(
            "shop",
            f"'{name}' is a {shop.get_platform_display()} shop; orders can only be imported "
            f"into {Platform.MANUAL.label} shops",
        )
        return None
    return shop


def _check_line(plan: RowPlan, values: dict, skus: dict[str, Sku]) -> LinePlan | None:
    code = _text(values.get("sku", ""))
    sku = None
    if not code:
        plan.error("sku", "is required")
    else:
        sku = skus.get(code)
        if sku is None:
            plan.error("sku", f"unknown SKU '{code}'")
    quantity = unit_price = None
    if values.get("quantity", "") in ("", None):
        plan.error("quantity", "is required")
    else:
        try:
            quantity = _parse_quantity(values["quantity"])
        except ValueError as e:
            plan.error("quantity", str(e))
    if values.get("unit_price", "") in ("", None):
        plan.error("unit_price", "is required")
    else:
        try:
            unit_price = _parse_money(values["unit_price"])
        except ValueError as e:
            plan.error("unit_price", str(e))
    if sku is None or quantity is None or unit_price is None:
        return None
    return LinePlan(sku=sku, quantity=quantity, unit_price=unit_price, existing=None)


def _merge_order_values(plan: RowPlan, group: OrderPlan, values: dict, tz) -> None:
    """Take this row's order columns into the order: a blank cell repeats the order's value,
    a different one is an error on this row."""
    for column in ORDER_COLUMNS[2:]:
        raw = values.get(column, "")
        if raw in ("", None):
            continue
        try:
            value = _parse_order_value(column, raw, tz)
        except ValueError as e:
            plan.error(column, str(e))
            continue
        if column not in group.values:
            group.values[column] = value
            group.value_rows[column] = plan.number
        elif group.values[column] != value:
            plan.error(
                column,
                f"differs from row {group.value_rows[column]} of the same order "
                f"('{group.values[column]}')",
            )


def _parse_order_value(column: str, raw: Any, tz) -> Any:
    if column == "placed_at":
        return _parse_datetime(raw, tz)
    if column == "paid_at":
        if isinstance(raw, str) and raw.strip().lower() == UNPAID:
            return None
        try:
            parsed = _read_datetime(raw, tz)
        except ValueError:
            raise ValueError(
                f"'{raw}' is not a date and time; write it like 2025-04-12 14:30, "
                f"or '{UNPAID}' for an order not paid yet"
            ) from None
        return _in_range(parsed, raw)
    if column in ORDER_MONEY_COLUMNS:
        return _parse_money(raw)
    value = _text(raw)
    if column in ("country", "currency"):
        value = value.upper()
        length = 2 if column == "country" else 3
        if not re.fullmatch(rf"[A-Z]{{{length}}}", value):
            raise ValueError(f"'{raw}' is not a {length}-letter code")
    if column == "buyer_email":
        try:
            validate_email(value)
        except ValidationError:
            raise ValueError(f"'{raw}' is not an email address") from None
    max_length = _max_length(Order, ORDER_TEXT_COLUMNS[column])
    if max_length and len(value) > max_length:
        raise ValueError(f"is too long (at most {max_length} characters)")
    return value


def _attach_existing_orders(tenant, groups: dict[tuple[int, str], OrderPlan]) -> None:
    """Find (and lock, in primary-key order) the orders the file names that already exist."""
    if not groups:
        return
    shop_ids = {shop_id for shop_id, _ in groups}
    order_ids = {order_id for _, order_id in groups}
    existing = (
        Order.objects.select_for_update()
        .filter(tenant=tenant, shop_id__in=shop_ids, platform_order_id__in=order_ids)
        .order_by("pk")
    )
    by_key = {(o.shop_id, o.platform_order_id): o for o in existing}
    for key, order in by_key.items():
        if key in groups:
            order.shop = groups[key].shop  # already loaded; saves a query per row in the preview
    found = [by_key[key] for key in groups if key in by_key]
    lines_by_order: dict[int, list[OrderLine]] = {}
    for existing_line in OrderLine.objects.filter(order__in=found).select_related("order__shop"):
        lines_by_order.setdefault(existing_line.order_id, []).append(existing_line)
    for key, group in groups.items():
        order = by_key.get(key)
        if order is None:
            continue
        group.existing = order
        unmatched = []
        for existing_line in lines_by_order.get(order.pk, []):
            match = next(
                (
                    line
                    for line in group.lines.values()
                    if line.existing is None and line.sku.pk == existing_line.sku_id
                ),
                None,
            )
            if match is not None:
                match.existing = existing_line
            else:
                unmatched.append(existing_line.seller_sku or existing_line.platform_line_id)
        group.unmatched_lines = unmatched


def _finish_order(group: OrderPlan, first: RowPlan, tz) -> None:
    """Fill the order's defaults and totals, compare it with the stored order, and report what
    only the order as a whole can get wrong (on its first row)."""
    shop, values = group.shop, group.values
    for column in REQUIRED_ORDER_VALUES:
        if not values.get(column):
            first.error(column, "is required (on at least one row of the order)")
    subtotal = sum((line.total for line in group.lines.values()), Decimal("0"))
    shipping_fee = values.get("shipping_fee", Decimal("0"))
    tax = values.get("tax", Decimal("0"))
    discount = values.get("discount", Decimal("0"))
    total = subtotal + shipping_fee + tax - discount
    if total < 0:
        first.error("discount", "is larger than the order's lines, shipping and tax together")
    if total > MAX_MONEY:
        first.error("unit_price", "the order's total is too large")

    fields_: dict[str, Any] = {
        order_field: values.get(column, "") for column, order_field in ORDER_TEXT_COLUMNS.items()
    }
    fields_["currency"] = values.get("currency") or shop.currency
    fields_["country"] = values.get("country") or (
        shop.region if re.fullmatch(r"[A-Z]{2}", shop.region or "") else "US"
    )
    fields_.update(
        shipping_fee=shipping_fee, tax=tax, seller_discount=discount, subtotal=subtotal, total=total
    )
    if "placed_at" in values:
        fields_["placed_at"] = values["placed_at"]
    if "paid_at" in values:
        fields_["paid_at"] = values["paid_at"]  # None: the file says "unpaid"
    # Stored normalised, as review would store it, so importing the same file again finds the
    # order unchanged; the file's own spelling is kept in `original_address`.
    original = {name: fields_[name] for name in ADDRESS_EDIT_FIELDS if fields_.get(name)}
    address = address_normalise(
        Address(**{key: fields_.get(name) or "" for key, name in ORDER_ADDRESS_FIELDS.items()})
    )
    for key, name in ORDER_ADDRESS_FIELDS.items():
        fields_[name] = getattr(address, key)[: _max_length(Order, name) or None]

    existing = group.existing
    if existing is None:
        fields_.setdefault("placed_at", timezone.now())
        # Paid when placed unless the file says otherwise (see the module docstring).
        fields_.setdefault("paid_at", fields_["placed_at"])
        group.order = Order(
            tenant_id=shop.tenant_id,
            shop=shop,
            platform_order_id=group.platform_order_id,
            status=OrderStatus.NEW,
            original_address=original,
            **fields_,
        )
        _set_deadlines(group.order, shop)
        return

    if group.unmatched_lines:
        first.error(
            "sku",
            "the order also has " + ", ".join(group.unmatched_lines) + ", which this file leaves "
            "out; an import adds or changes lines but never removes them",
        )
    changed = [name for name, value in fields_.items() if getattr(existing, name) != value]
    for line in group.lines.values():
        line.changed = line.differs_from_stored()
    if any(line.changed for line in group.lines.values()):
        changed.append("lines")
    if changed and existing.status not in IMPORT_CHANGEABLE_STATUSES:
        first.error(
            "order_id",
            f"order {existing.platform_order_id} is {existing.get_status_display().lower()}; "
            "an import can no longer change it",
        )
    for name, value in fields_.items():
        setattr(existing, name, value)
    if {"placed_at", "paid_at"} & set(changed):
        _set_deadlines(existing, shop)
    group.changed_fields = changed
    group.order = existing


def _set_deadlines(order: Order, shop: Shop) -> None:
    """A CSV order has no platform deadline: the shop's policy counts from payment (placement,
    for an order not paid)."""
    deadlines = sla_deadlines(
        paid_at=order.paid_at,
        placed_at=order.placed_at,
        is_presale=order.is_presale,
        ship_by_hours=shop.ship_by_hours,
        presale_ship_by_hours=shop.presale_ship_by_hours,
        tracking_upload_hours=shop.tracking_upload_hours,
    )
    order.ship_by, order.tracking_by = deadlines.ship_by, deadlines.tracking_by
