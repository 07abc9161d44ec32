"""The orders back office: the order list sellers work from, its bulk actions, CSV in and out.

Scoping comes from tkerp.admin and the scoped managers; the actions here only parse a form and call
the functions in orders/holds.py and orders/tags.py.
"""

from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import Count, Exists, OuterRef, Prefetch
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.html import format_html_join
from django.utils.translation import ngettext
from import_export.admin import ExportActionMixin

from inventory.models import Sku
from orders.admin_inbox import (  # also registers the inboxes
    SlaStateFilter,
    TrackingSlaStateFilter,
    order_time_left,
)
from orders.admin_review import (  # also registers the review settings admin
    edit_address_re_review,
    order_form_saved,
    re_review,
)
from orders.cockpit import (
    q_tracking_awaiting,
    q_tracking_overdue,
)
from orders.holds import HoldNotAllowed, HoldReason, order_hold, order_release
from orders.models import (
    ORDER_SEARCH_FIELDS,
    Order,
    OrderEvent,
    OrderHold,
    OrderLine,
    Tag,
)
from orders.resources import OrderLineResource
from orders.sla import SHIP_BY_CLOCK, TRACKING_CLOCK
from orders.tags import order_tag_add, order_tag_remove, tag_name_normalise
from tkerp.admin import (
    IndexedSearchAdminMixin,
    TenantImportExportModelAdmin,
    TenantModelAdmin,
    TenantTabularInline,
    all_tenants_view,
)
from tkerp.admin_forms import OpenedStateAdminMixin, OpenedStateForm

# How many of the selected orders an action's confirmation page lists by name.
ACTION_PREVIEW_LIMIT = 20


# ------------------------------------------------------------------------------------ filters


class HoldCodeFilter(admin.SimpleListFilter):
    """Orders by active hold reason (released holds do not count)."""

    title = "hold reason"
    parameter_name = "hold"
    ANY, NONE = "_any", "_none"

    def lookups(self, request, model_admin):
        codes = (
            OrderHold.objects.filter(released_at__isnull=True)
            .order_by("code")
            .values_list("code", flat=True)
            .distinct()
        )
        labels = dict(HoldReason.choices)
        return [
            (self.ANY, "Any active hold"),
            (self.NONE, "No active hold"),
            *((code, labels.get(code, code)) for code in codes),
        ]

    def queryset(self, request, queryset):
        value = self.value()
        if not value:
            return queryset
        active = OrderHold.objects.filter(order=OuterRef("pk"), released_at__isnull=True)
        if value == self.ANY:
            return queryset.filter(Exists(active))
        if value == self.NONE:
            return queryset.filter(~Exists(active))
        return queryset.filter(Exists(active.filter(code=value)))


class TagFilter(admin.SimpleListFilter):
    title = "tag"
    parameter_name = "tag"

    def lookups(self, request, model_admin):
        return [
            (name, name) for name in Tag.objects.order_by("name").values_list("name", flat=True)
        ]

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        return queryset.filter(order_tags__tag__name=self.value())


class DeadlineFilter(admin.SimpleListFilter):
    """Orders whose deadline (`clock`, one of `orders.sla.SLA_CLOCKS`) is passed or near, among
    those whose clock still runs: what the dashboard shows first."""

    clock = SHIP_BY_CLOCK
    WINDOWS = {"4h": timedelta(hours=4), "24h": timedelta(hours=24), "48h": timedelta(hours=48)}

    def lookups(self, request, model_admin):
        return [
            ("overdue", "Overdue"),
            ("4h", "Due within 4 hours"),
            ("24h", "Due within 24 hours"),
            ("48h", "Due within 48 hours"),
            ("none", "No deadline"),
        ]

    def queryset(self, request, queryset):
        value, now, field = self.value(), timezone.now(), self.clock.deadline_field
        if value == "overdue":
            return queryset.filter(self.clock.running(), **{f"{field}__lt": now})
        if value in self.WINDOWS:
            return queryset.filter(
                self.clock.running(),
                **{f"{field}__gte": now, f"{field}__lt": now + self.WINDOWS[value]},
            )
        if value == "none":
            return queryset.filter(**{f"{field}__isnull": True})
        return queryset


