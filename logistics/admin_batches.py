"""Back office of label batches: "Print everything ready" (per shop, optionally only what is due
before a time), the parcels' "Print labels" action, and the batch page with its progress bar,
downloads, per-parcel errors, "Retry failed" and "Reprint".

Every view parses a form and calls `logistics.batches`; scoping comes from the tenant-scoped
managers (another tenant's batch is the same 404 as a missing one).
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.http import FileResponse, Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from logistics.batches import (
    NothingToPrint,
    label_batch_progress,
    label_batch_ready_parcels,
    label_batch_reprint,
    label_batch_retry_failed,
    label_batch_start,
)
from logistics.models import LabelBatch, LabelBatchItemStatus, LabelBatchLayout
from shops.models import Shop
from tkerp.admin import TenantModelAdmin, progress_context, progress_fragment_response
from tkerp.tenancy import current_tenant

#: Seconds between two refreshes of a running batch's progress bar.
PROGRESS_REFRESH_SECONDS = 1
#: The stages of a run, in the order they happen (the stored timings come back unordered).
TIMING_ORDER = ("labels", "packing_slips", "pick_list", "merge", "store")


class LayoutField(forms.ChoiceField):
    def __init__(self, **kwargs):
        super().__init__(
            choices=LabelBatchLayout.choices,
            initial=LabelBatchLayout.MERGED,
            widget=forms.RadioSelect,
            label="Print as",
            **kwargs,
        )


class PrintReadyForm(forms.Form):
    """ "Print everything ready" for one shop: the parcels are chosen by state, not by hand."""

    shop = forms.ModelChoiceField(queryset=Shop._base_manager.none(), empty_label=None)
    due_before = forms.DateTimeField(
        required=False,
        label="Only what ships by",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d"],
        help_text="Leave blank to print every ready parcel of the shop.",
    )
    limit = forms.IntegerField(
        required=False, min_value=1, max_value=5000, help_text="At most this many parcels."
    )
    layout = LayoutField()

    def __init__(self, *args, ready_counts: dict[int, int], **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields["shop"]
        field.queryset = Shop.objects.filter(is_active=True).order_by("name")
        field.label_from_instance = lambda shop: (
            f"{shop.name} ({ready_counts.get(shop.pk, 0)} ready)"
        )


class PrintSelectedForm(forms.Form):
    layout = LayoutField()


def _ready_counts() -> dict[int, int]:
    """Parcels ready to print per shop of the tenant in scope (one query)."""
    rows = (
        label_batch_ready_parcels().order_by().values("order__shop_id").annotate(count=Count("pk"))
    )
    return {row["order__shop_id"]: row["count"] for row in rows}


@admin.action(description="Print labels", permissions=["print"])
def print_labels(modeladmin, request, queryset):
    """Shipment action: a batch of the selected parcels (asks for the layout first)."""
    tenant = current_tenant()
    if tenant is None:
        modeladmin.message_user(
            request, "Choose a tenant (top right) before printing labels.", messages.WARNING
        )
        return None
    form = PrintSelectedForm(request.POST if "apply" in request.POST else None)
    if not form.is_valid():
        context = {
            **modeladmin.admin_site.each_context(request),
            "title": "Print labels",
            "opts": LabelBatch._meta,
            "form": form,
            "selected_count": queryset.count(),
            "action": "print_labels",
            "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across", "0"),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        request.current_app = modeladmin.admin_site.name
        return TemplateResponse(request, "admin/logistics/labelbatch/start.html", context)
    try:
        batch = label_batch_start(
            tenant=tenant,
            shipment_ids=queryset.values_list("pk", flat=True),
            layout=form.cleaned_data["layout"],
            user=request.user,
        )
    except NothingToPrint as error:
        modeladmin.message_user(request, f"Nothing printed: {error}.", messages.WARNING)
        return None
    return HttpResponseRedirect(reverse("admin:logistics_labelbatch_change", args=[batch.pk]))


class PrintActionMixin:
    """For ShipmentAdmin: the "Print labels" action and its permission."""

    def has_print_permission(self, request) -> bool:
        return request.user.has_perm("logistics.add_labelbatch")


@admin.register(LabelBatch)
class LabelBatchAdmin(TenantModelAdmin):
    list_display = ("__str__", "shop", "status", "progress", "layout", "pages", "created_at")
    list_filter = ("status", "layout", "shop")
    list_select_related = ("shop",)
    date_hierarchy = "created_at"

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                items_total=Count("items"),
                items_done=Count("items", filter=Q(items__status=LabelBatchItemStatus.LABELLED)),
                items_failed=Count("items", filter=Q(items__status=LabelBatchItemStatus.FAILED)),
            )
        )

    @admin.display(description="printed")
    def progress(self, batch: LabelBatch) -> str:
        failed = f", {batch.items_failed} failed" if batch.items_failed else ""
        return f"{batch.items_done} of {batch.items_total}{failed}"

    def has_change_permission(self, request, obj=None):
        return False  # a batch is changed only by its job and the buttons on its page

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and (obj is None or not obj.is_live)

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        view = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/progress/",
                view(self.progress_view),
                name="{}_{}_progress".format(*info),
            ),
            path(
                "<path:object_id>/download/<str:kind>/",
                view(self.download_view),
                name="{}_{}_download".format(*info),
            ),
            path(
                "<path:object_id>/retry/",
                view(require_POST(self.retry_view)),
                name="{}_{}_retry".format(*info),
            ),
            path(
                "<path:object_id>/reprint/",
                view(require_POST(self.reprint_view)),
                name="{}_{}_reprint".format(*info),
            ),
            *super().get_urls(),
        ]

    # -- the batch page ------------------------------------------------------------------

    def _batch_or_404(self, request, object_id) -> LabelBatch:
        batch = self.get_object(request, unquote(object_id))
        if batch is None or not self.has_view_permission(request, batch):
            raise Http404("No such label batch.")
        return batch

    def _progress_context(self, batch: LabelBatch) -> dict:
        return progress_context(
            progress=label_batch_progress(batch=batch),
            url=reverse("admin:logistics_labelbatch_progress", args=[batch.pk]),
            refresh_seconds=PROGRESS_REFRESH_SECONDS,
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        batch = self.get_object(request, unquote(object_id))
        if batch is None or not self.has_view_permission(request, batch):
            return super().change_view(request, object_id, form_url, extra_context)
        failed = (
            batch.items.filter(status=LabelBatchItemStatus.FAILED)
            .select_related("shipment__order")
            .order_by("position")
        )
        downloads = []
        if not batch.is_live:
            if batch.document:
                label = "PDF" if not batch.slips_document else "Labels PDF"
                downloads.append((label, "document"))
            if batch.slips_document:
                downloads.append(("Pick list and packing slips PDF", "slips"))
            if batch.zpl_document:
                downloads.append(("ZPL labels (thermal printer)", "zpl"))
        timings = [
            (stage, batch.timings[stage]) for stage in TIMING_ORDER if stage in batch.timings
        ]
        may_act = self.has_add_permission(request) and (not batch.is_live or batch.is_stalled)
        context = {
            **self.admin_site.each_context(request),
            **self._progress_context(batch),
            "title": str(batch),
            "subtitle": batch.shop.name if batch.shop_id else "",
            "opts": self.opts,
            "batch": batch,
            "failed": failed,
            "downloads": downloads,
            "timings": timings,
            # A batch whose worker died resumes by "Retry failed" too: without it, the batch and
            # its parcels would stay held for good (a live batch cannot be deleted).
            "may_retry": may_act
            and (failed.exists() or batch.status == "failed" or batch.is_stalled),
            "may_reprint": may_act and bool(batch.document),
            "has_delete_permission": self.has_delete_permission(request, batch),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/logistics/labelbatch/detail.html", context)

    def progress_view(self, request, object_id):
        """The progress fragment alone, which the batch page fetches while the batch runs."""
        batch = self._batch_or_404(request, object_id)
        return progress_fragment_response(request, self._progress_context(batch))

    def download_view(self, request, object_id, kind):
        batch = self._batch_or_404(request, object_id)
        stored, filename, content_type = {
            "document": (batch.document, f"label-batch-{batch.pk}.pdf", "application/pdf"),
            "slips": (batch.slips_document, f"label-batch-{batch.pk}-slips.pdf", "application/pdf"),
            "zpl": (batch.zpl_document, f"label-batch-{batch.pk}.zpl", "application/octet-stream"),
        }.get(kind, (None, "", ""))
        if not stored or batch.is_live:
            raise Http404("This batch has no such document (yet).")
        return FileResponse(
            stored.open("rb"), as_attachment=True, filename=filename, content_type=content_type
        )

    def retry_view(self, request, object_id):
        batch = self._batch_or_404(request, object_id)
        if not self.has_add_permission(request):
            raise PermissionDenied
        try:
            retried = label_batch_retry_failed(batch=batch)
        except ValueError as error:
            self.message_user(request, str(error), messages.WARNING)
        else:
            if retried or batch.status == "failed" or batch.is_stalled:
                self.message_user(
                    request, f"Retrying {retried} parcel(s); nothing is bought twice."
                )
            else:
                self.message_user(
                    request,
                    "No failed parcel can be retried: they were labelled meanwhile or are in "
                    "another batch being printed.",
                    messages.WARNING,
                )
        return HttpResponseRedirect(reverse("admin:logistics_labelbatch_change", args=[batch.pk]))

    def reprint_view(self, request, object_id):
        batch = self._batch_or_404(request, object_id)
        if not self.has_add_permission(request):
            raise PermissionDenied
        try:
            label_batch_reprint(batch=batch)
        except ValueError as error:
            self.message_user(request, str(error), messages.WARNING)
        else:
            self.message_user(request, "Rendering the documents again; nothing is bought.")
        return HttpResponseRedirect(reverse("admin:logistics_labelbatch_change", args=[batch.pk]))

    # -- "Print everything ready" ----------------------------------------------------------

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        tenant = current_tenant()
        if tenant is None:
            self.message_user(
                request, "Choose a tenant (top right) before printing labels.", messages.WARNING
            )
            return HttpResponseRedirect(reverse("admin:logistics_labelbatch_changelist"))
        form = PrintReadyForm(
            request.POST if request.method == "POST" else None, ready_counts=_ready_counts()
        )
        if form.is_valid():
            data = form.cleaned_data
            try:
                batch = label_batch_start(
                    tenant=tenant,
                    shop=data["shop"],
                    due_before=data["due_before"],
                    limit=data["limit"],
                    layout=data["layout"],
                    user=request.user,
                )
            except NothingToPrint as error:
                form.add_error(None, f"Nothing to print: {error}.")
            else:
                return HttpResponseRedirect(
                    reverse("admin:logistics_labelbatch_change", args=[batch.pk])
                )
        context = {
            **self.admin_site.each_context(request),
            "title": "Print everything ready",
            "opts": self.opts,
            "form": form,
            # As on every add page (the admin isolation suite reads the form from here).
            "adminform": helpers.AdminForm(form, [(None, {"fields": list(form.fields)})], {}),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/logistics/labelbatch/start.html", context)
