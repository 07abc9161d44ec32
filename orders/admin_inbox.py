"""Admin for the SLA side of orders: the cancellation and returns inboxes, the per-shop SLA
figures, the tenant's order policy, and the countdown and SLA filter the order list uses.

Actions only parse input and call `orders.cancellations` / `orders.returns`.
"""

from __future__ import annotations

from datetime import datetime

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import ValidationError
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.html import format_html

from inventory.models import Warehouse
from orders.cancellations import cancel_reject_reasons, cancellations_answer_many
from orders.models import (
    CancellationRequest,
    CancellationStatus,
    ReturnRequest,
    ShopSlaFigures,
    SlaState,
    TenantOrderPolicy,
)
from orders.returns import ReturnError, return_receive
from shops.models import Platform
from tkerp.admin import TenantModelAdmin

PREVIEW_LIMIT = 50
COLOURS = {"overdue": "#ba2121", "soon": "#b36b00", "ok": "#447e36"}


def countdown(deadline: datetime | None, *, now: datetime, soon_hours: int = 4) -> str:
    """ "3 h 12 m left" / "overdue 2 h 5 m", coloured red when past, amber within `soon_hours`."""
    if deadline is None:
        return "-"
    seconds = int((deadline - now).total_seconds())
    minutes = abs(seconds) // 60
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    text = f"{days} d {hours} h" if days else f"{hours} h {mins} m"
    if seconds < 0:
        return format_html('<strong style="color:{}">overdue {}</strong>', COLOURS["overdue"], text)
    colour = COLOURS["soon"] if seconds < soon_hours * 3600 else COLOURS["ok"]
    return format_html('<span style="color:{}">{} left</span>', colour, text)


class SlaStateFilter(admin.SimpleListFilter):
    """Orders by where they stand against ship-by, as the SLA sweep last marked them."""

    title = "SLA"
    parameter_name = "sla"
    state_field = "sla_state"

    def lookups(self, request, model_admin):
        return SlaState.choices

    def queryset(self, request, queryset):
        if self.value() in SlaState.values:
            return queryset.filter(**{self.state_field: self.value()})
        return queryset


class TrackingSlaStateFilter(SlaStateFilter):
    """Orders by where they stand against tracking-by, as the SLA sweep last marked them."""

    title = "tracking SLA"
    parameter_name = "tracking_sla"
    state_field = "tracking_sla_state"


def order_time_left(order, *, now: datetime | None = None) -> str:
    """The order list's countdown to ship-by; blank once the order left the open states."""
    if not order.is_open:
        return "-"
    return countdown(order.ship_by, now=now or timezone.now())


def _action_page(model_admin, request, queryset, *, form, action, title, submit):
    """An action's intermediate page (the order actions' template): the form, what it applies
    to, and the selection carried through so the second POST runs the same action."""
    rows = list(queryset[:PREVIEW_LIMIT])
    count = queryset.count()
    context = {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "opts": model_admin.opts,
        "form": form,
        "orders": rows,
        "more": max(count - len(rows), 0),
        "count": count,
        "action": action,
        "submit_label": submit,
        "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
        "select_across": request.POST.get("select_across", "0"),
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "media": model_admin.media + form.media,
    }
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(request, "admin/orders/order/action_form.html", context)


# --- cancellations ----------------------------------------------------------------------------


class RejectForm(forms.Form):
    reason = forms.ChoiceField(label="Reason", choices=())
    comment = forms.CharField(label="Comment", required=False, max_length=500)

    def __init__(self, *args, platforms=(), **kwargs):
        super().__init__(*args, **kwargs)
        choices: dict[str, str] = {}
        for platform in sorted(platforms):
            for code, label in cancel_reject_reasons(platform):
                choices.setdefault(code, label)
        self.fields["reason"].choices = list(choices.items())


