"""CSV import/export of carrier rules, matched by rule name.

The rule's service is named by two columns, `carrier` (carrier code) and `service` (service code),
and its shop, when set, by name; all are looked up among the importing tenant's rows only.

The admin's upload step (a dry run, rolled back) also previews the rules as they would stand
after the import on recent parcels (`logistics.rules.rules_dry_run`), for the confirm page.
"""

from datetime import timedelta

from django.utils import timezone
from import_export.fields import Field

from inventory.resources import NaturalKeyResource, TenantForeignKeyWidget
from logistics.models import Carrier, CarrierRule, CarrierService
from shops.models import Shop
from tkerp.resources import TenantResource


class CarrierServiceWidget(TenantForeignKeyWidget):
    """A carrier service by service code, within the carrier named in the row's `carrier`."""

    def __init__(self, carrier_column: str = "carrier", **kwargs):
        self.carrier_column = carrier_column
        super().__init__(CarrierService, "code", **kwargs)

    def get_lookup_kwargs(self, value, row, **kwargs):
        return {"carrier__code": self._carrier_code(row), "code": value}

    def not_found_message(self, value, row) -> str:
        carrier_code = self._carrier_code(row)
        if not carrier_code:
            return f"Fill in the {self.carrier_column} column (carrier code) for service “{value}”."
        if not Carrier.objects.filter(tenant=self.tenant, code=carrier_code).exists():
            return f"No carrier with code “{carrier_code}” (column {self.carrier_column})."
        return f"Carrier “{carrier_code}” has no service with code “{value}”."

    def _carrier_code(self, row) -> str:
        value = (row or {}).get(self.carrier_column) or ""
        return str(value).strip()


class CarrierRuleResource(NaturalKeyResource):
    # Exported for the reader and used by the `service` lookup on import; never written itself.
    carrier = Field(attribute="service__carrier__code", column_name="carrier", readonly=True)
    service = Field(attribute="service", column_name="service", widget=CarrierServiceWidget())
    shop = Field(attribute="shop", column_name="shop", widget=TenantForeignKeyWidget(Shop, "name"))

    class Meta(TenantResource.Meta):
        model = CarrierRule
        import_id_fields = ("name",)
        fields = (
            "name",
            "priority",
            "is_active",
            "carrier",
            "service",
            "shop",
            "min_total",
            "max_total",
            "min_weight_grams",
            "max_weight_grams",
            "countries",
            "states",
            "sku_codes",
            "tag",
            "platform",
            "postal_prefixes",
            "min_items",
            "max_items",
            "package_type",
        )
        export_order = fields

    def get_queryset(self):
        return super().get_queryset().select_related("service__carrier", "shop")

    def after_import(self, dataset, result, **kwargs):
        super().after_import(dataset, result, **kwargs)
        days = kwargs.get("rules_preview_days")
        if not days or not kwargs.get("dry_run"):
            return
        if result.has_errors() or result.has_validation_errors():
            return
        from logistics.rules import carrier_rules_load, rules_dry_run

        # Still inside the import's transaction, which the dry run rolls back: the rules read
        # here are the tenant's rules with the file's rows applied.
        tenant = self.require_tenant()
        result.rules_preview = rules_dry_run(
            tenant=tenant,
            rules=carrier_rules_load(tenant=tenant),
            since=timezone.now() - timedelta(days=days),
        )
        result.rules_preview_days = days