class ShipByFilter(DeadlineFilter):
    title = "ship by"
    parameter_name = "ship_by_due"
    clock = SHIP_BY_CLOCK


class TrackingByFilter(DeadlineFilter):
    """The tracking clock: orders whose platform still waits for a valid tracking number."""

    title = "tracking by"
    parameter_name = "tracking_by_due"
    clock = TRACKING_CLOCK

    def lookups(self, request, model_admin):
        return [*super().lookups(request, model_admin), ("uploaded", "Tracking accepted")]

    def queryset(self, request, queryset):
        if self.value() == "uploaded":
            return queryset.filter(tracking_uploaded_at__isnull=False)
        return super().queryset(request, queryset)


class TrackingFilter(admin.SimpleListFilter):
    """Orders whose tracking the platform has not accepted yet: shipped and awaiting the
    write-back, or past the tracking deadline (the cockpit's tracking widget)."""

    title = "tracking"
    parameter_name = "tracking"

    def lookups(self, request, model_admin):
        return [("awaiting", "Awaiting write-back"), ("overdue", "Tracking overdue")]

    def queryset(self, request, queryset):
        if self.value() == "awaiting":
            return queryset.filter(q_tracking_awaiting())
        if self.value() == "overdue":
            return queryset.filter(q_tracking_overdue(now=timezone.now()))
        return queryset


# ------------------------------------------------------------------------------------ inlines


class OrderLineInline(TenantTabularInline):
    model = OrderLine
    extra = 0
    # Never deleted (mark it cancelled instead): its reservation and parcel lines would go with
    # it, and the units its stock level reserved would never be given back.
    can_delete = False
    fields = (
        "platform_line_id",
        "sku",
        "seller_sku",
        "product_name",
        "quantity",
        "unit_price",
        "discount",
        "tax",
        "total",
        "is_cancelled",
    )
    # The SKU admin belongs to the inventory app; use its autocomplete when it offers one and
    # fall back to a raw id box (still validated against the tenant's SKUs) when it does not.
    raw_id_fields = ("sku",)

    def get_autocomplete_fields(self, request):
        sku_admin = self.admin_site._registry.get(Sku)
        return ("sku",) if sku_admin is not None and sku_admin.search_fields else ()

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        if _has_parcels(obj):
            # Its parcels were made from these lines and its reservations: a line changed here
            # would ship (and commit) other units than its packing slip lists. Cancel the
            # parcels first; the lines are then the order's again.
            readonly += [name for name in LINE_STOCK_FIELDS if name not in readonly]
        elif _holds_stock(obj):
            # A reservation follows its line's quantity, not a new SKU (it would keep the old
            # one's units): cancel the line and add the right one instead.
            readonly += [name for name in ("sku", "seller_sku") if name not in readonly]
        return readonly

    def has_add_permission(self, request, obj=None):
        return not _has_parcels(obj) and super().has_add_permission(request, obj)


#: What of a line its reservation and parcel lines follow.
LINE_STOCK_FIELDS = ("sku", "seller_sku", "quantity", "is_cancelled")


def _holds_stock(order) -> bool:
    """Whether `order` (None on an add page) holds reserved units; asked once per page (the
    admin asks an inline for its read-only fields several times), remembered on the order."""
    if order is None or order.pk is None:
        return False
    if "_holds_stock" not in order.__dict__:
        from inventory.models import Reservation, ReservationState

        order._holds_stock = Reservation.objects.filter(
            order_id=order.pk, state=ReservationState.RESERVED
        ).exists()
    return order._holds_stock


def _has_parcels(order) -> bool:
    """Whether `order` (None on an add page) has a parcel not cancelled; asked once per page,
    remembered on the order."""
    if order is None or order.pk is None:
        return False
    if "_has_parcels" not in order.__dict__:
        from logistics.models import Shipment, ShipmentStatus

        order._has_parcels = (
            Shipment.objects.filter(order_id=order.pk)
            .exclude(status=ShipmentStatus.CANCELLED)
            .exists()
        )
    return order._has_parcels


