"""orders_review: every reason code held and not held, statuses, the event trail, idempotency,
re-review after an address edit, masked recipients, duplicates and the dry run."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from inventory.models import Reservation
from logistics.models import ShipmentStatus
from orders.holds import order_hold
from orders.models import Order, OrderEvent, OrderHold, OrderStatus, ReviewSettings
from orders.review import order_address_edit, orders_review, review_dry_run, review_settings_get
from tests.factories import (
    OrderFactory,
    OrderHoldFactory,
    OrderLineFactory,
    ReservationFactory,
    ShipmentFactory,
    ShopFactory,
    UserFactory,
)
from tkerp.tenancy import tenant_context

pytestmark = pytest.mark.django_db

CLEAN = {
    "recipient_name": "Jamie Buyer",
    "recipient_phone": "+14155550123",
    "address_line1": "1 Market St",
    "address_line2": "",
    "city": "San Francisco",
    "state": "CA",
    "postal_code": "94105",
    "country": "US",
    "buyer_note": "",
    "total": Decimal("24.98"),
}


@pytest.fixture
def shop(tenant_a):
    return ShopFactory(tenant=tenant_a, platform="tiktok")


@pytest.fixture
def make_order(shop):
    counter = iter(range(1, 10_000))

    def make(**fields):
        values = {**CLEAN, **fields}
        values.setdefault("paid_at", timezone.now())
        values.setdefault("placed_at", timezone.now() - timedelta(days=2 * next(counter)))
        order = OrderFactory(tenant=shop.tenant, shop=shop, **values)
        line = OrderLineFactory(order=order, tenant=shop.tenant)
        # Its stock is reserved (the pipeline's stock step ran): review may call it ready.
        ReservationFactory(tenant=shop.tenant, order=order, order_line=line)
        return order

    return make


def review(*orders, **kwargs):
    tenant = orders[0].tenant
    result = orders_review(tenant=tenant, order_ids=[order.pk for order in orders], **kwargs)
    for order in orders:
        order.refresh_from_db()
    return result


def active_codes(order):
    return set(
        OrderHold._base_manager.filter(order=order, released_at__isnull=True).values_list(
            "code", flat=True
        )
    )


# (order fields, expected codes); every code appears with a positive and a negative case.
CASES = [
    ({}, set()),
    ({"address_line1": "P.O. Box 12"}, {"address.po_box"}),
    ({"address_line1": "12 Box Elder Street"}, set()),
    (
        {
            "address_line1": "Unit 2050 Box 4190",
            "city": "APO",
            "state": "AE",
            "postal_code": "09012",
        },
        {"address.military"},
    ),
    ({"city": "Aptos", "postal_code": "95003"}, set()),
    ({"postal_code": "10001"}, {"address.zip_state_mismatch"}),
    ({"postal_code": "M5V 2T6"}, {"address.zip_state_mismatch"}),
    ({"postal_code": "941051234"}, set()),
    ({"city": ""}, {"address.incomplete"}),
    ({"postal_code": ""}, {"address.incomplete"}),
    ({"state": ""}, {"address.incomplete"}),
    (
        {
            "country": "GB",
            "state": "",
            "postal_code": "SW1A 1AA",
            "recipient_phone": "+442079460018",
        },
        set(),
    ),
    (
        {"country": "GB", "state": "", "postal_code": "12345", "recipient_phone": "+442079460018"},
        {"address.incomplete"},
    ),
    ({"address_line2": "Building " * 14}, {"address.too_long"}),
    ({"address_line2": "Apt 2B"}, set()),
    ({"recipient_phone": "12345"}, {"phone.invalid"}),
    ({"recipient_phone": ""}, {"phone.invalid"}),
    ({"recipient_phone": "(415) 555-0123"}, set()),
    ({"buyer_note": "Deliver &amp; call"}, {"buyer_note"}),
    ({"buyer_note": "   "}, set()),
    ({"total": Decimal("500.00")}, {"high_value"}),
    ({"total": Decimal("499.99")}, set()),
    ({"total": Decimal("900"), "currency": "EUR"}, set()),
]


@pytest.mark.parametrize(("fields", "codes"), CASES)
def test_each_reason_code(make_order, fields, codes):
    order = make_order(**fields)
    review(order)
    assert active_codes(order) == codes
    assert order.status == (OrderStatus.ON_HOLD if codes else OrderStatus.READY)
    event = OrderEvent._base_manager.get(order=order, kind__startswith="review.")
    assert event.kind == ("review.held" if codes else "review.passed")
    assert set(event.data["codes"]) == codes
    for hold in OrderHold._base_manager.filter(order=order):
        assert hold.message  # a readable reason each


@pytest.mark.parametrize(
    ("setting", "value", "fields"),
    [
        ("check_po_box", False, {"address_line1": "PO Box 1"}),
        ("check_military", False, {"city": "APO", "state": "AE", "postal_code": "09012"}),
        ("check_zip_state", False, {"postal_code": "10001"}),
        ("check_incomplete", False, {"city": ""}),
        ("check_too_long", False, {"address_line2": "x" * 130}),
        ("address_max_length", 200, {"address_line2": "x" * 130}),
        ("check_phone", False, {"recipient_phone": "1"}),
        ("hold_buyer_notes", False, {"buyer_note": "hi"}),
        ("check_high_value", False, {"total": Decimal("5000")}),
        ("high_value_threshold", Decimal("10000"), {"total": Decimal("5000")}),
    ],
)
def test_settings_switch_rules_off(tenant_a, make_order, setting, value, fields):
    settings = review_settings_get(tenant=tenant_a)
    setattr(settings, setting, value)
    settings.save()
    order = make_order(**fields)
    review(order)
    assert active_codes(order) == set()
    assert order.status == OrderStatus.READY


def test_normalises_and_keeps_the_original(make_order):
    order = make_order(
        address_line1="123  north main street",
        city="new york",
        state="New York",
        postal_code="100011234",
        recipient_phone="(212) 555-1234",
        original_address={"address_line1": "123  north main street", "from": "platform"},
    )
    review(order)
    assert (order.address_line1, order.city, order.state, order.postal_code) == (
        "123 N MAIN ST",
        "NEW YORK",
        "NY",
        "10001-1234",
    )
    assert order.recipient_phone == "+12125551234"
    assert order.original_address == {
        "address_line1": "123  north main street",
        "from": "platform",
    }
    assert order.address_normalised_at is not None
    assert order.status == OrderStatus.READY


def test_original_address_is_filled_when_no_door_stored_one(make_order):
    order = make_order(address_line1="1 market street", original_address={})
    review(order)
    assert order.original_address["address_line1"] == "1 market street"
    assert order.address_line1 == "1 MARKET ST"


def test_running_twice_adds_nothing(make_order):
    order = make_order(address_line1="PO Box 1", buyer_note="hello")
    review(order)
    holds, events = OrderHold._base_manager.count(), OrderEvent._base_manager.count()
    result = review(order)
    assert result.skipped == 1 and result.reviewed == 0
    assert (OrderHold._base_manager.count(), OrderEvent._base_manager.count()) == (holds, events)


def test_changed_lines_trigger_a_new_review(make_order, tenant_a):
    order = make_order()
    review(order)
    assert order.status == OrderStatus.READY
    line = order.lines.model._base_manager.filter(order=order).first()
    line.quantity = 40
    line.save()
    order.total = Decimal("800")
    order.save()
    result = review(order)
    assert result.reviewed == 1
    assert active_codes(order) == {"high_value"}


def test_only_new_ready_or_held_orders_are_reviewed(make_order):
    orders = [
        make_order(address_line1="PO Box 1", status=status)
        for status in (OrderStatus.ALLOCATED, OrderStatus.SHIPPED, OrderStatus.CANCELLED)
    ]
    review(*orders)
    for order, status in zip(
        orders, (OrderStatus.ALLOCATED, OrderStatus.SHIPPED, OrderStatus.CANCELLED), strict=True
    ):
        assert order.status == status
        assert active_codes(order) == set()
        assert order.reviewed_at is None


def test_unpaid_platform_orders_wait_for_payment(make_order):
    order = make_order(paid_at=None, address_line1="PO Box 1")
    review(order)
    assert order.status == OrderStatus.NEW and active_codes(order) == set()


def test_unpaid_manual_orders_wait_for_payment_too_and_cod_orders_do_not(tenant_a, make_order):
    manual = ShopFactory(tenant=tenant_a, platform="manual", platform_shop_id="")
    unpaid = OrderFactory(tenant=tenant_a, shop=manual, paid_at=None, **CLEAN)
    cod = make_order(paid_at=None, is_cod=True)  # sold: cash comes with the parcel
    review(unpaid, cod)
    assert unpaid.status == OrderStatus.NEW and unpaid.reviewed_at is None
    assert cod.status == OrderStatus.READY


def test_an_order_whose_stock_is_not_reserved_passes_but_waits_in_new(make_order):
    order = make_order()
    reservation = Reservation._base_manager.get(order=order)
    Reservation._base_manager.filter(pk=reservation.pk).delete()

    result = review(order)

    assert (order.status, result.ready, result.waiting) == (OrderStatus.NEW, 0, 1)
    assert order.reviewed_at is not None and active_codes(order) == set()
    event = OrderEvent._base_manager.get(order=order, kind="review.passed")
    assert "waiting for its stock to be reserved" in event.message

    # Its stock is reserved now (the pipeline's stock step ran): the next review, with nothing
    # else changed, makes it ready; one already ready with its stock is then left alone.
    ReservationFactory(tenant=order.tenant, order=order, order_line=reservation.order_line)
    assert review(order).ready == 1 and order.status == OrderStatus.READY
    assert review(order).skipped == 1


def test_a_ready_order_that_lost_its_stock_goes_back_to_new(make_order):
    order = make_order()
    review(order)
    assert order.status == OrderStatus.READY
    Reservation._base_manager.filter(order=order).update(state="released")

    review(order)

    assert order.status == OrderStatus.NEW


def test_masked_recipients_skip_address_checks(make_order):
    order = make_order(
        address_masked=True,
        recipient_name="J***y B***r",
        recipient_phone="(+1)415*****23",
        address_line1="PO Box 1",
        postal_code="",
        buyer_note="gift",
    )
    review(order)
    assert active_codes(order) == {"buyer_note"}  # rules that still apply do
    assert order.address_line1 == "PO Box 1"  # not "normalised"


def test_review_never_releases_manual_or_stock_holds(make_order, tenant_a):
    order = make_order()
    OrderHoldFactory(order=order, tenant=tenant_a, code="stock.short")
    manual = make_order(address_line1="PO Box 9")
    user = UserFactory()
    with tenant_context(tenant_a):
        order_hold(order=manual, code="address.po_box", message="checking", user=user)
    review(order, manual)
    assert active_codes(order) == {"stock.short"}
    assert order.status == OrderStatus.ON_HOLD
    manual.address_line1 = "1 Market St"
    manual.save()
    review(manual)
    assert active_codes(manual) == {"address.po_box"}  # a person's hold stays


def test_address_edit_then_re_review_releases_the_hold_with_the_user(make_order, tenant_a):
    order = make_order(address_line1="P.O. Box 12", postal_code="10001")
    OrderHoldFactory(order=order, tenant=tenant_a, code="stock.short")
    review(order)
    assert active_codes(order) == {"address.po_box", "address.zip_state_mismatch", "stock.short"}
    user = UserFactory()
    order_address_edit(
        order=order, values={"address_line1": "1 Market Street", "postal_code": "94105"}, user=user
    )
    order.refresh_from_db()
    assert active_codes(order) == {"stock.short"}
    released = OrderHold._base_manager.filter(order=order, released_at__isnull=False)
    assert {hold.code for hold in released} == {"address.po_box", "address.zip_state_mismatch"}
    assert all(hold.released_by == user for hold in released)
    edited = OrderEvent._base_manager.get(order=order, kind="address.edited")
    assert edited.user == user and edited.data["changes"]["postal_code"]["to"] == "94105"
    last = OrderEvent._base_manager.filter(order=order, kind__startswith="review.").first()
    assert last.user == user and last.kind == "review.passed"
    assert set(last.data["released"]) == {"address.po_box", "address.zip_state_mismatch"}
    assert order.address_line1 == "1 MARKET ST"
    assert order.status == OrderStatus.ON_HOLD  # stock.short is still there


def test_address_edit_clears_the_hold_and_the_order_becomes_ready(make_order):
    order = make_order(address_line1="PO Box 5")
    review(order)
    order_address_edit(order=order, values={"address_line1": "9 Pine Rd"}, user=UserFactory())
    order.refresh_from_db()
    assert order.status == OrderStatus.READY and active_codes(order) == set()


def test_duplicate_address_holds_both_sides_and_names_the_siblings(make_order, shop):
    now = timezone.now()
    first = make_order(placed_at=now - timedelta(hours=3))
    review(first)
    assert first.status == OrderStatus.READY
    second = make_order(placed_at=now, address_line1="1 market street")
    far = make_order(placed_at=now - timedelta(hours=40))  # outside the 24 h window
    review(second)
    first.refresh_from_db()
    assert active_codes(second) == {"duplicate_address"}
    assert active_codes(first) == {"duplicate_address"}
    message = OrderHold._base_manager.get(order=second).message
    assert str(first.pk) in message and str(far.pk) not in message
    assert first.status == second.status == OrderStatus.ON_HOLD
    review(far)
    assert active_codes(far) == set()


def test_orders_with_no_street_are_incomplete_not_duplicates_of_each_other(make_order):
    now = timezone.now()
    first = make_order(placed_at=now - timedelta(hours=1), address_line1="", address_line2="")
    second = make_order(placed_at=now, address_line1="", address_line2="")
    review(first)
    review(second)
    first.refresh_from_db()
    assert "address.incomplete" in active_codes(second)
    assert "duplicate_address" not in active_codes(first) | active_codes(second)


def test_duplicates_do_not_cross_tenants(make_order, tenant_b):
    order = make_order()
    review(order)
    other_shop = ShopFactory(tenant=tenant_b)
    other = OrderFactory(
        tenant=tenant_b, shop=other_shop, paid_at=timezone.now(), placed_at=order.placed_at, **CLEAN
    )
    review(other)
    assert active_codes(other) == set() and other.status == OrderStatus.READY


def test_settings_are_per_tenant_and_created_on_demand(tenant_a, tenant_b):
    a = review_settings_get(tenant=tenant_a)
    a.high_value_threshold = Decimal("10")
    a.save()
    b = review_settings_get(tenant=tenant_b)
    assert b.high_value_threshold == Decimal("500")
    assert ReviewSettings._base_manager.count() == 2
    assert review_settings_get(tenant=tenant_a).pk == a.pk


def test_dry_run_counts_proposed_settings_and_writes_nothing(tenant_a, make_order):
    make_order(address_line1="PO Box 1")
    make_order(buyer_note="hi")
    make_order(buyer_note="hello", total=Decimal("700"))
    make_order(placed_at=timezone.now() - timedelta(days=40), address_line1="PO Box 2")
    before = (
        OrderHold._base_manager.count(),
        OrderEvent._base_manager.count(),
        list(Order._base_manager.values_list("status", "address_line1", "review_fingerprint")),
    )
    proposed = ReviewSettings(tenant=tenant_a, hold_buyer_notes=False, high_value_threshold=600)
    summary = review_dry_run(tenant=tenant_a, settings=proposed, days=30)
    assert summary.orders == 3
    assert summary.by_code == {"address.po_box": 1, "high_value": 1}
    assert summary.held == 2
    assert summary.samples["high_value"][0][2].startswith("Total 700")
    defaults = review_dry_run(tenant=tenant_a, settings=ReviewSettings(tenant=tenant_a), days=60)
    assert defaults.by_code == {"address.po_box": 2, "buyer_note": 2, "high_value": 1}
    after = (
        OrderHold._base_manager.count(),
        OrderEvent._base_manager.count(),
        list(Order._base_manager.values_list("status", "address_line1", "review_fingerprint")),
    )
    assert after == before
    assert not ReviewSettings._base_manager.exists()


def test_a_batch_reviews_in_a_fixed_number_of_queries(make_order, django_assert_max_num_queries):
    orders = [make_order(address_line1="PO Box 1" if n % 3 else "2 Pine Rd") for n in range(30)]
    review_settings_get(tenant=orders[0].tenant)
    with django_assert_max_num_queries(17):  # COPY stages via a temp table (RLS)
        orders_review(tenant=orders[0].tenant, order_ids=[order.pk for order in orders])
    assert Order._base_manager.filter(status=OrderStatus.ON_HOLD).count() == 20


@pytest.mark.parametrize(
    ("platform", "platform_status", "partly"),
    [
        ("tiktok", "PARTIALLY_SHIPPING", True),
        ("tiktok", "AWAITING_SHIPMENT", False),
        ("amazon", "PartiallyShipped", True),
        ("amazon", "Unshipped", False),
        ("shopify", "paid/partial", True),
        ("shopify", "paid/partially_fulfilled", True),
        ("shopify", "paid/unfulfilled", False),
        ("ebay", "IN_PROGRESS", True),
        ("ebay", "IN_PROGRESS/CANCEL_REQUESTED", True),
        ("ebay", "NOT_STARTED", False),
        ("manual", "PARTIALLY_SHIPPING", False),  # no connector: never partly shipped
    ],
)
def test_each_platform_says_in_its_own_words_when_an_order_shipped_in_part(
    tenant_a, platform, platform_status, partly
):
    shop = ShopFactory(tenant=tenant_a, platform=platform)
    order = OrderFactory(
        tenant=tenant_a,
        shop=shop,
        platform_status=platform_status,
        paid_at=timezone.now(),
        **CLEAN,
    )
    ReservationFactory(
        tenant=tenant_a, order=order, order_line=OrderLineFactory(order=order, tenant=tenant_a)
    )
    review(order)
    assert active_codes(order) == ({"shipped.partly"} if partly else set())
    assert order.status == (OrderStatus.ON_HOLD if partly else OrderStatus.READY)


def test_an_order_first_seen_partly_shipped_waits_for_a_person(make_order):
    # Shipped in part outside tkerp (before the shop was connected, or by hand): tkerp would
    # send the lines already gone a second time.
    order = make_order(platform_status="PARTIALLY_SHIPPING")
    review(order)
    assert active_codes(order) == {"shipped.partly"}
    assert order.status == OrderStatus.ON_HOLD
    event = OrderEvent._base_manager.filter(order=order, kind="review.held").get()
    assert "PARTIALLY_SHIPPING" in event.message and "ship twice" in event.message


@pytest.mark.parametrize(
    "started",
    [
        ShipmentStatus.SHIPPED,
        # A label's number goes to the platform at once, which then counts that package shipped.
        ShipmentStatus.LABELLED,
        ShipmentStatus.SENT_TO_PROVIDER,
        ShipmentStatus.CONFIRMED,
    ],
)
def test_an_order_partly_shipped_by_its_own_parcel_is_not_held(make_order, started):
    # tkerp is fulfilling one parcel of a split order: the platform's partial status is its
    # doing, and the other parcel is still to go.
    order = make_order()
    review(order)
    ShipmentFactory(tenant=order.tenant, order=order, status=started, tracking_number="9400")
    ShipmentFactory(tenant=order.tenant, order=order, status=ShipmentStatus.PENDING)
    Order._base_manager.filter(pk=order.pk).update(platform_status="PARTIALLY_SHIPPING")
    review(order)
    assert active_codes(order) == set()
    assert order.status == OrderStatus.READY


def test_a_cancelled_parcel_is_not_tkerp_fulfilling_the_order(make_order):
    order = make_order(platform_status="PARTIALLY_SHIPPING")
    ShipmentFactory(tenant=order.tenant, order=order, status=ShipmentStatus.CANCELLED)
    review(order)
    assert active_codes(order) == {"shipped.partly"}


def test_an_order_that_turns_partly_shipped_elsewhere_is_reviewed_again_and_held(make_order):
    order = make_order()
    review(order)
    assert order.status == OrderStatus.READY
    Order._base_manager.filter(pk=order.pk).update(platform_status="PARTIALLY_SHIPPING")
    review(order)  # nothing else changed: the partial status alone brings it back to review
    assert active_codes(order) == {"shipped.partly"}
    assert order.status == OrderStatus.ON_HOLD
    # A person checked the lines and released it: it stays released while nothing changes.
    with tenant_context(order.tenant):
        from orders.holds import order_release

        order_release(order=order, codes=["shipped.partly"])
    order.refresh_from_db()
    review(order)
    assert active_codes(order) == set()
