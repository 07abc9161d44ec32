"""The admin mixins every tenant-owned model's admin is built from.

Scoping itself happens in the default manager (see `tkerp.tenancy`), so changelists, object
pages, deletes, bulk actions, foreign-key choices and autocomplete are all limited to the active
tenant without each admin remembering to. These mixins add what the manager cannot: filling
`tenant` on new rows, validating unique constraints that include it, and showing the tenant
column only to the operator who sees all of them.
"""

import csv
import json
import logging

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import SEARCH_VAR
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import models
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.text import capfirst
from import_export.admin import ImportExportMixin

from tkerp.audit import audit_entries, audit_event_model
from tkerp.dates import validate_datetime_in_range
from tkerp.imports import (
    DecodingTempFolderStorage,
    ImportFileRefused,
    import_job_start,
    import_limits,
    streamed_delimiter,
    upload_size_check,
    upload_store,
)
from tkerp.jobs import job_progress
from tkerp.models import Job
from tkerp.resources import neutralise_formula
from tkerp.search import search_capped, search_cut_message, search_filter
from tkerp.tenancy import current_tenant

logger = logging.getLogger(__name__)


class TenantFormMixin:
    """Put the active tenant on the instance before validation, so unique constraints that start
    with `tenant` are checked by the form (a clear error) rather than by the database (a 500)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        tenant = current_tenant()
        if tenant is not None and self.instance.tenant_id is None:
            self.instance.tenant = tenant

    def _post_clean(self):
        # An inline row takes its parent's tenant (see TenantInlineFormSetMixin), read now rather
        # than when the form was built: on an add page the parent's tenant is only known once
        # the parent form has been cleaned (the operator picks it in the same form).
        parent = getattr(self, "tenant_parent", None)
        if self.instance.tenant_id is None and getattr(parent, "tenant_id", None) is not None:
            self.instance.tenant_id = parent.tenant_id
        super()._post_clean()

    def _get_validation_exclusions(self):
        exclusions = super()._get_validation_exclusions()
        if self.instance.tenant_id is not None:
            exclusions.discard("tenant")
        return exclusions


def tenant_form(form_class: type[forms.ModelForm]) -> type[forms.ModelForm]:
    if issubclass(form_class, TenantFormMixin):
        return form_class
    return type(f"Tenant{form_class.__name__}", (TenantFormMixin, form_class), {})


def all_tenants_view(request) -> bool:
    """True for the operator looking at every tenant at once."""
    return request.user.is_superuser and current_tenant() is None


class _JSONFormField(forms.JSONField):
    """The admin's JSON box, redisplayed safely: a lone surrogate (typed as "\\ud800") has no
    UTF-8 form, so a page showing it back raw could not be sent; such a value is shown escaped."""

    def prepare_value(self, value):
        text = super().prepare_value(value)
        try:
            text.encode()
        except UnicodeEncodeError:
            return json.dumps(value, ensure_ascii=True, cls=self.encoder)
        return text


def _fields_without(fields, hidden: set[str]) -> list:
    """A fieldset's `fields` (names, or tuples of names shown on one line) without `hidden`."""
    kept = []
    for field in fields:
        if isinstance(field, list | tuple):
            line = [name for name in field if name not in hidden]
            if line:
                kept.append(tuple(line))
        elif field not in hidden:
            kept.append(field)
    return kept