class AnswerDueFilter(admin.SimpleListFilter):
    """Pending requests whose answer is due within a few hours (or already late)."""

    title = "answer due"
    parameter_name = "answer_due"
    WINDOWS = {"4h": 4, "24h": 24}

    def lookups(self, request, model_admin):
        return [("4h", "Within 4 hours"), ("24h", "Within 24 hours")]

    def queryset(self, request, queryset):
        from orders.cockpit import q_cancel_due_within

        if self.value() in self.WINDOWS:
            hours = self.WINDOWS[self.value()]
            return queryset.filter(q_cancel_due_within(now=timezone.now(), hours=hours))
        return queryset


@admin.register(CancellationRequest)
class CancellationRequestAdmin(TenantModelAdmin):
    """The cancellation inbox: nearest deadline first, approve or reject singly or in bulk."""

    list_display = (
        "platform_order_id",
        "shop",
        "status",
        "time_to_answer",
        "reason",
        "requested_at",
        "decision_display",
        "error_short",
    )
    list_filter = ("status", AnswerDueFilter, "shop", "shop__platform", "auto_approved")
    search_fields = ("platform_order_id", "platform_cancel_id", "reason")
    list_select_related = ("shop",)
    ordering = ("answer_by", "id")
    actions = ("approve_requests", "reject_requests")
    readonly_fields = (
        "shop",
        "order",
        "platform_order_id",
        "platform_cancel_id",
        "status",
        "platform_status",
        "reason",
        "requested_at",
        "answer_by",
        "answered_at",
        "answered_by",
        "decision",
        "reject_reason",
        "comment",
        "auto_approved",
        "error",
        "raw",
    )

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="answer within", ordering="answer_by")
    def time_to_answer(self, request_row):
        if request_row.status != CancellationStatus.PENDING:
            return "-"
        return countdown(request_row.answer_by, now=timezone.now())

    @admin.display(description="answer")
    def decision_display(self, request_row):
        if request_row.status == CancellationStatus.PENDING:
            return "sending…" if request_row.decision else ""
        text = request_row.decision or ""
        if request_row.reject_reason:
            text += f" ({request_row.reject_reason})"
        return text + (" (auto)" if request_row.auto_approved else "")

    @admin.display(description="error")
    def error_short(self, request_row):
        return (request_row.error or "")[:120]

    def _report(self, request, answered: int, errors: list[str], verb: str) -> None:
        self.message_user(request, f"{answered} request(s) {verb}.", messages.SUCCESS)
        if errors:
            self.message_user(request, " | ".join(errors[:10]), messages.ERROR)

    @admin.action(description="Approve (cancel the orders)", permissions=["change"])
    def approve_requests(self, request, queryset):
        answered, errors = cancellations_answer_many(
            requests=queryset.select_related("shop").order_by("pk"),
            user=request.user,
            approve=True,
        )
        self._report(request, answered, errors, "approved")

    @admin.action(description="Reject with a reason…", permissions=["change"])
    def reject_requests(self, request, queryset):
        platforms = set(queryset.values_list("shop__platform", flat=True))
        if len({tuple(cancel_reject_reasons(platform)) for platform in platforms}) > 1:
            # One reason is sent for all: a reason of one platform is refused by another's.
            names = ", ".join(sorted(Platform(platform).label for platform in platforms))
            self.message_user(
                request,
                f"These requests are on platforms with different reject reasons ({names}): "
                "reject one platform's at a time (filter the list by shop). Nothing was sent.",
                messages.ERROR,
            )
            return None
        form = RejectForm(request.POST if "apply" in request.POST else None, platforms=platforms)
        if not form.is_valid():
            return _action_page(
                self,
                request,
                queryset,
                form=form,
                action="reject_requests",
                title="Reject cancellation requests",
                submit="Reject",
            )
        answered, errors = cancellations_answer_many(
            requests=queryset.select_related("shop").order_by("pk"),
            user=request.user,
            approve=False,
            reason=form.cleaned_data["reason"],
            comment=form.cleaned_data["comment"],
        )
        self._report(request, answered, errors, "rejected")
        return None

    def has_change_permission(self, request, obj=None):
        # Nothing is edited by hand; the actions need the change permission.
        return super().has_change_permission(request, obj) if obj is None else False


