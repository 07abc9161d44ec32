"""Who is calling the provider API: a provider's key, resolved to its tenant and provider.

`ProviderKeyAuthentication` reads `Authorization: Api-Key <key>`, finds the key by its clear
prefix, checks the hash, revocation and expiry (any failure: 401, the same answer whatever was
wrong) and puts the key's tenant in scope for the rest of the request, so every query of the
view is that tenant's. The view reads the provider from `request.auth.provider`.
"""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from rest_framework import authentication, exceptions, permissions, throttling
from rest_framework_api_key.permissions import KeyParser

from logistics.models import ProviderAPIKey
from tkerp.audit import audit_actor_api_key
from tkerp.tenancy import set_scope

# last_used_at is written at most this often per key: a busy key costs no write per request.
LAST_USED_EVERY = timedelta(minutes=1)


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
        if not dot or not prefix:
            raise failed
        # Before the key is known there is no tenant: the one lookup by prefix goes around the
        # scoped manager (the prefix is unique across tenants).
        key = (
            ProviderAPIKey._base_manager.select_related("tenant", "provider")
            .filter(prefix=prefix)
            .first()
        )
        if key is None or not key.is_valid(raw) or key.revoked or key.has_expired:
            raise failed
        if not key.provider.is_active or not key.tenant.is_active:
            raise failed
        set_scope(key.tenant)  # the view's dispatch resets it when the request ends
        audit_actor_api_key(key)  # what this request changes is this key's doing
        now = timezone.now()
        if key.last_used_at is None or key.last_used_at < now - LAST_USED_EVERY:
            ProviderAPIKey._base_manager.filter(pk=key.pk).update(last_used_at=now)
            key.last_used_at = now
        return ProviderClient(key), key

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
        from django.conf import settings

        return settings.TKERP_API_THROTTLE_RATE

    def get_cache_key(self, request, view):
        if not isinstance(request.auth, ProviderAPIKey):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.auth.prefix}
