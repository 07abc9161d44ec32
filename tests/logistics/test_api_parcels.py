"""The provider API's parcels: what a provider sees, accepting, rejecting, shipping, events."""

import base64

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from inventory.models import Reservation, ReservationState, StockLevel
from logistics.models import InterceptState, ParcelEvent, Shipment, ShipmentStatus
from logistics.providers import provider_parcels
from orders.models import Order, OrderHold, OrderStatus
from tests.factories import SupplierItemFactory
from tests.logistics.api_world import (
    UPS_NUMBER,
    USPS_NUMBER,
    USPS_NUMBER_2,
    Api,
    provider_world,
    routed_order,
)
from tkerp.models import Alert
from tkerp.tenancy import tenant_context

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(tenant_a):
    return provider_world(tenant_a)


@pytest.fixture
def api(world):
    return Api(world["key"])


def level(world, sku, warehouse="wh"):
    with tenant_context(world["tenant"]):
        return StockLevel.objects.get(sku=world[sku], warehouse=world[warehouse])


def test_the_list_shows_only_the_providers_parcels_with_lines_and_item_codes(world, api):
    response = api.get("/api/v1/parcels/")

    assert response.status_code == 200
    results = response.json()["results"]
    assert [p["id"] for p in results] == [world["parcel"].pk]
    parcel = results[0]
    assert parcel["warehouse"] == "A-WH"
    assert parcel["service"] == {"carrier": "usps", "code": "ground", "name": "Ground"}
    assert parcel["recipient"]["postal_code"] == "94105"
    lines = parcel["lines"]
    assert sorted((li["sku"], li["quantity"], li["supplier_item_code"]) for li in lines) == [
        ("A-CAP", 2, None),
        ("A-MUG", 1, "X-MUG"),
    ]
    assert parcel["deadlines"]["acknowledge_by"] is not None
    assert parcel["deadlines"]["ship_by"] is not None


def test_postgresql_writes_a_parcel_as_python_would(world, api):
    """The list's parcels are written as JSON by PostgreSQL (logistics.api.serializers): every
    time as `iso()` writes it (UTC, `Z`, microseconds only when there are some), the deadlines
    from the provider's windows, no service as null, the same parcel in the list and alone."""
    from datetime import UTC, datetime, timedelta

    from logistics.api.serializers import iso

    parcel, provider = world["parcel"], world["prv"]
    whole = datetime(2026, 12, 3, 9, 12, 44, tzinfo=UTC)
    with tenant_context(world["tenant"]):
        Shipment.objects.filter(pk=parcel.pk).update(
            dispatched_at=whole, acknowledged_at=whole + timedelta(microseconds=120), service=None
        )
        Order.objects.filter(pk=parcel.order_id).update(placed_at=None, buyer_note='Say "hi" ✓')
        parcel.refresh_from_db()
        order = parcel.order

    (listed,) = api.get("/api/v1/parcels/").json()["results"]

    assert listed["dispatched_at"] == iso(parcel.dispatched_at) == "2026-12-03T09:12:44Z"
    assert listed["acknowledged_at"] == "2026-12-03T09:12:44.000120Z"
    assert listed["deadlines"] == {
        "ship_by": iso(order.ship_by),
        "tracking_by": iso(order.tracking_by),
        "acknowledge_by": iso(whole + timedelta(minutes=provider.confirm_within_minutes)),
        "tracking_due": iso(
            parcel.acknowledged_at + timedelta(minutes=provider.tracking_within_minutes)
        ),
    }
    assert (listed["created_at"], listed["updated_at"]) == (
        iso(parcel.created_at),
        iso(parcel.updated_at),
    )
    assert listed["order"] == {
        "id": order.platform_order_id,
        "platform": world["shop"].platform,
        "placed_at": None,
        "paid_at": iso(order.paid_at),
        "buyer_note": 'Say "hi" ✓',
    }
    assert listed["service"] is None
    assert api.get(f"/api/v1/parcels/{parcel.pk}/").json() == listed


