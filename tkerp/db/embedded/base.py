"""Django's PostgreSQL backend, pointed at the embedded server (`tkerp.embedded_postgres`).

It connects through the server's Unix socket; when that fails (the server is not started yet,
was stopped, or the database does not exist yet) it starts or joins the server, creates the
database, and connects again. Everything else is tkerp's PostgreSQL backend, unchanged: one code
path for the demo, the tests and production (row-level security included: `tkerp.db.postgres`).
"""

from django.conf import settings
from django.db.backends.postgresql import base

from tkerp import embedded_postgres
from tkerp.db.postgres import base as tkerp_base


def embedded_data_dir():
    return settings.TKERP_EMBEDDED_PGDATA


class DatabaseWrapper(tkerp_base.DatabaseWrapper):
    def get_connection_params(self):
        params = super().get_connection_params()
        params["host"] = str(embedded_postgres.socket_dir_for(embedded_data_dir()))
        params["port"] = embedded_postgres.PORT
        params["user"] = embedded_postgres.SUPERUSER
        return params

    def get_new_connection(self, conn_params):
        try:
            return super().get_new_connection(conn_params)
        except base.Database.OperationalError:
            embedded_postgres.server_ensure(embedded_data_dir(), database=conn_params["dbname"])
            return super().get_new_connection(conn_params)
