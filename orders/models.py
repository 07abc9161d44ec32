"""Orders as they arrive from every channel, their lines, holds, tags and audit trail."""

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q

from tkerp.audit import audited
from tkerp.search import trigram_index
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


class SlaState(models.TextChoices):
    """Where an open order stands against one of its deadlines, ship-by (`sla_state`) or
    tracking-by (`tracking_sla_state`), as `orders.sla.sla_sweep` last marked it."""

    OK = "ok", "On time"
    DUE_SOON = "due_soon", "Due soon"
    OVERDUE = "overdue", "Overdue"


OPEN_STATUSES = (
    OrderStatus.NEW,
    OrderStatus.ON_HOLD,
    OrderStatus.READY,
    OrderStatus.ALLOCATED,
)


# What the order list's search box matches (each word, case-insensitively, anywhere in one of
# them); every field here has a trigram index, on its own table.
ORDER_SEARCH_FIELDS = (
    "platform_order_id",
    "buyer_name",
    "buyer_email",
    "recipient_name",
    "recipient_phone",
    "postal_code",
    "lines__seller_sku",
    "shipments__tracking_number",
)


@audited(
    model_name="OrderAudit",
    # What a person or a rule decides; not the platform's payload, timestamps or SLA states
    # that every sync and sweep rewrites.
    fields=[
        "shop",
        "platform_order_id",
        "status",
        "seller_note",
        "recipient_name",
        "recipient_phone",
        "address_line1",
        "address_line2",
        "city",
        "state",
        "postal_code",
        "country",
        "ship_by",
    ],
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
    # Review (orders/review.py): when the recipient fields were last normalised, and a hash of
    # the address and lines review last saw, so it runs again only when they change.
    address_normalised_at = models.DateTimeField(null=True, blank=True)
    address_key = models.CharField(
        max_length=64, blank=True, help_text="Hash of the normalised destination."
    )
    review_fingerprint = models.CharField(max_length=64, blank=True)
    reviewed_at = models.DateTimeField(null=True, blank=True)

    currency = models.CharField(max_length=3, default="USD")
    subtotal = models.DecimalField(**MONEY)
    shipping_fee = models.DecimalField(**MONEY)
    seller_discount = models.DecimalField(**MONEY)
    platform_discount = models.DecimalField(**MONEY)
    tax = models.DecimalField(**MONEY)
    total = models.DecimalField(**MONEY)
    creator_commission = models.DecimalField(**MONEY)
    # The creator (affiliate) the platform credits the sale to, and the content that sold it
    # (TikTok's affiliate orders: creator_username, content_type LIVE/VIDEO/SHOWCASE,
    # content_id). Blank: the platform named nobody. Live sessions attribute orders by them.
    creator_username = models.CharField(max_length=100, blank=True)
    creator_content_type = models.CharField(max_length=20, blank=True)
    creator_content_id = models.CharField(max_length=100, blank=True)

    is_presale = models.BooleanField(default=False)
    is_cod = models.BooleanField(default=False)
    placed_at = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    platform_updated_at = models.DateTimeField(null=True, blank=True)
    ship_by = models.DateTimeField(null=True, blank=True, db_index=True)
    tracking_by = models.DateTimeField(null=True, blank=True)
    # When the platform accepted a valid tracking number for every parcel of the order: the
    # tracking clock (tracking_by) stops here. Set by the tracking outbox (logistics.outbox).
    tracking_uploaded_at = models.DateTimeField(null=True, blank=True)
    cancel_answer_by = models.DateTimeField(null=True, blank=True)
    sla_state = models.CharField(
        max_length=10, choices=SlaState.choices, default=SlaState.OK, editable=False
    )
    # Where the order stands against tracking_by (orders.sla.TRACKING_CLOCK); OK once uploaded.
    tracking_sla_state = models.CharField(
        max_length=10, choices=SlaState.choices, default=SlaState.OK, editable=False
    )
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
            models.Index(fields=["tenant", "address_key"], name="order_tenant_address_key"),
            models.Index(fields=["tenant", "sla_state", "ship_by"], name="order_tenant_sla_shipby"),
            models.Index(
                fields=["tenant", "tracking_sla_state", "tracking_by"],
                name="order_tenant_sla_trackingby",
            ),
            # Live sessions and profit: a shop's orders by time window.
            models.Index(fields=["tenant", "shop", "placed_at"], name="order_tenant_shop_placed"),
            # The cockpit's charts (orders.cockpit): orders placed and shipped per time bin.
            models.Index(fields=["tenant", "placed_at"], name="order_tenant_placed"),
            models.Index(fields=["tenant", "shipped_at"], name="order_tenant_shipped"),
            # The order list's search box (tkerp.search): contains-matching that an index answers.
            *(
                trigram_index(table="order", field=field)
                for field in ORDER_SEARCH_FIELDS
                if "__" not in field
            ),
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
        indexes = [trigram_index(table="orderline", field="seller_sku")]  # order search

    def __str__(self) -> str:
        return f"{self.quantity} x {self.seller_sku or self.product_name}"


@audited(model_name="OrderHoldAudit", exclude=["created_at"])
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


# --- SLA figures, cancellation and return inboxes (issue 4) -----------------------------------


class TenantOrderPolicy(TenantOwnedModel):
    """A tenant's order-handling policy: SLA warning window and cancellation handling.

    At most one row per tenant; without one the settings' defaults apply (`order_policy_for`).
    """

    due_soon_hours = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Warn this many hours before ship-by (blank: TKERP_SLA_DUE_SOON_HOURS).",
    )
    cancel_auto_approve = models.BooleanField(
        default=True,
        help_text="Approve buyers' cancellation requests by themselves while nothing was picked, "
        "labelled or sent to a provider.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "order policies"
        constraints = [
            models.UniqueConstraint(fields=["tenant"], name="tenantorderpolicy_unique_tenant"),
        ]

    def __str__(self) -> str:
        return "Order policy"


class ShopSlaFigures(TenantOwnedModel):
    """A shop's shipping performance as the SLA sweep last computed it (one row per shop).

    Late rate: orders due in the window (ship-by in the last N days) that shipped after ship-by
    or are still unshipped past it, over all orders due in the window. Hours to ship: from payment
    to shipment, over orders shipped in the last 30 days.
    """

    shop = models.ForeignKey("shops.Shop", on_delete=models.CASCADE, related_name="sla_figures")
    computed_at = models.DateTimeField()
    due_7d = models.PositiveIntegerField(default=0)
    late_7d = models.PositiveIntegerField(default=0)
    late_rate_7d = models.FloatField(null=True, blank=True, help_text="0-1; blank: nothing due.")
    due_30d = models.PositiveIntegerField(default=0)
    late_30d = models.PositiveIntegerField(default=0)
    late_rate_30d = models.FloatField(null=True, blank=True, help_text="0-1; blank: nothing due.")
    shipped_30d = models.PositiveIntegerField(default=0)
    median_hours_to_ship = models.FloatField(null=True, blank=True)
    p95_hours_to_ship = models.FloatField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "shop SLA figures"
        ordering = ["shop"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "shop"], name="shopslafigures_unique_shop"),
        ]

    def __str__(self) -> str:
        return f"SLA figures of shop {self.shop_id}"


class CancellationStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    WITHDRAWN = "withdrawn", "Withdrawn by the buyer"
    AUTO_CANCELLED = "auto_cancelled", "Cancelled by the platform"


class CancellationRequest(TenantOwnedModel):
    """A buyer's request to cancel an order, waiting for (or holding) the seller's answer.

    Keyed by the platform's cancel id; platforms without one (Shopify, Amazon) use the order id.
    `order` stays empty until the order itself is stored. `error` keeps the platform's refusal of
    the last answer tried (the request then stays pending).
    """

    shop = models.ForeignKey("shops.Shop", on_delete=models.CASCADE, related_name="+")
    order = models.ForeignKey(
        Order, on_delete=models.CASCADE, null=True, blank=True, related_name="cancel_requests"
    )
    platform_order_id = models.CharField(max_length=100)
    platform_cancel_id = models.CharField(max_length=100)
    status = models.CharField(
        max_length=16, choices=CancellationStatus.choices, default=CancellationStatus.PENDING
    )
    platform_status = models.CharField(max_length=60, blank=True)
    reason = models.CharField(max_length=500, blank=True)
    requested_at = models.DateTimeField(null=True, blank=True)
    answer_by = models.DateTimeField(null=True, blank=True)
    answered_at = models.DateTimeField(null=True, blank=True)
    answered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    decision = models.CharField(max_length=8, blank=True, help_text="approve / reject.")
    reject_reason = models.CharField(max_length=100, blank=True)
    comment = models.CharField(max_length=500, blank=True)
    auto_approved = models.BooleanField(default=False)
    error = models.TextField(blank=True, help_text="The platform's refusal of the last answer.")
    raw = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["answer_by", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "shop", "platform_cancel_id"], name="cancelrequest_unique_id"
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "status", "answer_by"], name="cancelrequest_inbox"),
        ]

    def __str__(self) -> str:
        return f"Cancellation {self.platform_cancel_id} of order {self.platform_order_id}"


