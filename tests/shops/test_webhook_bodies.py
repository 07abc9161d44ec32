"""What is kept of a webhook's body: capped on arrival, gone after the retention."""

import hashlib
import hmac
import json
from datetime import timedelta

import pytest
from django.utils import timezone

from shops import tasks
from shops.models import WebhookDelivery
from shops.webhooks import WEBHOOK_BODY_KEPT_BYTES
from tests.factories import ShopCredentialsFactory, ShopFactory
from tkerp.tenancy import tenant_context

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop(tenant_a):
    shop = ShopFactory(tenant=tenant_a, platform="tiktok", platform_shop_id="7495540735365777507")
    ShopCredentialsFactory(shop=shop, app_key="abcdef", app_secret="123")
    return shop


def deliver(client, shop, *, notification: str, padding: int = 0):
    body = json.dumps(
        {
            "type": 1,
            "tts_notification_id": notification,
            "shop_id": shop.platform_shop_id,
            "timestamp": int(timezone.now().timestamp()),
            "data": {"order_id": "576653688135258178", "order_status": "UNPAID"},
            "note": "x" * padding,
        }
    ).encode()
    signature = hmac.new(b"123", b"abcdef" + body, hashlib.sha256).hexdigest()
    response = client.post(
        "/webhooks/tiktok/",
        data=body,
        content_type="application/json",
        headers={"Authorization": signature},
    )
    assert response.status_code == 200, response.content
    return body


def test_a_large_body_is_kept_only_up_to_the_cap(client, shop):
    body = deliver(client, shop, notification="7380066284010030001", padding=100_000)
    assert len(body) > WEBHOOK_BODY_KEPT_BYTES

    with tenant_context(shop.tenant):
        delivery = WebhookDelivery.objects.get()
    assert len(delivery.body.encode()) == WEBHOOK_BODY_KEPT_BYTES
    assert delivery.platform_order_ids == ["576653688135258178"]  # parsed from the whole body


def test_bodies_are_gone_after_the_retention(client, shop, settings):
    settings.TKERP_WEBHOOK_RETENTION_DAYS = 3
    deliver(client, shop, notification="7380066284010030001")
    deliver(client, shop, notification="7380066284010030002")
    WebhookDelivery._base_manager.filter(delivery_id="7380066284010030001").update(
        received_at=timezone.now() - timedelta(days=3, minutes=1)
    )

    assert tasks.prune_sync_history()["webhook_deliveries"] == 1

    assert list(WebhookDelivery._base_manager.values_list("delivery_id", flat=True)) == [
        "7380066284010030002"
    ]


def signed_post(client, body: bytes):
    signature = hmac.new(b"123", b"abcdef" + body, hashlib.sha256).hexdigest()
    return client.post(
        "/webhooks/tiktok/",
        data=body,
        content_type="application/json",
        headers={"Authorization": signature},
    )


@pytest.mark.parametrize(
    "fields",
    [
        # Before any signature is checked: the shop id is looked up as text.
        {"shop_id": "7495540735365777507\ud83d"},
        {"tts_notification_id": "73800662840100\ud83d"},
        {"data": {"order_id": "576653688135258178\udc00"}},
    ],
)
def test_a_lone_surrogate_in_an_id_is_a_400_not_an_error_page(client, shop, fields):
    """JSON's "\\ud83d" escape decodes to a lone surrogate, which no text column can store."""
    payload = {
        "type": 1,
        "tts_notification_id": "7380066284010030001",
        "shop_id": shop.platform_shop_id,
        "timestamp": int(timezone.now().timestamp()),
        "data": {"order_id": "576653688135258178"},
        **fields,
    }
    response = signed_post(client, json.dumps(payload).encode())

    assert response.status_code == 400, response.content
    assert WebhookDelivery._base_manager.count() == 0
