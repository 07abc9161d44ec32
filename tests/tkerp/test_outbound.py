"""tkerp.outbound: the one policy for calling URLs a tenant configured.

Requests go to real HTTP servers on 127.0.0.1 (`LoopbackReceiver`). Name resolution of hosts
outside this machine is simulated (`dns`), and a guard refuses and records any connection the
policy would let through to an address off this machine, so no test sends traffic elsewhere.
"""

import os
import socket
import subprocess
import sys

import httpcore
import httpx
import pytest

from tests.e2e.helpers import LoopbackReceiver
from tkerp.outbound import (
    OutboundRefused,
    OutboundTransport,
    address_is_public,
    outbound_client,
    outbound_url_check,
    scrub_reason,
)

REAL_GETADDRINFO = socket.getaddrinfo


class FakeDns:
    """Answers for names outside this machine, one per lookup (the last one repeats)."""

    def __init__(self):
        self.answers: dict[str, list[list[str]]] = {}
        self.lookups: list[str] = []

    def answer(self, host: str, *answers: list[str]) -> None:
        self.answers[host] = list(answers)

    def getaddrinfo(self, host, port, *args, **kwargs):
        if host not in self.answers:
            return REAL_GETADDRINFO(host, port, *args, **kwargs)
        self.lookups.append(host)
        queue = self.answers[host]
        addresses = queue.pop(0) if len(queue) > 1 else queue[0]
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0))
            if ":" in address
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))
            for address in addresses
        ]


@pytest.fixture
def dns(monkeypatch) -> FakeDns:
    fake = FakeDns()
    monkeypatch.setattr(socket, "getaddrinfo", fake.getaddrinfo)
    return fake


@pytest.fixture(autouse=True)
def connections(monkeypatch) -> list[tuple[str, int]]:
    """Every TCP connection the policy's backend opens; any off this machine is refused."""
    opened: list[tuple[str, int]] = []
    real = httpcore.SyncBackend.connect_tcp

    def guarded(self, host, port, *args, **kwargs):
        opened.append((host, port))
        if not host.startswith("127."):
            raise httpcore.ConnectError(f"test guard: no connection to {host}")
        return real(self, host, port, *args, **kwargs)

    monkeypatch.setattr(httpcore.SyncBackend, "connect_tcp", guarded)
    return opened


