"""A provider's scorecard over 7 and 30 days, computed in SQL, on the provider's admin page."""

from datetime import timedelta

import pytest
from django.utils import timezone

from logistics.models import Provider
from logistics.scorecards import provider_scorecard, provider_tracking_invalid_record
from tests.factories import ProviderFactory, ShipmentFactory
from tests.orders.admin_helpers import admin_url, assert_not_found
from tkerp.tenancy import tenant_context

pytestmark = pytest.mark.django_db


def percentile_cont(values, fraction):
    """PostgreSQL's percentile_cont: linear interpolation between the closest ranks."""
    values = sorted(values)
    position = fraction * (len(values) - 1)
    low = int(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)


@pytest.fixture
def now():
    return timezone.now()


@pytest.fixture
def provider(tenant_a, tenant_b, now):
    provider = ProviderFactory(tenant=tenant_a, name="Eastline 3PL")
    day_ago = now - timedelta(days=1)

    def parcel(dispatched, ack=None, shipped=None, rejected=None, owner=provider):
        def minutes(value):
            return None if value is None else dispatched + timedelta(minutes=value)

        return ShipmentFactory(
            tenant=owner.tenant,
            order__tenant=owner.tenant,
            provider=owner,
            status="shipped" if shipped is not None else "confirmed",
            dispatched_at=dispatched,
            acknowledged_at=minutes(ack),
            shipped_at=minutes(shipped),
            rejected_at=minutes(rejected),
        )

    parcel(day_ago, ack=10, shipped=100)
    parcel(day_ago, ack=20, shipped=130)
    parcel(day_ago, ack=30, shipped=150)  # exactly on both deadlines: not late
    parcel(day_ago, ack=60)  # acknowledged late, never shipped: late
    parcel(day_ago, rejected=5)
    invalid = parcel(day_ago, ack=15, shipped=90)
    with tenant_context(tenant_a):
        provider_tracking_invalid_record(shipment=invalid, tracking_number="1Z123", reason="x")
    parcel(now - timedelta(days=20), ack=40, shipped=200)  # the 30-day window only: late
    parcel(now - timedelta(days=40), ack=500)  # outside both windows
    # Another provider's and another tenant's parcels count for them only.
    parcel(day_ago, ack=900, owner=ProviderFactory(tenant=tenant_a))
    parcel(day_ago, ack=900, owner=ProviderFactory(tenant=tenant_b))
    return provider


def test_the_7_day_figures(provider, now):
    card = provider_scorecard(provider=provider, days=7, now=now)
    assert card.parcels == 6
    assert card.acknowledge_median_minutes == 20
    assert card.acknowledge_p95_minutes == round(percentile_cont([10, 15, 20, 30, 60], 0.95), 1)
    assert card.ship_median_minutes == 115
    assert card.ship_p95_minutes == round(percentile_cont([90, 100, 130, 150], 0.95), 1)
    assert card.rejected_percent == 16.7
    assert card.invalid_tracking_percent == 16.7
    assert card.late_percent == 16.7


def test_the_30_day_figures(provider, now):
    card = provider_scorecard(provider=provider, days=30, now=now)
    assert card.parcels == 7
    assert card.acknowledge_median_minutes == 25
    assert card.late_percent == round(100 * 2 / 7, 1)


def test_a_provider_with_no_parcels_has_blank_figures(tenant_a):
    card = provider_scorecard(provider=ProviderFactory(tenant=tenant_a), days=7)
    assert card.parcels == 0 and card.acknowledge_median_minutes is None
    assert card.late_percent is None


def test_the_provider_page_shows_it_to_its_tenant_only(provider, client_a, client_b):
    page = client_a.get(admin_url(Provider, "change", provider.pk))
    assert page.status_code == 200
    html = page.content.decode()
    assert "last 7 days" in html and "last 30 days" in html
    assert "16.7 %" in html and "115 min" in html
    assert_not_found(client_b, admin_url(Provider, "change", provider.pk))
