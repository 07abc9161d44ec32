"""/sandbox/<platform>/...: each platform's API, as served by its sandbox module."""

from django.urls import include, path

urlpatterns = [
    path("tiktok/", include("shops.sandbox.tiktok")),
    path("shopify/", include("shops.sandbox.shopify")),
    path("amazon/", include("shops.sandbox.amazon")),
    path("ebay/", include("shops.sandbox.ebay")),
]
