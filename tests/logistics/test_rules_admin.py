"""The carrier rules' back office: the rule form's new conditions, validation and hits, the
import form's preview window, and the shipping policy (packaging allowance): one row per tenant,
created on demand, another tenant's row does not exist for you."""

from decimal import Decimal

import pytest

from logistics.admin import carrier_rule_summary
from logistics.models import CarrierRule, ShippingPolicy
from logistics.resources import CarrierRuleResource
from logistics.rules import packaging_allowance_get
from shops.models import Platform
from tests.factories import CarrierRuleFactory, CarrierServiceFactory, ShopFactory
from tests.inventory.helpers import csv_dataset
from tests.orders.admin_helpers import admin_url, assert_not_found, changelist_pks
from tkerp.tenancy import tenant_context

pytestmark = pytest.mark.django_db


def test_the_list_creates_the_tenants_row_and_shows_only_it(client_a, tenant_a, tenant_b):
    theirs = ShippingPolicy._base_manager.create(tenant=tenant_b, packaging_allowance_grams=500)

    shown = changelist_pks(client_a, ShippingPolicy)

    mine = ShippingPolicy._base_manager.get(tenant=tenant_a)
    assert shown == {mine.pk}
    assert theirs.pk not in shown


@pytest.mark.parametrize("view", ["change", "history"])
def test_another_tenants_policy_does_not_exist(client_a, tenant_b, view):
    theirs = ShippingPolicy._base_manager.create(tenant=tenant_b)

    assert_not_found(client_a, admin_url(ShippingPolicy, view, theirs.pk))


def test_the_allowance_is_edited_and_used(client_a, tenant_a, settings):
    settings.TKERP_PACKAGING_ALLOWANCE_GRAMS = 60
    changelist_pks(client_a, ShippingPolicy)
    mine = ShippingPolicy._base_manager.get(tenant=tenant_a)
    url = admin_url(ShippingPolicy, "change", mine.pk)
    assert "60 g" in client_a.get(url).content.decode()  # the default in use

    response = client_a.post(url, {"packaging_allowance_grams": "140", "_save": "Save"})

    assert response.status_code == 302
    assert packaging_allowance_get(tenant=tenant_a) == 140
    assert client_a.get(admin_url(ShippingPolicy, "delete", mine.pk)).status_code == 403


# --- carrier rules -------------------------------------------------------------------------------


def test_the_summary_names_the_new_conditions(tenant_a):
    rule = CarrierRuleFactory.build(
        tenant=tenant_a,
        platform=Platform.AMAZON,
        min_total=Decimal("10.00"),
        min_items=2,
        max_items=3,
        postal_prefixes="900,901",
    )
    assert carrier_rule_summary(rule) == ("platform Amazon; total ≥ 10.00; items 2-3; ZIP 900,901")


def test_the_change_form_offers_preview_and_shows_hits(client_a, tenant_a):
    rule = CarrierRuleFactory(tenant=tenant_a, hit_count=41)

    page = client_a.get(admin_url(CarrierRule, "change", rule.pk))

    content = page.content.decode()
    assert 'name="_preview"' in content and 'name="preview_days"' in content
    assert "41" in content
    listing = client_a.get(admin_url(CarrierRule, "changelist")).content.decode()
    assert "41" in listing


def rule_post(service, **fields):
    return {"name": "Rule", "priority": "1", "is_active": "on", "service": service.pk, **fields}


@pytest.mark.parametrize(
    "fields, field, message",
    [
        ({"countries": "US,USA"}, "countries", "“USA” is not a two-letter ISO country code"),
        ({"states": "ca;tx"}, "states", "“ca;tx” is not a state code"),
        ({"postal_prefixes": "900, 9*"}, "postal_prefixes", "“9*” is not the beginning of a"),
        ({"min_items": "4", "max_items": "2"}, "__all__", "Minimum items must not exceed"),
    ],
)
def test_bad_conditions_are_named(client_a, tenant_a, fields, field, message):
    service = CarrierServiceFactory(tenant=tenant_a)

    response = client_a.post(admin_url(CarrierRule, "add"), rule_post(service, **fields))

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert message in " ".join(errors[field])
    assert not CarrierRule._base_manager.filter(name="Rule").exists()


def test_a_shop_on_another_platform_is_refused(client_a, tenant_a):
    service = CarrierServiceFactory(tenant=tenant_a)
    shop = ShopFactory(tenant=tenant_a, platform=Platform.TIKTOK)

    response = client_a.post(
        admin_url(CarrierRule, "add"),
        rule_post(service, shop=shop.pk, platform=Platform.EBAY),
    )

    assert "never match" in " ".join(response.context["adminform"].form.errors["platform"])


def test_the_new_columns_import_and_a_bad_country_is_reported(tenant_a):
    CarrierServiceFactory(
        tenant=tenant_a, carrier__tenant=tenant_a, carrier__code="ups", code="ground"
    )
    text = """
name,priority,carrier,service,platform,postal_prefixes,min_items,max_items,package_type,countries
Small LA,5,ups,ground,tiktok,900,1,2,SoftPack,US
Typo,6,ups,ground,,,,,,USA
"""
    with tenant_context(tenant_a):
        result = CarrierRuleResource(tenant=tenant_a).import_data(csv_dataset(text))

    assert [(row.number, set(row.error_dict)) for row in result.invalid_rows] == [
        (2, {"countries"})
    ]
    assert not CarrierRule._base_manager.filter(tenant=tenant_a).exists()  # all or nothing
    with tenant_context(tenant_a):
        result = CarrierRuleResource(tenant=tenant_a).import_data(
            csv_dataset(text.replace("USA", "MX"))
        )
    assert not result.has_validation_errors()
    rule = CarrierRule._base_manager.get(tenant=tenant_a, name="Small LA")
    assert (rule.platform, rule.postal_prefixes, rule.min_items, rule.max_items) == (
        "tiktok",
        "900",
        1,
        2,
    )
    assert rule.package_type == "SoftPack"


def test_the_import_form_has_the_preview_window(client_a):
    page = client_a.get(admin_url(CarrierRule, "import"))

    assert "preview_days" in page.context["form"].fields
