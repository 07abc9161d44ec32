"""Django's `flush`, run as the tables' owner: TRUNCATE is an owner's right, never the
application role's (it ignores row-level security)."""

from django.core.management.commands import flush

from tkerp.db.postgres.base import database_owner


class Command(flush.Command):
    def execute(self, *args, **options):
        with database_owner():
            return super().execute(*args, **options)
