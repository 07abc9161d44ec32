"""Project-wide guarantees: migrations are complete and every tenant-owned model is built right.

These walk the installed models, so a model added tomorrow is checked without a new test.
"""

from io import StringIO

import pytest
from django.apps import apps
from django.core.management import call_command
from django.db import models

from shops.models import Tenant
from tkerp.auth import DOMAIN_APPS
from tkerp.tenancy import TenantManager, TenantNotSet, TenantOwnedModel

TENANT_OWNED = sorted(
    (
        model
        for model in apps.get_models()
        if issubclass(model, TenantOwnedModel) and not model._meta.proxy
    ),
    key=lambda model: model._meta.label,
)


def label(model) -> str:
    return model._meta.label


@pytest.mark.django_db
def test_models_and_migrations_agree():
    out = StringIO()
    try:
        call_command("makemigrations", "--check", "--dry-run", stdout=out, stderr=out)
    except SystemExit:
        pytest.fail(f"models changed without a migration:\n{out.getvalue()}")


def test_the_domain_models_are_tenant_owned():
    labels = {label(model) for model in TENANT_OWNED}
    assert {
        "shops.Membership",
        "shops.Shop",
        "inventory.Sku",
        "inventory.StockLevel",
        "orders.Order",
        "orders.OrderLine",
        "logistics.Shipment",
        "logistics.CarrierRule",
    } <= labels


@pytest.mark.parametrize("model", TENANT_OWNED, ids=label)
class TestTenantOwnedModel:
    def test_has_a_required_tenant_foreign_key(self, model):
        tenant = model._meta.get_field("tenant")
        assert isinstance(tenant, models.ForeignKey)
        assert tenant.related_model is Tenant
        assert not tenant.null

    def test_every_unique_constraint_includes_the_tenant(self, model):
        for constraint in model._meta.constraints:
            if isinstance(constraint, models.UniqueConstraint):
                assert "tenant" in constraint.fields, f"{constraint.name} lacks tenant"
        for fields in model._meta.unique_together:
            assert "tenant" in fields, f"unique_together {fields} lacks tenant"

    def test_no_field_is_unique_across_tenants(self, model):
        # A one-to-one link to another tenant-owned row is unique within that row's tenant.
        # Except a random handle looked up before any tenant is known (an API key's prefix),
        # which the model names in `globally_unique_fields`: it tells nothing about a tenant.
        exempt = getattr(model, "globally_unique_fields", ())
        for field in model._meta.concrete_fields:
            if not field.unique or field.primary_key or field.name in exempt:
                continue
            assert isinstance(field, models.OneToOneField) and issubclass(
                field.related_model, TenantOwnedModel
            ), f"{field.name} is unique across all tenants"

    def test_default_manager_fails_closed(self, model):
        assert isinstance(model._default_manager, TenantManager)
        with pytest.raises(TenantNotSet):
            model._default_manager.all()


def test_rows_that_point_at_tenant_data_are_tenant_owned():
    """A model linking to a tenant's rows must carry the tenant itself, or scoping misses it."""
    leaks = []
    for app_label in DOMAIN_APPS:
        for model in apps.get_app_config(app_label).get_models():
            if issubclass(model, TenantOwnedModel):
                continue
            for field in model._meta.concrete_fields:
                if field.is_relation and issubclass(field.related_model, TenantOwnedModel):
                    leaks.append(f"{label(model)}.{field.name}")
    assert leaks == []