class TestAddresses:
    @pytest.mark.parametrize(
        "address",
        [
            "127.0.0.1",
            "127.8.9.10",
            "::1",
            "10.0.0.7",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",  # cloud metadata
            "100.64.0.1",  # CGNAT
            "0.0.0.0",
            "::",
            "224.0.0.1",
            "239.255.255.250",
            "ff02::1",
            "240.0.0.1",
            "255.255.255.255",
            "192.0.2.1",  # documentation
            "198.18.0.1",  # benchmarking
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",  # deprecated site-local
            "2001:db8::1",
            "::ffff:127.0.0.1",  # IPv4-mapped
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "2002:7f00:1::",  # 6to4 of 127.0.0.1
            "2002:a00:1::",  # 6to4 of 10.0.0.1
            "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        ],
    )
    def test_non_public_addresses(self, address):
        assert not address_is_public(address)

    @pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111"])
    def test_public_addresses(self, address):
        assert address_is_public(address)


class TestConnectTime:
    @pytest.mark.parametrize(
        "url",
        [
            "http://127.0.0.1:8199/",
            "http://[::1]:8199/",
            "http://10.0.0.7/hook",
            "http://169.254.169.254/latest/meta-data/",
            "http://100.64.0.1/",
            "http://0.0.0.0:8199/",
            "http://[::ffff:127.0.0.1]:8199/",
            "http://224.0.0.1/",
            "https://192.168.1.1/",
        ],
    )
    def test_loopback_private_and_metadata_addresses_are_refused(self, url, settings, connections):
        settings.DEBUG = True  # http allowed: only the address rule stands in the way
        with outbound_client() as client, pytest.raises(OutboundRefused, match="non-public"):
            client.post(url, content=b"{}")
        with pytest.raises(OutboundRefused, match="non-public"):
            outbound_url_check(url)
        assert connections == []

    def test_a_name_rebound_to_loopback_after_the_check_is_refused_at_connect(
        self, dns, settings, connections
    ):
        settings.DEBUG = True
        with LoopbackReceiver() as receiver:
            # Public when the form checks it, loopback when the request goes out.
            dns.answer("hooks.rebind.test", ["93.184.216.34"], ["127.0.0.1"])
            url = f"http://hooks.rebind.test:{receiver.port}/alerts"
            outbound_url_check(url)
            with outbound_client() as client, pytest.raises(OutboundRefused, match="non-public"):
                client.post(url, content=b'{"token": "secret"}')

        assert receiver.received == [] and connections == []
        assert dns.lookups == ["hooks.rebind.test", "hooks.rebind.test"]

    def test_one_private_answer_among_public_ones_is_refused(self, dns, connections):
        dns.answer("hooks.mixed.test", ["93.184.216.34", "10.1.2.3"])
        with outbound_client() as client, pytest.raises(OutboundRefused, match="non-public"):
            client.post("https://hooks.mixed.test/", content=b"{}")
        assert connections == []

    def test_an_unresolvable_host_is_refused_with_its_name(self, dns, connections):
        dns.answer("hooks.nowhere.test", [])
        with pytest.raises(OutboundRefused, match=r"hooks\.nowhere\.test could not be resolved"):
            outbound_url_check("https://hooks.nowhere.test/")
        assert connections == []

    def test_a_public_address_is_connected_to_as_checked(self, dns, connections):
        dns.answer("hooks.example.test", ["93.184.216.34"])
        with outbound_client() as client, pytest.raises(httpx.ConnectError, match="test guard"):
            client.post("https://hooks.example.test/", content=b"{}")
        # The socket goes to the address that was checked, not to a second lookup's answer.
        assert connections == [("93.184.216.34", 443)]
        assert dns.lookups == ["hooks.example.test"]


@pytest.mark.usefixtures("outbound_loopback")
class TestRepliesAndRedirects:
    def test_redirects_are_not_followed(self):
        with (
            LoopbackReceiver() as inside,
            LoopbackReceiver(302, headers={"Location": inside.url}) as outside,
            outbound_client() as client,
        ):
            response = client.post(outside.url, content=b"{}")

        assert response.status_code == 302
        assert len(outside.received) == 1 and inside.received == []

    def test_a_client_that_follows_redirects_has_each_hop_checked(self, dns, connections):
        dns.answer("metadata.internal.test", ["169.254.169.254"])
        location = "https://metadata.internal.test/latest/meta-data/"
        with LoopbackReceiver(302, headers={"Location": location}) as first:
            transport = OutboundTransport(max_response_bytes=1024, deadline_seconds=5)
            with (
                httpx.Client(transport=transport, follow_redirects=True) as client,
                pytest.raises(OutboundRefused, match="non-public"),
            ):
                client.get(first.url)

        assert connections == [("127.0.0.1", first.port)]

    def test_an_oversized_reply_is_cut_at_the_cap(self):
        body = b"x" * 1_000_000
        with LoopbackReceiver(body=body, headers={"Content-Type": "text/plain"}) as receiver:
            with outbound_client(max_response_bytes=1024) as client:
                big = client.post(receiver.url, content=b"{}")
            receiver.body = b"ok"
            with outbound_client(max_response_bytes=1024) as client:
                small = client.post(receiver.url, content=b"{}")

        assert big.content == b"x" * 1024
        assert small.content == b"ok"

    def test_the_allowance_reaches_loopback_and_nothing_else(self, connections):
        with outbound_client() as client:
            for url in ("http://10.0.0.7/", "http://169.254.169.254/", "https://192.168.1.1/"):
                with pytest.raises(OutboundRefused):
                    client.post(url, content=b"{}")
        assert connections == []


class TestSchemes:
    def test_http_is_refused_when_debug_is_off(self, settings, dns, connections):
        settings.DEBUG = False
        dns.answer("hooks.example.test", ["93.184.216.34"])
        with pytest.raises(OutboundRefused, match="https"):
            outbound_url_check("http://hooks.example.test/")
        with outbound_client() as client, pytest.raises(OutboundRefused, match="https"):
            client.post("http://hooks.example.test/", content=b"{}")
        assert connections == [] and dns.lookups == []

        settings.DEBUG = True
        outbound_url_check("http://hooks.example.test/")

    @pytest.mark.parametrize("url", ["ftp://hooks.example.test/", "file:///etc/passwd", "//x"])
    def test_other_schemes_are_refused(self, url, settings):
        settings.DEBUG = True
        with pytest.raises(OutboundRefused):
            outbound_url_check(url)

    def test_without_the_allowance_loopback_over_http_is_refused(self, settings):
        with (
            LoopbackReceiver() as receiver,
            outbound_client() as client,
            pytest.raises(OutboundRefused, match="https"),
        ):
            client.post(receiver.url, content=b"{}")
        assert receiver.received == []

    def test_the_allowance_is_not_read_from_the_environment(self):
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tkerp.settings_test",
            "TKERP_OUTBOUND_ALLOW_LOOPBACK": "true",
        }
        code = (
            "import django; django.setup(); from django.conf import settings; "
            "print(settings.TKERP_OUTBOUND_ALLOW_LOOPBACK)"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        assert result.stdout.strip() == "False"


class TestScrubReason:
    def test_an_upstream_text_becomes_one_short_line_without_secrets(self):
        text = (
            "GET https://user:pw@api.example.com/order/202309/orders?access_token=abc123&x=1 "
            "failed\n\tnext line token=SUPERSECRET, key ZmFrZS10b2tlbi0xMjM0NTY3ODkwYWJjZGVm end"
        )

        scrubbed = scrub_reason(text)

        assert scrubbed.startswith("GET https://api.example.com/order/202309/orders failed")
        for secret in ("pw@", "abc123", "SUPERSECRET", "ZmFrZS10b2tlbi0xMjM0NTY3ODkwYWJjZGVm"):
            assert secret not in scrubbed
        assert "\n" not in scrubbed and "\t" not in scrubbed
        assert len(scrub_reason("word " * 200)) == 160
