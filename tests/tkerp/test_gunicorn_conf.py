"""The web processes' gunicorn settings (gunicorn.conf.py at the checkout's root)."""

import gc
import sys
from pathlib import Path

from django.urls import get_resolver
from gunicorn.app.base import Application

CONF = Path(__file__).resolve().parents[2] / "gunicorn.conf.py"


class _App(Application):
    def init(self, parser, opts, args):
        return None

    def load(self):  # never run here
        raise AssertionError


def _config() -> _App:
    """The settings as gunicorn loads them from the file (its validators run on each)."""
    app = _App.__new__(_App)
    app.usage, app.prog, app.callable = None, "gunicorn", None
    app.load_default_config()
    app.load_config_from_file(str(CONF))
    return app


def test_gunicorn_accepts_the_file_as_it_reads_it():
    app = _config()
    assert app.cfg.worker_class_str == "gthread"
    assert app.cfg.threads == 1
    assert app.cfg.workers >= 2


def test_a_worker_loads_the_url_conf_then_freezes_it_out_of_full_collections():
    app = _config()
    try:
        app.cfg.post_worker_init(None)
        assert "url_patterns" in get_resolver().__dict__  # the URL conf's modules are imported
        assert "logistics.api.views" in sys.modules
        assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()
