"""Joining a tenant by invitation, through the real admin and the emailed link.

An owner (or a manager, up to manager) invites an address; the email carries a single-use,
expiring link; the invited person accepts logged in with that address, or by creating an
account. The inviter never learns whether the address has an account.
"""

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.db import connection
from django.test import Client
from django.utils import timezone

from shops.invitations import MAX_OPEN_INVITATIONS, invitation_days
from shops.models import Invitation, Membership, Role
from tests.factories import MembershipFactory, UserFactory
from tests.orders.admin_helpers import admin_url, assert_not_found, changelist_pks, run_action
from tkerp.tenants import SESSION_KEY

pytestmark = pytest.mark.django_db

LINK = re.compile(r"http://testserver(/invitations/[^/\s]+/)")
PASSWORD = "a-long-and-unusual-passphrase-42"


def member_client(tenant, role: str) -> Client:
    user = UserFactory(username=f"{role}-{tenant.slug}")
    MembershipFactory(tenant=tenant, user=user, role=role)
    client = Client()
    client.force_login(user)
    client.user = user
    return client


def invite(client, email: str, role: str = Role.OPERATOR):
    return client.post(admin_url(Invitation, "add"), {"email": email, "role": role}, follow=True)


def sent_link(index: int = -1) -> str:
    (path,) = LINK.findall(mail.outbox[index].body)
    return path


def invited(django_capture_on_commit_callbacks, client, email, role=Role.OPERATOR) -> str:
    """Invite `email` through the admin and return the path of the link it was sent."""
    with django_capture_on_commit_callbacks(execute=True):
        response = invite(client, email, role)
    assert response.status_code == 200, response.content
    return sent_link()


@pytest.fixture
def invite_link(client_a, django_capture_on_commit_callbacks):
    return invited(django_capture_on_commit_callbacks, client_a, "New.Hire@Example.com")


class TestInviting:
    def test_an_owner_invites_and_only_the_tokens_hash_is_stored(
        self, client_a, tenant_a, user_a, django_capture_on_commit_callbacks
    ):
        with django_capture_on_commit_callbacks(execute=True):
            response = invite(client_a, "New.Hire@Example.com", Role.MANAGER)

        assert "Invitation sent to new.hire@example.com." in response.content.decode()
        (invitation,) = Invitation._base_manager.all()
        assert (invitation.tenant, invitation.email, invitation.role) == (
            tenant_a,
            "new.hire@example.com",
            Role.MANAGER,
        )
        assert invitation.invited_by == user_a
        assert invitation.expires_at - invitation.sent_at == timedelta(days=invitation_days())
        (email,) = mail.outbox
        assert email.to == ["new.hire@example.com"] and "Alpha Goods" in email.subject
        token = sent_link().split("/")[2]
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM shops_invitation")
            row = cursor.fetchone()
        assert token not in repr(row)  # a database reader cannot accept
        assert invitation.token_hash != token and len(invitation.token_hash) == 64

    def test_the_inviter_cannot_tell_whether_the_address_has_an_account(
        self, client_a, user_b, django_capture_on_commit_callbacks
    ):
        def attempt(email):
            mail.outbox.clear()
            with django_capture_on_commit_callbacks(execute=True):
                response = invite(client_a, email)
            said = [str(m).replace(email, "EMAIL") for m in response.context["messages"]]
            hops = [(re.sub(r"\d+", "N", url), status) for url, status in response.redirect_chain]
            (sent,) = mail.outbox
            # The link's expiry is to the minute: two attempts may straddle one.
            body = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d", "WHEN", LINK.sub("LINK", sent.body))
            return response.status_code, hops, said, sent.subject, body

        has_account = attempt(user_b.email)  # owner of another tenant
        no_account = attempt("nobody-at-all@example.com")

        assert has_account == no_account

    def test_an_open_invitation_is_not_sent_twice(self, client_a, invite_link):
        response = invite(client_a, "new.hire@EXAMPLE.com")
        assert "is open already" in response.content.decode()
        assert Invitation._base_manager.count() == 1 and len(mail.outbox) == 1

    def test_open_invitations_are_capped(self, client_a, tenant_a, user_a):
        now = timezone.now()
        Invitation._base_manager.bulk_create(
            Invitation(
                tenant=tenant_a,
                email=f"p{n}@example.com",
                token_hash=f"{n:064d}",
                sent_at=now,
                expires_at=now + timedelta(days=1),
            )
            for n in range(MAX_OPEN_INVITATIONS)
        )
        response = invite(client_a, "one-more@example.com")
        assert "open invitations: withdraw some first" in response.content.decode()
        assert mail.outbox == []

    @pytest.mark.parametrize(
        ("role", "allowed"),
        [
            (Role.VIEWER, True),
            (Role.OPERATOR, True),
            (Role.MANAGER, True),
            (Role.OWNER, False),
        ],
    )
    def test_a_manager_invites_up_to_manager(self, tenant_a, role, allowed):
        manager = member_client(tenant_a, Role.MANAGER)
        form = manager.get(admin_url(Invitation, "add")).content.decode()
        assert (f'value="{role}"' in form) is allowed

        response = invite(manager, f"{role}@example.com", role)

        assert Invitation._base_manager.filter(role=role).exists() is allowed
        if not allowed:
            assert "Select a valid choice" in response.content.decode()

    def test_the_role_ceiling_holds_in_the_domain_function_too(self, tenant_a):
        from shops.invitations import InvitationError, invitation_create

        manager = member_client(tenant_a, Role.MANAGER).user
        with pytest.raises(InvitationError, match="above your own"):
            invitation_create(
                tenant=tenant_a,
                email="boss@example.com",
                role=Role.OWNER,
                invited_by=manager,
                accept_url=lambda token: token,
            )
        assert not Invitation._base_manager.exists()

    @pytest.mark.parametrize("role", [Role.OPERATOR, Role.VIEWER])
    def test_operators_and_viewers_cannot_invite(self, tenant_a, role):
        client = member_client(tenant_a, role)
        assert client.get(admin_url(Invitation, "add")).status_code == 403
        assert invite(client, "x@example.com").status_code == 403
        assert not Invitation._base_manager.exists()


