"""Back office for carriers, their services and rules, providers and shipments.

Scoping comes from tkerp.admin; this module only lays out the pages and keeps lists free of
per-row queries. Label accounts and the parcels' label actions are in admin_labels; the
carrier rules' pages (preview before saving, import preview, re-apply) call `logistics.rules`.
"""

from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import flatten_fieldsets, unquote
from django.db import models
from django.utils import timezone
from django.utils.html import format_html_join
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from import_export.forms import ImportForm

from logistics.admin_api import ProviderAPIKeyAdmin  # noqa: F401
from logistics.admin_batches import PrintActionMixin, print_labels
from logistics.admin_labels import LabelAccountAdmin, ShipmentLabelAdminMixin  # noqa: F401
from logistics.admin_providers import ProviderFlowAdminMixin, ShipmentInterceptAdminMixin
from logistics.admin_tracking import ShipmentTrackingAdminMixin, TrackingPushAttemptAdmin  # noqa: F401
from logistics.batches import label_batch_ready_parcels
from logistics.cockpit import (
    q_provider_late_ack,
    q_provider_late_tracking,
    shipments_with_provider_deadlines,
)
from logistics.models import (
    Carrier,
    CarrierRule,
    CarrierService,
    Provider,
    Shipment,
    ShipmentLine,
    ShippingPolicy,
    TrackingEvent,
    TrackingException,
)
from logistics.resources import CarrierRuleResource, ShipmentTrackingResource
from logistics.rules import ApplyResult, packaging_allowance_get, shipments_rules_apply
from logistics.tracking_events import TrackingPollResult, tracking_poll
from orders.models import OrderLine
from shops.models import Tenant
from tkerp.admin import (
    IndexedSearchAdminMixin,
    TenantImportExportModelAdmin,
    TenantModelAdmin,
    TenantTabularInline,
)
from tkerp.admin_secrets import SecretsFormMixin, erase_field
from tkerp.tenancy import current_tenant

#: The rules' preview (change form and import) looks this many days of orders back by default.
PREVIEW_DAYS = 30


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


class PreviewDaysField(forms.IntegerField):
    def __init__(self, **kwargs):
        super().__init__(
            label="Preview over the last",
            min_value=1,
            max_value=365,
            initial=PREVIEW_DAYS,
            required=False,
            help_text="days of orders: “Preview” shows what the rules would do to their parcels.",
            **kwargs,
        )


class CarrierRuleForm(forms.ModelForm):
    """The rule form plus the preview's window. No Meta: the admin builds the model form from
    its fieldsets per request, when the tenant is in scope for the foreign-key choices."""

    preview_days = PreviewDaysField()


class CarrierRuleImportForm(ImportForm):
    """The import form, with how many days of orders the confirm page previews the rules on."""

    preview_days = PreviewDaysField()


