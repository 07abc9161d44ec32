"""Tracking numbers by file, by the parcel form and action, and the write-back's admin pages:
every door checks the number the same way, writes all or nothing, and stays in its tenant."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.utils import timezone

from inventory.models import MovementKind, StockMovement, WarehouseKind
from inventory.stock import stock_adjust
from logistics.models import (
    Carrier,
    Shipment,
    ShipmentStatus,
    TrackingAttemptResult,
    TrackingPush,
    TrackingPushAttempt,
    TrackingPushState,
)
from logistics.resources import ShipmentTrackingResource
from logistics.tasks import push_shop_tracking
from logistics.tracking import TrackingSource, shipment_tracking_accept
from logistics.tracking_numbers import make_tracking_number
from orders.models import Order, ReviewSettings
from orders.pipeline import orders_after_ingest
from shops.models import Shop
from tests.e2e.conftest import REVIEW_CHECKS
from tests.e2e.helpers import django_q_sync
from tests.factories import (
    CarrierFactory,
    CarrierServiceFactory,
    OrderFactory,
    OrderLineFactory,
    ShopFactory,
    SkuFactory,
    WarehouseFactory,
)
from tests.inventory.helpers import admin_export, admin_url, csv_dataset, messages_of
from tests.orders.admin_helpers import run_action
from tkerp.tenancy import tenant_context

pytestmark = pytest.mark.django_db


def usps(serial: int) -> str:
    return make_tracking_number(carrier="usps", service="", account="", serial=serial)


def make_world(tenant, django_capture_on_commit_callbacks, *, orders: int = 2):
    """A TikTok shop with stock in one warehouse, a USPS carrier, and `orders` ready orders of
    two lines each, split into one parcel per order."""
    shop = ShopFactory(tenant=tenant, name=f"{tenant.name} TikTok")
    warehouse = WarehouseFactory(tenant=tenant, code=f"{tenant.slug}-W", kind=WarehouseKind.OWN)
    mug = SkuFactory(tenant=tenant, code="MUG")
    cap = SkuFactory(tenant=tenant, code="CAP")
    carrier = CarrierFactory(tenant=tenant, code="usps", name="USPS")
    CarrierServiceFactory(tenant=tenant, carrier=carrier, code="ground", name="Ground")
    CarrierFactory(tenant=tenant, code="ups", name="UPS")
    with tenant_context(tenant):
        ReviewSettings.objects.update_or_create(
            tenant=tenant, defaults=dict.fromkeys(REVIEW_CHECKS, False)
        )
        for sku in (mug, cap):
            stock_adjust(
                sku=sku,
                warehouse=warehouse,
                delta=20,
                kind=MovementKind.RECEIVE,
                user=None,
                note="delivery",
            )
    made = []
    for _ in range(orders):
        order = OrderFactory(tenant=tenant, shop=shop, paid_at=timezone.now())
        OrderLineFactory(
            order=order, tenant=tenant, sku=mug, seller_sku="MUG", quantity=1,
            platform_line_id=f"{order.platform_order_id}-1",
        )  # fmt: skip
        OrderLineFactory(
            order=order, tenant=tenant, sku=cap, seller_sku="CAP", quantity=2,
            platform_line_id=f"{order.platform_order_id}-2",
        )  # fmt: skip
        made.append(order)
    with django_q_sync(), django_capture_on_commit_callbacks(execute=True):
        orders_after_ingest(shop=shop, created_ids=[o.pk for o in made], updated_ids=[])
    with tenant_context(tenant):
        parcels = [Shipment.objects.get(order=o) for o in made]
    return shop, parcels


@pytest.fixture
def world_a(tenant_a, django_capture_on_commit_callbacks):
    return make_world(tenant_a, django_capture_on_commit_callbacks)


@pytest.fixture
def world_b(tenant_b, django_capture_on_commit_callbacks):
    return make_world(tenant_b, django_capture_on_commit_callbacks, orders=1)


def run_import(tenant, text: str):
    with tenant_context(tenant):
        return ShipmentTrackingResource(tenant=tenant).import_data(csv_dataset(text))


def problems(result) -> dict[int, dict[str, str]]:
    return {
        row.number: {column: " ".join(errors) for column, errors in row.error_dict.items()}
        for row in result.invalid_rows
    }


# --- the import ---------------------------------------------------------------------------------


def test_a_file_ships_parcels_and_queues_their_writeback(tenant_a, world_a):
    _, (first, second) = world_a
    text = (
        "parcel,order,carrier,tracking_number\n"
        f"{first.reference},,usps,{usps(1)}\n"
        f",{second.order.platform_order_id},USPS,{usps(2)[:11]} {usps(2)[11:]}\n"
    )

    result = run_import(tenant_a, text)

    assert not result.has_validation_errors() and not result.has_errors()
    with tenant_context(tenant_a):
        for parcel, number in ((first, usps(1)), (second, usps(2))):
            parcel.refresh_from_db()
            assert parcel.tracking_number == number and parcel.carrier.code == "usps"
            assert parcel.status == ShipmentStatus.SHIPPED
            assert TrackingPush.objects.get(shipment=parcel).state == TrackingPushState.PENDING
            assert StockMovement.objects.filter(order=parcel.order, kind=MovementKind.SHIP).exists()


def test_every_bad_row_is_named_and_nothing_is_written(tenant_a, world_a, world_b):
    _, (first, second) = world_a
    _, (theirs,) = world_b
    bad_digit = usps(3)[:-1] + str((int(usps(3)[-1]) + 1) % 10)
    text = (
        "parcel,order,carrier,tracking_number\n"
        f"{first.reference},,usps,{usps(4)}\n"  # fine on its own
        f"{second.reference},,usps,{bad_digit}\n"
        f"{second.reference},,ups,{usps(5)}\n"
        f"{second.reference},,pigeon,{usps(5)}\n"
        f"NOPE-1,,usps,{usps(6)}\n"
        f"{theirs.reference},,usps,{usps(7)}\n"  # another tenant's parcel: unknown here
        f"{second.reference},,usps,{usps(4)}\n"  # the first row's number again
        f",,usps,{usps(8)}\n"
    )

    result = run_import(tenant_a, text)

    found = problems(result)
    assert sorted(found) == [2, 3, 4, 5, 6, 7, 8]
    assert "check digit is wrong" in found[2]["tracking_number"]
    assert "is not a UPS tracking number" in found[3]["tracking_number"]
    assert "no carrier with code “pigeon”" in found[4]["carrier"]
    assert "No parcel with reference “NOPE-1”" in found[5]["parcel"]
    assert f"No parcel with reference “{theirs.reference}”" in found[6]["parcel"]
    assert "already on row 1 of this file" in found[7]["tracking_number"]
    assert "Fill in parcel" in found[8]["parcel"]
    with tenant_context(tenant_a):
        first.refresh_from_db()
        assert first.tracking_number == "" and first.status != ShipmentStatus.SHIPPED
        assert not TrackingPush.objects.exists()
        assert not StockMovement.objects.filter(kind=MovementKind.SHIP).exists()


def test_a_number_on_another_parcel_is_refused_saying_which(tenant_a, world_a):
    _, (first, second) = world_a
    run_import(tenant_a, f"parcel,order,carrier,tracking_number\n{first.reference},,usps,{usps(9)}")

    result = run_import(
        tenant_a, f"parcel,order,carrier,tracking_number\n{second.reference},,usps,{usps(9)}"
    )

    assert f"is already on parcel {first.reference}" in problems(result)[1]["tracking_number"]


def test_lines_split_a_parcel(tenant_a, world_a):
    _, (first, _) = world_a
    order_id = first.order.platform_order_id
    text = (
        "parcel,order,carrier,tracking_number,lines\n"
        f",{order_id},usps,{usps(10)},MUG\n"
        f"{first.reference},,usps,{usps(11)},\n"
    )

    result = run_import(tenant_a, text)

    assert not result.has_validation_errors(), problems(result)
    with tenant_context(tenant_a):
        parcels = {
            p.tracking_number: sorted(p.lines.values_list("order_line__seller_sku", flat=True))
            for p in Shipment.objects.filter(order=first.order)
        }
        assert parcels == {usps(10): ["MUG"], usps(11): ["CAP"]}
        # Both parcels are weighed again: one mug, two caps (250 g each), plus packaging.
        weights = dict(
            Shipment.objects.filter(order=first.order).values_list(
                "tracking_number", "weight_grams"
            )
        )
        allowance = settings.TKERP_PACKAGING_ALLOWANCE_GRAMS
        assert weights == {usps(10): 250 + allowance, usps(11): 500 + allowance}
        assert Order.objects.get(pk=first.order_id).status == "shipped"


def test_the_export_holds_own_parcels_with_their_writeback(client_a, tenant_a, world_a, world_b):
    _, (first, _) = world_a
    run_import(
        tenant_a, f"parcel,order,carrier,tracking_number\n{first.reference},,usps,{usps(12)}"
    )

    rows = admin_export(client_a, Shipment)

    assert {row["parcel"] for row in rows} == {p.reference for p in world_a[1]}
    mine = next(row for row in rows if row["parcel"] == first.reference)
    assert (mine["carrier"], mine["tracking_number"], mine["writeback"]) == (
        "usps",
        usps(12),
        "pending",
    )


def test_the_admin_import_previews_then_writes(client_a, tenant_a, world_a):
    from tests.inventory.helpers import admin_import

    _, (first, _) = world_a
    response = admin_import(
        client_a,
        Shipment,
        f"parcel,order,carrier,tracking_number\n{first.reference},,usps,{usps(13)}",
    )

    assert response.status_code == 302
    with tenant_context(tenant_a):
        first.refresh_from_db()
        assert first.tracking_number == usps(13)


# --- the parcel form and action ---------------------------------------------------------------


def parcel_form_data(client, parcel) -> dict:
    page = client.get(admin_url(Shipment, "change", parcel.pk))
    assert page.status_code == 200
    form = page.context["adminform"].form
    data = {}
    for name, field in form.fields.items():
        value = form.initial.get(name, field.initial)
        if value is None:
            continue
        data[name] = value.pk if hasattr(value, "pk") else value
    for formset in page.context["inline_admin_formsets"]:
        management = formset.formset.management_form
        for name in management.fields:
            data[f"{management.prefix}-{name}"] = management.initial.get(name, 0)
        for index, inline in enumerate(formset.formset.forms):
            for name in inline.fields:
                value = inline.initial.get(name)
                if value is not None:
                    data[f"{inline.prefix}-{name}"] = getattr(value, "pk", value)
            data[f"{inline.prefix}-id"] = inline.instance.pk
            data[f"{inline.prefix}-shipment"] = parcel.pk
            del index
    return data


def usps_carrier(tenant):
    with tenant_context(tenant):
        return Carrier.objects.get(code="usps")


def test_the_parcel_form_refuses_a_bad_number_saying_why(client_a, tenant_a, world_a):
    _, (first, _) = world_a
    data = parcel_form_data(client_a, first)
    data["tracking_number"] = "1Z5R89390357567127"
    data["carrier"] = usps_carrier(tenant_a).pk

    response = client_a.post(admin_url(Shipment, "change", first.pk), data)

    assert response.status_code == 200
    assert "is not a USPS tracking number" in str(response.context["adminform"].form.errors)
    with tenant_context(tenant_a):
        first.refresh_from_db()
        assert first.tracking_number == ""


def test_the_parcel_form_takes_a_good_number_through_the_door(client_a, tenant_a, world_a):
    _, (first, _) = world_a
    data = parcel_form_data(client_a, first)
    data["tracking_number"] = usps(14)
    data["carrier"] = usps_carrier(tenant_a).pk

    response = client_a.post(admin_url(Shipment, "change", first.pk), data)

    assert response.status_code == 302, [
        (f.formset.errors, f.formset.non_form_errors())
        for f in response.context["inline_admin_formsets"]
    ]
    with tenant_context(tenant_a):
        first.refresh_from_db()
        assert first.tracking_number == usps(14) and first.carrier.code == "usps"
        assert TrackingPush.objects.get(shipment=first).number == usps(14)

    shipped = run_action(client_a, Shipment, "mark_shipped_with_tracking", [first.pk])

    assert shipped.status_code == 302
    assert any("1 parcel marked shipped" in m for m in messages_of(shipped))
    with tenant_context(tenant_a):
        first.refresh_from_db()
        assert first.status == ShipmentStatus.SHIPPED


def test_a_parcel_form_opened_before_the_parcel_shipped_does_not_write_it_back(
    client_a, tenant_a, world_a
):
    """A packer opens a parcel's page; meanwhile its number is accepted and it ships (a label, a
    file, another user). Saving the page as it was opened must not put the parcel back to
    pending without its number (the platform has it, the stock left): the save is refused,
    saying to reload; a page opened afterwards saves."""
    _, (first, _) = world_a
    page = client_a.get(admin_url(Shipment, "change", first.pk)).content.decode()
    assert 'type="hidden" name="opened"' in page  # the browser sends it back
    stale = parcel_form_data(client_a, first)
    with tenant_context(tenant_a):
        shipment_tracking_accept(
            first, tracking_number=usps(16), carrier_code="usps", source=TrackingSource.ADMIN
        )
    stale["weight_grams"] = 777

    response = client_a.post(admin_url(Shipment, "change", first.pk), stale)

    assert response.status_code == 200
    assert "changed since you opened" in str(response.context["adminform"].form.errors)
    with tenant_context(tenant_a):
        first.refresh_from_db()
        assert first.status == ShipmentStatus.SHIPPED and first.tracking_number == usps(16)
        assert first.weight_grams != 777

    fresh = parcel_form_data(client_a, first)
    fresh["weight_grams"] = 777
    saved = client_a.post(admin_url(Shipment, "change", first.pk), fresh)

    assert saved.status_code == 302
    with tenant_context(tenant_a):
        first.refresh_from_db()
        assert first.weight_grams == 777 and first.tracking_number == usps(16)


def test_write_back_times_show_in_the_tenants_timezone(client_a, tenant_a, world_a):
    """The parcel's "Platform has it (...)" and the shop's stopped write-back are told in the
    tenant's timezone, like every other time of the back office (not UTC, unmarked)."""
    from datetime import UTC, datetime

    shop, (first, _) = world_a
    tenant_a.timezone = "America/Chicago"
    tenant_a.save(update_fields=["timezone"])
    sent = datetime(2026, 1, 15, 18, 30, tzinfo=UTC)  # 12:30 in Chicago
    with tenant_context(tenant_a):
        TrackingPush.objects.create(
            tenant=tenant_a,
            shipment=first,
            shop=shop,
            number=usps(17),
            carrier_code="usps",
            sent_number=usps(17),
            state=TrackingPushState.SENT,
            sent_at=sent,
        )
        Shop.objects.filter(pk=shop.pk).update(
            tracking_paused_at=sent, tracking_pause_reason="invalid number"
        )

    parcel_page = client_a.get(admin_url(Shipment, "change", first.pk)).content.decode()
    shop_page = client_a.get(admin_url(Shop, "change", shop.pk)).content.decode()

    assert "(2026-01-15 12:30)" in parcel_page and "18:30" not in parcel_page
    assert "STOPPED 2026-01-15 12:30" in shop_page


