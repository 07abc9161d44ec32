"""Django's `makemigrations`, run as the tables' owner: it reads the migration history to check
for conflicts, and on a database never migrated the application role does not exist yet (`make
lint` runs it on a fresh embedded server)."""

from django.core.management.commands import makemigrations

from tkerp.db.postgres.base import database_owner


class Command(makemigrations.Command):
    def execute(self, *args, **options):
        with database_owner():
            return super().execute(*args, **options)