# --- returns ----------------------------------------------------------------------------------


class ReceiveForm(forms.Form):
    warehouse = forms.ModelChoiceField(
        queryset=Warehouse._base_manager.none(), label="Restock into"
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["warehouse"].queryset = Warehouse.objects.order_by("code")


@admin.register(ReturnRequest)
class ReturnRequestAdmin(TenantModelAdmin):
    """The returns inbox: what buyers are sending back, and restocking it once it arrives."""

    list_display = (
        "platform_return_id",
        "platform_order_id",
        "shop",
        "return_type",
        "status",
        "reason",
        "units",
        "requested_at",
        "received_at",
        "received_warehouse",
    )
    list_filter = ("status", "return_type", "shop")
    search_fields = ("platform_return_id", "platform_order_id", "reason")
    list_select_related = ("shop", "received_warehouse")
    actions = ("receive_returns",)
    readonly_fields = (
        "shop",
        "order",
        "platform_order_id",
        "platform_return_id",
        "return_type",
        "status",
        "reason",
        "lines",
        "requested_at",
        "updated_at",
        "received_at",
        "received_by",
        "received_warehouse",
        "raw",
    )

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) if obj is None else False

    @admin.display(description="units")
    def units(self, row):
        return sum(int(line.get("quantity") or 0) for line in row.lines or [])

    @admin.action(description="Receive returned items (restock)…", permissions=["change"])
    def receive_returns(self, request, queryset):
        form = ReceiveForm(request.POST if "apply" in request.POST else None)
        if not form.is_valid():
            return _action_page(
                self,
                request,
                queryset,
                form=form,
                action="receive_returns",
                title="Receive returned items",
                submit="Restock",
            )
        received, errors = 0, []
        for row in queryset.order_by("pk"):
            try:
                movements = return_receive(
                    return_request=row, warehouse=form.cleaned_data["warehouse"], user=request.user
                )
            except (ReturnError, ValidationError) as exc:
                errors.append(f"return {row.platform_return_id}: {exc}")
                continue
            received += bool(movements)
        self.message_user(request, f"{received} return(s) restocked.", messages.SUCCESS)
        if errors:
            self.message_user(request, " | ".join(errors[:10]), messages.ERROR)
        return None


# --- figures and policy -----------------------------------------------------------------------


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f} %"


def _hours(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} h"


@admin.register(ShopSlaFigures)
class ShopSlaFiguresAdmin(TenantModelAdmin):
    """Each shop's shipping performance, as the SLA sweep last computed it (read only)."""

    list_display = (
        "shop",
        "late_7d",
        "late_30d",
        "median_to_ship",
        "p95_to_ship",
        "shipped_30d",
        "computed_at",
    )
    list_select_related = ("shop",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="late rate 7 d", ordering="late_rate_7d")
    def late_7d(self, row):
        return f"{_percent(row.late_rate_7d)} ({row.late_7d}/{row.due_7d})"

    @admin.display(description="late rate 30 d", ordering="late_rate_30d")
    def late_30d(self, row):
        return f"{_percent(row.late_rate_30d)} ({row.late_30d}/{row.due_30d})"

    @admin.display(description="median paid → shipped", ordering="median_hours_to_ship")
    def median_to_ship(self, row):
        return _hours(row.median_hours_to_ship)

    @admin.display(description="p95 paid → shipped", ordering="p95_hours_to_ship")
    def p95_to_ship(self, row):
        return _hours(row.p95_hours_to_ship)


@admin.register(TenantOrderPolicy)
class TenantOrderPolicyAdmin(TenantModelAdmin):
    list_display = ("__str__", "due_soon_hours", "cancel_auto_approve", "updated_at")
