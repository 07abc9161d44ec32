"""SLA clocks on ingest: the platform's own ship-by field where it has one, else the shop's
policy (24 h, or the pre-sale hours for pre-sale orders), kept current on updates."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from orders.ingest import orders_ingest
from orders.models import Order
from orders.sla import order_sla_compute, sla_deadlines
from sandbox.models import SandboxOrder
from shops.platforms.base import PlatformLine, PlatformOrder
from shops.sync import shop_sync
from tests.e2e.helpers import add_orders, connect_shop
from tests.factories import ShopFactory
from tkerp.tenancy import tenant_context

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 4, 12, 18, 0, tzinfo=UTC)


def _platform_order(order_id: str, **fields) -> PlatformOrder:
    values = {
        "platform_order_id": order_id,
        "platform_status": "paid",
        "status": "new",
        "updated_at": fields.pop("updated_at", T0),
        "placed_at": T0 - timedelta(minutes=5),
        "paid_at": T0,
        "total": Decimal("19.99"),
        "subtotal": Decimal("19.99"),
        "lines": [PlatformLine(platform_line_id=f"{order_id}-1", quantity=1, seller_sku="X")],
    }
    values.update(fields)
    return PlatformOrder(**values)


class TestPolicy:
    def test_without_a_platform_deadline_ship_by_is_payment_plus_the_shop_hours(self):
        deadlines = sla_deadlines(
            paid_at=T0,
            placed_at=T0 - timedelta(hours=1),
            is_presale=False,
            ship_by_hours=48,
            presale_ship_by_hours=96,
        )
        assert deadlines.ship_by == T0 + timedelta(hours=48)

    def test_a_presale_order_gets_the_presale_hours(self):
        deadlines = sla_deadlines(
            paid_at=T0,
            placed_at=None,
            is_presale=True,
            ship_by_hours=24,
            presale_ship_by_hours=72,
        )
        assert deadlines.ship_by == T0 + timedelta(hours=72)

    def test_an_unpaid_order_counts_from_placement(self):
        deadlines = sla_deadlines(
            paid_at=None, placed_at=T0, is_presale=False, ship_by_hours=24, presale_ship_by_hours=72
        )
        assert deadlines.ship_by == T0 + timedelta(hours=24)

    def test_the_platform_deadline_wins_over_the_policy(self):
        deadlines = sla_deadlines(
            paid_at=T0,
            placed_at=T0,
            is_presale=True,
            ship_by_hours=24,
            presale_ship_by_hours=72,
            platform_ship_by=T0 + timedelta(hours=5),
        )
        assert deadlines.ship_by == T0 + timedelta(hours=5)

    def test_ingest_applies_the_shop_policy_per_shop_including_presale(self, tenant_a):
        fast = ShopFactory(tenant=tenant_a, platform="manual", ship_by_hours=24)
        slow = ShopFactory(
            tenant=tenant_a, platform="manual", ship_by_hours=48, presale_ship_by_hours=120
        )
        orders_ingest(shop=fast, platform_orders=[_platform_order("F-1")], source="csv")
        orders_ingest(
            shop=slow,
            platform_orders=[_platform_order("S-1"), _platform_order("S-2", is_presale=True)],
            source="csv",
        )
        with tenant_context(tenant_a):
            ship_by = dict(Order.objects.values_list("platform_order_id", "ship_by"))
        assert ship_by == {
            "F-1": T0 + timedelta(hours=24),
            "S-1": T0 + timedelta(hours=48),
            "S-2": T0 + timedelta(hours=120),
        }

    def test_an_update_keeps_the_clock_current(self, tenant_a):
        shop = ShopFactory(tenant=tenant_a, platform="manual", ship_by_hours=24)
        orders_ingest(shop=shop, platform_orders=[_platform_order("U-1")], source="csv")
        later = T0 + timedelta(hours=2)
        orders_ingest(
            shop=shop,
            platform_orders=[
                _platform_order("U-1", updated_at=later, ship_by=T0 + timedelta(hours=30))
            ],
            source="webhook",
        )
        with tenant_context(tenant_a):
            order = Order.objects.get()
        assert order.ship_by == T0 + timedelta(hours=30)

    def test_order_sla_compute_recomputes_under_a_changed_policy(self, tenant_a):
        shop = ShopFactory(tenant=tenant_a, platform="manual", ship_by_hours=24)
        orders_ingest(shop=shop, platform_orders=[_platform_order("P-1")], source="csv")
        shop.ship_by_hours = 36
        with tenant_context(tenant_a):
            order = Order.objects.get()
        assert order_sla_compute(order=order, shop=shop).ship_by == T0 + timedelta(hours=36)


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _platform_ship_by(platform: str, payload: dict) -> datetime | None:
    """The platform's own deadline field, read straight from the sandbox's payload."""
    if platform == "tiktok":
        return datetime.fromtimestamp(payload["rts_sla_time"], tz=UTC)
    if platform == "amazon":
        return _parse(payload["LatestShipDate"])
    if platform == "ebay":
        return min(
            _parse(item["lineItemFulfillmentInstructions"]["shipByDate"])
            for item in payload["lineItems"]
        )
    return None  # Shopify has no ship-by field


@pytest.mark.parametrize("platform", ["tiktok", "shopify", "amazon", "ebay"])
def test_ship_by_comes_from_each_platforms_field_or_the_shop_policy(tenant_a, platform):
    shop, store = connect_shop(tenant_a, platform, ship_by_hours=30)
    (generated,) = add_orders(store, 1, start=timezone.now() - timedelta(minutes=30))
    with tenant_context(tenant_a):
        run = shop_sync(shop=shop)
    assert run.status == "success", run.error
    payload = SandboxOrder.objects.get(pk=generated.pk).payload
    with tenant_context(tenant_a):
        order = Order.objects.get()
    expected = _platform_ship_by(platform, payload)
    if expected is None:
        expected = (order.paid_at or order.placed_at) + timedelta(hours=30)
    assert order.ship_by is not None
    assert abs(order.ship_by - expected) < timedelta(seconds=1)
