"""The embedded PostgreSQL of the demo and the tests: started once, shared, recovered after a crash.

Each test runs its own server in a temporary data directory (real binaries, real processes), so
none of them touches the server the suite itself may be running on.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from tkerp import embedded_postgres as ep

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def data_dir(tmp_path):
    path = tmp_path / "pgdata"
    yield path
    ep.server_stop(path)


def query(data_dir: Path, sql: str, database: str = "demo"):
    with psycopg.connect(**ep.connection_params(data_dir, database), autocommit=True) as conn:
        cursor = conn.execute(sql)
        return cursor.fetchall() if cursor.description else None


def test_first_use_initialises_starts_and_creates_the_database(data_dir):
    status = ep.server_ensure(data_dir, database="demo")
    assert status.running and status.initialised
    assert status.socket_dir == data_dir.resolve()
    assert (data_dir / f".s.PGSQL.{ep.PORT}").exists()
    assert query(data_dir, "SELECT current_database()") == [("demo",)]
    # Unix socket only: nothing listens on TCP.
    assert query(data_dir, "SHOW listen_addresses") == [("",)]


def test_data_survives_a_stop_and_a_restart(data_dir):
    ep.server_ensure(data_dir, database="demo")
    query(data_dir, "CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)")
    assert ep.server_stop(data_dir) is True
    assert ep.server_status(data_dir).running is False
    assert ep.server_stop(data_dir) is False  # nothing to stop
    ep.server_ensure(data_dir, database="demo")
    assert query(data_dir, "SELECT v FROM kept") == [(42,)]


def test_a_killed_server_is_started_again_by_the_next_caller(data_dir):
    first = ep.server_ensure(data_dir, database="demo")
    os.kill(first.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while ep.server_status(data_dir).running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (data_dir / "postmaster.pid").exists()  # the crash left its lock file
    second = ep.server_ensure(data_dir, database="demo")
    assert second.running and second.pid != first.pid


def test_a_stale_pid_file_naming_another_live_program_is_cleared(data_dir):
    """After a crash the pid in postmaster.pid may belong to an unrelated process by now."""
    first = ep.server_ensure(data_dir, database="demo")
    ep.server_stop(data_dir)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lines = [str(bystander.pid), str(data_dir.resolve()), "0", str(ep.PORT), "", "", "", ""]
        (data_dir / "postmaster.pid").write_text("\n".join(lines) + "\n")
        assert ep.server_status(data_dir).pid is None  # not a postgres of ours
        second = ep.server_ensure(data_dir, database="demo")
        assert second.running and second.pid not in (first.pid, bystander.pid)
    finally:
        bystander.kill()


def test_many_processes_starting_at_once_share_one_server(data_dir):
    """The demo's web, workers and a second terminal all start at the same moment."""
    code = (
        "import sys; from tkerp import embedded_postgres as ep; "
        "print(ep.server_ensure(sys.argv[1], database='demo').pid)"
    )

    def start(_):
        done = subprocess.run(
            [sys.executable, "-c", code, str(data_dir)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        return int(done.stdout.strip().splitlines()[-1])

    with ThreadPoolExecutor(max_workers=4) as pool:
        pids = set(pool.map(start, range(4)))
    assert len(pids) == 1
    assert ep.server_status(data_dir).pid in pids


def test_a_data_dir_too_deep_for_a_socket_name_gets_its_socket_in_the_temp_dir(tmp_path):
    deep = tmp_path.joinpath(*(["nested-folder-name"] * 8), "pgdata")
    socket_dir = ep.socket_dir_for(deep)
    assert socket_dir != deep
    assert len(str(socket_dir / ".s.PGSQL.5432")) <= ep.SOCKET_PATH_MAX
    assert ep.socket_dir_for(deep) == socket_dir  # every process computes the same one


def settings_in_subprocess(env: dict) -> subprocess.CompletedProcess:
    code = (
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'tkerp.settings'; "
        "django.setup(); from django.conf import settings; "
        "print(settings.DATABASES['default']['ENGINE'])"
    )
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DEBUG"}}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True
    )


def test_without_debug_and_database_url_settings_refuse_to_start():
    done = settings_in_subprocess({"DEBUG": "false", "SECRET_KEY": "x" * 50})
    assert done.returncode != 0
    assert "DATABASE_URL is not set" in done.stderr
    assert "embedded" in done.stderr


def test_a_database_url_that_is_not_postgresql_is_refused():
    done = settings_in_subprocess({"DEBUG": "true", "DATABASE_URL": "sqlite:///demo.sqlite3"})
    assert done.returncode != 0
    assert "PostgreSQL only" in done.stderr


def test_with_debug_and_no_database_url_the_embedded_backend_is_used():
    done = settings_in_subprocess({"DEBUG": "true"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "tkerp.db.embedded"


def test_make_dbstop_stops_the_server_of_a_checkout_that_only_ran_the_tests(data_dir, tmp_path):
    """`make test` starts the embedded server with the test settings and writes no
    var/demo.env; `make dbstop` must still stop it, with nothing exported."""
    ep.server_ensure(data_dir, database="demo")
    # Not the make that may be running the suite (`make test`): its flags and level.
    unset = {"DATABASE_URL", "DEBUG", "SECRET_KEY", "DJANGO_SETTINGS_MODULE"}
    unset |= {"MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES"}
    clean = {k: v for k, v in os.environ.items() if k not in unset}
    dry = subprocess.run(
        ["make", "--no-print-directory", "-n", "dbstop"],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        check=True,
    )
    # The recipe's command (an install step may come first when .venv is not up to date).
    [command] = [line for line in dry.stdout.splitlines() if "dbserver stop" in line]
    env = {
        **clean,
        "TKERP_LOCAL_ENV": str(tmp_path / "no-demo.env"),  # as if `make demo` never ran
        "TKERP_EMBEDDED_PGDATA": str(data_dir),
    }

    done = subprocess.run(
        ["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "stopped"
    assert ep.server_status(data_dir).running is False
