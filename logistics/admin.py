"""Back office for carriers, their services and rules, providers and shipments.

Scoping comes from tkerp.admin; this module only lays out the pages and keeps lists free of
per-row queries. Label accounts and the parcels' label actions are in admin_labels.
"""

from django.contrib import admin
from django.db import models

from logistics.admin_batches import PrintActionMixin, print_labels
from logistics.admin_labels import LabelAccountAdmin, ShipmentLabelAdminMixin  # noqa: F401
from logistics.models import (
    Carrier,
    CarrierRule,
    CarrierService,
    Provider,
    Shipment,
    ShipmentLine,
)
from logistics.resources import CarrierRuleResource
from orders.models import OrderLine
from tkerp.admin import TenantImportExportModelAdmin, TenantModelAdmin, TenantTabularInline


class _ServiceChoicesMixin:
    """A carrier service's label names its carrier: fetch both in one query for the select."""

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "service":
            kwargs.setdefault(
                "queryset",
                CarrierService.objects.select_related("carrier").order_by("carrier__code", "code"),
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class CarrierServiceInline(TenantTabularInline):
    model = CarrierService
    fields = ("code", "name", "max_weight_grams", "domestic_only", "accepts_po_box", "is_active")
    extra = 0

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("carrier")


@admin.register(Carrier)
class CarrierAdmin(TenantModelAdmin):
    list_display = ("code", "name", "tracking_url_template", "is_active")
    list_filter = ("is_active",)
    search_fields = ("code", "name")
    list_select_related = ()
    inlines = (CarrierServiceInline,)


@admin.register(CarrierService)
class CarrierServiceAdmin(TenantModelAdmin):
    list_display = (
        "code",
        "name",
        "carrier",
        "max_weight_grams",
        "domestic_only",
        "accepts_po_box",
        "is_active",
    )
    list_filter = ("carrier", "domestic_only", "accepts_po_box", "is_active")
    search_fields = ("code", "name", "carrier__code", "carrier__name")
    list_select_related = ("carrier",)


@admin.register(CarrierRule)
class CarrierRuleAdmin(_ServiceChoicesMixin, TenantImportExportModelAdmin):
    resource_classes = [CarrierRuleResource]
    list_display = ("priority", "name", "conditions", "service", "is_active")
    list_display_links = ("name",)
    list_editable = ("priority", "is_active")
    ordering = ("priority", "id")
    list_filter = ("is_active", ("service__carrier", admin.RelatedFieldListFilter), "shop")
    search_fields = ("name", "tag", "sku_codes", "countries", "states")
    list_select_related = ("service__carrier", "shop")
    fieldsets = (
        (None, {"fields": ("name", "priority", "is_active", "service")}),
        (
            "Conditions (empty matches anything)",
            {
                "fields": (
                    "shop",
                    ("min_total", "max_total"),
                    ("min_weight_grams", "max_weight_grams"),
                    "countries",
                    "states",
                    "sku_codes",
                    "tag",
                )
            },
        ),
    )

    @admin.display(description="conditions")
    def conditions(self, rule: CarrierRule) -> str:
        return carrier_rule_summary(rule)


def carrier_rule_summary(rule: CarrierRule) -> str:
    """One line saying what a rule matches, e.g. "total 10-50; weight ≤ 500 g; tag vip"."""
    parts = []
    if rule.shop_id is not None:
        parts.append(f"shop {rule.shop.name}")
    parts += _range("total", rule.min_total, rule.max_total, "")
    parts += _range("weight", rule.min_weight_grams, rule.max_weight_grams, " g")
    if rule.countries:
        parts.append(f"country {rule.countries}")
    if rule.states:
        parts.append(f"state {rule.states}")
    if rule.sku_codes:
        parts.append(f"SKU {rule.sku_codes}")
    if rule.tag:
        parts.append(f"tag {rule.tag}")
    return "; ".join(parts) or "any order"


def _range(label: str, low, high, unit: str) -> list[str]:
    if low is not None and high is not None:
        return [f"{label} {low}-{high}{unit}"]
    if low is not None:
        return [f"{label} ≥ {low}{unit}"]
    if high is not None:
        return [f"{label} ≤ {high}{unit}"]
    return []


@admin.register(Provider)
class ProviderAdmin(TenantModelAdmin):
    list_display = ("code", "name", "kind", "supplier", "contact_email", "is_active")
    list_filter = ("kind", "is_active")
    search_fields = ("code", "name", "contact_email")
    list_select_related = ("supplier",)
    autocomplete_fields = ("supplier",)
    # Webhook endpoints are HTTPS; a bare host typed in should not become http://.
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}


class ShipmentLineInline(TenantTabularInline):
    """The units of the order's lines in this parcel; only the shipment's own order's lines."""

    model = ShipmentLine
    fields = ("order_line", "quantity")
    extra = 0

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("order_line")

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        field = formset.form.base_fields.get("order_line")
        if field is not None:
            # The form class is built afresh for each request, so narrowing it is safe.
            if obj is None:
                field.queryset = OrderLine.objects.none()
                field.help_text = "Save the shipment first; then its order's lines can be added."
            else:
                field.queryset = OrderLine.objects.filter(order_id=obj.order_id)
        return formset


@admin.register(Shipment)
class ShipmentAdmin(
    PrintActionMixin, ShipmentLabelAdminMixin, _ServiceChoicesMixin, TenantModelAdmin
):
    list_display = (
        "reference",
        "order",
        "warehouse",
        "service",
        "provider",
        "status",
        "tracking_number",
        "created_at",
    )
    list_filter = ("status", "warehouse", ("service__carrier", admin.RelatedFieldListFilter))
    search_fields = ("reference", "tracking_number", "order__platform_order_id")
    list_select_related = ("order__shop", "warehouse", "service__carrier", "provider")
    # Orders are many: pick one by id (scoped lookup popup) rather than a select of all of them.
    raw_id_fields = ("order",)
    readonly_fields = ("created_at", "updated_at")
    inlines = (ShipmentLineInline,)
    actions = (print_labels, "buy_labels", "void_labels", "compare_label_rates")
    change_list_template = "admin/logistics/shipment/change_list.html"
