"""Models of the house framework: alerts a person must see."""

from django.db import models
from django.db.models import Q

from tkerp.tenancy import TenantOwnedModel


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
