"""orders.ingest: the one idempotent upsert every platform order goes through; orders.sla."""

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test import override_settings

from orders import ingest as ingest_module
from orders.ingest import merged_status, orders_ingest
from orders.models import Order, OrderEvent, OrderLine, OrderStatus
from orders.sla import order_sla_compute, sla_deadlines
from shops.platforms.base import PlatformAddress, PlatformLine, PlatformOrder
from tests.factories import ListingFactory, OrderFactory, ShopFactory, SkuFactory
from tests.orders.admin_helpers import changelist_pks
from tkerp.tenancy import tenant_context

T0 = datetime(2026, 4, 12, 18, 0, tzinfo=UTC)


def address(**overrides) -> PlatformAddress:
    values = {
        "name": "Jamie Buyer",
        "phone": "(+1)4155550123",
        "line1": "1 Market St",
        "line2": "Apt 5",
        "city": "San Francisco",
        "state": "California",
        "postal_code": "94105",
        "country": "US",
    }
    values.update(overrides)
    raw = {"full_address": f"{values['line1']}, {values['city']}", **values}
    return PlatformAddress(**values, raw=raw)


def line(line_id="L1", *, sku="MUG-01", quantity=1, price="12.50", **overrides) -> PlatformLine:
    values = {
        "platform_line_id": line_id,
        "quantity": quantity,
        "seller_sku": sku,
        "product_name": f"Product {sku}",
        "unit_price": Decimal(price),
        "total": Decimal(price) * max(quantity, 0),
        "platform_line_ids": [f"{line_id}-{n}" for n in range(min(max(quantity, 0), 5))],
    }
    values.update(overrides)
    return PlatformLine(**values)


def platform_order(order_id="576001", *, updated=T0, lines=None, **overrides) -> PlatformOrder:
    values = {
        "platform_order_id": order_id,
        "platform_status": "AWAITING_SHIPMENT",
        "status": "new",
        "updated_at": updated,
        "placed_at": T0 - timedelta(minutes=5),
        "paid_at": T0 - timedelta(minutes=4),
        "currency": "USD",
        "subtotal": Decimal("25.00"),
        "shipping_fee": Decimal("4.99"),
        "tax": Decimal("2.10"),
        "total": Decimal("32.09"),
        "buyer_name": "Jamie",
        "buyer_note": "",
        "address": address(),
        "lines": lines if lines is not None else [line("L1", quantity=2)],
        "raw": {"id": order_id, "status": "AWAITING_SHIPMENT"},
    }
    values.update(overrides)
    return PlatformOrder(**values)


@pytest.fixture(autouse=True)
def pipeline(monkeypatch):
    """The upsert on its own: stock and review (orders.pipeline), which ingest hands the stored
    orders to, have their own suites. Records what ingest handed over."""
    handed: list[tuple[list[int], list[int]]] = []

    def record(*, shop, created_ids, updated_ids):
        handed.append((list(created_ids), list(updated_ids)))

    monkeypatch.setattr(ingest_module, "orders_after_ingest", record)
    return handed


@pytest.fixture
def shop(tenant_a):
    return ShopFactory(tenant=tenant_a, name="Alpha TikTok", ship_by_hours=24)


def ingest(shop, orders, source="poll"):
    return orders_ingest(shop=shop, platform_orders=orders, source=source)


