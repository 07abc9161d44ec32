"""The logistics back office: tenant A never reaches tenant B; lists stay free of N+1."""

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from logistics.admin import carrier_rule_summary
from logistics.models import Carrier, CarrierRule, CarrierService, Provider, Shipment, ShipmentLine
from tests.factories import (
    CarrierRuleFactory,
    CarrierServiceFactory,
    OrderLineFactory,
    ProviderFactory,
    ShipmentFactory,
    ShopFactory,
    SupplierFactory,
)
from tests.inventory.helpers import (
    admin_export,
    admin_import,
    admin_url,
    assert_no_foreign_choices,
    messages_of,
)
from tkerp.tenancy import tenant_context

pytestmark = pytest.mark.django_db

ADMINS = [Carrier, CarrierService, CarrierRule, Provider, Shipment]


def world_object(world, model):
    return world[model._meta.model_name]


@pytest.mark.parametrize("model", ADMINS, ids=lambda m: m.__name__)
class TestTenantIsolation:
    def test_changelist_never_shows_the_other_tenant(self, model, client_a, world_a, world_b):
        response = client_a.get(admin_url(model, "changelist"))

        assert response.status_code == 200
        shown = {obj.pk for obj in response.context["cl"].result_list}
        assert world_object(world_a, model).pk in shown
        assert world_object(world_b, model).pk not in shown
        assert "BRAVO" not in response.content.decode()

    def test_search_does_not_reach_the_other_tenant(self, model, client_a, world_a, world_b):
        response = client_a.get(admin_url(model, "changelist"), {"q": "BRAVO"})

        assert response.status_code == 200
        assert list(response.context["cl"].result_list) == []

    @pytest.mark.parametrize("action", ["change", "delete", "history"])
    def test_other_tenants_object_pages_do_not_exist(
        self, model, action, client_a, world_a, world_b
    ):
        own = client_a.get(admin_url(model, action, world_object(world_a, model).pk))
        theirs = client_a.get(admin_url(model, action, world_object(world_b, model).pk))

        assert own.status_code == 200
        assert theirs.status_code == 302
        assert any("doesn\u2019t exist" in message for message in messages_of(theirs))

    def test_change_page_offers_only_own_choices(self, model, client_a, tenant_a, world_a, world_b):
        response = client_a.get(admin_url(model, "change", world_object(world_a, model).pk))

        assert response.status_code == 200
        tenant_b = world_b["carrier"].tenant
        assert_no_foreign_choices(response.context["adminform"].form, tenant_b)
        with tenant_context(tenant_a):
            for inline in response.context["inline_admin_formsets"]:
                assert_no_foreign_choices(inline.formset.empty_form, tenant_b)
        assert "BRAVO" not in response.content.decode()


@pytest.mark.parametrize("term", ["", "ALPHA", "BRAVO"])
def test_provider_supplier_autocomplete_offers_only_own_rows(term, client_a, world_a, world_b):
    response = client_a.get(
        reverse("admin:autocomplete"),
        {
            "app_label": "logistics",
            "model_name": "provider",
            "field_name": "supplier",
            "term": term,
        },
    )

    assert response.status_code == 200
    offered = {row["id"] for row in response.json()["results"]}
    assert str(world_b["provider"].supplier_id) not in offered
    if term != "BRAVO":
        assert str(world_a["provider"].supplier_id) in offered


def test_another_tenants_service_cannot_be_posted_on_a_rule(client_a, world_a, world_b):
    response = client_a.post(
        admin_url(CarrierRule, "add"),
        {
            "name": "Sneaky",
            "priority": 1,
            "is_active": "on",
            "service": world_b["carrierservice"].pk,
        },
    )

    assert response.status_code == 200
    assert "service" in response.context["adminform"].form.errors
    assert not CarrierRule._base_manager.filter(name="Sneaky").exists()


