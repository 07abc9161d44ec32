"""Writing platform credentials: the token pair a connector refreshed."""

from __future__ import annotations

from django.db import transaction

from shops.models import ShopCredentials
from shops.platforms.base import TokenSet

TOKEN_FIELDS = (
    "access_token",
    "access_token_expires_at",
    "refresh_token",
    "refresh_token_expires_at",
)


def credentials_store_tokens(*, credentials: ShopCredentials, tokens: TokenSet) -> ShopCredentials:
    """Persist a refreshed token pair in one write and return the credentials now in force.

    `credentials` is the object whose refresh token was just used. Platforms that rotate refresh
    tokens (TikTok) retire the old pair, so both tokens are written together, under a row lock.
    Two workers may refresh at the same moment: a pair is written when nobody has rotated the
    row since the caller read it, or when it was issued later than the stored one (its access
    token expires later); otherwise the stored, newer pair is adopted. Neither worker clobbers
    the other's fresher tokens.
    """
    with transaction.atomic():
        # The base manager: token refreshes run in tasks and connectors, whatever the scope;
        # the row is pinned by its own pk and tenant, so nothing crosses tenants.
        row = ShopCredentials._base_manager.select_for_update().get(
            pk=credentials.pk, tenant_id=credentials.tenant_id
        )
        unchanged_since_read = (
            row.refresh_token == credentials.refresh_token
            and row.access_token == credentials.access_token
        )
        stored_expiry = row.access_token_expires_at
        new_expiry = tokens.access_token_expires_at
        issued_later = new_expiry is not None and (
            stored_expiry is None or new_expiry >= stored_expiry
        )
        if unchanged_since_read or issued_later:
            row.access_token = tokens.access_token
            row.access_token_expires_at = new_expiry
            # A platform that does not rotate refresh tokens answers without one: keep ours.
            if tokens.refresh_token:
                row.refresh_token = tokens.refresh_token
                row.refresh_token_expires_at = tokens.refresh_token_expires_at
            row.save(update_fields=[*TOKEN_FIELDS, "updated_at"])
    for field in TOKEN_FIELDS:
        setattr(credentials, field, getattr(row, field))
    return credentials
