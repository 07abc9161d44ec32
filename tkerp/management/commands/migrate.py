"""Django's `migrate`, run as the tables' owner (the login role), not the application role.

Row-level security applies to the application role; schema changes, data migrations and the
post_migrate step that installs the policies (`tkerp.rls`) need the owner, with every tenant in
scope.
"""

from django.core.management.commands import migrate

from tkerp.db.postgres.base import database_owner


class Command(migrate.Command):
    def execute(self, *args, **options):
        with database_owner():
            return super().execute(*args, **options)
