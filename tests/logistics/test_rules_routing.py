"""Carrier rules at the doors a seller meets them: parcels created by routing get their service
(rules loaded once per batch), a parcel no rule fits holds its order, releasing that hold or
fixing the rules and re-applying works, and "Re-apply carrier rules" leaves labelled parcels
alone."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from inventory.models import MovementKind
from inventory.stock import stock_adjust
from logistics.models import CarrierRule, Shipment
from logistics.routing import orders_split_ready
from orders.models import Order, OrderHold, OrderStatus
from orders.pipeline import orders_after_ingest
from orders.sla import sla_sweep_tenant
from tests.e2e.helpers import django_q_sync
from tests.factories import (
    OrderFactory,
    OrderLineFactory,
    ShipmentFactory,
    ShopFactory,
    SkuFactory,
    WarehouseFactory,
)
from tests.inventory.helpers import messages_of
from tests.logistics.rules_world import ParcelMaker, active_holds, demo_rule_set, labelled, reloaded
from tests.orders.admin_helpers import admin_url, inlines_empty, run_action
from tkerp.tenancy import tenant_context

pytestmark = pytest.mark.django_db

ELSE = "Everything else: USPS Ground Advantage"


@pytest.fixture
def world(tenant_a):
    shop = ShopFactory(tenant=tenant_a, name="TikTok A")
    warehouse = WarehouseFactory(tenant=tenant_a, code="A-1", country="US")
    mug = SkuFactory(tenant=tenant_a, code="MUG", weight_grams=400)
    with tenant_context(tenant_a):
        stock_adjust(
            sku=mug, warehouse=warehouse, delta=500, kind=MovementKind.RECEIVE, user=None, note=""
        )
    return {"tenant": tenant_a, "shop": shop, "mug": mug, **demo_rule_set(tenant_a)}


def paid_order(world, *, state="TX", city="Austin", postal_code="78704", total="20.00"):
    # Each order its own street: review holds orders to one address as duplicates.
    world["house"] = world.get("house", 100) + 1
    order = OrderFactory(
        address_line1=f"{world['house']} Congress Ave",
        tenant=world["tenant"],
        shop=world["shop"],
        paid_at=timezone.now(),
        state=state,
        city=city,
        postal_code=postal_code,
        total=total,
        recipient_phone="+15125550123",
    )
    OrderLineFactory(order=order, sku=world["mug"], quantity=1)
    return order


def parcel_of(order) -> Shipment:
    return Shipment._base_manager.select_related("service", "carrier_rule").get(order=order)


def ingest(world, *orders):
    orders_after_ingest(shop=world["shop"], created_ids=[o.pk for o in orders], updated_ids=[])


def test_a_parcel_routing_creates_gets_its_service(world, django_capture_on_commit_callbacks):
    california = paid_order(world, state="CA", city="San Diego", postal_code="92104")
    texas = paid_order(world)

    with django_q_sync(), django_capture_on_commit_callbacks(execute=True):
        ingest(world, california, texas)

    assert parcel_of(california).carrier_rule.name == "California: UPS Ground"
    assert str(parcel_of(california).service) == "UPS Ground"
    assert parcel_of(texas).carrier_rule.name == ELSE
    assert parcel_of(texas).weight_grams == 460
    assert Order._base_manager.get(pk=texas.pk).status == OrderStatus.READY


def test_the_batch_loads_the_rules_once_and_writes_its_parcels_in_one_statement(world):
    orders = [paid_order(world) for _ in range(6)]
    ingest(world, *orders)  # reserved and reviewed; the split task is not run

    with CaptureQueriesContext(connection) as queries:
        assert orders_split_ready(tenant=world["tenant"]) == 6

    statements = [q["sql"] for q in queries]
    # Loading reads the rules with their services; locking them against deletion does not.
    rule_loads = [s for s in statements if 'FROM "logistics_carrierrule" INNER JOIN' in s]
    assert len(rule_loads) == 1
    assert len([s for s in statements if s.startswith('UPDATE "logistics_shipment" AS s')]) == 1
    # Fewer pending parcels than a batch holds were all of them: no second scan of the tenant's.
    pending_scans = [
        s
        for s in statements
        if s.startswith('SELECT "logistics_shipment"."id" AS "pk" FROM')
        and '"logistics_shipment"."rules_applied_at" IS NULL' in s
    ]
    assert len(pending_scans) == 1
    assert {parcel_of(order).carrier_rule.name for order in orders} == {ELSE}
    assert CarrierRule._base_manager.get(name=ELSE).hit_count == 6


def test_no_rule_holds_the_order_once(world):
    CarrierRule._base_manager.filter(name=ELSE).update(is_active=False)
    order = paid_order(world)
    ingest(world, order)

    orders_split_ready(tenant=world["tenant"])
    sla_sweep_tenant(tenant=world["tenant"])  # the minute sweep: nothing new

    order.refresh_from_db()
    assert order.status == OrderStatus.ON_HOLD
    assert list(active_holds(order)) == ["carrier.no_rule"]
    assert (
        "460 g, value 19.99 USD (order total 20.00 USD), to AUSTIN TX 78704, US."
        in (active_holds(order)["carrier.no_rule"])
    )
    assert OrderHold._base_manager.filter(order=order).count() == 1
    assert Shipment._base_manager.filter(order=order).count() == 1


@pytest.fixture
def held(world):
    """An order held carrier.no_rule: the catch-all was off when its parcel was made."""
    CarrierRule._base_manager.filter(name=ELSE).update(is_active=False)
    order = paid_order(world)
    ingest(world, order)
    orders_split_ready(tenant=world["tenant"])
    order.refresh_from_db()
    assert order.status == OrderStatus.ON_HOLD
    return order


def test_releasing_the_hold_after_fixing_the_rules_gives_the_parcel_its_service(
    world, held, client_a
):
    CarrierRule._base_manager.filter(name=ELSE).update(is_active=True)

    response = run_action(client_a, Order, "release_holds", [held.pk])

    assert response.status_code == 302
    held.refresh_from_db()
    assert held.status == OrderStatus.READY
    assert parcel_of(held).carrier_rule.name == ELSE
    assert active_holds(held) == {}


def test_releasing_the_hold_without_a_rule_leaves_the_parcel_to_the_person(world, held, client_a):
    run_action(client_a, Order, "release_holds", [held.pk])
    sla_sweep_tenant(tenant=world["tenant"])
    orders_split_ready(tenant=world["tenant"])

    held.refresh_from_db()
    assert held.status == OrderStatus.READY
    assert active_holds(held) == {}  # the sweep does not hold it again
    parcel = parcel_of(held)
    assert parcel.service is None and parcel.rules_applied_at is not None


def test_fixing_the_rules_and_re_applying_releases_the_hold(world, held, client_a):
    CarrierRule._base_manager.filter(name=ELSE).update(is_active=True)
    done = labelled(ParcelMaker(world["tenant"], shop=world["shop"]), state="CA")

    response = run_action(client_a, Shipment, "rules_reapply", [parcel_of(held).pk, done.pk])

    assert response.status_code == 302
    held.refresh_from_db()
    assert held.status == OrderStatus.READY and active_holds(held) == {}
    assert parcel_of(held).carrier_rule.name == ELSE
    assert reloaded(done).service_id is None  # labelled: left alone
    (message,) = messages_of(response)
    assert message == (
        "Carrier rules re-applied to 1 parcel: 1 got a service (1 changed). Released the "
        "carrier.no_rule hold of 1 order(s). 1 parcel already has a label (or has left) and "
        "was left alone."
    )


def test_re_applying_where_no_rule_fits_holds_and_says_so(world, client_a):
    CarrierRule._base_manager.filter(name=ELSE).update(is_active=False)
    shipment = ParcelMaker(world["tenant"], shop=world["shop"])()

    response = run_action(client_a, Shipment, "rules_reapply", [shipment.pk])

    (message,) = messages_of(response)
    assert message == (
        "Carrier rules re-applied to 1 parcel: 0 got a service (0 changed), 1 matched no rule "
        "(1 order(s) newly held carrier.no_rule)."
    )
    assert "carrier.no_rule" in active_holds(shipment.order)


def test_re_apply_never_reaches_another_tenants_parcel(world, client_a, tenant_b):
    theirs = ParcelMaker(tenant_b)()
    demo_rule_set(tenant_b)

    run_action(client_a, Shipment, "rules_reapply", [theirs.pk])

    assert reloaded(theirs).rules_applied_at is None


def test_a_parcel_added_by_hand_or_left_by_a_stopped_run_gets_its_rules_on_the_sweep(world):
    order = paid_order(world, state="CA")
    Order._base_manager.filter(pk=order.pk).update(status=OrderStatus.READY)
    shipment = ShipmentFactory(
        order=order, warehouse=WarehouseFactory(tenant=world["tenant"]), service=None
    )

    sla_sweep_tenant(tenant=world["tenant"])

    assert reloaded(shipment).carrier_rule.name == "California: UPS Ground"


def test_a_service_chosen_by_hand_forgets_the_rule(world, client_a):
    shipment = ParcelMaker(world["tenant"], shop=world["shop"])()
    from logistics.rules import shipments_rules_apply

    shipments_rules_apply(tenant=world["tenant"], shipment_ids=[shipment.pk])
    ups = world["services"][("ups", "ground")]
    page = client_a.get(admin_url(Shipment, "change", shipment.pk))
    form = page.context["adminform"].form
    data = {name: form.initial.get(name) or "" for name in form.fields}
    data.update(
        {
            "order": shipment.order_id,
            "warehouse": shipment.warehouse_id,
            "service": ups.pk,
            "status": "pending",
            "weight_grams": 460,
            "shipping_cost": "0",
        }
    )
    # Every inline on the page (lines, tracking events...) posts its empty management form.
    data |= inlines_empty(page)
    data = {key: value for key, value in data.items() if value is not None}

    response = client_a.post(admin_url(Shipment, "change", shipment.pk), data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    shipment = reloaded(shipment)
    assert (shipment.service, shipment.carrier_rule) == (ups, None)
