"""Tenant scope: which seller organisation the current code runs for.

Every tenant-owned model's default manager reads the scope set here and fails closed: querying
one with no scope raises `TenantNotSet`. Requests get their scope from `TenantMiddleware`; tasks,
commands and tests set it explicitly with `tenant_context(tenant)`. The one deliberate escape
hatch is `all_tenants()` (grep for it): the SaaS operator's view and cross-tenant plumbing such as
resolving a user's memberships.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Final

from django.db import models

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

    def save(self, *args, **kwargs) -> None:
        if self.tenant_id is None:
            self.tenant = require_tenant()
        super().save(*args, **kwargs)

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
