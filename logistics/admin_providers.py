"""Back office of the provider flow: webhook deliveries (with "Redeliver"), reminders, order
files (with their downloads), and the provider page's actions and scorecard.

Every list and download goes through the tenant-scoped admin mixin: another tenant's delivery
or file is the same 404 as a missing one.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.http import FileResponse, Http404
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import ngettext

from logistics.models import (
    Provider,
    ProviderEvent,
    ProviderEventStatus,
    ProviderOrderFile,
    ProviderReminder,
)
from logistics.provider_files import CSV_TYPE, XLSX_TYPE, OrderFileError, provider_order_file_now
from logistics.scorecards import provider_scorecards
from logistics.webhooks import provider_events_redeliver, provider_webhooks_enable
from shops.models import Tenant
from tkerp.admin import ReadOnlyAdminMixin, TenantModelAdmin


@admin.register(ProviderEvent)
class ProviderEventAdmin(ReadOnlyAdminMixin, TenantModelAdmin):
    list_display = (
        "event_type",
        "provider",
        "shipment",
        "status",
        "attempts",
        "last_status_code",
        "last_error",
        "next_attempt_at",
        "created_at",
    )
    list_filter = ("status", "event_type", "provider")
    search_fields = ("event_id", "shipment__reference")
    list_select_related = ("provider", "shipment")
    readonly_fields = (
        "provider",
        "shipment",
        "event_type",
        "event_id",
        "payload",
        "status",
        "attempts",
        "last_status_code",
        "last_error",
        "next_attempt_at",
        "last_attempt_at",
        "delivered_at",
        "created_at",
    )
    actions = ("redeliver",)

    def has_redeliver_permission(self, request) -> bool:
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.view_{opts.model_name}") and (
            request.user.has_perm("logistics.change_provider")
        )

    @admin.action(description="Redeliver (same event id)", permissions=["redeliver"])
    def redeliver(self, request, queryset):
        queued, paused = 0, set()
        for tenant_id in sorted(set(queryset.values_list("tenant_id", flat=True))):
            tenant = Tenant.objects.get(pk=tenant_id)
            events = queryset.filter(tenant_id=tenant_id)
            paused.update(
                events.filter(provider__webhook_disabled_at__isnull=False).values_list(
                    "provider__name", flat=True
                )
            )
            queued += len(provider_events_redeliver(tenant=tenant, events=events))
        self.message_user(
            request,
            ngettext("%d delivery queued again.", "%d deliveries queued again.", queued) % queued,
            messages.SUCCESS,
        )
        if paused:
            self.message_user(
                request,
                f"Webhooks to {', '.join(sorted(paused))} are disabled: they go out once you "
                "use “Re-enable webhooks” on the provider.",
                messages.WARNING,
            )


@admin.register(ProviderReminder)
class ProviderReminderAdmin(ReadOnlyAdminMixin, TenantModelAdmin):
    list_display = ("shipment", "provider", "kind", "due_at", "created_at", "emailed_at")
    list_filter = ("kind", "provider")
    search_fields = ("shipment__reference",)
    list_select_related = ("shipment", "provider")
    readonly_fields = (
        "provider",
        "shipment",
        "kind",
        "due_at",
        "created_at",
        "emailed_at",
        "email_error",
    )


@admin.register(ProviderOrderFile)
class ProviderOrderFileAdmin(ReadOnlyAdminMixin, TenantModelAdmin):
    list_display = (
        "provider",
        "slot_at",
        "trigger",
        "parcels",
        "downloads",
        "emailed_at",
        "email_error",
    )
    list_filter = ("provider", "trigger")
    list_select_related = ("provider",)
    fields = readonly_fields = (
        "provider",
        "slot_at",
        "trigger",
        "parcels",
        "downloads",
        "emailed_to",
        "emailed_at",
        "email_error",
        "created_by",
        "created_at",
    )

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<path:object_id>/download/<str:kind>/",
                self.admin_site.admin_view(self.download_view),
                name="{}_{}_download".format(*info),
            ),
            *super().get_urls(),
        ]

    @admin.display(description="files")
    def downloads(self, order_file: ProviderOrderFile):
        if not order_file.parcels:
            return "—"
        name = "admin:logistics_providerorderfile_download"
        return format_html_join(
            " ",
            '<a href="{}">{}</a>',
            ((reverse(name, args=[order_file.pk, kind]), kind.upper()) for kind in ("csv", "xlsx")),
        )

    def download_view(self, request, object_id, kind):
        order_file = self.get_object(request, unquote(object_id))
        if order_file is None or not self.has_view_permission(request, order_file):
            raise Http404("No such order file.")
        stored, content_type = {
            "csv": (order_file.csv_file, CSV_TYPE),
            "xlsx": (order_file.xlsx_file, XLSX_TYPE),
        }.get(kind, (None, ""))
        if not stored:
            raise Http404("This order file has no such document.")
        return FileResponse(
            stored.open("rb"),
            as_attachment=True,
            filename=stored.name.rsplit("/", 1)[-1],
            content_type=content_type,
        )


# --- the provider page ----------------------------------------------------------------------


def _figure(value, suffix: str) -> str:
    return "—" if value is None else f"{value:g}{suffix}"


def scorecard_html(provider: Provider):
    """The 7- and 30-day scorecard as a small table (logistics.scorecards)."""
    if provider.pk is None:
        return "—"
    cards = provider_scorecards(provider=provider)
    rows = [
        ("Parcels dispatched", [str(c.parcels) for c in cards]),
        ("Acknowledge, median", [_figure(c.acknowledge_median_minutes, " min") for c in cards]),
        ("Acknowledge, p95", [_figure(c.acknowledge_p95_minutes, " min") for c in cards]),
        ("Ship, median", [_figure(c.ship_median_minutes, " min") for c in cards]),
        ("Ship, p95", [_figure(c.ship_p95_minutes, " min") for c in cards]),
        ("Rejected", [_figure(c.rejected_percent, " %") for c in cards]),
        ("Invalid tracking", [_figure(c.invalid_tracking_percent, " %") for c in cards]),
        ("Late", [_figure(c.late_percent, " %") for c in cards]),
    ]
    head = format_html_join("", "<th>last {} days</th>", ((c.days,) for c in cards))
    body = format_html_join(
        "",
        "<tr><th>{}</th>{}</tr>",
        (
            (label, format_html_join("", "<td>{}</td>", ((v,) for v in values)))
            for label, values in rows
        ),
    )
    return format_html(
        '<table class="provider-scorecard"><thead><tr><th></th>{}</tr></thead>'
        "<tbody>{}</tbody></table>",
        head,
        body,
    )


class ProviderFlowAdminMixin:
    """The provider admin's part of the flow: the scorecard, webhook state, and the actions
    "Re-enable webhooks" and "Make the order file now"."""

    @admin.display(description="scorecard")
    def scorecard(self, provider: Provider):
        return scorecard_html(provider)

    @admin.display(description="webhooks")
    def webhook_state(self, provider: Provider) -> str:
        if provider.pk is None:
            return "—"
        if provider.webhook_disabled_at is not None:
            return f"Disabled since {provider.webhook_disabled_at:%Y-%m-%d %H:%M} UTC"
        if provider.webhook_failing_since is not None:
            return f"Failing since {provider.webhook_failing_since:%Y-%m-%d %H:%M} UTC"
        if not provider.webhook_url:
            return "No webhook URL"
        pending = provider.events.filter(status=ProviderEventStatus.PENDING).count()
        return f"Working ({pending} waiting)"

    @admin.action(description="Re-enable webhooks", permissions=["change"])
    def webhooks_enable(self, request, queryset):
        count = 0
        for provider in queryset.filter(webhook_disabled_at__isnull=False).select_related("tenant"):
            provider_webhooks_enable(provider=provider)
            count += 1
        self.message_user(
            request,
            ngettext(
                "Webhooks of %d provider re-enabled; waiting events go out within a minute.",
                "Webhooks of %d providers re-enabled; waiting events go out within a minute.",
                count,
            )
            % count
            if count
            else "None of these providers had its webhooks disabled.",
            messages.SUCCESS if count else messages.INFO,
        )

    @admin.action(description="Make the order file now (and e-mail it)", permissions=["change"])
    def order_file_now(self, request, queryset):
        for provider in queryset.select_related("tenant").order_by("code"):
            try:
                order_file = provider_order_file_now(provider=provider, user=request.user)
            except OrderFileError as exc:
                self.message_user(request, str(exc), messages.WARNING)
                continue
            url = reverse("admin:logistics_providerorderfile_change", args=[order_file.pk])
            self.message_user(
                request,
                format_html(
                    '<a href="{}">Order file for {}</a>: {} parcel(s); it is being e-mailed to {}.',
                    url,
                    provider.name,
                    order_file.parcels,
                    provider.contact_email or "nobody (no contact e-mail)",
                ),
                messages.SUCCESS,
            )


class ShipmentInterceptAdminMixin:
    """The parcel list's record of a provider's answer to an intercept request, for providers
    that answer by phone or e-mail rather than through the API."""

    def _intercept_answer(self, request, queryset, *, intercepted: bool) -> None:
        from orders.cancellations import shipment_intercept_resolve

        done = 0
        for shipment in queryset.filter(intercept_state="requested").select_related("tenant"):
            done += shipment_intercept_resolve(
                shipment=shipment,
                intercepted=intercepted,
                user=request.user,
                source="user",
            )
        skipped = queryset.count() - done
        text = ngettext("%d parcel recorded", "%d parcels recorded", done) % done
        if skipped:
            text += f"; {skipped} had no intercept waiting for an answer and were left alone"
        self.message_user(request, text + ".", messages.SUCCESS if done else messages.WARNING)

    @admin.action(
        description="Provider stopped the parcel (intercept confirmed)", permissions=["change"]
    )
    def intercept_confirmed(self, request, queryset):
        self._intercept_answer(request, queryset, intercepted=True)

    @admin.action(
        description="Provider could not stop the parcel (too late)", permissions=["change"]
    )
    def intercept_failed(self, request, queryset):
        self._intercept_answer(request, queryset, intercepted=False)
