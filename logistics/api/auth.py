"""Who is calling the provider API: a provider's key, resolved to its tenant and provider.

`ProviderKeyAuthentication` reads `Authorization: Api-Key <key>`, finds the key by its clear
prefix, checks the hash, revocation and expiry (any failure: 401, the same answer whatever was
wrong) and puts the key's tenant in scope for the rest of the request, so every query of the
view is that tenant's. The view reads the provider from `request.auth.provider`.

A verified key is remembered by the web process for `TKERP_API_KEY_CACHE_SECONDS` (default 10,
0 turns it off): looking the key up again on every request cost about a third of a parcel
page's CPU. Keys are random and high-entropy, so the cache is found by the key's sha512 (the
stored hash): only the holder of the key finds its entry, and failures are never cached. Expiry
is checked on every request; a revocation (the admin's action, `provider_key revoke`) or a
deactivated provider or seller takes effect at once in the process that made it and within
those seconds in every other one.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models.signals import post_delete, post_save
from django.utils import timezone
from rest_framework import authentication, exceptions, permissions, throttling
from rest_framework_api_key.permissions import KeyParser

from logistics.models import Provider, ProviderAPIKey
from shops.models import Tenant
from tkerp.audit import audit_actor_api_key
from tkerp.tenancy import all_tenants, set_scope

# last_used_at is written at most this often per key: a busy key costs no write per request.
LAST_USED_EVERY = timedelta(minutes=1)
# sha512 of a verified key -> (the key with its provider and tenant, when it was read). Bounded:
# only valid keys get in, and the whole map is dropped if it ever holds this many.
_verified: dict[str, tuple[ProviderAPIKey, datetime]] = {}
VERIFIED_KEYS_MAX = 1000


def verified_keys_forget(**kwargs) -> None:
    """Forget every remembered key in this process: the next request of each reads it again.
    Called by the revoking doors, and on every save or delete of a key, provider or seller."""
    _verified.clear()


# Connected here: a process holds remembered keys only once it has served the API, which
# imports this module.
for _model in (ProviderAPIKey, Provider, Tenant):
    for _signal in (post_save, post_delete):
        _signal.connect(verified_keys_forget, sender=_model, dispatch_uid=f"api-keys-{_model}")


class ProviderClient:
    """The `request.user` of an API request: the provider behind the key."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False

    def __init__(self, key: ProviderAPIKey):
        self.key = key
        self.provider = key.provider
        self.tenant = key.tenant
        self.pk = self.id = None

    def __str__(self) -> str:
        return f"provider {self.provider.code}"


class ProviderKeyAuthentication(authentication.BaseAuthentication):
    key_parser = KeyParser()

    def authenticate(self, request):
        raw = self.key_parser.get(request)
        if raw is None:
            return None  # no credentials: the permission answers 401
        prefix, dot, _ = raw.partition(".")
        failed = exceptions.AuthenticationFailed(
            "The API key is unknown, revoked or expired.", code="invalid_key"
        )
        if not dot or not prefix or "\x00" in raw:
            # PostgreSQL takes no NUL in a text: the lookup would fail with a 500, not a 401.
            raise failed
        now = timezone.now()
        digest = hashlib.sha512(raw.encode()).hexdigest()
        key = self.remembered(digest, now)
        if key is None:
            # Before the key is known there is no tenant: the one lookup by prefix spans every
            # tenant (the prefix is unique across tenants), past row-level security too.
            with all_tenants():
                key = (
                    ProviderAPIKey.objects.select_related("tenant", "provider")
                    .filter(prefix=prefix)
                    .first()
                )
            if key is None or not key.is_valid(raw) or key.revoked:
                raise failed
            if not key.provider.is_active or not key.tenant.is_active:
                raise failed
            self.remember(digest, key, now)
        if key.has_expired:
            raise failed
        set_scope(key.tenant)  # the view's dispatch resets it when the request ends
        audit_actor_api_key(key)  # what this request changes is this key's doing
        if key.last_used_at is None or key.last_used_at < now - LAST_USED_EVERY:
            ProviderAPIKey._base_manager.filter(pk=key.pk).update(last_used_at=now)
            key.last_used_at = now
        return ProviderClient(key), key

    @staticmethod
    def remembered(digest: str, now: datetime) -> ProviderAPIKey | None:
        seconds = settings.TKERP_API_KEY_CACHE_SECONDS
        found = _verified.get(digest) if seconds > 0 else None
        if found is None or not timedelta(0) <= now - found[1] < timedelta(seconds=seconds):
            return None
        return found[0]

    @staticmethod
    def remember(digest: str, key: ProviderAPIKey, now: datetime) -> None:
        if settings.TKERP_API_KEY_CACHE_SECONDS <= 0:
            return
        if len(_verified) >= VERIFIED_KEYS_MAX:
            _verified.clear()
        _verified[digest] = (key, now)

    def authenticate_header(self, request) -> str:
        return 'Api-Key realm="api"'


class HasProviderKey(permissions.BasePermission):
    """A valid key for reading; a write-scoped key for anything else."""

    message = "This key is read-only; ask the seller for a key with the write scope."

    def has_permission(self, request, view) -> bool:
        key = request.auth
        if not isinstance(key, ProviderAPIKey):
            raise exceptions.NotAuthenticated(
                "Send your key as `Authorization: Api-Key <key>`.", code="not_authenticated"
            )
        if request.method in permissions.SAFE_METHODS:
            return True
        return key.can_write


class PerKeyThrottle(throttling.SimpleRateThrottle):
    """Requests per key (TKERP_API_THROTTLE_RATE, e.g. 1200/min), counted in the default
    cache: set a shared cache (Redis) when several web processes serve the API."""

    scope = "provider_key"

    def get_rate(self) -> str:
        return settings.TKERP_API_THROTTLE_RATE

    def get_cache_key(self, request, view):
        if not isinstance(request.auth, ProviderAPIKey):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.auth.prefix}
