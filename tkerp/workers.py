"""What a background worker process (a django-q2 cluster's) does when it starts.

A worker process lives for many tasks. When it starts, it loads what the tasks run (every app's
`tasks` module and what they import, and the address and phone parsers review warms on its first
order), then freezes all of it out of the garbage collector (`gc.freeze()`), as the web workers
do (gunicorn.conf.py). Frozen objects are never scanned again, so a full collection walks only
what tasks made since. Measured with bench/sync_spike.py: without it, five full collections over
the ~200,000 objects of a loaded process took 0.55 s of the 4.4 s of CPU a 2,800-order spike's
pass cost.

Connected to django-q2's `post_spawn` signal (tkerp.apps), which each worker process sends once,
before its first task.
"""

from __future__ import annotations

import gc
import logging
from importlib import import_module
from importlib.util import find_spec

from django.apps import apps

logger = logging.getLogger(__name__)


def worker_spawned(sender=None, proc_name: str = "", **kwargs) -> None:
    """`post_spawn` receiver: warm the process, then freeze it. Never raises: a worker that
    could not warm up still works, only its collections cost more."""
    try:
        worker_warm()
    except Exception:
        logger.exception("worker %s could not load its task modules ahead of time", proc_name)
    gc.collect()
    gc.freeze()


def worker_warm() -> None:
    """Import every app's `tasks` module and run the address and phone parsers once, so what
    the tasks use is loaded before the freeze rather than by the first task after it."""
    for config in apps.get_app_configs():
        name = f"{config.name}.tasks"
        if find_spec(name) is not None:
            import_module(name)
    from orders.address import Address, address_normalise

    address_normalise(
        Address(
            name="Warm Up",
            phone="(212) 555-0100",
            line1="1 Main Street Apt 2",
            city="New York",
            state="NY",
            postal_code="10001",
            country="US",
        )
    )