class ReturnRequest(TenantOwnedModel):
    """A buyer's return or refund request as the platform reports it, and whether we received
    the goods back (`received_at`: restocked once, into `received_warehouse`)."""

    shop = models.ForeignKey("shops.Shop", on_delete=models.CASCADE, related_name="+")
    order = models.ForeignKey(
        Order, on_delete=models.CASCADE, null=True, blank=True, related_name="return_requests"
    )
    platform_order_id = models.CharField(max_length=100)
    platform_return_id = models.CharField(max_length=100)
    return_type = models.CharField(max_length=40, blank=True, help_text="e.g. RETURN_AND_REFUND.")
    status = models.CharField(max_length=60, blank=True, help_text="The platform's status.")
    reason = models.CharField(max_length=500, blank=True)
    lines = models.JSONField(
        default=list, blank=True, help_text='[{"seller_sku": ..., "quantity": ...}, ...]'
    )
    requested_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(null=True, blank=True, help_text="Platform update time.")
    received_at = models.DateTimeField(null=True, blank=True)
    received_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    received_warehouse = models.ForeignKey(
        "inventory.Warehouse", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    raw = models.JSONField(default=dict, blank=True)
    synced_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-requested_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "shop", "platform_return_id"], name="returnrequest_unique_id"
            ),
        ]

    def __str__(self) -> str:
        return f"Return {self.platform_return_id} of order {self.platform_order_id}"


@audited(model_name="ReviewSettingsAudit", exclude=["updated_at"])
class ReviewSettings(TenantOwnedModel):
    """A tenant's review rules (orders/review.py): which checks hold orders, and their limits.

    One row per tenant, created with the defaults the first time review needs it.
    """

    check_po_box = models.BooleanField("hold PO boxes", default=True)
    check_military = models.BooleanField("hold military addresses", default=True)
    check_zip_state = models.BooleanField("hold ZIP/state mismatches", default=True)
    check_incomplete = models.BooleanField("hold incomplete addresses", default=True)
    check_too_long = models.BooleanField("hold over-long address lines", default=True)
    check_phone = models.BooleanField("hold invalid phone numbers", default=True)
    hold_buyer_notes = models.BooleanField("hold orders with a buyer note", default=True)
    check_high_value = models.BooleanField("hold high-value orders", default=True)
    high_value_threshold = models.DecimalField(
        max_digits=12, decimal_places=2, default=Decimal("500")
    )
    high_value_currency = models.CharField(
        max_length=3, default="USD", help_text="Orders in other currencies are not compared."
    )
    address_max_length = models.PositiveSmallIntegerField(
        default=120, help_text="The longest address line carriers and platforms accept."
    )
    check_duplicate_address = models.BooleanField("hold duplicate addresses", default=True)
    duplicate_window_hours = models.PositiveSmallIntegerField(default=24)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        verbose_name = "review settings"
        verbose_name_plural = "review settings"
        constraints = [
            models.UniqueConstraint(fields=["tenant"], name="reviewsettings_unique_tenant"),
            models.CheckConstraint(
                condition=Q(address_max_length__gte=10), name="reviewsettings_max_length_min"
            ),
        ]

    def __str__(self) -> str:
        return "Review settings"
