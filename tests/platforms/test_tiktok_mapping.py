"""TikTok order detail -> PlatformOrder, on the official sample and edge cases (no database)."""

import copy
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from orders.models import OrderStatus
from shops.platforms.base import PlatformResponseError
from shops.platforms.tiktok import ORDER_STATUSES, map_cancellation, map_order, token_set

# The official order-detail sample ([F] OrderBatchGetOrderDetailResponse.json), trimmed.
OFFICIAL = {
    "buyer_email": "v2b2V5@chat.seller.tiktok.com",
    "buyer_message": "Please ship asap!",
    "cancel_order_sla_time": 1619621355,
    "create_time": 1619611561,
    "id": "576461413038785752",
    "is_buyer_request_cancel": False,
    "is_cod": False,
    "line_items": [
        {
            "currency": "IDR",
            "display_status": "TO_SHIP",
            "id": "577086512123755123",
            "item_tax": [{"tax_amount": "21.2", "tax_rate": "0.35", "tax_type": "SALES_TAX"}],
            "original_price": "0.01",
            "package_id": "1153132168123859123",
            "platform_discount": "0",
            "product_id": "1729582718312380123",
            "product_name": "Women's Winter Crochet Clothes",
            "sale_price": "0.01",
            "seller_discount": "0",
            "seller_sku": "red_iphone_256",
            "sku_id": "2729382476852921560",
            "sku_type": "PRE_ORDER",
        }
    ],
    "paid_time": 1619611563,
    "payment": {
        "currency": "IDR",
        "original_shipping_fee": "5000",
        "original_total_product_price": "5000",
        "platform_discount": "5000",
        "product_tax": "21.3",
        "seller_discount": "5000",
        "shipping_fee": "5000",
        "shipping_fee_tax": "11",
        "sub_total": "5000",
        "tax": "5000",
        "total_amount": "5000",
    },
    "recipient_address": {
        "address_detail": "Unit one building 8",
        "address_line1": "TikTok 5800 bristol Pkwy",
        "address_line2": "Suite 100",
        "address_line3": '""',
        "address_line4": '""',
        "district_info": [
            {"address_level": "L0", "address_level_name": "Country", "address_name": "UK"}
        ],
        "first_name": "David",
        "last_name": "Kong",
        "name": "David Kong",
        "phone_number": "(+1)213-***-1234",
        "postal_code": "95110",
        "region_code": "US",
    },
    "rts_sla_time": 1619611688,
    "rts_time": 1619611563,
    "seller_note": "seller note",
    "shipping_type": "TIKTOK",
    "status": "UNPAID",
    "update_time": 1619621355,
    "user_id": "7021436810468230477",
}


def unit(item_id: str, sku: str, price: str = "10", **extra) -> dict:
    return {
        "id": item_id,
        "sku_id": sku,
        "seller_sku": f"S-{sku}",
        "product_name": f"Product {sku}",
        "original_price": price,
        "sale_price": price,
        "seller_discount": "1",
        "platform_discount": "0.5",
        "item_tax": [{"tax_amount": "0.6"}],
        "display_status": "TO_SHIP",
        **extra,
    }


def seller_order(**changes) -> dict:
    order = copy.deepcopy(OFFICIAL)
    order.update(
        {
            "status": "AWAITING_SHIPMENT",
            "shipping_type": "SELLER",
            "recipient_address": {
                **OFFICIAL["recipient_address"],
                "phone_number": "(+1)2135550123",
                "district_info": [
                    {"address_level": "L0", "address_name": "United States"},
                    {"address_level": "L1", "address_name": "California"},
                    {"address_level": "L2", "address_name": "Santa Clara County"},
                    {"address_level": "L3", "address_name": "San Jose"},
                ],
            },
        }
    )
    order.update(changes)
    return order


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


