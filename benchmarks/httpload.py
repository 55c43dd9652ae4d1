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
answer or no request at all is a failed run. With `count_statuses`, the script also counts every
answer whose status is not exactly 200 (wrk's own count lets 3xx through) and prints the total
as its last line (`STATUS_LUA`); `WrkResult.non_200` holds it. Extra request `headers` go into
the script as `wrk.headers`, so every request of the run carries them.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Mapping
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
# Counts answers whose status is not 200 in every thread; `done` prints the total (NON_200_LINE).
STATUS_LUA = """\
local threads = {}
function setup(thread)
   table.insert(threads, thread)
end
function init(args)
   not_200 = 0
end
function response(status, headers, body)
   if status ~= 200 then
      not_200 = not_200 + 1
   end
end
function done(summary, latency, requests)
   local total = 0
   for _, thread in ipairs(threads) do
      total = total + thread:get("not_200")
   end
   io.write(string.format("burrow-bench non-200 responses: %d\\n", total))
end
"""
NON_200_LINE = re.compile(r"^burrow-bench non-200 responses: (\d+)$", re.MULTILINE)
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
    non_200: int | None = None  # counted only with count_statuses (STATUS_LUA)


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
    non_200 = NON_200_LINE.search(text)
    return WrkResult(
        requests=int(summary.group(1)),
        seconds=_ms(summary.group(2), summary.group(3)) / 1000,
        rps=float(rps.group(1)),
        latency_ms=percentiles,
        socket_errors=socket_errors,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        non_200=int(non_200.group(1)) if non_200 else None,
    )


def wrk_script(headers: Mapping[str, str], *, count_statuses: bool) -> str:
    """RESOLVE_LUA, then `wrk.headers` for `headers`, then STATUS_LUA if count_statuses."""
    lines = [RESOLVE_LUA]
    for name, value in headers.items():
        if not (name + value).isascii():
            raise ValueError(f"wrk header {name!r}: {value!r} is not ASCII")
        # A JSON string of ASCII text is a valid Lua string literal.
        lines.append(f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}\n")
    if count_statuses:
        lines.append(STATUS_LUA)
    return "".join(lines)


def run_wrk(
    target: Target,
    path: str,
    *,
    threads: int,
    connections: int,
    seconds: int,
    headers: Mapping[str, str] | None = None,
    count_statuses: bool = False,
) -> WrkResult:
    """wrk -tT -cC -dS --latency against target (keep-alive GETs of path); checked result.

    Raises LoadError if wrk fails, answers no request, sees a non-2xx/3xx answer, or (with
    count_statuses) any answer that is not 200.
    """
    with tempfile.TemporaryDirectory(prefix="burrow-bench-wrk-") as tmp:
        script = Path(tmp) / "resolve.lua"
        script.write_text(wrk_script(headers or {}, count_statuses=count_statuses))
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
    if count_statuses and result.non_200 != 0:
        raise LoadError(
            f"wrk: {result.non_200} of {result.requests} answers not 200 "
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


def _request(target: Target, path: str, headers: Mapping[str, str] | None = None) -> bytes:
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    return (
        f"GET {path} HTTP/1.1\r\nHost: {target.host}:{target.port}\r\n"
        f"User-Agent: burrow-bench\r\n{extra}Connection: close\r\n\r\n"
    ).encode()


@dataclass(frozen=True, kw_only=True)
class Response:
    status: int
    headers: dict[str, str]  # lower-cased names; a repeated field keeps its last value
    body: bytes


def _read_head(sock: socket.socket) -> tuple[int, int, bytes]:
    """(status, Content-Length, the body bytes read past the head)."""
    status, headers, rest = _read_head_fields(sock)
    return status, int(headers["content-length"]), rest


def _read_head_fields(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """(status, header fields, the body bytes read past the head); one Content-Length required."""
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
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    fields["content-length"] = str(lengths[0])
    return int(status.group(1)), fields, rest


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


def get(target: Target, path: str, headers: Mapping[str, str] | None = None) -> Response:
    """One GET (Connection: close) with extra `headers`: status, header fields and body.

    The body is read up to its Content-Length or EOF, whichever comes first; OSError or
    LoadError if the connection or the response head fails.
    """
    with open_connection(target) as sock:
        sock.sendall(_request(target, path, headers))
        status, fields, rest = _read_head_fields(sock)
        length = int(fields["content-length"])
        while len(rest) < length:
            chunk = sock.recv(length - len(rest))
            if not chunk:
                break
            rest += chunk
    return Response(status=status, headers=fields, body=rest)


def probe(target: Target, path: str, body: bytes) -> None:
    """One GET through target, answered 200 with `body`; raises OSError/LoadError otherwise."""
    response = get(target, path)
    if response.status != 200 or response.body != body:
        raise LoadError(
            f"GET {target.url(path)}: status {response.status}, body {response.body[:100]!r}"
        )
