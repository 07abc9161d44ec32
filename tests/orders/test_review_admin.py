"""The review admin: settings with a dry run before saving (tenant-isolated), and the order
list's Re-review and Edit-address-then-re-review actions, recorded with the user."""

from datetime import timedelta
from decimal import Decimal
from html.parser import HTMLParser

import pytest
from django.utils import timezone

from orders.models import Order, OrderEvent, OrderHold, OrderStatus, ReviewSettings
from orders.review import orders_review, review_settings_get
from shops.models import Role
from tests.factories import (
    OrderFactory,
    OrderLineFactory,
    ReservationFactory,
    ReviewSettingsFactory,
)
from tests.orders.admin_helpers import admin_url, assert_not_found, changelist_pks, run_action

pytestmark = pytest.mark.django_db

SETTINGS_POST = {
    "check_incomplete": "on",
    "check_po_box": "on",
    "check_military": "on",
    "check_zip_state": "on",
    "check_too_long": "on",
    "address_max_length": "120",
    "check_phone": "on",
    "hold_buyer_notes": "on",
    "check_high_value": "on",
    "high_value_threshold": "500",
    "high_value_currency": "USD",
    "check_duplicate_address": "on",
    "duplicate_window_hours": "24",
    "dry_run_days": "30",
}


def paid_order(shop, **fields):
    fields.setdefault("placed_at", timezone.now() - timedelta(hours=len(fields) * 30 + 1))
    order = OrderFactory(tenant=shop.tenant, shop=shop, paid_at=timezone.now(), **fields)
    line = OrderLineFactory(order=order, tenant=shop.tenant)
    # Its stock is reserved (the pipeline's stock step ran): review may call it ready.
    ReservationFactory(tenant=shop.tenant, order=order, order_line=line)
    return order


def active_codes(order):
    return set(
        OrderHold._base_manager.filter(order=order, released_at__isnull=True).values_list(
            "code", flat=True
        )
    )


class TestReviewSettingsAdmin:
    def test_changelist_creates_the_row_on_demand_and_shows_only_own(
        self, client_a, tenant_a, tenant_b
    ):
        theirs = ReviewSettingsFactory(tenant=tenant_b)
        shown = changelist_pks(client_a, ReviewSettings)
        mine = ReviewSettings._base_manager.get(tenant=tenant_a)
        assert shown == {mine.pk}
        assert theirs.pk not in shown

    def test_saving_shows_a_dry_run_first_and_writes_nothing(self, client_a, tenant_a, shop_a):
        paid_order(shop_a, buyer_note="hi", address_line1="10 Oak St")
        paid_order(shop_a, address_line1="PO Box 4")
        paid_order(shop_a, total=Decimal("250"), address_line1="20 Oak St")
        settings = review_settings_get(tenant=tenant_a)
        events = OrderEvent._base_manager.count()
        proposed = {**SETTINGS_POST, "high_value_threshold": "200"}
        del proposed["hold_buyer_notes"]  # unticked
        response = client_a.post(admin_url(ReviewSettings, "change", settings.pk), proposed)
        assert response.status_code == 200
        assert response.templates[0].name == "admin/orders/reviewsettings/dry_run.html"
        summary = response.context["summary"]
        assert summary.orders == 3 and summary.held == 2
        assert summary.by_code == {"address.po_box": 1, "high_value": 1}
        assert b"Confirm and save" in response.content
        settings.refresh_from_db()
        assert settings.high_value_threshold == Decimal("500") and settings.hold_buyer_notes
        assert OrderEvent._base_manager.count() == events
        assert not OrderHold._base_manager.exists()

    def test_confirm_saves_with_the_user(self, client_a, user_a, tenant_a):
        settings = review_settings_get(tenant=tenant_a)
        response = client_a.post(
            admin_url(ReviewSettings, "change", settings.pk),
            {**SETTINGS_POST, "high_value_threshold": "75", "_confirm": "1", "_save": "1"},
        )
        assert response.status_code == 302, response.content[:2000]
        settings.refresh_from_db()
        assert settings.high_value_threshold == Decimal("75")
        assert settings.updated_by == user_a

    def test_an_invalid_value_shows_the_form_errors_not_a_dry_run(self, client_a, tenant_a):
        settings = review_settings_get(tenant=tenant_a)
        response = client_a.post(
            admin_url(ReviewSettings, "change", settings.pk),
            {**SETTINGS_POST, "duplicate_window_hours": "-3"},
        )
        assert response.status_code == 200
        assert "summary" not in response.context
        assert response.context["adminform"].form.errors

    def test_another_tenants_settings_do_not_exist(self, client_a, tenant_b):
        theirs = ReviewSettingsFactory(tenant=tenant_b)
        url = admin_url(ReviewSettings, "change", theirs.pk)
        assert_not_found(client_a, url)
        for extra in ({}, {"_confirm": "1"}):
            response = client_a.post(url, {**SETTINGS_POST, "high_value_threshold": "1", **extra})
            assert response.status_code == 302
        theirs.refresh_from_db()
        assert theirs.high_value_threshold == Decimal("500")

    def test_operators_may_look_but_not_change(self, member_client, tenant_a):
        settings = review_settings_get(tenant=tenant_a)
        client = member_client(Role.OPERATOR)
        url = admin_url(ReviewSettings, "change", settings.pk)
        assert client.get(url).status_code == 200
        response = client.post(url, {**SETTINGS_POST, "high_value_threshold": "1"})
        assert response.status_code == 403
        settings.refresh_from_db()
        assert settings.high_value_threshold == Decimal("500")


