"""The API's schema and docs pages, its throttle, and its error shape outside the views."""

import json

import pytest
from django.core.management import call_command
from django.test import Client

from logistics.api.auth import PerKeyThrottle
from logistics.providers import provider_key_create
from tests.logistics.api_world import Api, provider_world

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(tenant_a):
    return provider_world(tenant_a)


def test_the_schema_builds_without_warnings_and_every_operation_has_an_example(tmp_path):
    out = tmp_path / "schema.json"
    call_command("spectacular", "--validate", "--fail-on-warn", "--format", "openapi-json",
                 "--file", str(out))  # fmt: skip
    schema = json.loads(out.read_text())
    operations = [
        (path, method, operation)
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
    ]
    assert len(operations) >= 10
    for path, method, operation in operations:
        assert path.startswith("/api/v1/")
        bodies = [
            content
            for response in operation["responses"].values()
            for content in response.get("content", {}).values()
        ] + list(operation.get("requestBody", {}).get("content", {}).values())
        assert any("examples" in body for body in bodies), f"{method} {path} has no example"
        assert "application/problem+json" in operation["responses"]["404"]["content"]
        if method == "post":
            header = [p for p in operation["parameters"] if p["name"] == "Idempotency-Key"]
            assert header and header[0]["required"]


def test_the_docs_are_served_from_the_project_not_a_cdn(client):
    assert client.get("/api/schema/").status_code == 200
    for page in ("/api/docs/", "/api/redoc/"):
        html = client.get(page).content.decode()
        assert "drf_spectacular_sidecar" in html, page
        assert "cdn." not in html and "jsdelivr" not in html and "unpkg" not in html, page


def test_an_unknown_api_path_is_a_problem_not_a_page(world):
    api = Api(world["key"])
    for response in (api.get("/api/v1/nothing/"), api.post("/api/v1/parcels/x/ship/", {})):
        assert response.status_code == 404
        assert response["Content-Type"] == "application/problem+json"
        assert response.json()["status"] == 404


def test_a_server_error_is_a_problem_without_a_traceback(world, monkeypatch):
    from logistics.api import views

    def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(views, "parcels_page_json", broken)
    response = Api(world["key"]).get("/api/v1/parcels/")
    assert response.status_code == 500
    assert response["Content-Type"] == "application/problem+json"
    assert "secret internals" not in response.content.decode()
    assert response.json()["code"] == "server_error"


@pytest.mark.parametrize("depth", [100_000, 990])
def test_a_body_nested_too_deeply_is_a_400_problem(world, depth):
    # Python's json raises RecursionError for it, which DRF let through: a 500 on every POST.
    api = Api(world["key"], Client(raise_request_exception=False))
    response = api.client.post(
        f"/api/v1/parcels/{world['parcel'].pk}/acknowledge/",
        b"[" * depth + b"]" * depth,
        content_type="application/json",
        headers=api.headers({"Idempotency-Key": "deep-1"}),
    )
    assert response.status_code == 400, response.content[:300]
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["status"] == 400


def test_each_key_is_throttled_on_its_own(world, settings):
    from django.core.cache import cache

    cache.clear()
    settings.TKERP_API_THROTTLE_RATE = "3/min"
    _, other_key = provider_key_create(provider=world["other"], name="other", expires_days=None)
    api, other = Api(world["key"]), Api(other_key)
    assert [api.get("/api/v1/parcels/").status_code for _ in range(3)] == [200] * 3
    throttled = api.get("/api/v1/parcels/")
    assert throttled.status_code == 429
    assert throttled["Content-Type"] == "application/problem+json"
    assert int(throttled["Retry-After"]) >= 1
    assert other.get("/api/v1/parcels/").status_code == 200
    assert PerKeyThrottle().get_rate() == "3/min"
    cache.clear()


@pytest.mark.parametrize(
    ("accept", "status"),
    [(None, 200), ("*/*", 200), ("application/json", 200), ("application/*", 200),
     ("text/html", 406)],
)  # fmt: skip
def test_the_api_answers_json_or_says_it_cannot(world, accept, status):
    api = Api(world["key"])
    headers = api.headers({"Accept": accept} if accept else None)
    response = api.client.get("/api/v1/parcels/", headers=headers)
    assert response.status_code == status
    if status == 200:
        assert response["Content-Type"] == "application/json"
        assert response.json()["results"]
    else:
        assert response["Content-Type"] == "application/problem+json"


def test_a_body_that_is_not_json_says_so(world):
    """Malformed JSON is a 400 that says the body could not be read, not "counts: This field
    is required" (the idempotency fingerprint swallowed the parse error and the view then saw
    an empty body)."""
    api = Api(world["key"])
    response = api.client.post(
        "/api/v1/stock/",
        b'{"counts": [{"warehouse": "X",',
        content_type="application/json",
        headers=api.headers({"Idempotency-Key": "broken-1"}),
    )
    assert response.status_code == 400, response.content[:300]
    problem = response.json()
    assert problem["code"] == "parse_error" and "JSON parse error" in problem["detail"]
    assert "required" not in response.content.decode()


def test_a_body_too_large_is_a_413_problem(world, settings):
    """A body over DATA_UPLOAD_MAX_MEMORY_SIZE (a big stock count) is the 413 the schema lists,
    saying what to do, not a 500 "something went wrong on our side"."""
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    api = Api(world["key"], Client(raise_request_exception=False))
    counts = [{"warehouse": "W", "sku": f"SKU-{n}", "on_hand": n} for n in range(100)]
    response = api.client.post(
        "/api/v1/stock/",
        json.dumps({"counts": counts}),
        content_type="application/json",
        headers=api.headers({"Idempotency-Key": "big-1"}),
    )
    assert response.status_code == 413, response.content[:300]
    assert response["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "request_too_large" and "1000 bytes" in problem["detail"]
