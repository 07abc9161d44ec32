"""gunicorn's settings for tkerp's web processes (gunicorn reads this file from the directory it
starts in: `gunicorn tkerp.wsgi -b 0.0.0.0:8000` from the checkout). Command-line options win.

Two single-thread gthread workers per core, keep-alive: measured with bench/api.py, idle, this
layout had the lowest API p99 at 16 connections (the README's performance section)."""

import gc
import os

worker_class = "gthread"
workers = 2 * (os.cpu_count() or 1)
threads = 1


def post_worker_init(worker) -> None:
    """Load the URL conf (and so every view, serializer and the API schema's modules) now, then
    freeze what is loaded: it lives as long as the worker, and a full garbage collection that
    walks it stops a request for about 80 ms (bench/api.py's p99). Frozen objects are never
    scanned again, so a full collection only walks what requests made since."""
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 (imports the URL conf's modules)
    gc.collect()
    gc.freeze()