class TestCarrierRuleAdmin:
    def changelist_post(self, client, forms: list[dict]):
        data = {
            "form-TOTAL_FORMS": len(forms),
            "form-INITIAL_FORMS": len(forms),
            "form-MIN_NUM_FORMS": 0,
            "form-MAX_NUM_FORMS": 1000,
            "_save": "Save",
        }
        for index, form in enumerate(forms):
            data.update({f"form-{index}-{key}": value for key, value in form.items()})
        return client.post(admin_url(CarrierRule, "changelist"), data)

    def test_priority_and_active_are_edited_in_the_list(self, client_a, world_a):
        rule = world_a["carrierrule"]

        response = self.changelist_post(client_a, [{"id": rule.pk, "priority": 5}])

        assert response.status_code == 302
        rule.refresh_from_db()
        assert (rule.priority, rule.is_active) == (5, False)

    def test_list_edit_cannot_reach_another_tenants_rule(self, client_a, world_a, world_b):
        theirs = world_b["carrierrule"]
        before = (theirs.priority, theirs.is_active)

        self.changelist_post(client_a, [{"id": theirs.pk, "priority": 1, "is_active": "on"}])

        theirs.refresh_from_db()
        assert (theirs.priority, theirs.is_active) == before

    def test_rules_are_listed_by_priority(self, client_a, tenant_a):
        service = CarrierServiceFactory(tenant=tenant_a)
        for name, priority in [("late", 30), ("first", 10), ("middle", 20)]:
            CarrierRuleFactory(tenant=tenant_a, name=name, priority=priority, service=service)

        response = client_a.get(admin_url(CarrierRule, "changelist"))

        assert [rule.name for rule in response.context["cl"].result_list] == [
            "first",
            "middle",
            "late",
        ]

    def test_conditions_summary(self, tenant_a):
        rule = CarrierRuleFactory.build(
            tenant=tenant_a,
            shop=ShopFactory(tenant=tenant_a, name="Main"),
            min_total=Decimal("10.00"),
            max_total=None,
            max_weight_grams=500,
            countries="US,CA",
            tag="vip",
        )
        assert carrier_rule_summary(rule) == "shop Main; total ≥ 10.00; weight ≤ 500 g; " + (
            "country US,CA; tag vip"
        )
        assert carrier_rule_summary(CarrierRuleFactory.build(tenant=tenant_a)) == "any order"

    def test_export_holds_only_own_rules(self, client_a, world_a, world_b):
        rows = admin_export(client_a, CarrierRule)

        assert [(row["name"], row["carrier"], row["service"]) for row in rows] == [
            ("ALPHA rule", "ALPHA-CAR", "ALPHA-SVC")
        ]

    def test_import_lands_in_the_own_tenant_even_with_a_shared_name(
        self, client_a, tenant_a, world_a, world_b
    ):
        CarrierRuleFactory(tenant=world_b["carrier"].tenant, name="Heavy", priority=7)

        response = admin_import(
            client_a, CarrierRule, "name,priority,carrier,service\nHeavy,3,ALPHA-CAR,ALPHA-SVC"
        )

        assert response.status_code == 302
        mine = CarrierRule._base_manager.get(tenant=tenant_a, name="Heavy")
        assert (mine.priority, mine.service) == (3, world_a["carrierservice"])
        theirs = CarrierRule._base_manager.get(tenant=world_b["carrier"].tenant, name="Heavy")
        assert theirs.priority == 7


class TestShipmentAdmin:
    def test_line_choices_are_the_shipments_own_order_lines(self, client_a, tenant_a, world_a):
        other_order_line = OrderLineFactory(order__tenant=tenant_a)

        response = client_a.get(admin_url(Shipment, "change", world_a["shipment"].pk))

        inline = next(
            i for i in response.context["inline_admin_formsets"] if i.opts.model is ShipmentLine
        )
        with tenant_context(tenant_a):
            offered = set(inline.formset.empty_form.fields["order_line"].queryset)
        assert offered == {world_a["orderline"]}
        assert other_order_line not in offered

    def test_filters_and_search(self, client_a, world_a):
        by_status = client_a.get(admin_url(Shipment, "changelist"), {"status": "pending"})
        by_order = client_a.get(admin_url(Shipment, "changelist"), {"q": "ALPHA-ORDER"})
        by_tracking = client_a.get(admin_url(Shipment, "changelist"), {"q": "ALPHA-TRK"})
        by_carrier = client_a.get(
            admin_url(Shipment, "changelist"),
            {"service__carrier__id__exact": world_a["carrier"].pk},
        )

        for response in (by_status, by_order, by_tracking, by_carrier):
            assert list(response.context["cl"].result_list) == [world_a["shipment"]]


def _changelist_queries(client, model) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(admin_url(model, "changelist"))
    assert response.status_code == 200
    return len(queries)


ROW_BUILDERS = {
    Shipment: lambda tenant: ShipmentFactory(
        order__tenant=tenant, provider=ProviderFactory(tenant=tenant)
    ),
    CarrierRule: lambda tenant: CarrierRuleFactory(tenant=tenant, shop=ShopFactory(tenant=tenant)),
    CarrierService: lambda tenant: CarrierServiceFactory(tenant=tenant),
    Provider: lambda tenant: ProviderFactory(
        tenant=tenant, supplier=SupplierFactory(tenant=tenant)
    ),
}


@pytest.mark.parametrize("model", ROW_BUILDERS, ids=lambda m: m.__name__)
def test_changelist_queries_do_not_grow_with_rows(
    model, client_a, tenant_a, django_assert_max_num_queries
):
    for _ in range(2):
        ROW_BUILDERS[model](tenant_a)
    few = _changelist_queries(client_a, model)
    for _ in range(10):
        ROW_BUILDERS[model](tenant_a)

    with django_assert_max_num_queries(few):
        response = client_a.get(admin_url(model, "changelist"))
    assert len(response.context["cl"].result_list) == 12