class TestOfficialSample:
    def test_maps_money_times_and_flags(self):
        order = map_order(copy.deepcopy(OFFICIAL))
        assert order.platform_order_id == "576461413038785752"
        assert (order.platform_status, order.status) == ("UNPAID", OrderStatus.NEW)
        assert order.currency == "IDR"
        assert order.subtotal == Decimal("5000")
        assert order.tax == Decimal("5000")
        assert order.total == Decimal("5000")
        assert order.creator_commission == Decimal("0")
        assert order.updated_at == at(1619621355)
        assert order.placed_at == at(1619611561)
        assert order.paid_at == at(1619611563)
        assert order.ship_by == at(1619611688)
        assert order.buyer_note == "Please ship asap!"
        assert order.seller_note == "seller note"
        assert order.buyer_user_id == "7021436810468230477"
        assert order.is_presale  # line_items[].sku_type == PRE_ORDER
        assert order.cancel_answer_by is None  # no buyer request pending
        assert order.raw["id"] == OFFICIAL["id"]

    def test_unpaid_tiktok_shipped_address_is_masked_and_buyer_name_withheld(self):
        order = map_order(copy.deepcopy(OFFICIAL))
        assert order.address.masked
        assert order.buyer_name == ""
        # The literal `""` the sample carries for empty lines is not an address line.
        assert order.address.line2 == "Suite 100"


class TestAddress:
    def test_seller_shipped_paid_order_has_the_full_address(self):
        address = map_order(seller_order()).address
        assert not address.masked
        assert (address.name, address.phone) == ("David Kong", "(+1)2135550123")
        assert (address.line1, address.line2) == ("TikTok 5800 bristol Pkwy", "Suite 100")
        assert (address.city, address.state, address.postal_code, address.country) == (
            "San Jose",
            "California",
            "95110",
            "US",
        )

    @pytest.mark.parametrize(
        "changes",
        [
            {"status": "ON_HOLD"},
            {"status": "UNPAID"},
            {"shipping_type": "TIKTOK"},
            {"recipient_address": None},
        ],
    )
    def test_masked_cases(self, changes):
        order = seller_order(**changes)
        if changes.get("recipient_address", 1) is None:
            del order["recipient_address"]
        assert map_order(order).address.masked


class TestLines:
    def test_units_are_grouped_by_sku(self):
        order = map_order(
            seller_order(
                line_items=[
                    unit("577000000000000012", "A"),
                    unit("577000000000000003", "B", price="25.5"),
                    unit("577000000000000011", "A"),
                    unit("99000000000000099", "A"),  # shorter id: numerically the smallest
                ]
            )
        )
        first, second = order.lines
        assert first.platform_sku_id == "A"
        assert first.quantity == 3
        assert first.platform_line_id == "99000000000000099"
        assert first.platform_line_ids == [
            "99000000000000099",
            "577000000000000011",
            "577000000000000012",
        ]
        assert first.unit_price == Decimal("10")
        assert first.discount == Decimal("4.5")  # 3 x (1 + 0.5)
        assert first.tax == Decimal("1.8")
        assert first.total == Decimal("25.5")  # 3 x 10 - 4.5
        assert not first.is_cancelled
        assert (second.quantity, second.platform_line_id, second.total) == (
            1,
            "577000000000000003",
            Decimal("24.0"),
        )

    def test_a_cancelled_unit_leaves_the_group_but_not_its_stable_id(self):
        order = map_order(
            seller_order(
                line_items=[
                    unit("11", "A", display_status="CANCELLED"),
                    unit("12", "A"),
                    unit("13", "A"),
                ]
            )
        )
        (line,) = order.lines
        assert line.platform_line_id == "11"
        assert (line.quantity, line.platform_line_ids) == (2, ["12", "13"])
        assert not line.is_cancelled

    def test_all_units_cancelled_marks_the_line_cancelled(self):
        order = map_order(
            seller_order(
                line_items=[
                    unit("11", "A", display_status="CANCELLED"),
                    unit("12", "A", package_status="CANCELLED"),
                ]
            )
        )
        (line,) = order.lines
        assert line.is_cancelled
        assert (line.quantity, line.platform_line_ids) == (2, ["11", "12"])


