"""Views of the house framework: switching the active tenant."""

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponseRedirect
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from tkerp.tenants import SESSION_KEY


@require_POST
@staff_member_required
def switch_tenant(request: HttpRequest) -> HttpResponseRedirect:
    """Make another of the user's tenants the active one (empty = all, for superusers)."""
    raw = request.POST.get("tenant", "")
    allowed = {tenant.pk for tenant in request.available_tenants}
    if raw == "" and request.user.is_superuser:
        request.session.pop(SESSION_KEY, None)
    elif raw.isdigit() and int(raw) in allowed:
        request.session[SESSION_KEY] = int(raw)
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, {request.get_host()}):
        target = "/admin/"
    # After a switch, an object page of the old tenant would 404: go to its list instead.
    return HttpResponseRedirect(target)
