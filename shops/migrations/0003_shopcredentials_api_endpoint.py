"""Platform hosts are no longer a URL a tenant types: `api_endpoint` replaces `api_base_url`.

Credentials whose URL was on the sandbox host (`sandbox.tkerp.internal`, the demo and tests)
become "sandbox"; every other value, a real platform host or anything else, becomes "live" (the
connector's own host for the shop's region). A token-refresh host override in
`extra["auth_base_url"]` is dropped likewise. The URL column goes in 0003: PostgreSQL will not
alter a table in the transaction that updated its rows.
"""

from urllib.parse import urlsplit

from django.db import migrations, models
from django.db.models import Q

SANDBOX_HOST = "sandbox.tkerp.internal"


def endpoints_from_urls(apps, schema_editor):
    ShopCredentials = apps.get_model("shops", "ShopCredentials")
    rows = ShopCredentials._base_manager.filter(
        ~Q(api_base_url="") | Q(extra__has_key="auth_base_url")
    )
    for credentials in rows.only("pk", "api_base_url", "extra"):
        try:
            host = urlsplit(credentials.api_base_url).hostname
        except ValueError:
            host = None
        extra = credentials.extra
        if isinstance(extra, dict):
            extra = {key: value for key, value in extra.items() if key != "auth_base_url"}
        ShopCredentials._base_manager.filter(pk=credentials.pk).update(
            api_endpoint="sandbox" if host == SANDBOX_HOST else "live", extra=extra
        )


def urls_from_endpoints(apps, schema_editor):
    ShopCredentials = apps.get_model("shops", "ShopCredentials")
    rows = ShopCredentials._base_manager.filter(api_endpoint="sandbox").select_related("shop")
    for credentials in rows:
        ShopCredentials._base_manager.filter(pk=credentials.pk).update(
            api_base_url=f"http://{SANDBOX_HOST}/sandbox/{credentials.shop.platform}"
        )


class Migration(migrations.Migration):

    dependencies = [
        ('shops', '0002_shop_ship_by_defaults_from_settings'),
    ]

    operations = [
        migrations.AddField(
            model_name='shopcredentials',
            name='api_endpoint',
            field=models.CharField(choices=[('live', "The platform's API"), ('sandbox', "tkerp's platform sandbox (demo and tests only)")], default='live', help_text="The platform's own hosts for the shop's region, or tkerp's local sandbox where this server enables it.", max_length=16, verbose_name='API endpoint'),
        ),
        migrations.RunPython(endpoints_from_urls, urls_from_endpoints),
    ]
