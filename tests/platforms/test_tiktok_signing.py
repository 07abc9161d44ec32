"""TikTok request and webhook signatures against the official vectors (no database)."""

from urllib.parse import parse_qs

import pytest

from shops.models import ShopCredentials
from shops.platforms.base import WebhookVerificationError
from shops.platforms.tiktok import TikTokConnector, query_string, sign, webhook_signature

SECRET = "e59af819cc"

# Official vector (docv2 "sign your API request"), platform-apis.md §1.2.
SHOPS_PATH = "/authorization/202309/shops"
SHOPS_PARAMS = {"app_key": "29a39d", "timestamp": "1623812664"}
SHOPS_SIGN = "b596b73e0cc6de07ac26f036364178ab16b0a907af13d43f0a0cd2345f582dc8"

# The doc's base string with a body; digest computed from it (platform-apis.md §1.2).
WEBHOOKS_PATH = "/event/202309/webhooks"
WEBHOOKS_PARAMS = {
    "app_key": "68xu9ks5p4i8",
    "shop_cipher": "ROW_xkMbgAAAeVAQra0eZWebFQq5aIKt",
    "timestamp": "1696909648",
}
WEBHOOKS_BODY = b'{"address":"https://partner.tiktokshop.com","event_type":"PACKAGE_UPDATE"}'
WEBHOOKS_SIGN = "a75b9c8cd57140cab6dc95bf31c37bd6ffface74210768b6517c0ff81659b0ba"

# Official webhook vector (platform-apis.md §1.10).
HOOK_KEY = "abcdef"
HOOK_SECRET = "123"
HOOK_BODY = (
    b'{"type":1,"tts_notification_id":"7380066284010030890","shop_id":"7495540735365777507",'
    b'"timestamp":1718305585,"data":{"is_on_hold_order":true,"order_id":"576653688135258178",'
    b'"order_status":"UNPAID","update_time":1718305585}}'
)
HOOK_SIGN = "5dec0f11ec2f6783b8deee53c9ffbf8d024302f7c7e7fa55a35d17629031ac05"


class TestRequestSignature:
    def test_official_vector_without_body(self):
        assert sign(SHOPS_PATH, SHOPS_PARAMS, None, SECRET) == SHOPS_SIGN

    def test_official_vector_with_body(self):
        assert sign(WEBHOOKS_PATH, WEBHOOKS_PARAMS, WEBHOOKS_BODY, SECRET) == WEBHOOKS_SIGN

    def test_key_order_does_not_matter_but_every_body_byte_does(self):
        shuffled = dict(reversed(list(WEBHOOKS_PARAMS.items())))
        assert sign(WEBHOOKS_PATH, shuffled, WEBHOOKS_BODY, SECRET) == WEBHOOKS_SIGN
        spaced = b'{"address": "https://partner.tiktokshop.com","event_type":"PACKAGE_UPDATE"}'
        assert sign(WEBHOOKS_PATH, WEBHOOKS_PARAMS, spaced, SECRET) != WEBHOOKS_SIGN

    def test_sign_token_and_empty_params_are_not_signed(self):
        noisy = {**SHOPS_PARAMS, "sign": "old", "access_token": "tok", "page_token": ""}
        assert sign(SHOPS_PATH, noisy, None, SECRET) == SHOPS_SIGN

    def test_page_token_is_signed_decoded_and_sent_percent_encoded(self):
        token = "+/+/VQAGYPZ31gVAAAAAAAAAAGU="
        params = {**SHOPS_PARAMS, "page_token": token}
        encoded = query_string(params)
        assert "page_token=%2B%2F%2B%2FVQAGYPZ31gVAAAAAAAAAAGU%3D" in encoded
        # What the server decodes is what was signed.
        decoded = {key: values[0] for key, values in parse_qs(encoded).items()}
        assert decoded["page_token"] == token
        assert sign(SHOPS_PATH, decoded, None, SECRET) == sign(SHOPS_PATH, params, None, SECRET)

    def test_arrays_are_signed_comma_joined(self):
        as_list = sign("/order/202309/orders", {"ids": ["1", "2"]}, None, SECRET)
        assert as_list == sign("/order/202309/orders", {"ids": "1,2"}, None, SECRET)


class TestWebhookSignature:
    @pytest.fixture
    def credentials(self):
        return ShopCredentials(app_key=HOOK_KEY, app_secret=HOOK_SECRET)

    def test_official_vector(self, credentials):
        assert webhook_signature(app_key=HOOK_KEY, secret=HOOK_SECRET, body=HOOK_BODY) == HOOK_SIGN
        assert TikTokConnector.verify_webhook(
            headers={"Authorization": HOOK_SIGN}, body=HOOK_BODY, credentials=credentials
        )

    def test_header_lookup_is_case_insensitive_and_accepts_wsgi_meta(self, credentials):
        for headers in ({"authorization": HOOK_SIGN}, {"HTTP_AUTHORIZATION": HOOK_SIGN}):
            assert TikTokConnector.verify_webhook(
                headers=headers, body=HOOK_BODY, credentials=credentials
            )

    @pytest.mark.parametrize(
        ("headers", "body"),
        [
            ({"Authorization": HOOK_SIGN}, HOOK_BODY.replace(b"UNPAID", b"CANCELLED")),
            ({"Authorization": HOOK_SIGN}, HOOK_BODY + b" "),
            ({"Authorization": "Bearer " + HOOK_SIGN}, HOOK_BODY),
            ({"Authorization": HOOK_SIGN[:-1] + "0"}, HOOK_BODY),
            ({"Authorization": "ünïcode"}, HOOK_BODY),
            ({}, HOOK_BODY),
        ],
    )
    def test_tampering_fails(self, credentials, headers, body):
        assert not TikTokConnector.verify_webhook(
            headers=headers, body=body, credentials=credentials
        )

    def test_other_app_fails(self):
        other = ShopCredentials(app_key="abcdeg", app_secret=HOOK_SECRET)
        assert not TikTokConnector.verify_webhook(
            headers={"Authorization": HOOK_SIGN}, body=HOOK_BODY, credentials=other
        )


class TestParseWebhook:
    def test_order_status_change(self):
        event = TikTokConnector.parse_webhook(headers={}, body=HOOK_BODY)
        assert event.delivery_id == "7380066284010030890"
        assert event.topic == "ORDER_STATUS_CHANGE"
        assert event.platform_order_ids == ["576653688135258178"]
        assert event.shop_key == "7495540735365777507"

    def test_package_update_lists_every_order_once(self):
        body = (
            b'{"type":4,"tts_notification_id":"1","shop_id":"9","timestamp":1,"data":'
            b'{"package_list":[{"package_id":"p1","order_id_list":["11","12"]},'
            b'{"package_id":"p2","order_id_list":["12"]}]}}'
        )
        event = TikTokConnector.parse_webhook(headers={}, body=body)
        assert event.topic == "PACKAGE_UPDATE"
        assert event.platform_order_ids == ["11", "12"]

    def test_legacy_payload_without_notification_id_still_has_a_stable_delivery_id(self):
        body = b'{"type":1,"shop_id":"9","timestamp":1,"data":{"order_id":"5"}}'
        first = TikTokConnector.parse_webhook(headers={}, body=body)
        again = TikTokConnector.parse_webhook(headers={}, body=body)
        assert first.delivery_id.startswith("sha256:")
        assert first.delivery_id == again.delivery_id

    @pytest.mark.parametrize("body", [b"not json", b"[1, 2]"])
    def test_garbage_is_refused(self, body):
        with pytest.raises(WebhookVerificationError):
            TikTokConnector.parse_webhook(headers={}, body=body)
