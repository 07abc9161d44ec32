"""Trigram indexes for the order list's search box (tkerp.search): `icontains` compares
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
        ("orders", "0002_csv_orders_paid_when_placed"),
    ]

    operations = [
        # Shared by every app's trigram indexes: unapplying one app's indexes must not drop it.
        migrations.RunSQL(
            "CREATE EXTENSION IF NOT EXISTS pg_trgm", reverse_sql=migrations.RunSQL.noop
        ),
        AddIndexConcurrently(
            model_name="order", index=trigram("platform_order_id", "order_platform_order_id_trgm")
        ),
        AddIndexConcurrently(
            model_name="order", index=trigram("buyer_name", "order_buyer_name_trgm")
        ),
        AddIndexConcurrently(
            model_name="order", index=trigram("buyer_email", "order_buyer_email_trgm")
        ),
        AddIndexConcurrently(
            model_name="order", index=trigram("recipient_name", "order_recipient_name_trgm")
        ),
        AddIndexConcurrently(
            model_name="order", index=trigram("recipient_phone", "order_recipient_phone_trgm")
        ),
        AddIndexConcurrently(
            model_name="order", index=trigram("postal_code", "order_postal_code_trgm")
        ),
        AddIndexConcurrently(
            model_name="orderline", index=trigram("seller_sku", "orderline_seller_sku_trgm")
        ),
    ]
