"""Dry run of carrier rules before saving: what a proposed rule set would do to the parcels of
recent orders, from the function, the rule's change form ("Preview") and the import's confirm
page; nothing is written, and only the tenant's own parcels are read."""

from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.utils import timezone

from logistics.models import CarrierRule
from logistics.rules import rules_dry_run, shipments_rules_apply
from orders.models import Order
from tests.inventory.helpers import admin_import_confirm, admin_import_preview, admin_url
from tests.logistics.rules_world import ParcelMaker, demo_rule_set, labelled
from tests.orders.admin_helpers import assert_not_found

pytestmark = pytest.mark.django_db

CALIFORNIA = "California: UPS Ground"
ELSE = "Everything else: USPS Ground Advantage"
OVER_30 = "Over $30: USPS Priority Mail"


@pytest.fixture
def recent(tenant_a, tenant_b):
    """Tenant A's demo rules and parcels of recent orders, each with the service the rules gave
    it today; an old order's parcel; and tenant B's parcels (never read for A)."""
    rules = demo_rule_set(tenant_a)
    make = ParcelMaker(tenant_a)
    now = timezone.now()
    parcels = {
        "la": make(state="CA", city="Los Angeles", postal_code="90026", placed_at=now),
        "austin": make(total="20.00", placed_at=now - timedelta(days=2)),
        "dallas": make(total="45.00", city="Dallas", postal_code="75204", placed_at=now),
        "brooklyn": make(state="NY", city="Brooklyn", postal_code="11215", placed_at=now),
        "old": make(total="20.00", placed_at=now - timedelta(days=40)),
    }
    shipments_rules_apply(tenant=tenant_a, shipment_ids=[p.pk for p in parcels.values()])
    parcels["labelled"] = labelled(make, total="20.00", city="Houston", placed_at=now)
    CarrierRule._base_manager.filter(tenant=tenant_a).update(hit_count=0)
    demo_rule_set(tenant_b)
    their = ParcelMaker(tenant_b)
    for _ in range(3):
        their(total="20.00", placed_at=now)
    return {**rules, "parcels": parcels}


def proposed(tenant, **changes):
    """The tenant's rules, changed in memory: {rule name: {field: value}}."""
    rules = list(CarrierRule._base_manager.filter(tenant=tenant).select_related("service__carrier"))
    for rule in rules:
        for name, value in changes.get(rule.name, {}).items():
            setattr(rule, name, value)
    return rules


def since(days=30):
    return timezone.now() - timedelta(days=days)


def test_the_dry_run_counts_parcels_per_rule_changes_and_misses(tenant_a, recent):
    rules = proposed(tenant_a, **{CALIFORNIA: {"states": "CA,TX"}, ELSE: {"is_active": False}})

    summary = rules_dry_run(tenant=tenant_a, rules=rules, since=since())

    assert summary.parcels == 5  # not the old order's, not tenant B's
    assert {effect.name: effect.parcels for effect in summary.rules} == {
        CALIFORNIA: 4,
        "Over 2 kg: FedEx Home Delivery": 0,
        "Under $10: USPS Ground Advantage": 0,
        OVER_30: 0,
    }
    changed = {p.reference: (p.current, p.proposed, p.labelled) for p in summary.changes}
    parcels = recent["parcels"]
    assert changed == {
        parcels["austin"].reference: ("USPS Ground Advantage", "UPS Ground", False),
        parcels["dallas"].reference: ("USPS Priority Mail", "UPS Ground", False),
        parcels["labelled"].reference: ("", "UPS Ground", True),
    }
    assert summary.changed == 3
    assert [p.reference for p in summary.unmatched_parcels] == [parcels["brooklyn"].reference]
    assert summary.unmatched == 1
    assert "to Brooklyn NY 11215, US" in summary.unmatched_parcels[0].message
    # Nothing was written: not the rules, not the parcels, not the counters.
    california = CarrierRule._base_manager.get(tenant=tenant_a, name=CALIFORNIA)
    assert (california.states, california.hit_count) == ("CA", 0)


def test_the_dry_run_counts_skips_and_reads_only_the_window(tenant_a, recent):
    Order._base_manager.filter(pk=recent["parcels"]["la"].order_id).update(
        address_line1="PO Box 12"
    )

    summary = rules_dry_run(tenant=tenant_a, rules=proposed(tenant_a), since=since(days=1))

    assert summary.parcels == 4  # Austin (2 days ago) is outside the last day
    effects = {effect.name: effect for effect in summary.rules}
    assert (effects[CALIFORNIA].parcels, effects[CALIFORNIA].skipped) == (0, 1)
    assert effects[ELSE].parcels == 3  # the PO box, Brooklyn, and the labelled Houston parcel
    assert summary.changed == 2  # the PO box leaves UPS; Houston had no service


