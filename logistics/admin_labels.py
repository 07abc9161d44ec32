"""Back office for labels: the seller's label-service accounts, and on parcels the actions Buy
label, Void label and Compare label rates, plus the label download (through the tenant scope,
never a public media URL)."""

from __future__ import annotations

from collections import defaultdict

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404
from django.urls import path, reverse
from django.utils.html import format_html

from logistics.labels.base import LabelError
from logistics.labels.cancelled import shipment_label_refund_asked, shipment_label_refund_due
from logistics.labels.labelapi import LabelApiSource
from logistics.labels.sources import label_account_for
from logistics.labels.store import shipment_label_void, shipments_label_buy
from logistics.models import LabelAccount, Shipment, ShipmentStatus
from shops.models import Tenant
from tkerp.admin import TenantModelAdmin
from tkerp.admin_secrets import SecretsFormMixin, erase_field, secret_state

# "Buy label" is for a few parcels picked by hand; batches have their own job.
BUY_LIMIT = 25
RATES_LIMIT = 10
LABEL_FIELDS = (
    "label_file",
    "label_format",
    "label_source",
    "label_account",
    "source_label_id",
    "labelled_at",
    "shipping_cost",
    # The refund of a cancelled parcel's label (logistics.labels.cancelled).
    "label_refund",
    "label_refund_at",
)


class LabelAccountForm(SecretsFormMixin, forms.ModelForm):
    secret_fields = ("api_key",)
    clear_secrets = erase_field(secret_fields)

    class Meta:
        model = LabelAccount
        fields = (
            "name",
            "provider",
            "api_key",
            "use_sandbox",
            "carriers",
            "label_format",
            "requests_per_second",
            "is_active",
        )


@admin.register(LabelAccount)
class LabelAccountAdmin(TenantModelAdmin):
    form = LabelAccountForm
    list_display = (
        "name",
        "provider",
        "carriers",
        "api_key_status",
        "use_sandbox",
        "label_format",
        "is_active",
    )
    list_filter = ("provider", "is_active")
    search_fields = ("name", "carriers")
    readonly_fields = ("api_key_status", "created_at", "updated_at")
    actions = ("connect_sandbox",)

    @admin.display(description="API key")
    def api_key_status(self, account: LabelAccount) -> str:
        return secret_state(account.api_key).split(";")[0]

    def get_exclude(self, request, obj=None):
        exclude = list(super().get_exclude(request, obj) or [])
        if not settings.TKERP_SANDBOX_ENABLED:
            exclude.append("use_sandbox")
        return exclude

    def get_actions(self, request):
        actions = super().get_actions(request)
        if not settings.TKERP_SANDBOX_ENABLED:
            actions.pop("connect_sandbox", None)
        return actions

    @admin.action(description="Connect to the label sandbox", permissions=["change"])
    def connect_sandbox(self, request, queryset):
        from sandbox.labelapi import sandbox_label_account_connect

        for account in queryset:
            sandbox_label_account_connect(account=account)
        self.message_user(
            request, f"{queryset.count()} account(s) now buy from the sandbox.", messages.SUCCESS
        )


