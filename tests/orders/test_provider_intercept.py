"""A buyer's cancellation approved while a provider has the parcel: the provider is asked to
stop it (`shipment.cancelled`), the stock stays reserved until it answers, and its answer
(`shipment_intercept_resolve`, which the provider API calls) releases it or raises an alert."""

import pytest
from standardwebhooks import Webhook

from inventory.models import StockLevel
from logistics.models import Shipment
from orders.cancellations import cancellation_approve, shipment_intercept_resolve
from orders.models import Order, OrderStatus
from tests.e2e.helpers import LoopbackReceiver, django_q_sync
from tests.factories import CancellationRequestFactory
from tests.logistics.provider_helpers import SECRET, provider_world
from tests.orders.admin_helpers import admin_url, assert_not_found, changelist_pks
from tkerp.models import Alert
from tkerp.tenancy import tenant_context

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("outbound_loopback")]


def stock(world) -> dict[str, tuple[int, int]]:
    with tenant_context(world.tenant):
        return {
            level.sku.code: (level.on_hand, level.reserved)
            for level in StockLevel.objects.filter(warehouse=world.warehouse).select_related("sku")
        }


def approve(order, user):
    request = CancellationRequestFactory(tenant=order.tenant, order=order)
    with tenant_context(order.tenant):
        cancellation_approve(request=request, user=user)


@pytest.fixture
def receiver():
    with LoopbackReceiver() as receiver:
        yield receiver


@pytest.fixture
def world(tenant_a, receiver):
    return provider_world(tenant_a, webhook_url=receiver.url)


@pytest.fixture
def cancelled(world, user_a, django_capture_on_commit_callbacks):
    """An order dispatched to the supplier, then cancelled at the buyer's request."""
    with django_q_sync(), django_capture_on_commit_callbacks(execute=True):
        order = world.order(mugs=1, caps=2)
        approve(order, user_a)
    return order


def test_the_provider_is_asked_to_stop_and_the_stock_stays_reserved(world, receiver, cancelled):
    parcel = world.parcel(cancelled)
    assert Order._base_manager.get(pk=cancelled.pk).status == OrderStatus.CANCELLED
    assert parcel.intercept_state == "requested" and parcel.status == "sent_to_provider"
    assert stock(world) == {"MUG": (20, 1), "CAP": (20, 2)}
    created, cancelled_event = (
        Webhook(SECRET).verify(r["body"], r["headers"]) for r in receiver.received
    )
    assert created["type"] == "shipment.created"
    assert cancelled_event["type"] == "shipment.cancelled"
    assert cancelled_event["data"]["intercept_state"] == "requested"
    assert cancelled_event["data"]["reference"] == parcel.reference


def test_a_confirmed_intercept_cancels_the_parcel_and_releases_its_stock(world, cancelled):
    parcel = world.parcel(cancelled)
    assert shipment_intercept_resolve(shipment=parcel, intercepted=True) is True
    parcel.refresh_from_db()
    assert parcel.intercept_state == "confirmed" and parcel.status == "cancelled"
    assert stock(world) == {"MUG": (20, 0), "CAP": (20, 0)}
    # The provider's retry of the same answer changes nothing.
    assert shipment_intercept_resolve(shipment=parcel, intercepted=True) is False
    assert shipment_intercept_resolve(shipment=parcel, intercepted=False) is False
    assert stock(world) == {"MUG": (20, 0), "CAP": (20, 0)}
    with tenant_context(world.tenant):
        kinds = list(cancelled.events.values_list("kind", flat=True))
    assert "shipment.intercepted" in kinds


def test_too_late_keeps_the_stock_reserved_and_alerts_the_seller(world, cancelled):
    parcel = world.parcel(cancelled)
    assert shipment_intercept_resolve(shipment=parcel, intercepted=False) is True
    parcel.refresh_from_db()
    assert parcel.intercept_state == "failed" and parcel.status == "sent_to_provider"
    assert stock(world) == {"MUG": (20, 1), "CAP": (20, 2)}
    with tenant_context(world.tenant):
        alert = Alert.objects.get(key=f"shipment:{parcel.pk}:intercept_failed")
    assert parcel.reference in alert.title


