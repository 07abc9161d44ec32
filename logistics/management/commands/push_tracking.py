"""Send the tracking write-backs that are due now: `manage.py push_tracking [--shop ID]`."""

from django.core.management.base import BaseCommand, CommandError

from logistics.outbox import tracking_push_due
from shops.models import Shop
from tkerp.tenancy import all_tenants


class Command(BaseCommand):
    help = (
        "Send every due tracking number to its order's platform (one shop with --shop), then "
        "print one line: tracking: <sent> sent, <failed> failed, <blocked> blocked."
    )

    def add_arguments(self, parser):
        parser.add_argument("--shop", type=int, help="Only this shop (its id).")

    def handle(self, *args, shop=None, **options):
        with all_tenants():  # ESCAPE HATCH: the operator's command serves every tenant's shops
            if shop is not None and not Shop.objects.filter(pk=shop).exists():
                raise CommandError(f"No shop with id {shop}.")
        summary = tracking_push_due(shop_id=shop)
        self.stdout.write(summary.line())
