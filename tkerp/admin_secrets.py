"""Secrets in admin forms: write-only inputs that show only whether a secret is set.

A secret (platform token, app secret, webhook signing secret) is never rendered back to the
browser: its input is an empty password box, left blank to keep the stored value, and a tick in
"Erase" clears it. The help text says whether one is set and, for a long enough secret, its last
four characters, so an owner can tell which one is stored without anyone reading it off a page.
"""

from __future__ import annotations

from django import forms

from tkerp.encryption import last_four


class SecretField(forms.CharField):
    """A secret typed into a password box: never rendered back, blank means "keep it"."""

    widget = forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"})

    def has_changed(self, initial, data):
        return bool(data)


def secret_state(value: str) -> str:
    """What the admin says about a stored secret."""
    if not value:
        return "Not set."
    tail = last_four(value)
    if tail:
        return f"Set, ending in …{tail}; leave blank to keep it."
    return "Set; leave blank to keep it."


def erase_field(names: tuple[str, ...]) -> forms.MultipleChoiceField:
    """The "Erase" ticks for a form's secrets (declare it as `clear_secrets` on the form)."""
    return forms.MultipleChoiceField(
        label="Erase",
        required=False,
        choices=[(name, name.replace("_", " ")) for name in names],
        widget=forms.CheckboxSelectMultiple,
        help_text="Tick a secret to erase what is stored.",
    )


class SecretsFormMixin:
    """For a ModelForm: the fields in `secret_fields` become `SecretField`s; blank keeps the
    stored value, a tick in `clear_secrets` erases it. Mix in before `forms.ModelForm`."""

    secret_fields: tuple[str, ...] = ()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        model = self._meta.model
        for name in self.secret_fields:
            if name not in self.fields:
                continue
            # Replace whatever the admin built (a textarea for tokens) with a password box.
            self.fields[name] = SecretField(
                label=self.fields[name].label,
                required=False,
                max_length=model._meta.get_field(name).max_length,
                help_text=secret_state(getattr(self.instance, name, "") or ""),
            )

    def clean(self):
        cleaned = super().clean()
        erase = set(cleaned.get("clear_secrets") or ())
        for name in self.secret_fields:
            if name not in self.fields:
                continue
            if name in erase:
                cleaned[name] = ""
            elif not cleaned.get(name):
                # Blank keeps what is stored (the box never shows it).
                cleaned[name] = getattr(self.instance, name, "")
        return cleaned
