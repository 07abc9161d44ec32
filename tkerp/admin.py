"""The admin mixins every tenant-owned model's admin is built from.

Scoping itself happens in the default manager (see `tkerp.tenancy`), so changelists, object
pages, deletes, bulk actions, foreign-key choices and autocomplete are all limited to the active
tenant without each admin remembering to. These mixins add what the manager cannot: filling
`tenant` on new rows, validating unique constraints that include it, and showing the tenant
column only to the operator who sees all of them.
"""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.views.main import SEARCH_VAR
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.urls import reverse
from import_export.admin import ImportExportMixin

from tkerp.search import search_capped, search_cut_message, search_filter
from tkerp.tenancy import current_tenant


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


class _TenantFormsMixin:
    """What model admins and inlines share: the tenant field and the tenant-aware form."""

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


class TenantAdminMixin(CappedSearchAdminMixin, _TenantFormsMixin):
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
    """CSV import/export limited to the active tenant; the resource gets the tenant explicitly."""

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
        return super().import_action(request, **kwargs)


class TenantModelAdmin(TenantAdminMixin, admin.ModelAdmin):
    """Admin for a tenant-owned model without import/export."""


class TenantImportExportModelAdmin(TenantImportExportMixin, TenantAdminMixin, admin.ModelAdmin):
    """Admin for a tenant-owned model with CSV import/export."""


class TenantTabularInline(TenantInlineMixin, admin.TabularInline):
    pass


class TenantStackedInline(TenantInlineMixin, admin.StackedInline):
    pass
