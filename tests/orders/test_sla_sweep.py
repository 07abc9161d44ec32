"""The SLA sweep: SLA states on orders, one alert per kind, per-shop figures, stuck orders."""

from datetime import UTC, datetime, timedelta

import pytest

from orders import pipeline
from orders.admin import OrderAdmin
from orders.admin_inbox import countdown
from orders.models import Order, ShopSlaFigures, SlaState
from orders.sla import (
    SLA_DUE_SOON_ALERT,
    SLA_OVERDUE_ALERT,
    orders_stranded,
    shop_sla_figures_compute,
    sla_sweep,
)
from orders.tasks import sla_sweep_task
from shops.schedules import schedule_specs
from tests.factories import (
    OrderFactory,
    OrderHoldFactory,
    OrderLineFactory,
    ReservationFactory,
    ShopFactory,
    TenantOrderPolicyFactory,
)
from tests.orders.admin_helpers import admin_url, assert_not_found, changelist_pks
from tkerp.alerts import alert_raise
from tkerp.models import Alert
from tkerp.tenancy import tenant_context

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 4, 12, 18, 0, tzinfo=UTC)


@pytest.fixture
def shop(tenant_a):
    return ShopFactory(tenant=tenant_a, name="Alpha TikTok")


def _order(shop, number: str, **fields) -> Order:
    fields.setdefault("status", "ready")
    return OrderFactory(tenant=shop.tenant, shop=shop, platform_order_id=number, **fields)


def _states(tenant) -> dict[str, str]:
    with tenant_context(tenant):
        return dict(Order.objects.values_list("platform_order_id", "sla_state"))


def _open_alerts(tenant) -> dict[str, tuple[str, int]]:
    with tenant_context(tenant):
        return {
            alert.key: (alert.title, alert.occurrences)
            for alert in Alert.objects.filter(resolved_at__isnull=True)
        }


class TestStates:
    def test_the_sweep_marks_overdue_due_soon_and_ok(self, shop):
        _order(shop, "late", ship_by=NOW - timedelta(minutes=1))
        _order(shop, "soon", ship_by=NOW + timedelta(hours=3, minutes=59))
        _order(shop, "fine", ship_by=NOW + timedelta(hours=4))
        _order(shop, "none", ship_by=None)
        _order(shop, "gone", ship_by=NOW - timedelta(hours=5), status="shipped")

        sla_sweep(now=NOW)

        assert _states(shop.tenant) == {
            "late": SlaState.OVERDUE,
            "soon": SlaState.DUE_SOON,
            "fine": SlaState.OK,
            "none": SlaState.OK,
            "gone": SlaState.OK,
        }

    def test_the_tenant_policy_overrides_the_due_soon_window(self, shop):
        TenantOrderPolicyFactory(tenant=shop.tenant, due_soon_hours=12)
        _order(shop, "soonish", ship_by=NOW + timedelta(hours=11))
        sla_sweep(now=NOW)
        assert _states(shop.tenant) == {"soonish": SlaState.DUE_SOON}

    def test_a_shipped_order_goes_back_to_ok(self, shop):
        order = _order(shop, "late", ship_by=NOW - timedelta(hours=1))
        sla_sweep(now=NOW)
        Order._base_manager.filter(pk=order.pk).update(status="shipped")
        sla_sweep(now=NOW)
        assert _states(shop.tenant) == {"late": SlaState.OK}


class TestAlerts:
    def test_one_alert_per_kind_with_the_count_resolved_when_none_remain(self, shop):
        first = _order(shop, "late-1", ship_by=NOW - timedelta(hours=1))
        second = _order(shop, "late-2", ship_by=NOW - timedelta(hours=2))
        _order(shop, "soon", ship_by=NOW + timedelta(hours=1))

        sla_sweep(now=NOW)
        sla_sweep(now=NOW)  # again: still one alert each, nothing duplicated

        alerts = _open_alerts(shop.tenant)
        assert set(alerts) == {SLA_OVERDUE_ALERT, SLA_DUE_SOON_ALERT}
        assert alerts[SLA_OVERDUE_ALERT][0].startswith("2 orders past")
        assert alerts[SLA_DUE_SOON_ALERT][0].startswith("1 order due")
        with tenant_context(shop.tenant):
            assert Alert.objects.filter(key=SLA_OVERDUE_ALERT).count() == 1

        Order._base_manager.filter(pk__in=[first.pk, second.pk]).update(status="shipped")
        sla_sweep(now=NOW)

        assert set(_open_alerts(shop.tenant)) == {SLA_DUE_SOON_ALERT}
        with tenant_context(shop.tenant):
            resolved = Alert.objects.get(key=SLA_OVERDUE_ALERT)
        assert resolved.resolved_at is not None

    def test_alerts_stay_with_their_tenant(self, shop, tenant_b):
        _order(shop, "late", ship_by=NOW - timedelta(hours=1))
        shop_b = ShopFactory(tenant=tenant_b)
        _order(shop_b, "b-fine", ship_by=NOW + timedelta(days=2))
        sla_sweep(now=NOW)
        assert set(_open_alerts(shop.tenant)) == {SLA_OVERDUE_ALERT}
        assert _open_alerts(tenant_b) == {}
        assert _states(tenant_b) == {"b-fine": SlaState.OK}