@admin.register(CarrierRule)
class CarrierRuleAdmin(_ServiceChoicesMixin, TenantImportExportModelAdmin):
    """Rules in the order they are tried. "Preview" on the change form, and the import's confirm
    page, show what the proposed rules would do to recent parcels before anything is saved."""

    resource_classes = [CarrierRuleResource]
    form = CarrierRuleForm
    import_form_class = CarrierRuleImportForm
    import_template_name = "admin/logistics/carrierrule/import.html"
    change_form_template = "admin/logistics/carrierrule/change_form.html"
    list_display = (
        "priority",
        "name",
        "conditions",
        "service",
        "package_type",
        "is_active",
        "hit_count",
        "last_hit_at",
    )
    list_display_links = ("name",)
    list_editable = ("priority", "is_active")
    ordering = ("priority", "id")
    list_filter = ("is_active", ("service__carrier", admin.RelatedFieldListFilter), "shop")
    search_fields = ("name", "tag", "sku_codes", "countries", "states", "postal_prefixes")
    list_select_related = ("service__carrier", "shop")
    readonly_fields = ("hit_count", "last_hit_at")
    fieldsets = (
        (None, {"fields": ("name", "priority", "is_active", ("service", "package_type"))}),
        (
            "Conditions (empty matches anything; ranges include both ends)",
            {
                "fields": (
                    ("shop", "platform"),
                    ("min_total", "max_total"),
                    ("min_weight_grams", "max_weight_grams"),
                    ("min_items", "max_items"),
                    "countries",
                    "states",
                    "postal_prefixes",
                    "sku_codes",
                    "tag",
                )
            },
        ),
        ("Preview", {"fields": ("preview_days",)}),
        ("Hits", {"fields": (("hit_count", "last_hit_at"),)}),
    )

    @admin.display(description="conditions")
    def conditions(self, rule: CarrierRule) -> str:
        return carrier_rule_summary(rule)

    # ------------------------------------------------------------------ preview before saving

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        if request.method == "POST" and "_preview" in request.POST:
            response = self._preview(request, object_id, form_url)
            if response is not None:
                return response
        # Not a preview, or one the stock view must answer: a missing (or another tenant's)
        # rule, no permission, or a form with errors (shown, since nothing validates to save).
        return super().changeform_view(request, object_id, form_url, extra_context)

    def _preview(self, request, object_id, form_url):
        """The change form again, with what the rules would do if this form were saved; None
        when the stock view should answer instead."""
        from logistics.rules import rules_dry_run

        add = object_id is None
        obj = None
        if add:
            if not self.has_add_permission(request):
                return None
        else:
            obj = self.get_object(request, unquote(object_id))
            if obj is None or not self.has_change_permission(request, obj):
                return None
        fieldsets = self.get_fieldsets(request, obj)
        fields = flatten_fieldsets(fieldsets)
        form_class = self.get_form(request, obj, change=not add, fields=fields)
        form = form_class(request.POST, request.FILES, instance=obj)
        if not form.is_valid():
            return None
        proposed = form.save(commit=False)  # never saved: the preview only reads it
        days = form.cleaned_data.get("preview_days") or PREVIEW_DAYS
        others = (
            CarrierRule._base_manager.filter(tenant_id=proposed.tenant_id, is_active=True)
            .exclude(pk=proposed.pk)
            .select_related("service__carrier")
        )
        preview = rules_dry_run(
            tenant=proposed.tenant,
            rules=[*others, proposed],
            since=timezone.now() - timedelta(days=days),
        )
        admin_form = helpers.AdminForm(
            form,
            list(fieldsets),
            self.get_prepopulated_fields(request, obj),
            self.get_readonly_fields(request, obj),
            model_admin=self,
        )
        context = {
            **self.admin_site.each_context(request),
            "title": (_("Add %s") if add else _("Change %s")) % self.opts.verbose_name,
            "subtitle": str(obj) if obj else None,
            "adminform": admin_form,
            "object_id": object_id,
            "original": obj,
            "is_popup": False,
            "to_field": None,
            "media": self.media + admin_form.media,
            "inline_admin_formsets": [],
            "errors": helpers.AdminErrorList(form, []),
            "preserved_filters": self.get_preserved_filters(request),
            "rules_preview": preview,
            "preview_days": days,
            "preview_rule": proposed.name,
        }
        return self.render_change_form(
            request, context, add=add, change=not add, obj=obj, form_url=form_url
        )

    def get_import_data_kwargs(self, **kwargs):
        form = kwargs.get("form")
        kwargs = super().get_import_data_kwargs(**kwargs)
        days = getattr(form, "cleaned_data", {}).get("preview_days")
        if isinstance(form, CarrierRuleImportForm):
            # The upload's dry run previews the rules as they would stand after the import.
            kwargs["rules_preview_days"] = days or PREVIEW_DAYS
        return kwargs


def carrier_rule_summary(rule: CarrierRule) -> str:
    """One line saying what a rule matches, e.g. "total 10-50; weight ≤ 500 g; tag vip"."""
    parts = []
    if rule.shop_id is not None:
        parts.append(f"shop {rule.shop.name}")
    if rule.platform:
        parts.append(f"platform {rule.get_platform_display()}")
    parts += _range("total", rule.min_total, rule.max_total, "")
    parts += _range("weight", rule.min_weight_grams, rule.max_weight_grams, " g")
    parts += _range("items", rule.min_items, rule.max_items, "")
    if rule.countries:
        parts.append(f"country {rule.countries}")
    if rule.states:
        parts.append(f"state {rule.states}")
    if rule.postal_prefixes:
        parts.append(f"ZIP {rule.postal_prefixes}")
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


class ProviderForm(SecretsFormMixin, forms.ModelForm):
    """A provider: its webhook secret is write-only (stored encrypted), and its webhook URL is
    checked against the outbound policy by its model validator. No `Meta`: the admin builds the
    model form per request, in the tenant's scope (its supplier choices are scoped)."""

    secret_fields = ("webhook_secret",)
    clear_secrets = erase_field(secret_fields)


@admin.register(Provider)
class ProviderAdmin(ProviderFlowAdminMixin, TenantModelAdmin):
    form = ProviderForm
    list_display = (
        "code",
        "name",
        "kind",
        "supplier",
        "contact_email",
        "order_file_enabled",
        "is_active",
    )
    list_filter = ("kind", "is_active", "order_file_enabled")
    readonly_fields = ("webhook_state", "scorecard")
    actions = ("webhooks_enable", "order_file_now")
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