def test_a_parcel_not_sent_to_the_provider_yet_is_not_theirs_to_see_or_act_on(world, api):
    """A parcel of the provider's warehouse that dispatch holds back (here: the buyer asked to
    cancel while it waited for the carrier rules) has not been handed over: listing it, or
    letting the provider accept it, would have the order packed and the parcel never
    dispatched (no `dispatched_at`, so no acknowledgement clock and no `shipment.created`)."""
    from logistics.dispatch import shipments_dispatch
    from orders.models import CancellationRequest, CancellationStatus

    parcel = world["parcel"]
    with tenant_context(world["tenant"]):
        Shipment.objects.filter(pk=parcel.pk).update(
            status=ShipmentStatus.PENDING, dispatched_at=None, rules_applied_at=timezone.now()
        )
        Order.objects.filter(pk=parcel.order_id).update(status=OrderStatus.READY)
        asked = CancellationRequest.objects.create(
            tenant=world["tenant"],
            shop_id=parcel.order.shop_id,
            order_id=parcel.order_id,
            platform_order_id=parcel.order.platform_order_id,
            platform_cancel_id="C-1",
            status=CancellationStatus.PENDING,
        )
    assert shipments_dispatch(tenant=world["tenant"]) == []

    assert [p["id"] for p in api.get("/api/v1/parcels/").json()["results"]] == []
    assert api.get(f"/api/v1/parcels/{parcel.pk}/").status_code == 404
    accept = api.post(f"/api/v1/parcels/{parcel.pk}/acknowledge/", {"decision": "accept"})
    assert accept.status_code == 404
    shipped = api.post(
        f"/api/v1/parcels/{parcel.pk}/ship/", {"tracking_number": USPS_NUMBER, "carrier": "usps"}
    )
    assert shipped.status_code == 404
    parcel.refresh_from_db()
    assert (parcel.status, parcel.acknowledged_at, parcel.tracking_number) == (
        ShipmentStatus.PENDING,
        None,
        "",
    )

    # The buyer withdraws the request: dispatch hands it over, and the provider sees it.
    with tenant_context(world["tenant"]):
        CancellationRequest.objects.filter(pk=asked.pk).update(status=CancellationStatus.WITHDRAWN)
    assert shipments_dispatch(tenant=world["tenant"]) == [parcel.pk]
    assert [p["id"] for p in api.get("/api/v1/parcels/").json()["results"]] == [parcel.pk]
    assert api.get(f"/api/v1/parcels/{parcel.pk}/").status_code == 200


def test_the_list_filters_by_status_and_updated_since(world, api):
    assert api.get("/api/v1/parcels/", status="shipped").json()["results"] == []
    assert len(api.get("/api/v1/parcels/", status="sent_to_provider").json()["results"]) == 1
    assert api.get("/api/v1/parcels/", updated_since="2999-01-01T00:00:00Z").json()["results"] == []
    bad = api.get("/api/v1/parcels/", updated_since="yesterday")
    assert bad.status_code == 400
    assert bad["Content-Type"] == "application/problem+json"
    assert "updated_since" in bad.json()["errors"]


def test_the_list_costs_the_same_queries_for_one_parcel_or_many(world, api):
    api.get("/api/v1/parcels/")  # last_used_at written once a minute: not in the count below
    with CaptureQueriesContext(connection) as one:
        assert len(api.get("/api/v1/parcels/").json()["results"]) == 1
    for _ in range(12):
        routed_order(world, shop=world["shop"], lines=[(world["mug"], 1), (world["cap"], 1)])
    with CaptureQueriesContext(connection) as many:
        assert len(api.get("/api/v1/parcels/").json()["results"]) == 13
    assert len(many.captured_queries) == len(one.captured_queries) == 1, many.captured_queries


def walk(api, url: str, link: str = "next") -> list[list[int]]:
    pages = []
    while url:
        body = api.client.get(url, headers=api.headers()).json()
        pages.append([p["id"] for p in body["results"]])
        url = body[link]
    return pages