@pytest.mark.django_db
class TestCreate:
    def test_a_new_order_is_stored_with_lines_address_money_and_an_event(self, shop):
        sku = SkuFactory(tenant=shop.tenant, code="MUG-01")

        result = ingest(shop, [platform_order()])

        assert result.created == 1 and result.updated == 0 and result.skipped == 0
        with tenant_context(shop.tenant):
            order = Order.objects.get(pk=result.created_ids[0])
            assert order.shop == shop and order.platform_order_id == "576001"
            assert order.status == OrderStatus.NEW
            assert order.platform_status == "AWAITING_SHIPMENT"
            assert order.total == Decimal("32.09") and order.currency == "USD"
            assert order.platform_updated_at == T0
            assert order.address_line1 == "1 Market St" and order.state == "California"
            assert order.original_address["full_address"] == "1 Market St, San Francisco"
            assert order.address_masked is False
            assert order.raw == {"id": "576001", "status": "AWAITING_SHIPMENT"}
            (order_line,) = order.lines.all()
            assert order_line.quantity == 2 and order_line.sku == sku
            assert order_line.unit_price == Decimal("12.50")
            assert order_line.platform_line_ids == ["L1-0", "L1-1"]
            (event,) = order.events.all()
            assert event.kind == "ingested" and event.source == "platform"
            assert event.data["source"] == "poll"

    def test_a_masked_address_is_flagged(self, shop):
        masked = address(name="J***e", phone="(+1)415*****23", masked=True)
        result = ingest(shop, [platform_order(address=masked)])
        with tenant_context(shop.tenant):
            order = Order.objects.get(pk=result.created_ids[0])
        assert order.address_masked is True and order.recipient_name == "J***e"

    @pytest.mark.parametrize("status", ["shipped", "in_transit", "delivered", "cancelled"])
    def test_an_order_first_seen_past_new_keeps_the_platform_status(self, shop, status):
        result = ingest(shop, [platform_order(status=status, platform_status="X")])
        with tenant_context(shop.tenant):
            assert Order.objects.get(pk=result.created_ids[0]).status == status

    def test_lines_link_to_the_tenants_sku_by_code_else_by_the_listing(self, shop, tenant_b):
        SkuFactory(tenant=tenant_b, code="MUG-01")  # same code, other tenant: never linked
        listed = ListingFactory(tenant=shop.tenant, shop=shop, platform_sku_id="1730999")
        po = platform_order(
            lines=[
                line("L1", sku="MUG-01"),
                line("L2", sku="", platform_sku_id="1730999"),
            ]
        )
        result = ingest(shop, [po])
        with tenant_context(shop.tenant):
            lines = {li.platform_line_id: li for li in OrderLine.objects.all()}
        assert result.created == 1
        assert lines["L1"].sku_id is None
        assert lines["L2"].sku_id == listed.sku_id

    def test_the_same_order_twice_in_one_page_is_stored_once_the_newer_winning(self, shop):
        older = platform_order(updated=T0, platform_status="AWAITING_SHIPMENT")
        newer = platform_order(updated=T0 + timedelta(minutes=1), platform_status="IN_TRANSIT")
        result = ingest(shop, [newer, older])
        with tenant_context(shop.tenant):
            assert Order.objects.count() == 1
            assert Order.objects.get().platform_status == "IN_TRANSIT"
        assert result.created == 1 and result.skipped == 1

    def test_the_same_platform_id_on_another_tenants_shop_is_another_order(self, shop, tenant_b):
        shop_b = ShopFactory(tenant=tenant_b)
        ingest(shop, [platform_order()])
        ingest(shop_b, [platform_order()])
        with tenant_context(shop.tenant):
            assert Order.objects.count() == 1
        with tenant_context(tenant_b):
            assert Order.objects.get().shop == shop_b


@pytest.mark.django_db
def test_stored_orders_are_handed_to_stock_and_review(shop, pipeline):
    created = ingest(shop, [platform_order("A"), platform_order("B")])
    updated = ingest(shop, [platform_order("A", updated=T0 + timedelta(minutes=1))])
    ingest(shop, [platform_order("B")])  # nothing new: nothing handed over
    assert pipeline == [
        (created.created_ids, []),
        ([], updated.updated_ids),
        ([], []),
    ]


