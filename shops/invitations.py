"""Invitations: the one way a person joins a tenant (besides the SaaS operator adding them).

An owner or manager invites an email address in a role no higher than their own. The address
gets a link carrying a signed, expiring token; only the token's SHA-256 is stored. Whoever opens
the link accepts it once: logged in with the account that has that address, or by creating an
account (username = the address) with a password on the accept page.

What the inviter sees and what the address receives never depend on whether an account with
that address exists: nothing here looks users up until the link is opened, and then only for
the person holding the link, who has shown they read that mailbox.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core import signing
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from shops.models import ROLE_RANK, Invitation, Membership, Role, Tenant
from tkerp.tenancy import all_tenants, tenant_context
from tkerp.tenants import user_role

logger = logging.getLogger("tkerp.invitations")

TOKEN_SALT = "tkerp.shops.invitation"
# A tenant cannot turn our mail server into a spam cannon: open invitations are capped.
MAX_OPEN_INVITATIONS = 50
INVALID_LINK = (
    "This invitation link cannot be used: it was used already, withdrawn, or it expired. "
    "Ask whoever invited you to send a new one."
)

AcceptUrl = Callable[[str], str]


class InvitationError(Exception):
    """Why an invitation cannot be sent or accepted, in words fit to show the user."""


def invitation_days() -> int:
    """How long an invitation link stays valid (`TKERP_INVITATION_DAYS`, default 7)."""
    return getattr(settings, "TKERP_INVITATION_DAYS", 7)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _new_token() -> tuple[str, str]:
    """A fresh signed token (it carries its own timestamp) and the hash stored for it."""
    token = signing.dumps(secrets.token_urlsafe(32), salt=TOKEN_SALT)
    return token, _token_hash(token)


def invitable_roles(*, user, tenant: Tenant) -> list[str]:
    """The roles `user` may invite people to in `tenant`: owners and managers, up to their own
    role; the SaaS operator any; everyone else none."""
    if user.is_superuser:
        return list(Role.values)
    own = user_role(user, tenant)
    if own not in (Role.OWNER, Role.MANAGER):
        return []
    return [role for role in Role.values if ROLE_RANK[role] <= ROLE_RANK[own]]


def invitation_check(*, tenant: Tenant, email: str, role: str, invited_by) -> None:
    """Raise `InvitationError` when `invited_by` may not invite `email` as `role` now."""
    if role not in invitable_roles(user=invited_by, tenant=tenant):
        raise InvitationError("You cannot invite someone to a role above your own.")
    with tenant_context(tenant):
        open_invitations = Invitation.objects.filter(accepted_at=None, revoked_at=None)
        if open_invitations.filter(email=email.strip().lower()).exists():
            raise InvitationError(
                "An invitation to this address is open already: resend it from the list."
            )
        if open_invitations.count() >= MAX_OPEN_INVITATIONS:
            raise InvitationError(
                f"This tenant has {MAX_OPEN_INVITATIONS} open invitations: withdraw some first."
            )


def invitation_create(
    *, tenant: Tenant, email: str, role: str, invited_by, accept_url: AcceptUrl
) -> Invitation:
    """Invite `email` to `tenant` as `role` and email the link (on commit)."""
    email = email.strip().lower()
    invitation_check(tenant=tenant, email=email, role=role, invited_by=invited_by)
    token, token_hash = _new_token()
    now = timezone.now()
    try:
        with tenant_context(tenant), transaction.atomic():
            invitation = Invitation.objects.create(
                tenant=tenant,
                email=email,
                role=role,
                invited_by=invited_by,
                token_hash=token_hash,
                sent_at=now,
                expires_at=now + timedelta(days=invitation_days()),
            )
            _email_on_commit(invitation=invitation, url=accept_url(token))
    except IntegrityError:  # the same address invited twice at once
        raise InvitationError(
            "An invitation to this address is open already: resend it from the list."
        ) from None
    return invitation


def invitation_resend(*, invitation: Invitation, accept_url: AcceptUrl) -> bool:
    """Send an open invitation again with a new link and a new expiry (the old link stops
    working); False when it was accepted or withdrawn meanwhile."""
    token, token_hash = _new_token()
    now = timezone.now()
    with tenant_context(invitation.tenant), transaction.atomic():
        updated = Invitation.objects.filter(
            pk=invitation.pk, accepted_at=None, revoked_at=None
        ).update(
            token_hash=token_hash,
            sent_at=now,
            expires_at=now + timedelta(days=invitation_days()),
        )
        if updated:
            invitation.refresh_from_db()
            _email_on_commit(invitation=invitation, url=accept_url(token))
    return bool(updated)


def invitation_revoke(*, invitation: Invitation) -> bool:
    """Withdraw an open invitation (its link stops working); False if it was not open."""
    with tenant_context(invitation.tenant):
        return bool(
            Invitation.objects.filter(pk=invitation.pk, accepted_at=None, revoked_at=None).update(
                revoked_at=timezone.now()
            )
        )


def _email_on_commit(*, invitation: Invitation, url: str) -> None:
    inviter = invitation.invited_by
    who = (inviter.get_full_name() or inviter.get_username()) if inviter else "Someone"
    subject = f"You are invited to join {invitation.tenant.name} on tkerp"
    valid_until = timezone.localtime(invitation.expires_at).strftime("%Y-%m-%d %H:%M %Z")
    body = (
        f"{who} invited you to work in {invitation.tenant.name} on tkerp as "
        f"{invitation.get_role_display().lower()}.\n\n"
        f"Open this link to accept (it works once, until {valid_until}):\n{url}\n\n"
        "If you have a tkerp account with this address, log in to accept; otherwise you can "
        "create one on that page.\nIf you did not expect this email, ignore it.\n"
    )
    recipient = invitation.email

    def send() -> None:
        try:
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [recipient])
        except Exception:
            # The invitation stays open: "resend" in the admin tries again.
            logger.exception("could not email invitation %s", invitation.pk)

    transaction.on_commit(send)


def invitation_for_token(*, token: str, for_update: bool = False) -> Invitation | None:
    """The open, unexpired invitation a link's token stands for, or None (whatever the reason:
    the page says the same thing for a forged, used, withdrawn or expired link)."""
    try:
        signing.loads(token, salt=TOKEN_SALT, max_age=timedelta(days=invitation_days()))
    except signing.BadSignature:  # includes SignatureExpired
        return None
    with all_tenants():  # ESCAPE HATCH: the token names its tenant; nobody is scoped yet
        invitations = Invitation.objects.select_related("tenant", "invited_by").filter(
            token_hash=_token_hash(token),
            accepted_at=None,
            revoked_at=None,
            expires_at__gt=timezone.now(),
            tenant__is_active=True,
        )
        if for_update:
            invitations = invitations.select_for_update(of=("self",))
        return invitations.first()


def _join(*, invitation: Invitation, user) -> Membership:
    """Mark the invitation used and make `user` a member (an existing membership keeps its
    role: an invitation never silently changes what someone may do)."""
    with tenant_context(invitation.tenant):
        Invitation.objects.filter(pk=invitation.pk).update(
            accepted_at=timezone.now(), accepted_by=user
        )
        membership, _ = Membership.objects.get_or_create(
            tenant=invitation.tenant, user=user, defaults={"role": invitation.role}
        )
    return membership


def invitation_accept(*, token: str, user) -> Membership:
    """Accept as the logged-in `user`, whose email must be the invited address."""
    with transaction.atomic():
        invitation = invitation_for_token(token=token, for_update=True)
        if invitation is None:
            raise InvitationError(INVALID_LINK)
        if (user.email or "").strip().lower() != invitation.email:
            raise InvitationError(
                "This invitation was sent to another email address than your account's. "
                "Log out, then open the link again."
            )
        return _join(invitation=invitation, user=user)


def invitation_accept_new_account(*, token: str, password: str) -> Membership:
    """Create an account for the invited address (username = the address) with `password`,
    and accept with it; returns the new membership (its `user` is the new account). Raises
    `InvitationError`, or Django's `ValidationError` for a password the validators refuse;
    nothing is written then."""
    user_model = get_user_model()
    with transaction.atomic():
        invitation = invitation_for_token(token=token, for_update=True)
        if invitation is None:
            raise InvitationError(INVALID_LINK)
        email = invitation.email
        if user_model._default_manager.filter(email__iexact=email).exists():
            # Only the holder of the link (who reads that mailbox) can get here.
            raise InvitationError(
                "There is a tkerp account with this email address already: log in with it to "
                "accept."
            )
        username = email
        if user_model._default_manager.filter(username__iexact=username).exists():
            username = f"{email[:140]}-{secrets.token_hex(3)}"
        user = user_model(username=username, email=email, is_staff=True)
        validate_password(password, user=user)
        user.set_password(password)
        user.save()
        return _join(invitation=invitation, user=user)
