"""Tenants (seller organisations), their members, and their storefronts on each platform."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from tkerp.audit import audited
from tkerp.encryption import EncryptedTextField
from tkerp.outbound import validate_outbound_url
from tkerp.tenancy import TenantOwnedModel


class Tenant(models.Model):
    """A seller organisation: the unit of data isolation. Everything it owns carries its FK."""

    name = models.CharField(max_length=200, unique=True)
    slug = models.SlugField(max_length=60, unique=True)
    default_currency = models.CharField(max_length=3, default="USD")
    timezone = models.CharField(max_length=64, default="UTC")
    alert_email = models.EmailField(blank=True, help_text="Where alerts are emailed, if set.")
    alert_webhook_url = models.URLField(
        blank=True,
        validators=[validate_outbound_url],
        help_text="Generic outbound webhook for alerts (chat or SMS gateway): an https URL on "
        "the public internet.",
    )
    alert_webhook_secret = EncryptedTextField(
        blank=True,
        max_length=500,
        help_text="Signs the alert webhook's body (X-Tkerp-Signature); blank uses the "
        "server's default secret, if any.",
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    MANAGER = "manager", "Manager"
    OPERATOR = "operator", "Operator"
    VIEWER = "viewer", "Viewer"


@audited(model_name="MembershipAudit", exclude=["created_at"])
class Membership(TenantOwnedModel):
    """A user's role in one tenant; a user may belong to several tenants."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.OPERATOR)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["tenant", "user"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "user"], name="membership_unique_user"),
        ]

    def __str__(self) -> str:
        return f"{self.user} — {self.get_role_display()}"


# Who outranks whom: nobody may grant a role above their own (shops.invitations).
ROLE_RANK = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.MANAGER: 2, Role.OWNER: 3}


class Invitation(TenantOwnedModel):
    """An email address asked to join the tenant in a role: open until accepted, revoked or
    expired, and then never usable again.

    The emailed link carries a signed token; only the token's SHA-256 is stored, so someone who
    reads the database cannot accept. Resending replaces the token (the old link dies). Nothing
    here refers to an existing user: inviting works and reads the same whether or not the
    address has an account (see shops.invitations).
    """

    email = models.EmailField(help_text="Stored lower-case; the invitation is for this address.")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.OPERATOR)
    # Looked up before the tenant is known (the link is all there is), so indexed across
    # tenants; 256 random bits signed by us do not collide, so no unique constraint is needed.
    token_hash = models.CharField(max_length=64, db_index=True, editable=False)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        editable=False,
    )
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(editable=False, help_text="When the last link was sent.")
    expires_at = models.DateTimeField(editable=False)
    accepted_at = models.DateTimeField(null=True, blank=True, editable=False)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        editable=False,
    )
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "email"],
                condition=Q(accepted_at__isnull=True, revoked_at__isnull=True),
                name="invitation_unique_open_email",
                violation_error_message="An invitation to this address is open already: resend "
                "it from the list.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.email} ({self.get_role_display()})"


class Platform(models.TextChoices):
    TIKTOK = "tiktok", "TikTok Shop"
    SHOPIFY = "shopify", "Shopify"
    AMAZON = "amazon", "Amazon"
    EBAY = "ebay", "eBay"
    MANUAL = "manual", "Manual / CSV"


def default_ship_by_hours() -> int:
    """A new shop's ship-by hours: `TKERP_DEFAULT_SHIP_BY_HOURS` (24 unless set), read when the
    shop is made, so a deployment's policy applies without a migration."""
    return settings.TKERP_DEFAULT_SHIP_BY_HOURS


def default_presale_ship_by_hours() -> int:
    """A new shop's pre-sale ship-by hours: `TKERP_DEFAULT_PRESALE_SHIP_BY_HOURS` (72 unless
    set)."""
    return settings.TKERP_DEFAULT_PRESALE_SHIP_BY_HOURS


