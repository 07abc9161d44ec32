"""Secrets at rest: model fields stored Fernet-encrypted, and re-encryption with the newest key.

Platform tokens and app secrets, alert and provider webhook secrets are worth more to an
attacker than anything else in the database: a leaked backup or a read-only SQL injection must
not hand them over. `EncryptedTextField` stores `fernet:<token>` (AES-128-CBC + HMAC-SHA256,
from `cryptography`); the keys come from `TKERP_FERNET_KEYS` (comma-separated, newest first).
Values are encrypted with the newest key and decrypted with any of them, so a key is rotated by
putting a new one first, running `manage.py rotate_secrets`, then dropping the old one.

An empty value stays empty (the admin shows "not set", and `exclude(field="")` keeps working).
Encryption is randomised, so an encrypted field cannot be filtered on by value. A value without
the prefix is plaintext written before encryption existed: it reads back as is, and the
migration that introduced the field (and `rotate_secrets`) encrypts it.
"""

from __future__ import annotations

import base64
import binascii
import functools
from dataclasses import dataclass, field

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models
from django.db.models.functions import Cast

PREFIX = "fernet:"


class SecretUndecryptable(Exception):
    """A stored secret fits none of `TKERP_FERNET_KEYS` (a key was dropped too early)."""


class Ciphertext(str):
    """A value that is already encrypted: written to (or compared with) the column as is."""


def key_problems(keys: list[str]) -> list[str]:
    """What is wrong with a `TKERP_FERNET_KEYS` list, one message per problem (the checks and the
    cipher use it, so a bad key is a clear startup error rather than a failing save)."""
    if not keys:
        return ["TKERP_FERNET_KEYS is empty: set at least one key (see .env.example)"]
    problems = []
    for position, key in enumerate(keys, start=1):
        try:
            raw = base64.urlsafe_b64decode(key.encode())
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 32:
            problems.append(
                f"TKERP_FERNET_KEYS key {position} is not a Fernet key (32 bytes, url-safe "
                "base64: generate one with `python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'`)"
            )
    return problems


@functools.lru_cache(maxsize=8)
def _cipher(keys: tuple[str, ...]) -> MultiFernet:
    problems = key_problems(list(keys))
    if problems:
        raise ImproperlyConfigured("; ".join(problems))
    return MultiFernet([Fernet(key) for key in keys])


def cipher() -> MultiFernet:
    """The keys in force, newest first (cached per key list, so settings overrides apply)."""
    return _cipher(tuple(settings.TKERP_FERNET_KEYS))


def newest_key() -> Fernet:
    cipher()  # validates the list
    return Fernet(settings.TKERP_FERNET_KEYS[0])


def encrypt(value: str) -> Ciphertext:
    return Ciphertext(PREFIX + cipher().encrypt(value.encode()).decode())


def decrypt(stored: str) -> str:
    """The plaintext of a stored value (plaintext written before encryption passes through)."""
    if not stored or not stored.startswith(PREFIX):
        return stored
    try:
        return cipher().decrypt(stored[len(PREFIX) :].encode()).decode()
    except InvalidToken:
        raise SecretUndecryptable(
            "a stored secret fits none of TKERP_FERNET_KEYS; was a key removed before "
            "`manage.py rotate_secrets` ran?"
        ) from None


def last_four(value: str) -> str:
    """What the admin may show of a secret: its last four characters, when it is long enough
    for four characters to give little away."""
    return value[-4:] if len(value) >= 12 else ""


class EncryptedTextField(models.TextField):
    """Text stored Fernet-encrypted (see the module doc). `max_length` limits the plaintext in
    forms; the column is `text`, as the ciphertext is longer than what it hides."""

    description = "Text stored encrypted with the TKERP_FERNET_KEYS"

    def from_db_value(self, value, expression, connection):
        if not value:
            return value
        # Only a ciphertext is kept: legacy plaintext is encrypted on the next save.
        return StoredPlaintext(decrypt(value), stored=value if value.startswith(PREFIX) else "")

    def pre_save(self, model_instance, add):
        value = super().pre_save(model_instance, add)
        if value and isinstance(value, str) and not isinstance(value, Ciphertext | StoredPlaintext):
            # Encrypted once, here, and remembered on the instance: saving it again for another
            # field keeps this ciphertext.
            value = StoredPlaintext(value, stored=encrypt(value))
            setattr(model_instance, self.attname, value)
        return value

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if value is None or value == "" or isinstance(value, Ciphertext):
            return value
        if isinstance(value, StoredPlaintext) and value.stored:
            # Unchanged since it was read: keep its ciphertext, so saving the row for another
            # field does not rewrite the secret (the audit trail records only real changes).
            return value.stored
        return encrypt(value)


