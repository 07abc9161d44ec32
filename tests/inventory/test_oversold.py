"""Cancelling an oversold order through the platform: the connector it builds is always closed."""

from __future__ import annotations

import pytest

import shops.platforms
from inventory.oversold import order_cancel_through_platform
from orders.models import OrderEvent
from shops.platforms.base import PlatformError
from shops.platforms.tiktok import TikTokConnector
from tests.e2e.helpers import connect_shop
from tests.factories import OrderFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def built(monkeypatch):
    """Every connector the action builds (the real ones, against the sandbox)."""
    connectors = []
    real = shops.platforms.connector_for

    def recording(shop, **options):
        connector = real(shop, **options)
        connectors.append(connector)
        return connector

    monkeypatch.setattr(shops.platforms, "connector_for", recording)
    return connectors


@pytest.fixture
def order(tenant_a):
    shop, _ = connect_shop(tenant_a, "tiktok")
    return OrderFactory(tenant=tenant_a, shop=shop)


def test_without_a_cancel_api_the_intent_is_recorded_and_the_client_closed(order, built):
    assert order_cancel_through_platform(order=order) is False

    [connector] = built
    assert connector.http.client.is_closed
    assert OrderEvent._base_manager.filter(order=order, kind="cancel.intent").exists()


def test_a_refusal_is_recorded_and_the_client_closed(order, built, monkeypatch):
    def refuse(self, *, platform_order_id, reason):
        raise PlatformError("order status does not allow cancelling", platform="tiktok")

    monkeypatch.setattr(TikTokConnector, "cancel_order", refuse, raising=False)

    assert order_cancel_through_platform(order=order) is False

    [connector] = built
    assert connector.http.client.is_closed
    event = OrderEvent._base_manager.get(order=order, kind="cancel.failed")
    assert "does not allow cancelling" in event.message


def test_an_unexpected_error_still_closes_the_client(order, built, monkeypatch):
    def explode(self, *, platform_order_id, reason):
        raise RuntimeError("bug in a future connector")

    monkeypatch.setattr(TikTokConnector, "cancel_order", explode, raising=False)

    with pytest.raises(RuntimeError):
        order_cancel_through_platform(order=order)

    [connector] = built
    assert connector.http.client.is_closed


def test_a_shop_without_credentials_builds_no_connector(tenant_a, built):
    order = OrderFactory(tenant=tenant_a)

    assert order_cancel_through_platform(order=order) is False
    assert built == []