@pytest.mark.django_db
class TestIdempotence:
    def test_ingesting_the_same_page_twice_changes_nothing(self, shop):
        page = [platform_order(f"57600{n}") for n in range(5)]
        ingest(shop, page)
        with tenant_context(shop.tenant):
            before = list(Order.objects.values_list("id", "updated_at").order_by("id"))
            lines_before = OrderLine.objects.count()
            events_before = OrderEvent.objects.count()

        result = ingest(shop, page)

        assert (result.created, result.updated, result.skipped) == (0, 0, 5)
        with tenant_context(shop.tenant):
            assert list(Order.objects.values_list("id", "updated_at").order_by("id")) == before
            assert OrderLine.objects.count() == lines_before
            assert OrderEvent.objects.count() == events_before

    def test_an_update_older_than_the_stored_one_is_ignored(self, shop):
        ingest(
            shop, [platform_order(updated=T0, platform_status="IN_TRANSIT", status="in_transit")]
        )
        stale = platform_order(
            updated=T0 - timedelta(minutes=10), platform_status="AWAITING_SHIPMENT"
        )
        result = ingest(shop, [stale])
        with tenant_context(shop.tenant):
            order = Order.objects.get()
        assert result.skipped == 1 and result.updated == 0
        assert order.platform_status == "IN_TRANSIT" and order.platform_updated_at == T0

    def test_a_status_change_within_the_same_second_is_applied_forward_only(self, shop):
        ingest(shop, [platform_order(updated=T0, platform_status="UNPAID")])
        same_second = platform_order(
            updated=T0, status="cancelled", platform_status="CANCELLED", cancelled_at=T0
        )
        assert ingest(shop, [same_second]).updated == 1
        # A lagging copy of the earlier version (same second) must not undo the cancellation.
        lagging = platform_order(updated=T0, platform_status="UNPAID")
        assert ingest(shop, [lagging]).skipped == 1
        with tenant_context(shop.tenant):
            order = Order.objects.get()
        assert order.status == "cancelled" and order.platform_status == "CANCELLED"

    def test_a_lagging_unpaid_copy_within_the_same_second_does_not_undo_the_payment(self, shop):
        # Placed and paid within one second: both versions carry the same update time.
        ingest(shop, [platform_order(updated=T0, platform_status="UNPAID", paid_at=None)])
        paid = platform_order(updated=T0, platform_status="AWAITING_SHIPMENT")
        assert ingest(shop, [paid]).updated == 1
        # The platform's lagging search index still lists the unpaid version.
        lagging = platform_order(updated=T0, platform_status="UNPAID", paid_at=None)
        assert ingest(shop, [lagging]).skipped == 1
        with tenant_context(shop.tenant):
            order = Order.objects.get()
        assert order.platform_status == "AWAITING_SHIPMENT" and order.paid_at == paid.paid_at

    def test_a_newer_update_is_applied_with_a_platform_update_event(self, shop):
        ingest(shop, [platform_order()])
        newer = platform_order(
            updated=T0 + timedelta(hours=1),
            platform_status="IN_TRANSIT",
            status="in_transit",
            total=Decimal("30.00"),
        )
        result = ingest(shop, [newer], source="webhook")
        with tenant_context(shop.tenant):
            order = Order.objects.get()
            event = order.events.get(kind="platform_update")
        assert result.updated_ids == [order.pk]
        assert order.status == "in_transit" and order.total == Decimal("30.00")
        assert event.data["platform_status_from"] == "AWAITING_SHIPMENT"
        assert event.data["platform_status_to"] == "IN_TRANSIT"
        assert event.data["source"] == "webhook"
        assert "AWAITING_SHIPMENT → IN_TRANSIT" in event.message


@pytest.mark.django_db
class TestStatusMerge:
    @pytest.mark.parametrize(
        ("current", "incoming", "expected"),
        [
            ("new", "new", "new"),
            ("on_hold", "new", "on_hold"),
            ("ready", "new", "ready"),
            ("allocated", "new", "allocated"),
            ("allocated", "shipped", "shipped"),
            ("on_hold", "cancelled", "cancelled"),
            ("shipped", "in_transit", "in_transit"),
            ("delivered", "shipped", "delivered"),
            ("in_transit", "shipped", "in_transit"),
            ("cancelled", "new", "cancelled"),
            ("cancelled", "shipped", "cancelled"),
        ],
    )
    def test_merged_status(self, current, incoming, expected):
        assert merged_status(current, incoming) == expected

    def test_a_platform_new_keeps_our_hold_and_a_cancellation_wins(self, shop):
        ingest(shop, [platform_order()])
        with tenant_context(shop.tenant):
            Order.objects.update(status=OrderStatus.ON_HOLD)
        ingest(shop, [platform_order(updated=T0 + timedelta(minutes=1), buyer_note="ring")])
        with tenant_context(shop.tenant):
            assert Order.objects.get().status == OrderStatus.ON_HOLD
            assert Order.objects.get().buyer_note == "ring"
        cancelled = platform_order(
            updated=T0 + timedelta(minutes=2),
            status="cancelled",
            platform_status="CANCELLED",
            cancelled_at=T0 + timedelta(minutes=2),
        )
        ingest(shop, [cancelled])
        with tenant_context(shop.tenant):
            order = Order.objects.get()
        assert order.status == OrderStatus.CANCELLED
        assert order.cancelled_at == T0 + timedelta(minutes=2)


