"""CSV import/export of carrier rules: by name, service by carrier + service code, one tenant."""

from decimal import Decimal

import pytest

from logistics.models import CarrierRule
from logistics.resources import CarrierRuleResource
from tests.factories import (
    CarrierFactory,
    CarrierRuleFactory,
    CarrierServiceFactory,
    ShopFactory,
)
from tests.inventory.helpers import csv_dataset, csv_rows
from tkerp.tenancy import tenant_context

pytestmark = pytest.mark.django_db

HEADER = "name,priority,is_active,carrier,service,shop,min_total,max_weight_grams,countries,tag"


def run_import(tenant, text: str):
    with tenant_context(tenant):
        return CarrierRuleResource(tenant=tenant).import_data(csv_dataset(text))


def run_export(tenant) -> list[dict]:
    with tenant_context(tenant):
        return csv_rows(CarrierRuleResource(tenant=tenant).export().csv)


def problems(result):
    return [(row.number, set(row.error_dict)) for row in result.invalid_rows]


def errors_of(result, row: int, column: str) -> str:
    return " ".join(next(r for r in result.invalid_rows if r.number == row).error_dict[column])


@pytest.fixture
def carriers(tenant_a):
    usps = CarrierFactory(tenant=tenant_a, code="usps")
    ups = CarrierFactory(tenant=tenant_a, code="ups")
    return {
        "usps-ground": CarrierServiceFactory(tenant=tenant_a, carrier=usps, code="ground"),
        "ups-ground": CarrierServiceFactory(tenant=tenant_a, carrier=ups, code="ground"),
        "ups-air": CarrierServiceFactory(tenant=tenant_a, carrier=ups, code="2day"),
    }


def test_import_picks_the_service_by_carrier_and_service_code(tenant_a, carriers):
    ShopFactory(tenant=tenant_a, name="TikTok US")

    result = run_import(
        tenant_a,
        f"""
{HEADER}
Light parcels,10,1,usps,ground,,,500,US,
Big spenders,5,1,ups,2day,TikTok US,100.00,,,vip
Everything else,99,1,ups,ground,,,,,
""",
    )

    assert not result.has_errors() and not result.has_validation_errors(), problems(result)
    rules = {rule.name: rule for rule in CarrierRule._base_manager.filter(tenant=tenant_a)}
    assert rules["Light parcels"].service == carriers["usps-ground"]
    assert rules["Light parcels"].shop is None
    assert rules["Light parcels"].max_weight_grams == 500
    assert rules["Big spenders"].service == carriers["ups-air"]
    assert rules["Big spenders"].shop.name == "TikTok US"
    assert rules["Big spenders"].min_total == Decimal("100.00")
    assert rules["Everything else"].service == carriers["ups-ground"]


def test_import_updates_by_name_and_never_touches_another_tenant(tenant_a, tenant_b, carriers):
    mine = CarrierRuleFactory(tenant=tenant_a, name="Heavy", priority=50)
    theirs_service = CarrierServiceFactory(
        tenant=tenant_b, carrier=CarrierFactory(tenant=tenant_b, code="ups"), code="ground"
    )
    theirs = CarrierRuleFactory(tenant=tenant_b, name="Heavy", priority=7, service=theirs_service)

    result = run_import(tenant_a, "name,priority,carrier,service\nHeavy,3,ups,ground")

    assert not result.has_validation_errors(), problems(result)
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert (mine.priority, mine.service) == (3, carriers["ups-ground"])
    assert (theirs.priority, theirs.service) == (7, theirs_service)
    assert CarrierRule._base_manager.filter(name="Heavy").count() == 2


def test_bad_rows_are_named_and_nothing_is_written(tenant_a, tenant_b, carriers):
    CarrierServiceFactory(
        tenant=tenant_b, carrier=CarrierFactory(tenant=tenant_b, code="dhl"), code="express"
    )
    ShopFactory(tenant=tenant_b, name="Bravo shop")

    result = run_import(
        tenant_a,
        """
name,priority,carrier,service,shop,min_total,max_total
Good one,1,usps,ground,,,
Foreign carrier,2,dhl,express,,,
Unknown service,3,ups,overnight,,,
No carrier,4,,ground,,,
Foreign shop,5,usps,ground,Bravo shop,,
Upside down,6,usps,ground,,50,10
Also good,7,ups,ground,,,
""",
    )

    assert problems(result) == [
        (2, {"service"}),
        (3, {"service"}),
        (4, {"service"}),
        (5, {"shop"}),
        (6, {"__all__"}),
    ]
    assert "No carrier with code “dhl” (column carrier)" in errors_of(result, 2, "service")
    assert "“ups” has no service with code “overnight”" in errors_of(result, 3, "service")
    assert "Fill in the carrier column" in errors_of(result, 4, "service")
    assert "No shop with name “Bravo shop”" in errors_of(result, 5, "shop")
    assert "Minimum total must not exceed maximum total." in errors_of(result, 6, "__all__")
    assert not CarrierRule._base_manager.exists()


def test_export_holds_only_own_rules_by_natural_keys(tenant_a, tenant_b, carriers):
    CarrierRuleFactory(
        tenant=tenant_a,
        name="Light",
        priority=10,
        service=carriers["usps-ground"],
        shop=ShopFactory(tenant=tenant_a, name="Main"),
        countries="US",
    )
    CarrierRuleFactory(tenant=tenant_b, name="BRAVO rule")

    rows = run_export(tenant_a)

    assert len(rows) == 1
    assert {k: rows[0][k] for k in ("name", "priority", "carrier", "service", "shop")} == {
        "name": "Light",
        "priority": "10",
        "carrier": "usps",
        "service": "ground",
        "shop": "Main",
    }
    assert not {"id", "tenant"} & set(rows[0])


@pytest.mark.parametrize("prefix", ["=", "+", "-", "@"])
def test_export_neutralises_formulas(tenant_a, carriers, prefix):
    CarrierRuleFactory(
        tenant=tenant_a, name=f"{prefix}cmd|' /C calc'!A0", service=carriers["ups-air"], tag="ok"
    )

    rows = run_export(tenant_a)

    assert rows[0]["name"] == f"'{prefix}cmd|' /C calc'!A0"
    assert rows[0]["tag"] == "ok"


def test_an_export_reimports_as_no_change(tenant_a, carriers):
    CarrierRuleFactory(tenant=tenant_a, name="=Odd name", priority=4, service=carriers["ups-air"])
    exported = "\n".join(
        ",".join(f'"{value}"' for value in row.values()) for row in run_export(tenant_a)
    )
    header = ",".join(run_export(tenant_a)[0].keys())

    result = run_import(tenant_a, f"{header}\n{exported}")

    assert not result.has_validation_errors(), problems(result)
    assert [row.import_type for row in result.rows] == ["skip"]
    assert CarrierRule._base_manager.get().name == "=Odd name"
