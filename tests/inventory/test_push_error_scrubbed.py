"""A platform's per-SKU error on an availability push is stored and shown only scrubbed."""

import httpx
from django.utils import timezone

from inventory.models import InventoryPush, Listing, Sku
from inventory.push import push_pending
from inventory.stock import stock_count
from sandbox.base import reset_rate_limits
from shops.platforms.http import sandbox_transport
from tests.e2e.helpers import connect_shop
from tests.factories import WarehouseFactory
from tkerp.tenancy import tenant_context

TOKEN = "EZAKfedcba9876543210leakedTOKEN42"


def test_a_per_sku_push_error_is_scrubbed_where_it_is_stored(tenant_a, settings, monkeypatch):
    settings.TKERP_HTTP_BACKOFF_BASE = 0.01
    reset_rate_limits()
    shop, _ = connect_shop(tenant_a, "ebay", sku_codes=("MUG-01",))
    with tenant_context(tenant_a):
        stock_count(
            sku=Sku._base_manager.get(tenant=tenant_a, code="MUG-01"),
            warehouse=WarehouseFactory(tenant=tenant_a, code="MAIN"),
            counted=20,
            user=None,
        )
    real = sandbox_transport()

    def upstream(request):
        if request.url.path.endswith("/bulk_update_price_quantity"):
            sku = Listing._base_manager.get(shop=shop).platform_sku_id
            message = f"Invalid request\n<html>dump access_token={TOKEN}</html>"
            return httpx.Response(
                207,
                json={
                    "responses": [
                        {
                            "sku": sku,
                            "statusCode": 400,
                            "errors": [{"errorId": 25001, "longMessage": message}],
                        }
                    ]
                },
            )
        return real.handle_request(request)

    monkeypatch.setattr(
        "shops.platforms.http.sandbox_transport", lambda: httpx.MockTransport(upstream)
    )
    Listing._base_manager.filter(shop=shop).update(
        push_due_at=timezone.now(), published_quantity=999
    )
    with tenant_context(tenant_a):
        summary = push_pending(shop=shop, force=True)
    stored = list(
        InventoryPush._base_manager.filter(listing__shop=shop).values_list("error", flat=True)
    )
    assert summary.failed == 1 and any("Invalid request" in text for text in stored)
    for text in [*stored, *summary.errors]:
        assert TOKEN not in text and "\n" not in text, text
