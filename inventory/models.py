"""SKUs, where their stock sits, how it moves, where they are listed and who supplies them."""

from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q

from tkerp.audit import audited
from tkerp.search import trigram_index
from tkerp.tenancy import TenantOwnedModel


class Sku(TenantOwnedModel):
    """A stock-keeping unit: the thing that is counted, reserved, packed and shipped."""

    code = models.CharField(max_length=64, help_text="The seller's SKU code.")
    name = models.CharField(max_length=255)
    barcode = models.CharField(max_length=64, blank=True, help_text="GTIN/EAN/UPC.")
    weight_grams = models.PositiveIntegerField(default=0)
    length_mm = models.PositiveIntegerField(default=0)
    width_mm = models.PositiveIntegerField(default=0)
    height_mm = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=12, decimal_places=2, default=Decimal("0"))
    currency = models.CharField(max_length=3, default="USD")
    hs_code = models.CharField(max_length=16, blank=True, help_text="Customs tariff code.")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["code"]
        verbose_name = "SKU"
        constraints = [
            models.UniqueConstraint(fields=["tenant", "code"], name="sku_unique_code"),
            models.UniqueConstraint(
                fields=["tenant", "barcode"], condition=~Q(barcode=""), name="sku_unique_barcode"
            ),
        ]
        # The SKU list's search box (code, name, barcode): contains-matching an index answers.
        indexes = [trigram_index(table="sku", field=field) for field in ("code", "name", "barcode")]

    def __str__(self) -> str:
        return f"{self.code} — {self.name}"


class WarehouseKind(models.TextChoices):
    OWN = "own", "Own warehouse"
    THREE_PL = "3pl", "3PL"
    SUPPLIER = "supplier", "Drop-ship supplier"


class Warehouse(TenantOwnedModel):
    """A place stock is shipped from: the seller's own, a 3PL's, or a drop-ship supplier's."""

    code = models.CharField(max_length=32)
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=WarehouseKind.choices, default=WarehouseKind.OWN)
    provider = models.ForeignKey(
        "logistics.Provider",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="warehouses",
        help_text="The 3PL or supplier that operates it (none for the seller's own).",
    )
    address_line1 = models.CharField(max_length=255, blank=True)
    address_line2 = models.CharField(max_length=255, blank=True)
    city = models.CharField(max_length=100, blank=True)
    state = models.CharField(max_length=100, blank=True)
    postal_code = models.CharField(max_length=20, blank=True)
    country = models.CharField(max_length=2, default="US")
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["code"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "code"], name="warehouse_unique_code"),
        ]

    def __str__(self) -> str:
        return f"{self.code} — {self.name}"


