"""Fixtures shared by every suite: two tenants with a staff owner each, and scopes."""

from pathlib import Path

import pytest
from django.test import Client

from tests.factories import MembershipFactory, TenantFactory, UserFactory
from tkerp.db.postgres.base import EVERYTHING, NOTHING, unscoped_sees
from tkerp.tenancy import all_tenants, tenant_context


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """Temporary folders in this checkout (`var/pytest`, emptied by each session), unless
    `--basetemp` says otherwise. pytest's default, /tmp/pytest-of-<user>, is shared by every
    checkout of the machine: each session there deletes all but the newest three sessions'
    folders and sets the shared folder back to 0700, which takes the way in away from an
    embedded PostgreSQL that another checkout's test started (as root, the server runs as a
    user of its own), and that test then fails."""
    if config.option.basetemp is None:
        var = Path(config.rootpath) / "var"
        var.mkdir(exist_ok=True)
        config.option.basetemp = str(var / "pytest")


@pytest.fixture(autouse=True)
def unscoped_test_body_sees_every_tenant():
    """The test body's own unscoped look at the database (`_base_manager`, `refresh_from_db`,
    factories) sees every tenant, as it did before row-level security. What the tests drive is
    still walled: every request through the test client is strict (TenantMiddleware), the
    scoped managers fail closed, and code under `tenant_context` sees its tenant only.
    `tests/tkerp/test_rls.py` turns this off (`strict_database` fixture)."""
    with unscoped_sees(EVERYTHING):
        yield


@pytest.fixture
def strict_database():
    """Unscoped statements see nothing, as in production."""
    with unscoped_sees(NOTHING):
        yield


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
