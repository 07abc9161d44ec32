"""`manage.py runall`'s supervisor: processes stop the way they want, then are made to stop.

The processes here are small Python programs standing in for runserver and for django-q's
cluster (a sentinel that stops its own worker process on SIGTERM).
"""

from __future__ import annotations

import io
import os
import sys
import threading
import time
from pathlib import Path

import psutil

from tkerp.supervisor import supervise

WORKER = """
import signal, sys, time
def note(signum, frame):
    open(sys.argv[1], "a").write(f"worker got {signal.Signals(signum).name}\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, note)
signal.signal(signal.SIGUSR1, note)
print("worker ready", flush=True)
while True:
    time.sleep(0.05)
"""

SENTINEL = """
import signal, subprocess, sys, time
log = sys.argv[1]
worker = subprocess.Popen([sys.executable, sys.argv[2], log])
def stop(signum, frame):
    open(log, "a").write("sentinel got SIGTERM\\n")
    worker.send_signal(signal.SIGUSR1)  # the orderly way: the sentinel stops its worker
    worker.wait()
    open(log, "a").write("sentinel stopped cleanly\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print("sentinel ready", flush=True)
while True:
    time.sleep(0.05)
"""


def run_in_thread(commands, **kwargs):
    stop = threading.Event()
    started = threading.Event()
    pids: dict[str, int] = {}
    out = io.StringIO()
    result: dict[str, int] = {}

    def on_started(found):
        pids.update(found)
        started.set()

    def target():
        result["code"] = supervise(
            commands,
            out=out,
            install_signal_handlers=False,
            stop=stop,
            on_started=on_started,
            **kwargs,
        )

    thread = threading.Thread(target=target)
    thread.start()
    assert started.wait(10)
    return thread, stop, pids, out, result


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_stop_signals_only_the_main_process_so_it_can_stop_its_own_children(tmp_path: Path):
    log = tmp_path / "signals.log"
    (tmp_path / "sentinel.py").write_text(SENTINEL)
    (tmp_path / "worker.py").write_text(WORKER)
    commands = {
        "worker": [
            sys.executable,
            str(tmp_path / "sentinel.py"),
            str(log),
            str(tmp_path / "worker.py"),
        ]
    }
    thread, stop, pids, out, result = run_in_thread(commands, grace=10)
    wait_for(lambda: "sentinel ready" in out.getvalue() and "worker ready" in out.getvalue())
    children = psutil.Process(pids["worker"]).children()
    assert len(children) == 1
    stop.set()
    thread.join(15)
    assert result["code"] == 0
    assert log.read_text().splitlines() == [
        "sentinel got SIGTERM",
        "worker got SIGUSR1",  # never SIGTERM from outside: its sentinel stopped it
        "sentinel stopped cleanly",
    ]
    assert not psutil.pid_exists(children[0].pid)
    assert "worker | sentinel ready" in out.getvalue()


def test_a_process_that_ignores_sigterm_is_killed_after_the_grace_period():
    stubborn = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('up', flush=True)\nwhile True: time.sleep(0.05)"
    )
    commands = {"web": [sys.executable, "-c", stubborn]}
    thread, stop, pids, out, result = run_in_thread(commands, grace=0.5)
    wait_for(lambda: "web | up" in out.getvalue())
    stop.set()
    thread.join(15)
    assert result["code"] == 0
    assert "did not stop within 0.5 s; killing it" in out.getvalue()
    assert not psutil.pid_exists(pids["web"]) or psutil.Process(pids["web"]).status() == "zombie"


def test_one_process_ending_stops_the_others_and_gives_its_exit_code():
    commands = {
        "web": [sys.executable, "-c", "import sys; print('bad config', flush=True); sys.exit(3)"],
        "worker": [sys.executable, "-c", "import time\nwhile True: time.sleep(0.05)"],
    }
    thread, _stop, pids, out, result = run_in_thread(commands, grace=5)
    thread.join(15)
    assert not thread.is_alive()
    assert result["code"] == 3
    assert "web exited with code 3; stopping the rest" in out.getvalue()
    assert not psutil.pid_exists(pids["worker"]) or (
        psutil.Process(pids["worker"]).status() == "zombie"
    )


def test_runall_supervises_the_web_server_and_the_q_cluster(monkeypatch):
    """The command wires the two processes of the demo to the supervisor."""
    from django.core.management import call_command

    from tkerp.management.commands import runall

    seen = {}

    def fake_supervise(commands, **kwargs):
        seen.update(commands)
        return 0

    monkeypatch.setattr(runall, "supervise", fake_supervise)
    out = io.StringIO()
    call_command("runall", "127.0.0.1:8123", stdout=out)
    assert seen["web"][-3:] == ["runserver", "127.0.0.1:8123", "--noreload"]
    assert seen["worker"][-1] == "qcluster"
    assert os.path.basename(seen["web"][0]).startswith("python")
    assert "Stopped." in out.getvalue()
