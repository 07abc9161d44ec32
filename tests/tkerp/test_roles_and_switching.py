"""Roles map to permissions inside the active tenant; the switcher changes which tenant that is."""

import pytest
from django.test import Client
from django.urls import reverse

from shops.models import Role
from tests.factories import MembershipFactory, SkuFactory, UserFactory
from tkerp.auth import role_permissions


def sku_add_url():
    return reverse("admin:inventory_sku_add")


@pytest.fixture
def two_hat_user(tenant_a, tenant_b):
    """Owner of A, mere viewer of B."""
    user = UserFactory(username="two-hats")
    MembershipFactory(user=user, tenant=tenant_a, role=Role.OWNER)
    MembershipFactory(user=user, tenant=tenant_b, role=Role.VIEWER)
    return user


@pytest.mark.django_db
class TestRolePermissions:
    def test_roles_are_nested(self):
        viewer, operator, manager, owner = (
            role_permissions(role)
            for role in (Role.VIEWER, Role.OPERATOR, Role.MANAGER, Role.OWNER)
        )
        assert viewer < operator < manager < owner

    def test_viewer_only_views(self):
        perms = role_permissions(Role.VIEWER)
        assert "orders.view_order" in perms
        assert not any(p.split(".")[1].startswith(("add_", "change_", "delete_")) for p in perms)

    def test_operator_works_orders_but_not_master_data(self):
        perms = role_permissions(Role.OPERATOR)
        assert {"orders.change_order", "logistics.change_shipment"} <= perms
        assert "inventory.change_sku" not in perms
        assert "logistics.change_carrierrule" not in perms

    def test_only_owners_manage_members_and_credentials(self):
        assert "shops.change_membership" not in role_permissions(Role.MANAGER)
        assert "shops.view_shopcredentials" not in role_permissions(Role.MANAGER)
        assert {"shops.change_membership", "shops.view_shopcredentials"} <= role_permissions(
            Role.OWNER
        )

    def test_audit_trail_is_append_only_for_everyone(self):
        owner = role_permissions(Role.OWNER)
        assert "orders.change_orderevent" not in owner
        assert "inventory.delete_stockmovement" not in owner


@pytest.mark.django_db
class TestSwitchingTenants:
    def test_rights_follow_the_active_tenant(self, two_hat_user, tenant_a, tenant_b):
        client = Client()
        client.force_login(two_hat_user)
        # First membership alphabetically (Alpha Goods) is active by default: owner there.
        assert client.get(sku_add_url()).status_code == 200
        response = client.post(reverse("switch-tenant"), {"tenant": tenant_b.pk})
        assert response.status_code == 302
        assert client.get(sku_add_url()).status_code == 403
        index = client.get(reverse("admin:index"))
        assert index.context["active_tenant"] == tenant_b

    def test_data_follows_the_active_tenant(self, two_hat_user, tenant_a, tenant_b):
        SkuFactory(tenant=tenant_a, code="ALPHA-1")
        SkuFactory(tenant=tenant_b, code="BRAVO-1")
        client = Client()
        client.force_login(two_hat_user)
        changelist = reverse("admin:inventory_sku_changelist")
        codes = {sku.code for sku in client.get(changelist).context["cl"].result_list}
        assert codes == {"ALPHA-1"}
        client.post(reverse("switch-tenant"), {"tenant": tenant_b.pk})
        codes = {sku.code for sku in client.get(changelist).context["cl"].result_list}
        assert codes == {"BRAVO-1"}

    def test_cannot_switch_into_a_tenant_without_membership(self, client_a, tenant_a, tenant_b):
        client_a.post(reverse("switch-tenant"), {"tenant": tenant_b.pk})
        index = client_a.get(reverse("admin:index"))
        assert index.context["active_tenant"] == tenant_a

    def test_switch_redirect_stays_on_this_site(self, client_a, tenant_a):
        response = client_a.post(
            reverse("switch-tenant"), {"tenant": tenant_a.pk, "next": "https://evil.example/"}
        )
        assert response["Location"] == "/admin/"

    def test_superuser_switches_between_one_tenant_and_all(self, superuser, tenant_a, tenant_b):
        SkuFactory(tenant=tenant_a, code="ALPHA-1")
        SkuFactory(tenant=tenant_b, code="BRAVO-1")
        client = Client()
        client.force_login(superuser)
        changelist = reverse("admin:inventory_sku_changelist")
        codes = {sku.code for sku in client.get(changelist).context["cl"].result_list}
        assert codes == {"ALPHA-1", "BRAVO-1"}
        client.post(reverse("switch-tenant"), {"tenant": tenant_a.pk})
        codes = {sku.code for sku in client.get(changelist).context["cl"].result_list}
        assert codes == {"ALPHA-1"}
        client.post(reverse("switch-tenant"), {"tenant": ""})
        codes = {sku.code for sku in client.get(changelist).context["cl"].result_list}
        assert codes == {"ALPHA-1", "BRAVO-1"}

    def test_user_without_membership_sees_nothing(self, db, tenant_a):
        SkuFactory(tenant=tenant_a)
        client = Client()
        client.force_login(UserFactory(username="drifter"))
        assert client.get(reverse("admin:inventory_sku_changelist")).status_code == 403

    def test_switcher_is_rendered_for_multi_tenant_users(self, two_hat_user):
        client = Client()
        client.force_login(two_hat_user)
        html = client.get(reverse("admin:index")).content.decode()
        assert 'id="tenant-switcher"' in html
        assert "Alpha Goods" in html and "Bravo Supply" in html


@pytest.mark.django_db
@pytest.mark.parametrize("raw", ["①", "\u0661", "99999999999999999999999", "-1", " 1", "abc"])
def test_a_tenant_id_that_is_not_plain_digits_changes_nothing(client_a, tenant_a, raw):
    """ "①".isdigit() is True and int("①") raises: it used to be a 500 (issue 9, item 9)."""
    response = client_a.post(reverse("switch-tenant"), {"tenant": raw, "next": "/admin/"})
    assert response.status_code == 302
    assert response["Location"] == "/admin/"
