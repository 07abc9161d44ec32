"""Webhooks in: verified with the shop's credentials, recorded once, processed once.

Deliveries are POSTed through Django's test client, or by the sandbox itself (`send_webhook`,
over HTTP into our app); processing re-fetches the orders from the sandbox through the shop's
real connector.
"""

import base64
import hashlib
import hmac
import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

import shops.admin_sync  # noqa: F401 - registers the sync admins (the lead wires it for real)
from orders.models import Order, OrderEvent
from sandbox.base import sandbox_for
from sandbox.models import SandboxStore
from shops import tasks
from shops.models import ShopCredentials, WebhookDelivery
from shops.platforms.base import PlatformError
from shops.webhooks import webhook_deliveries_drain
from tests.e2e.helpers import (
    add_orders,
    connect_shop,
    django_q_sync,
)
from tests.factories import ShopCredentialsFactory, ShopFactory, WebhookDeliveryFactory
from tests.orders.admin_helpers import admin_url, assert_not_found, changelist_pks
from tkerp.models import Alert
from tkerp.tenancy import tenant_context

pytestmark = pytest.mark.django_db

TIKTOK_URL = "/webhooks/tiktok/"
SHOPIFY_URL = "/webhooks/shopify/"

# platform-apis.md §1.10, the official verification vector.
VECTOR_BODY = (
    b'{"type":1,"tts_notification_id":"7380066284010030890","shop_id":"7495540735365777507",'
    b'"timestamp":1718305585,"data":{"is_on_hold_order":true,"order_id":"576653688135258178",'
    b'"order_status":"UNPAID","update_time":1718305585}}'
)
VECTOR_SIGNATURE = "5dec0f11ec2f6783b8deee53c9ffbf8d024302f7c7e7fa55a35d17629031ac05"


def tiktok_signature(credentials: ShopCredentials, body: bytes) -> str:
    """As TikTok signs: hex HMAC-SHA256(app_secret, app_key + raw body)."""
    message = credentials.app_key.encode() + body
    return hmac.new(credentials.app_secret.encode(), message, hashlib.sha256).hexdigest()


def tiktok_body(shop, *, order_id: str, notification: str = "7380066284010030001", kind=1):
    return json.dumps(
        {
            "type": kind,
            "tts_notification_id": notification,
            "shop_id": shop.platform_shop_id,
            "timestamp": int(timezone.now().timestamp()),
            "data": {"order_id": order_id, "order_status": "AWAITING_SHIPMENT"},
        },
        separators=(",", ":"),
    ).encode()


def post(client, url, body: bytes, **headers):
    return client.post(url, data=body, content_type="application/json", headers=headers)


def nothing_written():
    return (
        not WebhookDelivery._base_manager.exists()
        and not Order._base_manager.exists()
        and not Alert._base_manager.exists()
    )


@pytest.fixture
def vector_shop(tenant_a):
    shop = ShopFactory(tenant=tenant_a, platform="tiktok", platform_shop_id="7495540735365777507")
    ShopCredentialsFactory(shop=shop, app_key="abcdef", app_secret="123")
    return shop