@pytest.mark.django_db
class TestLinesAndAddress:
    def test_lines_are_updated_added_and_cancelled_never_deleted(self, shop):
        ingest(shop, [platform_order(lines=[line("L1", quantity=1), line("L2", sku="CAP")])])
        changed = platform_order(
            updated=T0 + timedelta(minutes=1),
            lines=[line("L1", quantity=3), line("L3", sku="PIN")],
        )
        result = ingest(shop, [changed])
        with tenant_context(shop.tenant):
            lines = {li.platform_line_id: li for li in OrderLine.objects.all()}
        assert result.updated == 1
        assert set(lines) == {"L1", "L2", "L3"}
        assert lines["L1"].quantity == 3 and not lines["L1"].is_cancelled
        assert lines["L2"].is_cancelled
        assert lines["L3"].quantity == 1 and not lines["L3"].is_cancelled

    def test_a_hand_fixed_sku_mapping_survives_an_update(self, shop):
        ingest(shop, [platform_order(lines=[line("L1", sku="UNKNOWN")])])
        fixed = SkuFactory(tenant=shop.tenant, code="REAL")
        with tenant_context(shop.tenant):
            OrderLine.objects.update(sku=fixed)
        ingest(shop, [platform_order(updated=T0 + timedelta(minutes=1), lines=[line("L1")])])
        with tenant_context(shop.tenant):
            assert OrderLine.objects.get().sku == fixed

    def test_a_normalised_address_survives_an_update_with_the_same_platform_address(self, shop):
        ingest(shop, [platform_order()])
        with tenant_context(shop.tenant):
            Order.objects.update(state="CA", recipient_phone="+14155550123")
        ingest(shop, [platform_order(updated=T0 + timedelta(minutes=1), buyer_note="hi")])
        with tenant_context(shop.tenant):
            order = Order.objects.get()
        assert order.state == "CA" and order.recipient_phone == "+14155550123"

    def test_a_changed_platform_address_replaces_the_stored_one(self, shop):
        ingest(shop, [platform_order()])
        with tenant_context(shop.tenant):
            Order.objects.update(state="CA")
        moved = platform_order(
            updated=T0 + timedelta(minutes=1), address=address(line1="9 Pine St", state="Oregon")
        )
        ingest(shop, [moved])
        with tenant_context(shop.tenant):
            order = Order.objects.get()
            event = order.events.get(kind="platform_update")
        assert order.address_line1 == "9 Pine St" and order.state == "Oregon"
        assert event.data["address_changed"] is True