class _TenantFormsMixin:
    """What model admins and inlines share: the tenant field and the tenant-aware form, and
    secrets kept off the page of whoever may only view it."""

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if isinstance(db_field, models.JSONField):
            kwargs.setdefault("form_class", _JSONFormField)
        formfield = super().formfield_for_dbfield(db_field, request, **kwargs)
        if formfield is not None and isinstance(db_field, models.DateTimeField):
            # Year 1 or 9999 typed by hand would be stored, and every list showing the row
            # would then fail in the tenant's time zone: a form error instead.
            formfield.validators.append(validate_datetime_in_range)
        return formfield

    def get_fieldsets(self, request, obj=None):
        # Someone who may view a row but not change it sees every field as text read from the
        # row, the form left out: a secret (`SecretsFormMixin.secret_fields`) would be shown
        # decrypted. It is not on their page at all; the form's write-only box is for those
        # who may change it.
        fieldsets = super().get_fieldsets(request, obj)
        secrets = set(getattr(self.form, "secret_fields", ()))
        if not secrets or self.has_change_permission(request, obj):
            return fieldsets
        hidden = secrets | {"clear_secrets"}
        return [
            (name, {**options, "fields": _fields_without(options["fields"], hidden)})
            for name, options in fieldsets
        ]

    def get_exclude(self, request, obj=None):
        exclude = list(super().get_exclude(request, obj) or [])
        if not all_tenants_view(request) or obj is not None:
            exclude.append("tenant")
        return exclude

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        if all_tenants_view(request) and obj is not None:
            readonly.append("tenant")
        return readonly


class CappedSearchAdminMixin:
    """Every search is capped (`tkerp.search.search_capped`), with a message when it was cut:
    a pasted page of text is a slow query for everyone, never an error page."""

    def changelist_view(self, request, extra_context=None):
        capped = search_capped(request.GET.get(SEARCH_VAR, ""))
        if capped.cut:
            messages.warning(request, search_cut_message(capped))
        return super().changelist_view(request, extra_context)

    def get_search_results(self, request, queryset, search_term):
        return super().get_search_results(request, queryset, search_capped(search_term).text)


class IndexedSearchAdminMixin(CappedSearchAdminMixin):
    """Search plain `search_fields` (no ^/=/@ prefixes) through `tkerp.search.search_filter`:
    one indexed query per table instead of an OR across joins, and no duplicate rows."""

    def get_search_results(self, request, queryset, search_term):
        capped = search_capped(search_term)
        if not capped.terms:
            return queryset, False
        fields = self.get_search_fields(request)
        return search_filter(queryset=queryset, fields=fields, terms=capped.terms), False


