"""Connectors: one module per platform behind one interface (`shops.platforms.base`)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import httpx
from django.utils.module_loading import import_string

from shops.platforms.base import Connector
from shops.platforms.http import PlatformHttpClient, RateLimit

if TYPE_CHECKING:
    from shops.models import Shop

CONNECTORS = {
    "tiktok": "shops.platforms.tiktok.TikTokConnector",
    "shopify": "shops.platforms.shopify.ShopifyConnector",
    "amazon": "shops.platforms.amazon.AmazonConnector",
    "ebay": "shops.platforms.ebay.EbayConnector",
}


@functools.lru_cache(maxsize=256)
def platform_status_partly_shipped(platform: str, platform_status: str) -> bool:
    """Whether `platform`'s status `platform_status` says the order shipped in part (see
    `Connector.partly_shipped`); False for a platform without a connector."""
    try:
        return connector_class(platform).partly_shipped(platform_status)
    except ValueError:
        return False


def connector_class(platform: str) -> type[Connector]:
    try:
        return import_string(CONNECTORS[platform])
    except KeyError:
        raise ValueError(f"no connector for platform {platform!r}") from None


def connector_for(
    shop: Shop, *, transport: httpx.BaseTransport | None = None, **http_options
) -> Connector:
    """The connector for `shop`, with its credentials and its rate-limited HTTP client."""
    from shops.models import ShopCredentials

    credentials = ShopCredentials._base_manager.get(shop=shop)
    cls = connector_class(shop.platform)
    override = (credentials.extra or {}).get("rate_limit")
    rate_limit = (
        RateLimit(per_second=float(override["per_second"]), burst=int(override["burst"]))
        if override
        else cls.rate_limit
    )
    http = PlatformHttpClient(
        platform=shop.platform,
        shop_key=str(shop.pk),
        base_url=cls.api_base_url(shop=shop, credentials=credentials),
        rate_limit=rate_limit,
        transport=transport,
        **http_options,
    )
    return cls(shop=shop, credentials=credentials, http=http)
