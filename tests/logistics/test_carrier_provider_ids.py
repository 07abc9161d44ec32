"""A carrier's platform shipping-provider ids are an object of platform code to id: anything else
is a form error on the carrier page, never an error page, and never a carrier whose parcels the
tracking write-back could not send."""

import pytest
from django.test import Client

from logistics.models import Carrier
from tests.orders.admin_helpers import admin_url

pytestmark = pytest.mark.django_db


def carrier_form(ids: str) -> dict:
    return {
        "code": "zz",
        "name": "ZZ Express",
        "platform_provider_ids": ids,
        "is_active": "on",
        "services-TOTAL_FORMS": "0",
        "services-INITIAL_FORMS": "0",
    }


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        ('{"tiktok": "\\u0000"}', "short id"),
        ('{"tiktok": 1e999}', "short id"),
        ('{"tiktok": {"id": "1"}}', "short id"),
        ('{"tiktok": true}', "short id"),
        ('{"tiktoc": "7117858858072016686"}', "not a platform code"),
        ('"\\ud800"', "object of platform code"),
        ('["7117858858072016686"]', "object of platform code"),
    ],
)
def test_a_bad_shape_is_a_form_error(user_a, ids, message):
    client = Client(raise_request_exception=False)
    client.force_login(user_a)
    response = client.post(admin_url(Carrier, "add"), carrier_form(ids))
    assert response.status_code == 200
    assert message in response.content.decode(errors="replace")
    assert not Carrier._base_manager.filter(code="zz").exists()


def test_ids_of_known_platforms_are_kept(user_a, tenant_a):
    client = Client()
    client.force_login(user_a)
    response = client.post(
        admin_url(Carrier, "add"), carrier_form('{"tiktok": "7117858858072016686", "ebay": 42}')
    )
    assert response.status_code == 302
    carrier = Carrier._base_manager.get(tenant=tenant_a, code="zz")
    assert carrier.platform_provider_ids == {"tiktok": "7117858858072016686", "ebay": 42}


@pytest.mark.django_db(transaction=True)
def test_a_carrier_saved_with_another_shape_before_validation_does_not_stop_the_write_back(
    tenant_a,
):
    """Rows older than the validator may hold a list: the write-back sends without a provider
    id (Shopify needs none) instead of failing on every parcel of the carrier."""
    from logistics.tracking import shipment_tracking_accept
    from tests.logistics.test_tracking_writeback import parcels_of, push, usps, world_for

    shop, store = world_for(tenant_a, "shopify")
    (parcel,) = parcels_of(shop, store)
    shipment_tracking_accept(parcel, tracking_number=usps(301), carrier_code="usps", source="csv")
    parcel.refresh_from_db()
    Carrier._base_manager.filter(pk=parcel.carrier_id).update(
        platform_provider_ids=["7117858858072016686"]
    )
    assert push(shop).sent == 1
