"""The audit trail: who changed what and when, written by PostgreSQL in the same transaction.

Audited models carry `@audited(...)`: django-pghistory generates an event model (`<Model>Audit`)
holding the tracked fields, and PostgreSQL triggers write one event row per inserted, updated
(only when a tracked field changed) and deleted row. Triggers see every write: the ORM, bulk
`update()`/`bulk_create()`, raw SQL; an event row commits or rolls back with its change.

Who did it is the *actor*, put in the transaction's settings by `pghistory.context` and copied
into each event row (`pgh_context`, JSON: no shared context table, so every audit row belongs to
exactly one tenant): an admin user (`AuditContextMiddleware`), a provider API key
(`audit_actor_api_key`, called by the API's authentication), a django-q2 task (the worker
signals connected in `tkerp.apps`) or a management command (`audit_commands_install`).

Secret columns (encrypted credentials) are never copied; the event row lists the names of those
that changed (`secrets_changed`). Every event row has the `tenant_id` of its object.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pghistory
import pgtrigger
from django.db import models
from pghistory import runtime as pgh_runtime
from pghistory import trigger as pgh_trigger

# Actor kinds, as stored in `pgh_context["actor"]`.
ACTOR_USER = "user"
ACTOR_API_KEY = "api_key"
ACTOR_TASK = "task"
ACTOR_COMMAND = "command"
ACTOR_WEB = "web"  # a request with nobody signed in (a platform webhook...)

# Commands that serve requests or run tasks: those set their own actor per request or task,
# and a context opened around them would leak into forked workers.
COMMANDS_NOT_AUDITED = frozenset(
    {"runserver", "qcluster", "runall", "testserver", "test", "dbserver"}
)


class AuditTrigger(pgh_trigger.Event):
    """One row-level trigger writing an audit event: the tracked columns of NEW (OLD for a
    delete), the time, the label, the object's pk, the actor from the transaction's
    `pghistory.context_*` settings and, for models with secrets, which secrets changed."""

    def get_func(self, model):
        event_model = self.event_model
        row = self.row
        tracked = {f.name for f in model._meta.concrete_fields}
        values = {
            f.column: f'{row}."{f.column}"'
            for f in event_model._meta.concrete_fields
            if f.name in tracked and not isinstance(f, models.AutoField)
        }
        values["pgh_created_at"] = "NOW()"
        values["pgh_label"] = f"'{self.label}'"
        values["pgh_obj_id"] = f'{row}."{model._meta.pk.column}"'
        values["pgh_context"] = (
            "NULLIF(CURRENT_SETTING('pghistory.context_metadata', TRUE), '')::JSONB"
        )
        values["pgh_context_id"] = "NULLIF(CURRENT_SETTING('pghistory.context_id', TRUE), '')::UUID"
        secrets = [model._meta.get_field(name) for name in event_model.audit_secrets]
        if secrets:
            values["secrets_changed"] = _secrets_changed_sql(secrets, operation=self.label)
        columns = ", ".join(f'"{column}"' for column in values)
        sql = (
            f'INSERT INTO "{event_model._meta.db_table}" ({columns}) '
            f"VALUES ({', '.join(values.values())}); RETURN NULL;"
        )
        return pgtrigger.Func(sql)


def _secrets_changed_sql(secrets: list[models.Field], *, operation: str) -> str:
    """SQL for the names of the secret columns this write changed: on insert those set, on
    update those whose stored (encrypted) value differs, on delete those that were set."""
    if operation == "insert":
        tests = [f"COALESCE(NEW.\"{f.column}\", '') <> ''" for f in secrets]
    elif operation == "update":
        tests = [f'OLD."{f.column}" IS DISTINCT FROM NEW."{f.column}"' for f in secrets]
    else:
        tests = [f"COALESCE(OLD.\"{f.column}\", '') <> ''" for f in secrets]
    cases = ", ".join(
        f"CASE WHEN {test} THEN '{f.name}' END" for test, f in zip(tests, secrets, strict=True)
    )
    return f"ARRAY_REMOVE(ARRAY[{cases}]::varchar[], NULL)"


class _AuditRowEvent:
    """Registers `AuditTrigger` instead of pghistory's own trigger (same label and timing)."""

    def add_event_trigger(self, event_model):
        pgtrigger.register(
            AuditTrigger(
                event_model=event_model,
                label=self.label,
                name=self.trigger_name,
                row=self.row,
                operation=self.operation,
                condition=self.condition,
                level=pgtrigger.Row,
            )
        )(event_model.pgh_tracked_model)


