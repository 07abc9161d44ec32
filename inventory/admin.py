"""Back office for SKUs, warehouses, stock, listings and suppliers.

Scoping comes from tkerp.admin. On-hand figures change only through `inventory.stock`: the stock
level page and the stock count import both call `stock_count`, and the movement ledger is
read-only here.
"""

from django import forms
from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import ValidationError
from django.db.models import F, OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from inventory.cockpit import q_below_reorder, q_push_failed_within, q_push_failing
from inventory.models import (
    InventoryPush,
    Listing,
    Reservation,
    ShopWarehouse,
    Sku,
    StockLevel,
    StockMovement,
    Supplier,
    SupplierItem,
    Warehouse,
)
from inventory.resources import (
    ListingResource,
    SkuResource,
    StockLevelResource,
    SupplierItemResource,
    SupplierResource,
)
from inventory.stock import stock_count, stock_count_check
from tkerp.admin import TenantImportExportModelAdmin, TenantModelAdmin, TenantTabularInline


def _stock_total(column: str) -> Coalesce:
    """Sum of `column` over a SKU's stock levels, as a correlated subquery.

    A subquery rather than a join + GROUP BY keeps the changelist's COUNT and the autocomplete
    search free of the aggregation; it only runs for the rows on the page.
    """
    totals = (
        StockLevel.objects.filter(sku=OuterRef("pk"))
        .order_by()
        .values("sku")
        .annotate(total=Sum(column))
        .values("total")
    )
    return Coalesce(Subquery(totals), 0)


class StockLevelInline(TenantTabularInline):
    """A SKU's stock per warehouse, read-only: counts go through the stock level page."""

    model = StockLevel
    fields = ("warehouse", "on_hand", "reserved", "free", "bin_location", "reorder_point")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True
    verbose_name_plural = "stock (edit a level to record a count)"

    def has_add_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("sku", "warehouse")


class _SupplierItemInline(TenantTabularInline):
    """Supplier items on a SKU's page or a supplier's: the same columns after the other side."""

    model = SupplierItem
    other_side: str
    extra = 0

    def get_fields(self, request, obj=None):
        return (
            self.other_side,
            "supplier_item_code",
            "cost",
            "currency",
            "lead_time_days",
            "min_order_quantity",
            "is_preferred",
        )

    def get_autocomplete_fields(self, request):
        return (self.other_side,)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("supplier", "sku")


class SupplierItemForSkuInline(_SupplierItemInline):
    other_side = "supplier"


class SupplierItemForSupplierInline(_SupplierItemInline):
    other_side = "sku"


@admin.register(Sku)
class SkuAdmin(TenantImportExportModelAdmin):
    resource_classes = [SkuResource]
    list_display = (
        "code",
        "name",
        "barcode",
        "weight_grams",
        "cost",
        "on_hand_total",
        "reserved_total",
        "free_total",
        "is_active",
    )
    list_filter = ("is_active",)
    search_fields = ("code", "name", "barcode")
    # An empty tuple (not the default False) lets tkerp.admin add "tenant" for the operator.
    list_select_related = ()
    inlines = (StockLevelInline, SupplierItemForSkuInline)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                on_hand_total=_stock_total("on_hand"),
                reserved_total=_stock_total("reserved"),
            )
            .annotate(free_total=F("on_hand_total") - F("reserved_total"))
        )

    @admin.display(description="on hand", ordering="on_hand_total")
    def on_hand_total(self, obj):
        return obj.on_hand_total

    @admin.display(description="reserved", ordering="reserved_total")
    def reserved_total(self, obj):
        return obj.reserved_total

    @admin.display(description="free", ordering="free_total")
    def free_total(self, obj):
        return obj.free_total


@admin.register(Warehouse)
class WarehouseAdmin(TenantModelAdmin):
    list_display = ("code", "name", "kind", "provider", "country", "is_active")
    list_filter = ("kind", "country", "is_active")
    search_fields = ("code", "name", "city")
    list_select_related = ("provider",)


class BelowReorderFilter(admin.SimpleListFilter):
    """Levels whose free stock has fallen to the reorder point (the model's alert rule)."""

    title = "reorder point"
    parameter_name = "reorder"

    def lookups(self, request, model_admin):
        return [
            ("below", "At or below reorder point"),
            ("above", "Above reorder point"),
            ("out", "Out of stock (nothing free)"),
        ]

    def queryset(self, request, queryset):
        # The cockpit's stock widget counts with the same conditions (inventory.cockpit).
        if self.value() == "below":
            return queryset.filter(q_below_reorder())
        if self.value() == "above":
            return queryset.exclude(q_below_reorder())
        if self.value() == "out":
            return queryset.filter(on_hand__lte=F("reserved"))
        return queryset


