"""Change forms that do not write a page's old values back over newer ones.

A model form saves every field it shows. A page opened before the row changed (a sync, a label,
a shipment, another user) and saved afterwards would put back what it showed: a shipped parcel
pending again without its number, a shipped order without its shipped time. `OpenedStateForm`
carries a digest of what the page showed (`opened`, hidden) and refuses a save whose row changed
since, saying to reload; nothing is written then.
"""

from __future__ import annotations

import hashlib

from django import forms


class OpenedStateForm(forms.ModelForm):
    #: Who may have changed the row meanwhile, for the refusal's message.
    changed_by = "someone or something else"

    opened = forms.CharField(widget=forms.HiddenInput, required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "opened" in self.fields:
            self.fields["opened"].initial = self.initial["opened"] = self._state_digest()

    def _state_digest(self) -> str:
        """The row's current values of this form's fields, as one short digest."""
        if self.instance.pk is None:
            return ""
        values = [
            (name, self.initial.get(name))
            for name in sorted(self.fields)
            if name != "opened" and name in self.initial
        ]
        return hashlib.sha256(repr(values).encode()).hexdigest()[:32]

    def clean(self):
        cleaned = super().clean()
        opened = cleaned.get("opened")
        if opened and opened != self.initial.get("opened"):
            # Not added to any field: the page's values stay as typed, to be redone on a reload.
            raise forms.ValidationError(
                f"This {self._meta.model._meta.verbose_name} changed since you opened this page "
                f"({self.changed_by}): nothing was saved. Reload the page to see it as it is "
                "now, then make your change again.",
                code="stale",
            )
        return cleaned


class OpenedStateAdminMixin:
    """For a ModelAdmin whose form is an `OpenedStateForm` and whose fieldsets are declared: the
    hidden `opened` field joins the first fieldset on change pages (a field in no fieldset is
    left out of the form)."""

    def get_fieldsets(self, request, obj=None):
        fieldsets = list(super().get_fieldsets(request, obj))
        if obj is None or not fieldsets:
            return fieldsets
        names = {
            name
            for _, options in fieldsets
            for entry in options.get("fields", ())
            for name in (entry if isinstance(entry, list | tuple) else (entry,))
        }
        if "opened" not in names:
            title, options = fieldsets[0]
            fieldsets[0] = (title, {**options, "fields": (*options["fields"], "opened")})
        return fieldsets