@audited(
    model_name="StockLevelAudit",
    # The count and its settings; `reserved` changes with every order and is in the movements.
    fields=["sku", "warehouse", "on_hand", "reorder_point", "bin_location", "unit_cost"],
)
class StockLevel(TenantOwnedModel):
    """Stock of one SKU in one warehouse. The check constraint makes overselling impossible."""

    sku = models.ForeignKey(Sku, on_delete=models.CASCADE, related_name="stock_levels")
    warehouse = models.ForeignKey(Warehouse, on_delete=models.CASCADE, related_name="stock_levels")
    on_hand = models.IntegerField(default=0)
    reserved = models.IntegerField(default=0)
    bin_location = models.CharField(max_length=32, blank=True)
    reorder_point = models.PositiveIntegerField(
        default=0, help_text="Alert when free stock falls to this level."
    )
    unit_cost = models.DecimalField(
        max_digits=12,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="What one unit here cost (landed); blank: the SKU's cost. Profit uses it.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["sku__code", "warehouse__code"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "sku", "warehouse"], name="stocklevel_unique_sku_warehouse"
            ),
            models.CheckConstraint(
                condition=Q(reserved__gte=0) & Q(reserved__lte=F("on_hand")),
                name="stocklevel_reserved_within_on_hand",
                violation_error_message="Reserved must be between 0 and on hand.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.sku.code} @ {self.warehouse.code}"

    @property
    def free(self) -> int:
        return self.on_hand - self.reserved


class MovementKind(models.TextChoices):
    RECEIVE = "receive", "Received"
    COUNT = "count", "Stock count"
    ADJUST = "adjust", "Adjustment"
    RESERVE = "reserve", "Reserved for order"
    RELEASE = "release", "Reservation released"
    SHIP = "ship", "Shipped"
    RETURN = "return", "Returned to stock"
    TRANSFER = "transfer", "Transfer"


@audited(model_name="StockMovementAudit", exclude=["created_at"])
class StockMovement(TenantOwnedModel):
    """One change to a stock level: the ledger the stored numbers must always sum to."""

    sku = models.ForeignKey(Sku, on_delete=models.PROTECT, related_name="movements")
    warehouse = models.ForeignKey(Warehouse, on_delete=models.PROTECT, related_name="movements")
    kind = models.CharField(max_length=16, choices=MovementKind.choices)
    on_hand_delta = models.IntegerField(default=0)
    reserved_delta = models.IntegerField(default=0)
    order = models.ForeignKey(
        "orders.Order", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    reference = models.CharField(
        max_length=100, blank=True, help_text="Count sheet, receipt or shipment reference."
    )
    note = models.CharField(max_length=255, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["tenant", "sku", "warehouse"], name="movement_tenant_sku")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.sku_id}@{self.warehouse_id}"


class Listing(TenantOwnedModel):
    """A SKU offered on one shop, with the safety buffer held back from what is published."""

    shop = models.ForeignKey("shops.Shop", on_delete=models.CASCADE, related_name="listings")
    sku = models.ForeignKey(Sku, on_delete=models.CASCADE, related_name="listings")
    platform_product_id = models.CharField(max_length=100, blank=True)
    platform_sku_id = models.CharField(max_length=100, blank=True)
    buffer_units = models.PositiveIntegerField(default=0, help_text="Units held back.")
    buffer_percent = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=Decimal("0"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("100"))],
        help_text="Percent of free stock held back.",
    )
    max_publish = models.PositiveIntegerField(
        null=True, blank=True, help_text="Never publish more than this."
    )
    zero_below = models.PositiveIntegerField(
        default=0, help_text="Publish zero when the computed quantity is below this."
    )
    is_active = models.BooleanField(default=True)
    published_quantity = models.IntegerField(null=True, blank=True, editable=False)
    published_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Dynamic buffer (issue 5, inventory.availability): off by default.
    dynamic_buffer = models.BooleanField(
        default=False,
        help_text="Also hold back what the other channels sell while a push is in flight.",
    )
    dynamic_buffer_margin = models.PositiveIntegerField(
        default=0, help_text="Units added to the dynamic buffer."
    )
    dynamic_buffer_units = models.PositiveIntegerField(
        default=0, editable=False, help_text="Last computed dynamic buffer (every minute)."
    )
    # Pending push (inventory.push): due when set; requested = the first stock change not yet
    # pushed, so a push's latency runs from the change to the platform's acknowledgement.
    push_due_at = models.DateTimeField(null=True, blank=True, editable=False, db_index=True)
    push_requested_at = models.DateTimeField(null=True, blank=True, editable=False)
    push_failures = models.PositiveIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["shop", "sku"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "shop", "sku"], name="listing_unique_sku"),
            models.UniqueConstraint(
                fields=["tenant", "shop", "platform_sku_id"],
                condition=~Q(platform_sku_id=""),
                name="listing_unique_platform_sku",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.sku.code} on {self.shop.name}"


class Supplier(TenantOwnedModel):
    """Someone the seller buys stock from, or who drop-ships for them."""

    code = models.CharField(max_length=32)
    name = models.CharField(max_length=200)
    contact_name = models.CharField(max_length=200, blank=True)
    email = models.EmailField(blank=True)
    phone = models.CharField(max_length=32, blank=True)
    country = models.CharField(max_length=2, default="US")
    currency = models.CharField(max_length=3, default="USD")
    lead_time_days = models.PositiveIntegerField(default=7)
    notes = models.TextField(blank=True)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["code"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "code"], name="supplier_unique_code"),
        ]

    def __str__(self) -> str:
        return f"{self.code} — {self.name}"


