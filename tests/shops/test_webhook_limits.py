"""Webhook bodies come from anyone before a signature is checked: parsed defensively (issue 9,
item 2). Deep nesting used to raise RecursionError, answered by the DEBUG page."""

import pytest
from django.test import Client, override_settings

from shops.models import WebhookDelivery
from tkerp.tenancy import all_tenants

pytestmark = pytest.mark.django_db

URLS = ["/webhooks/tiktok/", "/webhooks/shopify/"]


def deliveries() -> int:
    with all_tenants():
        return WebhookDelivery.objects.count()


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize("debug", [False, True])
def test_deeply_nested_json_is_a_400_never_an_error_page(url, debug):
    client = Client(raise_request_exception=False)
    with override_settings(DEBUG=debug):
        response = client.post(url, data=b"[" * 50_000, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["message"] == "the body is not valid JSON"
    assert deliveries() == 0


@pytest.mark.parametrize("url", URLS)
def test_a_body_over_the_cap_is_refused_before_parsing(url):
    client = Client(raise_request_exception=False)
    with override_settings(TKERP_WEBHOOK_MAX_BYTES=1024):
        response = client.post(
            url, data=b'{"a": "' + b"x" * 2000 + b'"}', content_type="application/json"
        )
    assert response.status_code == 413
    assert deliveries() == 0


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize("body", [b"\xff\xfe not utf-8", b"{unquoted: 1}", b"", b"[1, 2]"])
def test_garbage_is_a_400(url, body):
    response = Client(raise_request_exception=False).post(
        url, data=body, content_type="application/json"
    )
    assert response.status_code == 400
