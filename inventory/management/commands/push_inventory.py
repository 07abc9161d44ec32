"""`manage.py push_inventory [--shop ID] [--reconcile]`: run the stock push's scheduled work now."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from inventory.push import push_pending, shop_reconcile
from shops.models import Platform, Shop
from tkerp.tenancy import all_tenants, tenant_context


class Command(BaseCommand):
    help = (
        "Push every pending listing quantity now (due or not); with --reconcile also read the "
        "platforms' quantities back and repair drift."
    )

    def add_arguments(self, parser):
        parser.add_argument("--shop", type=int, help="Only this shop (id).")
        parser.add_argument(
            "--reconcile", action="store_true", help="Also read back and repair quantities."
        )

    def handle(self, *args, shop=None, reconcile=False, **options):
        with all_tenants():  # ESCAPE HATCH: an operator command over every tenant's shops
            shops = Shop.objects.filter(is_active=True).exclude(platform=Platform.MANUAL)
            if shop is not None:
                shops = shops.filter(pk=shop)
            shops = list(shops.select_related("tenant").order_by("tenant_id", "pk"))
        if shop is not None and not shops:
            raise CommandError(f"no active platform shop with id {shop}")
        for each in shops:
            with tenant_context(each.tenant):
                pushed = push_pending(shop=each, force=True).as_dict()
                self.stdout.write(f"push {each.pk} {each.name}: {json.dumps(pushed)}")
                if reconcile:
                    repaired = shop_reconcile(shop=each).as_dict()
                    self.stdout.write(f"reconcile {each.pk} {each.name}: {json.dumps(repaired)}")