class TestVerification:
    def test_the_official_vector_is_accepted_and_recorded(
        self, client, vector_shop, django_capture_on_commit_callbacks
    ):
        with django_capture_on_commit_callbacks() as callbacks:
            response = post(client, TIKTOK_URL, VECTOR_BODY, Authorization=VECTOR_SIGNATURE)

        assert response.status_code == 200, response.content
        assert response.json() == {"code": 0, "message": "accepted"}
        with tenant_context(vector_shop.tenant):
            delivery = WebhookDelivery.objects.get()
        assert delivery.shop == vector_shop and delivery.delivery_id == "7380066284010030890"
        assert delivery.topic == "ORDER_STATUS_CHANGE"
        assert delivery.platform_order_ids == ["576653688135258178"]
        assert delivery.body == VECTOR_BODY.decode() and delivery.processed_at is None
        assert len(callbacks) == 1  # processing is queued, after commit

    def test_a_bad_signature_is_401_and_writes_nothing(self, client, vector_shop):
        response = post(client, TIKTOK_URL, VECTOR_BODY, Authorization="0" * 64)
        assert response.status_code == 401
        assert nothing_written()

    def test_a_signature_over_other_bytes_is_refused(self, client, vector_shop):
        tampered = VECTOR_BODY.replace(b'"UNPAID"', b'"CANCELLED"')
        response = post(client, TIKTOK_URL, tampered, Authorization=VECTOR_SIGNATURE)
        assert response.status_code == 401
        assert nothing_written()

    def test_an_unknown_shop_gets_the_same_401(self, client, vector_shop):
        body = VECTOR_BODY.replace(b"7495540735365777507", b"7495540735365777000")
        signature = hmac.new(b"123", b"abcdef" + body, hashlib.sha256).hexdigest()
        unknown = post(client, TIKTOK_URL, body, Authorization=signature)
        bad = post(client, TIKTOK_URL, VECTOR_BODY, Authorization=signature)
        assert unknown.status_code == bad.status_code == 401
        assert unknown.content == bad.content  # no existence oracle
        assert nothing_written()

    def test_an_inactive_shop_is_unknown(self, client, vector_shop):
        vector_shop.is_active = False
        vector_shop.save()
        response = post(client, TIKTOK_URL, VECTOR_BODY, Authorization=VECTOR_SIGNATURE)
        assert response.status_code == 401
        assert nothing_written()

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            (b"{not json", "not valid JSON"),
            (b"[1, 2]", "not a JSON object"),
            (b'{"type": 1, "data": {}}', "which shop"),
        ],
    )
    def test_a_malformed_body_is_400_with_a_clear_message(self, client, vector_shop, body, message):
        signature = hmac.new(b"123", b"abcdef" + body, hashlib.sha256).hexdigest()
        response = post(client, TIKTOK_URL, body, Authorization=signature)
        assert response.status_code == 400
        assert message in response.json()["message"]
        assert nothing_written()

    @pytest.mark.parametrize(
        ("payload", "message"),
        [
            ({"type": 1, "shop_id": "\u0000", "data": {}}, "which shop"),
            (
                {"type": 1, "shop_id": "7495540735365777507", "tts_notification_id": "n\u0000"},
                "not text",
            ),
            (
                {"type": 1, "shop_id": "7495540735365777507", "data": {"order_id": "1\u0000"}},
                "not an id",
            ),
            (
                {"type": 1, "shop_id": "7495540735365777507", "data": {"order_id": {"x": 1}}},
                "not an id",
            ),
            (
                {
                    "type": 1,
                    "shop_id": "7495540735365777507",
                    "data": {"package_list": [{"order_id_list": [["576653688135258178"]]}]},
                },
                "not an id",
            ),
        ],
    )
    def test_what_cannot_be_stored_as_an_id_is_400_and_writes_nothing(
        self, client, vector_shop, payload, message
    ):
        """A NUL (which PostgreSQL cannot store in text) or an object where an id belongs,
        signed or not, is the sender's error: 400 with a clear message, never an error page."""
        body = json.dumps(payload).encode()
        signature = hmac.new(b"123", b"abcdef" + body, hashlib.sha256).hexdigest()
        client.raise_request_exception = False
        response = post(client, TIKTOK_URL, body, Authorization=signature)
        assert response.status_code == 400, response.content
        assert message in response.json()["message"]
        assert nothing_written()

    def test_a_bare_order_id_in_a_package_list_is_one_id(self, client, vector_shop):
        body = json.dumps(
            {
                "type": 2,
                "tts_notification_id": "7380066284010030999",
                "shop_id": "7495540735365777507",
                "data": {"package_list": [{"order_id_list": "576653688135258178"}]},
            }
        ).encode()
        signature = hmac.new(b"123", b"abcdef" + body, hashlib.sha256).hexdigest()
        assert post(client, TIKTOK_URL, body, Authorization=signature).status_code == 200
        with tenant_context(vector_shop.tenant):
            delivery = WebhookDelivery.objects.get()
        assert delivery.platform_order_ids == ["576653688135258178"]

    def test_only_post_is_allowed(self, client, vector_shop):
        assert client.get(TIKTOK_URL).status_code == 405

    def test_the_route_is_mounted_under_webhooks(self):
        assert reverse("webhooks:tiktok") == TIKTOK_URL
        assert reverse("webhooks:shopify") == SHOPIFY_URL