class OrderHoldInline(TenantTabularInline):
    """The order's active holds. Read only: holding and releasing go through the actions, which
    also move the status and write the audit trail."""

    model = OrderHold
    verbose_name_plural = "active holds"
    extra = 0
    can_delete = False
    fields = readonly_fields = ("code", "message", "created_at", "created_by")

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .filter(released_at__isnull=True)
            .select_related("created_by")
        )

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class OrderEventInline(TenantTabularInline):
    """The audit trail, newest first; nobody adds, edits or deletes events by hand."""

    model = OrderEvent
    verbose_name_plural = "history"
    extra = 0
    can_delete = False
    fields = readonly_fields = ("created_at", "kind", "message", "source", "user")
    ordering = ("-created_at", "-id")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


# ------------------------------------------------------------------------------ action forms


class HoldForm(forms.Form):
    code = forms.ChoiceField(label="Reason", choices=HoldReason.choices)
    message = forms.CharField(
        label="Message",
        required=False,
        max_length=OrderHold._meta.get_field("message").max_length,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="What the next person should know or do.",
    )


class TagAddForm(forms.Form):
    tag = forms.CharField(
        label="Tag",
        max_length=100,
        widget=forms.TextInput(attrs={"list": "tag-names", "autocomplete": "off"}),
        help_text="Pick an existing tag or type a new one.",
    )

    def clean_tag(self):
        return tag_name_normalise(self.cleaned_data["tag"])


