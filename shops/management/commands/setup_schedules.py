"""manage.py setup_schedules: create or correct the django-q2 schedules of order sync."""

from django.core.management.base import BaseCommand

from shops.schedules import schedule_specs, schedules_ensure


class Command(BaseCommand):
    help = "Create the periodic order-sync schedules (safe to run again)."

    def handle(self, *args, **options):
        touched = schedules_ensure()
        for spec in schedule_specs():
            state = "created or updated" if spec.name in touched else "unchanged"
            self.stdout.write(f"{spec.name}: {spec.func} ({state})")
