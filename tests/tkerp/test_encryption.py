"""Secrets at rest: encrypted in the database, readable through the ORM, rotated by a command,
shown in the admin only as "set, ending in ..."."""

import os
import subprocess
import sys
from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from logistics.models import Provider
from shops.models import Shop, ShopCredentials
from tests.factories import ProviderFactory, ShopCredentialsFactory, ShopFactory
from tests.orders.admin_helpers import admin_url, assert_not_found
from tkerp.apps import fernet_keys_check
from tkerp.encryption import encrypted_fields
from tkerp.tenancy import tenant_context

pytestmark = pytest.mark.django_db

OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()
SHOP_SECRETS = {
    "app_secret": "app-secret-0001",
    "access_token": "act.access-token-0002",
    "refresh_token": "rft.refresh-token-0003",
    "webhook_secret": "webhook-secret-0004",
}


def raw_row(table: str, pk: int, columns: list[str]) -> dict:
    """The row as a plain SQL SELECT sees it (what a leaked backup would hold)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(columns)} FROM {table} WHERE id = %s", [pk])
        return dict(zip(columns, cursor.fetchone(), strict=True))


def rotate() -> str:
    out = StringIO()
    call_command("rotate_secrets", stdout=out)
    return out.getvalue()


class TestAtRest:
    def test_every_secret_field_is_encrypted(self):
        assert {f"{model._meta.label}.{name}" for model, name in encrypted_fields()} == {
            "shops.ShopCredentials.app_secret",
            "shops.ShopCredentials.access_token",
            "shops.ShopCredentials.refresh_token",
            "shops.ShopCredentials.webhook_secret",
            "shops.Tenant.alert_webhook_secret",
            "logistics.Provider.webhook_secret",
            "logistics.LabelAccount.api_key",
        }

    def test_a_raw_select_shows_no_secret_in_clear(self, tenant_a):
        credentials = ShopCredentialsFactory(shop=ShopFactory(tenant=tenant_a), **SHOP_SECRETS)
        provider = ProviderFactory(tenant=tenant_a, webhook_secret="provider-secret-0005")

        raw = raw_row("shops_shopcredentials", credentials.pk, list(SHOP_SECRETS))
        raw |= raw_row("logistics_provider", provider.pk, ["webhook_secret"])

        for value in raw.values():
            assert value.startswith("fernet:")
        dump = " ".join(raw.values())
        for secret in [*SHOP_SECRETS.values(), "provider-secret-0005"]:
            assert secret not in dump
        credentials = ShopCredentials._base_manager.get(pk=credentials.pk)
        assert {name: getattr(credentials, name) for name in SHOP_SECRETS} == SHOP_SECRETS
        assert Provider._base_manager.get(pk=provider.pk).webhook_secret == "provider-secret-0005"

    def test_empty_stays_empty_so_is_set_filters_work(self, tenant_a):
        credentials = ShopCredentialsFactory(shop=ShopFactory(tenant=tenant_a), access_token="")
        assert raw_row("shops_shopcredentials", credentials.pk, ["access_token"]) == {
            "access_token": ""
        }
        with tenant_context(tenant_a):
            assert not ShopCredentials.objects.exclude(access_token="").exists()
            assert ShopCredentials.objects.exclude(app_secret="").exists()


class TestRotation:
    def test_rotate_re_encrypts_with_the_newest_key_and_is_idempotent(self, tenant_a, settings):
        settings.TKERP_FERNET_KEYS = [OLD_KEY]
        credentials = ShopCredentialsFactory(shop=ShopFactory(tenant=tenant_a), **SHOP_SECRETS)
        provider = ProviderFactory(tenant=tenant_a, webhook_secret="provider-secret-0005")
        tenant_a.alert_webhook_secret = "alert-secret-0006"
        tenant_a.save()

        settings.TKERP_FERNET_KEYS = [NEW_KEY, OLD_KEY]
        first = rotate()
        second = rotate()

        assert "shops.ShopCredentials.access_token: 1 re-encrypted" in first
        assert "total: 6 re-encrypted, 0 encrypted from plaintext, 0 already" in first
        assert "total: 0 re-encrypted, 0 encrypted from plaintext, 6 already" in second
        # The old key can go: everything opens with the new one alone.
        settings.TKERP_FERNET_KEYS = [NEW_KEY]
        new = Fernet(NEW_KEY)
        raw = raw_row("shops_shopcredentials", credentials.pk, list(SHOP_SECRETS))
        for name, value in raw.items():
            assert (
                new.decrypt(value.removeprefix("fernet:").encode()).decode() == (SHOP_SECRETS[name])
            )
        credentials = ShopCredentials._base_manager.get(pk=credentials.pk)
        assert credentials.refresh_token == SHOP_SECRETS["refresh_token"]
        assert Provider._base_manager.get(pk=provider.pk).webhook_secret == "provider-secret-0005"
        tenant_a.refresh_from_db()
        assert tenant_a.alert_webhook_secret == "alert-secret-0006"

    def test_plaintext_left_from_before_is_encrypted(self, tenant_a):
        credentials = ShopCredentialsFactory(shop=ShopFactory(tenant=tenant_a), access_token="")
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE shops_shopcredentials SET access_token = 'plain-token-0007' WHERE id = %s",
                [credentials.pk],
            )
        assert ShopCredentials._base_manager.get(pk=credentials.pk).access_token == (
            "plain-token-0007"
        )

        output = rotate()

        assert "shops.ShopCredentials.access_token: 0 re-encrypted, 1 encrypted" in output
        raw = raw_row("shops_shopcredentials", credentials.pk, ["access_token"])["access_token"]
        assert raw.startswith("fernet:") and "plain-token-0007" not in raw
        assert ShopCredentials._base_manager.get(pk=credentials.pk).access_token == (
            "plain-token-0007"
        )

    def test_a_value_no_key_opens_is_reported_not_lost(self, tenant_a, settings):
        settings.TKERP_FERNET_KEYS = [OLD_KEY]
        credentials = ShopCredentialsFactory(shop=ShopFactory(tenant=tenant_a), **SHOP_SECRETS)
        settings.TKERP_FERNET_KEYS = [NEW_KEY]  # the old key dropped too early

        with pytest.raises(
            CommandError, match=rf"shops.ShopCredentials.app_secret id {credentials.pk}"
        ):
            rotate()
        settings.TKERP_FERNET_KEYS = [NEW_KEY, OLD_KEY]
        rotate()
        assert ShopCredentials._base_manager.get(pk=credentials.pk).app_secret == "app-secret-0001"


class TestKeys:
    def test_a_malformed_key_is_a_startup_error(self, settings):
        settings.TKERP_FERNET_KEYS = [NEW_KEY, "not-a-key"]
        (error,) = fernet_keys_check()
        assert error.id == "tkerp.E001" and "key 2 is not a Fernet key" in error.msg
        settings.TKERP_FERNET_KEYS = [NEW_KEY]
        assert fernet_keys_check() == []

    def test_debug_off_without_keys_refuses_to_start(self):
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in {"TKERP_FERNET_KEYS", "DJANGO_SETTINGS_MODULE"}
        }
        env |= {"DEBUG": "false", "SECRET_KEY": "x" * 50, "DATABASE_URL": "postgres://h/db"}
        result = subprocess.run(
            [sys.executable, "-c", "import tkerp.settings"],
            env=env,
            capture_output=True,
            text=True,
        )
        assert result.returncode != 0
        assert "TKERP_FERNET_KEYS must be set when DEBUG is off" in result.stderr

        env["TKERP_FERNET_KEYS"] = NEW_KEY
        subprocess.run([sys.executable, "-c", "import tkerp.settings"], env=env, check=True)


class TestAdmin:
    def test_shop_credentials_show_only_that_a_secret_is_set_and_its_last_four(
        self, client_a, tenant_a
    ):
        shop = ShopFactory(tenant=tenant_a, name="Alpha TikTok")
        ShopCredentialsFactory(shop=shop, **{**SHOP_SECRETS, "webhook_secret": "short"})

        page = client_a.get(admin_url(Shop, "change", shop.pk)).content.decode()

        for secret in SHOP_SECRETS.values():
            assert secret not in page
        for tail in ("0001", "0002", "0003"):
            assert f"Set, ending in …{tail}; leave blank to keep it." in page
        assert "Set; leave blank to keep it." in page  # too short to show any of it

    def test_a_provider_secret_is_write_only(self, client_a, tenant_a):
        provider = ProviderFactory(tenant=tenant_a, webhook_secret="provider-secret-0005")
        url = admin_url(Provider, "change", provider.pk)
        page = client_a.get(url).content.decode()
        assert "provider-secret-0005" not in page and "ending in …0005" in page

        data = {
            "code": provider.code,
            "name": "Renamed",
            "kind": provider.kind,
            "supplier": "",
            "contact_email": "",
            "webhook_url": "",
            "webhook_secret": "",
            "confirm_within_minutes": "30",
            "tracking_within_minutes": "120",
            "is_active": "on",
        }
        assert client_a.post(url, data).status_code == 302
        provider.refresh_from_db()
        assert (provider.name, provider.webhook_secret) == ("Renamed", "provider-secret-0005")

        response = client_a.post(url, data | {"webhook_url": "http://127.0.0.1:8199/hook"})
        assert response.status_code == 200
        assert "This URL cannot be used" in str(response.context["adminform"].form.errors)

    def test_another_tenants_provider_is_not_found(self, client_a, tenant_b):
        provider = ProviderFactory(tenant=tenant_b, webhook_secret="theirs-0008")
        assert_not_found(client_a, admin_url(Provider, "change", provider.pk))