class TestReplayAndTopics:
    def test_a_replay_is_acknowledged_and_recorded_once(
        self, client, vector_shop, django_capture_on_commit_callbacks
    ):
        with django_capture_on_commit_callbacks() as callbacks:
            first = post(client, TIKTOK_URL, VECTOR_BODY, Authorization=VECTOR_SIGNATURE)
            second = post(client, TIKTOK_URL, VECTOR_BODY, Authorization=VECTOR_SIGNATURE)
        assert first.status_code == second.status_code == 200
        assert second.json()["message"] == "already received"
        assert WebhookDelivery._base_manager.count() == 1
        assert len(callbacks) == 1

    def test_a_topic_without_orders_is_done_on_arrival(
        self, client, vector_shop, django_capture_on_commit_callbacks
    ):
        body = json.dumps(
            {
                "type": 5,
                "tts_notification_id": "n-5",
                "shop_id": vector_shop.platform_shop_id,
                "data": {"product_id": "1", "status": "LIVE"},
            }
        ).encode()
        with django_capture_on_commit_callbacks() as callbacks:
            response = post(
                client,
                TIKTOK_URL,
                body,
                Authorization=tiktok_signature(vector_shop.credentials, body),
            )
        assert response.status_code == 200 and callbacks == []
        delivery = WebhookDelivery._base_manager.get()
        assert delivery.processed_at is not None and delivery.platform_order_ids == []

    def test_a_deauthorization_opens_an_alert(self, client, vector_shop):
        body = json.dumps(
            {
                "type": 6,
                "tts_notification_id": "n-6",
                "shop_id": vector_shop.platform_shop_id,
                "data": {"message": "the seller deauthorized the app"},
            }
        ).encode()
        credentials = vector_shop.credentials
        post(client, TIKTOK_URL, body, Authorization=tiktok_signature(credentials, body))
        with tenant_context(vector_shop.tenant):
            alert = Alert.objects.get()
        assert alert.kind == "shop_deauthorized" and alert.shop == vector_shop


# --- processing, against the sandboxes --------------------------------------------------------


@pytest.fixture
def tiktok(tenant_a):
    return connect_shop(tenant_a, "tiktok")


class TestTikTokProcessing:
    def test_a_valid_webhook_ingests_the_order_once(
        self, client, tiktok, django_capture_on_commit_callbacks
    ):
        shop, store = tiktok
        (generated,) = add_orders(store, 1, start=timezone.now() - timedelta(minutes=3))
        body = tiktok_body(shop, order_id=generated.order_id)
        signature = tiktok_signature(shop.credentials, body)

        with django_q_sync(), django_capture_on_commit_callbacks(execute=True):
            response = post(client, TIKTOK_URL, body, Authorization=signature)
            replay = post(client, TIKTOK_URL, body, Authorization=signature)

        assert response.status_code == replay.status_code == 200
        with tenant_context(shop.tenant):
            order = Order.objects.get()
            delivery = WebhookDelivery.objects.get()
            assert order.platform_order_id == generated.order_id
            assert OrderEvent.objects.filter(kind="ingested").count() == 1
            assert order.events.get(kind="ingested").data["source"] == "webhook"
        assert delivery.processed_at is not None and delivery.attempts == 1

    def test_the_sandbox_own_webhook_is_received_and_processed(
        self, tiktok, django_capture_on_commit_callbacks
    ):
        shop, store = tiktok
        (generated,) = add_orders(store, 1, start=timezone.now() - timedelta(minutes=3))
        with django_q_sync(), django_capture_on_commit_callbacks(execute=True):
            status = sandbox_for("tiktok").send_webhook(
                store=store,
                topic="ORDER_STATUS_CHANGE",
                data={"order_id": generated.order_id, "order_status": "AWAITING_SHIPMENT"},
            )
        assert status == 200
        with tenant_context(shop.tenant):
            assert Order.objects.get().platform_order_id == generated.order_id

    def test_a_failed_fetch_is_recorded_raised_and_retried(self, client, tiktok):
        shop, store = tiktok
        (generated,) = add_orders(store, 1, start=timezone.now() - timedelta(minutes=3))
        body = tiktok_body(shop, order_id=generated.order_id)
        post(client, TIKTOK_URL, body, Authorization=tiktok_signature(shop.credentials, body))
        delivery = WebhookDelivery._base_manager.get()
        SandboxStore.objects.filter(pk=store.pk).update(fault_rate=1.0, fault_kinds=["500"])
        from shops.platforms import connector_for

        failing = connector_for(shop, sleep=lambda _: None, max_retries=0)
        with pytest.raises(PlatformError):
            webhook_deliveries_drain(shop=shop, connector=failing)
        delivery.refresh_from_db()
        assert delivery.processed_at is None and "500" in delivery.error
        assert delivery.claimed_until is None  # released: the retry need not wait for it

        SandboxStore.objects.filter(pk=store.pk).update(fault_rate=0.0)
        assert tasks.process_webhook(delivery.pk)["status"] == "processed"
        assert tasks.process_webhook(delivery.pk)["status"] == "already processed"
        delivery.refresh_from_db()
        assert delivery.attempts == 2 and delivery.error == ""
        with tenant_context(shop.tenant):
            assert Order.objects.count() == 1

    def test_the_dispatcher_requeues_deliveries_never_attempted(self, tiktok, monkeypatch):
        shop, _ = tiktok
        queued = []
        monkeypatch.setattr(
            "django_q.tasks.async_task", lambda *args, **kwargs: queued.append(args)
        )
        monkeypatch.setattr(tasks, "async_task", lambda *args, **kwargs: None)
        old = timezone.now() - timedelta(minutes=10)
        lost = WebhookDeliveryFactory(tenant=shop.tenant, shop=shop, received_at=old)
        WebhookDeliveryFactory(tenant=shop.tenant, shop=shop, received_at=old, attempts=1)
        WebhookDeliveryFactory(tenant=shop.tenant, shop=shop)  # just arrived
        WebhookDeliveryFactory(tenant=shop.tenant, shop=shop, received_at=old, processed_at=old)

        result = tasks.sync_due_shops()

        assert result["webhooks_requeued"] == [lost.pk]
        assert queued == [("shops.tasks.process_webhook", lost.pk)]
        # Re-queued a moment ago: not again until it has waited REQUEUE_EVERY.
        assert tasks.sync_due_shops()["webhooks_requeued"] == []
        WebhookDelivery._base_manager.filter(pk=lost.pk).update(
            queued_at=timezone.now() - tasks.REQUEUE_EVERY
        )
        assert tasks.sync_due_shops()["webhooks_requeued"] == [lost.pk]


