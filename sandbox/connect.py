"""Point a shop at its platform's sandbox: a store there, matching credentials here."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from inventory.models import Listing
from sandbox.base import new_secret, sandbox_for
from sandbox.models import SandboxProduct, SandboxStore
from shops.models import ApiEndpoint, Shop, ShopCredentials

WEBHOOK_BASE_URL = "http://sandbox.tkerp.internal/webhooks"


def sandbox_connect(*, shop: Shop, rate_per_second: float | None = None) -> SandboxStore:
    """Create (or reuse) the sandbox store of `shop`, store its credentials on the shop, and list
    the shop's listings there. Safe to run again: nothing is duplicated, secrets are kept."""
    sandbox = sandbox_for(shop.platform)
    now = timezone.now()
    with transaction.atomic():
        if not shop.platform_shop_id:
            shop.platform_shop_id = sandbox.new_shop_key(shop=shop)
            shop.save(update_fields=["platform_shop_id"])
        store, _ = SandboxStore.objects.get_or_create(
            platform=shop.platform,
            shop_key=shop.platform_shop_id,
            defaults={
                "name": shop.name,
                "region": shop.region,
                "app_key": new_secret()[:16],
                "app_secret": new_secret(),
                "access_token": new_secret("act."),
                "access_token_expires_at": now + timedelta(days=7),
                "refresh_token": new_secret("rft."),
                "refresh_token_expires_at": now + timedelta(days=365),
                "shop_cipher": new_secret("ROW_")[:36],
                "webhook_url": f"{WEBHOOK_BASE_URL}/{shop.platform}/",
                "warehouse_id": str(7068000000000000000 + shop.pk),
                **sandbox.store_defaults(),
            },
        )
        if rate_per_second is not None:
            store.rate_per_second = rate_per_second
            store.save(update_fields=["rate_per_second"])
        ShopCredentials._base_manager.update_or_create(
            shop=shop,
            defaults={
                "tenant_id": shop.tenant_id,
                "api_endpoint": ApiEndpoint.SANDBOX,
                "app_key": store.app_key,
                "app_secret": store.app_secret,
                "access_token": store.access_token,
                "access_token_expires_at": store.access_token_expires_at,
                "refresh_token": store.refresh_token,
                "refresh_token_expires_at": store.refresh_token_expires_at,
                "shop_cipher": store.shop_cipher,
                "webhook_secret": store.app_secret,
                "extra": {"location_id": store.warehouse_id, "shop_key": store.shop_key},
            },
        )
        listings = Listing._base_manager.filter(shop=shop).select_related("sku")
        products = []
        for number, listing in enumerate(listings, start=1):
            if not listing.platform_sku_id:
                listing.platform_product_id = listing.platform_product_id or str(
                    1729000000000000000 + listing.pk
                )
                listing.platform_sku_id = sandbox.listing_sku_id(listing=listing)
                listing.save(update_fields=["platform_product_id", "platform_sku_id"])
            products.append(
                SandboxProduct(
                    store=store,
                    sku_id=listing.platform_sku_id,
                    location_id=store.warehouse_id,
                    product_id=listing.platform_product_id or listing.platform_sku_id,
                    seller_sku=listing.sku.code,
                    title=listing.sku.name,
                    price=(listing.sku.cost * 3).quantize(Decimal("0.01"))
                    if listing.sku.cost
                    else Decimal(f"{9 + number % 20}.99"),
                )
            )
        # A product listed already keeps what the platform holds for it (its quantity...).
        SandboxProduct.objects.bulk_create(products, ignore_conflicts=True)
    return store