class StoredPlaintext(str):
    """A secret as read from the database, remembering the ciphertext it was read from; any
    new value assigned to the field is a plain `str` and is encrypted afresh."""

    def __new__(cls, value: str, *, stored: str):
        instance = super().__new__(cls, value)
        instance.stored = stored
        return instance

    def __reduce__(self):
        return (_stored_plaintext, (str(self), self.stored))


def _stored_plaintext(value: str, stored: str) -> StoredPlaintext:
    return StoredPlaintext(value, stored=stored)


# --- rotation --------------------------------------------------------------------------------


@dataclass(slots=True)
class RotationCount:
    """What `secrets_rotate` did to one field: re-encrypted with the newest key, encrypted for
    the first time (plaintext found), already under the newest key, and values no key opens."""

    rotated: int = 0
    encrypted: int = 0
    current: int = 0
    undecryptable: list[int] = field(default_factory=list)


def encrypted_fields() -> list[tuple[type[models.Model], str]]:
    """Every (model, field name) stored with `EncryptedTextField`, in a stable order."""
    found = []
    for model in apps.get_models():
        for model_field in model._meta.concrete_fields:
            if isinstance(model_field, EncryptedTextField):
                found.append((model, model_field.name))
    return sorted(found, key=lambda item: (item[0]._meta.label, item[1]))


def field_encrypt_all(model: type[models.Model], name: str, *, batch_size: int = 500):
    """Bring every stored value of `model.name` under the newest key; returns a RotationCount.

    Reads the raw column (a `Cast` skips the field's decryption), walks rows in pk order in
    batches, and writes each new value with a conditional UPDATE on the old ciphertext, so a
    token refreshed meanwhile by a worker (already under the newest key) is never overwritten.
    Running it again changes nothing: values under the newest key are left alone. Used by
    `manage.py rotate_secrets` and by the migration that introduced the encrypted fields (with
    a historical model).
    """
    count = RotationCount()
    newest = newest_key()
    keys = cipher()
    manager = model._base_manager
    last_pk = None
    while True:
        rows = manager.exclude(**{name: ""}).exclude(**{f"{name}__isnull": True})
        if last_pk is not None:
            rows = rows.filter(pk__gt=last_pk)
        batch = list(
            rows.annotate(_raw=Cast(name, output_field=models.TextField()))
            .order_by("pk")
            .values_list("pk", "_raw")[:batch_size]
        )
        if not batch:
            return count
        for pk, raw in batch:
            last_pk = pk
            if raw.startswith(PREFIX):
                token = raw[len(PREFIX) :].encode()
                try:
                    newest.decrypt(token)
                except InvalidToken:
                    pass
                else:
                    count.current += 1
                    continue
                try:
                    new = Ciphertext(PREFIX + keys.rotate(token).decode())
                except InvalidToken:
                    count.undecryptable.append(pk)
                    continue
                count.rotated += 1
            else:
                new = encrypt(raw)
                count.encrypted += 1
            manager.filter(pk=pk, **{name: Ciphertext(raw)}).update(**{name: new})


def secrets_rotate(*, batch_size: int = 500) -> dict[str, RotationCount]:
    """Re-encrypt every encrypted value of every model with the newest key; counts per
    `app_label.Model.field`. Idempotent and safe to run while workers write tokens."""
    from tkerp.tenancy import all_tenants

    with all_tenants():  # ESCAPE HATCH: every tenant's secrets are under the same keys
        return {
            f"{model._meta.label}.{name}": field_encrypt_all(model, name, batch_size=batch_size)
            for model, name in encrypted_fields()
        }
