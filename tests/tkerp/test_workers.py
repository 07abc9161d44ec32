"""tkerp.workers: a background worker process warms up and freezes itself when it starts."""

import gc
import sys

import pytest
from django_q.signals import post_spawn

import tkerp.workers as workers
from orders import address


@pytest.fixture
def unfrozen():
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_a_spawned_worker_loads_what_tasks_run_then_freezes_it(unfrozen):
    address.address_normalise.cache_clear()

    post_spawn.send(sender="django_q", proc_name="Process-test")  # as django-q2's worker does

    for module in ("orders.tasks", "logistics.tasks", "shops.tasks", "inventory.tasks"):
        assert module in sys.modules
    assert address.address_normalise.cache_info().currsize == 1  # the parsers ran once
    assert gc.get_freeze_count() > 10_000


def test_a_worker_that_cannot_warm_up_still_starts_frozen(unfrozen, monkeypatch, caplog):
    def broken():
        raise ImportError("a task module is broken")

    monkeypatch.setattr(workers, "worker_warm", broken)

    workers.worker_spawned(proc_name="Process-test")  # does not raise: the worker still works

    assert gc.get_freeze_count() > 10_000
    assert "could not load its task modules" in caplog.text
