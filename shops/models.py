"""Tenants (seller organisations), their members, and their storefronts on each platform."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from tkerp.tenancy import TenantOwnedModel


class Tenant(models.Model):
    """A seller organisation: the unit of data isolation. Everything it owns carries its FK."""

    name = models.CharField(max_length=200, unique=True)
    slug = models.SlugField(max_length=60, unique=True)
    default_currency = models.CharField(max_length=3, default="USD")
    timezone = models.CharField(max_length=64, default="UTC")
    alert_email = models.EmailField(blank=True, help_text="Where alerts are emailed, if set.")
    alert_webhook_url = models.URLField(
        blank=True, help_text="Generic outbound webhook for alerts (chat or SMS gateway)."
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


class Platform(models.TextChoices):
    TIKTOK = "tiktok", "TikTok Shop"
    SHOPIFY = "shopify", "Shopify"
    AMAZON = "amazon", "Amazon"
    EBAY = "ebay", "eBay"
    MANUAL = "manual", "Manual / CSV"


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
        default=24, help_text="Hours from payment to ship when the platform gives no deadline."
    )
    presale_ship_by_hours = models.PositiveIntegerField(
        default=72, help_text="Ship-by hours for pre-sale orders."
    )
    sync_interval_seconds = models.PositiveIntegerField(default=60)
    created_at = models.DateTimeField(auto_now_add=True)

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


class ShopCredentials(TenantOwnedModel):
    """The secrets a connector needs for one shop. Kept apart so lists and exports never show
    them; only the shop's change page edits them."""

    shop = models.OneToOneField(Shop, on_delete=models.CASCADE, related_name="credentials")
    api_base_url = models.URLField(
        blank=True, help_text="Override the platform host (the sandbox in the demo)."
    )
    app_key = models.CharField(max_length=200, blank=True)
    app_secret = models.CharField(max_length=500, blank=True)
    access_token = models.TextField(blank=True)
    access_token_expires_at = models.DateTimeField(null=True, blank=True)
    refresh_token = models.TextField(blank=True)
    refresh_token_expires_at = models.DateTimeField(null=True, blank=True)
    shop_cipher = models.CharField(max_length=200, blank=True, help_text="TikTok shop cipher.")
    webhook_secret = models.CharField(max_length=500, blank=True)
    extra = models.JSONField(default=dict, blank=True, help_text="Platform-specific settings.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "shop credentials"

    def __str__(self) -> str:
        return f"Credentials for {self.shop}"
