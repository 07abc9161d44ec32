"""Admin for order review: the tenant's review settings (with a dry run before saving) and the
order list's "Re-review" and "Edit address then re-review" actions.

Everything here parses a form and calls `orders.review`; the decisions and their event trail
are made there, with the user who asked.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db import transaction
from django.template.response import TemplateResponse
from django.utils.translation import ngettext

from orders.events import order_event_add
from orders.holds import HoldReason
from orders.models import Order, ReviewSettings
from orders.review import (
    ADDRESS_EDIT_FIELDS,
    order_address_edit,
    orders_review,
    review_dry_run,
    review_settings_get,
)
from shops.models import Tenant
from tkerp.admin import TenantModelAdmin
from tkerp.tenancy import current_tenant

# The address action shows one form per order; more than this is a bulk edit nobody means.
ADDRESS_EDIT_LIMIT = 20
DRY_RUN_DAYS = 30


# ------------------------------------------------------------------------- review settings


class ReviewSettingsForm(forms.ModelForm):
    dry_run_days = forms.IntegerField(
        label="Dry run over the last",
        min_value=1,
        max_value=90,
        initial=DRY_RUN_DAYS,
        help_text="days of orders: saving first shows what these settings would hold among them.",
    )

    class Meta:
        model = ReviewSettings
        fields = (
            "check_incomplete",
            "check_po_box",
            "check_military",
            "check_zip_state",
            "check_too_long",
            "address_max_length",
            "check_phone",
            "hold_buyer_notes",
            "check_high_value",
            "high_value_threshold",
            "high_value_currency",
            "check_duplicate_address",
            "duplicate_window_hours",
        )


@admin.register(ReviewSettings)
class ReviewSettingsAdmin(TenantModelAdmin):
    """One row per tenant, created on demand. Saving shows a dry run first: what the proposed,
    unsaved settings would hold among recent orders; a second button saves."""

    form = ReviewSettingsForm
    list_display = (
        "__str__",
        "high_value_threshold",
        "high_value_currency",
        "address_max_length",
        "duplicate_window_hours",
        "hold_buyer_notes",
        "updated_at",
        "updated_by",
    )
    list_select_related = ("updated_by",)
    readonly_fields = ("updated_at", "updated_by")
    fieldsets = (
        (
            "Address checks",
            {
                "fields": (
                    "check_incomplete",
                    "check_po_box",
                    "check_military",
                    "check_zip_state",
                    ("check_too_long", "address_max_length"),
                    "check_phone",
                )
            },
        ),
        (
            "Order checks",
            {
                "fields": (
                    "hold_buyer_notes",
                    ("check_high_value", "high_value_threshold", "high_value_currency"),
                    ("check_duplicate_address", "duplicate_window_hours"),
                )
            },
        ),
        ("Dry run", {"fields": ("dry_run_days",)}),
        ("Record", {"fields": ("updated_at", "updated_by")}),
    )

    def has_add_permission(self, request):
        return False  # created with the defaults the first time it is needed

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        tenant = current_tenant()
        if tenant is not None:
            review_settings_get(tenant=tenant)  # so there is always a row to open
        return super().changelist_view(request, extra_context)

    def save_model(self, request, obj, form, change):
        obj.updated_by = request.user
        super().save_model(request, obj, form, change)

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        if request.method != "POST" or "_confirm" in request.POST or object_id is None:
            return super().changeform_view(request, object_id, form_url, extra_context)
        obj = self.get_object(request, admin.utils.unquote(object_id))
        if obj is None or not self.has_change_permission(request, obj):
            # The stock view answers both: "does not exist" / permission denied.
            return super().changeform_view(request, object_id, form_url, extra_context)
        form = self.get_form(request, obj, change=True)(request.POST, instance=obj)
        if not form.is_valid():
            return super().changeform_view(request, object_id, form_url, extra_context)
        proposed = form.save(commit=False)  # not saved: the dry run only reads it
        days = form.cleaned_data["dry_run_days"]
        summary = review_dry_run(tenant=obj.tenant, settings=proposed, days=days)
        labels = dict(HoldReason.choices)
        context = {
            **self.admin_site.each_context(request),
            "title": "Review settings: dry run",
            "opts": self.opts,
            "original": obj,
            "form": form,
            "summary": summary,
            "rows": [
                {
                    "code": code,
                    "label": labels.get(code, code),
                    "count": count,
                    "samples": summary.samples.get(code, []),
                }
                for code, count in summary.by_code.items()
            ],
            "order_change_url": f"admin:{Order._meta.app_label}_{Order._meta.model_name}_change",
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/orders/reviewsettings/dry_run.html", context)


# ------------------------------------------------------------------------- order actions


def _by_tenant(queryset) -> dict[Tenant, list[int]]:
    """The selected orders' ids per tenant (one tenant, except in the operator's all-tenants
    view)."""
    rows = queryset.prefetch_related(None).order_by("pk").values_list("pk", "tenant_id")
    grouped: dict[int, list[int]] = {}
    for pk, tenant_id in rows:
        grouped.setdefault(tenant_id, []).append(pk)
    tenants = Tenant.objects.in_bulk(list(grouped))
    return {tenants[tenant_id]: pks for tenant_id, pks in grouped.items()}


def order_form_saved(*, request, order: Order, form) -> None:
    """After the order change form saved: a changed recipient is recorded with the user and
    re-reviewed once the whole form (lines included) has committed."""
    changed = [name for name in ADDRESS_EDIT_FIELDS if name in form.changed_data]
    if not changed:
        return
    order_event_add(
        order=order,
        kind="address.edited",
        message="Address edited: " + ", ".join(changed),
        data={
            "changes": {
                name: {"from": form.initial.get(name), "to": form.cleaned_data.get(name)}
                for name in changed
            }
        },
        user=request.user,
    )
    tenant, user = order.tenant, request.user
    transaction.on_commit(
        lambda: orders_review(tenant=tenant, order_ids=[order.pk], user=user, force=True)
    )


@admin.action(description="Re-review", permissions=["change"])
def re_review(modeladmin, request, queryset):
    reviewed = ready = held = waiting = 0
    for tenant, pks in _by_tenant(queryset).items():
        result = orders_review(tenant=tenant, order_ids=pks, user=request.user, force=True)
        reviewed, ready, held, waiting = (
            reviewed + result.reviewed,
            ready + result.ready,
            held + result.held,
            waiting + result.waiting,
        )
    modeladmin.message_user(
        request,
        ngettext("Re-reviewed %d order", "Re-reviewed %d orders", reviewed) % reviewed
        + f": {ready} ready, {held} on hold"
        + (f", {waiting} waiting for their stock to be reserved" if waiting else "")
        + ". Orders already allocated, shipped or cancelled are not reviewed.",
        messages.SUCCESS,
    )


class AddressForm(forms.ModelForm):
    class Meta:
        model = Order
        fields = ADDRESS_EDIT_FIELDS


@admin.action(description="Edit address then re-review…", permissions=["change"])
def edit_address_re_review(modeladmin, request, queryset):
    orders = list(
        queryset.prefetch_related(None)
        .select_related("shop")
        .order_by("pk")[: ADDRESS_EDIT_LIMIT + 1]
    )
    if len(orders) > ADDRESS_EDIT_LIMIT:
        modeladmin.message_user(
            request,
            f"Edit at most {ADDRESS_EDIT_LIMIT} addresses at a time.",
            messages.WARNING,
        )
        return None
    applying = "apply" in request.POST
    forms_ = [
        AddressForm(request.POST if applying else None, instance=order, prefix=f"order-{order.pk}")
        for order in orders
    ]
    if not applying or not all(form.is_valid() for form in forms_):
        holds = {
            order.pk: list(order.holds.filter(released_at__isnull=True).order_by("created_at"))
            for order in orders
        }
        context = {
            **modeladmin.admin_site.each_context(request),
            "title": "Edit address, then re-review",
            "opts": modeladmin.opts,
            "entries": [
                (order, form, holds[order.pk]) for order, form in zip(orders, forms_, strict=True)
            ],
            "action": "edit_address_re_review",
            "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across", "0"),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        request.current_app = modeladmin.admin_site.name
        return TemplateResponse(request, "admin/orders/order/address_form.html", context)
    ready = held = 0
    refused = []
    for order, form in zip(orders, forms_, strict=True):
        try:
            result = order_address_edit(order=order, values=form.cleaned_data, user=request.user)
        except ValueError as e:
            refused.append(str(e))
            continue
        ready += result.ready
        held += result.held
    modeladmin.message_user(
        request,
        f"Saved and re-reviewed: {ready} ready, {held} still on hold.",
        messages.SUCCESS,
    )
    if refused:
        modeladmin.message_user(request, " ".join(refused[:10]), messages.WARNING)
    return None