def test_cursor_pages_walk_every_parcel_once(world, api):
    for _ in range(4):
        routed_order(world, shop=world["shop"], lines=[(world["mug"], 1)])
    seen = [pk for page in walk(api, "/api/v1/parcels/?limit=2") for pk in page]
    assert len(seen) == len(set(seen)) == 5


def test_parcels_changed_at_the_same_instant_page_by_id_both_ways(world, api):
    # A bulk update gives many parcels one updated_at: the cursor keeps the id too, so pages
    # neither repeat nor skip the ties, forward and back.
    for _ in range(6):
        routed_order(world, shop=world["shop"], lines=[(world["mug"], 1)])
    with tenant_context(world["tenant"]):
        ids = sorted(provider_parcels(provider=world["prv"]).values_list("pk", flat=True))
        Shipment.objects.filter(pk__in=ids[1:]).update(updated_at=timezone.now())
    forward = walk(api, "/api/v1/parcels/?limit=3")
    assert forward == [ids[0:3], ids[3:6], ids[6:7]]
    last = api.get("/api/v1/parcels/", limit=3).json()
    while last["next"]:
        last = api.client.get(last["next"], headers=api.headers()).json()
    assert walk(api, last["previous"], link="previous") == [ids[3:6], ids[0:3]]
    back = api.client.get(last["previous"], headers=api.headers()).json()
    assert api.client.get(back["next"], headers=api.headers()).json() == last


def test_a_filtered_walk_keeps_its_filter_and_limit(world, api):
    for _ in range(4):
        routed_order(world, shop=world["shop"], lines=[(world["mug"], 1)])
    with tenant_context(world["tenant"]):
        mine = provider_parcels(provider=world["prv"]).order_by("pk")
        shipped = list(mine.values_list("pk", flat=True)[:2])
        Shipment.objects.filter(pk__in=shipped).update(status=ShipmentStatus.SHIPPED)
    pages = walk(api, "/api/v1/parcels/?status=sent_to_provider&limit=2")
    assert [len(page) for page in pages] == [2, 1]
    assert not {pk for page in pages for pk in page} & set(shipped)


@pytest.mark.parametrize(
    "cursor",
    [
        "not-base64!",
        "cD0yMDI2LTEyLTAz",
        "cD1ub3R8YXRpbWU=",
        "bz0zJnA9MjAyNi0xMi0wM1QwMDowMDowMFp8MQ==",
        base64.b64encode(b"p=2026-12-03T00:00:00Z|99999999999999999999").decode(),
    ],
    ids=["garbage", "drf-position-without-id", "not-a-time", "with-an-offset", "id-too-large"],
)
def test_a_cursor_this_api_did_not_give_out_is_a_clear_404(world, api, cursor):
    response = api.get("/api/v1/parcels/", cursor=cursor)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    assert "cursor" in response.json()["detail"]


@pytest.mark.parametrize("path", ["/api/v1/stock/", "/api/v1/sku-mappings/"])
def test_the_cursors_the_other_lists_give_out_are_still_taken(world, api, path):
    SupplierItemFactory(
        tenant=world["tenant"], supplier=world["prv"].supplier, sku=world["cap"],
        supplier_item_code="X-CAP",
    )  # fmt: skip
    everything = api.get(path).json()["results"]
    pages, url = [], f"{path}?limit=1"
    while url:
        body = api.client.get(url, headers=api.headers()).json()
        pages.append(body["results"])
        url = body["next"]
    assert len(everything) > 1
    assert pages == [[row] for row in everything]


