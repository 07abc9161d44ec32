"""Trigram indexes for the shipment and order lists' search box (tkerp.search): `icontains` compares
`UPPER(column) LIKE '%word%'`, which only a GIN `gin_trgm_ops` index on that expression answers.

Built CONCURRENTLY (so outside a transaction): the table keeps taking writes meanwhile.
"""

from django.contrib.postgres.indexes import GinIndex, OpClass
from django.contrib.postgres.operations import AddIndexConcurrently, TrigramExtension
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
        TrigramExtension(),
        AddIndexConcurrently(
            model_name="shipment", index=trigram("reference", "shipment_reference_trgm")
        ),
        AddIndexConcurrently(
            model_name="shipment", index=trigram("tracking_number", "shipment_tracking_number_trgm")
        ),
    ]
