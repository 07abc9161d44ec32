"""Fixtures for the orders suites: a shop and an order in each tenant, and members by role."""

import pytest
from django.test import Client

from shops.models import Role
from tests.factories import MembershipFactory, OrderFactory, ShopFactory, UserFactory


@pytest.fixture
def member_client(tenant_a):
    """Build a logged-in client for a new member of tenant A with the given role."""

    def make(role: str) -> Client:
        user = UserFactory(username=f"{role}-a")
        MembershipFactory(tenant=tenant_a, user=user, role=role)
        client = Client()
        client.force_login(user)
        client.user = user
        return client

    return make


@pytest.fixture
def operator_client(member_client):
    return member_client(Role.OPERATOR)


@pytest.fixture
def viewer_client(member_client):
    return member_client(Role.VIEWER)


@pytest.fixture
def superuser_client(superuser):
    client = Client()
    client.force_login(superuser)
    return client


@pytest.fixture
def shop_a(tenant_a):
    return ShopFactory(tenant=tenant_a, name="Alpha TikTok")


@pytest.fixture
def shop_b(tenant_b):
    return ShopFactory(tenant=tenant_b, name="Bravo TikTok")


@pytest.fixture
def manual_shop_a(tenant_a):
    return ShopFactory(tenant=tenant_a, name="Alpha CSV", platform="manual", platform_shop_id="")


@pytest.fixture
def order_a(shop_a):
    return OrderFactory(tenant=shop_a.tenant, shop=shop_a, platform_order_id="A-1001")


@pytest.fixture
def order_b(shop_b):
    return OrderFactory(
        tenant=shop_b.tenant, shop=shop_b, platform_order_id="B-2002", recipient_name="Bea Bravo"
    )
