from django.contrib import admin
from django.urls import path

from tkerp import views

admin.site.site_header = "tkerp"
admin.site.site_title = "tkerp back office"
admin.site.index_title = "Fulfillment back office"

urlpatterns = [
    path("admin/switch-tenant/", views.switch_tenant, name="switch-tenant"),
    path("admin/", admin.site.urls),
]
