"""The API's one error shape: RFC 9457 problem details, for every error of every endpoint.

    {"type": "https://tkerp.dev/problems/validation", "title": "Invalid input", "status": 422,
     "detail": "...", "code": "invalid", "errors": {"tracking_number": ["..."]}}

`problem_exception_handler` is DRF's EXCEPTION_HANDLER: validation errors (400/422), a missing or
bad key (401), a read-only key writing (403), out-of-scope or missing objects (404), conflicts
(409), a body too large (413), throttling (429, with Retry-After) and anything unexpected (500,
logged, no traceback shown). `api_not_found` answers the same shape for unknown paths under /api/.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.response import Response

logger = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_BASE = "https://tkerp.dev/problems/"

TITLES = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    409: "Conflict",
    413: "Request too large",
    415: "Unsupported media type",
    422: "Invalid input",
    429: "Too many requests",
    500: "Server error",
}


class Conflict(exceptions.APIException):
    """The object's state forbids the request (409)."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the object's current state."
    default_code = "conflict"


class Unprocessable(exceptions.APIException):
    """Well-formed input that cannot be acted on (422); `errors` maps fields to messages."""

    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_detail = "The input is well-formed but cannot be acted on."
    default_code = "invalid"

    def __init__(self, detail=None, code=None, errors: dict[str, list[str]] | None = None):
        super().__init__(detail, code)
        self.errors = errors or {}


def problem(
    *,
    status_code: int,
    detail: str,
    code: str,
    errors: dict[str, list[str]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """A problem-details response."""
    body = {
        "type": PROBLEM_BASE + code.replace("_", "-"),
        "title": TITLES.get(status_code, "Error"),
        "status": status_code,
        "detail": detail,
        "code": code,
    }
    if errors:
        body["errors"] = errors
    return Response(body, status=status_code, headers=headers, content_type=PROBLEM_CONTENT_TYPE)


def _field_errors(detail, prefix: str = "") -> dict[str, list[str]]:
    """Flatten DRF's nested validation errors into {"field.sub[0].x": [messages]}."""
    flat: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if key == "non_field_errors" and not prefix:
                name = "body"
            flat.update(_field_errors(value, name))
    elif isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            flat[prefix or "body"] = [str(item) for item in detail]
        else:
            for index, item in enumerate(detail):
                flat.update(_field_errors(item, f"{prefix}[{index}]"))
    else:
        flat[prefix or "body"] = [str(detail)]
    return flat


def problem_exception_handler(exc, context) -> Response:
    """DRF's exception handler: every error as problem details (see the module docstring)."""
    if isinstance(exc, Http404):
        return problem(status_code=404, detail="No such object.", code="not_found")
    if isinstance(exc, RequestDataTooBig):
        return problem(
            status_code=413,
            detail=f"The body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes; "
            "send it in smaller requests (e.g. fewer stock counts a call).",
            code="request_too_large",
        )
    if isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, exceptions.ValidationError):
        errors = _field_errors(exc.detail)
        return problem(
            status_code=exc.status_code,
            detail="The request has invalid fields; see errors.",
            code="invalid",
            errors=errors,
        )
    if isinstance(exc, exceptions.APIException):
        headers = {}
        if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
            headers["Retry-After"] = str(int(exc.wait) + 1)
        if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
            headers["WWW-Authenticate"] = 'Api-Key realm="api"'
        detail = exc.detail if isinstance(exc.detail, str) else "The request was refused."
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else exc.default_code
        return problem(
            status_code=exc.status_code,
            detail=str(detail),
            code=code,
            errors=getattr(exc, "errors", None),
            headers=headers,
        )
    request = context.get("request")
    logger.exception(
        "API error on %s %s", getattr(request, "method", "?"), getattr(request, "path", "?")
    )
    return problem(
        status_code=500,
        detail="Something went wrong on our side; nothing was changed. Try again later.",
        code="server_error",
    )


@csrf_exempt  # no session, no cookie: a POST to a wrong path is a 404 like any other
def api_not_found(request, *args, **kwargs) -> JsonResponse:
    """Unknown paths under /api/ answer problem details too, not an HTML page."""
    return JsonResponse(
        {
            "type": PROBLEM_BASE + "not-found",
            "title": TITLES[404],
            "status": 404,
            "detail": f"No API endpoint at {request.path}.",
            "code": "not_found",
        },
        status=404,
        content_type=PROBLEM_CONTENT_TYPE,
    )
