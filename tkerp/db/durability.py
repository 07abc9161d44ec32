"""Work whose commits need not wait for the disk, because a later commit that does wait covers it.

A PostgreSQL commit waits until its WAL record is flushed to disk (`synchronous_commit = on`):
a millisecond or several per commit, and a spike's sync pass commits about eight times per
page (the page, the shipping and stock steps, review, and their side effects), serially. With
`synchronous_commit = off` a commit returns at once and the WAL writer flushes it a moment
later. A crash can then lose the last such commits, never a part of one and never out of order:
WAL is one sequence, so what is lost is a suffix. And any commit that does wait flushes every
record before its own, the deferred ones included.

`commits_deferred()` runs a block whose commits are deferred, for work that is stored again by
itself if a crash loses it. Its caller must commit durably afterwards what depends on the
block's work: the order sync stores a page and runs the pipeline on it deferred, then advances
the shop's watermark past the page in a commit that waits, so either the page's work is durable
with the watermark or the watermark was never moved and the next pass reads the page again
(ingest is idempotent). A door that answers someone (a webhook's sender, an API client) keeps
commits that wait: its answer must not outlive a crash. What the block queues may run before
the durable commit (a stock change's availability push, an alert): those are derived from the
orders and stock, so the re-read page derives them again, and the periodic reconcile repairs
availability whatever happened.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection

from tkerp.db.postgres.base import TRANSACTION_FAILED


@contextmanager
def commits_deferred() -> Iterator[None]:
    """Run the block with `synchronous_commit = off` on this connection (see the module), then
    put back what the connection had (the server's setting, or a session's own)."""
    with connection.cursor() as cursor:
        # One round trip: the setting as it was (OFFSET 0 reads it before the change), then off.
        cursor.execute(
            "SELECT was.setting, set_config('synchronous_commit', 'off', false) "
            "FROM (SELECT current_setting('synchronous_commit') AS setting OFFSET 0) was"
        )
        previous = cursor.fetchone()[0]
    try:
        yield
    finally:
        _synchronous_commit_restore(previous)


def _synchronous_commit_restore(previous: str) -> None:
    raw = connection.connection
    if raw is None or raw.closed:
        return  # a new connection starts from the server's setting
    if connection.needs_rollback or raw.info.transaction_status == TRANSACTION_FAILED:
        # The block's own transactions have ended by now, so a failed one began before the
        # change, and its rollback takes the change back with it.
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('synchronous_commit', %s, false)", [previous])
