"""The periodic jobs of order sync, as django-q2 `Schedule` rows, created idempotently.

`schedules_ensure()` runs after every `migrate` (shops.apps) and from `manage.py
setup_schedules`. It creates missing schedules and corrects the function and interval of
existing ones by name, but never moves a schedule's next run, so running it again changes
nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils import timezone


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    name: str
    func: str
    schedule_type: str  # django_q.models.Schedule.MINUTES / DAILY ...
    minutes: int | None = None


def schedule_specs() -> list[ScheduleSpec]:
    from django_q.models import Schedule

    from inventory.tasks import inventory_schedule_specs  # the stock push's jobs (issue 5)
    from live.tasks import live_schedule_specs  # live-session stock pools (issue 13)
    from logistics.tasks import provider_schedule_specs  # webhooks, reminders, order files

    return [
        ScheduleSpec(
            name="tkerp: sync due shops",
            func="shops.tasks.sync_due_shops",
            schedule_type=Schedule.MINUTES,
            minutes=1,
        ),
        ScheduleSpec(
            name="tkerp: SLA sweep",
            func="orders.tasks.sla_sweep_task",
            schedule_type=Schedule.MINUTES,
            minutes=1,
        ),
        ScheduleSpec(
            name="tkerp: poll parcel tracking",
            func="logistics.tasks.poll_tracking",
            schedule_type=Schedule.MINUTES,
            minutes=15,
        ),
        ScheduleSpec(
            name="tkerp: push due tracking",
            func="logistics.tasks.push_due_tracking",
            schedule_type=Schedule.MINUTES,
            minutes=1,
        ),
        ScheduleSpec(
            name="tkerp: refund labels left behind",
            func="logistics.tasks.resolve_left_labels",
            schedule_type=Schedule.MINUTES,
            minutes=5,
        ),
        ScheduleSpec(
            name="tkerp: prune sync history",
            func="shops.tasks.prune_sync_history",
            schedule_type=Schedule.DAILY,
        ),
        ScheduleSpec(
            name="tkerp: prune API idempotency keys",
            func="tkerp.tasks.idempotency_prune_task",
            schedule_type=Schedule.DAILY,
        ),
        *inventory_schedule_specs(),
        *provider_schedule_specs(),
        *live_schedule_specs(),
    ]


def schedules_ensure() -> list[str]:
    """Create or correct the schedules; returns the names of those created or changed."""
    from django_q.models import Schedule

    touched = []
    for spec in schedule_specs():
        schedule = Schedule.objects.filter(name=spec.name).first()
        wanted = {
            "func": spec.func,
            "schedule_type": spec.schedule_type,
            "minutes": spec.minutes,
            "repeats": -1,
        }
        if schedule is None:
            Schedule.objects.create(name=spec.name, next_run=timezone.now(), **wanted)
            touched.append(spec.name)
        elif any(getattr(schedule, key) != value for key, value in wanted.items()):
            Schedule.objects.filter(pk=schedule.pk).update(**wanted)
            touched.append(spec.name)
    return touched
