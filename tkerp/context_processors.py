from django.http import HttpRequest


def tenancy(request: HttpRequest) -> dict:
    """The active tenant and the ones the user may switch to, for the admin header."""
    return {
        "active_tenant": getattr(request, "tenant", None),
        "available_tenants": getattr(request, "available_tenants", []),
    }
