"""Tenant scope: which seller organisation the current code runs for.

Every tenant-owned model's default manager reads the scope set here and fails closed: querying
one with no scope raises `TenantNotSet`. Requests get their scope from `TenantMiddleware`; tasks,
commands and tests set it explicitly with `tenant_context(tenant)`. The one deliberate escape
hatch is `all_tenants()` (grep for it): the SaaS operator's view and cross-tenant plumbing such as
resolving a user's memberships.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Final

from django.db import models
from django.db.models import ForeignObjectRel
from django.db.models.base import DEFERRED, ModelState
from django.db.models.fields import return_None
from django.db.models.fields.files import FileDescriptor
from django.db.models.fields.related_descriptors import ForeignKeyDeferredAttribute
from django.db.models.query_utils import DeferredAttribute
from django.db.models.signals import post_init, pre_init

if TYPE_CHECKING:
    from shops.models import Tenant


class TenantNotSet(RuntimeError):
    """A tenant-owned model was queried with no tenant in scope."""


class _AllTenants:
    """Marker scope: every tenant (operator view, cross-tenant plumbing)."""

    def __repr__(self) -> str:
        return "<all tenants>"


ALL_TENANTS: Final = _AllTenants()

_scope: ContextVar[Tenant | _AllTenants | None] = ContextVar("tkerp_tenant_scope", default=None)


def get_scope() -> Tenant | _AllTenants | None:
    """The raw scope: a tenant, `ALL_TENANTS`, or None (nothing set)."""
    return _scope.get()


def current_tenant() -> Tenant | None:
    """The tenant in scope, or None when no single tenant is (unset or all tenants)."""
    scope = _scope.get()
    return None if scope is None or scope is ALL_TENANTS else scope


def require_tenant() -> Tenant:
    """The tenant in scope; raises when there is none or the scope spans all tenants."""
    tenant = current_tenant()
    if tenant is None:
        raise TenantNotSet("this operation needs a single tenant in scope")
    return tenant


@contextmanager
def tenant_context(tenant: Tenant | None) -> Iterator[Tenant | None]:
    """Run the block scoped to `tenant` (None clears the scope: everything fails closed)."""
    token = _scope.set(tenant)
    try:
        yield tenant
    finally:
        _scope.reset(token)


@contextmanager
def all_tenants() -> Iterator[None]:
    """ESCAPE HATCH: run the block with every tenant's rows visible. Use sparingly."""
    token = _scope.set(ALL_TENANTS)
    try:
        yield
    finally:
        _scope.reset(token)


def set_scope(scope: Tenant | _AllTenants | None):
    """Set the scope without a block (middleware); returns the token for `reset_scope`."""
    return _scope.set(scope)


def reset_scope(token) -> None:
    _scope.reset(token)


class TenantQuerySet(models.QuerySet):
    def for_tenant(self, tenant: Tenant) -> TenantQuerySet:
        return self.filter(tenant=tenant)


class TenantManager(models.Manager.from_queryset(TenantQuerySet)):
    """Default manager of tenant-owned models: scoped to the tenant in scope, fails closed."""

    def get_queryset(self) -> TenantQuerySet:
        queryset = super().get_queryset()
        scope = _scope.get()
        if scope is None:
            raise TenantNotSet(
                f"{self.model._meta.label} queried with no tenant in scope; wrap the call in "
                "tenant_context(tenant) (or all_tenants() for operator-wide code)"
            )
        if scope is ALL_TENANTS:
            return queryset
        return queryset.filter(tenant_id=scope.pk)


#: Per model, how `TenantOwnedModel.__init__` fills an instance: one (attname, name of a related
#: object or None, its cache name, constant default, default callable or None, stored as is?)
#: a field, or () for Django's own.
_INIT_PLANS: dict[type, tuple] = {}

#: The attribute types whose setting, on an instance just made, only stores the value under the
#: field's attname (a foreign key's id clears a cached object, which a new instance has not).
_STORED_AS_IS = (DeferredAttribute, ForeignKeyDeferredAttribute, FileDescriptor)


def _init_plan(cls: type[models.Model]) -> tuple:
    """`cls`'s plan (see `_INIT_PLANS`), made on first use. A class with an `__init__` of its
    own in its bases (a library's model, such as the API key's) is left to Django's, which
    calls it; so is its loading (`from_db`), which would otherwise skip it."""
    plan = _INIT_PLANS.get(cls)
    if plan is not None:
        return plan
    own = (TenantOwnedModel, models.Model, object)
    if any("__init__" in vars(base) for base in cls.__mro__ if base not in own):
        _INIT_PLANS[cls] = ()
        return ()
    plan = []
    for field in cls._meta.fields:
        if field.column is None or field.generated:
            continue  # set only when given, which the plan leaves to Django's __init__
        related = isinstance(field.remote_field, ForeignObjectRel)  # as __init__ tells them
        simple = related and len(field.related_fields) == 1
        name = field.name if related else None
        cache_name = field.cache_name if simple else None
        default = field.get_default if related else field._get_default
        as_is = type(inspect.getattr_static(cls, field.attname, None)) in _STORED_AS_IS
        if default is return_None:
            constant, default = None, None
        elif default is str:
            constant, default = "", None
        else:
            constant = None
        plan.append((field.attname, name, cache_name, constant, default, as_is))
    _INIT_PLANS[cls] = plan = tuple(plan)
    return plan


class TenantOwnedModel(models.Model):
    """Base of every row that belongs to one seller organisation.

    `tenant` is filled from the scope on save; `clean()` refuses links to another tenant's rows
    (the operator, who sees all tenants, could otherwise pick them in a form).
    """

    tenant = models.ForeignKey(
        "shops.Tenant", on_delete=models.CASCADE, related_name="+", db_index=True
    )

    objects = TenantManager()

    class Meta:
        # Django's internals (related-object access, deletion) use the plain base manager;
        # everything written by hand goes through the scoped default manager.
        abstract = True

    def __init__(self, *args, **kwargs) -> None:
        """`Model.__init__`, faster for the usual call (keyword arguments only).

        Django's version tries `kwargs.pop` on every field and catches the `KeyError` of each
        one not given: an order made with the 20 values ingest gives costs 45 µs (13 µs here),
        and a spike makes an order, its lines and events, reservations, movements and parcels
        for each of thousands. This looks each field up (`_init_plan`) and sets the value given
        or the field's default through the same attribute (related objects by name, as
        `__init__` does). Positional values, `pre_init`/`post_init` listened to, and keywords
        it does not consume (a property, a name and its `_id` both, a typo, which `__init__`
        refuses) go to Django's own.
        """
        plan = _init_plan(type(self))
        if args or not plan or pre_init.receivers or post_init.receivers:
            super().__init__(*args, **kwargs)
            return
        state = self._state = ModelState()
        values = self.__dict__
        used = 0
        for attname, name, cache_name, constant, default, as_is in plan:
            if name is not None and name in kwargs:
                value = kwargs[name]
                used += 1
                if value is None and cache_name is not None and as_is:
                    # What setting the object to None does on a new instance.
                    values[attname] = None
                    state.fields_cache[cache_name] = None
                elif value is not DEFERRED:
                    setattr(self, name, value)
                continue
            if attname in kwargs:
                value = kwargs[attname]
                used += 1
                if value is DEFERRED:
                    continue
            else:
                value = constant if default is None else default()
            if as_is:
                values[attname] = value
            else:
                setattr(self, attname, value)
        if used != len(kwargs):
            super().__init__(*args, **kwargs)

    def save(self, *args, **kwargs) -> None:
        if self.tenant_id is None:
            self.tenant = require_tenant()
        super().save(*args, **kwargs)

    @classmethod
    def from_db(cls, db, field_names, values):
        """A row read from the database as an instance, made without `Model.__init__` (Django's
        documented hook for customising model loading).

        `__init__` walks every concrete field for each row, marking each one not read as
        deferred by a scan of `field_names`, and sends `pre_init` and `post_init`: for an order
        read with a third of its 53 columns that is 31 µs, against 3 µs here, and a spike's
        pipeline reads every order, line, reservation and parcel several times. The instance is
        the one `__init__` would make: the columns read set by attribute name (so a column not
        read loads on first access, as a deferred field does), saved, of database `db`. A model
        with an `__init__` of its own, and any while something listens to `pre_init` or
        `post_init`, is made the usual way.
        """
        if not _init_plan(cls) or pre_init.receivers or post_init.receivers:
            return super().from_db(db, field_names, values)
        new = cls.__new__(cls)
        new.__dict__.update(zip(field_names, values, strict=True))
        state = new._state = ModelState()
        state.adding = False
        state.db = db
        return new

    def clean(self) -> None:
        super().clean()
        if self.tenant_id is None:
            tenant = current_tenant()
            if tenant is not None:
                self.tenant = tenant
        self.check_same_tenant()

    def check_same_tenant(self) -> None:
        """Raise ValidationError if a foreign key points at another tenant's row."""
        from django.core.exceptions import ValidationError

        errors = {}
        for field in self._meta.concrete_fields:
            if not field.is_relation or field.name == "tenant":
                continue
            if not issubclass(field.related_model, TenantOwnedModel):
                continue
            related_id = getattr(self, field.attname)
            if related_id is None or self.tenant_id is None:
                continue
            # Every tenant: under row-level security another tenant's row would read as missing
            # and pass. Only its tenant id is read.
            with all_tenants():
                owner = (
                    field.related_model._base_manager.filter(pk=related_id)
                    .values_list("tenant_id", flat=True)
                    .first()
                )
            if owner not in (None, self.tenant_id):
                errors[field.name] = "Select a valid choice; that one belongs to another tenant."
        if errors:
            raise ValidationError(errors)


def task_entry(func: Callable) -> Callable:
    """Mark a background task: an entry point, which sets its own scope.

    A worker starts a task with no tenant scope, where row-level security shows no tenant's
    rows to a statement run outside `tenant_context` / `all_tenants()`. The task runs that way
    whoever calls it: a worker, a command, or a test (whose own unscoped reads see every
    tenant, tests/conftest.py), so a task that forgets its scope fails in the tests as it would
    in production instead of silently doing nothing there.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from tkerp.db.postgres.base import NOTHING, unscoped_sees

        with unscoped_sees(NOTHING):
            return func(*args, **kwargs)

    return wrapper
