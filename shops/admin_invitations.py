"""Invitations in the back office: invite an address, see who has not answered, withdraw or resend.

Owners and managers invite (managers up to manager: nobody grants a role above their own, see
`shops.invitations.invitable_roles`); operators and viewers only see the list. An invitation is
never edited after it is sent: withdraw it and invite again. Scoping comes from
`TenantModelAdmin`, so another tenant's invitation is a 404 like a missing one.
"""

from django import forms
from django.contrib import admin, messages
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import ngettext

from shops.invitations import (
    InvitationError,
    invitable_roles,
    invitation_check,
    invitation_create,
    invitation_resend,
    invitation_revoke,
)
from shops.models import Invitation
from tkerp.admin import TenantModelAdmin
from tkerp.tenancy import current_tenant


def accept_url_for(request):
    """Absolute accept links on the host the inviter is using."""
    return lambda token: request.build_absolute_uri(reverse("invitation-accept", args=[token]))


class InvitationForm(forms.ModelForm):
    class Meta:
        model = Invitation
        fields = ("email", "role")

    def clean_email(self):
        return self.cleaned_data["email"].strip().lower()

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        try:
            invitation_check(
                tenant=current_tenant(),
                email=cleaned["email"],
                role=cleaned["role"],
                invited_by=self.invited_by,
            )
        except InvitationError as exc:
            raise forms.ValidationError(str(exc)) from None
        return cleaned


@admin.register(Invitation)
class InvitationAdmin(TenantModelAdmin):
    """Invitations of the active tenant; adding one emails the link."""

    form = InvitationForm
    list_display = ("email", "role", "state", "invited_by", "sent_at", "expires_at")
    list_filter = ("role",)
    search_fields = ("email",)
    list_select_related = ("invited_by", "accepted_by")
    actions = ("resend_invitations", "revoke_invitations")
    readonly_fields = (
        "email",
        "role",
        "state",
        "invited_by",
        "created_at",
        "sent_at",
        "expires_at",
        "accepted_at",
        "accepted_by",
        "revoked_at",
    )

    def has_add_permission(self, request):
        # The operator must pick a tenant: an invitation always joins one.
        return current_tenant() is not None and super().has_add_permission(request)

    def has_change_permission(self, request, obj=None):
        # A sent invitation is shown, never edited; "change" on the list means the actions.
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request, obj=None):
        return False  # withdraw instead: the list keeps who was invited, by whom, and when

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj is not None else ()

    def get_fields(self, request, obj=None):
        return self.readonly_fields if obj is not None else ("email", "role")

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        form.invited_by = request.user
        return form

    def formfield_for_choice_field(self, db_field, request, **kwargs):
        if db_field.name == "role":
            tenant = current_tenant()
            allowed = invitable_roles(user=request.user, tenant=tenant) if tenant else []
            kwargs["choices"] = [
                (value, label) for value, label in db_field.choices if value in allowed
            ]
        return super().formfield_for_choice_field(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        created = invitation_create(
            tenant=current_tenant(),
            email=obj.email,
            role=obj.role,
            invited_by=request.user,
            accept_url=accept_url_for(request),
        )
        obj.pk = created.pk

    def response_add(self, request, obj, post_url_continue=None):
        # The same words whether or not the address has an account.
        self.message_user(request, f"Invitation sent to {obj.email}.", messages.SUCCESS)
        return self.response_post_save_add(request, obj)

    @admin.display(description="state")
    def state(self, invitation: Invitation) -> str:
        if invitation.accepted_at:
            return "accepted"
        if invitation.revoked_at:
            return "withdrawn"
        if invitation.expires_at and invitation.expires_at <= timezone.now():
            return "expired"
        return "open"

    def _within_ceiling(self, request, queryset):
        allowed = invitable_roles(user=request.user, tenant=current_tenant())
        return [invitation for invitation in queryset if invitation.role in allowed]

    @admin.action(description="Resend with a new link", permissions=["change"])
    def resend_invitations(self, request, queryset):
        if current_tenant() is None:
            self.message_user(request, "Choose a tenant first.", messages.ERROR)
            return
        url = accept_url_for(request)
        sent = sum(
            invitation_resend(invitation=invitation, accept_url=url)
            for invitation in self._within_ceiling(request, queryset)
        )
        message = ngettext("%d invitation sent again.", "%d invitations sent again.", sent) % sent
        if sent < len(queryset):
            message += " Accepted, withdrawn or higher-role invitations were left alone."
        self.message_user(request, message, messages.SUCCESS if sent else messages.WARNING)

    @admin.action(description="Withdraw", permissions=["change"])
    def revoke_invitations(self, request, queryset):
        if current_tenant() is None:
            self.message_user(request, "Choose a tenant first.", messages.ERROR)
            return
        revoked = sum(
            invitation_revoke(invitation=invitation)
            for invitation in self._within_ceiling(request, queryset)
        )
        self.message_user(
            request,
            ngettext("%d invitation withdrawn.", "%d invitations withdrawn.", revoked) % revoked,
            messages.SUCCESS if revoked else messages.WARNING,
        )
