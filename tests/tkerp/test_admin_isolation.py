"""Every tenant-owned model's admin, checked the same way: tenant A never reaches tenant B.

The test walks the admin registry, so a new admin is covered the moment it is registered (and
fails here until a factory for its model exists in tests/factories.py).
"""

import factory
import pytest
from django.contrib import admin
from django.contrib.messages import get_messages
from django.urls import reverse

from tests import factories
from tkerp.tenancy import TenantOwnedModel

TENANT_ADMINS = sorted(
    (
        (model, model_admin)
        for model, model_admin in admin.site._registry.items()
        if issubclass(model, TenantOwnedModel)
    ),
    key=lambda item: item[0]._meta.label,
)


def factory_for(model):
    factory = getattr(factories, f"{model.__name__}Factory", None)
    assert factory is not None, f"tests/factories.py needs a {model.__name__}Factory"
    return factory


def make(model, tenant):
    """A row of `tenant` whose parent rows are the tenant's too (the database's row-level
    security hides a row joined to another tenant's parent, as it should)."""
    factory_class = factory_for(model)
    parents = {
        f"{name}__tenant": tenant
        for name, declaration in factory_class._meta.declarations.items()
        if isinstance(declaration, factory.SubFactory)
        and issubclass(declaration.get_factory()._meta.model, TenantOwnedModel)
    }
    return factory_class(tenant=tenant, **parents)


def admin_url(model, action, *args):
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{action}", args=args)


def ids(model_list):
    return {obj.pk for obj in model_list}


def test_every_domain_model_has_a_tenant_scoped_admin():
    registered = {model for model, _ in TENANT_ADMINS}
    assert registered, "no tenant-owned admin registered"
    for model, model_admin in TENANT_ADMINS:
        assert hasattr(model_admin, "get_exclude") and "Tenant" in "".join(
            cls.__name__ for cls in type(model_admin).__mro__
        ), f"{model._meta.label} admin must derive from tkerp.admin"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("model", "model_admin"), TENANT_ADMINS, ids=[m._meta.label for m, _ in TENANT_ADMINS]
)
class TestTenantIsolation:
    def test_changelist_shows_only_own_rows(self, model, model_admin, client_a, tenant_a, tenant_b):
        mine, theirs = make(model, tenant_a), make(model, tenant_b)
        response = client_a.get(admin_url(model, "changelist"))
        assert response.status_code == 200
        shown = ids(response.context["cl"].result_list)
        assert mine.pk in shown
        assert theirs.pk not in shown

    def test_other_tenants_change_page_does_not_exist(self, model, model_admin, client_a, tenant_b):
        theirs = make(model, tenant_b)
        response = client_a.get(admin_url(model, "change", theirs.pk))
        if response.status_code == 404:
            # A page of its own (a job's progress page) answers 404, for a missing id too.
            assert client_a.get(admin_url(model, "change", theirs.pk + 10**6)).status_code == 404
            return
        assert response.status_code == 302
        assert any("doesn\u2019t exist" in str(m) for m in get_messages(response.wsgi_request))

    def test_other_tenants_delete_page_does_not_exist(self, model, model_admin, client_a, tenant_b):
        theirs = make(model, tenant_b)
        response = client_a.post(admin_url(model, "delete", theirs.pk), {"post": "yes"})
        if response.status_code == 403:
            # A read-only admin refuses every delete before any lookup: no existence oracle.
            assert not model_admin.has_delete_permission(response.wsgi_request)
        else:
            assert response.status_code == 302
            assert any("doesn\u2019t exist" in str(m) for m in get_messages(response.wsgi_request))
        assert model._base_manager.filter(pk=theirs.pk).exists()

    def test_bulk_action_cannot_touch_other_tenants_rows(
        self, model, model_admin, client_a, tenant_b
    ):
        theirs = make(model, tenant_b)
        client_a.post(
            admin_url(model, "changelist"),
            {"action": "delete_selected", "_selected_action": [theirs.pk], "post": "yes"},
        )
        assert model._base_manager.filter(pk=theirs.pk).exists()

    def test_foreign_key_choices_exclude_other_tenants(
        self, model, model_admin, client_a, tenant_a, tenant_b
    ):
        theirs = make(model, tenant_b)
        response = client_a.get(admin_url(model, "add"))
        if response.status_code == 403:
            pytest.skip("no add permission for this model (read-only admin)")
        assert response.status_code == 200
        form = response.context["adminform"].form
        assert "tenant" not in form.fields
        for name, field in form.fields.items():
            queryset = getattr(field, "queryset", None)
            if queryset is None or not issubclass(queryset.model, TenantOwnedModel):
                continue
            foreign = queryset.model._base_manager.filter(tenant=tenant_b)
            assert not set(queryset.values_list("pk", flat=True)) & set(
                foreign.values_list("pk", flat=True)
            ), f"{name} offers tenant B's rows"
        del theirs

    def test_autocomplete_never_offers_other_tenants(
        self, model, model_admin, client_a, tenant_a, tenant_b
    ):
        fields = model_admin.get_autocomplete_fields(None)
        if not fields:
            pytest.skip("no autocomplete fields")
        theirs = make(model, tenant_b)
        for field_name in fields:
            related = getattr(theirs, field_name)
            if related is None:
                continue
            response = client_a.get(
                reverse("admin:autocomplete"),
                {
                    "app_label": model._meta.app_label,
                    "model_name": model._meta.model_name,
                    "field_name": field_name,
                    "term": "",
                },
            )
            assert response.status_code in (200, 403)
            if response.status_code == 200:
                offered = {row["id"] for row in response.json()["results"]}
                assert str(related.pk) not in offered

    def test_superuser_sees_every_tenant(
        self, model, model_admin, client, superuser, tenant_a, tenant_b
    ):
        mine, theirs = make(model, tenant_a), make(model, tenant_b)
        client.force_login(superuser)
        response = client.get(admin_url(model, "changelist"))
        assert response.status_code == 200
        shown = ids(response.context["cl"].result_list)
        assert {mine.pk, theirs.pk} <= shown