class AuditInsert(_AuditRowEvent, pghistory.InsertEvent):
    pass


class AuditUpdate(_AuditRowEvent, pghistory.UpdateEvent):
    pass


class AuditDelete(_AuditRowEvent, pghistory.DeleteEvent):
    pass


def audited(
    *,
    model_name: str,
    fields: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
    secrets: Iterable[str] = (),
):
    """Class decorator: keep an audit trail of the model's `fields` (every concrete field but
    `exclude` when not given; `tenant` always).

    An insert and a delete are always recorded; an update only when a tracked field or a secret
    changed, so columns every sync or reservation touches (timestamps, counters, `reserved`)
    stay out by being excluded. `secrets` are encrypted columns: their values are never copied,
    the event lists which of them changed.
    """
    from django.contrib.postgres.fields import ArrayField

    from tkerp.models import AuditEvent

    secrets = list(secrets)
    skipped = {*exclude, *secrets}

    def wrap(model_class):
        pk_name = model_class._meta.pk.name
        names = (
            list(fields)
            if fields is not None
            else [
                f.name
                for f in model_class._meta.local_concrete_fields
                if f.name not in skipped and f.name != pk_name
            ]
        )
        tracked = ["tenant", *[name for name in names if name != "tenant"]]
        attrs: dict[str, Any] = {"audit_secrets": tuple(secrets)}
        if secrets:
            attrs["secrets_changed"] = ArrayField(
                models.CharField(max_length=64),
                default=list,
                blank=True,
                help_text="Secret fields this change set or replaced (values are never kept).",
            )
        name = model_name.lower()
        return pghistory.track(
            AuditInsert(trigger_name="audit_insert"),
            AuditUpdate(
                trigger_name="audit_update",
                condition=pgtrigger.AnyChange(*tracked, *secrets),
            ),
            AuditDelete(trigger_name="audit_delete"),
            fields=tracked,
            obj_field=pghistory.ObjForeignKey(related_name="+", db_index=False),
            context_field=pghistory.ContextJSONField(),
            context_id_field=pghistory.ContextUUIDField(),
            model_name=model_name,
            base_model=AuditEvent,
            attrs=attrs,
            # One index, for an object's trail (the History page and its export): every index
            # more is paid on each insert of the sync and reservation paths.
            meta={"indexes": [models.Index(fields=["tenant", "pgh_obj", "pgh_id"], name=name)]},
        )(model_class)

    return wrap


def audit_event_model(model: type[models.Model]) -> type[models.Model] | None:
    """The audit event model of `model`, or None when it is not audited."""
    event_models = getattr(model._meta.concrete_model, "pgh_event_models", None) or {}
    for event_model in event_models.values():
        if issubclass(event_model, _audit_base()):
            return event_model
    return None


def _audit_base():
    from tkerp.models import AuditEvent

    return AuditEvent


# --- who: the actor ---------------------------------------------------------------------------


def audit_context(**metadata: Any) -> pghistory.context:
    """Enter to make `metadata` the actor of every change until the block ends; a nested
    call adds to (and may overwrite keys of) the actor already in place."""
    return pghistory.context(**metadata)


def audit_actor_active() -> bool:
    """True while an actor is set on this thread (a request, task or command is under way)."""
    return hasattr(pgh_runtime._tracker, "value")


def audit_actor_metadata() -> dict[str, Any] | None:
    """The actor set on this thread (a copy), for a thread it starts to enter with
    `audit_context(**metadata)`: pghistory keeps the actor per thread."""
    current = getattr(pgh_runtime._tracker, "value", None)
    return dict(current.metadata) if current is not None else None


