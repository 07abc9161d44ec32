"""Profit per order against hand-computed orders: fees, commission, a refund, a cancellation."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from inventory.models import ReservationState
from live.fees import platform_fee_defaults
from live.models import ShopFees
from live.profit import order_profit, profit_rollup
from orders.models import Order, OrderStatus
from tests.factories import (
    OrderFactory,
    OrderLineFactory,
    ReservationFactory,
    ReturnRequestFactory,
    ShipmentFactory,
    ShopFactory,
    SkuFactory,
    StockLevelFactory,
    WarehouseFactory,
)

pytestmark = pytest.mark.django_db

D = Decimal
DAY1 = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)
DAY2 = datetime(2026, 11, 21, 18, 0, tzinfo=UTC)


def reserve(*, tenant, order, line, level, quantity, state):
    return ReservationFactory(
        tenant=tenant,
        order=order,
        order_line=line,
        stock_level=level,
        quantity=quantity,
        state=state,
    )


@pytest.fixture
def book(tenant_a, scope_a):
    """Three orders on three shops, each worked out by hand in the tests below."""
    t = tenant_a
    tiktok = ShopFactory(tenant=t, platform="tiktok", name="TT")
    shopify = ShopFactory(tenant=t, platform="shopify", name="SF")
    ebay = ShopFactory(tenant=t, platform="ebay", name="EB")
    ShopFees.objects.create(tenant=t, shop=tiktok, packaging_per_parcel=D("0.50"))
    ShopFees.objects.create(tenant=t, shop=ebay, referral_percent=D("10"))
    warehouse = WarehouseFactory(tenant=t)
    mug = SkuFactory(tenant=t, code="MUG-01", cost=D("4.50"))
    cap = SkuFactory(tenant=t, code="CAP-02", cost=D("4.50"))
    lamp = SkuFactory(tenant=t, code="LAMP-03", cost=D("20.00"))
    # The mug cost less in this warehouse than the SKU's list cost: the level's cost wins.
    mug_level = StockLevelFactory(tenant=t, sku=mug, warehouse=warehouse, unit_cost=D("3.00"))
    cap_level = StockLevelFactory(tenant=t, sku=cap, warehouse=warehouse)
    lamp_level = StockLevelFactory(tenant=t, sku=lamp, warehouse=warehouse)

    # A: TikTok, shipped, creator commission, one mug of two returned and received back.
    a = OrderFactory(
        tenant=t,
        shop=tiktok,
        status=OrderStatus.DELIVERED,
        subtotal=D("30.00"),
        shipping_fee=D("5.00"),
        tax=D("2.40"),
        platform_discount=D("3.00"),
        total=D("37.40"),
        creator_commission=D("3.00"),
        placed_at=DAY1,
    )
    a_mug = OrderLineFactory(order=a, sku=mug, quantity=2, unit_price=D("10"), total=D("20.00"))
    a_cap = OrderLineFactory(order=a, sku=cap, quantity=1, unit_price=D("10"), total=D("10.00"))
    reserve(tenant=t, order=a, line=a_mug, level=mug_level, quantity=2, state="committed")
    reserve(tenant=t, order=a, line=a_cap, level=cap_level, quantity=1, state="committed")
    ShipmentFactory(order=a, warehouse=warehouse, status="delivered", shipping_cost=D("4.20"))
    ReturnRequestFactory(
        tenant=t,
        order=a,
        status="RETURN_OR_REFUND_REQUEST_COMPLETE",
        lines=[{"seller_sku": "MUG-01", "quantity": 1}],
        received_at=DAY2,
    )
    # A rejected return changes nothing.
    ReturnRequestFactory(
        tenant=t,
        order=a,
        status="REFUND_OR_RETURN_REQUEST_REJECT",
        lines=[{"seller_sku": "CAP-02", "quantity": 1}],
    )

    # B: Shopify, cancelled before it shipped: its reservation was released.
    b = OrderFactory(
        tenant=t,
        shop=shopify,
        status=OrderStatus.CANCELLED,
        subtotal=D("15.00"),
        shipping_fee=D("5.00"),
        total=D("20.00"),
        placed_at=DAY1,
    )
    b_line = OrderLineFactory(order=b, sku=cap, quantity=1, total=D("15.00"))
    reserve(tenant=t, order=b, line=b_line, level=cap_level, quantity=1, state="released")

    # C: eBay at a 10 % final value fee (the shop's own) plus the default $0.40, not shipped.
    c = OrderFactory(
        tenant=t,
        shop=ebay,
        status=OrderStatus.READY,
        subtotal=D("50.00"),
        shipping_fee=D("5.00"),
        total=D("55.00"),
        placed_at=DAY2,
    )
    c_line = OrderLineFactory(order=c, sku=lamp, quantity=1, total=D("50.00"))
    reserve(
        tenant=t,
        order=c,
        line=c_line,
        level=lamp_level,
        quantity=1,
        state=ReservationState.RESERVED,
    )
    return {"a": a, "b": b, "c": c, "shops": (tiktok, shopify, ebay), "skus": (mug, cap, lamp)}


class TestOrderProfit:
    def test_tiktok_order_with_commission_fees_and_a_refund(self, book):
        row = order_profit(order=book["a"])
        # sales = paid 37.40 - tax 2.40 + platform discount 3.00 = 38.00
        assert row.sales == D("38.00")
        # one mug of 10.00 back
        assert row.refund == D("10.00")
        # 6 % of 28.00 kept = 1.68, plus 20 % of the 6 % referral on the 10.00 refunded = 0.12
        assert row.fees == D("1.80")
        # commission 3.00 on what was kept: 3.00 x 28 / 38 = 2.2105
        assert row.commission == D("2.21")
        assert row.label == D("4.20")
        assert row.packaging == D("0.50")
        # 2 mugs at 3.00 (the warehouse's cost) - 1 received back, 1 cap at the SKU's 4.50
        assert row.cogs == D("7.50")
        # 38 - 10 - 1.80 - 2.2105 - 4.20 - 0.50 - 7.50 = 11.7895
        assert row.profit == D("11.79")
        assert row.units == 3

    def test_cancelled_before_shipping_costs_and_earns_nothing(self, book):
        row = order_profit(order=book["b"])
        assert (row.sales, row.fees, row.commission, row.label, row.cogs, row.profit) == (
            D("0.00"),
            D("0.00"),
            D("0.00"),
            D("0.00"),
            D("0.00"),
            D("0.00"),
        )
        assert row.units == 0

    def test_shop_override_and_platform_fixed_fee(self, book):
        row = order_profit(order=book["c"])
        assert row.sales == D("55.00")
        # 10 % (the shop's own rate) of 55.00 + eBay's default 0.40 per order
        assert row.fees == D("5.90")
        assert row.cogs == D("20.00")
        assert row.profit == D("29.10")

    def test_platform_defaults_are_documented_numbers(self):
        assert platform_fee_defaults("tiktok").referral_percent == D("6")
        assert platform_fee_defaults("shopify").transaction_percent == D("2.9")
        assert platform_fee_defaults("shopify").fixed_per_order == D("0.30")
        assert platform_fee_defaults("amazon").referral_percent == D("15")
        assert platform_fee_defaults("ebay").referral_percent == D("13.6")
        assert platform_fee_defaults("manual").referral_percent == D("0")


class TestRollups:
    def test_per_sku_splits_order_costs_by_line_value(self, book, tenant_a):
        mug, cap, lamp = book["skus"]
        rows = {
            row.key: row
            for row in profit_rollup(
                tenant_id=tenant_a.pk, orders=Order._base_manager.filter(tenant=tenant_a), by="sku"
            )
        }
        # Order A's mug line is 2/3 of its value: sales 25.33, label 2.80, packaging 0.33,
        # fees 6 % x 15.33 + 0.12 = 1.04, commission 2.00 x 15.33/25.33 = 1.21, cogs 3.00.
        assert rows[str(mug.pk)].profit == D("6.95")
        # Its cap line: 12.67 - 0.76 - 1.00 - 1.40 - 0.17 - 4.50 = 4.84; B's cancelled cap: 0.
        assert rows[str(cap.pk)].profit == D("4.84")
        assert rows[str(cap.pk)].orders == 2
        assert rows[str(lamp.pk)].profit == D("29.10")

    def test_per_shop_and_day(self, book, tenant_a):
        tiktok, shopify, ebay = book["shops"]
        orders = Order._base_manager.filter(tenant=tenant_a)
        by_shop = {
            r.key: r.profit for r in profit_rollup(tenant_id=tenant_a.pk, orders=orders, by="shop")
        }
        assert by_shop == {tiktok.pk: D("11.79"), shopify.pk: D("0.00"), ebay.pk: D("29.10")}
        by_day = {
            str(r.key): r.profit
            for r in profit_rollup(tenant_id=tenant_a.pk, orders=orders, by="day")
        }
        assert by_day == {"2026-11-20": D("11.79"), "2026-11-21": D("29.10")}

    def test_another_tenants_orders_never_count(self, book, tenant_a, tenant_b):
        other = OrderFactory(tenant=tenant_b, total=D("999.00"), placed_at=DAY1)
        OrderLineFactory(order=other, total=D("999.00"))
        from django.db.models import Q

        # Even handed the other tenant's order ids, the rollup is scoped to tenant A.
        orders = Order._base_manager.filter(Q(tenant=tenant_a) | Q(pk=other.pk))
        total = sum(r.sales for r in profit_rollup(tenant_id=tenant_a.pk, orders=orders, by="shop"))
        assert total == D("93.00")
