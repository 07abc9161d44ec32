"""Live sessions (a creator's stream on one shop), their stock pools, and what each shop pays
its platform: the rows `live.sessions`, `live.pools` and `live.profit` work from."""

from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q

from tkerp.tenancy import TenantOwnedModel

PERCENT = {
    "max_digits": 6,
    "decimal_places": 3,
    "null": True,
    "blank": True,
    "validators": [MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("100"))],
}
MONEY = {"max_digits": 12, "decimal_places": 2, "null": True, "blank": True}


class LiveSession(TenantOwnedModel):
    """A creator's live stream selling on one shop between `starts_at` and `ends_at`.

    Orders are attributed to it by time window and by the creator the platform names on the
    order (`live.sessions.session_orders`): an order of the shop placed in the window belongs to
    the session unless the platform credits it to another creator. With a product list, only
    orders containing one of those SKUs count.
    """

    shop = models.ForeignKey("shops.Shop", on_delete=models.PROTECT, related_name="live_sessions")
    title = models.CharField(max_length=200)
    creator_username = models.CharField(
        max_length=100,
        blank=True,
        help_text="The creator (affiliate) as the platform names them, e.g. their TikTok handle.",
    )
    creator_id = models.CharField(
        max_length=100, blank=True, help_text="The platform's id of the creator, if known."
    )
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    products = models.ManyToManyField(
        "inventory.Sku",
        through="live.LiveSessionProduct",
        related_name="live_sessions",
        blank=True,
        help_text="Only orders with one of these SKUs count (none: every order of the window).",
    )
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-starts_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_at__gt=F("starts_at")),
                name="livesession_ends_after_start",
                violation_error_message="A live session must end after it starts.",
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "shop", "starts_at"], name="livesession_shop_start"),
        ]

    def __str__(self) -> str:
        return self.title


class LiveSessionProduct(TenantOwnedModel):
    """One SKU of a live session's product list (the M2M through-row, tenant-owned)."""

    session = models.ForeignKey(LiveSession, on_delete=models.CASCADE, related_name="+")
    sku = models.ForeignKey("inventory.Sku", on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "session", "sku"], name="livesessionproduct_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.session_id}:{self.sku_id}"


class LivePool(TenantOwnedModel):
    """Units of a SKU ring-fenced for a live session's shop during the session's window.

    While the window is open the other shops publish and reserve only the stock outside the
    pool's remaining units (`quantity - drawn`); the session's shop draws from it first. Once
    the window closes the remainder is everyone's again (`live.pools`). `opened_at` and
    `closed_at` record when the window's start and end were pushed to every channel.
    """

    session = models.ForeignKey(LiveSession, on_delete=models.CASCADE, related_name="pools")
    sku = models.ForeignKey("inventory.Sku", on_delete=models.PROTECT, related_name="live_pools")
    quantity = models.PositiveIntegerField(help_text="Units kept for the session's shop.")
    drawn = models.PositiveIntegerField(
        default=0, editable=False, help_text="Units the session's shop has taken from the pool."
    )
    opened_at = models.DateTimeField(null=True, blank=True, editable=False)
    closed_at = models.DateTimeField(null=True, blank=True, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["session", "sku"]
        verbose_name = "live stock pool"
        constraints = [
            models.UniqueConstraint(fields=["tenant", "session", "sku"], name="livepool_unique"),
            models.CheckConstraint(
                condition=Q(drawn__lte=F("quantity")),
                name="livepool_drawn_within_quantity",
                violation_error_message="A pool cannot give more than it holds.",
            ),
        ]
        indexes = [models.Index(fields=["tenant", "sku"], name="livepool_tenant_sku")]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.sku_id} for {self.session_id}"

    @property
    def remaining(self) -> int:
        return max(0, self.quantity - self.drawn)

    def clean(self) -> None:
        super().clean()
        if self.quantity is not None and self.quantity < self.drawn:
            from django.core.exceptions import ValidationError

            raise ValidationError(
                {
                    "quantity": f"The session's shop already took {self.drawn} units from this "
                    f"pool; it cannot keep fewer."
                }
            )


class LivePoolDraw(TenantOwnedModel):
    """Units one order line took from a pool (the audit of `LivePool.drawn`)."""

    pool = models.ForeignKey(LivePool, on_delete=models.CASCADE, related_name="draws")
    order_line = models.ForeignKey("orders.OrderLine", on_delete=models.CASCADE, related_name="+")
    quantity = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pool", "id"]

    def __str__(self) -> str:
        return f"{self.quantity} from pool {self.pool_id}"


class ShopFees(TenantOwnedModel):
    """What a shop pays its platform per order, overriding the platform's defaults
    (`live.fees.PLATFORM_FEES`); a blank field keeps the default. Packaging is per parcel."""

    shop = models.ForeignKey("shops.Shop", on_delete=models.CASCADE, related_name="+")
    referral_percent = models.DecimalField(
        "referral / commission %",
        help_text="Percent of the sale the platform keeps (TikTok referral fee, Amazon referral "
        "fee, eBay final value fee).",
        **PERCENT,
    )
    transaction_percent = models.DecimalField(
        "transaction %", help_text="Payment processing percent (Shopify Payments...).", **PERCENT
    )
    fixed_per_order = models.DecimalField(
        help_text="Fixed fee per order (Shopify's $0.30, eBay's $0.40...).", **MONEY
    )
    refund_admin_percent = models.DecimalField(
        "refund administration %",
        help_text="Share of the referral fee the platform keeps on refunded sales.",
        **PERCENT,
    )
    packaging_per_parcel = models.DecimalField(
        help_text="Box, filler and tape per parcel.", **MONEY
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "shop fees"
        verbose_name_plural = "shop fees"
        constraints = [
            models.UniqueConstraint(fields=["tenant", "shop"], name="shopfees_unique_shop"),
        ]

    def __str__(self) -> str:
        return f"Fees of shop {self.shop_id}"
