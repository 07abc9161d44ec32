"""The migration from free API base URLs and plaintext secrets, run on rows written before it."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from tkerp.db.postgres.base import database_owner

BEFORE = [("shops", "0002_shop_ship_by_defaults_from_settings"), ("logistics", "0001_initial")]
AFTER = [
    ("shops", "0005_secrets_encrypt_stored"),
    ("logistics", "0002_provider_webhook_secret_encrypted"),
]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.fixture(autouse=True)
def scratch_database():
    """The test runs on an empty database of its own, as the tables' owner (schema changes are
    the owner's, not the application role's). Migrating a few apps forward from nothing takes
    seconds; taking the test database back to BEFORE, and every later migration forward again,
    took a minute."""
    main = connection.settings_dict["NAME"]
    scratch = f"{main}_secrets_migration"
    with connection._nodb_cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{scratch}"')
        cursor.execute(f'CREATE DATABASE "{scratch}"')
    try:
        with database_owner():  # closes the connection on the way in and out
            connection.settings_dict["NAME"] = scratch
            try:
                yield
            finally:
                connection.settings_dict["NAME"] = main
    finally:
        with connection._nodb_cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{scratch}"')


def raw(table: str, pk: int, column: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} WHERE id = %s", [pk])
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_urls_become_endpoints_secrets_get_encrypted_and_quoted_errors_go():
    old = migrate(BEFORE)
    Tenant = old.get_model("shops", "Tenant")
    Shop = old.get_model("shops", "Shop")
    ShopCredentials = old.get_model("shops", "ShopCredentials")
    SyncRun = old.get_model("shops", "SyncRun")
    Provider = old.get_model("logistics", "Provider")
    tenant = Tenant.objects.create(name="Alpha", slug="alpha")
    urls = {
        "sandbox": "http://sandbox.tkerp.internal/sandbox/tiktok",
        "internal": "http://127.0.0.1:8199/",
        "platform": "https://open-api.tiktokglobalshop.com",
        "blank": "",
    }
    credentials = {}
    for name, url in urls.items():
        shop = Shop.objects.create(
            tenant=tenant,
            name=name,
            platform="tiktok",
            last_sync_error=f"tiktok HTTP 200: response is not JSON (starts '{name} SECRET')",
        )
        credentials[name] = ShopCredentials.objects.create(
            tenant=tenant,
            shop=shop,
            api_base_url=url,
            app_secret=f"{name}-app-secret",
            access_token=f"{name}-access-token",
            extra={"auth_base_url": "http://127.0.0.1:8199", "location_id": "7"},
        )
    run = SyncRun.objects.create(
        tenant=tenant,
        shop=shop,
        status="failed",
        started_at=timezone.now(),
        error="amazon HTTP 400: <html>INTERNAL SECRET</html>",
    )
    provider = Provider.objects.create(
        tenant=tenant, code="P1", name="3PL", kind="3pl", webhook_secret="provider-secret"
    )

    new = migrate(AFTER)

    rows = new.get_model("shops", "ShopCredentials")._base_manager
    endpoints = {name: rows.get(pk=row.pk).api_endpoint for name, row in credentials.items()}
    assert endpoints == {
        "sandbox": "sandbox",
        "internal": "live",
        "platform": "live",
        "blank": "live",
    }
    for name, row in credentials.items():
        migrated = rows.get(pk=row.pk)
        assert migrated.extra == {"location_id": "7"}
        assert migrated.access_token == f"{name}-access-token"
        stored = raw("shops_shopcredentials", row.pk, "access_token")
        assert stored.startswith("fernet:") and "access-token" not in stored
    stored = raw("logistics_provider", provider.pk, "webhook_secret")
    assert stored.startswith("fernet:") and "provider" not in stored
    assert "SECRET" not in raw("shops_syncrun", run.pk, "error")
    assert "SECRET" not in raw("shops_shop", shop.pk, "last_sync_error")

    # And back: the URLs of sandbox shops and plaintext secrets return.
    old = migrate(BEFORE)
    rows = old.get_model("shops", "ShopCredentials")._base_manager
    assert rows.get(pk=credentials["sandbox"].pk).api_base_url == urls["sandbox"]
    assert raw("shops_shopcredentials", credentials["blank"].pk, "app_secret") == (
        "blank-app-secret"
    )
