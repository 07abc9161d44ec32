"""Puts the request's tenant in scope for the whole request."""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from tkerp.db.postgres.base import NOTHING, unscoped_sees
from tkerp.tenancy import ALL_TENANTS, reset_scope, set_scope
from tkerp.tenants import active_tenant_for, tenant_timezone, user_tenants


class TenantMiddleware:
    """Scope each request to the user's active tenant (chosen in the session).

    Anonymous users get no scope, so tenant data fails closed. Superusers with no tenant chosen
    see all tenants. Every time shown to a tenant's user is in the tenant's timezone
    (`Tenant.timezone`), the cockpit's charts and deadlines included.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        scope = None
        request.tenant = None
        request.available_tenants = []
        if user is not None and user.is_authenticated:
            request.available_tenants = user_tenants(user)
            request.tenant = active_tenant_for(request)
            if request.tenant is not None:
                scope = request.tenant
            elif user.is_superuser:
                scope = ALL_TENANTS
        token = set_scope(scope)
        if request.tenant is not None:
            timezone.activate(tenant_timezone(request.tenant))
        try:
            # A request never inherits a wider database scope than its own (row-level security).
            with unscoped_sees(NOTHING):
                return self.get_response(request)
        finally:
            reset_scope(token)
            timezone.deactivate()
