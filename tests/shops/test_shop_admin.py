"""The seller's settings in the admin: tenant row, memberships, shops and their credentials."""

import pytest
from django.test import Client, override_settings

from orders.models import Order
from shops.models import Membership, Role, Shop, ShopCredentials, Tenant
from tests.factories import (
    MembershipFactory,
    ShopCredentialsFactory,
    ShopFactory,
    UserFactory,
)
from tests.orders.admin_helpers import (
    admin_url,
    assert_not_found,
    autocomplete_ids,
    changelist_pks,
)

pytestmark = pytest.mark.django_db

SECRETS = {
    "app_secret": "s3cret-app-value",
    "access_token": "tok-access-value",
    "refresh_token": "tok-refresh-value",
    "webhook_secret": "hook-secret-value",
}


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def member_of_a(tenant_a):
    def make(role: str) -> Client:
        user = UserFactory(username=f"{role}-of-a")
        MembershipFactory(tenant=tenant_a, user=user, role=role)
        return login(user)

    return make


@pytest.fixture
def superuser_client(superuser):
    return login(superuser)


class TestTenantAdmin:
    def test_owner_sees_only_their_tenant(self, client_a, tenant_a, tenant_b):
        assert changelist_pks(client_a, Tenant) == {tenant_a.pk}
        assert_not_found(client_a, admin_url(Tenant, "change", tenant_b.pk))
        assert_not_found(client_a, admin_url(Tenant, "history", tenant_b.pk))
        # Deleting is refused outright, whichever id is asked: no way to tell which exist.
        for pk in (tenant_a.pk, tenant_b.pk, 999_999):
            assert client_a.get(admin_url(Tenant, "delete", pk)).status_code == 403

    def test_owner_changes_the_name_but_not_slug_or_switch(self, client_a, tenant_a):
        response = client_a.post(
            admin_url(Tenant, "change", tenant_a.pk),
            {
                "name": "Alpha Goods Ltd",
                "slug": "stolen",
                "is_active": "",
                "default_currency": "EUR",
                "timezone": "Europe/Paris",
                "alert_email": "",
                "alert_webhook_url": "",
            },
        )

        assert response.status_code == 302
        tenant_a.refresh_from_db()
        assert (tenant_a.name, tenant_a.default_currency) == ("Alpha Goods Ltd", "EUR")
        assert (tenant_a.slug, tenant_a.is_active) == ("alpha", True)

    def test_nobody_but_the_operator_adds_or_deletes_tenants(self, client_a, tenant_a):
        assert client_a.get(admin_url(Tenant, "add")).status_code == 403
        assert (
            client_a.post(admin_url(Tenant, "delete", tenant_a.pk), {"post": "yes"}).status_code
            == 403
        )
        assert Tenant.objects.filter(pk=tenant_a.pk).exists()

    def test_a_manager_does_not_see_the_tenant_admin(self, member_of_a):
        assert member_of_a(Role.MANAGER).get(admin_url(Tenant, "changelist")).status_code == 403

    def test_superuser_sees_and_adds_tenants(self, superuser_client, tenant_a, tenant_b):
        assert changelist_pks(superuser_client, Tenant) == {tenant_a.pk, tenant_b.pk}
        assert superuser_client.get(admin_url(Tenant, "add")).status_code == 200


