"""The label service's own error text reaches an admin message only scrubbed: one line, no
URL query string, no token (`LabelError`, as `PlatformError` does for platforms)."""

import httpx
import pytest
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


@pytest.mark.django_db
def test_a_malformed_purchase_answer_fails_the_parcel_with_a_clear_reason(
    tenant_a, settings, tmp_path, monkeypatch
):
    """The service sells the label but its answers are not the documented shape (no label URL,
    then a conversion answer without `postage_label`; or no shipment id): the parcel fails with
    a reason saying so, not "unexpected error (see the log)"."""
    from logistics.labels.base import LabelError
    from logistics.labels.store import shipment_label_buy

    settings.MEDIA_ROOT = tmp_path
    reset_rate_limits()
    world = label_world(tenant_a)
    parcels = [world.parcel("usps"), world.parcel("usps")]
    no_id = {"postage_label": {"label_pdf_url": None}, "selected_rate": {"rate": "1.00"}}

    def answer(request):
        if request.url.path.endswith("/carrier_accounts"):
            return httpx.Response(200, json=[{"id": "ca_1", "readable": "USPS"}])
        if request.url.path.endswith("/label"):
            return httpx.Response(200, json={"id": "shp_1"})
        if parcels[0].reference in request.content.decode():
            return httpx.Response(201, json={"id": "shp_1", **no_id})
        return httpx.Response(201, json=no_id)

    monkeypatch.setattr(
        "shops.platforms.http.sandbox_transport", lambda: httpx.MockTransport(answer)
    )

    for parcel in parcels:
        with pytest.raises(LabelError) as refused:
            shipment_label_buy(shipment=parcel)
        assert refused.value.code == "response"
        assert "label service answered without" in refused.value.reason