# --- the change form's Preview --------------------------------------------------------------------


def form_data(client, url: str) -> dict:
    """What the change form would post back unchanged."""
    form = client.get(url).context["adminform"].form
    data = {}
    for name in form.fields:
        value = form[name].value()
        if value is None or value is False:
            continue
        data[name] = "on" if value is True else value
    return data


def test_preview_shows_the_effect_and_saves_nothing(client_a, tenant_a, recent):
    rule = recent["rules"][CALIFORNIA]
    url = admin_url(CarrierRule, "change", rule.pk)
    data = {**form_data(client_a, url), "states": "CA,TX", "preview_days": "30"}

    response = client_a.post(url, {**data, "_preview": "Preview"})

    assert response.status_code == 200
    preview = response.context["rules_preview"]
    assert (preview.parcels, preview.changed, preview.unmatched) == (5, 3, 0)
    page = response.content.decode()
    assert 'id="rules-preview"' in page and 'name="_preview"' in page
    assert recent["parcels"]["dallas"].reference in page
    assert response.context["adminform"].form["states"].value() == "CA,TX"  # still editing
    rule.refresh_from_db()
    assert rule.states == "CA"
    assert not LogEntry.objects.exists()

    saved = client_a.post(url, {**data, "_save": "Save"})

    assert saved.status_code == 302
    rule.refresh_from_db()
    assert rule.states == "CA,TX"


def test_preview_of_a_new_rule_creates_nothing(client_a, tenant_a, recent):
    ups = recent["services"][("ups", "ground")]
    data = {
        "name": "New York: UPS Ground",
        "priority": "5",
        "is_active": "on",
        "service": ups.pk,
        "states": "NY",
        "preview_days": "30",
        "_preview": "Preview",
    }

    response = client_a.post(admin_url(CarrierRule, "add"), data)

    assert response.status_code == 200
    effects = {e.name: e.parcels for e in response.context["rules_preview"].rules}
    assert effects["New York: UPS Ground"] == 1
    assert not CarrierRule._base_manager.filter(name="New York: UPS Ground").exists()


def test_preview_window_is_a_form_field(client_a, recent):
    rule = recent["rules"][CALIFORNIA]
    url = admin_url(CarrierRule, "change", rule.pk)

    response = client_a.post(
        url, {**form_data(client_a, url), "preview_days": "1", "_preview": "Preview"}
    )

    assert response.context["rules_preview"].parcels == 4


def test_a_bad_form_shows_its_errors_instead_of_a_preview(client_a, recent):
    rule = recent["rules"][OVER_30]
    url = admin_url(CarrierRule, "change", rule.pk)
    data = {**form_data(client_a, url), "max_total": "5.00", "_preview": "Preview"}

    response = client_a.post(url, data)

    assert response.status_code == 200
    assert "rules_preview" not in response.context
    assert response.context["adminform"].form.errors
    rule.refresh_from_db()
    assert rule.max_total is None


def test_another_tenants_rule_cannot_be_previewed(client_a, tenant_b, recent):
    theirs = CarrierRule._base_manager.get(tenant=tenant_b, name=CALIFORNIA)
    url = admin_url(CarrierRule, "change", theirs.pk)

    response = client_a.post(url, {"name": "x", "priority": "1", "_preview": "Preview"})

    assert response.status_code == 302
    assert_not_found(client_a, url)
    theirs.refresh_from_db()
    assert theirs.name == CALIFORNIA


# --- the import's confirm page ---------------------------------------------------------------


def test_import_confirm_page_previews_the_imported_rules(client_a, tenant_a, recent):
    csv = "name,priority,is_active,carrier,service,states\nTexas: UPS Ground,5,1,ups,ground,TX"

    preview = admin_import_preview(client_a, CarrierRule, csv)

    assert preview.status_code == 200
    effect = preview.context["result"].rules_preview
    assert effect.parcels == 5  # tenant A's recent parcels only
    taken = {e.name: e.parcels for e in effect.rules}
    assert taken["Texas: UPS Ground"] == 3  # Austin, Dallas, Houston
    assert effect.changed == 3
    page = preview.content.decode()
    assert 'id="rules-preview"' in page and "Confirm import" in page
    assert not CarrierRule._base_manager.filter(name="Texas: UPS Ground").exists()

    admin_import_confirm(client_a, CarrierRule, preview)

    assert CarrierRule._base_manager.get(tenant=tenant_a, name="Texas: UPS Ground").states == "TX"


def test_an_import_with_errors_previews_nothing(client_a, recent):
    preview = admin_import_preview(
        client_a, CarrierRule, "name,priority,carrier,service\nBroken,5,ups,no-such-service"
    )

    assert getattr(preview.context["result"], "rules_preview", None) is None
    assert preview.context.get("confirm_form") is None
