"""Where a shop's connector sends its token, and what of the reply reaches people.

The attack these guard against: an owner set the credentials' "API base URL" to an internal
host (`http://127.0.0.1:8199/`); the next sync sent the shop's access token there and the first
200 characters of the reply appeared in the sync-run list and the shop's last error, which the
operator role reads. Now the connector knows the platform's hosts; a shop is only ever marked
as on tkerp's sandbox (where the server enables it); and error texts never quote a reply.
"""

import json
from datetime import timedelta

import httpx
import pytest
from django.utils import timezone

from shops.models import ApiEndpoint, Shop, ShopCredentials, SyncRun
from shops.platforms import connector_for
from shops.platforms.base import PlatformConfigError
from shops.sync import shop_sync
from tests.e2e.helpers import LoopbackReceiver, add_orders, connect_shop
from tests.factories import ShopCredentialsFactory, ShopFactory
from tests.orders.admin_helpers import admin_url
from tkerp.tenancy import tenant_context

pytestmark = pytest.mark.django_db

SECRET_REPLY = "INTERNAL-ADMIN-PANEL redis_version:7.2 AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI"


def shop_form(shop: Shop, credentials: ShopCredentials, **credential_values) -> dict:
    """The shop's change form as the browser posts it, credentials inline."""
    fields = {
        "id": credentials.pk,
        "shop": shop.pk,
        "api_endpoint": credentials.api_endpoint,
        "app_key": credentials.app_key,
        "shop_cipher": credentials.shop_cipher,
        "extra": json.dumps(credentials.extra),
        "app_secret": "",
        "access_token": "",
        "refresh_token": "",
        "webhook_secret": "",
        **credential_values,
    }
    data = {
        "name": shop.name,
        "platform": shop.platform,
        "region": shop.region,
        "platform_shop_id": shop.platform_shop_id,
        "currency": shop.currency,
        "ship_by_hours": "24",
        "presale_ship_by_hours": "72",
        "tracking_upload_hours": "48",
        "is_active": "on",
        "sync_interval_seconds": "60",
        "credentials-TOTAL_FORMS": "1",
        "credentials-INITIAL_FORMS": "1",
        "credentials-MIN_NUM_FORMS": "0",
        "credentials-MAX_NUM_FORMS": "1",
    }
    data |= {f"credentials-0-{name}": value for name, value in fields.items()}
    return data


def sync(shop, **http_options) -> SyncRun:
    with tenant_context(shop.tenant):
        connector = connector_for(shop, sleep=lambda _: None, max_retries=0, **http_options)
        return shop_sync(shop=shop, connector=connector)


class TestTheAttack:
    def test_an_owner_cannot_send_the_shops_token_to_an_internal_host(self, client_a, tenant_a):
        shop, store = connect_shop(tenant_a, "tiktok")
        add_orders(store, 2, start=timezone.now() - timedelta(hours=1))
        credentials = ShopCredentials._base_manager.get(shop=shop)
        reply = json.dumps({"code": 1, "message": SECRET_REPLY}).encode()
        with LoopbackReceiver(body=reply) as internal:
            # The old form's free URL field, and the new one's choice, as a hostile owner posts.
            data = shop_form(
                shop,
                credentials,
                api_base_url=f"http://127.0.0.1:{internal.port}/",
                api_endpoint="sandbox",
            )
            response = client_a.post(admin_url(Shop, "change", shop.pk), data)
            assert response.status_code == 302

            run = sync(shop)

        assert internal.received == [], "the shop's token went to the internal host"
        assert run.status == "success", run.error
        shop.refresh_from_db()
        assert SECRET_REPLY[:20] not in run.error + shop.last_sync_error

    def test_the_form_offers_no_url_and_no_sandbox_where_it_is_off(
        self, client_a, tenant_a, settings
    ):
        shop = ShopFactory(tenant=tenant_a, name="Alpha TikTok")
        credentials = ShopCredentialsFactory(shop=shop)
        page = client_a.get(admin_url(Shop, "change", shop.pk)).content.decode()
        assert 'name="credentials-0-api_endpoint"' in page
        assert "api_base_url" not in page and 'value="sandbox"' in page

        settings.TKERP_SANDBOX_ENABLED = False
        page = client_a.get(admin_url(Shop, "change", shop.pk)).content.decode()
        assert 'value="sandbox"' not in page
        response = client_a.post(
            admin_url(Shop, "change", shop.pk), shop_form(shop, credentials, api_endpoint="sandbox")
        )
        assert response.status_code == 200
        (formset,) = response.context["inline_admin_formsets"]
        assert "api_endpoint" in formset.formset.errors[0]
        credentials.refresh_from_db()
        assert credentials.api_endpoint == ApiEndpoint.LIVE

    def test_a_shop_left_on_the_sandbox_fails_clearly_where_it_is_off(self, tenant_a, settings):
        shop, _ = connect_shop(tenant_a, "tiktok")
        settings.TKERP_SANDBOX_ENABLED = False

        with pytest.raises(PlatformConfigError, match="sandbox is not enabled"):
            connector_for(shop)
        with tenant_context(tenant_a):
            run = shop_sync(shop=shop)
        assert run.status == "failed" and "sandbox is not enabled on this server" in run.error


