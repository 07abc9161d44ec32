"""The seller's own settings: the tenant row, who belongs to it, and its shops.

`Tenant` is the one model here that is not tenant-owned, so its admin scopes itself by hand: a
member sees only the active tenant's row. Shop credentials are edited only inline on their shop,
by owners, and their secrets are never rendered back to the browser.
"""

from zoneinfo import ZoneInfo

from django import forms
from django.contrib import admin, messages
from django.db import models
from django.db.models import Count, Q
from django.utils import timezone

from orders.models import OPEN_STATUSES
from shops import admin_invitations  # noqa: F401 - registers the invitations admin
from shops.admin_sync import ShopSyncAdminMixin
from shops.cockpit import q_sync_failing, q_sync_lagging, shops_with_lag_deadline
from shops.models import ApiEndpoint, Membership, Role, Shop, ShopCredentials, Tenant
from shops.platforms.http import sandbox_enabled
from tkerp.admin import TenantModelAdmin, TenantStackedInline, all_tenants_view
from tkerp.admin_secrets import SecretsFormMixin, erase_field
from tkerp.tenancy import current_tenant

# ------------------------------------------------------------------------------------ tenant


class TenantForm(SecretsFormMixin, forms.ModelForm):
    """The tenant's settings; the alert webhook secret is write-only, and the webhook URL is
    checked against the outbound policy by its model validator. No `Meta`: the admin builds the
    model form per request (with its https URL default)."""

    secret_fields = ("alert_webhook_secret",)
    clear_secrets = erase_field(secret_fields)

    def clean_timezone(self):
        """Every time the back office shows is in this zone: refuse a name no zone has."""
        name = self.cleaned_data.get("timezone", "").strip()
        try:
            ZoneInfo(name)
        except (ValueError, KeyError, OSError):
            raise forms.ValidationError(
                f"“{name}” is not a timezone name; use one such as America/Chicago, "
                "Europe/London or Asia/Shanghai."
            ) from None
        return name


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    """Superusers manage every tenant; an owner views and edits the active tenant's row only."""

    form = TenantForm
    list_display = ("name", "slug", "default_currency", "timezone", "is_active", "created_at")
    list_filter = ("is_active",)
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    search_fields = ("name", "slug")
    readonly_fields = ("created_at",)

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        tenant = current_tenant()
        return queryset.filter(pk=tenant.pk) if tenant is not None else queryset.none()

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        if not request.user.is_superuser:
            # The slug and the on/off switch belong to the SaaS operator.
            readonly += ["slug", "is_active"]
        return readonly

    def get_list_filter(self, request):
        return super().get_list_filter(request) if request.user.is_superuser else ()

    def has_change_permission(self, request, obj=None):
        if obj is not None and not request.user.is_superuser:
            tenant = current_tenant()
            if tenant is None or obj.pk != tenant.pk:
                return False
        return super().has_change_permission(request, obj)

    def has_view_permission(self, request, obj=None):
        if obj is not None and not request.user.is_superuser:
            tenant = current_tenant()
            if tenant is None or obj.pk != tenant.pk:
                return False
        return super().has_view_permission(request, obj)

    def has_add_permission(self, request):
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser


# -------------------------------------------------------------------------------- membership


class MembershipForm(forms.ModelForm):
    """Changing a membership's role, refusing to leave the tenant without an owner."""

    class Meta:
        model = Membership
        fields = ("tenant", "user", "role")

    def clean_role(self):
        role = self.cleaned_data["role"]
        instance = self.instance
        demoted = instance.pk and instance.role == Role.OWNER and role != Role.OWNER
        if demoted and not _other_owners(instance).exists():
            raise forms.ValidationError("The tenant needs at least one owner.")
        return role


def _other_owners(membership: Membership):
    return Membership._base_manager.filter(tenant_id=membership.tenant_id, role=Role.OWNER).exclude(
        pk=membership.pk
    )


@admin.register(Membership)
class MembershipAdmin(TenantModelAdmin):
    """Who works in the tenant and in which role; only owners change it (see tkerp.auth).

    People join by invitation (shops.admin_invitations), never by naming an existing user:
    users are not tenant-owned, so adding one by name would reach into other tenants and tell
    whether a name exists. Only the SaaS operator adds memberships directly.
    """

    form = MembershipForm
    list_display = ("user", "user_email", "role", "created_at")
    list_filter = ("role",)
    search_fields = ("user__username", "user__email", "user__first_name", "user__last_name")
    list_select_related = ("user",)
    readonly_fields = ("created_at",)

    def has_add_permission(self, request):
        return request.user.is_superuser and super().has_add_permission(request)

    def get_autocomplete_fields(self, request):
        # Only the operator may search all users.
        return ("user",) if request is not None and request.user.is_superuser else ()

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        if obj is not None:
            readonly.append("user")  # a membership is one user's; add another instead
        return readonly

    def get_actions(self, request):
        # Bulk delete could remove every owner at once; delete one membership at a time.
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.role == Role.OWNER and not _other_owners(obj).exists():
            return False
        return super().has_delete_permission(request, obj)

    @admin.display(description="email", ordering="user__email")
    def user_email(self, membership):
        return membership.user.email


