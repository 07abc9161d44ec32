"""Labels of parcels cancelled before the refund sweep existed are left as they were: by hand.

The sweep (logistics.labels.cancelled) asks the label service to refund the label of every
cancelled parcel whose `label_refund` is unset. Parcels cancelled before it existed have it unset
too, and many of their labels are past the carrier's refund window or were voided at the service
by a person (tkerp could not void them then): asked now, each would come back refused with an
error alert, and events would land on months-old orders. They are marked "not voided here: void
by hand", which is what they were; only parcels cancelled from now on are refunded by the sweep.
"""

from django.db import migrations


def cancelled_labels_left_by_hand(apps, schema_editor):
    Shipment = apps.get_model("logistics", "Shipment")
    Shipment._base_manager.filter(status="cancelled", label_refund="").exclude(
        label_source__in=["", "manual", "tiktok"]
    ).exclude(tracking_number="").update(label_refund="by_hand")


class Migration(migrations.Migration):
    dependencies = [
        ("logistics", "0018_shipment_label_refund"),
    ]

    operations = [
        # Nothing to undo: going back, the field goes with 0018.
        migrations.RunPython(cancelled_labels_left_by_hand, migrations.RunPython.noop),
    ]
