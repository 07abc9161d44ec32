"""The back office's admin site: Django's own, whose home page is the cockpit.

`TkerpAdminConfig` takes the place of `django.contrib.admin` in INSTALLED_APPS (Django's
documented way to swap the default site), so every `admin.register` and `admin.site` keeps
working. It also finds each app's `cockpit.py`, as the admin finds `admin.py`.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.http import HttpResponse
from django.urls import path
from django.utils.module_loading import autodiscover_modules


class TkerpAdminSite(admin.AdminSite):
    site_header = "tkerp"
    site_title = "tkerp back office"
    index_title = "Fulfillment back office"
    index_template = "admin/cockpit/index.html"

    def index(self, request, extra_context=None):
        from tkerp.cockpit.views import cockpit_context

        context = {**cockpit_context(request), **(extra_context or {})}
        return super().index(request, context)

    def get_urls(self):
        from tkerp.cockpit import views

        view = self.fragment_view
        return [
            path("cockpit/widgets/<slug:key>/", view(views.widget_view), name="cockpit_widget"),
            path("cockpit/charts/<slug:key>/", view(views.chart_view), name="cockpit_chart"),
            path("cockpit/tenants/", view(views.tenants_view), name="cockpit_tenants"),
            *super().get_urls(),
        ]

    def fragment_view(self, view):
        """`admin_view` for a fragment htmx polls: once the session has ended, answer "reload the
        page" (which then lands on the login form) instead of swapping the login page into a
        widget."""
        protected = self.admin_view(view)

        def fragment(request, *args, **kwargs):
            if request.headers.get("HX-Request") and not self.has_permission(request):
                return HttpResponse(status=204, headers={"HX-Refresh": "true"})
            return protected(request, *args, **kwargs)

        return fragment


class TkerpAdminConfig(AdminConfig):
    default_site = "tkerp.cockpit.site.TkerpAdminSite"

    def ready(self):
        super().ready()
        autodiscover_modules("cockpit")
