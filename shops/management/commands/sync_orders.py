"""manage.py sync_orders [--shop ID ...]: run one order-sync pass now and print what it did."""

from django.core.management.base import BaseCommand, CommandError

from shops.models import Platform, Shop
from shops.sync import shop_sync
from tkerp.tenancy import all_tenants, tenant_context


class Command(BaseCommand):
    help = "Run one order-sync pass now for the given shops (default: every active shop)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--shop", type=int, action="append", dest="shops", help="Shop id (repeatable)."
        )

    def handle(self, *args, shops=None, **options):
        with all_tenants():  # an operator's command: shops of every tenant
            queryset = Shop.objects.select_related("tenant").order_by("pk")
            if shops:
                selected = list(queryset.filter(pk__in=shops))
                missing = sorted(set(shops) - {shop.pk for shop in selected})
                if missing:
                    raise CommandError(f"no shop with id {', '.join(map(str, missing))}")
            else:
                selected = list(
                    queryset.filter(is_active=True, tenant__is_active=True)
                    .exclude(platform=Platform.MANUAL)
                    .filter(credentials__isnull=False)
                )
        if not selected:
            self.stdout.write("No shops to sync.")
            return
        failed = 0
        for shop in selected:
            with tenant_context(shop.tenant):
                run = shop_sync(shop=shop, trigger="command")
            line = (
                f"{shop.tenant.slug} / {shop.name} (#{shop.pk}): {run.status}, "
                f"{run.pages} page(s), {run.created} created, {run.updated} updated, "
                f"{run.skipped} unchanged, {run.rejected} rejected"
            )
            if run.status == "failed":
                failed += 1
                self.stdout.write(self.style.ERROR(f"{line} — {run.error}"))
            elif run.status == "skipped":
                self.stdout.write(self.style.WARNING(f"{line} — {run.error}"))
            else:
                self.stdout.write(self.style.SUCCESS(line))
        if failed:
            raise CommandError(f"{failed} of {len(selected)} shop(s) failed to sync")
