"""/webhooks/<platform>/: platforms POST order changes here (see shops.webhooks)."""

from django.urls import path

from shops import webhooks

app_name = "webhooks"

urlpatterns = [
    path("tiktok/", webhooks.webhook_tiktok, name="tiktok"),
    path("shopify/", webhooks.webhook_shopify, name="shopify"),
]