@pytest.mark.django_db
class TestValidation:
    @pytest.mark.parametrize(
        ("overrides", "field", "message"),
        [
            ({"platform_order_id": ""}, "platform_order_id", "missing"),
            ({"lines": [line("L1", quantity=0)]}, "lines[0].quantity", "at least 1"),
            ({"lines": [line("L1", quantity=-2)]}, "lines[0].quantity", "at least 1"),
            ({"lines": [line("L1", quantity=10**7)]}, "lines[0].quantity", "implausibly large"),
            ({"total": Decimal("1e12")}, "total", "out of range"),
            ({"total": Decimal("-5")}, "total", "negative"),
            ({"subtotal": Decimal("NaN")}, "subtotal", "finite"),
            ({"currency": "dollars"}, "currency", "not a currency code"),
            ({"status": "weird"}, "status", "unknown status"),
            ({"updated_at": datetime(2026, 4, 12, 18, 0)}, "updated_at", "timezone-aware"),
            ({"lines": [line("L1"), line("L1")]}, "lines[1].platform_line_id", "appears twice"),
            ({"placed_at": datetime(1, 1, 1, tzinfo=UTC)}, "placed_at", "is not between"),
            ({"updated_at": datetime(9999, 12, 31, tzinfo=UTC)}, "updated_at", "is not between"),
            ({"shipped_at": datetime(1999, 12, 31, tzinfo=UTC)}, "shipped_at", "is not between"),
            ({"delivered_at": datetime(2026, 4, 13, 9, 0)}, "delivered_at", "timezone-aware"),
            ({"lines": [line("L\x001")]}, "lines[0].platform_line_id", "NUL"),
            (
                {"lines": [line("L1", platform_line_ids=["L1-0", "L1-\x00"])]},
                "lines[0].platform_line_ids",
                "NUL",
            ),
        ],
    )
    def test_a_bad_order_is_rejected_by_name_and_the_rest_of_the_page_goes_in(
        self, shop, overrides, field, message
    ):
        bad = platform_order("BAD-1", **overrides)
        good = platform_order("GOOD-1")

        result = ingest(shop, [bad, good])

        assert result.created == 1
        (reject,) = result.rejects
        assert reject.field == field and message in reject.message
        expected_id = overrides.get("platform_order_id", "BAD-1")
        assert reject.platform_order_id == expected_id
        assert f"order {expected_id or '(no id)'}: {field}" in str(reject)
        with tenant_context(shop.tenant):
            assert list(Order.objects.values_list("platform_order_id", flat=True)) == ["GOOD-1"]

    def test_an_order_from_year_one_is_rejected_by_name_and_the_order_list_still_shows(
        self, shop, client_a
    ):
        shop.tenant.timezone = "America/New_York"
        shop.tenant.save()
        year_one = datetime(1, 1, 1, tzinfo=UTC)
        orders = [platform_order("Y1", placed_at=year_one, paid_at=year_one), platform_order("OK")]

        result = ingest(shop, orders)

        assert result.created == 1
        (reject,) = result.rejects
        assert (reject.platform_order_id, reject.field) == ("Y1", "placed_at")
        assert "0001-01-01" in reject.message
        assert changelist_pks(client_a, Order) == set(result.created_ids)

    def test_an_impossible_update_time_does_not_move_the_watermark(self, shop):
        late = platform_order("LATE", updated=datetime(9999, 1, 1, tzinfo=UTC))
        result = ingest(shop, [late, platform_order("OK")])
        assert result.max_updated_at == T0 and len(result.rejects) == 1

    def test_a_nul_in_the_order_id_rejects_that_order_by_its_printable_name(self, shop):
        result = ingest(shop, [platform_order("BAD\x00-1"), platform_order("GOOD-1")])

        assert result.created == 1
        (reject,) = result.rejects
        assert (reject.platform_order_id, reject.field) == ("BAD-1", "platform_order_id")
        assert "NUL" in reject.message

    def test_a_nul_in_free_text_or_the_payload_is_dropped_and_nothing_is_lost(self, shop):
        SkuFactory(tenant=shop.tenant, code="MUG-01")
        bad = platform_order(
            "BAD-1",
            platform_status="AWAITING\x00_SHIPMENT",
            buyer_name="Ja\x00mie",
            buyer_note="hi\x00",
            seller_note="\x00",
            address=address(line1="1 Market\x00 St", city="San\x00 Francisco"),
            lines=[line("L1", sku="MUG-\x0001", product_name="Mug\x00", quantity=2)],
            raw={"id": "BAD-1", "note": "hi\x00", "odd\x00key": ["a\x00", {"b": "\x00"}]},
        )

        result = ingest(shop, [bad, platform_order("GOOD-1")])

        assert result.created == 2 and not result.rejects
        with tenant_context(shop.tenant):
            order = Order.objects.get(platform_order_id="BAD-1")
            (order_line,) = order.lines.all()
            event = order.events.get(kind="ingested")
        assert (order.buyer_name, order.buyer_note, order.seller_note) == ("Jamie", "hi", "")
        assert order.platform_status == "AWAITING_SHIPMENT"
        assert "AWAITING_SHIPMENT" in event.message
        assert (order.address_line1, order.city) == ("1 Market St", "San Francisco")
        assert order.original_address["line1"] == "1 Market St"
        assert order.raw == {"id": "BAD-1", "note": "hi", "oddkey": ["a", {"b": ""}]}
        assert (order_line.seller_sku, order_line.product_name) == ("MUG-01", "Mug")
        assert order_line.sku is not None  # the SKU still resolves

        # The same order again, NULs and all: already stored, not an address change.
        again = ingest(shop, [bad])
        assert again.skipped == 1 and not again.rejects

    def test_a_lone_surrogate_in_free_text_is_replaced_and_nothing_is_lost(self, shop):
        # JSON's "\ud83d" (an emoji cut in half by a platform's UTF-16 truncation) decodes to a
        # lone surrogate, which UTF-8 (and so PostgreSQL) cannot hold.
        odd = platform_order(
            "ODD-1",
            buyer_note="gift \ud83d",
            address=address(line1="1 Market St \udc00"),
            lines=[line("L1", product_name="Mug \ud83d")],
            raw={"id": "ODD-1", "buyer_message": "gift \ud83d", "\ud800": ["\udfff"]},
        )

        result = ingest(shop, [odd, platform_order("GOOD-1")])

        assert result.created == 2 and not result.rejects
        with tenant_context(shop.tenant):
            order = Order.objects.get(platform_order_id="ODD-1")
            assert order.lines.get().product_name == "Mug \ufffd"
        assert (order.buyer_note, order.address_line1) == ("gift \ufffd", "1 Market St \ufffd")
        assert order.raw == {"id": "ODD-1", "buyer_message": "gift \ufffd", "\ufffd": ["\ufffd"]}

    def test_a_lone_surrogate_in_an_id_rejects_that_order_only(self, shop):
        result = ingest(
            shop,
            [
                platform_order("BAD-\ud83d"),
                platform_order("BAD-2", lines=[line("L\udc00")]),
                platform_order("GOOD-1"),
            ],
        )

        assert result.created == 1
        assert [reject.field for reject in result.rejects] == [
            "platform_order_id",
            "lines[0].platform_line_id",
        ]

    def test_overlong_free_text_is_cut_to_fit_not_a_reason_to_lose_the_order(self, shop):
        po = platform_order(buyer_name="x" * 500, lines=[line("L1", product_name="p" * 400)])
        result = ingest(shop, [po])
        assert result.created == 1 and not result.rejects
        with tenant_context(shop.tenant):
            assert len(Order.objects.get().buyer_name) == 200
            assert len(OrderLine.objects.get().product_name) == 255

    def test_max_updated_at_covers_every_order_seen(self, shop):
        result = ingest(
            shop,
            [
                platform_order("A", updated=T0),
                platform_order("B", updated=T0 + timedelta(minutes=3), currency="??"),
            ],
        )
        assert result.max_updated_at == T0 + timedelta(minutes=3)


