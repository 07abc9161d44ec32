"""Which tenants a user may work in, and which one is active for a request."""

from __future__ import annotations

from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from tkerp.tenancy import all_tenants

if TYPE_CHECKING:
    from django.http import HttpRequest

    from shops.models import Tenant

SESSION_KEY = "tkerp_tenant_id"


def user_tenants(user) -> list[Tenant]:
    """The tenants the user may switch to: all active ones for a superuser, else memberships."""
    from shops.models import Membership, Tenant

    if not user.is_active:
        return []
    if user.is_superuser:
        return list(Tenant.objects.filter(is_active=True))
    with all_tenants():
        memberships = Membership.objects.filter(user=user, tenant__is_active=True)
        return [m.tenant for m in memberships.select_related("tenant").order_by("tenant__name")]


def user_role(user, tenant: Tenant) -> str | None:
    """The user's role in `tenant`, cached on the user object for the request."""
    from shops.models import Membership

    cache = user.__dict__.setdefault("_tkerp_roles", {})
    if tenant.pk not in cache:
        with all_tenants():
            cache[tenant.pk] = (
                Membership.objects.filter(user=user, tenant=tenant)
                .values_list("role", flat=True)
                .first()
            )
    return cache[tenant.pk]


def active_tenant_for(request: HttpRequest) -> Tenant | None:
    """The tenant chosen in the session if the user may use it; otherwise their first one.

    A superuser with nothing chosen gets None: the all-tenants operator view.
    """
    tenants = request.available_tenants
    chosen = request.session.get(SESSION_KEY)
    for tenant in tenants:
        if tenant.pk == chosen:
            return tenant
    if request.user.is_superuser or not tenants:
        return None
    return tenants[0]


def tenant_timezone(tenant: Tenant) -> ZoneInfo:
    """The tenant's timezone (`Tenant.timezone`, an IANA name); UTC when it names none."""
    try:
        return ZoneInfo(tenant.timezone or "UTC")
    except (ValueError, KeyError, OSError):  # ZoneInfoNotFoundError is a KeyError
        return ZoneInfo("UTC")
