"""Holds and tags as plain functions: status moves, audit events, idempotency, tenant scope."""

import pytest
from django.core.exceptions import ValidationError

from orders.holds import HoldNotAllowed, order_hold, order_release
from orders.models import Order, OrderEvent, OrderHold, OrderStatus, OrderTag, Tag
from orders.tags import order_tag_add, order_tag_remove
from tests.factories import (
    OrderFactory,
    OrderHoldFactory,
    OrderLineFactory,
    ReservationFactory,
    UserFactory,
)
from tkerp.tenancy import tenant_context

pytestmark = pytest.mark.django_db


def events(order):
    return list(
        OrderEvent._base_manager.filter(order=order).order_by("pk").values_list("kind", flat=True)
    )


def reload(order):
    return Order._base_manager.get(pk=order.pk)


class TestOrderHold:
    def test_holding_puts_the_order_on_hold_and_records_who_and_why(self, scope_a, order_a):
        user = UserFactory()

        hold, created = order_hold(order=order_a, code="address.check", message="Apt?", user=user)

        assert created
        assert (hold.code, hold.message, hold.created_by, hold.released_at) == (
            "address.check",
            "Apt?",
            user,
            None,
        )
        assert reload(order_a).status == OrderStatus.ON_HOLD
        event = OrderEvent._base_manager.get(order=order_a)
        assert (event.kind, event.user, event.source) == ("hold.added", user, "user")
        assert event.data == {"code": "address.check", "message": "Apt?", "previous_status": "new"}

    def test_holding_twice_with_the_same_code_changes_nothing(self, scope_a, order_a):
        first, _ = order_hold(order=order_a, code="manual")

        again, created = order_hold(order=order_a, code="manual", message="different text")

        assert not created
        assert again.pk == first.pk
        assert OrderHold._base_manager.filter(order=order_a).count() == 1
        assert events(order_a) == ["hold.added"]

    def test_a_second_reason_adds_a_second_hold(self, scope_a, order_a):
        order_hold(order=order_a, code="manual")
        order_hold(order=order_a, code="high_value")

        assert OrderHold._base_manager.filter(order=order_a, released_at=None).count() == 2

    def test_a_shipped_order_cannot_be_held(self, scope_a, shop_a):
        order = OrderFactory(tenant=shop_a.tenant, shop=shop_a, status=OrderStatus.SHIPPED)

        with pytest.raises(HoldNotAllowed, match="shipped"):
            order_hold(order=order, code="manual")

        assert reload(order).status == OrderStatus.SHIPPED
        assert not OrderHold._base_manager.filter(order=order).exists()
        assert events(order) == []

    def test_another_tenants_order_is_out_of_reach(self, scope_a, order_b):
        with pytest.raises(Order.DoesNotExist):
            order_hold(order=order_b, code="manual")
        assert not OrderHold._base_manager.filter(order=order_b).exists()


class TestOrderRelease:
    def test_releasing_the_last_hold_makes_the_order_ready(self, scope_a, order_a):
        user = UserFactory()
        order_hold(order=order_a, code="manual")

        released = order_release(order=order_a, user=user)

        assert [hold.code for hold in released] == ["manual"]
        hold = OrderHold._base_manager.get(order=order_a)
        assert hold.released_at is not None
        assert hold.released_by == user
        assert reload(order_a).status == OrderStatus.READY
        assert events(order_a) == ["hold.added", "hold.released"]

    def test_releasing_one_code_keeps_the_order_on_hold_while_others_remain(self, scope_a, order_a):
        order_hold(order=order_a, code="manual")
        order_hold(order=order_a, code="high_value")

        order_release(order=order_a, codes=["manual"])

        assert reload(order_a).status == OrderStatus.ON_HOLD
        active = OrderHold._base_manager.filter(order=order_a, released_at=None)
        assert list(active.values_list("code", flat=True)) == ["high_value"]

    def test_releasing_with_nothing_held_writes_nothing(self, scope_a, order_a):
        assert order_release(order=order_a) == []
        assert reload(order_a).status == OrderStatus.NEW
        assert events(order_a) == []

    def test_a_released_code_can_be_held_again(self, scope_a, order_a):
        order_hold(order=order_a, code="manual")
        order_release(order=order_a)

        _, created = order_hold(order=order_a, code="manual")

        assert created
        assert reload(order_a).status == OrderStatus.ON_HOLD
        assert OrderHold._base_manager.filter(order=order_a).count() == 2

    def test_release_does_not_touch_an_order_that_moved_on(self, scope_a, shop_a):
        # A hold left over on an allocated order is cleared without rewinding the order.
        order = OrderFactory(tenant=shop_a.tenant, shop=shop_a, status=OrderStatus.ALLOCATED)
        OrderHoldFactory(order=order, code="stock.short")

        order_release(order=order)

        assert reload(order).status == OrderStatus.ALLOCATED


class TestOrderTags:
    def test_tag_add_creates_the_tag_once_and_is_idempotent(self, scope_a, order_a):
        tag, added = order_tag_add(order=order_a, tag_name="  VIP ")
        again, added_again = order_tag_add(order=order_a, tag_name="vip")

        assert (tag.name, added, added_again) == ("vip", True, False)
        assert again.pk == tag.pk
        assert Tag._base_manager.filter(tenant=order_a.tenant).count() == 1
        assert OrderTag._base_manager.filter(order=order_a).count() == 1
        assert events(order_a) == ["tag.added"]

    def test_tag_remove_is_idempotent_and_keeps_the_tag(self, scope_a, order_a):
        order_tag_add(order=order_a, tag_name="gift")

        assert order_tag_remove(order=order_a, tag_name="GIFT") is True
        assert order_tag_remove(order=order_a, tag_name="gift") is False

        assert not OrderTag._base_manager.filter(order=order_a).exists()
        assert Tag._base_manager.filter(name="gift").exists()
        assert events(order_a) == ["tag.added", "tag.removed"]

    def test_same_tag_name_in_two_tenants_is_two_tags(self, order_a, order_b):
        with tenant_context(order_a.tenant):
            tag_a, _ = order_tag_add(order=order_a, tag_name="vip")
        with tenant_context(order_b.tenant):
            tag_b, _ = order_tag_add(order=order_b, tag_name="vip")
        assert tag_a.pk != tag_b.pk
        assert (tag_a.tenant_id, tag_b.tenant_id) == (order_a.tenant_id, order_b.tenant_id)

    def test_empty_tag_name_is_refused(self, scope_a, order_a):
        with pytest.raises(ValidationError):
            order_tag_add(order=order_a, tag_name="   ")


class TestReleaseWithoutStock:
    def test_releasing_stock_short_by_hand_leaves_an_unreserved_order_new(self, scope_a, order_a):
        OrderLineFactory(order=order_a, tenant=order_a.tenant, quantity=2)
        order_hold(order=order_a, code="stock.short", message="MUG: needs 2, 0 free")

        order_release(order=order_a, user=UserFactory())

        # Releasing the hold conjures no stock: not ready (it would never get a parcel), but
        # "new", which the SLA sweep runs through stock and review again.
        assert reload(order_a).status == OrderStatus.NEW
        event = OrderEvent._base_manager.filter(order=order_a, kind="hold.released").get()
        assert event.data["status"] == OrderStatus.NEW

    def test_an_order_holding_its_stock_becomes_ready(self, scope_a, order_a):
        ReservationFactory(tenant=order_a.tenant, order=order_a)
        order_hold(order=order_a, code="manual", message="check the shade")

        order_release(order=order_a, user=UserFactory())

        assert reload(order_a).status == OrderStatus.READY
