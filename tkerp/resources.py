"""The base of every CSV import/export resource: tenant-safe, all-or-nothing, formula-safe, strict.

Strict means an import never changes a value it was not clearly given: a blank cell in a number
or yes/no column is an error rather than the model's default, a whole number is written with
digits only (`10.9` and `1e2` are refused, never rounded), an amount in plain decimal notation,
and a row's key (its `import_id_fields`) appears once per file. Every such problem is a
validation error on its row and column, and the import writes nothing.
"""

import logging
import re
from decimal import Decimal, InvalidOperation

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import models
from import_export import resources, widgets
from import_export.results import RowResult

from tkerp.tenancy import TenantNotSet, current_tenant

logger = logging.getLogger(__name__)

# A cell starting with one of these is a formula to a spreadsheet (CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralise_formula(value: str) -> str:
    """Make a text cell inert in spreadsheets by prefixing a quote (OWASP's advice)."""
    if value and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def restore_formula(value):
    """Undo `neutralise_formula` on import, so an export re-imports to the same text."""
    if isinstance(value, str) and value[:1] == "'" and value[1:].startswith(FORMULA_PREFIXES):
        return value[1:]
    return value


# What the cells of a numeric column may hold: digits, and for amounts one decimal point.
_WHOLE_NUMBER = re.compile(r"\d+")
_PLAIN_AMOUNT = re.compile(r"(\d+)(?:\.(\d*))?|\.(\d+)")
# Anything Python would read as a number, to tell "not a whole number" from "not a number".
_NUMBER_LIKE = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|infinity|nan)", re.I)
# PostgreSQL's integer column; PositiveIntegerField and IntegerField both stop here.
MAX_INTEGER = 2_147_483_647
YES_VALUES = frozenset({"1", "true", "yes", "y"})
NO_VALUES = frozenset({"0", "false", "no", "n"})


