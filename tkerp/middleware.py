"""Puts the request's tenant in scope for the whole request."""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
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


NUL = "\x00"
# The provider API validates every parameter itself and answers in its one error shape.
API_PREFIX = "/api/"
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class RefuseNulMiddleware:
    """A 400 for a request whose path, query string or form holds a NUL character (`%00`).

    No field can hold one and PostgreSQL refuses it in any text it is given, so a NUL typed into
    an admin URL (`?status__exact=%00`, `/admin/.../%00/change/`) was a server error wherever
    the value reached a query. A form is looked at only where Django reads it anyway (a view
    that checks the CSRF token): a webhook's or the API's body is left for its own parser. The
    provider API (`/api/`) is left alone: it checks its own parameters and answers every error
    as problem details.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith(API_PREFIX):
            return self.get_response(request)  # checks its own parameters: problem details
        if NUL in request.path or _holds_nul(request.GET):
            return _nul_refused("address")
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view_func, view_args, view_kwargs):
        if (
            request.method == "POST"
            and not request.path.startswith(API_PREFIX)
            and not getattr(view_func, "csrf_exempt", False)
            and request.content_type in _FORM_TYPES
            and _holds_nul(request.POST)
        ):
            return _nul_refused("form")
        return None


def _holds_nul(data) -> bool:
    return any(NUL in key or any(NUL in value for value in values) for key, values in data.lists())


def _nul_refused(where: str) -> HttpResponse:
    return HttpResponseBadRequest(
        f"Bad request: the {where} holds a NUL character (%00), which nothing here can take. "
        "Remove it and try again.\n",
        content_type="text/plain; charset=utf-8",
    )
