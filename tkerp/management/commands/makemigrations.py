"""Django's `makemigrations`, run as the tables' owner: it reads the migration history to check
for conflicts, and on a database never migrated the application role does not exist yet (`make
lint` runs it on a fresh embedded server). Called inside a transaction (a test, another
command) it keeps the caller's connection: roles can't be switched there."""

from django.core.management.commands import makemigrations
from django.db import connection

from tkerp.db.postgres.base import database_owner


class Command(makemigrations.Command):
    def execute(self, *args, **options):
        if connection.in_atomic_block:
            return super().execute(*args, **options)
        with database_owner():
            return super().execute(*args, **options)