def default_tracking_upload_hours() -> int:
    """A new shop's tracking-upload window: `TKERP_TRACKING_UPLOAD_HOURS` (48 unless set,
    TikTok Shop's rule: a valid tracking number within 48 h of payment)."""
    return settings.TKERP_TRACKING_UPLOAD_HOURS


class Shop(TenantOwnedModel):
    """One storefront on one platform, with its shipping policy and sync settings."""

    name = models.CharField(max_length=200)
    platform = models.CharField(max_length=16, choices=Platform.choices)
    region = models.CharField(
        max_length=8, default="US", help_text="Platform market, e.g. US, GB, MY."
    )
    platform_shop_id = models.CharField(
        max_length=100, blank=True, help_text="The platform's id for this shop."
    )
    currency = models.CharField(max_length=3, default="USD")
    is_active = models.BooleanField(default=True)
    ship_by_hours = models.PositiveIntegerField(
        default=default_ship_by_hours,
        help_text="Hours from payment to ship when the platform gives no deadline.",
    )
    presale_ship_by_hours = models.PositiveIntegerField(
        default=default_presale_ship_by_hours, help_text="Ship-by hours for pre-sale orders."
    )
    tracking_upload_hours = models.PositiveIntegerField(
        default=default_tracking_upload_hours,
        help_text="Hours from payment until the platform must have a valid tracking number "
        "(the tracking_by clock).",
    )
    sync_interval_seconds = models.PositiveIntegerField(default=60)
    created_at = models.DateTimeField(auto_now_add=True)

    # Order sync state (shops.sync). Written only by conditional UPDATEs there, so two workers
    # never both run a pass and the watermark never moves backwards.
    sync_watermark = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="Newest platform update time stored; the next pass asks from here.",
    )
    sync_lease_until = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="A sync pass holds the shop until then."
    )
    sync_lease_token = models.CharField(max_length=32, blank=True, editable=False)
    sync_queued_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_sync_started_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_sync_success_at = models.DateTimeField(null=True, blank=True, editable=False)
    consecutive_sync_failures = models.PositiveIntegerField(default=0, editable=False)
    last_sync_error = models.TextField(blank=True, editable=False)
    # Tracking write-back (logistics.outbox): stopped at the platform's first "invalid tracking
    # number" (three in a row freeze the shop's shipping on the platform) until a person releases
    # it with the shop admin's "Release tracking write-back".
    tracking_paused_at = models.DateTimeField(null=True, blank=True, editable=False)
    tracking_pause_reason = models.CharField(max_length=500, blank=True, editable=False)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="shop_unique_name"),
            models.UniqueConstraint(
                fields=["tenant", "platform", "platform_shop_id"],
                condition=~Q(platform_shop_id=""),
                name="shop_unique_platform_id",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_platform_display()})"


class ApiEndpoint(models.TextChoices):
    """Where a shop's connector sends its requests. Never a URL: the connector knows the
    platform's real hosts per region, so no tenant can point a token-carrying request at a host
    of their choosing."""

    LIVE = "live", "The platform's API"
    SANDBOX = "sandbox", "tkerp's platform sandbox (demo and tests only)"


