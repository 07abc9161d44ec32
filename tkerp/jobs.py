"""The job/progress helper: background work a person waits for, with a page that follows it.

    job = job_create(tenant=tenant, kind="import", title="Import of skus.csv", user=user,
                     params={...})          # queued; the task starts once the caller commits
    ...
    def import_job_run(*, job, progress):  # a handler, registered in JOB_HANDLERS
        progress.start(total=rows, phase="Checking rows")
        progress.advance(done=2000)         # committed at once: the page shows it
        progress.errors_add([(row, column, message), ...])
        with transaction.atomic():
            ...                             # the work itself
            progress.succeed(message="...", result={...})  # in the same transaction

Guarantees, so that handlers stay simple:
- one run at a time: a PostgreSQL advisory lock per job, so a task delivered twice (a retry
  after a timeout, a duplicate) finds the job busy and leaves;
- a finished job (succeeded or failed) never runs again, whoever calls it;
- a handler that marks success in the transaction that does its work is retry-safe: a worker
  killed before the commit leaves nothing written and the job not finished, so the retry starts
  over; one killed after it finds the job finished.
- an unexpected exception fails the job with a plain sentence (the traceback goes to the log).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.db import connection, transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from tkerp.models import JOB_FINISHED, Job, JobError, JobStatus
from tkerp.tenancy import tenant_context

logger = logging.getLogger(__name__)

# Job kind -> dotted path of its handler, a function taking keyword-only `job` and `progress`.
JOB_HANDLERS = {"import": "tkerp.imports.import_job_run"}
# A job that a worker death interrupted this many times is failed rather than retried again.
JOB_MAX_ATTEMPTS = 3
# First key of the job's advisory lock: keeps it apart from any other advisory lock user.
_LOCK_NAMESPACE = 7_340_001
UNEXPECTED_JOB_ERROR = (
    "The job stopped because of an unexpected error, which was logged for the operator; "
    "nothing was changed."
)


@dataclass(frozen=True, slots=True)
class ProgressBar:
    """What the admin's one progress bar (`admin/progress_fragment.html`, kept current by
    `admin/progress_refresh.html`) shows of any background work: a job, a label batch."""

    total: int
    done: int
    failed: int
    percent: int  # 0-100
    live: bool  # still running: the bar refreshes itself
    status_label: str
    failed_label: str = "failed"

    @property
    def processed(self) -> int:
        return self.done + self.failed


def job_progress(*, job: Job) -> ProgressBar:
    """The job's progress bar: rows done of the total, problems found, status and phase."""
    status = job.get_status_display()
    return ProgressBar(
        total=job.progress_total,
        done=job.progress_done,
        failed=job.error_count,
        percent=job.percent,
        live=not job.is_finished,
        status_label=f"{status}: {job.phase}" if job.phase else status,
        failed_label="problems" if job.error_count != 1 else "problem",
    )


class JobFailed(Exception):
    """Raised by a handler to fail its job with this (plain, user-facing) message."""


def job_create(*, tenant, kind: str, title: str, user, params: dict) -> Job:
    """Record a job and queue its task once the current transaction commits."""
    if kind not in JOB_HANDLERS:
        raise ValueError(f"no handler for job kind {kind!r}")
    job = Job.objects.create(
        tenant=tenant,
        kind=kind,
        title=title[: Job._meta.get_field("title").max_length],
        created_by=user if getattr(user, "pk", None) else None,
        params=params,
        phase="Waiting for a worker",
    )
    job_enqueue(job=job)
    return job


def job_enqueue(*, job: Job) -> None:
    from django_q.tasks import async_task

    job_id, tenant_id = job.pk, job.tenant_id
    transaction.on_commit(
        lambda: async_task("tkerp.tasks.job_execute", job_id, tenant_id, task_name=f"job-{job_id}")
    )


class JobProgress:
    """What a handler reports through; every call outside a transaction commits at once."""

    def __init__(self, job: Job):
        self.job = job

    def start(self, *, total: int, phase: str) -> None:
        self._update(progress_total=total, progress_done=0, phase=phase)

    def phase(self, phase: str) -> None:
        self._update(phase=phase)

    def advance(self, *, done: int) -> None:
        self._update(progress_done=done)

    def errors_add(self, errors: Iterable[tuple[int | None, str, str]]) -> int:
        """Record problems as (row or None, column, message); returns how many."""
        rows = [
            JobError(tenant_id=self.job.tenant_id, job=self.job, row=r, column=c[:100], message=m)
            for r, c, m in errors
        ]
        JobError.objects.bulk_create(rows, batch_size=1000)
        if rows:
            self.job.error_count += len(rows)
            self._update(error_count=self.job.error_count)
        return len(rows)

    def succeed(self, *, message: str, result: dict | None = None) -> None:
        self._finish(JobStatus.SUCCEEDED, message=message, result=result or {})

    def fail(self, *, message: str, result: dict | None = None) -> None:
        self._finish(JobStatus.FAILED, message=message, result=result or {})

    def _finish(self, status: str, *, message: str, result: dict) -> None:
        self._update(
            status=status,
            message=message,
            result=result,
            phase="",
            finished_at=timezone.now(),
        )

    def _update(self, **values) -> None:
        for name, value in values.items():
            setattr(self.job, name, value)
        Job.objects.filter(pk=self.job.pk).update(**values)


@contextmanager
def _job_lock(job_id: int) -> Iterator[bool]:
    """Hold the job's session-level advisory lock for the block; yields whether it was free."""
    key = job_id & 0x7FFFFFFF
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [_LOCK_NAMESPACE, key])
        acquired = cursor.fetchone()[0]
    try:
        yield acquired
    finally:
        if acquired:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [_LOCK_NAMESPACE, key])


def job_execute(*, job_id: int, tenant) -> Job | None:
    """Run job `job_id` of `tenant` unless it is finished or running elsewhere; see the module.

    Returns the job as it ended, or None when there was nothing to do.
    """
    with tenant_context(tenant), _job_lock(job_id) as free:
        if not free:
            logger.info("job %s is running in another worker; leaving it", job_id)
            return None
        job = Job.objects.filter(pk=job_id).first()
        if job is None or job.status in JOB_FINISHED:
            return None
        progress = JobProgress(job)
        if job.attempts >= JOB_MAX_ATTEMPTS:
            progress.fail(message=f"The job was interrupted {job.attempts} times; start it again.")
            return job
        # A fresh run: whatever an interrupted one recorded is recomputed.
        JobError.objects.filter(job=job).delete()
        progress._update(
            status=JobStatus.RUNNING,
            attempts=job.attempts + 1,
            started_at=timezone.now(),
            error_count=0,
            progress_done=0,
        )
        handler = import_string(JOB_HANDLERS[job.kind])
        try:
            handler(job=job, progress=progress)
        except JobFailed as failure:
            progress.fail(message=str(failure))
        except Exception:
            logger.exception("job %s (%s) failed", job.pk, job.kind)
            progress.fail(message=UNEXPECTED_JOB_ERROR)
        if job.status not in JOB_FINISHED:
            logger.error("job %s handler returned without finishing it", job.pk)
            progress.fail(message=UNEXPECTED_JOB_ERROR)
        return job