# --- attempts, release, task: one tenant each ----------------------------------------------------


def attempt_of(tenant, shop, parcel) -> TrackingPushAttempt:
    with tenant_context(tenant):
        push = TrackingPush.objects.create(
            tenant=tenant, shipment=parcel, shop=shop, number=usps(15), carrier_code="usps"
        )
        return TrackingPushAttempt.objects.create(
            tenant=tenant,
            push=push,
            shipment=parcel,
            shop=shop,
            platform=shop.platform,
            number=push.number,
            call="ship",
            result=TrackingAttemptResult.SENT,
            latency_ms=12,
        )


def test_attempts_are_read_only_and_stay_in_their_tenant(client_a, tenant_a, world_a, world_b):
    shop_a, (first, _) = world_a
    shop_b, (theirs,) = world_b
    mine = attempt_of(tenant_a, shop_a, first)
    other = attempt_of(shop_b.tenant, shop_b, theirs)

    listing = client_a.get(admin_url(TrackingPushAttempt, "changelist"))

    assert listing.status_code == 200
    shown = {row.pk for row in listing.context["cl"].result_list}
    assert shown == {mine.pk}
    assert client_a.get(admin_url(TrackingPushAttempt, "change", mine.pk)).status_code == 200
    # Another tenant's row answers exactly like a missing one (the admin's "doesn't exist").
    theirs = client_a.get(admin_url(TrackingPushAttempt, "change", other.pk))
    missing = client_a.get(admin_url(TrackingPushAttempt, "change", 999_999))
    assert theirs.status_code == missing.status_code == 302
    assert any("doesn\u2019t exist" in message for message in messages_of(theirs))
    assert client_a.get(admin_url(TrackingPushAttempt, "add")).status_code == 403
    assert client_a.post(admin_url(TrackingPushAttempt, "delete", mine.pk)).status_code == 403