# ------------------------------------------------------------------------------------ shops

SECRET_FIELDS = ("app_secret", "access_token", "refresh_token", "webhook_secret")


class ShopCredentialsForm(SecretsFormMixin, forms.ModelForm):
    """A shop's credentials: secrets write-only, and where the connector talks to chosen from
    what the server allows (the sandbox only where it is enabled), never typed as a URL."""

    secret_fields = SECRET_FIELDS
    clear_secrets = erase_field(SECRET_FIELDS)

    class Meta:
        model = ShopCredentials
        # No foreign keys here: a form class built at import time would query the scoped
        # managers for their choices with no tenant in scope. The admin adds `shop` per request.
        fields = (
            "api_endpoint",
            "app_key",
            *SECRET_FIELDS,
            "access_token_expires_at",
            "refresh_token_expires_at",
            "shop_cipher",
            "extra",
        )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "api_endpoint" in self.fields and not sandbox_enabled():
            self.fields["api_endpoint"].choices = [(ApiEndpoint.LIVE.value, ApiEndpoint.LIVE.label)]


class ShopCredentialsInline(TenantStackedInline):
    """Only users with shops.view_shopcredentials (owners) get this inline at all; the admin
    drops inlines the user has no permission on."""

    model = ShopCredentials
    form = ShopCredentialsForm
    extra = 0
    max_num = 1
    fields = (
        "api_endpoint",
        "app_key",
        "app_secret",
        "shop_cipher",
        ("access_token", "access_token_expires_at"),
        ("refresh_token", "refresh_token_expires_at"),
        "webhook_secret",
        "clear_secrets",
        "extra",
        "updated_at",
    )
    readonly_fields = ("updated_at",)

    def get_extra(self, request, obj=None, **kwargs):
        # Offer an empty form on a shop that has no credentials yet.
        return 0 if obj is not None and hasattr(obj, "credentials") else 1


class SyncHealthFilter(admin.SimpleListFilter):
    """Shops whose order sync is failing or lagging (the cockpit's sync widget)."""

    title = "sync health"
    parameter_name = "sync"

    def lookups(self, request, model_admin):
        return [("failing", "Failing"), ("lagging", "Lagging")]

    def queryset(self, request, queryset):
        if self.value() == "failing":
            return queryset.filter(q_sync_failing())
        if self.value() == "lagging":
            return shops_with_lag_deadline(queryset).filter(q_sync_lagging(now=timezone.now()))
        return queryset


@admin.register(Shop)
class ShopAdmin(ShopSyncAdminMixin, TenantModelAdmin):
    list_display = (
        "name",
        "platform",
        "region",
        "currency",
        "is_active",
        "ship_by_hours",
        "presale_ship_by_hours",
        "open_orders",
    )
    list_filter = ("platform", "region", "is_active", SyncHealthFilter)
    ordering = ("name",)  # explicit: the open-orders count drops Meta.ordering
    search_fields = ("name", "platform_shop_id")
    fieldsets = (
        (None, {"fields": ("name", "platform", "region", "platform_shop_id", "currency")}),
        (
            "Shipping policy",
            {"fields": ("ship_by_hours", "presale_ship_by_hours", "tracking_upload_hours")},
        ),
        ("Sync", {"fields": ("is_active", "sync_interval_seconds", "created_at")}),
        ("Tracking", {"fields": ("tracking_writeback",)}),
    )
    readonly_fields = ("created_at", "tracking_writeback")
    inlines = (ShopCredentialsInline,)
    actions = ("release_tracking_writeback",)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(open_orders=Count("orders", filter=Q(orders__status__in=OPEN_STATUSES)))
        )

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if all_tenants_view(request):
            # The operator's all-tenants view must say whose shop this is.
            (name, options), *rest = fieldsets
            fieldsets = [(name, {**options, "fields": ("tenant", *options["fields"])}), *rest]
        return fieldsets

    @admin.display(description="open orders", ordering="open_orders")
    def open_orders(self, shop):
        return shop.open_orders

    @admin.display(description="tracking write-back")
    def tracking_writeback(self, shop):
        if shop.tracking_paused_at is None:
            return "running"
        paused = timezone.localtime(shop.tracking_paused_at)
        return f"STOPPED {paused:%Y-%m-%d %H:%M}: {shop.tracking_pause_reason}"

    @admin.action(description="Release tracking write-back", permissions=["change"])
    def release_tracking_writeback(self, request, queryset):
        """A person checked the number the platform rejected: the shop's write-back runs
        again (logistics.outbox.tracking_writeback_release)."""
        from logistics.outbox import tracking_writeback_release

        released = []
        for shop in queryset.filter(tracking_paused_at__isnull=False).order_by("pk"):
            count = tracking_writeback_release(shop=shop)
            released.append(f"{shop.name} ({count} number(s) waiting now go out)")
        if released:
            self.message_user(
                request, "Tracking write-back released: " + "; ".join(released), messages.SUCCESS
            )
        else:
            self.message_user(request, "None of these shops had its write-back stopped.")
