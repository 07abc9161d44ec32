"""manage.py poll_tracking [--shop ID]: poll the carriers for parcels on their way now (what the
15-minute schedule does), store new events, mark exceptions; one summary line."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from logistics.tracking_events import TrackingPollResult, tracking_poll
from shops.models import Shop, Tenant
from tkerp.tenancy import all_tenants


class Command(BaseCommand):
    help = "Poll tracking now for every parcel on its way (or one shop's); print a summary."

    def add_arguments(self, parser):
        parser.add_argument("--shop", type=int, help="Only this shop's parcels (shop id).")

    def handle(self, *args, shop=None, **options):
        result = TrackingPollResult()
        if shop is not None:
            with all_tenants():  # an operator's command: the shop says which tenant
                found = Shop.objects.select_related("tenant").filter(pk=shop).first()
            if found is None:
                raise CommandError(f"no shop with id {shop}")
            # Now means now: parcels polled a moment ago are asked again (events stay single).
            result = tracking_poll(tenant=found.tenant, shop_id=found.pk, force=True)
        else:
            for tenant in Tenant.objects.filter(is_active=True).order_by("pk"):
                result.add(tracking_poll(tenant=tenant, force=True))
        self.stdout.write(result.summary())
