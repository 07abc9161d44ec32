"""The one outbound-HTTP policy: every request to a URL that a tenant configured goes through here.

A tenant may type a URL (the alert webhook today, a provider's webhook next); tkerp then sends
requests there from inside the network it runs in. Without a policy that is server-side request
forgery: `http://127.0.0.1:6379/`, `http://169.254.169.254/latest/meta-data/` or an office
printer on `10.0.0.7` are one form away. The policy, applied by `outbound_client()`:

- `https` only, unless DEBUG is on (the local demo);
- the host must resolve to public addresses only: no loopback, private, link-local (cloud
  metadata), CGNAT, multicast, reserved, unspecified or documentation ranges, nor an IPv6
  address carrying one of those (IPv4-mapped, 6to4, Teredo, NAT64). The check runs **at connect
  time** in the network backend, on the very addresses the socket then connects to, so a name
  that resolved to a public address when the form was saved and to 127.0.0.1 now (DNS
  rebinding) is refused; TLS still verifies the certificate against the host name;
- no redirects are followed (and a client built with redirects on would have every hop checked
  by the same backend);
- short timeouts, a deadline on the whole reply, and a cap on how much of it is read;
- no proxies from the environment (a proxy would resolve the name itself, past our check).

`outbound_url_check()` runs the same rules ahead of time, so a form can say what is wrong; it is
a courtesy, the connect-time check is the wall. `scrub_reason()` is how an upstream's words
reach a person or a log: short, one line, no query strings, nothing that looks like a token.

Tests need a receiver on 127.0.0.1: `TKERP_OUTBOUND_ALLOW_LOOPBACK` (a Django setting that is
never read from the environment, so only a test's settings override turns it on) lets the
policy reach loopback addresses, over http too, and nothing else that is not public.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
import time
from collections.abc import Iterable, Iterator
from urllib.parse import urlsplit

import httpcore
import httpx
from django.conf import settings
from django.core.exceptions import ValidationError

logger = logging.getLogger("tkerp.outbound")

USER_AGENT = "tkerp-outbound/1"


class OutboundRefused(Exception):
    """The policy refused a URL or the address its host resolves to. The message is safe to show
    to the tenant who configured the URL: it names the rule, never what is behind the address."""


# --- addresses ------------------------------------------------------------------------------


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address carries, which some stacks route to."""
    embedded = []
    if address.ipv4_mapped is not None:
        embedded.append(address.ipv4_mapped)
    if address.sixtofour is not None:
        embedded.append(address.sixtofour)
    if address.teredo is not None:
        embedded.extend(address.teredo)
    return embedded