@pytest.mark.parametrize("path", ["/api/v1/stock/", "/api/v1/sku-mappings/"])
@pytest.mark.parametrize(
    "position",
    [b"abc", b"1|zzz", b"2026-13-45", b"99999999999999999999", b"9" * 400, b"1e999", b"\x00"],
    ids=["word", "pipe", "no-such-day", "too-large", "huge", "exponent", "nul"],
)
def test_a_tampered_cursor_of_the_other_lists_is_a_clear_404(world, path, position):
    # DRF's cursor pagination put the cursor's position straight into the query's filter.
    api = Api(world["key"], Client(raise_request_exception=False))
    cursor = base64.b64encode(b"p=" + position).decode()

    response = api.get(path, cursor=cursor)

    assert response.status_code == 404, response.content[:300]
    assert response["Content-Type"] == "application/problem+json"
    assert "cursor" in response.json()["detail"]


def test_accepting_sets_acknowledged_and_confirms(world, api):
    url = f"/api/v1/parcels/{world['parcel'].pk}/acknowledge/"
    response = api.post(url, {"decision": "accept"})

    assert response.status_code == 200, response.json()
    assert response.json()["acknowledged_at"] is not None
    assert response.json()["status"] == ShipmentStatus.CONFIRMED


def test_rejecting_puts_the_order_back_to_the_seller_on_hold(world, api):
    parcel = world["parcel"]
    response = api.post(
        f"/api/v1/parcels/{parcel.pk}/acknowledge/",
        {"decision": "reject", "reason": "Out of stock at the shelf"},
    )

    assert response.status_code == 200, response.json()
    assert response.json()["reject_reason"] == "Out of stock at the shelf"
    with tenant_context(world["tenant"]):
        order = Order.objects.get(pk=parcel.order_id)
        assert order.status == OrderStatus.ON_HOLD
        hold = OrderHold.objects.get(order=order, released_at__isnull=True)
        assert hold.code == "provider.rejected"
        assert "Out of stock at the shelf" in hold.message
        assert Alert.objects.filter(kind="provider_rejected").exists()
    # A rejected parcel can't be shipped any more.
    ship = api.post(
        f"/api/v1/parcels/{parcel.pk}/ship/", {"tracking_number": USPS_NUMBER, "carrier": "usps"}
    )
    assert ship.status_code == 409
    assert ship.json()["code"] == "rejected"


def test_rejecting_needs_a_reason(world, api):
    response = api.post(
        f"/api/v1/parcels/{world['parcel'].pk}/acknowledge/", {"decision": "reject"}
    )
    assert response.status_code == 400
    assert response.json()["errors"] == {"reason": ["Say why you reject the parcel."]}


def test_shipping_commits_the_stock_once_and_ships_the_order(world, api):
    parcel = world["parcel"]
    url = f"/api/v1/parcels/{parcel.pk}/ship/"
    response = api.post(url, {"tracking_number": USPS_NUMBER, "carrier": "usps"})

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["units"] == 3
    assert body["parcel"]["status"] == "shipped"
    assert body["parcel"]["tracking_number"] == USPS_NUMBER
    assert body["remainder"] is None
    assert (level(world, "mug").on_hand, level(world, "mug").reserved) == (99, 0)
    assert (level(world, "cap").on_hand, level(world, "cap").reserved) == (98, 0)
    with tenant_context(world["tenant"]):
        assert Order.objects.get(pk=parcel.order_id).status == OrderStatus.SHIPPED
    # The same number again (a new request, not a replay) changes nothing.
    again = api.post(url, {"tracking_number": USPS_NUMBER, "carrier": "usps"})
    assert again.status_code == 200
    assert again.json()["units"] == 0
    assert level(world, "mug").on_hand == 99
    other = api.post(url, {"tracking_number": USPS_NUMBER_2, "carrier": "usps"})
    assert other.status_code == 409
    assert other.json()["code"] == "already_shipped"


