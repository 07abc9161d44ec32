"""`manage.py runall`: the back office and the django-q2 cluster in one terminal (`make demo`).

Ctrl-C stops both cleanly: the cluster finishes its current tasks first (see tkerp.supervisor).
"""

import sys

from django.core.management.base import BaseCommand

from tkerp.supervisor import supervise


class Command(BaseCommand):
    help = "Run the web server and the background workers together; Ctrl-C stops both."

    def add_arguments(self, parser):
        parser.add_argument(
            "addrport", nargs="?", default="127.0.0.1:8000", help="Web server address and port."
        )
        parser.add_argument(
            "--grace",
            type=float,
            default=30.0,
            help="Seconds each process is given to stop before it is killed (default 30).",
        )

    def handle(self, *args, addrport: str, grace: float, **options) -> None:
        manage = [sys.executable, sys.argv[0]]
        code = supervise(
            {
                "web": [*manage, "runserver", addrport, "--noreload"],
                "worker": [*manage, "qcluster"],
            },
            grace=grace,
            out=self.stdout,
        )
        if code:
            sys.exit(code)
        self.stdout.write("Stopped.")
