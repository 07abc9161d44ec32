"""Models of the house framework: alerts a person must see, and background jobs with progress."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from pghistory.models import Event as PghEvent

from tkerp.tenancy import TenantManager, TenantOwnedModel


class AlertSeverity(models.TextChoices):
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    ERROR = "error", "Error"
    CRITICAL = "critical", "Critical"


class Alert(TenantOwnedModel):
    """Something that needs a person: a shop's sync keeps failing, orders were rejected...

    An alert is identified by a dedupe `key` (e.g. ``shop:12:sync``): raising it again while it is
    open only bumps `occurrences` and `last_seen_at`, so the team is told once, not every minute.
    At most one open alert per (tenant, key); once resolved, the next raise opens a new one.
    """

    kind = models.CharField(max_length=40, db_index=True, help_text="e.g. sync_failing.")
    severity = models.CharField(
        max_length=16, choices=AlertSeverity.choices, default=AlertSeverity.ERROR
    )
    key = models.CharField(max_length=200, help_text="Dedupe key: one open alert per key.")
    title = models.CharField(max_length=200)
    message = models.TextField(blank=True)
    shop = models.ForeignKey(
        "shops.Shop", on_delete=models.CASCADE, null=True, blank=True, related_name="alerts"
    )
    opened_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    occurrences = models.PositiveIntegerField(default=1)
    notified_at = models.DateTimeField(null=True, blank=True)
    notified_channels = models.JSONField(
        default=list, blank=True, help_text="Channels already told (email, webhook)."
    )
    notify_error = models.TextField(blank=True)
    notify_queued_at = models.DateTimeField(
        null=True, blank=True, help_text="When the notification task was last queued."
    )

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "key"],
                condition=Q(resolved_at__isnull=True),
                name="alert_unique_open_key",
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "resolved_at", "-opened_at"], name="alert_tenant_open"),
        ]

    def __str__(self) -> str:
        return self.title

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Finished"
    FAILED = "failed", "Failed"


JOB_FINISHED = (JobStatus.SUCCEEDED, JobStatus.FAILED)


class Job(TenantOwnedModel):
    """Background work a person waits for: a large import now, label batches and reconciles next.

    The row is the contract between the admin page that shows progress and the task that does
    the work (`tkerp.jobs`): the task moves `status` forward and reports `progress_done` out of
    `progress_total` as it goes, and records problems as `JobError` rows. A finished job is
    never run again, which is what makes a retried or twice-delivered task harmless.
    """

    kind = models.CharField(max_length=40, help_text="Which handler runs it, e.g. import.")
    title = models.CharField(max_length=200)
    status = models.CharField(
        max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True
    )
    phase = models.CharField(max_length=100, blank=True, help_text="What it is doing now.")
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    params = models.JSONField(default=dict, blank=True, help_text="What the handler needs.")
    result = models.JSONField(default=dict, blank=True, help_text="Counts once finished.")
    message = models.TextField(blank=True, help_text="The outcome, in a sentence.")
    error_count = models.PositiveIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["tenant", "-created_at"], name="job_tenant_created")]

    def __str__(self) -> str:
        return self.title

    @property
    def is_finished(self) -> bool:
        return self.status in JOB_FINISHED

    @property
    def percent(self) -> int:
        if self.status == JobStatus.SUCCEEDED:
            return 100
        if not self.progress_total:
            return 0
        return min(100, self.progress_done * 100 // self.progress_total)


class JobError(TenantOwnedModel):
    """One problem a job found: a row and column of an imported file, or the file as a whole."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="errors")
    row = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: the whole file.")
    column = models.CharField(max_length=100, blank=True)
    message = models.TextField()

    class Meta:
        ordering = ["job", "row", "id"]
        indexes = [models.Index(fields=["tenant", "job", "row"], name="joberror_job_row")]

    def __str__(self) -> str:
        return f"row {self.row}: {self.column}: {self.message}"


class IdempotencyRecord(TenantOwnedModel):
    """One `Idempotency-Key` an API client used, and the answer it got (tkerp.api.idempotency).

    The row is inserted in the same transaction as the write it guards, so of two concurrent
    requests with one key the second waits on the unique index and then replays the first's
    answer; a request that fails with a server error rolls back and leaves the key free.
    `fingerprint` (method, path and body) tells a retry from a different request under the
    same key.
    """

    client = models.CharField(max_length=150, help_text="The API key's id (prefix and hash).")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=255)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    # The answer as sent (rendered text, not jsonb, which would reorder its keys): a replay
    # answers with the same bytes.
    response_body = models.TextField(blank=True, default="")
    response_content_type = models.CharField(max_length=100, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "client", "key"], name="idempotencyrecord_unique_key"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.method} {self.path} [{self.key}]"


class AuditEvent(TenantOwnedModel, PghEvent):
    """Base of every audit event model that `tkerp.audit.audited` generates (`<Model>Audit`).

    Tenant-owned like any other row: read through the scoped manager (fail closed), covered by
    the same row-level security. The generated model's own copy of `tenant` (non-null, with no
    index or constraint of its own: every insert pays for each) takes the place of the inherited
    one. `pgh_context` holds the actor; rows are written by triggers only, never by the
    application.
    """

    objects = TenantManager()

    class Meta:
        abstract = True