@pytest.mark.django_db
class TestThroughput:
    def test_a_page_of_100_new_orders_takes_a_handful_of_queries(
        self, shop, django_assert_max_num_queries
    ):
        for code in ("MUG-01", "CAP"):
            SkuFactory(tenant=shop.tenant, code=code)
        page = [
            platform_order(f"9{n:05d}", lines=[line("L1"), line("L2", sku="CAP")])
            for n in range(100)
        ]
        shop.tenant  # noqa: B018 - the shop arrives with its tenant loaded in real callers
        with django_assert_max_num_queries(17):  # COPY stages via a temp table (RLS)
            result = ingest(shop, page)
        assert result.created == 100

    def test_a_page_of_100_updates_takes_a_handful_of_queries(
        self, shop, django_assert_max_num_queries
    ):
        ingest(shop, [platform_order(f"9{n:05d}") for n in range(100)])
        page = [
            platform_order(
                f"9{n:05d}",
                updated=T0 + timedelta(minutes=1),
                status="shipped",
                lines=[line("L1", quantity=3)],
            )
            for n in range(100)
        ]
        with django_assert_max_num_queries(12):
            result = ingest(shop, page)
        assert result.updated == 100
        with tenant_context(shop.tenant):
            assert set(OrderLine.objects.values_list("quantity", flat=True)) == {3}
            assert set(Order.objects.values_list("status", flat=True)) == {"shipped"}