def test_a_cancel_from_the_platform_asks_the_provider_to_stop_and_keeps_the_stock(world):
    """The platform cancels the order itself (its sync or webhook stores it cancelled; no
    request passes through the inbox) while the provider holds the parcel: the provider must
    hear of it, and the units stay reserved until it answers, as for an approved request."""
    from inventory.reservations import orders_reserve

    order = world.order(mugs=1, caps=2)
    Order._base_manager.filter(pk=order.pk).update(status=OrderStatus.CANCELLED)

    orders_reserve(tenant=world.tenant, order_ids=[order.pk])  # the pipeline's stock step

    parcel = world.parcel(order)
    assert parcel.intercept_state == "requested" and parcel.status == "sent_to_provider"
    assert stock(world) == {"MUG": (20, 1), "CAP": (20, 2)}
    assert shipment_intercept_resolve(shipment=parcel, intercepted=True) is True
    assert stock(world) == {"MUG": (20, 0), "CAP": (20, 0)}


def test_a_parcel_never_asked_to_stop_is_left_alone(world):
    parcel = world.parcel(world.order())
    assert shipment_intercept_resolve(shipment=parcel, intercepted=True) is False
    parcel.refresh_from_db()
    assert parcel.intercept_state == "" and parcel.status == "sent_to_provider"


def test_the_order_and_parcel_pages_show_the_intercept(world, cancelled, client_a, client_b):
    parcel = world.parcel(cancelled)
    page = client_a.get(admin_url(Order, "change", cancelled.pk))
    assert page.status_code == 200
    assert "Intercept requested" in page.content.decode()
    assert changelist_pks(client_a, Shipment, "?intercept_state=requested") == {parcel.pk}

    shipment_intercept_resolve(shipment=parcel, intercepted=False)
    page = client_a.get(admin_url(Order, "change", cancelled.pk))
    assert "Too late to intercept" in page.content.decode()
    assert changelist_pks(client_b, Shipment, "?intercept_state=failed") == set()
    assert_not_found(client_b, admin_url(Shipment, "change", parcel.pk))


def test_only_the_providers_units_wait_for_its_answer(tenant_a, user_a, receiver):
    from inventory.models import MovementKind, WarehouseKind
    from inventory.stock import stock_adjust
    from tests.factories import WarehouseFactory

    world = provider_world(tenant_a, webhook_url=receiver.url)
    own = WarehouseFactory(tenant=tenant_a, code="OWN", kind=WarehouseKind.OWN)
    with tenant_context(tenant_a):
        stock_adjust(
            sku=world.mug, warehouse=own, delta=5, kind=MovementKind.RECEIVE, user=None, note="x"
        )
    order = world.order(mugs=1, caps=2)  # the mug from our shelf, the caps from the supplier
    with tenant_context(tenant_a):
        parcels = {s.warehouse.code: s for s in Shipment.objects.filter(order=order)}
        assert parcels["OWN"].status == "pending" and parcels["FAC-WH"].dispatched_at
    approve(order, user_a)

    with tenant_context(tenant_a):
        own_mug = StockLevel.objects.get(warehouse=own, sku=world.mug)
        parcels = {s.warehouse.code: s for s in Shipment.objects.filter(order=order)}
    assert (own_mug.on_hand, own_mug.reserved) == (5, 0)  # released at once
    assert stock(world) == {"MUG": (20, 0), "CAP": (20, 2)}  # held for the provider
    assert parcels["OWN"].status == "cancelled" and parcels["OWN"].intercept_state == ""
    assert parcels["FAC-WH"].intercept_state == "requested"

    shipment_intercept_resolve(shipment=parcels["FAC-WH"], intercepted=True)
    assert stock(world) == {"MUG": (20, 0), "CAP": (20, 0)}


def test_a_person_records_the_providers_answer_from_the_parcel_list(
    world, cancelled, client_a, client_b
):
    from tests.orders.admin_helpers import run_action

    parcel = world.parcel(cancelled)
    run_action(client_b, Shipment, "intercept_confirmed", [parcel.pk])  # another tenant: nothing
    parcel.refresh_from_db()
    assert parcel.intercept_state == "requested"

    response = run_action(client_a, Shipment, "intercept_confirmed", [parcel.pk])
    assert response.status_code == 302
    parcel.refresh_from_db()
    assert parcel.intercept_state == "confirmed" and parcel.status == "cancelled"
    assert stock(world) == {"MUG": (20, 0), "CAP": (20, 0)}
    followed = client_a.get(response["Location"])
    assert "1 parcel recorded" in followed.content.decode()