class TestFigures:
    def test_late_rates_median_and_p95_on_a_known_set(self, shop):
        day = timedelta(days=1)
        hour = timedelta(hours=1)

        def shipped(number, *, paid, hours, ship_by):
            _order(
                shop,
                number,
                status="shipped",
                paid_at=paid,
                shipped_at=paid + hours * hour,
                ship_by=ship_by,
            )

        shipped("on-time", paid=NOW - 2 * day, hours=23, ship_by=NOW - day)
        shipped("late-2d", paid=NOW - 3 * day, hours=48, ship_by=NOW - 2 * day)
        _order(shop, "unshipped", paid_at=NOW - 4 * day, ship_by=NOW - 3 * day)
        shipped("late-10d", paid=NOW - 12 * day, hours=72, ship_by=NOW - 10 * day)
        shipped("on-time-20d", paid=NOW - 22 * day, hours=24, ship_by=NOW - 20 * day)
        _order(shop, "not-due", paid_at=NOW, ship_by=NOW + day)
        _order(shop, "cancelled", status="cancelled", ship_by=NOW - day)
        shipped("old", paid=NOW - 45 * day, hours=2, ship_by=NOW - 44 * day)

        figures = shop_sla_figures_compute(shop=shop, now=NOW)

        assert (figures.due_7d, figures.late_7d) == (3, 2)
        assert figures.late_rate_7d == pytest.approx(2 / 3)
        assert (figures.due_30d, figures.late_30d) == (5, 3)
        assert figures.late_rate_30d == pytest.approx(0.6)
        assert figures.shipped_30d == 4  # 23, 24, 48, 72 hours
        assert figures.median_hours_to_ship == pytest.approx(36.0)
        assert figures.p95_hours_to_ship == pytest.approx(68.4)

    def test_the_sweep_keeps_one_row_per_shop(self, shop):
        _order(shop, "x", ship_by=NOW - timedelta(hours=1))
        sla_sweep(now=NOW)
        sla_sweep(now=NOW + timedelta(minutes=1))
        with tenant_context(shop.tenant):
            rows = list(ShopSlaFigures.objects.all())
        assert len(rows) == 1 and rows[0].computed_at == NOW + timedelta(minutes=1)
        assert rows[0].late_rate_7d == 1.0

    def test_an_empty_shop_has_no_rates(self, shop):
        figures = shop_sla_figures_compute(shop=shop, now=NOW)
        assert figures.late_rate_7d is None and figures.median_hours_to_ship is None