def test_release_reaches_only_own_shops(client_a, tenant_a, world_a, world_b):
    shop_a, _ = world_a
    shop_b, _ = world_b
    stopped = timezone.now()
    Shop._base_manager.filter(pk__in=[shop_a.pk, shop_b.pk]).update(
        tracking_paused_at=stopped, tracking_pause_reason="TikTok rejected 1Z..."
    )

    response = run_action(client_a, Shop, "release_tracking_writeback", [shop_a.pk, shop_b.pk])

    assert response.status_code == 302
    assert Shop._base_manager.get(pk=shop_a.pk).tracking_paused_at is None
    assert Shop._base_manager.get(pk=shop_b.pk).tracking_paused_at == stopped
    theirs = client_a.get(admin_url(Shop, "change", shop_b.pk))
    assert theirs.status_code == 302
    assert any("doesn\u2019t exist" in message for message in messages_of(theirs))


def test_the_task_never_serves_another_tenants_shop(tenant_b, world_a):
    shop_a, _ = world_a
    assert push_shop_tracking(tenant_b.pk, shop_a.pk) == {"shop": shop_a.pk, "status": "skipped"}


def test_the_minute_schedule_sends_what_is_due():
    from shops.schedules import schedule_specs

    assert ("tkerp: push due tracking", "logistics.tasks.push_due_tracking") in {
        (spec.name, spec.func) for spec in schedule_specs()
    }


# --- the label door -----------------------------------------------------------------------------


def test_a_bought_label_is_checked_and_queued_for_its_platform(tenant_a, settings, tmp_path):
    from logistics.labels.store import shipment_label_buy
    from sandbox.base import reset_rate_limits
    from tests.logistics.labels_helpers import label_world

    settings.MEDIA_ROOT = tmp_path
    reset_rate_limits()
    world = label_world(tenant_a)
    parcel = world.parcel("usps")

    stored = shipment_label_buy(shipment=parcel)

    with tenant_context(tenant_a):
        stored.refresh_from_db()
        assert stored.carrier.code == "usps"
        push = TrackingPush.objects.get(shipment=stored)
        assert (push.number, push.carrier_code, push.state, push.source) == (
            stored.tracking_number,
            "usps",
            TrackingPushState.PENDING,
            "label",
        )
