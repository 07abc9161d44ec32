"""/sandbox/<service>/...: each simulated service's API, as served by its sandbox module."""

from django.urls import include, path

urlpatterns = [
    path("tiktok/", include("sandbox.tiktok")),
    path("shopify/", include("sandbox.shopify")),
    path("amazon/", include("sandbox.amazon")),
    path("ebay/", include("sandbox.ebay")),
    path("labelapi/", include("sandbox.labelapi")),
]
