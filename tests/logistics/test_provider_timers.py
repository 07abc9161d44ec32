"""The provider's clocks with a frozen clock: a reminder (webhook and e-mail) and an alert when
a parcel is not acknowledged 30 minutes after dispatch, and when its tracking has not come 2
hours after acknowledging; once per breach."""

from contextlib import contextmanager
from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.utils import timezone
from standardwebhooks import Webhook

from logistics.models import ProviderReminder, Shipment
from logistics.provider_timers import provider_reminders_sweep
from logistics.tasks import provider_sweep
from tests.e2e.helpers import LoopbackReceiver, django_q_sync
from tests.logistics.provider_helpers import SECRET, provider_world
from tests.orders.admin_helpers import admin_url, assert_not_found, changelist_pks
from tkerp.models import Alert
from tkerp.tenancy import tenant_context

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("outbound_loopback")]


def at(start, minutes):
    return time_machine.travel(start + timedelta(minutes=minutes), tick=False)


def late_alert(world):
    with tenant_context(world.tenant):
        return Alert.objects.filter(key=f"provider:{world.provider.pk}:late").order_by("pk").last()


def test_reminders_fire_at_30_minutes_and_at_2_hours(tenant_a, django_capture_on_commit_callbacks):
    start = timezone.now().replace(microsecond=0)

    @contextmanager
    def step(minutes):
        """At `minutes` after the start, with tasks run as they are queued after commit."""
        with at(start, minutes), django_q_sync(), django_capture_on_commit_callbacks(execute=True):
            yield

    with LoopbackReceiver() as receiver:
        world = provider_world(tenant_a, webhook_url=receiver.url)
        with step(0):
            parcel = world.parcel(world.order())
        assert parcel.dispatched_at == start

        with step(29):
            assert provider_reminders_sweep(tenant=tenant_a)["reminded"] == 0
        assert mail.outbox == [] and late_alert(world) is None

        with step(30):
            assert provider_reminders_sweep(tenant=tenant_a)["reminded"] == 1
        with step(31):  # the same breach is reminded once
            assert provider_reminders_sweep(tenant=tenant_a)["reminded"] == 0

        (email,) = mail.outbox
        assert email.to == ["orders@factory.example"]
        assert parcel.reference in email.body and "not acknowledged" in email.body
        assert late_alert(world).is_open
        with at(start, 31):
            reminder = Webhook(SECRET).verify(
                receiver.received[-1]["body"], receiver.received[-1]["headers"]
            )
        assert reminder["type"] == "shipment.reminder"
        assert reminder["data"]["reminder"] == "acknowledge"

        # The provider acknowledges at 40 minutes (the provider API sets this).
        with tenant_context(tenant_a):
            Shipment.objects.filter(pk=parcel.pk).update(
                acknowledged_at=start + timedelta(minutes=40), status="confirmed"
            )
        with step(40 + 119):  # acknowledged: nothing is late, the first alert closes
            assert provider_reminders_sweep(tenant=tenant_a) == {
                "reminded": 0,
                "emailed": 0,
                "resolved": 1,
            }
        with step(40 + 120):
            assert provider_reminders_sweep(tenant=tenant_a)["reminded"] == 1
        assert len(mail.outbox) == 2 and "no tracking" in mail.outbox[1].body
        assert late_alert(world).is_open  # a new alert for the new breach
        assert len(receiver.received) == 3  # created, and two reminders

        # Tracking arrives: nothing is late any more, and the alert closes.
        with tenant_context(tenant_a):
            Shipment.objects.filter(pk=parcel.pk).update(
                tracking_number="9400111899223197428490", shipped_at=start
            )
        with step(200):
            assert provider_reminders_sweep(tenant=tenant_a)["resolved"] == 1
        assert not late_alert(world).is_open

    with tenant_context(tenant_a):
        kinds = sorted(ProviderReminder.objects.values_list("kind", "due_at"))
    assert kinds == [
        ("acknowledge", start + timedelta(minutes=30)),
        ("tracking", start + timedelta(minutes=160)),
    ]


def test_the_windows_are_per_provider_settings(tenant_a):
    start = timezone.now().replace(microsecond=0)
    world = provider_world(tenant_a, contact_email="")
    world.provider.confirm_within_minutes = 10
    world.provider.save()
    with at(start, 0):
        world.order()
    with at(start, 10):
        assert provider_reminders_sweep(tenant=tenant_a)["reminded"] == 1
    with tenant_context(tenant_a):
        reminder = ProviderReminder.objects.get()
    assert reminder.email_error == "the provider has no contact e-mail"
    assert mail.outbox == []


def test_the_task_sweeps_every_tenant_and_each_sees_only_its_own(
    tenant_a, tenant_b, client_a, client_b
):
    start = timezone.now()
    worlds = [provider_world(tenant) for tenant in (tenant_a, tenant_b)]
    with at(start, 0):
        for world in worlds:
            world.order()
    with at(start, 45):
        assert provider_sweep() == {"dispatched": 0, "reminded": 2}
    with tenant_context(tenant_a):
        mine = ProviderReminder.objects.get()
    with tenant_context(tenant_b):
        theirs = ProviderReminder.objects.get()
    assert changelist_pks(client_a, ProviderReminder) == {mine.pk}
    assert changelist_pks(client_b, ProviderReminder) == {theirs.pk}
    assert_not_found(client_b, admin_url(ProviderReminder, "change", mine.pk))
