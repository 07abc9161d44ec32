"""Trigram indexes for the shipment and order lists' search box (tkerp.search): `icontains` compares
`UPPER(column) LIKE '%word%'`, which only a GIN `gin_trgm_ops` index on that expression answers.

Built CONCURRENTLY (so outside a transaction): the table keeps taking writes meanwhile.
"""

from django.contrib.postgres.indexes import GinIndex, OpClass
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations
from django.db.models.functions import Upper


def trigram(field, name):
    return GinIndex(OpClass(Upper(field), name="gin_trgm_ops"), name=name)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("logistics", "0002_provider_webhook_secret_encrypted"),
    ]

    operations = [
        # Shared by every app's trigram indexes: unapplying one app's indexes must not drop it.
        migrations.RunSQL(
            "CREATE EXTENSION IF NOT EXISTS pg_trgm", reverse_sql=migrations.RunSQL.noop
        ),
        AddIndexConcurrently(
            model_name="shipment", index=trigram("reference", "shipment_reference_trgm")
        ),
        AddIndexConcurrently(
            model_name="shipment", index=trigram("tracking_number", "shipment_tracking_number_trgm")
        ),
    ]
