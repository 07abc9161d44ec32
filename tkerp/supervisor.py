"""Run a few long-lived processes together, with their output interleaved, and stop them cleanly.

`make demo` runs the web server and the django-q2 cluster this way (`manage.py runall`). A
Procfile runner such as honcho signals each process's whole process group, which kills
django-q's worker processes under its sentinel before the sentinel can stop them itself (it then
hangs until the runner's short grace period ends and kills everything). Here each process gets
SIGTERM on its main pid only, is given `grace` seconds to stop the way it wants, and only then
is its whole group killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TextIO


@dataclass
class Supervised:
    name: str
    command: Sequence[str]
    process: subprocess.Popen | None = None
    reader: threading.Thread | None = field(default=None, repr=False)


def _pump(item: Supervised, out: TextIO, width: int, lock: threading.Lock) -> None:
    assert item.process is not None and item.process.stdout is not None
    for line in item.process.stdout:
        stamp = time.strftime("%H:%M:%S")
        with lock:
            out.write(f"{stamp} {item.name:<{width}} | {line.rstrip()}\n")
            out.flush()


def supervise(
    commands: Mapping[str, Sequence[str]],
    *,
    grace: float = 30.0,
    out: TextIO | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    install_signal_handlers: bool = True,
    stop: threading.Event | None = None,
    on_started: Callable[[dict[str, int]], None] | None = None,
) -> int:
    """Start every command, stream their output with a name prefix, and return when they end.

    A SIGINT or SIGTERM to this process (or `stop` being set) stops them all: SIGTERM to each
    main process, then, after `grace` seconds, SIGKILL to what is left of each process group.
    If one process ends by itself, the others are stopped the same way. Returns 0 when stopped
    on request, else the exit code of the first process that ended.
    """
    out = out or sys.stdout
    stop = stop or threading.Event()
    lock = threading.Lock()
    width = max(len(name) for name in commands)
    items = [Supervised(name, command) for name, command in commands.items()]
    previous = {}
    if install_signal_handlers:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, lambda *_: stop.set())
    try:
        for item in items:
            item.process = subprocess.Popen(
                list(item.command),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=True,
                bufsize=1,
                # Its own session: the terminal's Ctrl-C reaches us only, and we decide.
                start_new_session=True,
                env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
                cwd=cwd,
            )
            item.reader = threading.Thread(target=_pump, args=(item, out, width, lock), daemon=True)
            item.reader.start()
            with lock:
                out.write(
                    f"{time.strftime('%H:%M:%S')} {item.name:<{width}} | started (pid "
                    f"{item.process.pid})\n"
                )
        if on_started is not None:
            on_started({item.name: item.process.pid for item in items})
        first_exit: int | None = None
        while not stop.is_set():
            ended = [item for item in items if item.process.poll() is not None]
            if ended:
                first_exit = ended[0].process.returncode
                with lock:
                    out.write(f"{ended[0].name} exited with code {first_exit}; stopping the rest\n")
                break
            stop.wait(0.2)
        _stop_all(items, grace=grace, out=out, lock=lock, width=width)
        return 0 if first_exit is None else (first_exit or 1)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for item in items:
            if item.process is not None and item.process.poll() is None:
                _kill_group(item.process)


def _stop_all(items, *, grace: float, out: TextIO, lock: threading.Lock, width: int) -> None:
    for item in items:
        if item.process.poll() is None:
            with lock:
                out.write(f"{time.strftime('%H:%M:%S')} {item.name:<{width}} | stopping\n")
            item.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for item in items:
        try:
            item.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with lock:
                out.write(f"{item.name} did not stop within {grace:g} s; killing it\n")
            _kill_group(item.process)
            item.process.wait()
    for item in items:
        # What a stopped process left in its group (its own children) goes too.
        _kill_group(item.process)
        if item.reader is not None:
            item.reader.join(timeout=2)


def _kill_group(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
