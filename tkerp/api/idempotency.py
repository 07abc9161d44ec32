"""`Idempotency-Key` for every POST of the API: a retried request never acts twice.

Decorate a POST action with `@idempotent`. The key (1-255 visible ASCII characters, required)
is claimed by inserting an `IdempotencyRecord` row in the same transaction as the action:

- a new key: the action runs, and its answer (2xx or 4xx) is stored with the row on commit;
- the same key with the same method, path and body: the first answer is replayed
  (`Idempotent-Replayed: true`), nothing runs again;
- the same key with a different request: 422 `idempotency_key_reused`;
- two requests with one key at the same moment: the second's INSERT waits on the unique index
  until the first commits, then replays its answer (one write, whatever the timing);
- an action that fails with a server error rolls back, row included: the key is free again.

Keys are kept `TKERP_API_IDEMPOTENCY_HOURS` (24) and pruned daily (`idempotency_prune`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable
from contextvars import ContextVar
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.http import HttpResponse
from django.utils import timezone
from rest_framework import exceptions

from tkerp.api.problems import Unprocessable, problem_exception_handler
from tkerp.models import IdempotencyRecord
from tkerp.tenancy import all_tenants

HEADER = "Idempotency-Key"
_KEY_RE = re.compile(r"[\x21-\x7e]{1,255}")


def request_fingerprint(request) -> str:
    """What makes two requests "the same": method, path and the parsed body (key order and
    whitespace do not matter)."""
    # A body that cannot be parsed raises here (DRF's ParseError, a 400 saying so): caught, it
    # left `request.data` empty for the view, which then answered "field required".
    data = request.data
    try:
        body = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    except (TypeError, ValueError):
        body = hashlib.sha256(request.body).hexdigest()
    raw = f"{request.method}\n{request.path}\n{body}"
    return hashlib.sha256(raw.encode()).hexdigest()


def _claim(*, tenant_id: int, client: str, key: str, fingerprint: str, request) -> bool:
    """Insert the key's row; False when the key was already taken (committed). Waits for a
    concurrent transaction holding the same key to finish first."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {IdempotencyRecord._meta.db_table}
                (tenant_id, client, key, fingerprint, method, path, created_at,
                 response_body, response_content_type)
            VALUES (%s, %s, %s, %s, %s, %s, %s, '', '')
            ON CONFLICT (tenant_id, client, key) DO NOTHING
            RETURNING id
            """,
            [
                tenant_id,
                client,
                key,
                fingerprint,
                request.method,
                request.path[:255],
                timezone.now(),
            ],
        )
        return cursor.fetchone() is not None


# Facts an action wants kept although its own writes are rolled back (e.g. that a provider sent
# an invalid tracking number): run by `idempotent` after the action's savepoint ends.
_after_action: ContextVar[list[Callable[[], object]] | None] = ContextVar(
    "tkerp_after_action", default=None
)


def keep_after_rollback(record: Callable[[], object]) -> None:
    """Run `record` once the current idempotent action's writes are settled (committed or
    rolled back), in the request's outer transaction; at once outside an idempotent action."""
    pending = _after_action.get()
    if pending is None:
        record()
    else:
        pending.append(record)


def idempotent(action):
    """Run a POST action at most once per `Idempotency-Key` (see the module docstring)."""

    @functools.wraps(action)
    def wrapper(self, request, *args, **kwargs):
        key = request.headers.get(HEADER, "")
        if not _KEY_RE.fullmatch(key):
            raise exceptions.ValidationError(
                {
                    HEADER: [
                        "Send an Idempotency-Key header (1-255 visible ASCII characters, e.g. a "
                        "UUID) with every POST; retry with the same key."
                    ]
                }
            )
        api_key = request.auth
        fingerprint = request_fingerprint(request)
        with transaction.atomic():
            if not _claim(
                tenant_id=api_key.tenant_id,
                client=api_key.pk,
                key=key,
                fingerprint=fingerprint,
                request=request,
            ):
                record = IdempotencyRecord.objects.get(
                    tenant_id=api_key.tenant_id, client=api_key.pk, key=key
                )
                if record.fingerprint != fingerprint:
                    raise Unprocessable(
                        "This Idempotency-Key was used for a different request; use a new key "
                        "for a new request.",
                        code="idempotency_key_reused",
                    )
                return _replay(record)
            pending = _after_action.set([])
            try:
                with transaction.atomic():
                    response = action(self, request, *args, **kwargs)
                    if response.status_code >= 400:
                        transaction.set_rollback(True)
            except exceptions.APIException as exc:
                # A refusal is an answer too: the same retry gets the same refusal.
                response = problem_exception_handler(exc, {"request": request, "view": self})
            finally:
                records = _after_action.get() or []
                _after_action.reset(pending)
            for record in records:
                record()
            if response.status_code >= 500:
                transaction.set_rollback(True)
                return response
            # Rendered now, as the client will receive it, so a replay sends the same bytes.
            response = self.finalize_response(request, response, *args, **kwargs)
            response.render()
            IdempotencyRecord.objects.filter(
                tenant_id=api_key.tenant_id, client=api_key.pk, key=key
            ).update(
                response_status=response.status_code,
                response_body=response.content.decode(response.charset or "utf-8"),
                response_content_type=response["Content-Type"],
            )
        return response

    wrapper.idempotent = True
    return wrapper


def _replay(record: IdempotencyRecord) -> HttpResponse:
    """The first answer again, byte for byte, marked as a replay."""
    response = HttpResponse(
        record.response_body,
        status=record.response_status,
        content_type=record.response_content_type or "application/json",
    )
    response["Idempotent-Replayed"] = "true"
    return response


def idempotency_prune(*, now=None) -> int:
    """Forget keys older than TKERP_API_IDEMPOTENCY_HOURS, every tenant's; returns how many."""
    cutoff = (now or timezone.now()) - timedelta(hours=settings.TKERP_API_IDEMPOTENCY_HOURS)
    with all_tenants():
        deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted
