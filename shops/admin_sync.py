"""Back-office views of order sync: sync runs, webhook deliveries, alerts, and the shop list's
sync columns (`ShopSyncAdminMixin`, mixed into `shops.admin.ShopAdmin`).

Everything here is read-only history except resolving alerts and asking for a sync now; both
are thin callers of `tkerp.alerts` / `shops.tasks`. Scoping comes from `tkerp.admin`.
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib import admin, messages
from django.db import transaction
from django.utils import timezone
from django.utils.html import format_html
from django.utils.timesince import timesince

from shops.models import SyncRun, WebhookDelivery
from shops.sync import sync_failure_threshold
from tkerp.admin import ReadOnlyAdminMixin, TenantModelAdmin
from tkerp.alerts import alert_resolve_many
from tkerp.models import Alert


def _short(text: str, length: int = 80) -> str:
    return text if len(text) <= length else text[: length - 1] + "…"


# ------------------------------------------------------------------------------- sync runs


@admin.register(SyncRun)
class SyncRunAdmin(ReadOnlyAdminMixin, TenantModelAdmin):
    list_display = (
        "started_at",
        "shop",
        "status",
        "trigger",
        "finished_at",
        "pages",
        "created",
        "updated",
        "skipped",
        "rejected",
        "error_summary",
    )
    list_filter = ("status", "trigger", "shop")
    list_select_related = ("shop",)
    date_hierarchy = "started_at"
    search_fields = ("error",)
    ordering = ("-started_at", "-id")

    @admin.display(description="error")
    def error_summary(self, run):
        return _short(run.error)


# ------------------------------------------------------------------------- webhook deliveries


class ProcessedFilter(admin.SimpleListFilter):
    title = "processed"
    parameter_name = "processed"

    def lookups(self, request, model_admin):
        return (("yes", "Processed"), ("no", "Waiting or failed"))

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(processed_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(processed_at__isnull=True)
        return queryset


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdminMixin, TenantModelAdmin):
    list_display = (
        "received_at",
        "shop",
        "platform",
        "topic",
        "delivery_id",
        "order_ids",
        "processed_at",
        "attempts",
        "error_summary",
    )
    list_filter = ("platform", ProcessedFilter, "topic", "shop")
    list_select_related = ("shop",)
    date_hierarchy = "received_at"
    search_fields = ("delivery_id", "platform_order_ids")
    ordering = ("-received_at", "-id")

    @admin.display(description="orders")
    def order_ids(self, delivery):
        return ", ".join(delivery.platform_order_ids or [])[:120]

    @admin.display(description="error")
    def error_summary(self, delivery):
        return _short(delivery.error)


# ----------------------------------------------------------------------------------- alerts


class AlertStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return (("open", "Open"), ("resolved", "Resolved"))

    def queryset(self, request, queryset):
        if self.value() == "open":
            return queryset.filter(resolved_at__isnull=True)
        if self.value() == "resolved":
            return queryset.filter(resolved_at__isnull=False)
        return queryset


@admin.register(Alert)
class AlertAdmin(TenantModelAdmin):
    """Alerts are raised by the system; people read and resolve them."""

    list_display = (
        "title",
        "severity",
        "kind",
        "shop",
        "opened_at",
        "last_seen_at",
        "occurrences",
        "is_open",
        "notified_at",
    )
    list_filter = (AlertStateFilter, "kind", "severity")
    list_select_related = ("shop",)
    search_fields = ("title", "message", "key")
    ordering = ("-opened_at", "-id")
    actions = ("resolve",)
    readonly_fields = (
        "title",
        "severity",
        "kind",
        "key",
        "shop",
        "message",
        "opened_at",
        "last_seen_at",
        "occurrences",
        "resolved_at",
        "notified_at",
        "notified_channels",
        "notify_error",
    )
    fields = readonly_fields

    def has_add_permission(self, request):
        return False

    @admin.display(description="open", boolean=True, ordering="resolved_at")
    def is_open(self, alert):
        return alert.resolved_at is None

    @admin.action(description="Resolve selected alerts", permissions=("change",))
    def resolve(self, request, queryset):
        count = alert_resolve_many(alerts=queryset)
        self.message_user(request, f"{count} alert(s) resolved.", messages.SUCCESS)


# -------------------------------------------------------------------- the shop list's columns


class ShopSyncAdminMixin:
    """Sync health on the shop list (from fields stored on the shop: no extra queries) and a
    "Sync now" bulk action. Mix in before the base admin:
    ``class ShopAdmin(ShopSyncAdminMixin, TenantModelAdmin)``.
    """

    sync_list_display = ("last_sync_success", "sync_lag", "sync_failures")
    sync_status_fields = (
        "last_sync_success_at",
        "last_sync_started_at",
        "sync_watermark",
        "consecutive_sync_failures",
        "last_sync_error",
    )

    def get_list_display(self, request):
        list_display = list(super().get_list_display(request))
        list_display += [name for name in self.sync_list_display if name not in list_display]
        return list_display

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        return readonly + [name for name in self.sync_status_fields if name not in readonly]

    def get_fieldsets(self, request, obj=None):
        fieldsets = list(super().get_fieldsets(request, obj))
        if obj is not None and self.fieldsets:
            fieldsets.append(("Sync status", {"fields": self.sync_status_fields}))
        return fieldsets

    def get_actions(self, request):
        actions = super().get_actions(request)
        if self.has_sync_permission(request):
            actions["sync_now"] = self.get_action("sync_now")
        return actions

    def has_sync_permission(self, request) -> bool:
        # A pass writes orders: whoever may change orders may pull them now.
        return request.user.has_perm("orders.change_order")

    @admin.display(description="last successful sync", ordering="last_sync_success_at")
    def last_sync_success(self, shop):
        if shop.last_sync_success_at is None:
            return "never"
        return timezone.localtime(shop.last_sync_success_at).strftime("%Y-%m-%d %H:%M")

    @admin.display(description="lag", ordering="last_sync_success_at")
    def sync_lag(self, shop):
        """Time since the last successful pass; red when over three sync intervals."""
        if shop.last_sync_success_at is None:
            return "—"
        lag = timezone.now() - shop.last_sync_success_at
        text = timesince(shop.last_sync_success_at, depth=1)
        if lag > timedelta(seconds=3 * max(shop.sync_interval_seconds, 60)):
            return format_html('<strong style="color:#ba2121">{}</strong>', text)
        return text

    @admin.display(description="consecutive failures", ordering="consecutive_sync_failures")
    def sync_failures(self, shop):
        failures = shop.consecutive_sync_failures
        if failures >= sync_failure_threshold():
            return format_html('<strong style="color:#ba2121">{}</strong>', failures)
        return failures

    @admin.action(description="Sync now")
    def sync_now(self, request, queryset):
        from django_q.tasks import async_task

        shops = list(queryset.filter(is_active=True).values_list("pk", "tenant_id"))
        for shop_id, tenant_id in shops:
            transaction.on_commit(
                lambda shop_id=shop_id, tenant_id=tenant_id: async_task(
                    "shops.tasks.sync_shop",
                    tenant_id,
                    shop_id,
                    "manual",
                    task_name=f"sync-shop-{shop_id}-manual",
                )
            )
        self.message_user(
            request, f"Sync queued for {len(shops)} shop(s); see Sync runs.", messages.SUCCESS
        )