class TestLiveHosts:
    @pytest.mark.parametrize(
        ("platform", "region", "shop_id", "expected"),
        [
            ("tiktok", "US", "7495000001", "https://open-api.tiktokglobalshop.com"),
            ("tiktok", "MY", "7495000001", "https://open-api.tiktokglobalshop.com"),
            ("amazon", "US", "A1B2C3", "https://sellingpartnerapi-na.amazon.com"),
            ("amazon", "DE", "A1B2C3", "https://sellingpartnerapi-eu.amazon.com"),
            ("amazon", "GB", "A1B2C3", "https://sellingpartnerapi-eu.amazon.com"),
            ("amazon", "JP", "A1B2C3", "https://sellingpartnerapi-fe.amazon.com"),
            ("amazon", "AU", "A1B2C3", "https://sellingpartnerapi-fe.amazon.com"),
            ("ebay", "US", "seller_1", "https://api.ebay.com"),
            ("shopify", "US", "alpha-goods.myshopify.com", "https://alpha-goods.myshopify.com"),
            ("shopify", "US", "Alpha-Goods.MyShopify.com", "https://alpha-goods.myshopify.com"),
        ],
    )
    def test_each_connector_knows_its_platforms_hosts(
        self, tenant_a, platform, region, shop_id, expected
    ):
        shop = ShopFactory(
            tenant=tenant_a, platform=platform, region=region, platform_shop_id=shop_id
        )
        # A host override left in `extra` by older versions is not honoured.
        ShopCredentialsFactory(shop=shop, extra={"auth_base_url": "http://127.0.0.1:8199"})

        connector = connector_for(shop)

        assert connector.http.base_url == expected
        if platform == "tiktok":
            assert connector.auth_base_url() == "https://auth.tiktok-shops.com"
        if platform == "amazon":
            assert connector.token_url == "https://api.amazon.com/auth/o2/token"

    @pytest.mark.parametrize(
        "domain",
        [
            "127.0.0.1:8199",
            "evil.example.com",
            "alpha.myshopify.com.evil.example",
            "user@alpha.myshopify.com",
            "alpha.myshopify.com/../x",
            "169.254.169.254#.myshopify.com",
        ],
    )
    def test_a_shopify_shop_is_only_ever_its_myshopify_host(self, tenant_a, domain):
        shop = ShopFactory(tenant=tenant_a, platform="shopify", platform_shop_id=domain)
        ShopCredentialsFactory(shop=shop)

        with pytest.raises(PlatformConfigError, match="myshopify domain"):
            connector_for(shop)


def reply_with(status: int, body: bytes, content_type: str):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers={"Content-Type": content_type})

    return httpx.MockTransport(handler)


class TestRepliesAreNeverQuoted:
    """A platform (outside this machine, so simulated by a transport) answering with pages it
    should not: the run and the shop's error keep a status and our own words, nothing more."""

    @pytest.mark.parametrize("platform", ["tiktok", "shopify", "amazon", "ebay"])
    @pytest.mark.parametrize(
        ("status", "body", "content_type"),
        [
            (200, f"<html><body>{SECRET_REPLY}</body></html>", "text/html"),
            (400, f"<html><body>{SECRET_REPLY}</body></html>", "text/html; charset=utf-8"),
            (404, SECRET_REPLY, "text/plain"),
            # JSON, but not the platform's error shape (a proxy's or a gateway's own).
            (403, json.dumps({"page": SECRET_REPLY}), "application/json"),
            (400, json.dumps([SECRET_REPLY]), "application/json"),
        ],
    )
    def test_a_body_that_is_not_the_platforms_error_is_not_shown(
        self, tenant_a, platform, status, body, content_type, caplog
    ):
        shop, _ = connect_shop(tenant_a, platform)

        run = sync(shop, transport=reply_with(status, body.encode(), content_type))

        shop.refresh_from_db()
        assert run.status == "failed"
        assert f"HTTP {status}" in run.error or "not JSON" in run.error, run.error
        for text in (run.error, shop.last_sync_error, caplog.text):
            assert "INTERNAL" not in text and "wJalrXUtnFEMI" not in text and "<html" not in text

    def test_a_platform_error_message_is_kept_short_and_without_secrets(self, tenant_a):
        shop, _ = connect_shop(tenant_a, "tiktok")
        message = "invalid access_token=act.Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5 " + "x" * 2000
        envelope = json.dumps({"code": 36009004, "message": message, "request_id": "r-1"})

        run = sync(shop, transport=reply_with(200, envelope.encode(), "application/json"))

        assert run.status == "failed"
        assert "code 36009004" in run.error and "(request r-1)" in run.error
        assert "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5" not in run.error
        assert len(run.error) < 260
