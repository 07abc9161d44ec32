"""Alerts: raised once, counted while open, resolved, told to the tenant's channels once."""

import hashlib
import hmac

import pytest
from django.core import mail
from django.db import IntegrityError, transaction
from django.test import override_settings

import shops.admin_sync  # noqa: F401 - registers the Alert admin (the lead wires it for real)
from tests.e2e.helpers import LoopbackReceiver
from tests.factories import AlertFactory, ShopFactory
from tests.orders.admin_helpers import admin_url, assert_not_found, changelist_pks, run_action
from tkerp.alerts import alert_raise, alert_resolve
from tkerp.models import Alert
from tkerp.notify import NotificationFailed, alert_notify, webhook_signature
from tkerp.tenancy import tenant_context

pytestmark = pytest.mark.django_db


def raise_sync_alert(tenant, shop=None, message="3 passes failed"):
    return alert_raise(
        tenant=tenant,
        key="shop:1:sync",
        kind="sync_failing",
        title="Order sync failing",
        message=message,
        shop=shop,
    )


class TestRaiseAndResolve:
    def test_raising_twice_keeps_one_open_alert_and_notifies_once(
        self, tenant_a, django_capture_on_commit_callbacks
    ):
        with django_capture_on_commit_callbacks() as first:
            alert = raise_sync_alert(tenant_a)
        with django_capture_on_commit_callbacks() as second:
            again = raise_sync_alert(tenant_a, message="4 passes failed")

        assert again.pk == alert.pk
        assert again.occurrences == 2 and again.message == "4 passes failed"
        assert len(first) == 1 and len(second) == 0
        with tenant_context(tenant_a):
            assert Alert.objects.count() == 1

    def test_resolving_closes_it_and_the_next_raise_opens_a_new_one(
        self, tenant_a, django_capture_on_commit_callbacks
    ):
        first = raise_sync_alert(tenant_a)
        assert alert_resolve(tenant=tenant_a, key="shop:1:sync") == 1
        assert alert_resolve(tenant=tenant_a, key="shop:1:sync") == 0
        with django_capture_on_commit_callbacks() as callbacks:
            second = raise_sync_alert(tenant_a)
        assert second.pk != first.pk and second.is_open and len(callbacks) == 1
        first.refresh_from_db()
        assert first.resolved_at is not None

    def test_the_same_key_in_two_tenants_is_two_alerts(self, tenant_a, tenant_b):
        a, b = raise_sync_alert(tenant_a), raise_sync_alert(tenant_b)
        assert a.pk != b.pk and a.tenant == tenant_a and b.tenant == tenant_b
        alert_resolve(tenant=tenant_a, key="shop:1:sync")
        b.refresh_from_db()
        assert b.is_open

    def test_the_database_refuses_a_second_open_alert_with_the_same_key(self, tenant_a):
        AlertFactory(tenant=tenant_a, key="k")
        with pytest.raises(IntegrityError), transaction.atomic():
            AlertFactory(tenant=tenant_a, key="k")

    def test_a_title_over_the_column_is_cut_when_opened_and_when_raised_again(self, tenant_a):
        # A real case: "Low stock: <SKU code>" or a shop name in a title can run long.
        title = "Orders of " + "A very long shop name " * 12 + "were stored but not processed"
        assert len(title) > 200

        first = alert_raise(tenant=tenant_a, key="long", kind="orders.pipeline", title=title)
        again = alert_raise(tenant=tenant_a, key="long", kind="orders.pipeline", title=title)

        assert again.pk == first.pk and again.occurrences == 2
        assert again.title == title[:200]


