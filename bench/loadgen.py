"""HTTP load for the benches that measure a server: N keep-alive connections sending one GET for
a fixed time, in a process of its own, reporting requests/s and latency percentiles.

`wrk` (a compiled load generator: `apt-get install wrk`) is used when it is on PATH; without it
a small asyncio client (`python bench/loadgen.py URL ...`, raw sockets, keep-alive) runs in a
separate process. Either way the same generator loads the baseline and the measured endpoint.
Only ever aimed at 127.0.0.1. Never part of the test run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

# wrk's report as one JSON line (its latencies are in microseconds).
WRK_REPORT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "seconds": %f, "p50": %f, "p95": %f, "p99": %f, "max": %f, ' ..
    '"status_errors": %d, "socket_errors": %d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e3,
    latency:percentile(95) / 1e3, latency:percentile(99) / 1e3, latency.max / 1e3,
    e.status, e.connect + e.read + e.write + e.timeout))
end
"""


def generator(prefer: str = "wrk") -> str:
    """The load generator `load()` will use (`prefer="python"`: the asyncio client)."""
    wrk = shutil.which("wrk") if prefer == "wrk" else None
    if wrk:
        version = subprocess.run([wrk, "--version"], capture_output=True, text=True).stdout
        return f"wrk ({version.split(' [')[0].strip() or 'wrk'}, 1 thread)"
    return "asyncio keep-alive client (bench/loadgen.py; install wrk for a compiled one)"


def load(
    url: str, *, headers: dict[str, str], connections: int, seconds: float, prefer: str = "wrk"
) -> dict:
    """`connections` keep-alive connections sending GET `url` for `seconds`: requests, rps,
    p50/p95/p99/max in ms, errors (non-2xx answers and socket errors) and the generator's own
    CPU per request (generator_cpu, ms)."""
    if not urlsplit(url).hostname.startswith("127."):
        raise ValueError(f"load is only ever aimed at 127.0.0.1, not {url}")
    spent = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk = shutil.which("wrk") if prefer == "wrk" else None
    if wrk:
        with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
            script.write(WRK_REPORT)
            script.flush()
            command = [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s"]
            command += ["--timeout", "30s", "-s", script.name]
            for name, value in headers.items():
                command += ["-H", f"{name}: {value}"]
            out = subprocess.run([*command, url], capture_output=True, text=True, check=True)
    else:
        command = [sys.executable, str(Path(__file__).resolve()), url]
        command += ["--connections", str(connections), "--seconds", str(seconds)]
        for name, value in headers.items():
            command += ["--header", f"{name}: {value}"]
        out = subprocess.run(command, capture_output=True, text=True, check=True)
    report = json.loads(next(line for line in out.stdout.splitlines()[::-1] if line[:1] == "{"))
    report["rps"] = report["requests"] / report["seconds"] if report["seconds"] else 0.0
    report["errors"] = report.pop("status_errors") + report.pop("socket_errors")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - spent.ru_utime - spent.ru_stime
    report["generator_cpu"] = cpu / max(report["requests"], 1) * 1000  # ms per request
    return report


# --- the fallback client ------------------------------------------------------------------------


async def _client(url: str, headers: dict[str, str], connections: int, seconds: float) -> dict:
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    head = f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    request = (head + "\r\n").encode()
    latencies: list[float] = []
    errors = {"status": 0, "socket": 0}
    stop = time.monotonic() + seconds

    async def one_connection():
        reader = writer = None
        while time.monotonic() < stop:
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
                started = time.perf_counter()
                writer.write(request)
                status = await reader.readuntil(b"\r\n")
                length, close = 0, False
                while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
                    name, _, value = line.decode("latin-1").partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                    elif name.lower() == "connection" and value.strip().lower() == "close":
                        close = True
                close = close or status.startswith(b"HTTP/1.0")
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - started)
                if not status.split()[1].startswith(b"2"):
                    errors["status"] += 1
                if close:
                    writer.close()
                    writer = None
            except (OSError, asyncio.IncompleteReadError, ValueError):
                errors["socket"] += 1
                writer = None

    started = time.perf_counter()
    await asyncio.gather(*(one_connection() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    latencies.sort()

    def percentile(share: float) -> float:
        return latencies[min(len(latencies) - 1, int(len(latencies) * share))] * 1000

    return {
        "requests": len(latencies),
        "seconds": elapsed,
        "p50": percentile(0.50) if latencies else float("nan"),
        "p95": percentile(0.95) if latencies else float("nan"),
        "p99": percentile(0.99) if latencies else float("nan"),
        "max": latencies[-1] * 1000 if latencies else float("nan"),
        "status_errors": errors["status"],
        "socket_errors": errors["socket"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="The fallback load client (see the docstring).")
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--header", action="append", default=[])
    args = parser.parse_args()
    if not urlsplit(args.url).hostname.startswith("127."):
        sys.exit("only ever aimed at 127.0.0.1")
    headers = dict(h.split(": ", 1) for h in args.header)
    print(json.dumps(asyncio.run(_client(args.url, headers, args.connections, args.seconds))))


if __name__ == "__main__":
    main()
