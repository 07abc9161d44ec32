"""The demo seeds the issue's own carrier rules, and its parcels carry exactly the services those
rules pick (the demo asks the real engine, not a copy of it)."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from logistics.models import CarrierRule
from logistics.rules import carrier_rules_load, rules_dry_run
from shops.demo import DEMO_TENANTS
from shops.models import Tenant

pytestmark = pytest.mark.django_db


def test_the_demo_rules_are_the_issues_example_and_pick_every_demo_parcels_service():
    # Seeded inside this test's transaction (rolled back), so nothing it makes outlives it.
    call_command("seed_demo", stdout=StringIO())

    for slug in [spec.slug for spec in DEMO_TENANTS]:
        tenant = Tenant.objects.get(slug=slug)
        rules = CarrierRule._base_manager.filter(tenant=tenant).order_by("priority")
        assert [(rule.priority, rule.name, str(rule.service)) for rule in rules] == [
            (10, "California: UPS Ground", "UPS Ground"),
            (20, "Over 2 kg: FedEx Home Delivery", "FedEx Home Delivery"),
            (30, "Under $10: USPS Ground Advantage", "USPS Ground Advantage"),
            (40, "Over $30: USPS Priority Mail", "USPS Priority Mail"),
            (100, "Everything else: USPS Ground Advantage", "USPS Ground Advantage"),
        ]

        summary = rules_dry_run(
            tenant=tenant,
            rules=carrier_rules_load(tenant=tenant),
            since=timezone.now() - timedelta(days=400),
        )

        assert summary.parcels > 100
        assert (summary.changed, summary.unmatched) == (0, 0), summary.changes[:3]
        taken = {effect.name: effect.parcels for effect in summary.rules}
        assert taken["California: UPS Ground"] > 0
        assert taken["Over $30: USPS Priority Mail"] > 0
        assert taken["Everything else: USPS Ground Advantage"] > 0
