"""HTTP load: wrk for requests/s and latency, a Python HTTP(S) client for large downloads.

Theory of operation: every HTTP client connects to 127.0.0.1 and names the server it means in
the TLS SNI and the Host header (`Target.host`). That name need not resolve: `*.localhost` does
not on every machine (glibc resolves it only with nss-myhostname, and /etc/hosts is not ours to
edit). The Python client simply connects to 127.0.0.1; wrk is given `RESOLVE_LUA`, a script that
replaces wrk's own `wrk.resolve` so it connects to 127.0.0.1 while the URL's host stays the SNI
and the Host header. The same script is passed for plain-HTTP targets, so every column of a
measure is driven by the same client with the same settings.

wrk runs keep-alive connections (HTTP/1.1, one request in flight per connection) for a fixed
time and prints its latency distribution with `--latency`; `parse_wrk` reads Requests/sec, the
percentiles, and the error lines (socket errors, non-2xx answers), and a run with any non-2xx
answer or no request at all is a failed run.
"""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.load import CHUNK, OP_TIMEOUT, LoadError, Transfer

WRK = "wrk"
# Replaces wrk's resolver (wrk.lua's `wrk.resolve`, called once before the threads start).
RESOLVE_LUA = """\
-- Connect to 127.0.0.1 whatever the URL's host is; that host stays the TLS SNI and the Host
-- header (benchmarks/httpload.py).
function wrk.resolve(host, service)
   wrk.addrs = wrk.lookup("127.0.0.1", service)
end
"""
# Seconds wrk may overrun its -d before it is declared stuck (it also has to connect and join).
WRK_GRACE = 30.0
# The largest response head the download client reads before giving up.
MAX_HEAD = 64 * 1024
UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


@dataclass(frozen=True, kw_only=True)
class Target:
    """Where a client connects (127.0.0.1:port) and whom it asks for (SNI and Host)."""

    port: int
    host: str = "127.0.0.1"
    context: ssl.SSLContext | None = None  # None: plain HTTP

    def url(self, path: str) -> str:
        scheme = "https" if self.context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}{path}"


# --------------------------------------------------------------------------------- wrk


@dataclass(frozen=True, kw_only=True)
class WrkResult:
    requests: int
    seconds: float
    rps: float
    latency_ms: dict[str, float]  # "50", "75", "90", "99" -> ms
    socket_errors: dict[str, int] = field(default_factory=dict)  # connect, read, write, timeout
    non_2xx: int = 0


def _ms(number: str, unit: str) -> float:
    return float(number) * UNITS_MS[unit]


def parse_wrk(text: str) -> WrkResult:
    """Read wrk's report (run with --latency); raises LoadError if a figure is missing."""
    summary = re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h),", text, re.MULTILINE)
    rps = re.search(r"^Requests/sec:\s*([\d.]+)", text, re.MULTILINE)
    section = text.partition("Latency Distribution")[2]
    percentiles = {
        pct: _ms(value, unit)
        for pct, value, unit in re.findall(
            r"^\s*(\d+)(?:\.\d+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", section, re.MULTILINE
        )
    }
    if summary is None or rps is None or not {"50", "99"} <= percentiles.keys():
        raise LoadError(f"could not read wrk's report:\n{text.strip()[-2000:]}")
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    socket_errors = (
        dict(zip(("connect", "read", "write", "timeout"), map(int, errors.groups()), strict=True))
        if errors
        else {}
    )
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return WrkResult(
        requests=int(summary.group(1)),
        seconds=_ms(summary.group(2), summary.group(3)) / 1000,
        rps=float(rps.group(1)),
        latency_ms=percentiles,
        socket_errors=socket_errors,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
    )


def run_wrk(
    target: Target, path: str, *, threads: int, connections: int, seconds: int
) -> WrkResult:
    """wrk -tT -cC -dS --latency against target (keep-alive GETs of path); checked result."""
    with tempfile.TemporaryDirectory(prefix="burrow-bench-wrk-") as tmp:
        script = Path(tmp) / "resolve.lua"
        script.write_text(RESOLVE_LUA)
        cmd = [
            WRK,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            target.url(path),
        ]
        try:
            out = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                timeout=seconds + WRK_GRACE,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            raise LoadError(f"wrk ran past {seconds + WRK_GRACE:.0f}s: {' '.join(cmd)}") from exc
    if out.returncode != 0:
        raise LoadError(f"wrk exited with status {out.returncode}: {out.stderr.strip()[-2000:]}")
    result = parse_wrk(out.stdout)
    if result.requests == 0 or result.non_2xx:
        raise LoadError(
            f"wrk: {result.requests} requests, {result.non_2xx} not 2xx/3xx "
            f"({target.url(path)}):\n{out.stdout.strip()[-2000:]}"
        )
    return result


# ----------------------------------------------------------------------- Python client


def open_connection(target: Target) -> socket.socket:
    """TCP to 127.0.0.1:port, then the TLS handshake with SNI = host if the target is TLS."""
    sock = socket.create_connection(("127.0.0.1", target.port), timeout=OP_TIMEOUT)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if target.context is not None:
            return target.context.wrap_socket(sock, server_hostname=target.host)
    except BaseException:
        sock.close()
        raise
    return sock


def _request(target: Target, path: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: {target.host}:{target.port}\r\n"
        "User-Agent: burrow-bench\r\nConnection: close\r\n\r\n"
    ).encode()


def _read_head(sock: socket.socket) -> tuple[int, int, bytes]:
    """(status, Content-Length, the body bytes read past the head)."""
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > MAX_HEAD:
            raise LoadError(f"response head longer than {MAX_HEAD} bytes")
        chunk = sock.recv(16384)
        if not chunk:
            raise LoadError(f"connection closed inside the response head ({data[:200]!r})")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
    if status is None:
        raise LoadError(f"not an HTTP response: {lines[0]!r}")
    lengths = [
        int(line.split(":", 1)[1])
        for line in lines[1:]
        if line.lower().startswith("content-length:")
    ]
    if len(lengths) != 1:
        raise LoadError(f"response without one Content-Length: {head[:500]!r}")
    return int(status.group(1)), lengths[0], rest


def download(target: Target, path: str, expected: int) -> Transfer:
    """GET path and read the whole body, checked to be `expected` bytes long.

    Timed from sending the request (the connection and any TLS handshake come first) to the
    last body byte.
    """
    buf = bytearray(CHUNK)
    with open_connection(target) as sock:
        start = time.perf_counter()
        sock.sendall(_request(target, path))
        status, length, rest = _read_head(sock)
        if status != 200 or length != expected:
            raise LoadError(
                f"GET {target.url(path)}: status {status}, {length} bytes, not {expected}"
            )
        received = len(rest)
        while received < length:
            n = sock.recv_into(buf)
            if n == 0:
                raise LoadError(f"body ended after {received} of {length} bytes")
            received += n
        seconds = time.perf_counter() - start
    if received != expected:
        raise LoadError(f"received {received} body bytes, expected {expected}")
    return Transfer(nbytes=received, seconds=seconds)


def probe(target: Target, path: str, body: bytes) -> None:
    """One GET through target, answered 200 with `body`; raises OSError/LoadError otherwise."""
    with open_connection(target) as sock:
        sock.sendall(_request(target, path))
        status, length, rest = _read_head(sock)
        while len(rest) < length:
            chunk = sock.recv(length - len(rest))
            if not chunk:
                break
            rest += chunk
    if status != 200 or rest != body:
        raise LoadError(f"GET {target.url(path)}: status {status}, body {rest[:100]!r}")
