"""Secrets on admin pages: whoever may only view a row never sees its secret; whoever may change
it gets the write-only box, which never shows it either (`tkerp.admin_secrets`)."""

import pytest
from django.test import Client

from logistics.models import LabelAccount, Provider
from shops.models import Role
from tests.factories import LabelAccountFactory, MembershipFactory, ProviderFactory, UserFactory
from tests.orders.admin_helpers import admin_url

pytestmark = pytest.mark.django_db

SECRET = "whsec_c2VjcmV0LXByb3ZpZGVyLXNpZ25pbmcta2V5LTEyMzQ="
KEY = "EZAKlivekey0123456789abcdefSECRET"


def member(tenant, role) -> Client:
    user = UserFactory(username=f"{role}-member")
    MembershipFactory(tenant=tenant, user=user, role=role)
    client = Client()
    client.force_login(user)
    return client


def pages(tenant):
    provider = ProviderFactory(
        tenant=tenant, webhook_url="https://hooks.example.com/in", webhook_secret=SECRET
    )
    account = LabelAccountFactory(tenant=tenant, api_key=KEY)
    return [
        (admin_url(Provider, "change", provider.pk), SECRET, "webhook_secret"),
        (admin_url(LabelAccount, "change", account.pk), KEY, "api_key"),
    ]


@pytest.mark.parametrize("role", [Role.VIEWER, Role.OPERATOR])
def test_who_may_only_view_a_row_never_sees_its_secret(tenant_a, role):
    client = member(tenant_a, role)
    for url, secret, field in pages(tenant_a):
        response = client.get(url)
        page = response.content.decode()
        assert response.status_code == 200, url
        assert "readonly" in page  # the read-only page, with the row's other fields
        assert secret not in page, url
        assert f'name="{field}"' not in page and "clear_secrets" not in page


def test_who_may_change_it_gets_the_write_only_box(tenant_a):
    client = member(tenant_a, Role.OWNER)
    for url, secret, field in pages(tenant_a):
        page = client.get(url).content.decode()
        assert f'name="{field}"' in page and 'type="password"' in page, url
        assert secret not in page
        assert f"ending in …{secret[-4:]}" in page  # which one is stored, never the value