@audited(
    model_name="ShopCredentialsAudit",
    exclude=["updated_at"],
    secrets=["app_secret", "access_token", "refresh_token", "webhook_secret"],
)
class ShopCredentials(TenantOwnedModel):
    """The secrets a connector needs for one shop. Kept apart so lists and exports never show
    them; only the shop's change page edits them, and the secrets are stored encrypted
    (`tkerp.encryption`). The app key is an identifier the platforms send in clear on every
    request, so it stays readable for the owner to see which app is connected."""

    shop = models.OneToOneField(Shop, on_delete=models.CASCADE, related_name="credentials")
    api_endpoint = models.CharField(
        "API endpoint",
        max_length=16,
        choices=ApiEndpoint.choices,
        default=ApiEndpoint.LIVE,
        help_text="The platform's own hosts for the shop's region, or tkerp's local sandbox "
        "where this server enables it.",
    )
    app_key = models.CharField(max_length=200, blank=True)
    app_secret = EncryptedTextField(max_length=500, blank=True)
    access_token = EncryptedTextField(blank=True)
    access_token_expires_at = models.DateTimeField(null=True, blank=True)
    refresh_token = EncryptedTextField(blank=True)
    refresh_token_expires_at = models.DateTimeField(null=True, blank=True)
    shop_cipher = models.CharField(max_length=200, blank=True, help_text="TikTok shop cipher.")
    webhook_secret = EncryptedTextField(max_length=500, blank=True)
    extra = models.JSONField(default=dict, blank=True, help_text="Platform-specific settings.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "shop credentials"

    def __str__(self) -> str:
        return f"Credentials for {self.shop}"


class SyncRunStatus(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCESS = "success", "Succeeded"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped"


class SyncRun(TenantOwnedModel):
    """One order-sync pass over one shop: what it asked the platform for and what it stored.

    The person watching a live-stream spike looks here to see that orders are flowing; a failed
    run keeps the error. Rows are pruned after `TKERP_SYNC_RUN_RETENTION_DAYS`.
    """

    shop = models.ForeignKey(Shop, on_delete=models.CASCADE, related_name="sync_runs")
    status = models.CharField(
        max_length=16, choices=SyncRunStatus.choices, default=SyncRunStatus.RUNNING
    )
    trigger = models.CharField(max_length=16, blank=True, help_text="schedule, manual, command.")
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    pages = models.PositiveIntegerField(default=0)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    rejects = models.JSONField(
        default=list, blank=True, help_text="Orders that could not be stored, and why."
    )
    cancellations = models.PositiveIntegerField(default=0)
    watermark_from = models.DateTimeField(null=True, blank=True)
    watermark_to = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [
            models.Index(fields=["tenant", "shop", "-started_at"], name="syncrun_shop_started"),
        ]

    def __str__(self) -> str:
        return f"{self.shop_id} sync {self.started_at:%Y-%m-%d %H:%M:%S} ({self.status})"


class WebhookDelivery(TenantOwnedModel):
    """A verified webhook as received, kept so a replay is recognised and processed only once.

    The platform's delivery id is the natural key, and the body's SHA-256 a second one: a
    Shopify signature covers the body only, so a captured body re-sent under a new delivery id
    (or topic) still verifies; the same signed bytes are the same event whatever the headers
    say. The unique constraints are the final judge of "already received". The digest has its
    own column because `body` is capped (`shops.webhooks.WEBHOOK_BODY_KEPT_BYTES`); rows are
    deleted after `TKERP_WEBHOOK_RETENTION_DAYS` (bodies carry buyers' addresses).
    """

    shop = models.ForeignKey(Shop, on_delete=models.CASCADE, related_name="webhook_deliveries")
    platform = models.CharField(max_length=16, choices=Platform.choices)
    delivery_id = models.CharField(max_length=200)
    topic = models.CharField(max_length=100, blank=True)
    platform_order_ids = models.JSONField(default=list, blank=True)
    body = models.TextField(blank=True)
    body_sha256 = models.CharField(
        max_length=64, blank=True, editable=False, help_text="SHA-256 of the body as received."
    )
    received_at = models.DateTimeField()
    processed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    queued_at = models.DateTimeField(
        null=True, blank=True, help_text="When its processing task was last queued."
    )
    claimed_until = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="A worker processing it in a batch holds it until then (shops.webhooks).",
    )
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "shop", "delivery_id"], name="webhookdelivery_unique_delivery"
            ),
            models.UniqueConstraint(
                fields=["tenant", "shop", "body_sha256"],
                condition=~Q(body_sha256=""),
                name="webhookdelivery_unique_body",
            ),
        ]
        indexes = [
            models.Index(fields=["processed_at", "received_at"], name="webhookdelivery_pending"),
        ]

    def __str__(self) -> str:
        return f"{self.platform} {self.topic} {self.delivery_id}"
