"""The base of every CSV import/export resource: tenant-safe, all-or-nothing, formula-safe."""

from decimal import Decimal

from import_export import resources

from tkerp.tenancy import TenantNotSet, current_tenant

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
