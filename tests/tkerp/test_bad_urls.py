"""Junk typed into an admin URL or form is a plain 400 or 404, never a 500: a NUL (`%00`)
reaches PostgreSQL as a DataError wherever the value lands in a query."""

import pytest
from django.contrib.contenttypes.models import ContentType
from django.test import Client

from logistics.models import ProviderAPIKey

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(user_a) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(user_a)
    return client


@pytest.mark.parametrize(
    "model", ["orders/order", "logistics/shipment", "tkerp/job", "logistics/labelbatch",
              "shops/syncrun", "orders/returnrequest", "logistics/providerevent"],
)  # fmt: skip
def test_a_nul_in_a_list_filter_is_a_plain_400(client, model):
    response = client.get(f"/admin/{model}/", {"status__exact": "\x00"})

    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/plain")
    assert "NUL" in response.content.decode()


@pytest.mark.parametrize(
    "url",
    [
        "/admin/logistics/providerapikey/%00/change/",
        "/admin/logistics/providerapikey/?pk=%00",
        "/admin/orders/order/?q=a%00b",
        "/admin/orders/order/?%00=1",
    ],
)
def test_a_nul_in_a_path_or_query_is_a_plain_400(client, url):
    assert client.get(url).status_code == 400


def test_a_nul_in_a_form_is_a_plain_400(client):
    response = client.post("/admin/logistics/providerapikey/add/", {"name": "a\x00b"})
    assert response.status_code == 400


def test_view_on_site_with_a_nul_id_is_a_404_or_400(client):
    content_type = ContentType.objects.get_for_model(ProviderAPIKey)
    assert client.get(f"/admin/r/{content_type.pk}/%00/").status_code in (400, 404)


def test_the_api_answers_a_nul_in_its_own_error_shape(tenant_a):
    from tests.logistics.api_world import Api, provider_world

    api = Api(provider_world(tenant_a)["key"], Client(raise_request_exception=False))
    response = api.get("/api/v1/parcels/", updated_since="2026\x00")

    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
