"""Views of the house framework: switching the active tenant, the admin's "view on site"."""

from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.contenttypes.models import ContentType
from django.contrib.contenttypes.views import shortcut
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from tkerp.tenancy import TenantNotSet
from tkerp.tenants import SESSION_KEY


def _tenant_id(raw: str) -> int | None:
    """The tenant id a form sent, or None. `str.isdigit()` also accepts characters such as
    "①" that `int()` refuses, so only plain ASCII digits count."""
    if raw.isascii() and raw.isdigit() and len(raw) <= 18:
        return int(raw)
    return None


@require_POST
@staff_member_required
def switch_tenant(request: HttpRequest) -> HttpResponseRedirect:
    """Make another of the user's tenants the active one (empty = all, for superusers)."""
    raw = request.POST.get("tenant", "")
    allowed = {tenant.pk for tenant in request.available_tenants}
    if raw == "" and request.user.is_superuser:
        request.session.pop(SESSION_KEY, None)
    elif (tenant_id := _tenant_id(raw)) in allowed:
        request.session[SESSION_KEY] = tenant_id
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, {request.get_host()}):
        target = "/admin/"
    # After a switch, an object page of the old tenant would 404: go to its list instead.
    return HttpResponseRedirect(target)


def view_on_site(request: HttpRequest, content_type_id: int, object_id: str) -> HttpResponse:
    """The admin's "view on site" redirect (`/admin/r/<ct>/<id>/`), through the tenant scope.

    Django's own view looks the object up across tenants and words its 404 differently for a
    missing object and for one without a public URL, which tells a user whether another
    tenant's id exists. Here an object outside the user's scope, a missing one and one with no
    URL give the same 404.
    """
    content_type = ContentType.objects.filter(pk=content_type_id).first()
    model = content_type.model_class() if content_type else None
    if model is None:
        raise Http404("No such object.")
    found = False
    if "\x00" not in object_id:  # PostgreSQL refuses a NUL in any text (a DataError)
        try:
            # The default manager: a tenant-owned model's is scoped to the user's tenant.
            found = model._default_manager.filter(pk=object_id).exists()
        except (ValueError, TypeError, OverflowError, ValidationError, TenantNotSet):
            found = False
    if not found or not hasattr(model, "get_absolute_url"):
        raise Http404("No such object.")
    return shortcut(request, content_type_id, object_id)