def test_shipping_some_lines_moves_the_rest_to_a_new_parcel(world, api):
    parcel = world["parcel"]
    detail = api.get(f"/api/v1/parcels/{parcel.pk}/").json()
    mug_line = next(line["id"] for line in detail["lines"] if line["sku"] == "A-MUG")

    response = api.post(
        f"/api/v1/parcels/{parcel.pk}/ship/",
        {"tracking_number": USPS_NUMBER, "carrier": "usps", "lines": [mug_line]},
    )

    assert response.status_code == 200, response.json()
    body = response.json()
    assert [line["sku"] for line in body["parcel"]["lines"]] == ["A-MUG"]
    assert [line["sku"] for line in body["remainder"]["lines"]] == ["A-CAP"]
    assert body["remainder"]["status"] == "sent_to_provider"
    assert body["units"] == 1
    with tenant_context(world["tenant"]):
        remainder = Shipment.objects.get(pk=body["remainder"]["id"])
        parcel.refresh_from_db()
        # The rest keeps the provider and its clocks, and both parcels are weighed again.
        assert (remainder.provider_id, remainder.dispatched_at) == (
            parcel.provider_id,
            parcel.dispatched_at,
        )
        assert remainder.weight_grams > 0 and parcel.weight_grams > 0
    assert (level(world, "mug").on_hand, level(world, "mug").reserved) == (99, 0)
    assert (level(world, "cap").on_hand, level(world, "cap").reserved) == (100, 2)
    with tenant_context(world["tenant"]):
        assert Order.objects.get(pk=parcel.order_id).status != OrderStatus.SHIPPED
    rest = api.post(
        f"/api/v1/parcels/{body['remainder']['id']}/ship/",
        {"tracking_number": USPS_NUMBER_2, "carrier": "usps"},
    )
    assert rest.status_code == 200, rest.json()
    assert (level(world, "cap").on_hand, level(world, "cap").reserved) == (98, 0)
    with tenant_context(world["tenant"]):
        assert Order.objects.get(pk=parcel.order_id).status == OrderStatus.SHIPPED


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"tracking_number": "9400111000000000000018", "carrier": "usps"}, "tracking_number",
         "invalid_tracking_number"),
        ({"tracking_number": UPS_NUMBER, "carrier": "ups"}, "carrier", "carrier_mismatch"),
        ({"tracking_number": USPS_NUMBER, "carrier": "dhl"}, "carrier", "unknown_carrier"),
        ({"tracking_number": USPS_NUMBER, "carrier": "usps", "lines": [999999]}, "lines",
         "unknown_line"),
    ],
)  # fmt: skip
def test_a_bad_tracking_number_is_refused_and_nothing_changes(world, api, body, field, code):
    parcel = world["parcel"]
    response = api.post(f"/api/v1/parcels/{parcel.pk}/ship/", body)

    assert response.status_code == 422
    problem = response.json()
    assert problem["code"] == code
    assert field in problem["errors"]
    assert problem["type"].startswith("https://")
    with tenant_context(world["tenant"]):
        parcel.refresh_from_db()
        assert (parcel.tracking_number, parcel.status) == ("", ShipmentStatus.SENT_TO_PROVIDER)
        assert Shipment.objects.filter(order_id=parcel.order_id).count() == 1
    assert level(world, "mug").reserved == 1


def test_events_are_recorded_and_an_exception_alerts_the_seller(world, api):
    url = f"/api/v1/parcels/{world['parcel'].pk}/events/"
    assert api.post(url, {"kind": "picked"}).status_code == 201
    refused = api.post(url, {"kind": "exception"})
    assert refused.status_code == 422
    assert "note" in refused.json()["errors"]
    assert api.post(url, {"kind": "exception", "note": "Box crushed"}).status_code == 201

    assert [e["kind"] for e in api.get(url).json()] == ["picked", "exception"]
    with tenant_context(world["tenant"]):
        assert ParcelEvent.objects.count() == 2
        assert Alert.objects.get(kind="provider_exception").message == "Box crushed"


def request_intercept(world, parcel):
    """The buyer's cancellation is approved while the provider holds the parcel: the real door
    asks the provider to stop it and keeps its units reserved."""
    from orders.cancellations import order_cancel_close

    with tenant_context(world["tenant"]):
        assert order_cancel_close(order=parcel.order, reason="buyer cancelled")
        parcel.refresh_from_db()
        assert parcel.intercept_state == InterceptState.REQUESTED


