"""Back office of tracking numbers: the parcel form and action that give one (through the one
door, `logistics.tracking`), the parcel's write-back state, and the read-only list of every
write-back call made (`TrackingPushAttempt`)."""

from django.contrib import admin, messages
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import ngettext

from logistics.models import TrackingPushAttempt, TrackingPushState
from logistics.outbox import tracking_pushes_done_by_hand
from logistics.tracking import (
    TrackingRefused,
    TrackingSource,
    shipment_tracking_accept,
    tracking_carrier,
    tracking_number_check,
)
from tkerp.admin import ReadOnlyAdminMixin, TenantModelAdmin
from tkerp.admin_forms import OpenedStateForm


class ShipmentTrackingForm(OpenedStateForm):
    """The parcel form: a tracking number typed here is checked like any other (carrier format,
    check digit, not on another parcel) and refused on the form, saying which. A page opened
    before the parcel changed (its label bought, its number accepted, another user) does not
    save its older values back over it (`OpenedStateForm`)."""

    changed_by = "a label, a tracking number, the platform or another user"

    def clean(self):
        cleaned = super().clean()
        number = (cleaned.get("tracking_number") or "").strip()
        # A new carrier for the number it has is checked too: the number must be that carrier's.
        changed = {"tracking_number", "carrier"} & set(self.changed_data)
        if not number or not changed or self.instance.pk is None:
            return cleaned
        carrier_field = cleaned.get("carrier")
        service = cleaned.get("service")
        parcel = self.instance
        try:
            carrier = (
                carrier_field
                or (service.carrier if service is not None else None)
                or tracking_carrier(shipment=parcel, carrier_code=None)
            )
            cleaned["tracking_number"] = tracking_number_check(
                shipment=parcel, carrier=carrier, tracking_number=number
            )
        except TrackingRefused as refused:
            self.add_error("tracking_number", refused.message)
        return cleaned


class ShipmentTrackingAdminMixin:
    """Mixed into `ShipmentAdmin`: the tracking number goes through the door on save, the
    write-back state is shown, and "Mark shipped" reports parcels with their number as gone."""

    form = ShipmentTrackingForm

    def save_model(self, request, obj, form, change):
        # A new carrier for the number goes through the door too (its write-back names it).
        number_changed = change and bool({"tracking_number", "carrier"} & set(form.changed_data))
        new_number = obj.tracking_number
        carrier = form.cleaned_data.get("carrier")
        if number_changed and new_number:
            obj.tracking_number = form.initial.get("tracking_number") or ""
            obj.carrier_id = form.initial.get("carrier")
        super().save_model(request, obj, form, change)
        if number_changed and new_number:
            try:
                shipment_tracking_accept(
                    obj,
                    tracking_number=new_number,
                    carrier_code=carrier.code if carrier is not None else None,
                    source=TrackingSource.ADMIN,
                    ship=False,
                    user=request.user,
                )
            except TrackingRefused as refused:
                self.message_user(request, refused.message, messages.ERROR)
            obj.refresh_from_db()

    @admin.display(description="write-back")
    def writeback(self, shipment):
        """Whether the order's platform has the parcel's number (and why not)."""
        try:
            push = shipment.tracking_push
        except type(shipment).tracking_push.RelatedObjectDoesNotExist:
            return "—" if not shipment.tracking_number else "not needed"
        text = push.get_state_display()
        if push.state == TrackingPushState.SENT and push.sent_at:
            return f"{text} ({timezone.localtime(push.sent_at):%Y-%m-%d %H:%M})"
        if push.last_error:
            return format_html("{}<br><small>{}</small>", text, push.last_error)
        return text

    @admin.action(description="Mark shipped (with their tracking numbers)", permissions=["change"])
    def mark_shipped_with_tracking(self, request, queryset):
        done, refused = 0, []
        for parcel in queryset.select_related("service__carrier", "carrier").order_by("pk"):
            if not parcel.tracking_number:
                refused.append(f"{parcel.reference}: no tracking number yet")
                continue
            try:
                shipment_tracking_accept(
                    parcel,
                    tracking_number=parcel.tracking_number,
                    carrier_code=None,
                    source=TrackingSource.ADMIN,
                    user=request.user,
                )
            except TrackingRefused as exc:
                refused.append(exc.message)
            else:
                done += 1
        if done:
            self.message_user(
                request,
                ngettext(
                    "%d parcel marked shipped; its number goes to the platform.",
                    "%d parcels marked shipped; their numbers go to the platform.",
                    done,
                )
                % done,
                messages.SUCCESS,
            )
        if refused:
            self.message_user(request, "Not shipped: " + "; ".join(refused[:10]), messages.WARNING)

    @admin.action(description="Mark tracking given to the platform by hand", permissions=["change"])
    def tracking_done_by_hand(self, request, queryset):
        """For a number the platform's API can't change (eBay): the seller changed it in the
        platform's own back office and says so here; nothing is sent."""
        done = tracking_pushes_done_by_hand(shipments=queryset)
        if done:
            self.message_user(
                request,
                ngettext(
                    "%d parcel's number counts as on the platform; nothing was sent.",
                    "%d parcels' numbers count as on the platform; nothing was sent.",
                    done,
                )
                % done,
                messages.SUCCESS,
            )
        else:
            self.message_user(
                request,
                "None of these parcels has a number waiting or failed to reach its platform.",
                messages.WARNING,
            )


@admin.register(TrackingPushAttempt)
class TrackingPushAttemptAdmin(ReadOnlyAdminMixin, TenantModelAdmin):
    """Every call made to write a tracking number back to a platform. Read-only."""

    list_display = (
        "created_at",
        "shop",
        "platform",
        "shipment",
        "number",
        "call",
        "result",
        "latency_ms",
        "error",
    )
    list_filter = ("result", "platform", "call")
    search_fields = ("number", "shipment__reference")
    list_select_related = ("shop", "shipment")
    ordering = ("-created_at", "-id")