@pytest.mark.usefixtures("outbound_loopback")
class TestNotify:
    @override_settings(TKERP_ALERT_WEBHOOK_SECRET="hook-secret")
    def test_email_and_a_signed_webhook_are_sent_once(self, tenant_a):
        shop = ShopFactory(tenant=tenant_a, name="Alpha TikTok")
        with LoopbackReceiver() as receiver:
            tenant_a.alert_email = "ops@alpha.example"
            tenant_a.alert_webhook_url = receiver.url
            tenant_a.save()
            alert = raise_sync_alert(tenant_a, shop=shop)

            assert alert_notify(alert_id=alert.pk) == ["email", "webhook"]
            assert alert_notify(alert_id=alert.pk) == []  # a retry repeats nothing

        (email,) = mail.outbox
        assert email.to == ["ops@alpha.example"]
        assert "Alpha TikTok" in email.subject and "Order sync failing" in email.subject
        (request,) = receiver.received
        payload = receiver.json()
        assert payload["key"] == "shop:1:sync" and payload["shop"] == "Alpha TikTok"
        assert payload["tenant"] == "alpha"
        expected = "sha256=" + hmac.new(b"hook-secret", request["body"], hashlib.sha256).hexdigest()
        assert request["headers"]["X-Tkerp-Signature"] == expected
        assert webhook_signature(request["body"], "hook-secret") == expected
        alert.refresh_from_db()
        assert alert.notified_at is not None and alert.notified_channels == ["email", "webhook"]

    def test_a_failing_webhook_is_retried_without_repeating_the_email(self, tenant_a):
        with LoopbackReceiver(status=503) as receiver:
            tenant_a.alert_email = "ops@alpha.example"
            tenant_a.alert_webhook_url = receiver.url
            tenant_a.save()
            alert = raise_sync_alert(tenant_a)

            with pytest.raises(NotificationFailed, match="HTTP 503"):
                alert_notify(alert_id=alert.pk)
            alert.refresh_from_db()
            assert alert.notified_at is None and alert.notified_channels == ["email"]
            assert "503" in alert.notify_error

            receiver.status = 200
            assert alert_notify(alert_id=alert.pk) == ["webhook"]

        assert len(mail.outbox) == 1 and len(receiver.received) == 2
        alert.refresh_from_db()
        assert alert.notified_at is not None and alert.notify_error == ""

    def test_a_resolved_alert_is_not_notified(self, tenant_a):
        tenant_a.alert_email = "ops@alpha.example"
        tenant_a.save()
        alert = raise_sync_alert(tenant_a)
        alert_resolve(tenant=tenant_a, key=alert.key)
        assert alert_notify(alert_id=alert.pk) == []
        assert mail.outbox == []


class TestRequeue:
    def test_an_alert_whose_notification_was_never_queued_is_queued_by_the_sweep(
        self, tenant_a, monkeypatch
    ):
        from datetime import timedelta

        from django.utils import timezone

        from shops import tasks

        queued = []
        monkeypatch.setattr(
            "django_q.tasks.async_task", lambda *args, **kwargs: queued.append(args)
        )
        long_ago = timezone.now() - timedelta(minutes=10)
        lost = AlertFactory(tenant=tenant_a, opened_at=long_ago)
        AlertFactory(tenant=tenant_a, opened_at=long_ago, notified_at=long_ago)  # told
        AlertFactory(tenant=tenant_a, opened_at=long_ago, notify_error="HTTP 500")  # retrying
        AlertFactory(tenant=tenant_a)  # just opened: its own task is on the way

        assert tasks.sync_due_shops()["alerts_requeued"] == [lost.pk]
        assert queued == [("shops.tasks.send_alert_notification", lost.pk)]
        assert tasks.sync_due_shops()["alerts_requeued"] == []  # queued now; not again soon


class TestAlertAdmin:
    def test_changelist_shows_own_alerts_and_filters_open_ones(self, client_a, tenant_a, tenant_b):
        mine = AlertFactory(tenant=tenant_a)
        done = AlertFactory(tenant=tenant_a, resolved_at=mine.opened_at)
        theirs = AlertFactory(tenant=tenant_b)
        assert changelist_pks(client_a, Alert) == {mine.pk, done.pk}
        assert changelist_pks(client_a, Alert, "?state=open") == {mine.pk}
        assert changelist_pks(client_a, Alert, "?state=resolved") == {done.pk}
        assert theirs.pk not in changelist_pks(client_a, Alert)

    def test_another_tenants_alert_does_not_exist(self, client_a, tenant_b):
        theirs = AlertFactory(tenant=tenant_b)
        assert_not_found(client_a, admin_url(Alert, "change", theirs.pk))

    def test_resolve_action_resolves_own_alerts_only(self, client_a, tenant_a, tenant_b):
        mine = AlertFactory(tenant=tenant_a)
        theirs = AlertFactory(tenant=tenant_b)
        response = run_action(client_a, Alert, "resolve", [mine.pk, theirs.pk])
        assert response.status_code == 302
        mine.refresh_from_db()
        theirs.refresh_from_db()
        assert mine.resolved_at is not None
        assert theirs.resolved_at is None

    def test_changelist_query_count_does_not_grow_with_rows(
        self, client_a, tenant_a, django_assert_max_num_queries
    ):
        for _ in range(30):
            AlertFactory(tenant=tenant_a, shop=ShopFactory(tenant=tenant_a))
        with django_assert_max_num_queries(15):
            response = client_a.get(admin_url(Alert, "changelist"))
        assert response.status_code == 200
