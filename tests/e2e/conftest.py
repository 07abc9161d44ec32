"""Fixtures of the end-to-end suites."""

import pytest

from inventory.models import MovementKind, WarehouseKind
from inventory.stock import stock_adjust
from orders.models import ReviewSettings
from tests.e2e.helpers import connect_shop
from tests.factories import WarehouseFactory
from tkerp.tenancy import tenant_context

# Review's rules, all off in `stocked`: what review holds is another suite's subject.
REVIEW_CHECKS = (
    "check_incomplete",
    "check_po_box",
    "check_military",
    "check_zip_state",
    "check_too_long",
    "check_phone",
    "hold_buyer_notes",
    "check_high_value",
    "check_duplicate_address",
)


@pytest.fixture
def stocked(tenant_a):
    """A TikTok shop on the sandbox with 50 of each listed SKU in an own warehouse; review holds
    nothing, so every order reaches its parcels (what is held is another suite's subject)."""
    shop, store = connect_shop(tenant_a, "tiktok")
    warehouse = WarehouseFactory(tenant=tenant_a, code="A-OWN", kind=WarehouseKind.OWN)
    with tenant_context(tenant_a):
        ReviewSettings.objects.update_or_create(
            tenant=tenant_a,
            defaults=dict.fromkeys(REVIEW_CHECKS, False),
        )
        for listing in shop.listings.select_related("sku"):
            stock_adjust(
                sku=listing.sku,
                warehouse=warehouse,
                delta=50,
                kind=MovementKind.RECEIVE,
                user=None,
                note="delivery",
            )
    return shop, store, warehouse
