from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from shops.views import invitation_accept_view
from tkerp import views

urlpatterns = [
    path("admin/switch-tenant/", views.switch_tenant, name="switch-tenant"),
    # Before admin.site.urls, which maps the same path to Django's cross-tenant lookup.
    path(
        "admin/r/<int:content_type_id>/<path:object_id>/",
        admin.site.admin_view(views.view_on_site),
        name="view-on-site",
    ),
    path("admin/", admin.site.urls),
    path("invitations/<str:token>/", invitation_accept_view, name="invitation-accept"),
    path("webhooks/", include("shops.urls")),
]

if settings.TKERP_SANDBOX_ENABLED:
    urlpatterns.append(path("sandbox/", include("sandbox.urls")))
