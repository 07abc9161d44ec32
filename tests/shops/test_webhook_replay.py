"""Replayed webhooks: a captured signed body is one event, whatever headers come with it.

Shopify's HMAC covers the body only, so an attacker holding one signed delivery can re-send it
under a new `X-Shopify-Webhook-Id` or another `X-Shopify-Topic`. Deliveries are POSTed through
Django's test client, signed as Shopify signs them, to a shop connected to the Shopify sandbox.
"""

import base64
import hashlib
import hmac
import json
from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from shops.models import WebhookDelivery
from tests.e2e.helpers import add_orders, connect_shop
from tests.factories import ShopCredentialsFactory, ShopFactory
from tkerp.models import Alert
from tkerp.tenancy import tenant_context

pytestmark = pytest.mark.django_db

SHOPIFY_URL = "/webhooks/shopify/"
TIKTOK_URL = "/webhooks/tiktok/"


def shopify_post(client, shop, body: bytes, *, topic: str, webhook_id: str):
    credentials = shop.credentials
    secret = credentials.webhook_secret or credentials.app_secret
    signature = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest())
    return client.post(
        SHOPIFY_URL,
        data=body,
        content_type="application/json",
        headers={
            "X-Shopify-Shop-Domain": shop.platform_shop_id,
            "X-Shopify-Hmac-Sha256": signature.decode(),
            "X-Shopify-Topic": topic,
            "X-Shopify-Webhook-Id": webhook_id,
        },
    )


def shop_body(shop, **extra) -> bytes:
    """The Shop resource, as Shopify sends it with app/uninstalled and shop/update."""
    return json.dumps(
        {
            "id": 548380009,
            "name": shop.name,
            "email": "owner@alpha.example",
            "domain": "shop.alpha.example",
            "myshopify_domain": shop.platform_shop_id,
            **extra,
        }
    ).encode()


@pytest.fixture
def shopify(tenant_a):
    return connect_shop(tenant_a, "shopify")


@pytest.fixture
def captured(shopify):
    """A signed orders/updated body, as an attacker might have captured it."""
    _shop, store = shopify
    (generated,) = add_orders(store, 1, start=timezone.now() - timedelta(minutes=3))
    return json.dumps(generated.payload).encode()


def deliveries():
    return list(WebhookDelivery._base_manager.order_by("pk"))


class TestShopifyReplay:
    def test_a_body_replayed_under_a_new_webhook_id_is_not_processed_again(
        self, client, shopify, captured, django_capture_on_commit_callbacks
    ):
        shop, _ = shopify
        with django_capture_on_commit_callbacks() as callbacks:
            first = shopify_post(client, shop, captured, topic="orders/updated", webhook_id="w-1")
            replay = shopify_post(client, shop, captured, topic="orders/updated", webhook_id="w-2")
            other_topic = shopify_post(
                client, shop, captured, topic="orders/paid", webhook_id="w-3"
            )

        assert first.json()["message"] == "accepted"
        assert replay.status_code == other_topic.status_code == 200
        assert replay.json()["message"] == other_topic.json()["message"] == "already received"
        (delivery,) = deliveries()
        assert delivery.delivery_id == "w-1"
        assert delivery.body_sha256 == hashlib.sha256(captured).hexdigest()
        assert len(callbacks) == 1  # processing queued once

    def test_an_order_body_under_app_uninstalled_raises_no_alert(self, client, shopify, captured):
        shop, _ = shopify
        response = shopify_post(client, shop, captured, topic="app/uninstalled", webhook_id="w-9")

        assert response.status_code == 400
        assert "does not fit the topic 'app/uninstalled'" in response.json()["message"]
        assert not Alert._base_manager.exists()
        assert deliveries() == []

    def test_a_real_uninstall_raises_the_alert_once_and_its_replay_nothing(self, client, shopify):
        shop, _ = shopify
        body = shop_body(shop)
        first = shopify_post(client, shop, body, topic="app/uninstalled", webhook_id="u-1")
        replay = shopify_post(client, shop, body, topic="app/uninstalled", webhook_id="u-2")

        assert first.json()["message"] == "accepted"
        assert replay.json()["message"] == "already received"
        with tenant_context(shop.tenant):
            (alert,) = Alert.objects.all()
        assert alert.kind == "shop_deauthorized" and alert.severity == "critical"
        assert alert.occurrences == 1

    @pytest.mark.parametrize(
        ("topic", "body", "problem"),
        [
            # Another shop's uninstall, signed with a secret both shops share (one app).
            ("app/uninstalled", {"id": 1, "myshopify_domain": "other.myshopify.com"}, "domain"),
            ("app/uninstalled", {"id": 1}, "domain"),
            ("shop/update", {"myshopify_domain": "{domain}"}, "numeric id"),
            ("orders/updated", {"id": 5, "myshopify_domain": "{domain}"}, "line items"),
            ("orders/create", {"line_items": []}, "numeric id"),
            ("orders/create", {"id": True, "line_items": []}, "numeric id"),
            ("orders/edited", {"order_edit": {"id": 3}}, "names its order"),
            ("fulfillments/create", {"id": 7, "status": "success"}, "names no order"),
            ("orders/updated", [1, 2], "not a JSON object"),
        ],
    )
    def test_a_body_that_does_not_fit_its_topic_is_refused(
        self, client, shopify, topic, body, problem
    ):
        shop, _ = shopify
        raw = json.dumps(body).replace("{domain}", shop.platform_shop_id).encode()
        response = shopify_post(client, shop, raw, topic=topic, webhook_id="w-x")
        assert response.status_code == 400, response.content
        assert problem in response.json()["message"]
        assert deliveries() == [] and not Alert._base_manager.exists()

    @pytest.mark.parametrize(
        ("topic", "body", "order_ids"),
        [
            ("orders/delete", {"id": 820982911946154508}, ["820982911946154508"]),
            ("fulfillments/update", {"id": 1, "order_id": 4501}, ["4501"]),
            ("refunds/create", {"id": 2, "order_id": "4502"}, ["4502"]),
            ("orders/edited", {"order_edit": {"id": 3, "order_id": 4503}}, []),
            ("products/update", {"id": 9, "title": "Mug"}, []),  # not ours to act on
        ],
    )
    def test_bodies_that_fit_their_topic_are_accepted(
        self, client, shopify, topic, body, order_ids
    ):
        shop, _ = shopify
        response = shopify_post(
            client, shop, json.dumps(body).encode(), topic=topic, webhook_id="a"
        )
        assert response.status_code == 200, response.content
        (delivery,) = deliveries()
        assert delivery.platform_order_ids == order_ids


