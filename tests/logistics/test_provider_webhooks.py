"""Dispatch to a provider and its outbound webhooks: Standard Webhooks signatures verified with
the `standardwebhooks` verifier, over real HTTP to a loopback receiver through the outbound
policy, once per event id, retried with backoff, redelivered, disabled after days of failure."""

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone
from standardwebhooks import Webhook

from logistics.dispatch import shipment_changed, shipments_dispatch
from logistics.models import Provider, ProviderEvent, ShipmentStatus
from logistics.routing import orders_split_ready
from logistics.webhooks import (
    SHIPMENT_CREATED,
    provider_event_deliver,
    provider_event_emit,
    provider_events_deliver_due,
)
from tests.e2e.helpers import LoopbackReceiver, django_q_sync
from tests.logistics.provider_helpers import SECRET, provider_world
from tests.orders.admin_helpers import admin_url, assert_not_found, changelist_pks, run_action
from tkerp.models import Alert
from tkerp.tenancy import tenant_context

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("outbound_loopback")]


def events(tenant):
    with tenant_context(tenant):
        return list(ProviderEvent.objects.order_by("pk"))


@pytest.fixture
def receiver():
    with LoopbackReceiver() as receiver:
        yield receiver


@pytest.fixture
def world(tenant_a, receiver):
    return provider_world(tenant_a, webhook_url=receiver.url)


def test_a_routed_parcel_goes_to_its_provider_with_a_verifiable_shipment_created(
    world, receiver, django_capture_on_commit_callbacks
):
    with django_q_sync(), django_capture_on_commit_callbacks(execute=True):
        order = world.order(mugs=1, caps=2)

    parcel = world.parcel(order)
    assert parcel.provider == world.provider
    assert parcel.status == ShipmentStatus.SENT_TO_PROVIDER
    assert parcel.dispatched_at is not None
    (request,) = receiver.received
    payload = Webhook(SECRET).verify(request["body"], request["headers"])
    assert payload["type"] == "shipment.created"
    assert payload["data"]["reference"] == parcel.reference
    assert payload["data"]["order"] == order.platform_order_id
    assert sorted((line["sku"], line["quantity"]) for line in payload["data"]["lines"]) == [
        ("CAP", 2),
        ("MUG", 1),
    ]
    assert (
        payload["data"]["acknowledge_by"]
        == (parcel.dispatched_at + timedelta(minutes=30)).isoformat()
    )
    (event,) = events(world.tenant)
    assert request["headers"]["webhook-id"] == event.event_id
    assert event.status == "delivered" and event.attempts == 1 and event.last_status_code == 200


def test_a_wrong_secret_does_not_verify(world, receiver, django_capture_on_commit_callbacks):
    from standardwebhooks.webhooks import WebhookVerificationError

    with django_q_sync(), django_capture_on_commit_callbacks(execute=True):
        world.order()
    (request,) = receiver.received
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "b3RoZXIta2V5LW90aGVyLWtleQ==").verify(
            request["body"], request["headers"]
        )


def test_dispatch_and_the_event_happen_once_however_often_they_run(
    world, receiver, django_capture_on_commit_callbacks
):
    with django_q_sync(), django_capture_on_commit_callbacks(execute=True):
        order = world.order()
        parcel = world.parcel(order)
        assert shipments_dispatch(tenant=world.tenant) == []
        assert orders_split_ready(tenant=world.tenant) == 0
        again = provider_event_emit(
            shipment=parcel, event_type=SHIPMENT_CREATED, key=f"{parcel.pk}-created"
        )
    (event,) = events(world.tenant)
    assert again.pk == event.pk
    assert provider_event_deliver(tenant=world.tenant, event_pk=event.pk) == "skipped"
    assert provider_events_deliver_due() == {}
    assert len(receiver.received) == 1


def test_a_change_to_a_dispatched_parcel_is_a_new_shipment_updated(
    world, receiver, django_capture_on_commit_callbacks
):
    with django_q_sync(), django_capture_on_commit_callbacks(execute=True):
        parcel = world.parcel(world.order())
        with tenant_context(world.tenant):
            shipment_changed(shipment=parcel, change="service")
    created, updated = (Webhook(SECRET).verify(r["body"], r["headers"]) for r in receiver.received)
    assert created["type"] == "shipment.created"
    assert updated["type"] == "shipment.updated" and updated["data"]["change"] == "service"


def test_a_failed_delivery_is_retried_with_backoff_and_the_same_id(
    world, receiver, django_capture_on_commit_callbacks
):
    receiver.status = 503
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        with django_q_sync(), django_capture_on_commit_callbacks(execute=True):
            world.order()
        (event,) = events(world.tenant)
        assert event.status == "pending" and event.attempts == 1
        assert event.last_status_code == 503 and event.last_error == "HTTP 503"
        assert event.next_attempt_at == start + timedelta(minutes=1)
        assert provider_events_deliver_due() == {}  # not due yet

    receiver.status = 200
    with time_machine.travel(start + timedelta(minutes=2), tick=False):
        assert provider_events_deliver_due() == {"delivered": 1}
        first, second = receiver.received
        assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"]
        Webhook(SECRET).verify(second["body"], second["headers"])
    (event,) = events(world.tenant)
    assert event.status == "delivered" and event.attempts == 2 and event.last_error == ""


