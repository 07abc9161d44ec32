"""Every route of the provider API, every method, with another tenant's and another provider's
objects: 404 for an object, nothing of theirs in a list, refusal for their codes in a write.

The routes are read from the URL conf, so an endpoint added later is in this matrix by itself
(a collection POST must add its body to COLLECTION_WRITES, or the test fails).
"""

import pytest
from django.urls import get_resolver, reverse

from inventory.models import StockLevel
from tests.logistics.api_world import Api, provider_world
from tkerp.tenancy import tenant_context

pytestmark = pytest.mark.django_db


def api_routes() -> list[tuple[str, str, bool]]:
    """(url name, method, takes a pk) for every route under /api/v1/."""
    routes = []
    for entry in get_resolver().url_patterns:
        if str(entry.pattern) != "api/v1/":
            continue
        for pattern in entry.url_patterns:
            actions = getattr(pattern.callback, "actions", None) or {}
            assert actions, f"{pattern} is not a viewset route; add it to the matrix"
            for method in actions:
                routes.append((pattern.name, method, "pk" in pattern.pattern.regex.groupindex))
    return sorted(routes)


ROUTES = api_routes()

# A write to a collection names objects by code: the other tenant's / provider's codes.
COLLECTION_WRITES = {
    "api-stock-list": lambda codes: {
        "counts": [{"warehouse": codes["warehouse"], "sku": codes["sku"], "on_hand": 1}]
    },
}


@pytest.fixture
def worlds(tenant_a, tenant_b):
    return provider_world(tenant_a, "A"), provider_world(tenant_b, "B")


def test_the_matrix_covers_the_api():
    assert {name for name, _, _ in ROUTES} >= {
        "api-parcel-list",
        "api-parcel-detail",
        "api-parcel-acknowledge",
        "api-parcel-ship",
        "api-parcel-events",
        "api-parcel-intercept",
        "api-stock-list",
        "api-sku-mapping-list",
    }


@pytest.mark.parametrize(("name", "method", "has_pk"), ROUTES)
def test_other_tenants_and_providers_objects_are_out_of_reach(worlds, name, method, has_pk):
    mine, theirs = worlds
    api = Api(mine["key"])
    foreign = {
        "another tenant": {
            "pk": theirs["parcel"].pk,
            "warehouse": theirs["wh"].code,
            "sku": theirs["mug"].code,
        },
        "another provider": {
            "pk": mine["other_parcel"].pk,
            "warehouse": mine["other_wh"].code,
            "sku": mine["mug"].code,
        },
    }
    for whose, codes in foreign.items():
        if has_pk:
            url = reverse(name, kwargs={"pk": codes["pk"]})
            response = api.get(url) if method == "get" else api.post(url, {})
            assert response.status_code == 404, (whose, name, method, response.content)
            assert response.json()["status"] == 404
            assert response["Content-Type"] == "application/problem+json"
        elif method == "get":
            response = api.get(reverse(name))
            assert response.status_code == 200
            text = response.content.decode()
            assert codes["warehouse"] not in text, (whose, name)
            assert f'"id": {codes["pk"]},' not in text and f'"id":{codes["pk"]},' not in text
        else:
            assert name in COLLECTION_WRITES, f"add a body for POST {name} to COLLECTION_WRITES"
            response = api.post(reverse(name), COLLECTION_WRITES[name](codes))
            assert response.status_code in (404, 422), (whose, name, response.content)
    with tenant_context(theirs["tenant"]):
        assert not StockLevel.objects.filter(on_hand=1).exists()
    with tenant_context(mine["tenant"]):
        assert not StockLevel.objects.filter(on_hand=1).exists()