class TestStatusAndFlags:
    @pytest.mark.parametrize(("tiktok", "ours"), sorted(ORDER_STATUSES.items()))
    def test_status_table(self, tiktok, ours):
        order = map_order(seller_order(status=tiktok))
        assert (order.platform_status, order.status) == (tiktok, ours)
        assert ours in OrderStatus.values

    def test_unknown_status_is_an_error_not_a_guess(self):
        with pytest.raises(PlatformResponseError, match="unknown status 'LOST'"):
            map_order(seller_order(status="LOST"))

    @pytest.mark.parametrize("when", [-62135596800, 253402300799, 946684799])
    def test_a_time_outside_the_accepted_years_is_an_error_naming_the_field(self, when):
        with pytest.raises(PlatformResponseError, match=r"create_time .* is not between") as error:
            map_order(seller_order(create_time=when))
        assert error.value.field == "create_time"

    def test_buyer_cancel_request(self):
        order = map_order(
            seller_order(
                is_buyer_request_cancel=True,
                request_cancel_time=1700000000,
                cancel_order_sla_time=1700172800,
            )
        )
        assert order.cancel_requested
        assert order.cancel_requested_at == at(1700000000)
        assert order.cancel_answer_by == at(1700172800)

    def test_creator_commission_when_present(self):
        order = seller_order()
        order["payment"]["creator_commission"] = "3.25"
        assert map_order(order).creator_commission == Decimal("3.25")

    def test_tax_falls_back_to_product_and_shipping_tax(self):
        order = seller_order()
        del order["payment"]["tax"]
        assert map_order(order).tax == Decimal("32.3")


class TestMalformed:
    @pytest.mark.parametrize(
        ("change", "message"),
        [
            ({"payment": {"sub_total": "12,50"}}, r"payment\.sub_total is not a decimal string"),
            ({"payment": {"total_amount": 1.5}}, r"payment\.total_amount is not a decimal"),
            ({"update_time": None}, "missing update_time"),
            ({"create_time": "yesterday"}, "create_time is not a Unix timestamp"),
            ({"line_items": [{"id": "1"}]}, r"line_items\[0\] has no id or sku_id"),
            ({"line_items": "x"}, "line_items is not a list"),
        ],
    )
    def test_bad_fields_name_the_field(self, change, message):
        order = seller_order()
        for key, value in change.items():
            if key == "payment":
                order["payment"].update(value)
            else:
                order[key] = value
        with pytest.raises(PlatformResponseError, match=message):
            map_order(order)


def test_cancellation_mapping():
    request = map_cancellation(
        {
            "cancel_id": "4035318504086604100",
            "order_id": "577087614418520388",
            "cancel_status": "CANCELLATION_REQUEST_PENDING",
            "cancel_reason_text": "Order created by mistake",
            "create_time": 1690451136,
            "cancel_line_items": [{"order_line_item_id": "576468844534141348"}],
            "seller_next_action_response": [
                {"action": "SELLER_RESPOND_CANCEL", "deadline": 1690554680}
            ],
        }
    )
    assert request.platform_order_id == "577087614418520388"
    assert request.reason == "Order created by mistake"
    assert request.requested_at == at(1690451136)
    assert request.answer_by == at(1690554680)
    assert request.platform_line_ids == ["576468844534141348"]


def test_token_expiries_are_absolute():
    tokens = token_set(
        {
            "access_token": "a",
            "access_token_expire_in": 1660556783,
            "refresh_token": "r",
            "refresh_token_expire_in": 1691487031,
        }
    )
    assert tokens.access_token_expires_at == at(1660556783)
    assert tokens.refresh_token_expires_at == at(1691487031)
