"""Idempotency-Key on every POST of the provider API."""

import threading
import time

import pytest
from django.db import connection
from django.urls import reverse

from inventory.models import StockLevel
from logistics.api import views as api_views
from tests.logistics.api_world import USPS_NUMBER, USPS_NUMBER_2, Api, provider_world
from tests.logistics.test_api_isolation import ROUTES
from tkerp.api.idempotency import idempotency_prune
from tkerp.models import IdempotencyRecord
from tkerp.tenancy import all_tenants, tenant_context


@pytest.fixture
def world(tenant_a):
    return provider_world(tenant_a)


def mug_level(world):
    with tenant_context(world["tenant"]):
        return StockLevel.objects.get(sku=world["mug"], warehouse=world["wh"])


@pytest.mark.django_db
def test_the_same_key_and_body_replays_the_first_answer(world):
    api = Api(world["key"])
    url = f"/api/v1/parcels/{world['parcel'].pk}/events/"

    first = api.post(url, {"kind": "picked"}, idempotency_key="evt-1")
    again = api.post(url, {"kind": "picked"}, idempotency_key="evt-1")

    assert first.status_code == again.status_code == 201
    assert again.content == first.content  # the same bytes, keys in the same order
    assert again["Content-Type"] == first["Content-Type"] == "application/json"
    assert again["Idempotent-Replayed"] == "true"
    with tenant_context(world["tenant"]):
        assert world["parcel"].parcel_events.count() == 1


@pytest.mark.django_db
def test_a_refusal_is_replayed_too_and_nothing_runs_again(world):
    api = Api(world["key"])
    url = f"/api/v1/parcels/{world['parcel'].pk}/ship/"
    bad = {"tracking_number": "9400111000000000000018", "carrier": "usps"}
    first = api.post(url, bad, idempotency_key="ship-1")
    again = api.post(url, bad, idempotency_key="ship-1")
    assert first.status_code == again.status_code == 422
    assert again["Content-Type"] == "application/problem+json"
    assert again.content == first.content


@pytest.mark.django_db
def test_the_same_key_with_another_body_is_422(world):
    api = Api(world["key"])
    url = f"/api/v1/parcels/{world['parcel'].pk}/ship/"
    assert api.post(url, {"tracking_number": USPS_NUMBER, "carrier": "usps"}, idempotency_key="k")
    response = api.post(
        url, {"tracking_number": USPS_NUMBER_2, "carrier": "usps"}, idempotency_key="k"
    )
    assert response.status_code == 422
    assert response.json()["code"] == "idempotency_key_reused"
    # The first number stands.
    assert api.get(f"/api/v1/parcels/{world['parcel'].pk}/").json()["tracking_number"] == (
        USPS_NUMBER
    )


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "method", "has_pk"), [r for r in ROUTES if r[1] == "post"])
def test_every_post_needs_an_idempotency_key(world, name, method, has_pk):
    api = Api(world["key"])
    url = reverse(name, kwargs={"pk": world["parcel"].pk} if has_pk else {})
    response = api.client.post(url, "{}", content_type="application/json", headers=api.headers())
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["errors"]


@pytest.mark.django_db
def test_keys_are_forgotten_after_a_day(world):
    api = Api(world["key"])
    api.post(f"/api/v1/parcels/{world['parcel'].pk}/events/", {"kind": "picked"})
    from django.utils import timezone

    assert idempotency_prune(now=timezone.now()) == 0
    assert idempotency_prune(now=timezone.now() + timezone.timedelta(hours=25)) == 1
    with all_tenants():
        assert not IdempotencyRecord.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_requests_with_one_key_make_one_write(world, monkeypatch):
    """Two threads, two connections, one key: the second waits on the claimed row and replays
    the first's answer; the parcel ships once."""
    entered = []
    real_ship = api_views.api_parcel_ship

    def slow_ship(**kwargs):
        entered.append(threading.get_ident())
        time.sleep(0.5)  # hold the claimed key while the other request arrives
        return real_ship(**kwargs)

    monkeypatch.setattr(api_views, "api_parcel_ship", slow_ship)
    url = f"/api/v1/parcels/{world['parcel'].pk}/ship/"
    body = {"tracking_number": USPS_NUMBER, "carrier": "usps"}
    barrier = threading.Barrier(2)
    responses = []

    def call():
        try:
            barrier.wait()
            responses.append(Api(world["key"]).post(url, body, idempotency_key="same"))
        finally:
            connection.close()

    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len(entered) == 1
    assert [r.status_code for r in responses] == [200, 200]
    assert responses[0].json() == responses[1].json()
    assert sorted(r.get("Idempotent-Replayed", "") for r in responses) == ["", "true"]
    level = mug_level(world)
    assert (level.on_hand, level.reserved) == (99, 0)
    with all_tenants():
        assert IdempotencyRecord.objects.filter(key="same").count() == 1