class TrackingEventInline(TenantTabularInline):
    """The parcel's journey as its tracking source told it; written only by the poll."""

    model = TrackingEvent
    fields = ("occurred_at", "status", "message", "location", "source")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("-occurred_at", "-id")
    verbose_name_plural = "tracking events"

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class TrackingExceptionFilter(admin.SimpleListFilter):
    """Parcels by what is wrong on their way (as the tracking poll last marked them)."""

    title = "tracking exception"
    parameter_name = "tracking_exception"
    ANY = "_any"

    def lookups(self, request, model_admin):
        return [(self.ANY, "Any exception"), *TrackingException.choices[1:]]

    def queryset(self, request, queryset):
        value = self.value()
        if value == self.ANY:
            return queryset.exclude(tracking_exception="")
        if value in TrackingException.values and value:
            return queryset.filter(tracking_exception=value)


class LabelFilter(admin.SimpleListFilter):
    """Parcels waiting for their label: ready to print, and those of them past ship-by (the
    cockpit's "Awaiting label" widget; the same parcels "Print everything ready" takes)."""

    title = "label"
    parameter_name = "label"

    def lookups(self, request, model_admin):
        return [("ready", "Ready to print"), ("late", "Ready to print, past ship-by")]

    def queryset(self, request, queryset):
        if self.value() in ("ready", "late"):
            ready = queryset.filter(pk__in=label_batch_ready_parcels().values("pk"))
            if self.value() == "late":
                ready = ready.filter(order__ship_by__lt=timezone.now())
            return ready
        return queryset


class ProviderLateFilter(admin.SimpleListFilter):
    """Parcels whose provider is late to acknowledge them or to send their tracking."""

    title = "provider late"
    parameter_name = "provider_late"

    def lookups(self, request, model_admin):
        return [("ack", "Late to acknowledge"), ("tracking", "Late to send tracking")]

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "ack":
            return shipments_with_provider_deadlines(queryset).filter(q_provider_late_ack(now=now))
        if self.value() == "tracking":
            late = q_provider_late_tracking(now=now)
            return shipments_with_provider_deadlines(queryset).filter(late)
        return queryset


