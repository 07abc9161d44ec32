from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from shops.views import invitation_accept_view
from tkerp import views
from tkerp.api.problems import api_not_found

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
    # The provider API, its OpenAPI schema and its docs (assets served from the project).
    path("api/v1/", include("logistics.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
    re_path(r"^api/", api_not_found),
]

if settings.TKERP_SANDBOX_ENABLED:
    urlpatterns.append(path("sandbox/", include("sandbox.urls")))