def test_an_intercepted_parcel_is_cancelled_and_its_stock_released(world, api):
    parcel = world["parcel"]
    url = f"/api/v1/parcels/{parcel.pk}/intercept/"
    assert api.post(url, {"result": "intercepted"}).status_code == 409  # nothing requested
    request_intercept(world, parcel)

    response = api.post(url, {"result": "intercepted"})

    assert response.status_code == 200, response.json()
    assert response.json()["intercept_state"] == "confirmed"
    assert response.json()["status"] == "cancelled"
    assert (level(world, "mug").on_hand, level(world, "mug").reserved) == (100, 0)
    with tenant_context(world["tenant"]):
        assert not Reservation.objects.filter(
            order_id=parcel.order_id, state=ReservationState.RESERVED
        ).exists()
    assert api.post(url, {"result": "too_late"}).status_code == 409


def test_too_late_leaves_the_stock_and_alerts_the_seller(world, api):
    parcel = world["parcel"]
    request_intercept(world, parcel)

    response = api.post(f"/api/v1/parcels/{parcel.pk}/intercept/", {"result": "too_late"})

    assert response.status_code == 200, response.json()
    assert response.json()["intercept_state"] == "failed"
    assert level(world, "mug").reserved == 1
    with tenant_context(world["tenant"]):
        assert Alert.objects.filter(kind="provider.intercept_failed").exists()


def test_too_late_units_stay_reserved_until_the_parcel_ships_and_then_leave(world, api):
    from inventory.reservations import orders_reserve

    parcel = world["parcel"]
    request_intercept(world, parcel)
    answer = api.post(f"/api/v1/parcels/{parcel.pk}/intercept/", {"result": "too_late"})
    assert answer.status_code == 200, answer.json()
    # The cancelled order still holds units, so the SLA sweep (or the platform's next update
    # of the order) runs its stock step again before the provider reports the parcel gone.
    orders_reserve(tenant=world["tenant"], order_ids=[parcel.order_id])
    assert (level(world, "mug").on_hand, level(world, "mug").reserved) == (100, 1)

    response = api.post(
        f"/api/v1/parcels/{parcel.pk}/ship/", {"tracking_number": USPS_NUMBER, "carrier": "usps"}
    )

    assert response.status_code == 200, response.json()
    assert (level(world, "mug").on_hand, level(world, "mug").reserved) == (99, 0)
    assert (level(world, "cap").on_hand, level(world, "cap").reserved) == (98, 0)


def test_a_too_late_parcel_reported_by_file_or_by_hand_ships_its_units(world, api):
    """A supplier without the API sends its tracking back in a file (or a person types it): a
    parcel it was too late to stop is a fact being reported, as through the API."""
    from logistics.tracking import TrackingSource, shipment_tracking_accept

    parcel = world["parcel"]
    request_intercept(world, parcel)
    answer = api.post(f"/api/v1/parcels/{parcel.pk}/intercept/", {"result": "too_late"})
    assert answer.status_code == 200, answer.json()

    shipment_tracking_accept(
        parcel, tracking_number=USPS_NUMBER, carrier_code="usps", source=TrackingSource.CSV
    )

    parcel.refresh_from_db()
    assert parcel.status == ShipmentStatus.SHIPPED
    assert (level(world, "mug").on_hand, level(world, "mug").reserved) == (99, 0)
    assert (level(world, "cap").on_hand, level(world, "cap").reserved) == (98, 0)