class AuditHistoryAdminMixin:
    """The object's *History* page shows its audit trail (tkerp.audit): who changed what and
    when, whatever door it came by, with a CSV export of it. The object is found through the
    admin's own scoped queryset, so another tenant's object gets the answer a missing one gets:
    the admin's "doesn't exist" for the page (like its change and delete pages), 404 for the
    export.
    Models without an audit trail keep Django's history of admin edits."""

    AUDIT_PAGE_SIZE = 100

    def audit_children(self, request) -> list[tuple[type, str]]:
        """Audited rows edited inline on this page (an order's holds, a shop's credentials)
        whose trail the page shows too, where the user may view them: [(model, fk name)]."""
        children = []
        for inline in self.inlines:
            model = inline.model
            opts = model._meta
            if audit_event_model(model) is None:
                continue
            if not request.user.has_perm(f"{opts.app_label}.view_{opts.model_name}"):
                continue
            fk = next(
                f for f in opts.concrete_fields if f.is_relation and f.related_model is self.model
            )
            children.append((model, fk.name))
        return children

    def _audited(self) -> bool:
        return audit_event_model(self.model) is not None or any(
            audit_event_model(inline.model) is not None for inline in self.inlines
        )

    def get_urls(self):
        urls = super().get_urls()
        if not self._audited():
            return urls
        opts = self.model._meta
        export = path(
            "<path:object_id>/history/export.csv",
            self.admin_site.admin_view(self.audit_export_view),
            name=f"{opts.app_label}_{opts.model_name}_audit_export",
        )
        return [export, *urls]

    def _audited_object(self, request, object_id):
        """The object in scope, or None; PermissionDenied without the view permission."""
        obj = self.get_object(request, unquote(object_id))
        if obj is not None and not self.has_view_or_change_permission(request, obj):
            raise PermissionDenied
        return obj

    def history_view(self, request, object_id, extra_context=None):
        if not self._audited():
            return super().history_view(request, object_id, extra_context)
        obj = self._audited_object(request, object_id)
        if obj is None:  # missing or another tenant's: the admin's answer for its object pages
            return self._get_obj_does_not_exist_redirect(request, self.model._meta, object_id)
        entries = audit_entries(obj=obj, children=self.audit_children(request))
        entries.reverse()  # newest first
        paginator = Paginator(entries, self.AUDIT_PAGE_SIZE)
        page = paginator.get_page(request.GET.get("p", 1))
        opts = self.model._meta
        context = {
            **self.admin_site.each_context(request),
            "title": f"History: {obj}",
            "subtitle": None,
            "module_name": str(capfirst(opts.verbose_name_plural)),
            "object": obj,
            "opts": opts,
            "entries": page,
            "page_range": paginator.get_elided_page_range(page.number),
            "export_url": reverse(
                f"admin:{opts.app_label}_{opts.model_name}_audit_export", args=[obj.pk]
            ),
            **(extra_context or {}),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/tkerp/audit_history.html", context)

    def audit_export_view(self, request, object_id):
        """The object's whole audit trail as CSV, oldest first (formulas neutralised); a 404
        for a missing object or another tenant's."""
        obj = self._audited_object(request, object_id)
        if obj is None:
            raise Http404("No such object.")
        opts = self.model._meta
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = (
            f'attachment; filename="{opts.model_name}-{obj.pk}-history.csv"'
        )
        writer = csv.writer(response)
        writer.writerow(
            ["event", "at", "object", "action", "actor", "who", "via", "field", "old", "new",
             "secrets"]
        )  # fmt: skip
        for entry in audit_entries(obj=obj, children=self.audit_children(request)):
            subject = entry.subject or f"{opts.verbose_name} {obj.pk}"
            head = [entry.event_id, entry.at.isoformat(), subject]
            head += [entry.action, entry.actor]
            head += [neutralise_formula(entry.who), neutralise_formula(entry.via)]
            secrets = " ".join(entry.secrets_changed)
            for change in entry.changes or [None]:
                cells = (
                    [change.field, change.old, change.new] if change is not None else ["", "", ""]
                )
                writer.writerow([*head, *map(neutralise_formula, cells), secrets])
        return response


class TenantAdminMixin(AuditHistoryAdminMixin, CappedSearchAdminMixin, _TenantFormsMixin):
    """Base for the admin of every tenant-owned model."""

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        return tenant_form(form)

    def get_list_display(self, request):
        list_display = list(super().get_list_display(request))
        if all_tenants_view(request):
            list_display.append("tenant")
        return list_display

    def get_list_filter(self, request):
        list_filter = list(super().get_list_filter(request))
        if all_tenants_view(request):
            list_filter.insert(0, "tenant")
        return list_filter

    def get_list_select_related(self, request):
        related = super().get_list_select_related(request)
        if all_tenants_view(request) and isinstance(related, list | tuple):
            return [*related, "tenant"]
        return related

    def save_model(self, request, obj, form, change):
        if obj.tenant_id is None:
            tenant = current_tenant()
            if tenant is None:
                raise PermissionDenied("Choose a tenant first.")
            obj.tenant = tenant
        super().save_model(request, obj, form, change)


class TenantInlineFormSetMixin:
    """Hands each inline form its parent, whose tenant the row takes when it is validated."""

    def _construct_form(self, i, **kwargs):
        form = super()._construct_form(i, **kwargs)
        form.tenant_parent = self.instance
        return form


class TenantInlineMixin(_TenantFormsMixin):
    """Base for inlines of tenant-owned child rows: children take their parent's tenant."""

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        formset.form = tenant_form(formset.form)
        return type(formset.__name__, (TenantInlineFormSetMixin, formset), {})

    def get_exclude(self, request, obj=None):
        # Inline rows always follow their parent's tenant.
        return [*list(super().get_exclude(request, obj) or []), "tenant"]


class TenantImportExportMixin(ImportExportMixin):
    """CSV import/export limited to the active tenant; the resource gets the tenant explicitly.

    Uploads are read as text whatever their encoding (see `tkerp.imports`), refused above the
    documented limits, and a CSV/TSV file too large for a web request becomes a background job
    whose page the person lands on. Errors never show a traceback.
    """

    import_template_name = "admin/tkerp/import.html"
    tmp_storage_class = DecodingTempFolderStorage

    def create_import_form(self, request):
        # One form per request: `import_action` checks the upload before the library's flow,
        # which then finds the same (already validated, maybe refused) form.
        form = getattr(request, "_tkerp_import_form", None)
        if form is None:
            form = request._tkerp_import_form = super().create_import_form(request)
        return form

    def get_import_context_data(self, **kwargs):
        context = super().get_import_context_data(**kwargs)
        context["import_limits"] = import_limits().for_display()
        return context

    def add_data_read_fail_error_to_form(self, form, e):
        if isinstance(e, ImportFileRefused):
            form.add_error("import_file", str(e))
            return
        logger.info("import file unreadable: %r", e)
        form.add_error(
            "import_file",
            "The file could not be read in the chosen format. Check the format, and that the "
            "file is not damaged or password-protected.",
        )

    def _import_upload_route(self, request):
        """Check the posted upload; returns the job page's redirect for a large CSV/TSV file,
        else None (the library's preview flow goes on, with any refusal on the form)."""
        form = self.create_import_form(request)
        if not form.is_valid():
            return None
        upload = form.cleaned_data["import_file"]
        input_format = self.get_import_formats()[int(form.cleaned_data["format"])]()
        delimiter = streamed_delimiter(input_format)
        try:
            if delimiter is None:
                upload_size_check(size=upload.size, streamed=False)
                return None
            stored = upload_store(upload=upload, tenant=current_tenant(), delimiter=delimiter)
        except ImportFileRefused as refused:
            form.add_error("import_file", str(refused))
            return None
        if stored.rows <= import_limits().background_rows:
            stored.remove()  # small enough for the preview in this request
            return None
        resource_class = self.choose_import_resource_class(form, request)
        job = import_job_start(
            tenant=current_tenant(),
            user=request.user,
            resource_class=resource_class,
            stored=stored,
            file_name=upload.name,
        )
        messages.info(
            request,
            f"{upload.name} has {stored.rows:,} rows: it is being checked and imported in the "
            "background. This page follows it.",
        )
        return HttpResponseRedirect(reverse("admin:tkerp_job_change", args=[job.pk]))

    def get_import_resource_kwargs(self, request, **kwargs):
        return {**super().get_import_resource_kwargs(request, **kwargs), "tenant": current_tenant()}

    def get_export_resource_kwargs(self, request, **kwargs):
        return {**super().get_export_resource_kwargs(request, **kwargs), "tenant": current_tenant()}

    def has_import_permission(self, request):
        # The operator must pick one tenant to import into; rows never land "nowhere".
        return current_tenant() is not None and super().has_import_permission(request)

    def process_result(self, result, request):
        # The confirm step imports the file again. If it no longer validates (the data changed
        # since the preview, e.g. stock was reserved meanwhile), the resource rolled everything
        # back, and the page must say so instead of import-export's "Import finished".
        if result.has_errors() or result.has_validation_errors():
            problems = [
                f"row {row.number}: "
                + "; ".join(
                    f"{field}: {' '.join(errors)}" for field, errors in row.error_dict.items()
                )
                for row in result.invalid_rows
            ]
            problems += [
                f"row {number}: {errors[0].error}" for number, errors in result.row_errors()
            ]
            problems += [str(error.error) for error in result.base_errors]
            messages.error(
                request,
                "Nothing was imported; the file no longer validates: " + " | ".join(problems[:5]),
            )
            opts = self.model._meta
            return HttpResponseRedirect(reverse(f"admin:{opts.app_label}_{opts.model_name}_import"))
        return super().process_result(result, request)

    def import_action(self, request, **kwargs):
        if current_tenant() is None and request.user.is_superuser:
            messages.warning(request, "Choose a tenant (top right) before importing.")
        if request.method == "POST" and self.has_import_permission(request):
            redirect = self._import_upload_route(request)
            if redirect is not None:
                return redirect
        return super().import_action(request, **kwargs)


def progress_context(*, progress, url: str, refresh_seconds: float) -> dict:
    """What `admin/progress_fragment.html` needs: the progress (a `tkerp.jobs.ProgressBar`
    or alike), the URL answering the fragment again, and how often to ask it."""
    return {"progress": progress, "progress_url": url, "progress_refresh_seconds": refresh_seconds}


def progress_fragment_response(request, context: dict) -> TemplateResponse:
    """The progress bar alone, for the page that shows it to fetch while the work runs (the
    admin view wrapper already marks it never to be cached)."""
    return TemplateResponse(request, "admin/progress_fragment.html", context)


class TenantModelAdmin(TenantAdminMixin, admin.ModelAdmin):
    """Admin for a tenant-owned model without import/export."""


class TenantImportExportModelAdmin(TenantImportExportMixin, TenantAdminMixin, admin.ModelAdmin):
    """Admin for a tenant-owned model with CSV import/export."""


class TenantTabularInline(TenantInlineMixin, admin.TabularInline):
    pass


class TenantStackedInline(TenantInlineMixin, admin.StackedInline):
    pass


@admin.register(Job)
class JobAdmin(TenantAdminMixin, admin.ModelAdmin):
    """Background jobs of the tenant: a list, and a page per job that refreshes itself while it
    runs, with its errors and a CSV report of them. Jobs are started by the pages that need
    them (e.g. a large import), never added or edited here."""

    list_display = ("title", "status", "progress", "error_count", "created_by", "created_at")
    list_filter = ("status", "kind")
    list_select_related = ("created_by",)
    change_form_template = "admin/tkerp/job.html"
    # Shown on the page; the report has them all.
    ERRORS_SHOWN = 200
    PROGRESS_REFRESH_SECONDS = 2

    @admin.display(description="progress")
    def progress(self, job):
        return f"{job.percent}%"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def get_urls(self):
        urls = super().get_urls()
        report = path(
            "<int:object_id>/errors.csv",
            self.admin_site.admin_view(self.errors_csv_view),
            name="tkerp_job_errors",
        )
        progress = path(
            "<int:object_id>/progress/",
            self.admin_site.admin_view(self.progress_view),
            name="tkerp_job_progress",
        )
        return [report, progress, *urls]

    def _progress_context(self, job: Job) -> dict:
        return progress_context(
            progress=job_progress(job=job),
            url=reverse("admin:tkerp_job_progress", args=[job.pk]),
            refresh_seconds=self.PROGRESS_REFRESH_SECONDS,
        )

    def progress_view(self, request, object_id):
        """The progress bar alone, which the job's page fetches while the job runs."""
        job = self._job_or_404(request, object_id)
        return progress_fragment_response(request, self._progress_context(job))

    def _job_or_404(self, request, object_id) -> Job:
        if not self.has_view_permission(request):
            raise PermissionDenied
        # The admin's own lookup: an id as typed in the URL that is no job's (`abc`, `1.5`) is
        # a missing job, not a ValueError.
        job = self.get_object(request, unquote(str(object_id)))
        if job is None:
            raise Http404("No such job.")
        return job

    def change_view(self, request, object_id, form_url="", extra_context=None):
        job = self._job_or_404(request, object_id)
        context = {
            **self.admin_site.each_context(request),
            "title": job.title,
            "subtitle": None,
            "opts": self.opts,
            "original": job,
            "job": job,
            "errors": job.errors.all()[: self.ERRORS_SHOWN],
            "errors_hidden": max(0, job.error_count - self.ERRORS_SHOWN),
            "has_view_permission": True,
            **self._progress_context(job),
        }
        return TemplateResponse(request, self.change_form_template, context)

    def errors_csv_view(self, request, object_id):
        job = self._job_or_404(request, object_id)
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="job-{job.pk}-errors.csv"'
        writer = csv.writer(response)
        writer.writerow(["row", "column", "error"])
        for error in job.errors.all().iterator(chunk_size=2000):
            writer.writerow(
                [
                    error.row or "",
                    neutralise_formula(error.column),
                    neutralise_formula(error.message),
                ]
            )
        return response


class ReadOnlyAdminMixin:
    """Rows the system writes (history, deliveries, attempts): viewable, never added, edited or
    deleted by hand."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
