"""The provider API keys in the back office: create one (shown once), revoke, see last use."""

from django.contrib import admin, messages
from django.utils.translation import ngettext
from rest_framework_api_key.models import APIKey

from logistics.api.auth import verified_keys_forget
from logistics.models import ProviderAPIKey
from tkerp.admin import TenantModelAdmin

# The key library registers its own, tenant-less APIKey model; tkerp never uses it.
if admin.site.is_registered(APIKey):
    admin.site.unregister(APIKey)


@admin.register(ProviderAPIKey)
class ProviderAPIKeyAdmin(TenantModelAdmin):
    list_display = (
        "prefix",
        "name",
        "provider",
        "scope",
        "created",
        "expiry_date",
        "revoked",
        "last_used_at",
    )
    list_filter = ("scope", "revoked", "provider")
    search_fields = ("name", "prefix", "provider__code", "provider__name")
    list_select_related = ("provider",)
    actions = ["revoke_keys"]

    def get_fields(self, request, obj=None):
        return ("provider", "name", "scope", "expiry_date", "revoked", "prefix", "last_used_at")

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ("prefix", "last_used_at", "revoked")
        readonly = ("provider", "prefix", "last_used_at", "created")
        return (*readonly, "name", "scope", "expiry_date", "revoked") if obj.revoked else readonly

    def save_model(self, request, obj, form, change):
        if change:
            obj.save()
            if "revoked" in form.changed_data:
                verified_keys_forget()  # as the bulk action does: no verified copy answers on
            return
        # The key belongs to its provider's tenant (the operator's all-tenants view has none).
        obj.tenant_id = obj.provider.tenant_id
        key = ProviderAPIKey.objects.assign_key(obj)
        obj.save()
        messages.warning(
            request,
            f"The API key for {obj.provider} is: {key} — copy it now and give it to the "
            "provider: it is stored only as a hash and cannot be shown again.",
        )

    @admin.action(description="Revoke selected keys (cannot be undone)")
    def revoke_keys(self, request, queryset):
        count = queryset.filter(revoked=False).update(revoked=True)
        verified_keys_forget()
        self.message_user(
            request,
            ngettext("%d key revoked.", "%d keys revoked.", count) % count,
            messages.SUCCESS,
        )