@admin.register(Shipment)
class ShipmentAdmin(
    ShipmentInterceptAdminMixin,
    PrintActionMixin,
    ShipmentLabelAdminMixin,
    ShipmentTrackingAdminMixin,
    IndexedSearchAdminMixin,
    _ServiceChoicesMixin,
    TenantImportExportModelAdmin,
):
    """Parcels. Import and export are tracking by file (`ShipmentTrackingResource`): import a
    CSV of parcel (or order), carrier and tracking number; export parcels with their tracking
    and write-back state."""

    resource_classes = [ShipmentTrackingResource]
    list_display = (
        "reference",
        "order",
        "warehouse",
        "service",
        "provider",
        "status",
        "intercept_state",
        "tracking_number",
        "tracking_status",
        "tracking_exception",
        "writeback",
        "created_at",
    )
    list_filter = (
        "status",
        TrackingExceptionFilter,
        "tracking_status",
        "intercept_state",
        LabelFilter,
        ProviderLateFilter,
        "warehouse",
        ("service__carrier", admin.RelatedFieldListFilter),
    )
    # Indexed arms (tkerp.search): the parcel's own fields, then its order's id.
    search_fields = ("reference", "tracking_number", "order__platform_order_id")
    list_select_related = (
        "order__shop",
        "warehouse",
        "service__carrier",
        "provider",
        "tracking_push",
    )
    # Orders are many: pick one by id (scoped lookup popup) rather than a select of all of them.
    raw_id_fields = ("order",)
    readonly_fields = (
        "carrier_rule",
        "rules_applied_at",
        "skipped_rules",
        "tracking_status",
        "tracking_exception",
        "tracking_exception_at",
        "first_scan_at",
        "last_event_at",
        "tracking_polled_at",
        "tracking_poll_error",
        "writeback",
        # The provider flow writes these (dispatch, the provider API, cancellations).
        "dispatched_at",
        "acknowledged_at",
        "rejected_at",
        "reject_reason",
        "intercept_state",
        "created_at",
        "updated_at",
    )
    inlines = (ShipmentLineInline, TrackingEventInline)
    actions = (
        print_labels,
        "buy_labels",
        "void_labels",
        "compare_label_rates",
        "rules_reapply",
        "poll_tracking_now",
        "mark_shipped_with_tracking",
        "tracking_done_by_hand",
        "intercept_confirmed",
        "intercept_failed",
    )
    change_list_template = "admin/logistics/shipment/change_list.html"

    @admin.display(description="rules skipped")
    def skipped_rules(self, shipment: Shipment):
        """Rules whose conditions held but whose service could not take the parcel."""
        skips = shipment.rule_skips or []
        if not skips:
            return "—"
        return format_html_join(
            "\n", "<div>“{}”: {}</div>", ((s.get("rule"), s.get("reason")) for s in skips)
        )

    def save_model(self, request, obj, form, change):
        if "service" in form.changed_data:
            obj.carrier_rule = None  # chosen by hand, not by a rule
        super().save_model(request, obj, form, change)  # the tracking mixin's, then the tenant's

    def get_import_resource_kwargs(self, request, **kwargs):
        return {**super().get_import_resource_kwargs(request, **kwargs), "user": request.user}

    @admin.action(description="Poll tracking now", permissions=["change"])
    def poll_tracking_now(self, request, queryset):
        """Ask the carriers about the selected parcels now (those on their way)."""
        total = TrackingPollResult()
        rows = queryset.order_by("pk").values_list("pk", "tenant_id")
        by_tenant: dict[int, list[int]] = {}
        for pk, tenant_id in rows:
            by_tenant.setdefault(tenant_id, []).append(pk)
        for tenant in Tenant.objects.filter(pk__in=list(by_tenant)).order_by("pk"):
            total.add(tracking_poll(tenant=tenant, shipment_ids=by_tenant[tenant.pk], force=True))
        self.message_user(
            request,
            total.summary().replace("tracking events: ", "Tracking: ", 1) + ".",
            messages.WARNING if total.failed else messages.SUCCESS,
        )

    @admin.action(description="Re-apply carrier rules", permissions=["change"])
    def rules_reapply(self, request, queryset):
        total = ApplyResult()
        unused = 0  # tenants without an active rule
        rows = queryset.order_by("pk").values_list("pk", "tenant_id")
        by_tenant: dict[int, list[int]] = {}
        for pk, tenant_id in rows:
            by_tenant.setdefault(tenant_id, []).append(pk)
        for tenant in Tenant.objects.filter(pk__in=list(by_tenant)).order_by("pk"):
            result = shipments_rules_apply(
                tenant=tenant, shipment_ids=by_tenant[tenant.pk], user=request.user
            )
            for name in (
                "applied",
                "matched",
                "changed",
                "unmatched",
                "left_alone",
                "held",
                "released",
            ):
                setattr(total, name, getattr(total, name) + getattr(result, name))
            unused += result.no_rules
        if unused and not total.applied:
            self.message_user(
                request,
                "No active carrier rule: nothing was chosen. Add rules (or switch one on) first.",
                messages.WARNING,
            )
            return
        text = (
            ngettext(
                "Carrier rules re-applied to %d parcel",
                "Carrier rules re-applied to %d parcels",
                total.applied,
            )
            % total.applied
            + f": {total.matched} got a service ({total.changed} changed)"
        )
        if total.unmatched:
            text += (
                f", {total.unmatched} matched no rule "
                f"({total.held} order(s) newly held carrier.no_rule)"
            )
        text += "."
        if total.released:
            text += f" Released the carrier.no_rule hold of {total.released} order(s)."
        if total.left_alone:
            text += (
                ngettext(
                    " %d parcel already has a label (or has left) and was left alone.",
                    " %d parcels already have a label (or have left) and were left alone.",
                    total.left_alone,
                )
                % total.left_alone
            )
        self.message_user(request, text, messages.WARNING if total.unmatched else messages.SUCCESS)


class ShippingPolicyForm(forms.ModelForm):
    class Meta:
        model = ShippingPolicy
        fields = ("packaging_allowance_grams",)


@admin.register(ShippingPolicy)
class ShippingPolicyAdmin(TenantModelAdmin):
    """One row per tenant, created with the defaults when the list is first opened."""

    form = ShippingPolicyForm
    list_display = ("__str__", "packaging_allowance", "updated_at")
    readonly_fields = ("packaging_allowance", "updated_at")
    fields = ("packaging_allowance_grams", "packaging_allowance", "updated_at")

    def has_add_permission(self, request):
        return False  # created on demand, one per tenant

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        tenant = current_tenant()
        if tenant is not None:
            ShippingPolicy.objects.get_or_create(tenant=tenant)
        return super().changelist_view(request, extra_context)

    @admin.display(description="allowance in use")
    def packaging_allowance(self, policy: ShippingPolicy) -> str:
        return f"{packaging_allowance_get(tenant=policy.tenant):,} g"
