"""The label service's own error text reaches an admin message only scrubbed: one line, no
URL query string, no token (`LabelError`, as `PlatformError` does for platforms)."""

import httpx
from django.contrib.messages import get_messages

from logistics.models import Shipment
from sandbox.base import reset_rate_limits
from tests.logistics.labels_helpers import label_world
from tests.orders.admin_helpers import admin_url

TOKEN = "EZAKfedcba9876543210leakedTOKEN42"


def test_the_label_services_error_text_is_scrubbed_before_it_is_shown(
    tenant_a, client_a, settings, tmp_path, monkeypatch
):
    settings.MEDIA_ROOT = tmp_path
    reset_rate_limits()
    parcel = label_world(tenant_a).parcel("usps")
    body = {
        "error": {
            "code": "SHIPMENT.INVALID_PARAMS",
            "message": f"bad request\nsee https://api.easypost.com/v2/x?api_key={TOKEN}",
            "errors": [f"<html>dump {TOKEN}</html>", {"field": "weight", "message": "too heavy"}],
        }
    }
    monkeypatch.setattr(
        "shops.platforms.http.sandbox_transport",
        lambda: httpx.MockTransport(lambda request: httpx.Response(422, json=body)),
    )
    response = client_a.post(
        admin_url(Shipment, "changelist"),
        {"action": "compare_label_rates", "index": 0, "_selected_action": [str(parcel.pk)]},
    )
    shown = " ".join(str(message) for message in get_messages(response.wsgi_request))
    assert "label service refused" in shown and "bad request see https://api.easypost.com" in shown
    assert TOKEN not in shown and "\n" not in shown and "<html>" not in shown
