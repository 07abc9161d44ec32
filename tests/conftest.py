"""Fixtures shared by every suite: two tenants with a staff owner each, and scopes."""

import pytest
from django.test import Client

from tests.factories import MembershipFactory, TenantFactory, UserFactory
from tkerp.tenancy import all_tenants, tenant_context


@pytest.fixture
def tenant_a(db):
    return TenantFactory(name="Alpha Goods", slug="alpha")


@pytest.fixture
def tenant_b(db):
    return TenantFactory(name="Bravo Supply", slug="bravo")


@pytest.fixture
def user_a(tenant_a):
    """Owner of tenant A only."""
    return MembershipFactory(tenant=tenant_a, user=UserFactory(username="owner-a")).user


@pytest.fixture
def user_b(tenant_b):
    return MembershipFactory(tenant=tenant_b, user=UserFactory(username="owner-b")).user


@pytest.fixture
def client_a(user_a) -> Client:
    client = Client()
    client.force_login(user_a)
    return client


@pytest.fixture
def client_b(user_b) -> Client:
    client = Client()
    client.force_login(user_b)
    return client


@pytest.fixture
def superuser(db):
    return UserFactory(username="operator", is_superuser=True)


@pytest.fixture
def scope_a(tenant_a):
    """Run the test body scoped to tenant A."""
    with tenant_context(tenant_a):
        yield tenant_a


@pytest.fixture
def scope_all(db):
    with all_tenants():
        yield


@pytest.fixture
def outbound_loopback(settings):
    """Let the outbound-HTTP policy reach receivers on this machine's loopback (tests only: the
    setting is never read from the environment, see tkerp.outbound)."""
    settings.TKERP_OUTBOUND_ALLOW_LOOPBACK = True