class PushFailingFilter(admin.SimpleListFilter):
    """Listings whose last stock push failed (retries pending): the cockpit's push widget."""

    title = "stock push"
    parameter_name = "push"

    def lookups(self, request, model_admin):
        return [("failing", "Failing")]

    def queryset(self, request, queryset):
        if self.value() == "failing":
            return queryset.filter(q_push_failing())
        return queryset


class FailedWithinFilter(admin.SimpleListFilter):
    """Failed pushes of the last hours."""

    title = "failed recently"
    parameter_name = "failed_within"
    WINDOWS = {"24h": 24, "1h": 1}

    def lookups(self, request, model_admin):
        return [("1h", "Failed in the last hour"), ("24h", "Failed in the last 24 hours")]

    def queryset(self, request, queryset):
        if self.value() in self.WINDOWS:
            hours = self.WINDOWS[self.value()]
            return queryset.filter(q_push_failed_within(now=timezone.now(), hours=hours))
        return queryset


class StockLevelForm(forms.ModelForm):
    """Edits a stock level; a changed on-hand figure is recorded as a stock count."""

    on_hand = forms.IntegerField(
        min_value=0,
        label="On hand",
        help_text=(
            "The counted units. Saving records the difference as a stock-count movement. "
            "It can't be set below the units reserved for open orders."
        ),
    )
    reference = forms.CharField(
        required=False,
        max_length=100,
        label="Count reference",
        help_text="Count sheet or reason, kept on the stock movement.",
    )

    class Meta:
        model = StockLevel
        # The admin adds sku/warehouse itself; naming foreign keys here would query their
        # choices at import time, outside any tenant scope.
        fields = ("on_hand", "bin_location", "reorder_point")

    def clean(self):
        cleaned = super().clean()
        counted = cleaned.get("on_hand")
        if counted is None:
            return cleaned
        reserved = 0
        if self.instance.pk is not None:
            # Lock the row for the rest of the admin's transaction (changeform_view is atomic)
            # so no reservation slips in between this check and the count save_model writes.
            reserved = (
                StockLevel.objects.select_for_update(no_key=True)
                .values_list("reserved", flat=True)
                .get(pk=self.instance.pk)
            )
            self.instance.reserved = reserved
        try:
            stock_count_check(counted=counted, reserved=reserved)
        except ValidationError as exc:
            self.add_error(None, exc)
        return cleaned


@admin.register(StockLevel)
class StockLevelAdmin(TenantImportExportModelAdmin):
    resource_classes = [StockLevelResource]
    form = StockLevelForm
    list_display = (
        "sku",
        "warehouse",
        "on_hand",
        "reserved",
        "free_units",
        "bin_location",
        "reorder_point",
    )
    list_filter = ("warehouse", BelowReorderFilter)
    search_fields = ("sku__code", "sku__name", "bin_location")
    list_select_related = ("sku", "warehouse")
    autocomplete_fields = ("sku",)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(free_units=F("on_hand") - F("reserved"))

    def get_fields(self, request, obj=None):
        # Explicit, because the form's Meta leaves out the foreign keys (see StockLevelForm).
        if obj is None:
            fields = ["sku", "warehouse", "on_hand", "bin_location", "reorder_point", "reference"]
        else:
            fields = [
                "sku",
                "warehouse",
                "on_hand",
                "reserved",
                "free_units",
                "bin_location",
                "reorder_point",
                "reference",
                "updated_at",
            ]
        if "tenant" not in self.get_exclude(request, obj):
            fields.insert(0, "tenant")  # the operator adding a level in the all-tenants view
        return fields

    def get_readonly_fields(self, request, obj=None):
        readonly = [*super().get_readonly_fields(request, obj), "reserved"]
        if obj is not None:
            # A level belongs to one SKU in one warehouse for life; its ledger says so.
            readonly += ["sku", "warehouse", "free_units", "updated_at"]
        return readonly

    @admin.display(description="free", ordering="free_units")
    def free_units(self, obj):
        return obj.free_units if hasattr(obj, "free_units") else obj.free

    def save_model(self, request, obj, form, change):
        counted = form.cleaned_data["on_hand"]
        if change:
            # on_hand/reserved on `obj` were read before the lock; only stock_count writes them.
            obj.save(update_fields=["bin_location", "reorder_point", "updated_at"])
        else:
            obj.on_hand = 0
            obj.reserved = 0
            super().save_model(request, obj, form, change)
        stock_count(
            sku=obj.sku,
            warehouse=obj.warehouse,
            counted=counted,
            user=request.user,
            reference=form.cleaned_data.get("reference", ""),
            note="Stock level page",
        )
        obj.refresh_from_db(fields=["on_hand", "reserved"])


