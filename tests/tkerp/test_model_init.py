"""TenantOwnedModel builds and loads instances without Django's per-field `__init__` path
(tkerp.tenancy): every tenant model must come out exactly as Django's own would make it."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.db.models.signals import post_init

from logistics.models import ProviderAPIKey, Shipment
from orders.models import Order, OrderEvent, OrderStatus
from tests.factories import OrderFactory, ShipmentFactory
from tkerp.tenancy import TenantOwnedModel

TENANT_MODELS = sorted(
    (model for model in apps.get_models() if issubclass(model, TenantOwnedModel)),
    key=lambda model: model._meta.label,
)


def _django_made(model, **kwargs):
    """`model(**kwargs)` as it is made without TenantOwnedModel's own `__init__`."""
    instance = model.__new__(model)
    super(TenantOwnedModel, instance).__init__(**kwargs)
    return instance


def _state(instance) -> dict:
    """What an instance holds, but the values of fields whose default is made afresh each time
    (a random key: two instances never share it), which are only checked to be there."""
    fresh = {
        field.attname
        for field in type(instance)._meta.concrete_fields
        if field.has_default() and callable(field.default) and field.default not in (dict, list)
    }
    values = {k: v for k, v in vars(instance).items() if k != "_state" and k not in fresh}
    return {
        "values": values,
        "set": sorted(vars(instance)),
        "adding": instance._state.adding,
        "db": instance._state.db,
        "cached": dict(instance._state.fields_cache),
    }


@pytest.mark.parametrize("model", TENANT_MODELS, ids=lambda model: model._meta.label)
def test_every_tenant_model_is_made_as_django_makes_it(model):
    # Defaults only, and the tenant by id: every field's default comes out the same.
    ours, django = model(tenant_id=7), _django_made(model, tenant_id=7)
    assert _state(ours) == _state(django)
    assert type(ours) is model


def test_values_related_objects_and_deferred_markers_are_set_as_django_sets_them(tenant_a):
    tenant = tenant_a
    from django.db.models.base import DEFERRED

    kwargs = {
        "tenant": tenant,
        "platform_order_id": "A-1",
        "status": OrderStatus.READY,
        "buyer_note": DEFERRED,
    }
    ours, django = Order(**kwargs), _django_made(Order, **kwargs)
    assert _state(ours) == _state(django)
    assert "buyer_note" not in vars(ours)  # left to load on access, as Django leaves it
    assert ours.tenant is tenant and ours.tenant_id == tenant.pk


def test_no_related_object_is_set_as_django_sets_it():
    # Nobody (a sync's event): the id None, and None cached for the object, so reading it
    # asks nothing.
    ours, django = (
        OrderEvent(tenant_id=1, user=None),
        _django_made(OrderEvent, tenant_id=1, user=None),
    )
    assert _state(ours) == _state(django)
    assert ours._state.fields_cache == {"user": None}


def test_keywords_django_refuses_are_refused_the_same_way():
    with pytest.raises(TypeError, match="unexpected keyword arguments: 'platform_order_idd'"):
        Order(platform_order_idd="A-1")


def test_keywords_left_over_go_to_djangos_init():
    # An object and its id both: Django takes the object and lets the id pass.
    kwargs = {"tenant_id": 1, "tenant": None, "platform_order_id": "A-2"}
    assert _state(Order(**kwargs)) == _state(_django_made(Order, **kwargs))


def test_positional_values_go_to_djangos_init():
    fields = Order._meta.concrete_fields
    values = [field.get_default() for field in fields]
    values[[f.attname for f in fields].index("platform_order_id")] = "P-1"
    assert Order(*values).platform_order_id == "P-1"


def test_a_model_with_its_own_init_in_its_bases_keeps_it(tenant_a):
    # The API key library's model records `revoked` in its __init__, made or loaded.
    key = ProviderAPIKey(tenant=tenant_a, name="k")
    assert key._initial_revoked is False
    names = [f.attname for f in ProviderAPIKey._meta.concrete_fields]
    row = {"id": "x", "tenant_id": tenant_a.pk, "revoked": True}
    loaded = ProviderAPIKey.from_db(
        "default", [n for n in names if n in row], [row[n] for n in names if n in row]
    )
    assert loaded._initial_revoked is True


def test_post_init_listeners_are_still_called():
    seen = []

    def listener(sender, instance, **kwargs):
        seen.append(instance)

    post_init.connect(listener, sender=OrderEvent)
    try:
        made = OrderEvent(tenant_id=1, kind="x")
        loaded = OrderEvent.from_db("default", ["id", "tenant_id", "kind"], (5, 1, "x"))
    finally:
        post_init.disconnect(listener, sender=OrderEvent)
    assert seen == [made, loaded]


def test_a_loaded_row_is_a_saved_instance_whose_unread_columns_load_on_access(tenant_a, scope_a):
    order = OrderFactory(tenant=tenant_a, platform_order_id="L-1")
    parcel = ShipmentFactory(tenant=tenant_a, order=order)
    loaded = Order.objects.only("id", "tenant_id", "status").get(pk=order.pk)
    assert loaded._state.adding is False and loaded._state.db == "default"
    assert set(vars(loaded)) == {"_state", "id", "tenant_id", "status"}
    assert loaded.platform_order_id == "L-1"  # not read, so loaded on access
    loaded.status = OrderStatus.CANCELLED
    loaded.save(update_fields=["status"])  # an update, not an insert
    assert Order.objects.get(pk=order.pk).status == OrderStatus.CANCELLED
    full = Shipment.objects.select_related("order").get(pk=parcel.pk)
    assert full.order.pk == order.pk and full.order._state.adding is False