def _cell_text(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # spreadsheets store 12 as 12.0
    return str(value).strip()


def _is_blank(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def parse_whole_number(value, *, max_value: int = MAX_INTEGER) -> int:
    """A count, size or priority: digits only, 0 to `max_value`; raises ValueError saying why.

    `10.9` or `1e2` are refused rather than rounded: a file that says 10.9 units is wrong, and
    guessing which whole number it meant would change the data silently.
    """
    if isinstance(value, bool):
        raise ValueError(f"“{value}” is not a number.")
    if isinstance(value, int):
        number = value
    else:
        text = _cell_text(value)
        if not _WHOLE_NUMBER.fullmatch(text):
            if _NUMBER_LIKE.fullmatch(text):
                raise ValueError(
                    f"“{text}” is not a whole number; write it with digits only, like 12."
                )
            raise ValueError(f"“{text}” is not a number.")
        digits = text.lstrip("0")
        if len(digits) > len(str(max_value)):
            # Checked before int(): past 4,300 digits it raises Python's own sentence.
            shown = text if len(text) <= 20 else f"{text[:12]}… ({len(text)} digits)"
            raise ValueError(f"“{shown}” is too large (at most {max_value}).")
        number = int(text)
    if number < 0:
        raise ValueError(f"“{number}” is negative; write 0 or more.")
    if number > max_value:
        raise ValueError(f"“{number}” is too large (at most {max_value}).")
    return number


def parse_amount(value, *, max_digits: int, decimal_places: int) -> Decimal:
    """A non-negative amount in plain decimal notation (`1234.50`); raises ValueError saying why.

    Exponents (`1e2`), thousands separators and signs are refused: they are either a
    spreadsheet's rendering of something else or ambiguous between locales.
    """
    if isinstance(value, bool):
        raise ValueError(f"“{value}” is not an amount.")
    text = _cell_text(value)
    match = _PLAIN_AMOUNT.fullmatch(text)
    if not match:
        if text.startswith("-") and _PLAIN_AMOUNT.fullmatch(text[1:]):
            raise ValueError(f"“{text}” is negative; amounts are 0 or more.")
        if _NUMBER_LIKE.fullmatch(text):
            raise ValueError(f"“{text}” is not written as a plain number; write it like 1234.50.")
        raise ValueError(f"“{text}” is not a number.")
    whole = (match.group(1) or "").lstrip("0")
    fraction = (match.group(2) or match.group(3) or "").rstrip("0")
    if len(fraction) > decimal_places:
        raise ValueError(f"“{text}” has more than {decimal_places} decimal places.")
    if len(whole) > max_digits - decimal_places:
        largest = "9" * (max_digits - decimal_places) + "." + "9" * decimal_places
        raise ValueError(f"“{text}” is too large (at most {largest.rstrip('.')}).")
    try:
        return Decimal(text).quantize(Decimal(1).scaleb(-decimal_places))
    except InvalidOperation:  # pragma: no cover - the checks above bound every digit
        raise ValueError(f"“{text}” is not a number.") from None


def parse_yes_no(value) -> bool:
    """1/0, true/false, yes/no (any case); anything else is a ValueError, never a silent no."""
    if isinstance(value, bool):
        return value
    text = _cell_text(value).lower()
    if text in YES_VALUES:
        return True
    if text in NO_VALUES:
        return False
    raise ValueError(f"“{_cell_text(value)}” is not yes or no; write 1 (yes) or 0 (no).")


class _StrictMixin:
    """A blank cell is None where the column may be empty, else an error (never the default)."""

    blank_message = "is blank; write a value."

    def __init__(self, *args, required: bool = False, **kwargs):
        self.required = required
        super().__init__(*args, **kwargs)

    def clean(self, value, row=None, **kwargs):
        if _is_blank(value):
            if self.required:
                raise ValueError(self.blank_message)
            return None
        return self.parse(value)


class WholeNumberWidget(_StrictMixin, widgets.IntegerWidget):
    """Counts, sizes, priorities: see `parse_whole_number`."""

    blank_message = "is blank; write a whole number (0 for none)."

    def __init__(self, *args, max_value: int = MAX_INTEGER, **kwargs):
        self.max_value = max_value
        super().__init__(*args, **kwargs)

    def parse(self, value):
        return parse_whole_number(value, max_value=self.max_value)


class AmountWidget(_StrictMixin, widgets.DecimalWidget):
    """Money and percentages: see `parse_amount`."""

    blank_message = "is blank; write an amount (0 for none)."

    def __init__(self, *args, max_digits: int = 12, decimal_places: int = 2, **kwargs):
        self.max_digits = max_digits
        self.decimal_places = decimal_places
        super().__init__(*args, **kwargs)

    def parse(self, value):
        return parse_amount(value, max_digits=self.max_digits, decimal_places=self.decimal_places)


class YesNoWidget(_StrictMixin, widgets.BooleanWidget):
    """Flags: see `parse_yes_no`."""

    blank_message = "is blank; write 1 (yes) or 0 (no)."

    def parse(self, value):
        return parse_yes_no(value)


def strict_widget(django_field: models.Field):
    """The strict widget for a model field's column, or None where the library's is fine (text,
    dates, foreign keys: the model's own validation and the natural-key widgets cover those)."""
    required = not django_field.null
    if isinstance(django_field, models.BooleanField):
        return YesNoWidget(required=required)
    if isinstance(django_field, models.DecimalField):
        return AmountWidget(
            required=required,
            max_digits=django_field.max_digits,
            decimal_places=django_field.decimal_places,
        )
    if isinstance(django_field, models.IntegerField) and not isinstance(
        django_field, models.BigIntegerField | models.AutoField
    ):
        return WholeNumberWidget(required=required)
    return None


UNEXPECTED_ROW_ERROR = (
    "This row could not be imported because of an unexpected error, which was logged for the "
    "operator; nothing was imported."
)
UNEXPECTED_FILE_ERROR = (
    "The file could not be imported because of an unexpected error, which was logged for the "
    "operator; nothing was imported."
)


class KeyColumnsMissing(ValueError):
    """The file lacks a column that identifies its rows (the resource's `import_id_fields`)."""


def key_columns_missing(resource, headers) -> KeyColumnsMissing | None:
    """The error for a file whose header line lacks the column(s) identifying each row, or None.

    The same sentence whether the file is previewed in the request or imported as a job."""
    names = list(resource.get_import_id_fields())
    if names == ["id"]:
        return None  # import-export's default: rows without an id are new
    missing = [
        resource.fields[name].column_name
        for name in names
        if name in resource.fields and resource.fields[name].column_name not in (headers or [])
    ]
    if not missing:
        return None
    return KeyColumnsMissing(
        "The file has no column named "
        + ", ".join(missing)
        + " (what identifies each row); the first line must name the columns."
    )


class ImportFailed(Exception):
    """A plain-language stand-in for an unexpected exception, shown instead of its traceback."""


class TenantResource(resources.ModelResource):
    """ModelResource bound to one tenant.

    Lookups (the rows an import may update, foreign keys by natural key) go through the scoped
    default managers; new rows get the tenant server-side, never from the file. One bad row
    rolls the whole import back and every bad row is reported.
    """

    def __init__(self, tenant=None, **kwargs):
        super().__init__(**kwargs)
        self.tenant = tenant if tenant is not None else current_tenant()

    class Meta:
        skip_unchanged = True
        report_skipped = True
        clean_model_instances = True
        use_transactions = True

    @classmethod
    def field_from_django_field(cls, field_name, django_field, readonly):
        field = super().field_from_django_field(field_name, django_field, readonly)
        widget = strict_widget(django_field)
        if widget is not None:
            field.widget = widget
        return field

    @classmethod
    def bulk_import_supported(cls) -> bool:
        """Whether a large file may be imported by `tkerp.imports.BulkImport`, which writes the
        model's rows in bulk: only for resources that save plain model rows. One that writes
        through its own code (stock counts, orders) imports row by row."""
        return all(
            getattr(cls, name) is getattr(TenantResource, name)
            for name in (
                "import_instance",
                "validate_instance",
                "before_save_instance",
                "save_instance",
                "after_save_instance",
                "import_row",
                "skip_row",
            )
        )

    def import_data(self, dataset, *args, **kwargs):
        # All or nothing, whichever door the import comes through. import-export only reads
        # `rollback_on_validation_errors` as an argument here (a Meta option of that name is
        # silently ignored), and the admin's confirm step does not pass it: without this, the
        # valid rows of a file would be committed next to its invalid ones.
        kwargs["rollback_on_validation_errors"] = True
        return super().import_data(dataset, *args, **kwargs)

    def after_import(self, dataset, result, **kwargs):
        # Deliberately skips `ModelResource.after_import`, which resets the table's id sequence
        # to the highest id this transaction can see (Django's loaddata trick). Ids that
        # concurrent transactions have taken but not committed are invisible here, so the
        # counter would move below them and their next inserts fail with a duplicate primary
        # key. tkerp never imports ids, so the sequence has nothing to catch up with.
        resources.Resource.after_import(self, dataset, result, **kwargs)

    def get_queryset(self):
        return self._meta.model.objects.filter(tenant=self.require_tenant())

    def require_tenant(self):
        if self.tenant is None:
            raise TenantNotSet("imports and exports run for one tenant")
        return self.tenant

    def init_instance(self, row=None):
        instance = super().init_instance(row)
        instance.tenant = self.require_tenant()
        return instance

    def before_import_row(self, row, **kwargs):
        for key in list(row.keys()):
            row[key] = restore_formula(row[key])
        super().before_import_row(row, **kwargs)

    def before_import(self, dataset, **kwargs):
        super().before_import(dataset, **kwargs)
        self._keys_seen: dict[tuple, int] = {}

    def import_instance(self, instance, row, **kwargs):
        errors = {}
        try:
            super().import_instance(instance, row, **kwargs)
        except ValidationError as exc:
            errors = exc.update_error_dict(errors)
        repeated = self.key_repeated(row, kwargs.get("row_number"))
        if repeated is not None:
            errors.setdefault(repeated[0], []).append(ValidationError(repeated[1], code="repeated"))
        if errors:
            raise ValidationError(errors)

    def key_repeated(self, row, number) -> tuple[str, str] | None:
        """(field, message) when this row's key already appeared on an earlier row of the file.

        Applying a key twice would be applied-twice or last-wins depending on the model; either
        way the file contradicts itself, so the second row is an error.
        """
        key_fields = [self.fields[name] for name in self.get_import_id_fields()]
        if not key_fields or any(f.column_name not in row for f in key_fields):
            return None
        key = tuple(_cell_text(row[f.column_name]) for f in key_fields)
        if any(part in ("", "None") for part in key):
            return None  # a missing key is reported by the column's own validation
        seen = getattr(self, "_keys_seen", None)
        if seen is None:
            seen = self._keys_seen = {}
        first = seen.setdefault(key, number)
        if first == number:
            return None
        named = ", ".join(
            f"{f.column_name} “{part}”" for f, part in zip(key_fields, key, strict=True)
        )
        return (
            key_fields[0].attribute,
            f"{named} is already on row {first} of this file; each may appear once per file.",
        )

    def import_row(self, row, instance_loader, **kwargs):
        row_result = super().import_row(row, instance_loader, **kwargs)
        if row_result.errors:
            # An unexpected exception: the person importing gets their row named and a plain
            # sentence, the operator gets the traceback in the log; the import rolls back.
            for error in row_result.errors:
                logger.error(
                    "import of %s failed on row %s",
                    self._meta.model._meta.label,
                    kwargs.get("row_number"),
                    exc_info=error.error,
                )
            row_result.errors = []
            row_result.import_type = RowResult.IMPORT_TYPE_INVALID
            row_result.validation_error = ValidationError(
                {NON_FIELD_ERRORS: [UNEXPECTED_ROW_ERROR]}, code="unexpected"
            )
        return row_result

    def _check_import_id_fields(self, headers):
        # import-export's own check raises a FieldError, which the person importing only saw
        # as "an unexpected error": name the missing column instead, as the background job does.
        missing = key_columns_missing(self, headers)
        if missing is not None:
            raise missing
        super()._check_import_id_fields(headers)

    def handle_import_error(self, result, error, raise_errors=False):
        if not isinstance(error, ValueError | ValidationError):
            logger.error("import of %s failed", self._meta.model._meta.label, exc_info=error)
            error = ImportFailed(UNEXPECTED_FILE_ERROR)
        super().handle_import_error(result, error, raise_errors)

    def import_field(self, field, instance, row, is_m2m=False, **kwargs):
        try:
            super().import_field(field, instance, row, is_m2m, **kwargs)
        except ArithmeticError:
            # Text in a numeric column raises decimal.InvalidOperation, which is no ValueError:
            # import-export would report a traceback instead of a validation error on the column.
            raise ValueError(f"“{row.get(field.column_name)}” is not a number.") from None

    def before_save_instance(self, instance, row, **kwargs):
        # Belt and braces: a row can only ever be written into this resource's tenant.
        instance.tenant = self.require_tenant()
        super().before_save_instance(instance, row, **kwargs)

    def export_field(self, field, instance, **kwargs):
        value = super().export_field(field, instance, **kwargs)
        if isinstance(value, str) and not isinstance(
            _raw_value(field, instance), int | float | Decimal
        ):
            return neutralise_formula(value)
        return value


def _raw_value(field, instance):
    try:
        return field.get_value(instance)
    except Exception:  # a dehydrate-only column has no attribute to read
        return None
