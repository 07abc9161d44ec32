"""`manage.py dbserver status|start|stop|url`: the embedded PostgreSQL of the demo and the tests.

Nothing needs to start it by hand (the first connection does), but `stop` ends it cleanly
(`make demo` calls it on Ctrl-C) and `status` tells where it is. With DATABASE_URL set, the
embedded server is not used and the command says so.
"""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from tkerp import embedded_postgres


class Command(BaseCommand):
    help = "Show, start or stop the embedded PostgreSQL server (used when DATABASE_URL is unset)."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["status", "start", "stop", "url"])

    def handle(self, *args, action: str, **options) -> None:
        if settings.DATABASES["default"]["ENGINE"] != "tkerp.db.embedded":
            raise CommandError(
                "DATABASE_URL is set, so the embedded PostgreSQL is not used; manage that "
                "server with its own tools"
            )
        data_dir = settings.TKERP_EMBEDDED_PGDATA
        try:
            if action == "start":
                status = embedded_postgres.server_ensure(
                    data_dir, database=settings.DATABASES["default"]["NAME"]
                )
            elif action == "stop":
                stopped = embedded_postgres.server_stop(data_dir)
                self.stdout.write("stopped" if stopped else "was not running")
                return
            else:
                status = embedded_postgres.server_status(data_dir)
        except embedded_postgres.EmbeddedPostgresError as exc:
            raise CommandError(str(exc)) from None
        if action == "url":
            name = settings.DATABASES["default"]["NAME"]
            self.stdout.write(embedded_postgres.server_url(data_dir, database=name))
            return
        self.stdout.write(status.as_text())