class TestShopify:
    def test_the_sandbox_webhook_ingests_the_order(
        self, tenant_a, django_capture_on_commit_callbacks
    ):
        shop, store = connect_shop(tenant_a, "shopify")
        (generated,) = add_orders(store, 1, start=timezone.now() - timedelta(minutes=3))
        with django_q_sync(), django_capture_on_commit_callbacks(execute=True):
            status = sandbox_for("shopify").send_webhook(
                store=store, topic="orders/updated", data=generated.payload
            )
        assert status == 200
        with tenant_context(shop.tenant):
            assert Order.objects.get().platform_order_id == generated.order_id
            delivery = WebhookDelivery.objects.get()
        assert delivery.topic == "orders/updated" and delivery.processed_at is not None

    def test_a_bad_hmac_is_401_and_writes_nothing(self, client, tenant_a):
        shop, _ = connect_shop(tenant_a, "shopify")
        body = b'{"id": 1}'
        response = post(
            client,
            SHOPIFY_URL,
            body,
            **{
                "X-Shopify-Shop-Domain": shop.platform_shop_id,
                "X-Shopify-Hmac-Sha256": "bm90IGl0",
                "X-Shopify-Topic": "orders/updated",
                "X-Shopify-Webhook-Id": "w-1",
            },
        )
        assert response.status_code == 401
        assert nothing_written()

    def test_a_shop_domain_typed_with_capitals_still_receives_its_webhooks(self, client, tenant_a):
        # The connector calls the lower-cased host, so the shop syncs; Shopify sends the
        # domain lower-cased, and a 401 to every delivery would cost its subscriptions.
        shop = ShopFactory(
            tenant=tenant_a, platform="shopify", platform_shop_id="Alpha-Store.myshopify.com"
        )
        ShopCredentialsFactory(shop=shop, app_secret="shpss_secret")
        body = b'{"id": 4501, "line_items": []}'
        signature = base64.b64encode(hmac.new(b"shpss_secret", body, hashlib.sha256).digest())
        response = post(
            client,
            SHOPIFY_URL,
            body,
            **{
                "X-Shopify-Shop-Domain": "alpha-store.myshopify.com",
                "X-Shopify-Hmac-Sha256": signature.decode(),
                "X-Shopify-Topic": "orders/updated",
                "X-Shopify-Webhook-Id": "w-1",
            },
        )
        assert response.status_code == 200, response.content
        with tenant_context(tenant_a):
            assert WebhookDelivery.objects.get().platform_order_ids == ["4501"]

    def test_a_missing_shop_domain_is_400(self, client, tenant_a):
        connect_shop(tenant_a, "shopify")
        response = post(client, SHOPIFY_URL, b'{"id": 1}')
        assert response.status_code == 400 and "which shop" in response.json()["message"]


class TestDeliveryAdmin:
    def test_deliveries_are_scoped_to_the_tenant(self, client_a, tenant_a, tenant_b):
        mine = WebhookDeliveryFactory(tenant=tenant_a)
        theirs = WebhookDeliveryFactory(tenant=tenant_b)
        assert changelist_pks(client_a, WebhookDelivery) == {mine.pk}
        assert changelist_pks(client_a, WebhookDelivery, "?processed=no") == {mine.pk}
        assert_not_found(client_a, admin_url(WebhookDelivery, "change", theirs.pk))

    def test_delivery_changelist_query_count_is_flat(
        self, client_a, tenant_a, django_assert_max_num_queries
    ):
        for _ in range(30):
            WebhookDeliveryFactory(tenant=tenant_a)
        with django_assert_max_num_queries(15):
            assert client_a.get(admin_url(WebhookDelivery, "changelist")).status_code == 200
