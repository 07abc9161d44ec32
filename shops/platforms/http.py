"""HTTP for connectors: timeouts, a per-shop rate limiter, retries with backoff, typed errors.

Every connector sends through `PlatformHttpClient.send`, which rebuilds (and so re-signs) the
request on every attempt, waits for the shop's rate limiter, and retries 429, 5xx, timeouts and
connection errors with exponential backoff and full jitter, honouring `Retry-After`. Logs carry the
method, path, status and latency only: never query strings, headers or bodies, which hold secrets.

A base URL on the host `sandbox.tkerp.internal` is served in-process by our own WSGI app (the
platform sandboxes under `/sandbox/<platform>/`): real HTTP requests and responses, no network.
Only where `TKERP_SANDBOX_ENABLED` (never in production); anywhere else a base URL must be https.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import ssl
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx
from django.conf import settings

from shops.platforms.base import (
    PlatformConfigError,
    PlatformError,
    PlatformRateLimited,
    PlatformUnavailable,
)

logger = logging.getLogger("tkerp.platforms")

SANDBOX_HOST = "sandbox.tkerp.internal"


def json_bytes(body: dict) -> bytes:
    """A JSON request body as the bytes sent, compact: for a caller that must send (or sign,
    or send again) exactly those bytes."""
    return json.dumps(body, separators=(",", ":")).encode()


def sandbox_enabled() -> bool:
    return bool(getattr(settings, "TKERP_SANDBOX_ENABLED", False))


def sandbox_base_url(platform: str) -> str:
    """The API base of `platform`'s sandbox, served in-process; refused where it is off."""
    if not sandbox_enabled():
        raise PlatformConfigError(
            "the tkerp sandbox is not enabled on this server; set the shop's API endpoint to "
            "the platform's API",
            platform=platform,
        )
    return f"http://{SANDBOX_HOST}/sandbox/{platform}"


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket: `per_second` sustained, `burst` at once."""

    per_second: float
    burst: int


class TokenBucket:
    """Thread-safe token bucket; `acquire` blocks until a token is free."""

    def __init__(self, limit: RateLimit, *, clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self.clock = clock
        self.tokens = float(limit.burst)
        self.updated = clock()
        self.lock = threading.Lock()

    def acquire(self, sleep: Callable[[float], None] = time.sleep) -> float:
        """Take one token, sleeping as needed; returns the seconds waited."""
        waited = 0.0
        while True:
            with self.lock:
                now = self.clock()
                self.tokens = min(
                    self.limit.burst, self.tokens + (now - self.updated) * self.limit.per_second
                )
                self.updated = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return waited
                wait = (1 - self.tokens) / self.limit.per_second
            sleep(wait)
            waited += wait


_buckets: dict[tuple[str, str], TokenBucket] = {}
_buckets_lock = threading.Lock()


def bucket_for(key: tuple[str, str], limit: RateLimit) -> TokenBucket:
    """The process-wide bucket for one (platform, shop) pair."""
    with _buckets_lock:
        bucket = _buckets.get(key)
        if bucket is None or bucket.limit != limit:
            bucket = _buckets[key] = TokenBucket(limit)
        return bucket


_recycling_lock = threading.Lock()
_recycling_paused = 0


@contextmanager
def _connections_kept():
    """Stop Django from recycling DB connections around an in-process request.

    A real WSGI server runs each request on its own connection; here the "remote" platform runs
    on the caller's thread and so on the caller's connection, which `close_old_connections`
    would close in the middle of the caller's transaction (Django's test client does the same).
    Counted, so concurrent in-process requests never wait on each other.
    """
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    global _recycling_paused
    with _recycling_lock:
        _recycling_paused += 1
        if _recycling_paused == 1:
            request_started.disconnect(close_old_connections)
            request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        with _recycling_lock:
            _recycling_paused -= 1
            if _recycling_paused == 0:
                request_started.connect(close_old_connections)
                request_finished.connect(close_old_connections)


_tls_context: ssl.SSLContext | None = None
_tls_lock = threading.Lock()


def tls_context() -> ssl.SSLContext:
    """The verifying TLS context every client of the process shares. httpx builds one per client
    otherwise, loading the CA bundle each time (~15-30 ms of CPU): a label batch's buying
    threads each hold two clients. An SSLContext is safe to share between threads."""
    global _tls_context
    if _tls_context is None:
        with _tls_lock:
            if _tls_context is None:
                _tls_context = httpx.create_ssl_context()
    return _tls_context


def sandbox_transport() -> httpx.BaseTransport:
    """Serve requests with our own WSGI application (the sandboxes), in-process."""
    from django.core.handlers.wsgi import WSGIHandler

    class InProcessHandler(WSGIHandler):
        def __call__(self, environ, start_response):
            with _connections_kept():
                response = super().__call__(environ, start_response)
            close = response.close

            def close_keeping_connections():
                with _connections_kept():
                    close()

            response.close = close_keeping_connections
            return response

    return httpx.WSGITransport(app=InProcessHandler())


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class PlatformHttpClient:
    """One shop's HTTP channel to its platform."""

    def __init__(
        self,
        *,
        platform: str,
        shop_key: str,
        base_url: str,
        rate_limit: RateLimit,
        timeout: float | None = None,
        max_retries: int | None = None,
        backoff_base: float | None = None,
        backoff_cap: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        per_thread: bool = False,
    ):
        """`per_thread`: many threads send through this channel at once (a label batch's
        buying threads), so each gets its own HTTP client and kept-alive connection. One shared
        client would serialise them on its connection pool's lock, which is held while it
        checks every pooled connection on each request and each response's close."""
        self.platform = platform
        self.base_url = base_url.rstrip("/")
        self.max_retries = (
            max_retries if max_retries is not None else settings.TKERP_HTTP_MAX_RETRIES
        )
        self.backoff_base = (
            backoff_base if backoff_base is not None else settings.TKERP_HTTP_BACKOFF_BASE
        )
        self.backoff_cap = backoff_cap
        self.sleep = sleep
        self.bucket = bucket_for((platform, shop_key), rate_limit)
        base = urlsplit(self.base_url)
        sandboxed = base.hostname == SANDBOX_HOST
        if sandboxed:
            if not sandbox_enabled():
                sandbox_base_url(platform)  # raises, saying why
        elif base.scheme != "https":
            raise PlatformConfigError("a platform API is only called over https", platform=platform)
        self.timeout = timeout if timeout is not None else settings.TKERP_HTTP_TIMEOUT
        self._transport = transport
        self._sandboxed = sandboxed
        self._clients: list[httpx.Client] = []
        self._clients_lock = threading.Lock()
        self._local = threading.local() if per_thread else None
        self._shared = None if per_thread else self._new_client()
        #: Attempts and waits of the last `send`, for logs, pushes' latency and tests.
        self.last_attempts = 0
        self.last_delays: list[float] = []

    def _new_client(self) -> httpx.Client:
        transport = self._transport
        if transport is None and self._sandboxed:
            transport = sandbox_transport()
        client = httpx.Client(timeout=self.timeout, transport=transport, verify=tls_context())
        with self._clients_lock:
            self._clients.append(client)
        return client

    @property
    def client(self) -> httpx.Client:
        """The HTTP client: the one of this channel, or of the calling thread (`per_thread`)."""
        if self._local is None:
            return self._shared
        client = getattr(self._local, "client", None)
        if client is None or client.is_closed:
            client = self._local.client = self._new_client()
        return client

    def close(self) -> None:
        with self._clients_lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        """Full-jitter exponential backoff, never shorter than the server asked for."""
        delay = min(self.backoff_cap, self.backoff_base * (2**attempt))
        delay = random.uniform(delay / 2, delay)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.backoff_cap))
        return delay

    def send(
        self,
        build: Callable[[], httpx.Request],
        *,
        check: Callable[[httpx.Response], None] | None = None,
    ) -> httpx.Response:
        """Send the request `build()` makes, retrying what is worth retrying.

        `check` inspects a response and raises a `PlatformError` for a platform-level error
        (for example an error code inside a 200 envelope); retryable ones are retried too.
        """
        self.last_attempts = 0
        self.last_delays = []
        attempt = 0
        while True:
            self.bucket.acquire(self.sleep)
            request = build()
            self.last_attempts += 1
            started = time.monotonic()
            try:
                response = self.client.send(request)
                status = response.status_code
                if status == 429:
                    raise PlatformRateLimited(
                        "too many requests",
                        status=429,
                        retry_after=parse_retry_after(response.headers.get("Retry-After")),
                        platform=self.platform,
                    )
                if status >= 500:
                    raise PlatformUnavailable(
                        f"server error {status}", status=status, platform=self.platform
                    )
                if check is not None:
                    check(response)
                self._log(request, status, started)
                return response
            except httpx.TimeoutException as exc:
                error: PlatformError = PlatformUnavailable(
                    f"timed out ({type(exc).__name__})", platform=self.platform
                )
            except httpx.TransportError as exc:
                error = PlatformUnavailable(
                    f"connection failed ({type(exc).__name__})", platform=self.platform
                )
            except PlatformError as exc:
                error = exc
            self._log(request, getattr(error, "status", None), started, error=error)
            if not error.retryable or attempt >= self.max_retries:
                raise error
            delay = self.backoff(attempt, getattr(error, "retry_after", None))
            self.last_delays.append(delay)
            self.sleep(delay)
            attempt += 1

    def _log(self, request: httpx.Request, status, started: float, error=None) -> None:
        elapsed_ms = (time.monotonic() - started) * 1000
        # Path only: query strings carry tokens and signatures.
        logger.info(
            "%s %s %s -> %s in %.0f ms%s",
            self.platform,
            request.method,
            request.url.path,
            status if status is not None else "no response",
            elapsed_ms,
            f" ({error.__class__.__name__})" if error is not None else "",
        )