class TestAccepting:
    def test_a_new_person_creates_an_account_and_joins(self, invite_link, tenant_a):
        visitor = Client()
        page = visitor.get(invite_link)
        assert page.status_code == 200
        assert "Alpha Goods" in page.content.decode() and "Create my account" in (
            page.content.decode()
        )

        response = visitor.post(invite_link, {"password1": PASSWORD, "password2": PASSWORD})

        assert response.status_code == 302 and response["Location"] == "/admin/"
        user = get_user_model().objects.get(email="new.hire@example.com")
        assert user.username == "new.hire@example.com" and user.check_password(PASSWORD)
        membership = Membership._base_manager.get(user=user)
        assert (membership.tenant, membership.role) == (tenant_a, Role.OPERATOR)
        assert visitor.session[SESSION_KEY] == tenant_a.pk
        assert visitor.get("/admin/").status_code == 200  # logged in, working in tenant A
        invitation = Invitation._base_manager.get()
        assert invitation.accepted_by == user and invitation.accepted_at is not None

    def test_a_weak_or_mismatched_password_writes_nothing(self, invite_link):
        visitor = Client()
        weak = visitor.post(invite_link, {"password1": "password", "password2": "password"})
        differ = visitor.post(invite_link, {"password1": PASSWORD, "password2": PASSWORD + "x"})
        assert weak.status_code == differ.status_code == 400
        assert "too common" in weak.content.decode()
        assert "differ" in differ.content.decode()
        assert not get_user_model().objects.filter(email="new.hire@example.com").exists()
        assert Invitation._base_manager.get().accepted_at is None

    def test_an_existing_account_logs_in_and_joins(
        self, client_a, tenant_a, tenant_b, user_b, django_capture_on_commit_callbacks
    ):
        user_b.email = "Owner.B@Bravo.example"
        user_b.save()
        link = invited(
            django_capture_on_commit_callbacks, client_a, "owner.b@bravo.example", Role.VIEWER
        )
        visitor = Client()
        page = visitor.get(link).content.decode()
        assert f'href="/admin/login/?next={link}"' in page

        logged_in = visitor.post(
            f"/admin/login/?next={link}",
            {"username": user_b.username, "password": "pass-word-123", "next": link},
        )
        assert logged_in.status_code == 302 and logged_in["Location"] == link
        assert "Join Alpha Goods" in visitor.get(link).content.decode()
        joined = visitor.post(link)

        assert joined.status_code == 302
        membership = Membership._base_manager.get(user=user_b, tenant=tenant_a)
        assert membership.role == Role.VIEWER
        # Still owner where they were owner.
        assert Membership._base_manager.get(user=user_b, tenant=tenant_b).role == Role.OWNER

    def test_an_account_with_another_address_cannot_accept(self, invite_link, client_b, user_b):
        response = client_b.post(invite_link)
        assert response.status_code == 400
        assert "another email address" in response.content.decode()
        assert not Membership._base_manager.filter(user=user_b, role=Role.OPERATOR).exists()
        assert Invitation._base_manager.get().accepted_at is None

    def test_a_link_works_once(self, invite_link):
        Client().post(invite_link, {"password1": PASSWORD, "password2": PASSWORD})
        again = Client().get(invite_link)
        second = Client().post(invite_link, {"password1": PASSWORD, "password2": PASSWORD})
        assert again.status_code == second.status_code == 404
        assert "cannot be used" in again.content.decode()
        assert get_user_model().objects.filter(email="new.hire@example.com").count() == 1

    def test_an_expired_link_is_refused(self, invite_link):
        Invitation._base_manager.update(expires_at=timezone.now() - timedelta(seconds=1))
        response = Client().post(invite_link, {"password1": PASSWORD, "password2": PASSWORD})
        assert response.status_code == 404
        assert not get_user_model().objects.filter(email="new.hire@example.com").exists()

    def test_a_link_past_its_signed_age_is_refused_even_if_the_row_says_open(
        self, invite_link, settings
    ):
        settings.TKERP_INVITATION_DAYS = 0  # the token's own timestamp is now too old
        assert Client().get(invite_link).status_code == 404

    @pytest.mark.parametrize("mangle", [lambda t: t[:-3] + "abc", lambda t: "forged:" + t])
    def test_a_tampered_or_made_up_link_gets_the_same_page(self, invite_link, mangle):
        token = invite_link.split("/")[2]
        assert Client().get(invite_link).status_code == 200  # the real one still works
        forged = Client().get(f"/invitations/{mangle(token)}/")
        assert forged.status_code == 404 and "cannot be used" in forged.content.decode()

    def test_an_invitation_to_an_inactive_tenant_is_refused(self, invite_link, tenant_a):
        tenant_a.is_active = False
        tenant_a.save()
        assert Client().get(invite_link).status_code == 404