def test_it_gives_up_after_the_schedule_and_redeliver_sends_it_again(
    world, receiver, settings, client_a, django_capture_on_commit_callbacks
):
    settings.TKERP_PROVIDER_WEBHOOK_RETRY_MINUTES = [1]
    receiver.status = 500
    start = timezone.now()
    with (
        time_machine.travel(start, tick=False),
        django_q_sync(),
        django_capture_on_commit_callbacks(execute=True),
    ):
        world.order()
    with time_machine.travel(start + timedelta(minutes=5), tick=False):
        assert provider_events_deliver_due() == {"failed": 1}
    (event,) = events(world.tenant)
    assert event.status == "failed" and event.attempts == 2 and event.next_attempt_at is None

    receiver.status = 200
    with django_q_sync(), django_capture_on_commit_callbacks(execute=True):
        response = run_action(client_a, ProviderEvent, "redeliver", [event.pk])
    assert response.status_code == 302
    (event,) = events(world.tenant)
    assert event.status == "delivered"
    assert len({r["headers"]["webhook-id"] for r in receiver.received}) == 1
    assert len(receiver.received) == 3


def test_a_provider_failing_for_days_is_disabled_with_an_alert_and_re_enabled(
    world, receiver, settings, client_a, django_capture_on_commit_callbacks
):
    settings.TKERP_PROVIDER_WEBHOOK_DISABLE_DAYS = 2
    receiver.status = 500
    start = timezone.now()
    with (
        time_machine.travel(start, tick=False),
        django_q_sync(),
        django_capture_on_commit_callbacks(execute=True),
    ):
        world.order()
    for hours in (1, 6, 24, 49):  # the retries of the first event keep failing
        with time_machine.travel(start + timedelta(hours=hours), tick=False):
            provider_events_deliver_due()
    provider = Provider._base_manager.get(pk=world.provider.pk)
    assert provider.webhook_failing_since == start
    assert provider.webhook_disabled_at == start + timedelta(hours=49)
    with tenant_context(world.tenant):
        alert = Alert.objects.get(key=f"provider:{provider.pk}:webhooks_disabled")
    assert alert.is_open and "Factory 1688" in alert.title

    sent = len(receiver.received)
    with time_machine.travel(start + timedelta(hours=50), tick=False):
        with django_q_sync(), django_capture_on_commit_callbacks(execute=True):
            world.order()  # a new parcel's event waits while the provider is disabled
        assert provider_events_deliver_due() == {}
    assert len(receiver.received) == sent
    assert [e.status for e in events(world.tenant)] == ["pending", "pending"]

    receiver.status = 200
    response = run_action(client_a, Provider, "webhooks_enable", [provider.pk])
    assert response.status_code == 302
    assert provider_events_deliver_due() == {"delivered": 2}
    provider.refresh_from_db()
    assert provider.webhook_disabled_at is None and provider.webhook_failing_since is None
    alert.refresh_from_db()
    assert not alert.is_open


def test_a_private_address_is_refused_by_the_outbound_policy(
    tenant_a, settings, django_capture_on_commit_callbacks
):
    settings.TKERP_OUTBOUND_ALLOW_LOOPBACK = False
    world = provider_world(tenant_a, webhook_url="https://127.0.0.1:9/hook")
    with django_q_sync(), django_capture_on_commit_callbacks(execute=True):
        world.order()
    (event,) = events(tenant_a)
    assert event.status == "pending" and event.last_status_code is None
    assert event.last_error.startswith("refused: ") and "non-public" in event.last_error


def test_a_provider_without_a_webhook_url_gets_no_event(tenant_a):
    world = provider_world(tenant_a)
    order = world.order()
    assert world.parcel(order).status == ShipmentStatus.SENT_TO_PROVIDER
    assert events(tenant_a) == []


class TestTenants:
    def test_another_tenants_deliveries_are_neither_listed_nor_shown_nor_redelivered(
        self, world, client_b, django_capture_on_commit_callbacks
    ):
        with django_q_sync(), django_capture_on_commit_callbacks(execute=True):
            world.order()
        (event,) = events(world.tenant)
        assert changelist_pks(client_b, ProviderEvent) == set()
        assert_not_found(client_b, admin_url(ProviderEvent, "change", event.pk))
        run_action(client_b, ProviderEvent, "redeliver", [event.pk])
        assert events(world.tenant)[0].attempts == 1

    def test_the_sweep_delivers_each_tenant_under_its_own_scope(
        self, tenant_a, tenant_b, receiver, django_capture_on_commit_callbacks
    ):
        receiver.status = 503
        worlds = [provider_world(t, webhook_url=receiver.url) for t in (tenant_a, tenant_b)]
        with django_capture_on_commit_callbacks(execute=False):
            for world in worlds:
                world.order()
        assert provider_events_deliver_due() == {"retry": 2}
        assert [len(events(t)) for t in (tenant_a, tenant_b)] == [1, 1]


def test_a_task_given_another_tenants_event_does_nothing(
    world, tenant_b, receiver, django_capture_on_commit_callbacks
):
    from logistics.tasks import deliver_provider_event

    with django_capture_on_commit_callbacks(execute=False):
        world.order()
    (event,) = events(world.tenant)
    assert deliver_provider_event(tenant_b.pk, event.pk) == "skipped"
    assert receiver.received == [] and events(world.tenant)[0].attempts == 0
    assert deliver_provider_event(world.tenant.pk, event.pk) == "delivered"


def test_the_provider_jobs_are_scheduled(db):
    from django_q.models import Schedule

    from shops.schedules import schedules_ensure

    schedules_ensure()
    names = set(Schedule.objects.values_list("name", flat=True))
    assert {
        "tkerp: provider webhooks",
        "tkerp: provider sweep",
        "tkerp: provider order files",
    } <= names
    assert schedules_ensure() == []
