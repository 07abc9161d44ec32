"""Encrypt the secrets stored in plaintext, and drop error texts that may quote replies.

1. Every non-empty secret is encrypted with the newest `TKERP_FERNET_KEYS` key (the same walk
   as `manage.py rotate_secrets`); reversing writes plaintext back.
2. Sync errors recorded before error texts stopped quoting platform replies may quote a reply
   (an internal host's, when the URL was free): the failed runs' and shops' texts are replaced
   by a note.
"""

from django.db import migrations, models
from django.db.models.functions import Cast

import tkerp.encryption

SECRETS = ("app_secret", "access_token", "refresh_token", "webhook_secret")
ERROR_REMOVED = "(error text removed: it was recorded before errors stopped quoting replies)"


def encrypt_secrets(apps, schema_editor):
    ShopCredentials = apps.get_model("shops", "ShopCredentials")
    for name in SECRETS:
        tkerp.encryption.field_encrypt_all(ShopCredentials, name)
    tkerp.encryption.field_encrypt_all(apps.get_model("shops", "Tenant"), "alert_webhook_secret")


def _decrypt_all(model, name):
    manager = model._base_manager
    rows = manager.annotate(_raw=Cast(name, output_field=models.TextField()))
    for pk, raw in rows.values_list("pk", "_raw"):
        if raw:
            plain = tkerp.encryption.decrypt(raw)
            manager.filter(pk=pk).update(**{name: tkerp.encryption.Ciphertext(plain)})


def decrypt_secrets(apps, schema_editor):
    for name in SECRETS:
        _decrypt_all(apps.get_model("shops", "ShopCredentials"), name)
    _decrypt_all(apps.get_model("shops", "Tenant"), "alert_webhook_secret")


def remove_quoted_errors(apps, schema_editor):
    Shop = apps.get_model("shops", "Shop")
    SyncRun = apps.get_model("shops", "SyncRun")
    Shop._base_manager.exclude(last_sync_error="").update(last_sync_error=ERROR_REMOVED)
    SyncRun._base_manager.filter(status="failed").exclude(error="").update(error=ERROR_REMOVED)


class Migration(migrations.Migration):

    dependencies = [
        ('shops', '0004_secrets_encrypted_fields'),
    ]

    operations = [
        migrations.RunPython(encrypt_secrets, decrypt_secrets),
        migrations.RunPython(remove_quoted_errors, migrations.RunPython.noop),
    ]
