"""Back office of live sessions and profit: the sessions (newest first, with their figures),
a page per session with its order curve, the profit report rolled up per SKU, shop, session,
day or order with its CSV download, and each shop's fee settings.

Every view parses its input and calls `live.sessions` / `live.profit`; scoping comes from the
tenant-scoped managers (another tenant's session is the same 404 as a missing one).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, time, timedelta

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.http import Http404, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from inventory.availability import skus_changed
from inventory.models import Sku
from live.charts import bar_chart_svg
from live.creators import session_creators_sync
from live.fees import platform_fee_defaults
from live.models import LivePool, LiveSession, LiveSessionProduct, ShopFees
from live.profit import ROLLUPS, profit_rollup, write_profit_csv
from live.sessions import session_curve, session_orders, session_top_skus, sessions_figures
from orders.models import Order
from shops.models import Shop
from shops.platforms.base import PlatformError
from tkerp.admin import TenantModelAdmin, TenantTabularInline
from tkerp.tenancy import current_tenant

#: Rows the profit page shows (the CSV has them all).
PAGE_ROWS = 500


class LiveSessionProductInline(TenantTabularInline):
    model = LiveSessionProduct
    fields = ("sku",)
    autocomplete_fields = ("sku",)
    extra = 0
    verbose_name = "product"
    verbose_name_plural = "products (blank: every order of the shop in the window counts)"


class LivePoolInline(TenantTabularInline):
    model = LivePool
    fields = ("sku", "quantity", "drawn", "opened_at", "closed_at")
    readonly_fields = ("drawn", "opened_at", "closed_at")
    autocomplete_fields = ("sku",)
    extra = 0
    verbose_name = "stock pool"
    verbose_name_plural = (
        "stock pools (units kept for this shop during the session; the other channels publish "
        "only the rest)"
    )


class ProfitForm(forms.Form):
    by = forms.ChoiceField(choices=[(key, key) for key in ROLLUPS], initial="sku")
    date_from = forms.DateField(
        required=False, label="From", widget=forms.DateInput(attrs={"type": "date"})
    )
    date_to = forms.DateField(
        required=False, label="To", widget=forms.DateInput(attrs={"type": "date"})
    )
    shop = forms.ModelChoiceField(queryset=Shop._base_manager.none(), required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["shop"].queryset = Shop.objects.order_by("name")

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("date_from"), cleaned.get("date_to")
        if start and end and end < start:
            self.add_error("date_to", "“To” is before “From”.")
        return cleaned


def _day_start(day) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


@admin.register(LiveSession)
class LiveSessionAdmin(TenantModelAdmin):
    list_display = (
        "title",
        "shop",
        "creator_username",
        "starts_at",
        "ends_at",
        "orders_column",
        "units_column",
        "gmv_column",
        "profit_column",
        "report_link",
    )
    list_filter = ("shop",)
    search_fields = ("title", "creator_username")
    ordering = ("-starts_at", "-id")
    list_select_related = ("shop",)
    inlines = [LiveSessionProductInline, LivePoolInline]
    actions = ["fetch_creators"]
    fields = ("shop", "title", "creator_username", "creator_id", "starts_at", "ends_at", "notes")

    # -- the list: figures of the page's sessions, in a fixed number of queries ---------------

    def changelist_view(self, request, extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "profit_url": reverse("admin:live_livesession_profit"),
        }
        response = super().changelist_view(request, extra_context)
        cl = getattr(response, "context_data", {}).get("cl")
        if cl is not None:
            by_tenant = defaultdict(list)
            for session in cl.result_list:
                by_tenant[session.tenant_id].append(session)
            for tenant_id, sessions in by_tenant.items():
                figures = sessions_figures(tenant_id=tenant_id, sessions=sessions)
                for session in sessions:
                    session.figures = figures[session.pk]
        return response

    @admin.display(description="orders")
    def orders_column(self, session):
        return session.figures.orders if hasattr(session, "figures") else "—"

    @admin.display(description="units")
    def units_column(self, session):
        return session.figures.units if hasattr(session, "figures") else "—"

    @admin.display(description="GMV")
    def gmv_column(self, session):
        return f"{session.figures.gmv:,.2f}" if hasattr(session, "figures") else "—"

    @admin.display(description="profit")
    def profit_column(self, session):
        return f"{session.figures.profit:,.2f}" if hasattr(session, "figures") else "—"

    @admin.display(description="")
    def report_link(self, session):
        url = reverse("admin:live_livesession_report", args=[session.pk])
        return format_html('<a href="{}">Report</a>', url)

    @admin.action(
        description="Ask the platform who sold these sessions' orders", permissions=["change"]
    )
    def fetch_creators(self, request, queryset):
        changed = failed = 0
        for session in queryset.select_related("shop"):
            try:
                changed += session_creators_sync(session=session)
            except PlatformError as exc:
                failed += 1
                self.message_user(
                    request,
                    f"{session}: the platform did not answer ({exc.__class__.__name__}); "
                    "try again later.",
                    messages.WARNING,
                )
        self.message_user(request, f"{changed} orders now name their creator.", messages.SUCCESS)

    # -- saving: a pool's change is published at once ----------------------------------------

    def save_related(self, request, form, formsets, change):
        before = set(
            LivePool.objects.filter(session=form.instance).values_list("sku_id", flat=True)
        )
        super().save_related(request, form, formsets, change)
        after = set(LivePool.objects.filter(session=form.instance).values_list("sku_id", flat=True))
        if before | after:
            skus_changed(tenant=form.instance.tenant_id, sku_ids=before | after, urgent=True)

    # -- pages -----------------------------------------------------------------------------

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        view = self.admin_site.admin_view
        return [
            path("profit/", view(self.profit_view), name="{}_{}_profit".format(*info)),
            path("profit.csv", view(self.profit_csv_view), name="{}_{}_profit_csv".format(*info)),
            path(
                "<path:object_id>/report/",
                view(self.report_view),
                name="{}_{}_report".format(*info),
            ),
            path(
                "<path:object_id>/profit.csv",
                view(self.session_csv_view),
                name="{}_{}_session_csv".format(*info),
            ),
            *super().get_urls(),
        ]

    def _session_or_404(self, request, object_id) -> LiveSession:
        session = self.get_object(request, unquote(object_id))
        if session is None or not self.has_view_permission(request, session):
            raise Http404("No such live session.")
        return session

    def report_view(self, request, object_id):
        """A session's page: its figures, its order curve, best sellers, holds and pools."""
        session = self._session_or_404(request, object_id)
        figures = sessions_figures(tenant_id=session.tenant_id, sessions=[session])[session.pk]
        curve = session_curve(session=session)
        zone = timezone.get_current_timezone()
        bucket = int((curve[1][0] - curve[0][0]).total_seconds() // 60) if len(curve) > 1 else 1
        chart = bar_chart_svg(
            [(timezone.localtime(at, zone).strftime("%H:%M"), count) for at, count in curve],
            title=f"Orders per {bucket} min",
        )
        context = {
            **self.admin_site.each_context(request),
            "title": str(session),
            "subtitle": f"{session.shop.name} · {session.creator_username or 'no creator named'}",
            "opts": self.opts,
            "session": session,
            "figures": figures,
            "chart": chart,
            "top_skus": session_top_skus(session=session),
            "pools": LivePool.objects.filter(session=session).select_related("sku"),
            "holds": sorted(figures.holds_by_code.items()),
            "open": session.starts_at <= timezone.now() < session.ends_at,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/live/livesession/report.html", context)

    def session_csv_view(self, request, object_id):
        """The session's profit per order (or `?by=sku`) as CSV."""
        session = self._session_or_404(request, object_id)
        by = request.GET.get("by", "order")
        if by not in ("order", "sku"):
            raise Http404("Rollup must be order or sku.")
        rows = profit_rollup(tenant_id=session.tenant_id, orders=session_orders(session), by=by)
        return self._csv(
            rows=rows,
            by=by,
            labels=self._labels(by=by, keys=[row.key for row in rows]),
            filename=f"live-session-{session.pk}-profit-by-{by}.csv",
        )

    def _profit(self, request):
        tenant = current_tenant()
        if tenant is None or not self.has_view_permission(request):
            # The operator looking at every tenant picks one first: profit is per tenant.
            raise Http404("Pick a tenant first.")
        form = ProfitForm(request.GET or None)
        if request.GET and not form.is_valid():
            return tenant, form, None, "sku"
        data = form.cleaned_data if request.GET else {}
        by = data.get("by") or "sku"
        today = timezone.localdate()
        start = data.get("date_from") or today - timedelta(days=29)
        end = data.get("date_to") or today
        orders = Order.objects.filter(
            placed_at__gte=_day_start(start), placed_at__lt=_day_start(end + timedelta(days=1))
        )
        if data.get("shop"):
            orders = orders.filter(shop=data["shop"])
        sessions = None
        if by == "session":
            sessions = list(
                LiveSession.objects.filter(
                    starts_at__lt=_day_start(end + timedelta(days=1)),
                    ends_at__gt=_day_start(start),
                ).values_list("pk", flat=True)
            )
        rows = profit_rollup(tenant_id=tenant.pk, orders=orders, by=by, sessions=sessions)
        return tenant, form, rows, by

    def profit_view(self, request):
        """Profit rolled up per SKU, shop, session, day or order over a date range."""
        _tenant, form, rows, by = self._profit(request)
        labels = self._labels(by=by, keys=[row.key for row in rows or []][:PAGE_ROWS])
        context = {
            **self.admin_site.each_context(request),
            "title": "Profit",
            "opts": self.opts,
            "form": form,
            "by": by,
            "rows": [(labels.get(row.key, row.key), row) for row in (rows or [])[:PAGE_ROWS]],
            "cut": rows is not None and len(rows) > PAGE_ROWS,
            "totals": _totals(rows or []),
            "csv_url": reverse("admin:live_livesession_profit_csv")
            + ("?" + request.GET.urlencode() if request.GET else ""),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/live/livesession/profit.html", context)

    def profit_csv_view(self, request):
        _tenant, form, rows, by = self._profit(request)
        if rows is None:
            return HttpResponse(
                "Fix the report's filters: "
                + "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items()),
                status=400,
                content_type="text/plain; charset=utf-8",
            )
        return self._csv(
            rows=rows,
            by=by,
            labels=self._labels(by=by, keys=[row.key for row in rows]),
            filename=f"profit-by-{by}.csv",
        )

    @staticmethod
    def _csv(*, rows, by, labels, filename) -> HttpResponse:
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        write_profit_csv(response, rows=rows, by=by, labels=labels)
        return response

    @staticmethod
    def _labels(*, by: str, keys: list) -> dict:
        """Readable names for rollup keys, through the tenant scope."""
        if by == "sku":
            ids = [int(key) for key in keys if isinstance(key, str) and key.isdigit()]
            codes = dict(Sku.objects.filter(pk__in=ids).values_list("pk", "code"))
            return {
                key: codes.get(int(key), key) if key.isdigit() else key.removeprefix("code:")
                for key in keys
            }
        if by == "shop":
            return dict(Shop.objects.filter(pk__in=keys).values_list("pk", "name"))
        if by == "session":
            return dict(LiveSession.objects.filter(pk__in=keys).values_list("pk", "title"))
        if by == "order":
            return dict(Order.objects.filter(pk__in=keys).values_list("pk", "platform_order_id"))
        return {key: key.isoformat() for key in keys}


def _totals(rows) -> dict:
    names = ("orders", "units", "sales", "refund", "fees", "commission", "label", "packaging")
    totals = {name: sum(getattr(row, name) for row in rows) for name in names}
    totals["cogs"] = sum(row.cogs for row in rows)
    totals["profit"] = sum(row.profit for row in rows)
    return totals


@admin.register(ShopFees)
class ShopFeesAdmin(TenantModelAdmin):
    list_display = (
        "shop",
        "referral_percent",
        "transaction_percent",
        "fixed_per_order",
        "refund_admin_percent",
        "packaging_per_parcel",
        "defaults",
    )
    list_select_related = ("shop",)

    @admin.display(description="platform defaults (blank fields use these)")
    def defaults(self, fees):
        rates = platform_fee_defaults(fees.shop.platform)
        return (
            f"referral {rates.referral_percent} %, transaction {rates.transaction_percent} %, "
            f"fixed {rates.fixed_per_order}, refund admin {rates.refund_admin_percent} %, "
            f"packaging {rates.packaging_per_parcel}"
        )