class TestStuckOrders:
    def test_orders_left_new_are_run_through_the_pipeline_again(self, shop, monkeypatch):
        calls = []
        monkeypatch.setattr(
            pipeline,
            "orders_after_ingest",
            lambda **kwargs: calls.append((kwargs["shop"].pk, sorted(kwargs["updated_ids"]))),
        )
        paid = NOW - timedelta(minutes=20)
        stuck = _order(shop, "stuck", status="new", paid_at=paid)
        fresh = _order(shop, "fresh", status="new", paid_at=paid)
        unpaid = _order(shop, "unpaid", status="new")  # waits for its payment, not stranded
        _order(shop, "done", status="ready", paid_at=paid, reviewed_at=paid)
        Order._base_manager.filter(pk__in=[stuck.pk, unpaid.pk]).update(
            created_at=NOW - timedelta(minutes=10)
        )
        Order._base_manager.filter(pk=fresh.pk).update(created_at=NOW - timedelta(minutes=1))

        sla_sweep(now=NOW)

        assert calls == [(shop.pk, [stuck.pk])]

    def test_stranded_orders_are_selected_by_state(self, shop):
        old = NOW - timedelta(minutes=10)
        paid = {"paid_at": NOW - timedelta(hours=1), "reviewed_at": old}

        def order(number, *, reserved=None, hold=None, **fields):
            made = _order(shop, number, **fields)
            line = OrderLineFactory(order=made, tenant=shop.tenant, quantity=1)
            if reserved is not None:
                ReservationFactory(tenant=shop.tenant, order=made, order_line=line, state=reserved)
            if hold:
                OrderHoldFactory(tenant=shop.tenant, order=made, code=hold)
            Order._base_manager.filter(pk=made.pk).update(created_at=old, updated_at=old)
            return made

        expected = {
            order("new", status="new", **paid),
            order("ready-unreserved", status="ready", **paid),
            order("held-for-review-unreserved", status="on_hold", hold="address.po_box", **paid),
            order("held-unreviewed", status="on_hold", hold="stock.short", paid_at=NOW),
            order("shipped-holding", status="shipped", reserved="reserved", **paid),
            order("cancelled-holding", status="cancelled", reserved="reserved", **paid),
        }
        order("unpaid", status="new")
        order("ready-reserved", status="ready", reserved="reserved", **paid)
        order("waiting-for-stock", status="on_hold", hold="stock.short", **paid)
        order("unknown-sku", status="on_hold", hold="sku.unknown", **paid)
        order("shipped-committed", status="shipped", reserved="committed", **paid)
        order("cancelled-released", status="cancelled", reserved="released", **paid)
        recent = order("ready-just-now", status="ready", **paid)
        Order._base_manager.filter(pk=recent.pk).update(updated_at=NOW)

        stranded = set(orders_stranded(tenant=shop.tenant, now=NOW))

        assert {o.platform_order_id for o in stranded} == {o.platform_order_id for o in expected}

    def test_the_pipeline_alert_closes_once_nothing_is_stranded(self, shop, monkeypatch):
        monkeypatch.setattr(pipeline, "orders_after_ingest", lambda **kwargs: [])
        alert_raise(
            tenant=shop.tenant,
            key=pipeline.pipeline_alert_key(shop.pk),
            kind=pipeline.PIPELINE_ALERT_KIND,
            title="stored but not processed",
            shop=shop,
        )
        stuck = _order(shop, "stuck", status="new", paid_at=NOW - timedelta(hours=1))
        Order._base_manager.filter(pk=stuck.pk).update(created_at=NOW - timedelta(minutes=10))

        sla_sweep(now=NOW)
        assert pipeline.pipeline_alert_key(shop.pk) in _open_alerts(shop.tenant)

        Order._base_manager.filter(pk=stuck.pk).update(status="ready", reviewed_at=NOW)
        sla_sweep(now=NOW)
        assert pipeline.pipeline_alert_key(shop.pk) not in _open_alerts(shop.tenant)


def test_a_misspelt_pipeline_step_is_refused_before_any_step_runs(shop):
    stuck = _order(shop, "stuck", status="new", paid_at=NOW - timedelta(hours=1))

    with pytest.raises(ValueError, match=r"unknown pipeline step.* reveiw"):
        pipeline.orders_after_ingest(
            shop=shop, created_ids=[stuck.pk], updated_ids=[], steps=("review", "reveiw")
        )

    stuck.refresh_from_db()
    assert stuck.reviewed_at is None
    with tenant_context(shop.tenant):
        assert not stuck.events.exists()


def test_the_task_is_scheduled_every_minute_and_runs_the_sweep(shop):
    spec = next(spec for spec in schedule_specs() if spec.func == "orders.tasks.sla_sweep_task")
    assert spec.minutes == 1
    _order(shop, "late", ship_by=datetime.now(UTC) - timedelta(hours=1))
    result = sla_sweep_task()
    assert result[str(shop.tenant_id)]["overdue"] == 1


class TestAdmin:
    def test_the_order_list_shows_a_countdown_and_filters_by_sla(self, client_a, shop):
        late = _order(shop, "late", ship_by=NOW - timedelta(hours=1))
        fine = _order(shop, "fine", ship_by=datetime.now(UTC) + timedelta(hours=30))
        sla_sweep(now=NOW)
        Order._base_manager.filter(pk=fine.pk).update(sla_state=SlaState.OK)

        assert changelist_pks(client_a, Order, "?sla=overdue") == {late.pk}
        assert changelist_pks(client_a, Order, "?sla=ok") == {fine.pk}
        body = client_a.get(admin_url(Order, "changelist")).content.decode()
        assert "overdue " in body and " left</span>" in body
        # sortable: the column sorts by the stored deadline
        assert OrderAdmin.time_left.admin_order_field == "ship_by"

    def test_the_countdown_text(self):
        assert countdown(NOW + timedelta(hours=3, minutes=12), now=NOW).endswith(
            ">3 h 12 m left</span>"
        )
        assert ">overdue 2 h 0 m<" in countdown(NOW - timedelta(hours=2), now=NOW)
        assert ">1 d 2 h left<" in countdown(NOW + timedelta(hours=26), now=NOW)

    def test_figures_admin_is_tenant_scoped(self, client_a, client_b, shop):
        shop_sla_figures_compute(shop=shop, now=NOW)
        with tenant_context(shop.tenant):
            row = ShopSlaFigures.objects.get()
        assert changelist_pks(client_a, ShopSlaFigures) == {row.pk}
        assert changelist_pks(client_b, ShopSlaFigures) == set()
        assert_not_found(client_b, admin_url(ShopSlaFigures, "change", row.pk))
