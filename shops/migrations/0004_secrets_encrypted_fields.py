"""Secrets become encrypted text columns (their data is encrypted in 0004), the free API base
URL goes, and the tenant gets an alert webhook secret of its own."""

from django.db import migrations, models

import tkerp.encryption
import tkerp.outbound


class Migration(migrations.Migration):

    dependencies = [
        ('shops', '0003_shopcredentials_api_endpoint'),
    ]

    operations = [
        migrations.RemoveField(
            model_name='shopcredentials',
            name='api_base_url',
        ),
        migrations.AddField(
            model_name='tenant',
            name='alert_webhook_secret',
            field=tkerp.encryption.EncryptedTextField(blank=True, help_text="Signs the alert webhook's body (X-Tkerp-Signature); blank uses the server's default secret, if any.", max_length=500),
        ),
        migrations.AlterField(
            model_name='shopcredentials',
            name='access_token',
            field=tkerp.encryption.EncryptedTextField(blank=True),
        ),
        migrations.AlterField(
            model_name='shopcredentials',
            name='app_secret',
            field=tkerp.encryption.EncryptedTextField(blank=True, max_length=500),
        ),
        migrations.AlterField(
            model_name='shopcredentials',
            name='refresh_token',
            field=tkerp.encryption.EncryptedTextField(blank=True),
        ),
        migrations.AlterField(
            model_name='shopcredentials',
            name='webhook_secret',
            field=tkerp.encryption.EncryptedTextField(blank=True, max_length=500),
        ),
        migrations.AlterField(
            model_name='tenant',
            name='alert_webhook_url',
            field=models.URLField(blank=True, help_text='Generic outbound webhook for alerts (chat or SMS gateway): an https URL on the public internet.', validators=[tkerp.outbound.validate_outbound_url]),
        ),
    ]