class TestMembershipAdmin:
    def test_owner_sees_only_their_tenants_members(self, client_a, user_a, user_b):
        mine = Membership._base_manager.get(user=user_a)
        theirs = Membership._base_manager.get(user=user_b)

        assert changelist_pks(client_a, Membership) == {mine.pk}
        assert_not_found(client_a, admin_url(Membership, "change", theirs.pk))
        assert_not_found(client_a, admin_url(Membership, "delete", theirs.pk))

    def test_an_owner_cannot_add_another_tenants_user_by_name(self, client_a, tenant_a, user_b):
        # Joining is by invitation only (tests/shops/test_invitations.py): naming a user reached
        # into every tenant, even as owner, and the error told whether the name existed.
        add_url = admin_url(Membership, "add")
        assert client_a.get(add_url).status_code == 403
        for lookup in ("owner-b", "nobody"):
            response = client_a.post(add_url, {"user_lookup": lookup, "role": Role.OWNER})
            assert response.status_code == 403
            assert lookup not in response.content.decode()
        assert not Membership._base_manager.filter(tenant=tenant_a, user=user_b).exists()

    def test_owner_cannot_search_every_user(self, client_a, user_b):
        response = client_a.get(
            "/admin/autocomplete/",
            {"app_label": "shops", "model_name": "membership", "field_name": "user", "term": "o"},
        )
        assert response.status_code == 403
        assert "owner-b" not in response.content.decode()

    def test_the_last_owner_cannot_be_demoted_or_deleted(self, client_a, user_a):
        mine = Membership._base_manager.get(user=user_a)

        response = client_a.post(admin_url(Membership, "change", mine.pk), {"role": Role.VIEWER})
        assert response.status_code == 200
        assert "at least one owner" in response.content.decode()
        assert client_a.get(admin_url(Membership, "delete", mine.pk)).status_code == 403
        assert Membership._base_manager.get(pk=mine.pk).role == Role.OWNER

    def test_a_manager_sees_members_but_cannot_add(self, member_of_a, user_a):
        manager = member_of_a(Role.MANAGER)
        assert len(changelist_pks(manager, Membership)) == 2
        assert manager.get(admin_url(Membership, "add")).status_code == 403

    def test_superuser_searches_users_in_the_all_tenants_view(self, superuser_client, user_a):
        ids = autocomplete_ids(superuser_client, "shops", "membership", "user", term="owner-a")
        assert ids == {user_a.pk}


class TestShopAdmin:
    def test_shops_are_scoped(self, client_a, tenant_a, tenant_b):
        mine = ShopFactory(tenant=tenant_a, name="Alpha TikTok")
        theirs = ShopFactory(tenant=tenant_b, name="Bravo TikTok")

        assert changelist_pks(client_a, Shop) == {mine.pk}
        assert_not_found(client_a, admin_url(Shop, "change", theirs.pk))
        assert_not_found(client_a, admin_url(Shop, "delete", theirs.pk))
        assert autocomplete_ids(client_a, "orders", "order", "shop") == {mine.pk}

    def test_a_shop_name_may_repeat_across_tenants_but_not_within_one(self, client_a, tenant_a):
        ShopFactory(tenant=tenant_a, name="Main")
        ShopFactory(name="Other")  # another tenant's

        same = client_a.post(admin_url(Shop, "add"), _shop_form("Main"))
        other = client_a.post(admin_url(Shop, "add"), _shop_form("Other"))

        assert same.status_code == 200
        assert "already exists" in same.content.decode()
        assert other.status_code == 302
        assert Shop._base_manager.filter(tenant=tenant_a, name="Other").exists()

    @override_settings(
        TKERP_DEFAULT_SHIP_BY_HOURS=36,
        TKERP_DEFAULT_PRESALE_SHIP_BY_HOURS=120,
        TKERP_TRACKING_UPLOAD_HOURS=40,
    )
    def test_a_new_shop_takes_its_ship_by_hours_from_the_settings(self, client_a, tenant_a):
        made_in_code = Shop._base_manager.create(tenant=tenant_a, name="Coded", platform="manual")
        form = client_a.get(admin_url(Shop, "add")).context["adminform"].form

        assert (made_in_code.ship_by_hours, made_in_code.presale_ship_by_hours) == (36, 120)
        assert made_in_code.tracking_upload_hours == 40
        assert form["ship_by_hours"].value() == 36
        assert form["presale_ship_by_hours"].value() == 120
        assert form["tracking_upload_hours"].value() == 40

    def test_without_settings_overridden_the_defaults_are_24_and_72_hours(self, tenant_a):
        shop = Shop(tenant=tenant_a, name="Plain", platform="manual")
        assert (shop.ship_by_hours, shop.presale_ship_by_hours) == (24, 72)

    def test_superuser_sees_every_tenants_shops(self, superuser_client, tenant_a, tenant_b):
        shops = {ShopFactory(tenant=tenant_a).pk, ShopFactory(tenant=tenant_b).pk}
        assert changelist_pks(superuser_client, Shop) == shops

    def test_the_open_orders_column_counts_open_orders_only(self, client_a, tenant_a):
        from tests.factories import OrderFactory

        shop = ShopFactory(tenant=tenant_a)
        OrderFactory(tenant=tenant_a, shop=shop, status="ready")
        OrderFactory(tenant=tenant_a, shop=shop, status="delivered")

        response = client_a.get(admin_url(Shop, "changelist"))

        assert response.context["cl"].result_list[0].open_orders == 1
        assert Order._base_manager.count() == 2