class TestOrderActions:
    def test_re_review_releases_what_no_longer_applies_with_the_user(
        self, client_a, user_a, shop_a
    ):
        order = paid_order(shop_a, address_line1="PO Box 4")
        orders_review(tenant=shop_a.tenant, order_ids=[order.pk])
        Order._base_manager.filter(pk=order.pk).update(address_line1="4 Elm Street")
        response = run_action(client_a, Order, "re_review", [order.pk])
        assert response.status_code == 302
        order.refresh_from_db()
        assert order.status == OrderStatus.READY and active_codes(order) == set()
        assert order.address_line1 == "4 ELM ST"
        hold = OrderHold._base_manager.get(order=order)
        assert hold.released_by == user_a
        event = OrderEvent._base_manager.filter(order=order, kind="review.passed").get()
        assert event.user == user_a and event.data["released"] == ["address.po_box"]

    def test_re_review_never_touches_another_tenants_orders(self, client_a, shop_b):
        theirs = paid_order(shop_b, address_line1="PO Box 4")
        run_action(client_a, Order, "re_review", [theirs.pk])
        theirs.refresh_from_db()
        assert theirs.status == OrderStatus.NEW and theirs.reviewed_at is None

    def test_edit_address_then_re_review(self, client_a, user_a, shop_a):
        order = paid_order(shop_a, address_line1="P.O. Box 12", postal_code="10001")
        orders_review(tenant=shop_a.tenant, order_ids=[order.pk])
        assert active_codes(order) == {"address.po_box", "address.zip_state_mismatch"}

        page = run_action(client_a, Order, "edit_address_re_review", [order.pk])
        assert page.status_code == 200
        assert page.templates[0].name == "admin/orders/order/address_form.html"
        assert b"address.po_box" in page.content
        prefix = f"order-{order.pk}-"
        form = {
            prefix + "recipient_name": "Jamie Buyer",
            prefix + "recipient_phone": "+14155550123",
            prefix + "address_line1": "1 Market Street",
            prefix + "address_line2": "",
            prefix + "city": "San Francisco",
            prefix + "state": "CA",
            prefix + "postal_code": "94105",
            prefix + "country": "US",
        }
        response = run_action(
            client_a, Order, "edit_address_re_review", [order.pk], apply="1", **form
        )
        assert response.status_code == 302
        order.refresh_from_db()
        assert order.status == OrderStatus.READY and active_codes(order) == set()
        assert order.address_line1 == "1 MARKET ST" and order.postal_code == "94105"
        edited = OrderEvent._base_manager.get(order=order, kind="address.edited")
        assert edited.user == user_a
        last = OrderEvent._base_manager.filter(order=order, kind="review.passed").get()
        assert last.user == user_a
        assert set(last.data["released"]) == {"address.po_box", "address.zip_state_mismatch"}

    def test_edit_address_form_errors_change_nothing(self, client_a, shop_a):
        order = paid_order(shop_a, address_line1="PO Box 1")
        prefix = f"order-{order.pk}-"
        response = run_action(
            client_a,
            Order,
            "edit_address_re_review",
            [order.pk],
            apply="1",
            **{prefix + "address_line1": "x", prefix + "country": "USA"},
        )
        assert response.status_code == 200
        order.refresh_from_db()
        assert order.address_line1 == "PO Box 1"

    def test_release_and_hold_actions_still_work(self, client_a, shop_a):
        order = paid_order(shop_a, address_line1="PO Box 1")
        orders_review(tenant=shop_a.tenant, order_ids=[order.pk])
        run_action(client_a, Order, "release_holds", [order.pk])
        order.refresh_from_db()
        assert order.status == OrderStatus.READY and active_codes(order) == set()
        run_action(
            client_a, Order, "hold_orders", [order.pk], apply="1", code="manual", message="x"
        )
        assert active_codes(order) == {"manual"}