class SupplierItem(TenantOwnedModel):
    """What a supplier calls one of our SKUs, what it costs and how long it takes."""

    supplier = models.ForeignKey(Supplier, on_delete=models.CASCADE, related_name="items")
    sku = models.ForeignKey(Sku, on_delete=models.CASCADE, related_name="supplier_items")
    supplier_item_code = models.CharField(max_length=64)
    cost = models.DecimalField(max_digits=12, decimal_places=2, default=Decimal("0"))
    currency = models.CharField(max_length=3, default="USD")
    lead_time_days = models.PositiveIntegerField(null=True, blank=True)
    min_order_quantity = models.PositiveIntegerField(default=1)
    is_preferred = models.BooleanField(default=False)

    class Meta:
        ordering = ["supplier", "sku"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "supplier", "sku"], name="supplieritem_unique_sku"
            ),
            models.UniqueConstraint(
                fields=["tenant", "supplier", "supplier_item_code"],
                name="supplieritem_unique_code",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.supplier.code}:{self.supplier_item_code}"

    @property
    def effective_lead_time_days(self) -> int:
        return (
            self.lead_time_days if self.lead_time_days is not None else self.supplier.lead_time_days
        )


class ReservationState(models.TextChoices):
    RESERVED = "reserved", "Reserved"
    COMMITTED = "committed", "Shipped (committed)"
    RELEASED = "released", "Released"


class Reservation(TenantOwnedModel):
    """Units of one order line held in one stock level, and where they went.

    One row per order line (unique): reserving again updates it instead of adding a second hold,
    so a re-run is a no-op. `state` is a small state machine changed only under a row lock by
    `inventory.reservations`: reserved -> committed (shipped) or released (cancelled/re-routed).
    """

    order = models.ForeignKey("orders.Order", on_delete=models.CASCADE, related_name="reservations")
    order_line = models.ForeignKey(
        "orders.OrderLine", on_delete=models.CASCADE, related_name="reservations"
    )
    stock_level = models.ForeignKey(
        StockLevel, on_delete=models.PROTECT, related_name="reservations"
    )
    sku = models.ForeignKey(Sku, on_delete=models.PROTECT, related_name="reservations")
    warehouse = models.ForeignKey(Warehouse, on_delete=models.PROTECT, related_name="reservations")
    quantity = models.PositiveIntegerField()
    state = models.CharField(
        max_length=16, choices=ReservationState.choices, default=ReservationState.RESERVED
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["order", "order_line"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "order_line"], name="reservation_unique_order_line"
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "sku", "state"], name="reservation_tenant_sku_state"),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.sku_id}@{self.warehouse_id} ({self.state})"


class ShopWarehouse(TenantOwnedModel):
    """One entry of a shop's warehouse priority list: lower `priority` is tried first.

    A shop with no entries uses every active warehouse: own, then 3PL, then drop-ship suppliers,
    each by code (see `inventory.reservations.shop_warehouses`).
    """

    shop = models.ForeignKey("shops.Shop", on_delete=models.CASCADE, related_name="warehouse_links")
    warehouse = models.ForeignKey(Warehouse, on_delete=models.CASCADE, related_name="shop_links")
    priority = models.PositiveIntegerField(default=100)

    class Meta:
        ordering = ["shop", "priority", "warehouse"]
        verbose_name = "shop warehouse"
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "shop", "warehouse"], name="shopwarehouse_unique_warehouse"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.shop_id} -> {self.warehouse_id} ({self.priority})"


class PushResult(models.TextChoices):
    OK = "ok", "Pushed"
    ERROR = "error", "Failed"
    SKIPPED = "skipped", "Skipped (platform already shows it)"
    REPAIRED = "repaired", "Repaired by reconcile"


class InventoryPush(TenantOwnedModel):
    """One quantity sent (or deliberately not sent) to a platform for one listing.

    `latency_ms` runs from the stock change that asked for the push (`requested_at`) to the
    platform's acknowledgement (`pushed_at`); reconcile repairs carry the quantity the platform
    showed before (`platform_quantity`).
    """

    listing = models.ForeignKey(Listing, on_delete=models.CASCADE, related_name="pushes")
    quantity = models.IntegerField()
    platform_quantity = models.IntegerField(
        null=True, blank=True, help_text="What the platform showed (reconcile)."
    )
    result = models.CharField(max_length=16, choices=PushResult.choices)
    error = models.CharField(max_length=500, blank=True)
    attempts = models.PositiveIntegerField(default=1)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    requested_at = models.DateTimeField(null=True, blank=True)
    pushed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        verbose_name_plural = "inventory pushes"
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["tenant", "listing", "-created_at"], name="invpush_listing"),
        ]

    def __str__(self) -> str:
        return f"{self.listing_id}: {self.quantity} ({self.result})"