class TestDigestScope:
    def test_the_same_platform_shop_in_two_tenants_records_one_delivery_each(
        self, client, tenant_a, tenant_b
    ):
        shops = []
        for tenant in (tenant_a, tenant_b):
            shop = ShopFactory(
                tenant=tenant, platform="shopify", platform_shop_id="twice.myshopify.com"
            )
            ShopCredentialsFactory(shop=shop, app_secret="one-app-secret")
            shops.append(shop)
        body = shop_body(shops[0])
        response = shopify_post(client, shops[0], body, topic="shop/update", webhook_id="s-1")

        assert response.json()["message"] == "accepted"
        assert sorted(d.tenant_id for d in deliveries()) == sorted([tenant_a.pk, tenant_b.pk])
        again = shopify_post(client, shops[0], body, topic="shop/update", webhook_id="s-2")
        assert again.json()["message"] == "already received"
        assert len(deliveries()) == 2

    def test_the_database_refuses_a_second_delivery_with_the_same_digest(self, shopify):
        shop, _ = shopify
        fields = {
            "tenant": shop.tenant,
            "shop": shop,
            "platform": "shopify",
            "received_at": timezone.now(),
            "body_sha256": "ab" * 32,
        }
        WebhookDelivery._base_manager.create(delivery_id="d-1", **fields)
        with pytest.raises(IntegrityError), transaction.atomic():
            WebhookDelivery._base_manager.create(delivery_id="d-2", **fields)
        # Rows from before the digest existed (blank) never collide.
        WebhookDelivery._base_manager.create(delivery_id="d-3", **{**fields, "body_sha256": ""})
        WebhookDelivery._base_manager.create(delivery_id="d-4", **{**fields, "body_sha256": ""})


def test_tiktok_deliveries_carry_the_digest_too(client, tenant_a):
    shop = ShopFactory(tenant=tenant_a, platform="tiktok", platform_shop_id="7495540735365777507")
    credentials = ShopCredentialsFactory(shop=shop, app_key="abcdef", app_secret="123")
    body = json.dumps(
        {
            "type": 1,
            "tts_notification_id": "7380066284010030890",
            "shop_id": shop.platform_shop_id,
            "timestamp": 1718305585,
            "data": {"order_id": "576653688135258178", "order_status": "UNPAID"},
        }
    ).encode()
    signature = hmac.new(
        credentials.app_secret.encode(), credentials.app_key.encode() + body, hashlib.sha256
    ).hexdigest()
    response = client.post(
        TIKTOK_URL, data=body, content_type="application/json", headers={"Authorization": signature}
    )
    assert response.status_code == 200
    (delivery,) = deliveries()
    assert delivery.body_sha256 == hashlib.sha256(body).hexdigest()