@pytest.mark.django_db(transaction=True)
def test_two_racing_ingests_of_the_same_order_store_it_once(tenant_a):
    """A webhook and a poll storing one order at the same instant: one order, one set of lines."""
    shop = ShopFactory(tenant=tenant_a)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker(source: str, updated: datetime) -> None:
        try:
            barrier.wait(timeout=10)
            po = platform_order(updated=updated, lines=[line("L1"), line("L2", sku="CAP")])
            orders_ingest(shop=shop, platform_orders=[po], source=source)
        except BaseException as exc:  # re-raised in the main thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=worker, args=("webhook", T0 + timedelta(seconds=1))),
        threading.Thread(target=worker, args=("poll", T0)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    with tenant_context(tenant_a):
        assert Order.objects.count() == 1
        assert sorted(OrderLine.objects.values_list("platform_line_id", flat=True)) == [
            "L1",
            "L2",
        ]
        # Whichever came second: the newer platform update is what is stored.
        assert Order.objects.get().platform_updated_at == T0 + timedelta(seconds=1)


class TestSla:
    def test_the_platforms_deadline_wins(self):
        deadlines = sla_deadlines(
            paid_at=T0,
            placed_at=T0,
            is_presale=False,
            ship_by_hours=24,
            presale_ship_by_hours=72,
            platform_ship_by=T0 + timedelta(hours=30),
        )
        assert deadlines.ship_by == T0 + timedelta(hours=30)

    def test_else_payment_plus_the_shop_policy(self):
        deadlines = sla_deadlines(
            paid_at=T0,
            placed_at=T0 - timedelta(hours=1),
            is_presale=False,
            ship_by_hours=48,
            presale_ship_by_hours=72,
        )
        assert deadlines.ship_by == T0 + timedelta(hours=48)

    def test_pre_sale_orders_get_the_pre_sale_hours(self):
        deadlines = sla_deadlines(
            paid_at=T0, placed_at=None, is_presale=True, ship_by_hours=24, presale_ship_by_hours=72
        )
        assert deadlines.ship_by == T0 + timedelta(hours=72)

    def test_unpaid_orders_count_from_placement_and_none_without_either(self):
        placed = sla_deadlines(
            paid_at=None, placed_at=T0, is_presale=False, ship_by_hours=24, presale_ship_by_hours=72
        )
        assert placed.ship_by == T0 + timedelta(hours=24)
        nothing = sla_deadlines(
            paid_at=None,
            placed_at=None,
            is_presale=False,
            ship_by_hours=24,
            presale_ship_by_hours=72,
        )
        assert nothing.ship_by is None and nothing.tracking_by is None

    @override_settings(TKERP_TRACKING_UPLOAD_HOURS=48, TKERP_CANCEL_ANSWER_HOURS=36)
    def test_tracking_and_cancel_answer_clocks_come_from_settings(self):
        deadlines = sla_deadlines(
            paid_at=T0,
            placed_at=None,
            is_presale=False,
            ship_by_hours=24,
            presale_ship_by_hours=72,
            cancel_requested_at=T0 + timedelta(hours=2),
        )
        assert deadlines.tracking_by == T0 + timedelta(hours=48)
        assert deadlines.cancel_answer_by == T0 + timedelta(hours=38)

    def test_the_platforms_cancel_answer_deadline_wins(self):
        deadlines = sla_deadlines(
            paid_at=T0,
            placed_at=None,
            is_presale=False,
            ship_by_hours=24,
            presale_ship_by_hours=72,
            cancel_requested_at=T0,
            platform_cancel_answer_by=T0 + timedelta(hours=5),
        )
        assert deadlines.cancel_answer_by == T0 + timedelta(hours=5)
        assert (
            sla_deadlines(
                paid_at=T0,
                placed_at=None,
                is_presale=False,
                ship_by_hours=24,
                presale_ship_by_hours=72,
            ).cancel_answer_by
            is None
        )

    @pytest.mark.django_db
    def test_order_sla_compute_uses_the_orders_shop_policy(self):
        order = OrderFactory(paid_at=T0, is_presale=False, shop__ship_by_hours=48)
        deadlines = order_sla_compute(order=order, shop=order.shop)
        assert deadlines.ship_by == T0 + timedelta(hours=48)

    @pytest.mark.django_db
    def test_ingest_stores_the_clocks_and_a_cancel_request(self, shop):
        result = ingest(
            shop,
            [
                platform_order("A", paid_at=T0),
                platform_order(
                    "B",
                    paid_at=T0,
                    ship_by=T0 + timedelta(hours=20),
                    cancel_requested=True,
                    cancel_requested_at=T0 + timedelta(hours=1),
                ),
            ],
        )
        with tenant_context(shop.tenant):
            a, b = (Order.objects.get(pk=pk) for pk in result.created_ids)
            assert b.events.filter(kind="cancel_requested").count() == 1
        assert a.ship_by == T0 + timedelta(hours=24) and a.cancel_answer_by is None
        assert a.tracking_by == T0 + timedelta(hours=48)
        assert b.ship_by == T0 + timedelta(hours=20)
        assert b.cancel_answer_by == T0 + timedelta(hours=49)