class TagRemoveForm(forms.Form):
    tag = forms.ChoiceField(label="Tag")

    def __init__(self, *args, tag_names=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["tag"].choices = [(name, name) for name in tag_names]


# ------------------------------------------------------------------------------------ admins


class OrderForm(OpenedStateForm):
    """The order page: a page opened before the order changed (a sync, a shipment, another
    user) does not save its older values back over it (`OpenedStateForm`)."""

    changed_by = "a platform sync, a shipment or another user"


@admin.register(Order)
class OrderAdmin(
    OpenedStateAdminMixin,
    IndexedSearchAdminMixin,
    ExportActionMixin,
    TenantImportExportModelAdmin,
):
    form = OrderForm
    resource_classes = [OrderLineResource]
    list_display = (
        "platform_order_id",
        "shop",
        "status",
        "recipient_name",
        "total_with_currency",
        "ship_by",
        "time_left",
        "hold_codes",
        "tag_names",
        "placed_at",
    )
    list_filter = (
        "status",
        "shop",
        "shop__platform",
        HoldCodeFilter,
        TagFilter,
        ShipByFilter,
        SlaStateFilter,
        TrackingByFilter,
        TrackingSlaStateFilter,
        TrackingFilter,
    )
    # Each word is looked up with trigram indexes, one query per table (tkerp.search).
    search_fields = ORDER_SEARCH_FIELDS
    search_help_text = (
        "Order id, buyer name or email, recipient, phone, postal code, seller SKU or tracking "
        "number (at most 10 words)."
    )
    date_hierarchy = "placed_at"
    list_select_related = ("shop",)
    autocomplete_fields = ("shop",)
    list_per_page = 100
    # A second COUNT(*) over the whole table on every page load buys little for a seller with a
    # million orders; the filtered count is still shown.
    show_full_result_count = False
    readonly_fields = (
        "status",
        "tracking_uploaded_at",
        "parcels",
        "original_address",
        "raw",
        "platform_updated_at",
        "created_at",
        "updated_at",
    )
    fieldsets = (
        (None, {"fields": ("shop", "platform_order_id", "status", "platform_status")}),
        ("Buyer", {"fields": ("buyer_name", "buyer_email", "buyer_user_id", "buyer_note")}),
        (
            "Ship to",
            {
                "fields": (
                    "recipient_name",
                    "recipient_phone",
                    "address_line1",
                    "address_line2",
                    ("city", "state", "postal_code", "country"),
                    "address_masked",
                )
            },
        ),
        (
            "Money",
            {
                "fields": (
                    "currency",
                    ("subtotal", "shipping_fee", "tax"),
                    ("seller_discount", "platform_discount", "total"),
                    ("creator_commission", "creator_username"),
                    ("creator_content_type", "creator_content_id"),
                    ("is_cod", "is_presale"),
                )
            },
        ),
        (
            "Dates and deadlines",
            {
                "fields": (
                    ("placed_at", "paid_at"),
                    ("ship_by", "tracking_by", "cancel_answer_by"),
                    "tracking_uploaded_at",
                    ("shipped_at", "delivered_at", "cancelled_at"),
                )
            },
        ),
        ("Parcels", {"fields": ("parcels",)}),
        ("Notes", {"fields": ("seller_note",)}),
        (
            "As the platform sent it",
            {
                "classes": ("collapse",),
                "fields": ("original_address", "raw", "platform_updated_at"),
            },
        ),
        ("Record", {"classes": ("collapse",), "fields": ("created_at", "updated_at")}),
    )
    inlines = (OrderLineInline, OrderHoldInline, OrderEventInline)
    actions = (
        "hold_orders",
        "release_holds",
        "add_tag",
        "remove_tag",
        "stock_wait",
        "stock_route_dropship",
        "stock_cancel_through_platform",
        "mark_shipped",
        re_review,
        edit_address_re_review,
    )

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .prefetch_related(
                Prefetch(
                    "holds",
                    queryset=OrderHold.objects.filter(released_at__isnull=True).order_by(
                        "created_at", "pk"
                    ),
                    to_attr="active_holds",
                ),
                Prefetch("tags", queryset=Tag.objects.order_by("name")),
            )
        )

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if all_tenants_view(request):
            # The operator's all-tenants view must say whose order this is.
            (name, options), *rest = fieldsets
            fieldsets = [(name, {**options, "fields": ("tenant", *options["fields"])}), *rest]
        return fieldsets

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if change:
            order_form_saved(request=request, order=obj, form=form)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        lines_changed = any(
            line_form.has_changed()
            for formset in formsets
            if formset.model is OrderLine
            for line_form in formset.forms
        )
        if change and lines_changed:
            # A line's quantity changed or it was cancelled: its reservation follows now, as
            # after a platform update (a parcel would otherwise commit the old quantity).
            from inventory.reservations import orders_reserve

            orders_reserve(tenant=form.instance.tenant, order_ids=[form.instance.pk])

    @admin.display(description="total", ordering="total")
    def total_with_currency(self, order):
        return f"{order.total} {order.currency}"

    @admin.display(description="time left", ordering="ship_by")
    def time_left(self, order):
        return order_time_left(order)

    @admin.display(description="parcels")
    def parcels(self, order):
        """Each parcel with its status, provider and intercept state (requested / confirmed /
        failed, when a cancellation asked the provider to stop it)."""
        from logistics.models import Shipment

        shipments = (
            Shipment.objects.filter(order_id=order.pk)
            .select_related("provider", "warehouse")
            .order_by("pk")
        )
        if order.pk is None or not shipments:
            return "—"
        return format_html_join(
            "\n",
            "<div>{} — {}{}{}</div>",
            (
                (
                    s.reference,
                    s.get_status_display(),
                    f" at {s.provider}" if s.provider_id else "",
                    f" · {s.get_intercept_state_display()}" if s.intercept_state else "",
                )
                for s in shipments
            ),
        )

    @admin.display(description="holds")
    def hold_codes(self, order):
        holds = getattr(order, "active_holds", None)
        if holds is None:
            holds = order.holds.filter(released_at__isnull=True)
        return ", ".join(hold.code for hold in holds)

    @admin.display(description="tags")
    def tag_names(self, order):
        return ", ".join(tag.name for tag in order.tags.all())

    # ------------------------------------------------------------------ import / export

    def get_valid_export_item_pks(self, request):
        # The library's default lists every order id of the table to validate the posted ones;
        # check only what was posted, through the tenant-scoped queryset.
        posted = [value for value in request.POST.getlist("export_items") if value.isdigit()]
        return self.get_queryset(request).filter(pk__in=posted).values_list("pk", flat=True)

    def add_success_message(self, result, request):
        counts = getattr(result, "order_counts", None)
        if counts is None:
            return super().add_success_message(result, request)
        lines = result.totals
        messages.success(
            request,
            f"Import finished: {counts['new']} new and {counts['updated']} changed orders "
            f"({lines['new']} new, {lines['update']} changed and {lines['skip']} unchanged "
            "lines).",
        )

    # ------------------------------------------------------------------ actions

    def _action_page(self, request, queryset, *, form, action, title, submit, extra=None):
        """The intermediate page of an action: the form, the orders it applies to, and the
        selection carried through as hidden inputs so the second POST runs the same action."""
        orders = list(queryset.select_related("shop")[:ACTION_PREVIEW_LIMIT])
        count = queryset.count()
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "opts": self.opts,
            "form": form,
            "orders": orders,
            "more": max(count - len(orders), 0),
            "count": count,
            "action": action,
            "submit_label": submit,
            "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across", "0"),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media + form.media,
            **(extra or {}),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/orders/order/action_form.html", context)

    @staticmethod
    def _in_pk_order(queryset):
        # One order at a time, each in its own short transaction, in ascending pk order (the
        # house locking order), so a bulk action never holds many locks at once.
        return queryset.prefetch_related(None).order_by("pk")

    @admin.action(description="Hold with a reason…", permissions=["change"])
    def hold_orders(self, request, queryset):
        form = HoldForm(request.POST if "apply" in request.POST else None)
        if not form.is_valid():
            return self._action_page(
                request,
                queryset,
                form=form,
                action="hold_orders",
                title="Hold orders",
                submit="Hold",
            )
        code, message = form.cleaned_data["code"], form.cleaned_data["message"]
        held = already = 0
        refused = []
        for order in self._in_pk_order(queryset):
            try:
                _, created = order_hold(order=order, code=code, message=message, user=request.user)
            except HoldNotAllowed as e:
                refused.append(str(e))
                continue
            held += created
            already += not created
        self.message_user(
            request,
            ngettext("Held %d order", "Held %d orders", held) % held
            + f" ({code})."
            + (f" {already} already had that hold." if already else ""),
            messages.SUCCESS,
        )
        if refused:
            self.message_user(request, " ".join(refused[:10]), messages.WARNING)
        return None

    @admin.action(description="Release holds", permissions=["change"])
    def release_holds(self, request, queryset):
        released = untouched = 0
        for order in self._in_pk_order(queryset):
            if order_release(order=order, user=request.user):
                released += 1
            else:
                untouched += 1
        self.message_user(
            request,
            ngettext(
                "Released the holds of %d order.", "Released the holds of %d orders.", released
            )
            % released
            + (f" {untouched} had no active hold." if untouched else ""),
            messages.SUCCESS,
        )

    @admin.action(description="Add tag…", permissions=["change"])
    def add_tag(self, request, queryset):
        form = TagAddForm(request.POST if "apply" in request.POST else None)
        if not form.is_valid():
            return self._action_page(
                request,
                queryset,
                form=form,
                action="add_tag",
                title="Tag orders",
                submit="Add tag",
                extra={
                    "tag_names": list(Tag.objects.order_by("name").values_list("name", flat=True))
                },
            )
        name = form.cleaned_data["tag"]
        added = sum(
            order_tag_add(order=order, tag_name=name, user=request.user)[1]
            for order in self._in_pk_order(queryset)
        )
        self.message_user(
            request,
            ngettext("Tagged %d order", "Tagged %d orders", added) % added + f" with “{name}”.",
            messages.SUCCESS,
        )

    @admin.action(description="Remove tag…", permissions=["change"])
    def remove_tag(self, request, queryset):
        orders = queryset.prefetch_related(None).order_by().values("pk")
        names = list(
            Tag.objects.filter(order_tags__order__in=orders)
            .order_by("name")
            .values_list("name", flat=True)
            .distinct()
        )
        if not names:
            self.message_user(request, "None of the selected orders has a tag.", messages.WARNING)
            return None
        form = TagRemoveForm(request.POST if "apply" in request.POST else None, tag_names=names)
        if not form.is_valid():
            return self._action_page(
                request,
                queryset,
                form=form,
                action="remove_tag",
                title="Untag orders",
                submit="Remove tag",
            )
        name = form.cleaned_data["tag"]
        removed = sum(
            order_tag_remove(order=order, tag_name=name, user=request.user)
            for order in self._in_pk_order(queryset)
        )
        self.message_user(
            request,
            ngettext("Removed “%s” from %d order.", "Removed “%s” from %d orders.", removed)
            % (name, removed),
            messages.SUCCESS,
        )

    # ------------------------------------------------------------------ oversold orders

    def _stock_outcomes(self, request, queryset, run, label):
        """Run a reservation function per order (own transaction each) and report outcomes."""
        counts = {}
        for order in self._in_pk_order(queryset):
            outcome = run(order=order)
            counts[outcome] = counts.get(outcome, 0) + 1
        self.message_user(
            request,
            f"{label}: "
            + ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in sorted(counts.items())),
            messages.SUCCESS if counts.get("reserved") else messages.WARNING,
        )

    @admin.action(description="Oversold: wait for stock (reserve again)", permissions=["change"])
    def stock_wait(self, request, queryset):
        from inventory.reservations import order_reserve_retry

        self._stock_outcomes(request, queryset, order_reserve_retry, "Reservation retried")

    @admin.action(description="Oversold: route to a drop-ship supplier", permissions=["change"])
    def stock_route_dropship(self, request, queryset):
        from inventory.reservations import order_route_dropship

        self._stock_outcomes(request, queryset, order_route_dropship, "Drop-ship routing")

    @admin.action(description="Oversold: cancel through the platform", permissions=["change"])
    def stock_cancel_through_platform(self, request, queryset):
        from inventory.oversold import order_cancel_through_platform

        sent = recorded = 0
        for order in self._in_pk_order(queryset):
            if order_cancel_through_platform(order=order, user=request.user):
                sent += 1
            else:
                recorded += 1
        self.message_user(
            request,
            f"Cancellation sent for {sent} orders; {recorded} recorded as to cancel in the "
            "platform's seller centre (see the order events).",
            messages.SUCCESS,
        )

    # ------------------------------------------------------------------ shipping

    @admin.action(description="Mark shipped (the stock leaves)", permissions=["change"])
    def mark_shipped(self, request, queryset):
        """The parcels left outside tkerp's label flow: commit the stock through the one ship
        door. The platform is not told here (its own status, or the tracking upload, does)."""
        from inventory.reservations import ShipRefused, order_has_shipped, order_ship_commit

        shipped = already = units = 0
        refused = []
        for order in self._in_pk_order(queryset):
            was_shipped = order_has_shipped(order)
            try:
                # Called for a shipped order too: it commits whatever it still holds, if any.
                units += order_ship_commit(order=order, user=request.user)
            except ShipRefused as error:
                refused.append(str(error))
                continue
            already += was_shipped
            shipped += not was_shipped
        self.message_user(
            request,
            ngettext("Marked %d order shipped", "Marked %d orders shipped", shipped) % shipped
            + f"; {units} units left stock."
            + (f" {already} had shipped already." if already else ""),
            messages.SUCCESS if shipped else messages.WARNING,
        )
        if refused:
            self.message_user(request, " ".join(refused[:10]), messages.WARNING)


class TagForm(forms.ModelForm):
    class Meta:
        model = Tag
        fields = ("name",)

    def clean_name(self):
        return tag_name_normalise(self.cleaned_data["name"])


@admin.register(Tag)
class TagAdmin(TenantModelAdmin):
    form = TagForm
    list_display = ("name", "order_count")
    search_fields = ("name",)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(order_count=Count("order_tags"))

    @admin.display(description="orders", ordering="order_count")
    def order_count(self, tag):
        return tag.order_count


@admin.register(OrderEvent)
class OrderEventAdmin(TenantModelAdmin):
    """Browse the audit trail across orders. Read only for everyone, the operator included."""

    list_display = ("created_at", "order", "kind", "source", "user", "message")
    list_filter = ("kind", "source")
    search_fields = ("order__platform_order_id", "kind", "message")
    date_hierarchy = "created_at"
    list_select_related = ("order__shop", "user")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