def audit_actor_api_key(key) -> None:
    """The request is a provider API call: the key (its prefix and name) and its provider are
    the actor of what it changes. Called by the API's authentication once the key is valid."""
    pghistory.context(
        actor=ACTOR_API_KEY,
        user_id=None,
        username=None,
        api_key=key.prefix,
        api_key_name=key.name,
        provider=key.provider.code,
    )


class AuditContextMiddleware:
    """Every request's changes carry their actor: the signed-in user (id and username) or, for
    nobody signed in, the kind "web" (a webhook; the provider API names its key itself)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if audit_actor_active():
            # A request served in-process for code that already has an actor (a task talking
            # to a sandbox through the in-process transport): that code stays the actor.
            return self.get_response(request)
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            metadata = {"actor": ACTOR_USER, "user_id": user.pk, "username": user.get_username()}
        else:
            metadata = {"actor": ACTOR_WEB}
        with pghistory.context(**metadata, url=request.path[:200]):
            return self.get_response(request)


# django-q2 worker signals (connected in tkerp.apps): a task's changes name the task. A stack per
# thread, as a task run synchronously may start another.
_task_contexts = threading.local()


def _task_stack() -> list:
    if not hasattr(_task_contexts, "stack"):
        _task_contexts.stack = []
    return _task_contexts.stack


def audit_task_started(sender=None, func=None, task=None, **kwargs) -> None:
    """pre_execute: the task becomes the actor, unless one is already in place (a task run
    synchronously inside a request, command or task is that caller's doing)."""
    if audit_actor_active() or task is None:
        _task_stack().append(None)
        return
    name = task.get("func")
    if callable(name):
        name = f"{name.__module__}.{name.__qualname__}"
    context = pghistory.context(
        actor=ACTOR_TASK,
        task=str(name)[:200],
        task_id=str(task.get("id", "")),
        task_name=str(task.get("name", ""))[:100],
    )
    context.__enter__()
    _task_stack().append(context)


def audit_task_finished(sender=None, func=None, task=None, **kwargs) -> None:
    """post_execute_in_worker (sent whether the task succeeded or failed): the task's actor
    ends with it, so the worker's next task starts with none."""
    stack = _task_stack()
    context = stack.pop() if stack else None
    if context is not None:
        context.__exit__(None, None, None)


def audit_commands_install() -> None:
    """Make every management command (but the servers) the actor of its changes.

    Django has no hook around a command, so `BaseCommand.execute` is wrapped once, at start-up
    (tkerp.apps): `manage.py x` and `call_command("x")` alike record `command: x`.
    """
    from django.core.management.base import BaseCommand

    if getattr(BaseCommand.execute, "_tkerp_audited", False):
        return
    execute = BaseCommand.execute

    def audited_execute(self, *args, **options):
        from tkerp.db.postgres.base import NOTHING, unscoped_sees

        name = self.__class__.__module__.rsplit(".", 1)[-1]
        # A command is an entry point, like a task (`tkerp.tenancy.task_entry`): what it runs
        # outside a tenant scope sees no tenant's rows, whoever calls it (a shell or a test).
        with unscoped_sees(NOTHING):
            if name in COMMANDS_NOT_AUDITED or audit_actor_active():
                return execute(self, *args, **options)
            argv = " ".join(sys.argv[2:])[:200] if len(sys.argv) > 1 and sys.argv[1] == name else ""
            with pghistory.context(actor=ACTOR_COMMAND, command=name, argv=argv):
                return execute(self, *args, **options)

    audited_execute._tkerp_audited = True
    BaseCommand.execute = audited_execute


# --- reading the trail --------------------------------------------------------------------------


@dataclass
class AuditChange:
    field: str
    label: str
    old: str
    new: str


@dataclass
class AuditEntry:
    """One event, as the History page and the export show it. `subject` names a child row
    (the order's hold, the shop's credentials) shown on its parent's page; blank for the
    object itself."""

    event_id: int
    at: Any
    action: str
    actor: str
    who: str
    via: str
    subject: str = ""
    changes: list[AuditChange] = field(default_factory=list)
    secrets_changed: list[str] = field(default_factory=list)


def actor_describe(context: dict | None) -> tuple[str, str, str]:
    """(kind, who, via) of an event's actor, for people: ("user", "alice", "/admin/..."),
    ("api_key", "key 1a2b3c4d (Eastline WMS)", "provider eastline"), ("task", "shops.tasks.x",
    "task 3f2a..."), ("command", "sync_orders", "--shop 1"), or ("system", "", "") when none."""
    context = context or {}
    kind = context.get("actor") or "system"
    if kind == ACTOR_USER:
        who = str(context.get("username") or f"user {context.get('user_id')}")
        return kind, who, str(context.get("url") or "")
    if kind == ACTOR_API_KEY:
        name = context.get("api_key_name") or ""
        who = f"key {context.get('api_key')}" + (f" ({name})" if name else "")
        return kind, who, f"provider {context.get('provider') or ''}".strip()
    if kind == ACTOR_TASK:
        return kind, str(context.get("task") or ""), f"task {context.get('task_id') or ''}".strip()
    if kind == ACTOR_COMMAND:
        return kind, str(context.get("command") or ""), str(context.get("argv") or "")
    return kind, "", str(context.get("url") or "")


def _display(value: Any) -> str:
    return "" if value is None else str(value)


def audit_entries(
    *, obj: models.Model, children: Iterable[tuple[type[models.Model], str]] = ()
) -> list[AuditEntry]:
    """The audit trail of one object, oldest first, each update with its field changes, merged
    with the trails of its `children` [(audited model, its foreign key to obj)].

    Read through the event models' tenant-scoped managers and filtered on the object's own
    tenant: a trail never mixes tenants, and the caller has already found `obj` in scope.
    """
    entries: list[AuditEntry] = []
    event_model = audit_event_model(type(obj))
    if event_model is not None:
        events = event_model.objects.filter(tenant_id=obj.tenant_id, pgh_obj_id=obj.pk)
        entries += _entries(event_model, events, subject=None)
    for child_model, fk_name in children:
        child_events = audit_event_model(child_model)
        if child_events is None:
            continue
        fk = child_events._meta.get_field(fk_name)
        events = child_events.objects.filter(tenant_id=obj.tenant_id, **{fk.attname: obj.pk})
        entries += _entries(child_events, events, subject=child_model._meta.verbose_name)
    entries.sort(key=lambda entry: (entry.at, entry.event_id))
    return entries


def _entries(event_model, events, *, subject) -> Iterator[AuditEntry]:
    """Entries of `events` (one model's), diffing each against the previous event of the same
    object."""
    audit_fields = [
        f
        for f in event_model._meta.concrete_fields
        if not f.name.startswith("pgh_") and f.name not in {"tenant", "secrets_changed"}
    ]
    previous: dict[Any, dict[str, Any]] = {}
    for event in events.order_by("pgh_id").iterator(chunk_size=500):
        current = {f.attname: getattr(event, f.attname) for f in audit_fields}
        before = previous.get(event.pgh_obj_id)
        changes = []
        for f in audit_fields if event.pgh_label != "delete" else ():
            new = current[f.attname]
            old = before.get(f.attname) if before is not None else None
            if (before is not None and old == new) or (before is None and new in (None, "")):
                continue
            label = _tracked_label(event_model, f.name)
            changes.append(AuditChange(f.name, str(label), _display(old), _display(new)))
        kind, who, via = actor_describe(event.pgh_context)
        yield AuditEntry(
            event_id=event.pk,
            at=event.pgh_created_at,
            action=event.pgh_label,
            actor=kind,
            who=who,
            via=via,
            subject=f"{subject} {event.pgh_obj_id}" if subject else "",
            changes=changes,
            secrets_changed=list(getattr(event, "secrets_changed", None) or []),
        )
        previous[event.pgh_obj_id] = current


def _tracked_label(event_model, name: str) -> str:
    try:
        return event_model.pgh_tracked_model._meta.get_field(name).verbose_name
    except Exception:  # a field the model no longer has: its name is all there is
        return name