class TestShopCredentials:
    @pytest.fixture
    def credentials(self, tenant_a):
        shop = ShopFactory(tenant=tenant_a, name="Alpha TikTok")
        return ShopCredentialsFactory(shop=shop, app_key="key-1", **SECRETS)

    def test_owner_sees_the_inline_but_never_the_secrets(self, client_a, credentials):
        response = client_a.get(admin_url(Shop, "change", credentials.shop.pk))

        content = response.content.decode()
        assert 'name="credentials-0-app_secret"' in content
        assert 'type="password"' in content
        assert "key-1" in content
        for secret in SECRETS.values():
            assert secret not in content
        listing = client_a.get(admin_url(Shop, "changelist")).content.decode()
        assert not any(secret in listing for secret in SECRETS.values())

    def test_a_manager_gets_no_credentials_inline(self, member_of_a, credentials):
        response = member_of_a(Role.MANAGER).get(admin_url(Shop, "change", credentials.shop.pk))

        assert response.status_code == 200
        assert "credentials-TOTAL_FORMS" not in response.content.decode()

    def test_blank_keeps_a_secret_a_value_replaces_it_a_tick_erases_it(self, client_a, credentials):
        response = client_a.post(
            admin_url(Shop, "change", credentials.shop.pk),
            _shop_form(
                credentials.shop.name,
                platform=credentials.shop.platform,
                platform_shop_id=credentials.shop.platform_shop_id,
                **_credentials_form(
                    credentials,
                    app_key="key-2",
                    app_secret="",
                    access_token="tok-new",
                    clear_secrets=["webhook_secret"],
                ),
            ),
        )

        assert response.status_code == 302, response.context["inline_admin_formsets"][
            0
        ].formset.errors
        credentials.refresh_from_db()
        assert credentials.app_key == "key-2"
        assert credentials.app_secret == SECRETS["app_secret"]
        assert credentials.refresh_token == SECRETS["refresh_token"]
        assert credentials.access_token == "tok-new"
        assert credentials.webhook_secret == ""

    def test_credentials_are_added_inline_with_the_shops_tenant(self, client_a, tenant_a):
        shop = ShopFactory(tenant=tenant_a, name="Alpha Shopify", platform="shopify")
        data = _shop_form(shop.name, platform="shopify", platform_shop_id=shop.platform_shop_id)
        data |= {
            "credentials-TOTAL_FORMS": "1",
            "credentials-INITIAL_FORMS": "0",
            "credentials-0-shop": str(shop.pk),
            "credentials-0-api_endpoint": "live",
            "credentials-0-app_key": "new-key",
            "credentials-0-app_secret": "new-secret",
            "credentials-0-extra": "{}",
        }

        response = client_a.post(admin_url(Shop, "change", shop.pk), data)

        assert response.status_code == 302
        created = ShopCredentials._base_manager.get(shop=shop)
        assert (created.tenant, created.app_secret) == (tenant_a, "new-secret")


def _shop_form(name, *, platform="manual", platform_shop_id="", **extra) -> dict:
    data = {
        "name": name,
        "platform": platform,
        "region": "US",
        "platform_shop_id": platform_shop_id,
        "currency": "USD",
        "ship_by_hours": "24",
        "presale_ship_by_hours": "72",
        "tracking_upload_hours": "48",
        "is_active": "on",
        "sync_interval_seconds": "60",
        "credentials-TOTAL_FORMS": "0",
        "credentials-INITIAL_FORMS": "0",
        "credentials-MIN_NUM_FORMS": "0",
        "credentials-MAX_NUM_FORMS": "1",
    }
    data.update(extra)
    return data


def _credentials_form(credentials, **values) -> dict:
    fields = {
        "id": credentials.pk,
        "shop": credentials.shop.pk,
        "api_endpoint": "live",
        "app_key": credentials.app_key,
        "shop_cipher": "",
        "extra": "{}",
        **dict.fromkeys(SECRETS, ""),
        **values,
    }
    data = {f"credentials-0-{name}": value for name, value in fields.items()}
    data |= {"credentials-TOTAL_FORMS": "1", "credentials-INITIAL_FORMS": "1"}
    return data
