"""`manage.py seed_demo`: load the demo tenants, logins and orders (see `shops.demo`)."""

import logging

from django.core.management.base import BaseCommand, CommandError

from shops.demo import ORDERS_PER_TENANT, DemoSeedError, demo_seed


class Command(BaseCommand):
    help = (
        "Create two demo sellers with shops, SKUs, stock, carriers and a few hundred orders, "
        "plus demo logins. Platform orders are created in each shop's sandbox and imported by "
        "the real sync. Safe to run again: existing demo tenants are left as they are."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--reset",
            action="store_true",
            help="Delete the demo tenants and logins first, then build them afresh.",
        )
        parser.add_argument(
            "--orders",
            type=int,
            default=ORDERS_PER_TENANT,
            help=f"Orders per tenant (default {ORDERS_PER_TENANT}).",
        )

    def handle(self, *args, reset: bool, orders: int, **options) -> None:
        if orders < 1:
            raise CommandError("--orders must be at least 1")
        # Seeding runs the real sync, reservations and alerts, which log every request and
        # every low-stock SKU on the way; the summary below says what was built.
        logging.disable(logging.WARNING)
        try:
            result = demo_seed(reset=reset, orders_per_tenant=orders)
        except DemoSeedError as exc:
            raise CommandError(str(exc)) from None
        finally:
            logging.disable(logging.NOTSET)
        for tenant in result.tenants:
            counts = ", ".join(f"{count} {name}" for name, count in tenant.counts.items())
            state = "created" if tenant.created else "already there, left as is"
            self.stdout.write(f"{tenant.name}: {state} ({counts})")
        if not all(tenant.created for tenant in result.tenants):
            self.stdout.write("Run `manage.py seed_demo --reset` to rebuild the demo data.")

        width = max(len(login.username) for login in result.logins)
        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS(f"Admin: {result.admin_url}"))
        self.stdout.write(f"Every demo login's password is: {result.password}")
        for login in result.logins:
            self.stdout.write(f"  {login.username:<{width}}  {login.description}")
