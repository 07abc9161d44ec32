"""The sandboxes' own state: what the remote platforms hold.

These rows are not tenant data: they stand for the platforms' databases, outside tkerp. A store
is reached only with its own credentials, exactly as a real platform would be, and nothing in
tkerp's admin or API exposes them to tenants.
"""

from django.db import models


class SandboxStore(models.Model):
    """A shop as its platform knows it, with the credentials the platform would issue."""

    platform = models.CharField(max_length=16)
    shop_key = models.CharField(
        max_length=200,
        help_text="Platform shop id / Shopify domain / Amazon seller id / eBay user.",
    )
    name = models.CharField(max_length=200, blank=True)
    region = models.CharField(max_length=8, default="US")
    app_key = models.CharField(max_length=200)
    app_secret = models.CharField(max_length=200)
    access_token = models.CharField(max_length=500)
    access_token_expires_at = models.DateTimeField(null=True, blank=True)
    refresh_token = models.CharField(max_length=500, blank=True)
    refresh_token_expires_at = models.DateTimeField(null=True, blank=True)
    shop_cipher = models.CharField(max_length=200, blank=True)
    auth_code = models.CharField(max_length=200, blank=True)
    webhook_url = models.CharField(max_length=500, blank=True)
    warehouse_id = models.CharField(max_length=100, blank=True, help_text="Default location.")
    rate_per_second = models.FloatField(default=10.0)
    rate_burst = models.PositiveIntegerField(default=20)
    fault_rate = models.FloatField(default=0.0, help_text="Share of requests that fail, 0-1.")
    fault_kinds = models.JSONField(default=list, blank=True, help_text='e.g. ["429", "500"].')
    slow_seconds = models.FloatField(default=0.0, help_text="Delay added to each response.")
    next_number = models.BigIntegerField(default=1, help_text="Id counter for new objects.")
    unknown_tracking_numbers = models.JSONField(
        default=list,
        blank=True,
        help_text="Numbers the carriers have no record of: the ship calls reject them as "
        "invalid (tests of the three-strike guard).",
    )
    package_faults = models.JSONField(
        default=dict,
        blank=True,
        help_text="What the next ship calls naming a package answer for it, in turn, each used "
        'once: {"<package id>": ["frozen", "internal"]} (one item of a batch failing).',
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["platform", "shop_key"], name="sandboxstore_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.platform}:{self.shop_key}"


class SandboxOrder(models.Model):
    """An order on the platform, stored in the platform's own order-detail shape."""

    store = models.ForeignKey(SandboxStore, on_delete=models.CASCADE, related_name="orders")
    order_id = models.CharField(max_length=100)
    status = models.CharField(max_length=40)
    created = models.DateTimeField()
    updated = models.DateTimeField()
    payload = models.JSONField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["store", "order_id"], name="sandboxorder_unique"),
        ]
        indexes = [models.Index(fields=["store", "updated", "order_id"], name="sandboxorder_upd")]

    def __str__(self) -> str:
        return f"{self.store_id}:{self.order_id}"


class SandboxProduct(models.Model):
    """A listed SKU and its available quantity at one platform location."""

    store = models.ForeignKey(SandboxStore, on_delete=models.CASCADE, related_name="products")
    product_id = models.CharField(max_length=100)
    sku_id = models.CharField(max_length=100)
    seller_sku = models.CharField(max_length=100, blank=True)
    title = models.CharField(max_length=255, blank=True)
    price = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    location_id = models.CharField(max_length=100, blank=True)
    quantity = models.IntegerField(default=0)
    version = models.PositiveIntegerField(default=0, help_text="Bumped on every quantity change.")
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["store", "sku_id", "location_id"], name="sandboxproduct_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.seller_sku or self.sku_id}@{self.location_id}"


class SandboxShipment(models.Model):
    """A package the seller told the platform about, with its tracking number."""

    store = models.ForeignKey(SandboxStore, on_delete=models.CASCADE, related_name="shipments")
    order_id = models.CharField(max_length=100)
    package_id = models.CharField(max_length=100)
    tracking_number = models.CharField(max_length=100)
    provider_id = models.CharField(max_length=100, blank=True)
    line_ids = models.JSONField(default=list, blank=True)
    payload = models.JSONField(default=dict, blank=True)
    ship_requests = models.PositiveIntegerField(
        default=1,
        help_text="Ship calls that named this package, the one that shipped it included: more "
        "than one means a client posted it twice.",
    )
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["store", "package_id"], name="sandboxshipment_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.order_id}:{self.tracking_number}"


class SandboxCancellation(models.Model):
    """A buyer's cancellation request and the seller's answer, once given."""

    store = models.ForeignKey(SandboxStore, on_delete=models.CASCADE, related_name="cancellations")
    cancel_id = models.CharField(max_length=100)
    order_id = models.CharField(max_length=100)
    status = models.CharField(max_length=60)
    payload = models.JSONField(default=dict, blank=True)
    decision = models.CharField(max_length=16, blank=True, help_text="approve / reject.")
    reject_reason = models.CharField(max_length=200, blank=True)
    answered_at = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField()
    updated = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["store", "cancel_id"], name="sandboxcancel_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.cancel_id} ({self.status})"