class _FormFields(HTMLParser):
    """The values a browser would post back from the admin's change form."""

    def __init__(self):
        super().__init__()
        self.data: dict[str, object] = {}
        self._textarea = self._select = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        name = attrs.get("name")
        if tag == "input" and name and attrs.get("type") not in ("submit", "button", "file"):
            if attrs.get("type") in ("checkbox", "radio"):
                if "checked" in attrs:
                    self.data[name] = attrs.get("value", "on")
            else:
                self.data[name] = attrs.get("value") or ""
        elif tag == "textarea" and name:
            self._textarea = name
            self.data[name] = ""
        elif tag == "select" and name:
            self._select = name
            self.data.setdefault(name, "")
        elif tag == "option" and self._select and "selected" in attrs:
            self.data[self._select] = attrs.get("value") or ""

    def handle_endtag(self, tag):
        if tag == "textarea":
            self._textarea = None
        elif tag == "select":
            self._select = None

    def handle_data(self, data):
        if self._textarea:
            self.data[self._textarea] += data


def change_form_data(client, url) -> dict:
    response = client.get(url)
    assert response.status_code == 200
    parser = _FormFields()
    parser.feed(response.content.decode())
    parser.data.pop("csrfmiddlewaretoken", None)
    return parser.data


def test_fixing_the_address_in_the_change_form_re_reviews_with_the_user(
    client_a, user_a, shop_a, django_capture_on_commit_callbacks
):
    order = paid_order(shop_a, address_line1="PO Box 4")
    orders_review(tenant=shop_a.tenant, order_ids=[order.pk])
    assert active_codes(order) == {"address.po_box"}
    url = admin_url(Order, "change", order.pk)
    data = change_form_data(client_a, url)
    data["address_line1"] = "4 elm street"
    with django_capture_on_commit_callbacks(execute=True):
        response = client_a.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    order.refresh_from_db()
    assert order.status == OrderStatus.READY and active_codes(order) == set()
    assert order.address_line1 == "4 ELM ST"
    edited = OrderEvent._base_manager.get(order=order, kind="address.edited")
    assert edited.user == user_a
    assert edited.data["changes"]["address_line1"] == {"from": "PO Box 4", "to": "4 elm street"}
    passed = OrderEvent._base_manager.get(order=order, kind="review.passed")
    assert passed.user == user_a and passed.data["released"] == ["address.po_box"]


def test_an_order_page_opened_before_the_order_shipped_does_not_write_it_back(client_a, shop_a):
    """The packer opens an order's page; meanwhile the platform's sync says it shipped (its
    shipped time and platform status written). Saving the page with a note must not blank the
    shipped time and put the old platform status back: the save is refused, saying to reload;
    a page opened afterwards saves the note and keeps both."""
    order = paid_order(shop_a)
    url = admin_url(Order, "change", order.pk)
    stale = change_form_data(client_a, url)
    shipped_at = timezone.now().replace(microsecond=0)
    Order._base_manager.filter(pk=order.pk).update(
        shipped_at=shipped_at, platform_status="AWAITING_COLLECTION"
    )
    stale["seller_note"] = "call the buyer"

    refused = client_a.post(url, stale)

    assert refused.status_code == 200
    assert "changed since you opened" in str(refused.context["adminform"].form.errors)
    order.refresh_from_db()
    assert order.shipped_at == shipped_at and order.platform_status == "AWAITING_COLLECTION"
    assert order.seller_note == ""

    fresh = change_form_data(client_a, url)
    fresh["seller_note"] = "call the buyer"
    assert client_a.post(url, fresh).status_code == 302
    order.refresh_from_db()
    assert order.seller_note == "call the buyer" and order.shipped_at == shipped_at
