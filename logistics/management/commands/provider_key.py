"""`manage.py provider_key create|list|revoke`: a provider's API keys from the command line."""

from django.core.management.base import BaseCommand, CommandError

from logistics.api.auth import verified_keys_forget
from logistics.models import ApiKeyScope, Provider, ProviderAPIKey
from logistics.providers import provider_key_create
from tkerp.tenancy import all_tenants, tenant_context


class Command(BaseCommand):
    help = "Create (the key is printed once), list or revoke a provider's API keys."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="Create a key and print it once.")
        create.add_argument("--provider", type=int, required=True, help="The provider's id.")
        create.add_argument("--scope", choices=ApiKeyScope.values, default=ApiKeyScope.READ)
        create.add_argument("--expires-days", type=int, default=None)
        create.add_argument("--name", default="", help="A label for the key (50 characters).")
        listing = sub.add_parser("list", help="The provider's keys (prefixes, never the keys).")
        listing.add_argument("--provider", type=int, required=True)
        revoke = sub.add_parser("revoke", help="Revoke a key by its prefix (cannot be undone).")
        revoke.add_argument("prefix")

    def handle(self, *args, action, **options):
        if action == "revoke":
            with all_tenants():
                count = ProviderAPIKey.objects.filter(
                    prefix=options["prefix"], revoked=False
                ).update(revoked=True)
            verified_keys_forget()
            if not count:
                raise CommandError(f"No live key with prefix {options['prefix']}.")
            self.stdout.write(f"Revoked key {options['prefix']}.")
            return
        with all_tenants():
            provider = Provider.objects.select_related("tenant").filter(pk=options["provider"])
            provider = provider.first()
        if provider is None:
            raise CommandError(f"No provider with id {options['provider']}.")
        if action == "list":
            with tenant_context(provider.tenant):
                for key in ProviderAPIKey.objects.filter(provider=provider):
                    state = "revoked" if key.revoked else "expired" if key.has_expired else "live"
                    self.stdout.write(
                        f"{key.prefix}  {key.scope:5}  {state:7}  {key.name}  "
                        f"last used {key.last_used_at or 'never'}"
                    )
            return
        try:
            key, raw = provider_key_create(
                provider=provider,
                name=options["name"],
                scope=options["scope"],
                expires_days=options["expires_days"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        expiry = f", expires {key.expiry_date:%Y-%m-%d %H:%M} UTC" if key.expiry_date else ""
        self.stderr.write(
            f"API key for {provider.name} ({provider.tenant.name}), scope {key.scope}{expiry}. "
            "Copy it now: it is stored only as a hash and cannot be shown again."
        )
        self.stdout.write(raw)
