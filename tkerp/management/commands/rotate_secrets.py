"""`manage.py rotate_secrets`: re-encrypt every stored secret with the newest Fernet key.

Rotation: put a new key first in TKERP_FERNET_KEYS (keep the old ones after it), deploy, run this
command, then drop the old keys. Safe to run again and while workers run (see
`tkerp.encryption.field_encrypt_all`); it reports what it did per field.
"""

from django.core.management.base import BaseCommand, CommandError

from tkerp.encryption import secrets_rotate


class Command(BaseCommand):
    help = "Re-encrypt every encrypted field with the newest key in TKERP_FERNET_KEYS."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=500)

    def handle(self, *args, batch_size: int, **options) -> None:
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        counts = secrets_rotate(batch_size=batch_size)
        totals = {"rotated": 0, "encrypted": 0, "current": 0}
        failed = []
        for label, count in counts.items():
            self.stdout.write(
                f"{label}: {count.rotated} re-encrypted, {count.encrypted} encrypted from "
                f"plaintext, {count.current} already under the newest key"
                + (f", {len(count.undecryptable)} unreadable" if count.undecryptable else "")
            )
            totals["rotated"] += count.rotated
            totals["encrypted"] += count.encrypted
            totals["current"] += count.current
            failed += [f"{label} id {pk}" for pk in count.undecryptable]
        self.stdout.write(
            f"total: {totals['rotated']} re-encrypted, {totals['encrypted']} encrypted from "
            f"plaintext, {totals['current']} already under the newest key"
        )
        if failed:
            raise CommandError(
                f"{len(failed)} value(s) fit none of TKERP_FERNET_KEYS (was a key removed too "
                f"early?): {', '.join(failed[:20])}"
            )