class ShipmentLabelAdminMixin:
    """What the parcel admin gains for labels (its `actions` names them)."""

    def get_readonly_fields(self, request, obj=None):
        # Labels are written by their sources only; the tracking number stays editable (typed
        # in by hand for manual parcels).
        fields = [*super().get_readonly_fields(request, obj), *LABEL_FIELDS, "label_download"]
        if obj is not None and shipment_label_refund_asked(obj):
            fields.append("status")
        return fields

    def save_model(self, request, obj, form, change):
        """The page was read before the person saved it, and the label's background work (a
        label stored, a purchase recorded, the refund sweep's claim) may have written the parcel
        since: under the row's lock (held until the page's transaction commits), those fields
        are taken as they are now, and a cancelled parcel whose refund was asked meanwhile stays
        cancelled. A full save of the page's copy would write back what it read, and the sweep
        would lose a refund it just asked for."""
        if not change:
            return super().save_model(request, obj, form, change)
        locked = Shipment.objects.select_for_update(of=("self",)).get(pk=obj.pk)
        for name in (*LABEL_FIELDS, "label_request_key", "label_request"):
            attname = Shipment._meta.get_field(name).attname
            setattr(obj, attname, getattr(locked, attname))
        if obj.status != ShipmentStatus.CANCELLED and shipment_label_refund_asked(locked):
            obj.status = ShipmentStatus.CANCELLED
            self.message_user(
                request,
                f"Parcel {obj.reference} stays cancelled: the refund of its label was asked for "
                "while the page was open.",
                messages.WARNING,
            )
        return super().save_model(request, obj, form, change)

    def get_list_display(self, request):
        return [*super().get_list_display(request), "label_download"]

    def has_delete_permission(self, request, obj=None):
        # A parcel holding a recorded label purchase is what lets tkerp refund a label sold
        # and never stored (logistics.labels.left_behind): deleting it, or its order, would
        # lose that label. Cancel the order instead; the parcel may go once that is done.
        if obj is not None and obj.label_request_key:
            return False
        # So is one holding a bought label not voided yet (refunded, or named for a person,
        # once cancelled: logistics.labels.cancelled): void it, or cancel the order, first.
        if obj is not None and shipment_label_refund_due(obj):
            return False
        return super().has_delete_permission(request, obj)

    @admin.display(description="label")
    def label_download(self, shipment: Shipment) -> str:
        if not shipment.label_file:
            return "—"
        url = reverse("admin:logistics_shipment_label", args=[shipment.pk])
        return format_html('<a href="{}">{}</a>', url, (shipment.label_format or "pdf").upper())

    def get_urls(self):
        return [
            path(
                "<path:object_id>/label/",
                self.admin_site.admin_view(self.label_file_view),
                name="logistics_shipment_label",
            ),
            *super().get_urls(),
        ]

    def label_file_view(self, request, object_id):
        """The parcel's label file; another tenant's parcel is the same 404 as a missing one."""
        shipment = self.get_object(request, unquote(object_id))
        if shipment is None or not shipment.label_file:
            raise Http404("No label for that parcel.")
        if not self.has_view_permission(request, shipment):
            raise PermissionDenied
        zpl = shipment.label_format == "zpl"
        return FileResponse(
            shipment.label_file.open("rb"),
            as_attachment=zpl,
            filename=f"{shipment.reference}.{'zpl' if zpl else 'pdf'}",
            content_type="application/zpl" if zpl else "application/pdf",
        )

    @admin.action(description="Buy label", permissions=["change"])
    def buy_labels(self, request, queryset):
        rows = list(queryset.order_by("pk").values_list("pk", "tenant_id", "reference"))
        if len(rows) > BUY_LIMIT:
            self.message_user(
                request,
                f"Select at most {BUY_LIMIT} parcels here; print a batch for more.",
                messages.ERROR,
            )
            return
        references = {pk: reference for pk, _, reference in rows}
        by_tenant = defaultdict(list)
        for pk, tenant_id, _ in rows:
            by_tenant[tenant_id].append(pk)
        results = []
        for tenant_id, pks in by_tenant.items():
            tenant = Tenant.objects.get(pk=tenant_id)
            results += shipments_label_buy(tenant=tenant, shipment_ids=pks)
        done = [r for r in results if r.ok]
        failed = [r for r in results if not r.ok]
        if done:
            bought = sum(r.bought for r in done)
            self.message_user(
                request,
                f"Labels ready for {len(done)} parcel(s) ({bought} bought now).",
                messages.SUCCESS,
            )
        if failed:
            self.message_user(
                request,
                "No label for: "
                + "; ".join(f"{references[r.shipment_id]}: {r.reason}" for r in failed),
                messages.ERROR,
            )

    @admin.action(description="Void label", permissions=["change"])
    def void_labels(self, request, queryset):
        voided, problems = 0, []
        for shipment in queryset.order_by("pk").select_related("tenant"):
            try:
                shipment_label_void(shipment=shipment)
            except LabelError as exc:
                problems.append(f"{shipment.reference}: {exc.reason}")
            else:
                voided += 1
        if voided:
            self.message_user(
                request,
                f"Voided {voided} label(s); the parcels are pending again.",
                messages.SUCCESS,
            )
        if problems:
            self.message_user(request, "Not voided: " + "; ".join(problems), messages.ERROR)

    @admin.action(description="Compare label rates", permissions=["view"])
    def compare_label_rates(self, request, queryset):
        shipments = list(
            queryset.order_by("pk").select_related(
                "order", "warehouse", "service__carrier", "tenant"
            )[: RATES_LIMIT + 1]
        )
        if len(shipments) > RATES_LIMIT:
            self.message_user(
                request, f"Compare at most {RATES_LIMIT} parcels at a time.", messages.ERROR
            )
            return
        for shipment in shipments:
            account = label_account_for(shipment)
            if account is None:
                self.message_user(
                    request,
                    f"{shipment.reference}: no label-service account covers its carrier.",
                    messages.WARNING,
                )
                continue
            source = LabelApiSource(account=account)
            try:
                rates = source.rates(shipment=shipment)
            except LabelError as exc:
                self.message_user(request, f"{shipment.reference}: {exc.reason}", messages.ERROR)
                continue
            finally:
                source.close()
            listed = ", ".join(
                f"{r['carrier']} {r['service']} {r['rate']} {r['currency']}"
                + (f" ({r['days']} d)" if r["days"] else "")
                for r in rates
            )
            self.message_user(
                request, f"{shipment.reference}: {listed or 'no rates'}", messages.INFO
            )
