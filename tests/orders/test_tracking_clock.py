"""The tracking clock: `tracking_by` watched like `ship_by` (due soon, overdue, alerts, the
order-list filters), per-shop windows, stopped once the platform accepted a tracking number."""

from datetime import UTC, datetime, timedelta

import pytest
from django.test import override_settings

from orders.models import Order, SlaState
from orders.sla import (
    SLA_OVERDUE_ALERT,
    TRACKING_DUE_SOON_ALERT,
    TRACKING_OVERDUE_ALERT,
    order_sla_compute,
    sla_sweep,
)
from shops.models import Shop
from tests.factories import OrderFactory, ShopFactory, TenantOrderPolicyFactory
from tests.orders.admin_helpers import admin_url, assert_not_found, changelist_pks
from tkerp.models import Alert
from tkerp.tenancy import tenant_context

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 4, 12, 18, 0, tzinfo=UTC)


@pytest.fixture
def shop(tenant_a):
    return ShopFactory(tenant=tenant_a, name="Alpha TikTok")


def _order(shop, number: str, **fields) -> Order:
    fields.setdefault("status", "allocated")
    return OrderFactory(tenant=shop.tenant, shop=shop, platform_order_id=number, **fields)


def _states(tenant) -> dict[str, str]:
    with tenant_context(tenant):
        return dict(Order.objects.values_list("platform_order_id", "tracking_sla_state"))


def _open_alerts(tenant) -> dict[str, str]:
    with tenant_context(tenant):
        return {alert.key: alert.title for alert in Alert.objects.filter(resolved_at__isnull=True)}


class TestDeadline:
    @override_settings(TKERP_TRACKING_UPLOAD_HOURS=48)
    def test_a_new_shop_takes_the_platform_rule_and_may_change_it(self, tenant_a):
        shop = ShopFactory(tenant=tenant_a)
        assert shop.tracking_upload_hours == 48
        order = _order(shop, "o1", paid_at=NOW)
        assert order_sla_compute(order=order, shop=shop).tracking_by == NOW + timedelta(hours=48)
        Shop._base_manager.filter(pk=shop.pk).update(tracking_upload_hours=36)
        shop.refresh_from_db()
        assert order_sla_compute(order=order, shop=shop).tracking_by == NOW + timedelta(hours=36)


class TestSweep:
    def test_due_soon_and_overdue_are_marked_and_the_clock_stops_once_uploaded(self, shop):
        _order(shop, "late", tracking_by=NOW - timedelta(minutes=1), status="shipped")
        _order(shop, "soon", tracking_by=NOW + timedelta(hours=3))
        _order(shop, "fine", tracking_by=NOW + timedelta(hours=5))
        _order(shop, "none", tracking_by=None)
        _order(
            shop,
            "uploaded",
            tracking_by=NOW - timedelta(hours=2),
            tracking_uploaded_at=NOW - timedelta(hours=3),
            status="shipped",
        )
        _order(shop, "cancelled", tracking_by=NOW - timedelta(hours=2), status="cancelled")

        result = sla_sweep(now=NOW)[shop.tenant_id]

        assert _states(shop.tenant) == {
            "late": SlaState.OVERDUE,
            "soon": SlaState.DUE_SOON,
            "fine": SlaState.OK,
            "none": SlaState.OK,
            "uploaded": SlaState.OK,
            "cancelled": SlaState.OK,
        }
        assert (result["tracking_overdue"], result["tracking_due_soon"]) == (1, 1)
        alerts = _open_alerts(shop.tenant)
        assert alerts[TRACKING_OVERDUE_ALERT] == "1 order past their tracking-by time"
        assert alerts[TRACKING_DUE_SOON_ALERT].startswith(
            "1 order due to have tracking on the platform within 4 h"
        )
        # Tracking is not ship-by: the late order's ship-by clock is not running.
        assert SLA_OVERDUE_ALERT not in alerts

        # The platform accepts the late order's number: its clock stops, the alert resolves.
        Order._base_manager.filter(platform_order_id="late").update(tracking_uploaded_at=NOW)
        sla_sweep(now=NOW)
        sla_sweep(now=NOW)  # again: nothing changes
        assert _states(shop.tenant)["late"] == SlaState.OK
        assert TRACKING_OVERDUE_ALERT not in _open_alerts(shop.tenant)
        with tenant_context(shop.tenant):
            assert Alert.objects.filter(key=TRACKING_OVERDUE_ALERT).count() == 1

    def test_the_due_soon_window_is_the_tenants(self, shop):
        TenantOrderPolicyFactory(tenant=shop.tenant, due_soon_hours=12)
        _order(shop, "soon", tracking_by=NOW + timedelta(hours=10))
        sla_sweep(now=NOW)
        assert _states(shop.tenant) == {"soon": SlaState.DUE_SOON}

    def test_manual_shops_and_orders_the_platform_reports_on_their_way_have_no_clock(
        self, shop, tenant_a
    ):
        manual = ShopFactory(tenant=tenant_a, platform="manual", name="CSV")
        _order(manual, "csv", tracking_by=NOW - timedelta(hours=1))
        _order(shop, "moving", tracking_by=NOW - timedelta(hours=1), status="in_transit")
        sla_sweep(now=NOW)
        assert _states(shop.tenant) == {"csv": SlaState.OK, "moving": SlaState.OK}
        assert TRACKING_OVERDUE_ALERT not in _open_alerts(shop.tenant)

    def test_another_tenants_orders_and_alerts_are_its_own(self, shop, tenant_b):
        _order(shop, "late", tracking_by=NOW - timedelta(hours=1))
        shop_b = ShopFactory(tenant=tenant_b)
        _order(shop_b, "b-fine", tracking_by=NOW + timedelta(days=2))
        sla_sweep(now=NOW)
        assert TRACKING_OVERDUE_ALERT in _open_alerts(shop.tenant)
        assert _open_alerts(tenant_b) == {}


class TestAdmin:
    def test_the_order_list_filters_by_tracking_deadline_and_state(self, client_a, shop):
        now = datetime.now(UTC)
        late = _order(shop, "late", tracking_by=now - timedelta(hours=1))
        soon = _order(shop, "soon", tracking_by=now + timedelta(hours=20))
        done = _order(shop, "done", tracking_by=now - timedelta(hours=1), tracking_uploaded_at=now)
        sla_sweep(now=now)

        assert changelist_pks(client_a, Order, "?tracking_by_due=overdue") == {late.pk}
        assert changelist_pks(client_a, Order, "?tracking_by_due=24h") == {soon.pk}
        assert changelist_pks(client_a, Order, "?tracking_by_due=uploaded") == {done.pk}
        assert changelist_pks(client_a, Order, "?tracking_sla=overdue") == {late.pk}
        assert changelist_pks(client_a, Order, "?tracking_sla=ok") == {soon.pk, done.pk}

    def test_another_tenant_sees_none_of_it(self, client_b, shop):
        late = _order(shop, "late", tracking_by=datetime.now(UTC) - timedelta(hours=1))
        sla_sweep()
        assert changelist_pks(client_b, Order, "?tracking_by_due=overdue") == set()
        assert changelist_pks(client_b, Order, "?tracking_sla=overdue") == set()
        assert_not_found(client_b, admin_url(Order, "change", late.pk))
