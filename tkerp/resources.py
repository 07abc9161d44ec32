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
        rollback_on_validation_errors = True

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
