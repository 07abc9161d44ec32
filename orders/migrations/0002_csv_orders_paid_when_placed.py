"""CSV orders imported before they carried a payment time count as paid when placed.

The import used to leave `paid_at` empty, so those orders never reserved their stock (yet review
passed them to ready). The import now treats a CSV order as paid when placed unless the file says
"unpaid" (see orders/resources.py); this applies the same rule to the orders already stored. Open
ones are then picked up by the SLA sweep, which reserves their stock and gives them parcels.
"""

from django.db import migrations
from django.db.models.functions import Coalesce


def csv_orders_paid_when_placed(apps, schema_editor):
    Order = apps.get_model("orders", "Order")
    Order._base_manager.filter(shop__platform="manual", paid_at__isnull=True).update(
        paid_at=Coalesce("placed_at", "created_at")
    )


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0001_initial"),
        ("shops", "0001_initial"),
    ]

    operations = [
        # Nothing to undo: a payment time is what those orders should always have had.
        migrations.RunPython(csv_orders_paid_when_placed, migrations.RunPython.noop),
    ]
