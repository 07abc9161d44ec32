"""The invitation page a person reaches from the emailed link (see shops.invitations).

GET shows what the invitation is for and how to accept; only a POST accepts. A link that cannot
be used (forged, used, withdrawn, expired) gets one and the same 404 page, whatever the reason.
"""

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import login
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from shops.invitations import (
    INVALID_LINK,
    InvitationError,
    invitation_accept,
    invitation_accept_new_account,
    invitation_for_token,
)
from tkerp.tenants import SESSION_KEY

TEMPLATE = "shops/invitation_accept.html"


class NewAccountForm(forms.Form):
    """A password for the account the invited address gets (its username is the address)."""

    password1 = forms.CharField(
        label="Password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    password2 = forms.CharField(
        label="Password again",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("password1") and cleaned.get("password1") != cleaned.get("password2"):
            self.add_error("password2", "The two passwords differ.")
        return cleaned


def _joined(request: HttpRequest, membership) -> HttpResponseRedirect:
    request.session[SESSION_KEY] = membership.tenant_id  # work in the tenant just joined
    messages.success(
        request, f"Welcome to {membership.tenant.name}: you are a {membership.get_role_display()}."
    )
    return HttpResponseRedirect(reverse("admin:index"))


@never_cache
@require_http_methods(["GET", "POST"])
def invitation_accept_view(request: HttpRequest, token: str) -> HttpResponse:
    """Accept an invitation: as the logged-in account with the invited address, or by
    creating an account for that address."""
    context = {**admin.site.each_context(request), "title": "Invitation"}
    invitation = invitation_for_token(token=token)
    if invitation is None:
        return render(request, TEMPLATE, {**context, "error": INVALID_LINK}, status=404)
    context["invitation"] = invitation
    user = request.user
    form = NewAccountForm()
    error = ""
    if request.method == "POST" and user.is_authenticated:
        try:
            return _joined(request, invitation_accept(token=token, user=user))
        except InvitationError as exc:
            error = str(exc)
    elif request.method == "POST":
        form = NewAccountForm(request.POST)
        if form.is_valid():
            try:
                membership = invitation_accept_new_account(
                    token=token, password=form.cleaned_data["password1"]
                )
            except ValidationError as exc:
                form.add_error("password1", exc)
            except InvitationError as exc:
                error = str(exc)
            else:
                login(request, membership.user, backend="tkerp.auth.TenantRoleBackend")
                return _joined(request, membership)
    login_url = reverse("admin:login") + "?next=" + request.path
    status = 400 if error or form.errors else 200
    return render(
        request,
        TEMPLATE,
        {**context, "form": form, "error": error, "login_url": login_url},
        status=status,
    )