def test_stock_counts_are_set_all_or_nothing_and_never_below_reserved(world, api):
    count = {"warehouse": "A-WH", "sku": "A-MUG", "on_hand": 25}
    ok = api.post("/api/v1/stock/", {"counts": [count]})
    assert ok.status_code == 200, ok.json()
    stored = ok.json()["levels"][0]
    assert (stored["on_hand"], stored["reserved"], stored["free"]) == (25, 1, 24)

    refused = api.post(
        "/api/v1/stock/",
        {
            "counts": [
                {"warehouse": "A-WH", "sku": "A-MUG", "on_hand": 30},
                {"warehouse": "A-WH", "sku": "A-CAP", "on_hand": 1},  # 2 reserved
                {"warehouse": "A-WH2", "sku": "A-CAP", "on_hand": 5},  # another provider's
            ]
        },
    )
    assert refused.status_code == 422
    errors = refused.json()["errors"]
    assert set(errors) == {"counts[2].warehouse"}
    refused = api.post(
        "/api/v1/stock/",
        {"counts": [{"warehouse": "A-WH", "sku": "A-MUG", "on_hand": 30},
                    {"warehouse": "A-WH", "sku": "A-CAP", "on_hand": 1}]},
    )  # fmt: skip
    assert refused.status_code == 422
    assert "reserved" in refused.json()["errors"]["counts[1].on_hand"][0]
    assert level(world, "mug").on_hand == 25  # the first row was undone too

    listed = api.get("/api/v1/stock/").json()["results"]
    assert {(s["warehouse"], s["sku"]) for s in listed} == {("A-WH", "A-MUG"), ("A-WH", "A-CAP")}


def test_the_sku_mapping_lists_the_providers_item_codes(world, api):
    results = api.get("/api/v1/sku-mappings/").json()["results"]
    assert [(m["sku"], m["supplier_item_code"]) for m in results] == [("A-MUG", "X-MUG")]


def test_a_parcel_that_left_too_late_ships_on_its_cancelled_order(world, api):
    """The buyer's cancellation was approved while the provider held the parcel (the order is
    cancelled, the parcel's intercept requested, its stock still held); the provider answers
    too late, then reports the tracking: the units leave stock, once."""
    from django.utils import timezone

    parcel = world["parcel"]
    with tenant_context(world["tenant"]):
        Order.objects.filter(pk=parcel.order_id).update(
            status=OrderStatus.CANCELLED, cancelled_at=timezone.now()
        )
        Shipment.objects.filter(pk=parcel.pk).update(
            intercept_state=InterceptState.REQUESTED, status=ShipmentStatus.EXCEPTION
        )
    url = f"/api/v1/parcels/{parcel.pk}/"
    assert api.post(url + "intercept/", {"result": "too_late"}).status_code == 200
    assert (level(world, "mug").on_hand, level(world, "mug").reserved) == (100, 1)

    response = api.post(url + "ship/", {"tracking_number": USPS_NUMBER, "carrier": "usps"})

    assert response.status_code == 200, response.json()
    assert response.json()["parcel"]["status"] == "shipped"
    assert response.json()["units"] == 3
    assert (level(world, "mug").on_hand, level(world, "mug").reserved) == (99, 0)
    assert (level(world, "cap").on_hand, level(world, "cap").reserved) == (98, 0)


def test_a_refused_number_counts_against_the_provider_and_writes_nothing_else(world, api):
    """The refusal rolls the ship back, but the fact that the provider sent an invalid number
    is kept for its scorecard (invalid-tracking %); an unknown line is not such a fact."""
    from logistics.scorecards import TRACKING_INVALID_EVENT
    from orders.models import OrderEvent

    parcel = world["parcel"]
    bad = {"tracking_number": "9400111000000000000018", "carrier": "usps"}
    assert api.post(f"/api/v1/parcels/{parcel.pk}/ship/", bad).status_code == 422
    lines = {"tracking_number": USPS_NUMBER, "carrier": "usps", "lines": [999999]}
    assert api.post(f"/api/v1/parcels/{parcel.pk}/ship/", lines).status_code == 422

    with tenant_context(world["tenant"]):
        events = OrderEvent.objects.filter(order_id=parcel.order_id, kind=TRACKING_INVALID_EVENT)
        assert [event.data["tracking_number"] for event in events] == [bad["tracking_number"]]
        parcel.refresh_from_db()
        assert parcel.tracking_number == ""
