"""Orders as they arrive from every channel, their lines, holds, tags and audit trail."""

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q

from tkerp.tenancy import TenantOwnedModel

MONEY = {"max_digits": 12, "decimal_places": 2, "default": Decimal("0")}


class OrderStatus(models.TextChoices):
    NEW = "new", "New"
    ON_HOLD = "on_hold", "On hold"
    READY = "ready", "Ready"
    ALLOCATED = "allocated", "Allocated"
    SHIPPED = "shipped", "Shipped"
    IN_TRANSIT = "in_transit", "In transit"
    DELIVERED = "delivered", "Delivered"
    CANCELLED = "cancelled", "Cancelled"


OPEN_STATUSES = (
    OrderStatus.NEW,
    OrderStatus.ON_HOLD,
    OrderStatus.READY,
    OrderStatus.ALLOCATED,
)


class Order(TenantOwnedModel):
    """A buyer's order on one shop, keyed by the platform's id, with its SLA clocks.

    The recipient fields hold the normalised address; `original_address` keeps what the platform
    sent, untouched.
    """

    shop = models.ForeignKey("shops.Shop", on_delete=models.PROTECT, related_name="orders")
    platform_order_id = models.CharField(max_length=100)
    status = models.CharField(
        max_length=16, choices=OrderStatus.choices, default=OrderStatus.NEW, db_index=True
    )
    platform_status = models.CharField(max_length=40, blank=True)

    buyer_name = models.CharField(max_length=200, blank=True)
    buyer_email = models.CharField(max_length=254, blank=True)
    buyer_user_id = models.CharField(max_length=100, blank=True)
    buyer_note = models.TextField(blank=True)
    seller_note = models.TextField(blank=True)

    recipient_name = models.CharField(max_length=200, blank=True)
    recipient_phone = models.CharField(max_length=40, blank=True)
    address_line1 = models.CharField(max_length=255, blank=True)
    address_line2 = models.CharField(max_length=255, blank=True)
    city = models.CharField(max_length=100, blank=True)
    state = models.CharField(max_length=100, blank=True)
    postal_code = models.CharField(max_length=20, blank=True)
    country = models.CharField(max_length=2, default="US")
    original_address = models.JSONField(default=dict, blank=True)
    address_masked = models.BooleanField(
        default=False, help_text="The platform masks the recipient (platform-shipped orders)."
    )

    currency = models.CharField(max_length=3, default="USD")
    subtotal = models.DecimalField(**MONEY)
    shipping_fee = models.DecimalField(**MONEY)
    seller_discount = models.DecimalField(**MONEY)
    platform_discount = models.DecimalField(**MONEY)
    tax = models.DecimalField(**MONEY)
    total = models.DecimalField(**MONEY)
    creator_commission = models.DecimalField(**MONEY)

    is_presale = models.BooleanField(default=False)
    is_cod = models.BooleanField(default=False)
    placed_at = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    platform_updated_at = models.DateTimeField(null=True, blank=True)
    ship_by = models.DateTimeField(null=True, blank=True, db_index=True)
    tracking_by = models.DateTimeField(null=True, blank=True)
    cancel_answer_by = models.DateTimeField(null=True, blank=True)
    shipped_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)

    tags = models.ManyToManyField("orders.Tag", through="orders.OrderTag", related_name="orders")
    raw = models.JSONField(default=dict, blank=True, help_text="The platform payload, as sent.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-placed_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "shop", "platform_order_id"], name="order_unique_platform_id"
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "status", "ship_by"], name="order_tenant_status_shipby"),
        ]

    def __str__(self) -> str:
        return f"{self.shop.name} #{self.platform_order_id}"

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


class OrderLine(TenantOwnedModel):
    """One SKU on an order. TikTok line items (one unit each) are grouped into one line per SKU;
    `platform_line_ids` keeps every platform id the line stands for."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    platform_line_id = models.CharField(max_length=100)
    platform_line_ids = models.JSONField(default=list, blank=True)
    sku = models.ForeignKey(
        "inventory.Sku", on_delete=models.PROTECT, null=True, blank=True, related_name="order_lines"
    )
    seller_sku = models.CharField(max_length=64, blank=True, help_text="SKU code as sent.")
    product_name = models.CharField(max_length=255, blank=True)
    quantity = models.PositiveIntegerField(default=1)
    unit_price = models.DecimalField(**MONEY)
    discount = models.DecimalField(**MONEY)
    tax = models.DecimalField(**MONEY)
    total = models.DecimalField(**MONEY)
    is_cancelled = models.BooleanField(default=False)

    class Meta:
        ordering = ["order", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "order", "platform_line_id"], name="orderline_unique_platform_id"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.seller_sku or self.product_name}"


class OrderHold(TenantOwnedModel):
    """Why an order waits for a person: a stable reason code and a readable message.

    An active hold has no `released_at`; an order is on hold while it has any.
    """

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="holds")
    code = models.CharField(max_length=40, db_index=True)
    message = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    released_at = models.DateTimeField(null=True, blank=True)
    released_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["order", "created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "order", "code"],
                condition=Q(released_at__isnull=True),
                name="orderhold_unique_active_code",
            ),
        ]

    def __str__(self) -> str:
        return self.code


class Tag(TenantOwnedModel):
    """A seller's label for orders (e.g. `vip`, `gift`, `live-0412`)."""

    name = models.CharField(max_length=50)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="tag_unique_name")]

    def __str__(self) -> str:
        return self.name


class OrderTag(TenantOwnedModel):
    """An order carrying a tag (the M2M through-row, tenant-owned like every child row)."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="order_tags")
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="order_tags")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "order", "tag"], name="ordertag_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.order_id}:{self.tag_id}"


class EventSource(models.TextChoices):
    USER = "user", "User"
    SYSTEM = "system", "System"
    PLATFORM = "platform", "Platform"
    PROVIDER = "provider", "Provider"


class OrderEvent(TenantOwnedModel):
    """The order's audit trail: who or what did what, when. Never edited."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=40)
    message = models.CharField(max_length=500, blank=True)
    data = models.JSONField(default=dict, blank=True)
    source = models.CharField(
        max_length=16, choices=EventSource.choices, default=EventSource.SYSTEM
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.kind} @ {self.created_at:%Y-%m-%d %H:%M}"