class SandboxWebhook(models.Model):
    """A webhook the sandbox sent, and how the receiver answered."""

    store = models.ForeignKey(SandboxStore, on_delete=models.CASCADE, related_name="webhooks")
    delivery_id = models.CharField(max_length=100)
    topic = models.CharField(max_length=60)
    body = models.TextField()
    response_status = models.PositiveIntegerField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.topic}:{self.delivery_id}"


class SandboxLabelAccount(models.Model):
    """A seller's account at the label service (EasyPost-shaped), as that service knows it:
    its API key, the carrier accounts it may buy from, its wallet, its limits, and counters that
    prove what was really bought (idempotent replays are not purchases)."""

    account_id = models.CharField(max_length=40, unique=True, help_text='"user_..."')
    name = models.CharField(max_length=200, blank=True)
    api_key = models.CharField(max_length=100, unique=True)
    carriers = models.JSONField(default=list, help_text='Carrier accounts, e.g. ["USPS", "UPS"].')
    ups_shipper_number = models.CharField(max_length=6, default="A1B2C3")
    balance = models.DecimalField(
        max_digits=12,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="Wallet funds; empty means unlimited. A purchase above it answers 402.",
    )
    rate_per_second = models.FloatField(default=20.0)
    rate_burst = models.PositiveIntegerField(default=20)
    purchase_latency_ms = models.PositiveIntegerField(
        default=0, help_text="How long each purchase takes (the carrier's label call)."
    )
    fault_rate = models.FloatField(default=0.0, help_text="Share of requests that fail, 0-1.")
    fault_kinds = models.JSONField(default=list, blank=True, help_text='e.g. ["429", "500"].')
    slow_seconds = models.FloatField(default=0.0, help_text="Delay added to each response.")
    purchases = models.PositiveIntegerField(default=0, help_text="Labels really bought.")
    refunds = models.PositiveIntegerField(default=0, help_text="Labels refunded (voided).")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.account_id


class SandboxLabelShipment(models.Model):
    """A shipment at the label service, kept in the service's own JSON shape, with the label
    documents it sold. `idempotency_key` makes a retried purchase return the first one."""

    account = models.ForeignKey(
        SandboxLabelAccount, on_delete=models.CASCADE, related_name="shipments"
    )
    shipment_id = models.CharField(max_length=40, unique=True, help_text='"shp_..."')
    idempotency_key = models.CharField(max_length=255, blank=True)
    request_hash = models.CharField(max_length=64, blank=True)
    payload = models.JSONField(default=dict)
    tracking_code = models.CharField(max_length=40, blank=True)
    label_id = models.CharField(
        max_length=40, blank=True, db_index=True, help_text='"pl_..."; names its files.'
    )
    label_pdf = models.BinaryField(null=True, blank=True)
    label_zpl = models.TextField(blank=True)
    rate = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    refund_status = models.CharField(max_length=20, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="sandboxlabelshipment_unique_key",
            ),
        ]

    def __str__(self) -> str:
        return self.shipment_id


class SandboxTracker(models.Model):
    """A tracker at the label service (EasyPost's `Tracker`): one per account and tracking
    code, made when a label is bought or when a client asks to track a code. Its history is
    not stored: `sandbox.tracking` derives it from the code, the scenario and `started_at`."""

    account = models.ForeignKey(
        SandboxLabelAccount, on_delete=models.CASCADE, related_name="trackers"
    )
    tracker_id = models.CharField(max_length=40, unique=True, help_text='"trk_..."')
    tracking_code = models.CharField(max_length=64)
    carrier = models.CharField(max_length=20)
    shipment_id = models.CharField(max_length=40, blank=True)
    started_at = models.DateTimeField(help_text="When the label was made: the history's zero.")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "tracking_code"], name="sandboxtracker_unique_code"
            ),
        ]

    def __str__(self) -> str:
        return self.tracker_id


class SandboxTrackingScenario(models.Model):
    """What happens to one parcel in the carriers' world, chosen for a test or the demo:
    delivered, never scanned, stalled, a failed delivery, returned to sender. Without a row the
    scenario follows from the tracking code (mostly delivered). `started_at`, when set, moves
    the history's zero (a test sees a whole journey without waiting for it)."""

    tracking_code = models.CharField(max_length=64, unique=True)
    scenario = models.CharField(max_length=20)
    started_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.tracking_code}: {self.scenario}"


class SandboxAffiliateOrder(models.Model):
    """The platform's affiliate record of an order a creator sold (TikTok's affiliate seller
    orders): who sold it, from which content (LIVE, VIDEO, SHOWCASE), at what commission."""

    store = models.ForeignKey(
        SandboxStore, on_delete=models.CASCADE, related_name="affiliate_orders"
    )
    order_id = models.CharField(max_length=100)
    creator_username = models.CharField(max_length=100)
    content_type = models.CharField(max_length=20, default="LIVE")
    content_id = models.CharField(max_length=100, blank=True)
    commission_rate = models.PositiveIntegerField(
        default=1000, help_text="In hundredths of a percent, as the API sends it (1000 = 10 %)."
    )
    created = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["store", "order_id"], name="sandboxaffiliate_unique"),
        ]
        indexes = [models.Index(fields=["store", "created"], name="sandboxaffiliate_created")]

    def __str__(self) -> str:
        return f"{self.order_id} by {self.creator_username}"
