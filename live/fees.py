"""What each platform keeps of a sale, by default, and a shop's own figures (`ShopFees`).

The defaults are the published standard rates for US sellers when this was written; every one
can be overridden per shop in *Live sessions and profit > Shop fees* (category rates, promotional
plans and other regions differ):

- TikTok Shop: referral 6 % of (customer payment + platform discount - tax), no separate
  transaction fee, and a refund administration fee of 20 % of the referral fee on refunds.
- Shopify: no referral; Shopify Payments 2.9 % + $0.30 per order (Basic plan, online).
- Amazon: referral 15 % (most categories); refund administration 20 % of the referral fee.
- eBay: final value fee 13.6 % (most categories) + $0.40 per order.
- Manual / CSV shops: nothing.

Packaging defaults to `TKERP_PACKAGING_PER_PARCEL` (0.00) per parcel.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings

from live.models import ShopFees


@dataclass(frozen=True, slots=True)
class FeeRates:
    """A shop's fee figures: percents as numbers of percent (6 means 6 %), money per order."""

    referral_percent: Decimal = Decimal("0")
    transaction_percent: Decimal = Decimal("0")
    fixed_per_order: Decimal = Decimal("0")
    refund_admin_percent: Decimal = Decimal("0")
    packaging_per_parcel: Decimal = Decimal("0")


PLATFORM_FEES: dict[str, FeeRates] = {
    "tiktok": FeeRates(referral_percent=Decimal("6"), refund_admin_percent=Decimal("20")),
    "shopify": FeeRates(transaction_percent=Decimal("2.9"), fixed_per_order=Decimal("0.30")),
    "amazon": FeeRates(referral_percent=Decimal("15"), refund_admin_percent=Decimal("20")),
    "ebay": FeeRates(referral_percent=Decimal("13.6"), fixed_per_order=Decimal("0.40")),
}

FEE_FIELDS = (
    "referral_percent",
    "transaction_percent",
    "fixed_per_order",
    "refund_admin_percent",
    "packaging_per_parcel",
)


def default_packaging_per_parcel() -> Decimal:
    value = getattr(settings, "TKERP_PACKAGING_PER_PARCEL", None)
    if value is None:
        value = os.environ.get("TKERP_PACKAGING_PER_PARCEL", "0")
    return Decimal(str(value))


def platform_fee_defaults(platform: str) -> FeeRates:
    """The platform's default rates (zero for a manual/CSV shop), with the default packaging."""
    base = PLATFORM_FEES.get(platform, FeeRates())
    return FeeRates(
        referral_percent=base.referral_percent,
        transaction_percent=base.transaction_percent,
        fixed_per_order=base.fixed_per_order,
        refund_admin_percent=base.refund_admin_percent,
        packaging_per_parcel=default_packaging_per_parcel(),
    )


def shops_fee_rates(*, tenant_id: int, shops: dict[int, str]) -> dict[int, FeeRates]:
    """shop id -> its rates: the shop's `ShopFees` where a field is set, else the platform's
    default. `shops` maps shop id -> platform."""
    overrides = {
        row.shop_id: row
        for row in ShopFees._base_manager.filter(tenant_id=tenant_id, shop_id__in=list(shops))
    }
    rates: dict[int, FeeRates] = {}
    for shop_id, platform in shops.items():
        default = platform_fee_defaults(platform)
        row = overrides.get(shop_id)
        values = {}
        for name in FEE_FIELDS:
            own = getattr(row, name, None) if row is not None else None
            values[name] = Decimal(own) if own is not None else getattr(default, name)
        rates[shop_id] = FeeRates(**values)
    return rates