def address_is_public(address: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True for a globally routable unicast address; False for every range a request must never
    reach from inside our network (see the module doc)."""
    ip = ipaddress.ip_address(address)
    # `is_global` alone lets multicast and a few deprecated ranges through.
    if not ip.is_global or ip.is_multicast or ip.is_reserved or ip.is_unspecified:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.is_site_local:
            return False
        return all(address_is_public(inner) for inner in _embedded_ipv4(ip))
    return True


def _loopback_allowed() -> bool:
    # `is True`: only a real boolean set by a test, never a stray truthy string.
    return getattr(settings, "TKERP_OUTBOUND_ALLOW_LOOPBACK", False) is True


def address_allowed(address: str) -> bool:
    """Public addresses, plus loopback while the tests' allowance is on."""
    ip = ipaddress.ip_address(address)
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback and _loopback_allowed():
        return True
    return address_is_public(ip)


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to for a TCP connection, in the resolver's order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    addresses: list[str] = []
    for _family, _type, _proto, _canonname, sockaddr in infos:
        # Drop an IPv6 zone ("fe80::1%eth0"): the address part is what is checked.
        address = str(sockaddr[0]).split("%", 1)[0]
        if address not in addresses:
            addresses.append(address)
    return addresses


def checked_addresses(host: str, port: int) -> list[str]:
    """Resolve `host` and refuse unless every address is allowed: one private answer among
    public ones is enough to refuse (a resolver may hand out either)."""
    try:
        addresses = resolve(host, port)
    except (OSError, UnicodeError):
        raise OutboundRefused(f"the host {host} could not be resolved") from None
    if not addresses:
        raise OutboundRefused(f"the host {host} could not be resolved")
    for address in addresses:
        if not address_allowed(address):
            raise OutboundRefused(
                f"the host {host} resolves to a non-public address; only public internet "
                "addresses may be called"
            )
    return addresses


# --- URLs -----------------------------------------------------------------------------------


def _is_loopback_literal(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host.lower() == "localhost"


def _scheme_allowed(scheme: str, host: str) -> bool:
    if scheme == "https":
        return True
    if scheme != "http":
        return False
    return bool(settings.DEBUG) or (_loopback_allowed() and _is_loopback_literal(host))


def outbound_url_check(url: str, *, resolve_host: bool = True) -> None:
    """Raise `OutboundRefused` saying why `url` may not be called (scheme, host, address)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise OutboundRefused("the URL is not valid") from None
    scheme = (parts.scheme or "").lower()
    host = parts.hostname or ""
    if not host:
        raise OutboundRefused("the URL has no host")
    if not _scheme_allowed(scheme, host):
        raise OutboundRefused("the URL must start with https://")
    if resolve_host:
        checked_addresses(host, port or (443 if scheme == "https" else 80))


# --- the transport --------------------------------------------------------------------------


class PublicOnlyNetworkBackend(httpcore.NetworkBackend):
    """httpcore's sync backend, connecting only to addresses the policy allows.

    httpcore hands `connect_tcp` the host name; we resolve it here, check every address, and
    connect the socket to a checked address. httpcore then starts TLS with the host name for SNI
    and certificate checks, so pinning the address costs nothing in TLS safety.
    """

    def __init__(self) -> None:
        self._backend = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable | None = None,
    ) -> httpcore.NetworkStream:
        addresses = checked_addresses(host, port)
        error: Exception | None = None
        for address in addresses:
            try:
                return self._backend.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    def connect_unix_socket(self, path, timeout=None, socket_options=None):
        raise OutboundRefused("unix sockets may not be called")

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


class CappedStream(httpx.SyncByteStream):
    """A response body cut at `max_bytes` and at a deadline: a hostile or broken receiver cannot
    fill our memory or hold a worker by trickling bytes."""

    def __init__(self, stream: httpx.SyncByteStream, *, max_bytes: int, deadline: float):
        self._stream = stream
        self._max_bytes = max_bytes
        self._deadline = deadline

    def __iter__(self) -> Iterator[bytes]:
        received = 0
        for chunk in self._stream:
            if time.monotonic() > self._deadline:
                raise httpx.ReadTimeout("the reply took longer than the outbound deadline")
            room = self._max_bytes - received
            if len(chunk) > room:
                logger.info("outbound reply cut at %s bytes", self._max_bytes)
                if room > 0:
                    yield chunk[:room]
                break
            received += len(chunk)
            yield chunk

    def close(self) -> None:
        self._stream.close()


class OutboundTransport(httpx.HTTPTransport):
    """`httpx.HTTPTransport` over `PublicOnlyNetworkBackend`, checking the scheme of every
    request (each redirect hop included) and capping every reply."""

    def __init__(self, *, max_response_bytes: int, deadline_seconds: float):
        super().__init__(trust_env=False, retries=0)
        # HTTPTransport builds its pool without a way to pass a network backend; rebuild it
        # with ours (same TLS context httpx would use, no proxy: see the module doc).
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=10,
            max_keepalive_connections=0,
            network_backend=PublicOnlyNetworkBackend(),
        )
        self.max_response_bytes = max_response_bytes
        self.deadline_seconds = deadline_seconds

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        scheme = request.url.scheme
        if not _scheme_allowed(scheme, request.url.host):
            raise OutboundRefused("the URL must start with https://")
        deadline = time.monotonic() + self.deadline_seconds
        response = super().handle_request(request)
        stream = CappedStream(response.stream, max_bytes=self.max_response_bytes, deadline=deadline)
        response.stream = stream
        return response


def outbound_client(
    *,
    timeout: float | None = None,
    max_response_bytes: int | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Client:
    """An httpx client that applies the policy: use it for every URL a tenant configured.

    `timeout` bounds each phase (connect, each read, each write) and the whole reply; defaults
    come from `TKERP_OUTBOUND_TIMEOUT` and `TKERP_OUTBOUND_MAX_RESPONSE_BYTES`.
    """
    seconds = timeout if timeout is not None else settings.TKERP_OUTBOUND_TIMEOUT
    cap = (
        max_response_bytes
        if max_response_bytes is not None
        else settings.TKERP_OUTBOUND_MAX_RESPONSE_BYTES
    )
    return httpx.Client(
        transport=OutboundTransport(max_response_bytes=cap, deadline_seconds=seconds),
        timeout=httpx.Timeout(seconds, connect=min(seconds, 5.0)),
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": USER_AGENT, **(headers or {})},
    )


def outbound_failure_reason(exc: BaseException) -> str:
    """What to record when a call through the policy failed: the rule or the kind of network
    failure, never the other side's words."""
    if isinstance(exc, OutboundRefused):
        return f"refused: {exc}"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.TransportError):
        return "connection failed"
    return f"failed ({type(exc).__name__})"


# --- what an upstream's words may become ----------------------------------------------------

REASON_MAX_LENGTH = 160

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_URL = re.compile(
    r"\b([a-z][a-z0-9+.-]*://)(?:[^\s/?#@]*@)?([^\s/?#]*)([^\s?#]*)(?:[?#]\S*)?", re.I
)
_SECRET_PAIR = re.compile(
    r"\b(access[_-]?token|refresh[_-]?token|app[_-]?secret|client[_-]?secret|secret|password|"
    r"passwd|token|sign|signature|authorization|api[_-]?key|x-tts-access-token)"
    r"(\s*[=:]\s*)(?:bearer\s+|basic\s+)?[^\s,;&\"']+",
    re.I,
)
_TOKENISH = re.compile(r"[A-Za-z0-9_\-+=.~]{24,}")


def _redact_tokenish(match: re.Match) -> str:
    text = match.group(0)
    has_letter = any(ch.isalpha() for ch in text)
    has_digit = any(ch.isdigit() for ch in text)
    return "[redacted]" if has_letter and has_digit else text


def scrub_reason(text: object, *, limit: int = REASON_MAX_LENGTH) -> str:
    """An upstream's error text made fit to show and log: one line, URLs without their query
    string or user info, `token=...`-like pairs and long token-looking runs redacted, and cut
    to `limit` characters. Body excerpts must not be passed here at all; this is for the short
    reason a platform puts in its error field."""
    value = _CONTROL.sub(" ", str(text))
    value = _URL.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3)}", value)
    value = _SECRET_PAIR.sub(lambda m: f"{m.group(1)}{m.group(2)}[redacted]", value)
    value = _TOKENISH.sub(_redact_tokenish, value)
    value = " ".join(value.split())
    if len(value) > limit:
        value = value[: limit - 1].rstrip() + "…"
    return value


_MEDIA_TYPE = re.compile(r"^[a-z0-9.+-]{1,40}/[a-z0-9.+-]{1,60}$")


def safe_media_type(content_type: str | None) -> str:
    """The media type of a reply, when it looks like one ("text/html"), else "unknown"."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media if _MEDIA_TYPE.match(media) else "unknown"


def validate_outbound_url(value: str) -> None:
    """Model-field validator for URLs a tenant configures: the form says what the policy would
    refuse (not https, not resolvable, a non-public address) before anything is saved."""
    if not value:
        return
    try:
        outbound_url_check(value)
    except OutboundRefused as exc:
        raise ValidationError(f"This URL cannot be used: {exc}.", code="outbound_url") from None
