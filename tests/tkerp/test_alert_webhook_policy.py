"""The tenant's alert webhook under the outbound policy: what the form accepts, what is called,
what is recorded, and its own signing secret (write-only, stored encrypted)."""

import hashlib
import hmac
import socket

import pytest
from django.db import connection
from django.test import override_settings

from shops.models import Tenant
from tests.e2e.helpers import LoopbackReceiver
from tests.orders.admin_helpers import admin_url, assert_not_found
from tkerp.alerts import alert_raise
from tkerp.notify import NotificationFailed, alert_notify

pytestmark = pytest.mark.django_db

REAL_GETADDRINFO = socket.getaddrinfo
# What the names outside this machine resolve to in these tests.
NAMES = {"hooks.example.test": "93.184.216.34", "hooks.internal.test": "10.0.0.5"}


@pytest.fixture(autouse=True)
def dns(monkeypatch):
    def getaddrinfo(host, port, *args, **kwargs):
        if host in NAMES:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (NAMES[host], port))]
        return REAL_GETADDRINFO(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def tenant_form(tenant, **values) -> dict:
    return {
        "name": tenant.name,
        "default_currency": tenant.default_currency,
        "timezone": tenant.timezone,
        "alert_email": "",
        "alert_webhook_url": "",
        "alert_webhook_secret": "",
        **values,
    }


def raise_alert(tenant):
    return alert_raise(tenant=tenant, key="shop:1:sync", kind="sync_failing", title="Sync failing")


class TestTheForm:
    @pytest.mark.parametrize(
        ("url", "reason"),
        [
            ("http://127.0.0.1:8199/", "https"),
            ("https://127.0.0.1:8199/", "non-public"),
            ("https://[::1]/", "non-public"),
            ("https://169.254.169.254/latest/meta-data/", "non-public"),
            ("https://hooks.internal.test/alerts", "non-public"),
            ("http://hooks.example.test/alerts", "https"),
        ],
    )
    def test_internal_addresses_and_plain_http_get_a_clear_error(
        self, client_a, tenant_a, url, reason
    ):
        response = client_a.post(
            admin_url(Tenant, "change", tenant_a.pk), tenant_form(tenant_a, alert_webhook_url=url)
        )

        assert response.status_code == 200
        errors = response.context["adminform"].form.errors["alert_webhook_url"]
        assert "This URL cannot be used" in errors[0] and reason in errors[0]
        tenant_a.refresh_from_db()
        assert tenant_a.alert_webhook_url == ""

    def test_a_public_https_url_is_saved(self, client_a, tenant_a):
        url = "https://hooks.example.test/alerts"
        response = client_a.post(
            admin_url(Tenant, "change", tenant_a.pk), tenant_form(tenant_a, alert_webhook_url=url)
        )

        assert response.status_code == 302
        tenant_a.refresh_from_db()
        assert tenant_a.alert_webhook_url == url


class TestTheCall:
    def test_a_stored_internal_url_is_never_called(self, tenant_a):
        # As a URL saved before the policy existed would be.
        with LoopbackReceiver(body=b"redis_version:7.2 INTERNAL") as receiver:
            Tenant.objects.filter(pk=tenant_a.pk).update(alert_webhook_url=receiver.url)
            alert = raise_alert(tenant_a)

            with pytest.raises(NotificationFailed, match="refused"):
                alert_notify(alert_id=alert.pk)

        assert receiver.received == []
        alert.refresh_from_db()
        assert alert.notified_channels == [] and "refused" in alert.notify_error

    @pytest.mark.usefixtures("outbound_loopback")
    def test_the_reply_is_never_recorded(self, tenant_a):
        with LoopbackReceiver(500, body=b"Traceback: DATABASE_URL=postgres://x:pw@db") as receiver:
            Tenant.objects.filter(pk=tenant_a.pk).update(alert_webhook_url=receiver.url)
            alert = raise_alert(tenant_a)
            with pytest.raises(NotificationFailed):
                alert_notify(alert_id=alert.pk)

        alert.refresh_from_db()
        assert alert.notify_error == "webhook: alert webhook answered HTTP 500"

    @pytest.mark.usefixtures("outbound_loopback")
    @override_settings(TKERP_ALERT_WEBHOOK_SECRET="server-default")
    def test_the_tenants_own_secret_signs_and_the_setting_is_the_fallback(self, tenant_a):
        with LoopbackReceiver() as receiver:
            tenant_a.alert_webhook_url = receiver.url
            tenant_a.alert_webhook_secret = "tenant-own-secret"
            tenant_a.save()
            alert_notify(alert_id=raise_alert(tenant_a).pk)
            tenant_a.alert_webhook_secret = ""
            tenant_a.save()
            alert_notify(
                alert_id=alert_raise(
                    tenant=tenant_a, key="other", kind="sync_failing", title="Other"
                ).pk
            )

        own, fallback = receiver.received
        for request, secret in ((own, b"tenant-own-secret"), (fallback, b"server-default")):
            expected = hmac.new(secret, request["body"], hashlib.sha256).hexdigest()
            assert request["headers"]["X-Tkerp-Signature"] == f"sha256={expected}"


class TestTheSecret:
    def test_it_is_write_only_stored_encrypted_and_erasable(self, client_a, tenant_a):
        url = admin_url(Tenant, "change", tenant_a.pk)
        assert client_a.post(url, tenant_form(tenant_a, alert_webhook_secret="whsec-0123456789"))
        tenant_a.refresh_from_db()
        assert tenant_a.alert_webhook_secret == "whsec-0123456789"
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT alert_webhook_secret FROM shops_tenant WHERE id = %s", [tenant_a.pk]
            )
            (raw,) = cursor.fetchone()
        assert raw.startswith("fernet:") and "0123456789" not in raw

        page = client_a.get(url).content.decode()
        assert "whsec-0123456789" not in page and "ending in …6789" in page

        client_a.post(url, tenant_form(tenant_a))  # blank keeps it
        tenant_a.refresh_from_db()
        assert tenant_a.alert_webhook_secret == "whsec-0123456789"

        client_a.post(url, tenant_form(tenant_a, clear_secrets=["alert_webhook_secret"]))
        tenant_a.refresh_from_db()
        assert tenant_a.alert_webhook_secret == ""

    def test_another_tenants_page_is_not_found(self, client_a, tenant_b):
        assert_not_found(client_a, admin_url(Tenant, "change", tenant_b.pk))