class TestRevokeAndResend:
    def test_a_withdrawn_invitation_link_stops_working(self, client_a, invite_link):
        invitation = Invitation._base_manager.get()
        run_action(client_a, Invitation, "revoke_invitations", [invitation.pk])
        invitation.refresh_from_db()
        assert invitation.revoked_at is not None
        assert Client().get(invite_link).status_code == 404
        # Withdrawn: the address may be invited afresh.
        assert "Invitation sent" in invite(client_a, "new.hire@example.com").content.decode()

    def test_resend_replaces_the_link(
        self, client_a, invite_link, tenant_a, django_capture_on_commit_callbacks
    ):
        invitation = Invitation._base_manager.get()
        with django_capture_on_commit_callbacks(execute=True):
            run_action(client_a, Invitation, "resend_invitations", [invitation.pk])
        new_link = sent_link()
        assert len(mail.outbox) == 2 and new_link != invite_link
        assert Client().get(invite_link).status_code == 404
        response = Client().post(new_link, {"password1": PASSWORD, "password2": PASSWORD})
        assert response.status_code == 302
        assert Membership._base_manager.filter(tenant=tenant_a).count() == 2

    def test_an_accepted_invitation_is_neither_resent_nor_withdrawn(
        self, client_a, invite_link, django_capture_on_commit_callbacks
    ):
        Client().post(invite_link, {"password1": PASSWORD, "password2": PASSWORD})
        invitation = Invitation._base_manager.get()
        with django_capture_on_commit_callbacks(execute=True):
            run_action(client_a, Invitation, "resend_invitations", [invitation.pk])
            run_action(client_a, Invitation, "revoke_invitations", [invitation.pk])
        invitation.refresh_from_db()
        assert len(mail.outbox) == 1 and invitation.revoked_at is None

    def test_a_manager_cannot_withdraw_an_owners_invitation(
        self, client_a, tenant_a, django_capture_on_commit_callbacks
    ):
        invited(django_capture_on_commit_callbacks, client_a, "co-owner@example.com", Role.OWNER)
        manager = member_client(tenant_a, Role.MANAGER)
        invitation = Invitation._base_manager.get()
        run_action(manager, Invitation, "revoke_invitations", [invitation.pk])
        invitation.refresh_from_db()
        assert invitation.revoked_at is None

    def test_invitations_are_never_deleted_or_edited(self, client_a, invite_link):
        invitation = Invitation._base_manager.get()
        assert client_a.get(admin_url(Invitation, "delete", invitation.pk)).status_code == 403
        page = client_a.get(admin_url(Invitation, "change", invitation.pk))
        assert page.status_code == 200 and "new.hire@example.com" in page.content.decode()
        edit = client_a.post(
            admin_url(Invitation, "change", invitation.pk),
            {"email": "someone.else@example.com", "role": Role.OWNER},
        )
        assert edit.status_code == 403
        invitation.refresh_from_db()
        assert (invitation.email, invitation.role) == ("new.hire@example.com", Role.OPERATOR)


class TestTenantScope:
    def test_another_tenants_invitations_answer_404(self, client_b, invite_link):
        invitation = Invitation._base_manager.get()
        assert changelist_pks(client_b, Invitation) == set()
        assert_not_found(client_b, admin_url(Invitation, "change", invitation.pk))
        assert_not_found(client_b, admin_url(Invitation, "history", invitation.pk))

    def test_another_tenants_owner_cannot_withdraw_or_resend(self, client_b, invite_link):
        invitation = Invitation._base_manager.get()
        run_action(client_b, Invitation, "revoke_invitations", [invitation.pk])
        run_action(client_b, Invitation, "resend_invitations", [invitation.pk])
        invitation.refresh_from_db()
        assert invitation.revoked_at is None and len(mail.outbox) == 1

    def test_the_same_address_may_be_invited_by_two_tenants(
        self, client_a, client_b, django_capture_on_commit_callbacks
    ):
        invited(django_capture_on_commit_callbacks, client_a, "shared@example.com")
        invited(django_capture_on_commit_callbacks, client_b, "shared@example.com")
        assert Invitation._base_manager.filter(email="shared@example.com").count() == 2
        assert changelist_pks(client_a, Invitation) != changelist_pks(client_b, Invitation)