@admin.register(StockMovement)
class StockMovementAdmin(TenantModelAdmin):
    """The stock ledger: read-only, whatever the role."""

    list_display = (
        "created_at",
        "sku",
        "warehouse",
        "kind",
        "on_hand_delta",
        "reserved_delta",
        "order",
        "reference",
        "created_by",
    )
    list_filter = ("kind", "warehouse")
    search_fields = ("sku__code", "reference")
    list_select_related = ("sku", "warehouse", "order__shop", "created_by")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ListingChangeList(ChangeList):
    """Computes what the rules say for the whole page at once (for the drift column)."""

    def get_results(self, request):
        super().get_results(request)
        from inventory.availability import listings_available

        available = listings_available(self.result_list)
        for listing in self.result_list:
            listing.available_now = available.get(listing.pk)


@admin.register(Listing)
class ListingAdmin(TenantImportExportModelAdmin):
    resource_classes = [ListingResource]
    list_display = (
        "sku",
        "shop",
        "platform_product_id",
        "platform_sku_id",
        "buffer_units",
        "buffer_percent",
        "max_publish",
        "is_active",
        "published_quantity",
        "published_at",
        "last_push",
        "drift",
    )
    list_filter = ("shop", "is_active", "dynamic_buffer", PushFailingFilter)
    search_fields = ("sku__code", "sku__name", "platform_product_id", "platform_sku_id")
    list_select_related = ("shop", "sku")
    autocomplete_fields = ("sku",)
    readonly_fields = ("published_quantity", "published_at", "dynamic_buffer_units")

    def get_changelist(self, request, **kwargs):
        return ListingChangeList

    def get_queryset(self, request):
        latest = InventoryPush.objects.filter(listing=OuterRef("pk")).order_by("-created_at", "-pk")
        return (
            super()
            .get_queryset(request)
            .annotate(
                last_push_at=Subquery(latest.values("created_at")[:1]),
                last_push_result=Subquery(latest.values("result")[:1]),
            )
        )

    @admin.display(description="Last push", ordering="last_push_at")
    def last_push(self, obj):
        if getattr(obj, "last_push_at", None) is None:
            return "-"
        return f"{obj.last_push_result} {timezone.localtime(obj.last_push_at):%Y-%m-%d %H:%M:%S}"

    @admin.display(description="Drift")
    def drift(self, obj):
        """What the rules say now minus what the platform was last told (0 = in sync)."""
        available = getattr(obj, "available_now", None)
        if available is None or obj.published_quantity is None:
            return "-"
        return available - obj.published_quantity


@admin.register(InventoryPush)
class InventoryPushAdmin(TenantModelAdmin):
    """Every quantity sent to a platform (and every skip and repair): read-only."""

    list_display = (
        "created_at",
        "listing",
        "shop",
        "quantity",
        "platform_quantity",
        "result",
        "latency_ms",
        "attempts",
        "error",
    )
    list_filter = ("result", FailedWithinFilter, "listing__shop")
    search_fields = ("listing__sku__code", "listing__platform_sku_id", "error")
    list_select_related = ("listing__shop", "listing__sku")
    date_hierarchy = "created_at"

    @admin.display(description="Shop", ordering="listing__shop__name")
    def shop(self, obj):
        return obj.listing.shop

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Supplier)
class SupplierAdmin(TenantImportExportModelAdmin):
    resource_classes = [SupplierResource]
    list_display = (
        "code",
        "name",
        "contact_name",
        "email",
        "country",
        "lead_time_days",
        "is_active",
    )
    list_filter = ("is_active", "country")
    search_fields = ("code", "name", "contact_name", "email")
    inlines = (SupplierItemForSupplierInline,)


@admin.register(SupplierItem)
class SupplierItemAdmin(TenantImportExportModelAdmin):
    resource_classes = [SupplierItemResource]
    list_display = (
        "supplier",
        "sku",
        "supplier_item_code",
        "cost",
        "currency",
        "lead_time_days",
        "min_order_quantity",
        "is_preferred",
    )
    list_filter = ("is_preferred",)
    search_fields = ("supplier__code", "supplier__name", "sku__code", "supplier_item_code")
    list_select_related = ("supplier", "sku")
    autocomplete_fields = ("supplier", "sku")


@admin.register(ShopWarehouse)
class ShopWarehouseAdmin(TenantModelAdmin):
    """Each shop's warehouse priority list: reservations try lower numbers first."""

    list_display = ("shop", "priority", "warehouse")
    list_filter = ("shop",)
    list_editable = ("priority",)
    ordering = ("shop", "priority", "warehouse__code")
    list_select_related = ("shop", "warehouse")
    autocomplete_fields = ("warehouse",)


@admin.register(Reservation)
class ReservationAdmin(TenantModelAdmin):
    """Stock held for order lines: read-only, it changes only through inventory.reservations."""

    list_display = ("order", "order_line", "sku", "warehouse", "quantity", "state", "updated_at")
    list_filter = ("state", "warehouse")
    search_fields = ("order__platform_order_id", "sku__code")
    list_select_related = ("order__shop", "order_line", "sku", "warehouse")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
