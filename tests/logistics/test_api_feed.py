"""The provider API's parcel feed under concurrent writers: a change is stamped when its
transaction writes it and seen when that transaction commits, so the feed must not let a poller
move past a change that is stamped but not committed yet."""

import threading
from datetime import datetime

import psycopg
import pytest
from django.db import connection

from logistics import providers
from logistics.models import Shipment
from tests.logistics.api_world import Api, provider_world, routed_order
from tkerp.tenancy import tenant_context


def stamp(parcel: dict) -> datetime:
    return datetime.fromisoformat(parcel["updated_at"])


def changed(api: Api, since: str) -> dict[int, dict]:
    """Every parcel changed at or after `since`, following `next` to the end."""
    seen: dict[int, dict] = {}
    response = api.get("/api/v1/parcels/", updated_since=since)
    while True:
        assert response.status_code == 200, response.content
        page = response.json()
        seen.update({parcel["id"]: parcel for parcel in page["results"]})
        if not page["next"]:
            return seen
        response = api.client.get(page["next"], headers=api.headers())


@pytest.mark.django_db(transaction=True)
def test_a_change_committed_after_a_newer_one_still_reaches_the_poller(tenant_a, monkeypatch):
    """The provider accepts parcel X, and its transaction is still open (stamped, not committed)
    when an event on parcel Y commits. A poller that then moved on from Y's stamp would never see
    X accepted: the feed holds Y back until X's transaction has ended, and the next poll from
    where the poller stood shows both."""
    world = provider_world(tenant_a)
    api = Api(world["key"])
    x = world["parcel"]
    y = routed_order(world, shop=world["shop"], lines=[(world["mug"], 1)])
    since = min(parcel["updated_at"] for parcel in changed(api, "2000-01-01T00:00:00Z").values())

    stamped, release = threading.Event(), threading.Event()
    real = providers.order_event_add

    def held_open(**kwargs):
        if kwargs.get("kind") == "provider.accepted":
            stamped.set()  # X is saved, its transaction open
            release.wait(20)
        return real(**kwargs)

    monkeypatch.setattr(providers, "order_event_add", held_open)
    answers = []

    def accept():
        try:
            url = f"/api/v1/parcels/{x.pk}/acknowledge/"
            answers.append(Api(world["key"]).post(url, {"decision": "accept"}))
        finally:
            connection.close()

    thread = threading.Thread(target=accept)
    thread.start()
    try:
        assert stamped.wait(20)
        assert api.post(f"/api/v1/parcels/{y.pk}/events/", {"kind": "picked"}).status_code == 201
        with tenant_context(tenant_a):
            y_stamp = Shipment.objects.get(pk=y.pk).updated_at
        while_open = changed(api, since)
        # Y's change is committed, but stamped after X's open transaction began: held back.
        assert all(stamp(parcel) < y_stamp for parcel in while_open.values())
        stood = max(parcel["updated_at"] for parcel in while_open.values())
    finally:
        release.set()
        thread.join(20)
    assert [answer.status_code for answer in answers] == [200]

    after = changed(api, stood)
    assert after[x.pk]["acknowledged_at"] is not None
    assert after[x.pk]["status"] == "confirmed"
    assert stamp(after[y.pk]) == y_stamp


@pytest.mark.django_db(transaction=True)
def test_only_open_transactions_hold_the_feed_back(tenant_a):
    """A session idle between transactions (a pooled connection, a person's psql) holds nothing
    back; one idle inside a transaction it began before the change does, until it ends."""
    world = provider_world(tenant_a)
    api = Api(world["key"])
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params, autocommit=True) as other:
        other.execute("SELECT 1")  # idle, outside any transaction
        assert world["parcel"].pk in changed(api, "2000-01-01T00:00:00Z")

        other.autocommit = False
        other.execute("SELECT 1")  # idle in a transaction begun now
        assert (
            api.post(
                f"/api/v1/parcels/{world['parcel'].pk}/events/", {"kind": "picked"}
            ).status_code
            == 201
        )
        assert world["parcel"].pk not in changed(api, "2000-01-01T00:00:00Z")

        other.rollback()
        assert world["parcel"].pk in changed(api, "2000-01-01T00:00:00Z")


@pytest.mark.django_db
def test_a_change_younger_than_the_settling_seconds_waits(tenant_a, settings):
    """The margin for a stamp taken just before its transaction began, or a web host's clock a
    little behind the database's."""
    world = provider_world(tenant_a)
    api = Api(world["key"])
    settings.TKERP_API_FEED_SETTLE_SECONDS = 3600
    assert changed(api, "2000-01-01T00:00:00Z") == {}
    settings.TKERP_API_FEED_SETTLE_SECONDS = 0
    assert list(changed(api, "2000-01-01T00:00:00Z")) == [world["parcel"].pk]
