"""The HTTP origin of the HTTP measures: a private nginx on loopback, plain and TLS.

Theory of operation: a Python HTTP server would be the bottleneck of a requests/s figure (trio+h11
serves about 11k req/s on the reference machine, h11 alone costs 37 us a request), so the origin
is nginx (Debian's `nginx-light`), run as the current user from a temp dir that holds its config,
pid file, logs and temp paths: nothing under /etc or /var is read or written. One worker process
(as the reference's single-process haproxy origin) serves, on two free loopback ports:

- `http_port`, plain HTTP/1.1: `GET /small` answers `SMALL_BODY` (100 bytes) from memory;
  `GET /big` answers the file `big.bin` (`big_bytes` of incompressible bytes) with sendfile.
- `tls_port`, the same over TLS 1.2/1.3 with a certificate for `TLS_HOST` from a throwaway CA
  (trustme) whose certificate is `ca_path`: the TLS upstream of the tls:// measure, where the
  client's TLS session ends at nginx whatever carries the bytes in between.

Keep-alive connections are never closed by nginx during a run (`keepalive_requests`,
`keepalive_timeout`), so a tunnel never has to reconnect mid-measure because of the origin.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.measure import descendants
from benchmarks.tunnels import free_port

NGINX = "nginx"
# The name the TLS port's certificate is for; the tls:// endpoint is bound to it.
TLS_HOST = "origin.burrow.localhost"
# ~100 bytes, the "small body" of the requests/s measure.
SMALL_BODY = b"Burrow benchmark origin: a small body for requests/s.".ljust(99, b".") + b"\n"
SMALL_PATH = "/small"
BIG_PATH = "/big"
# Seconds nginx may take to listen before the origin is declared broken.
START_TIMEOUT = 30.0
# Bytes written at a time when filling big.bin (one random block, repeated).
FILL_BLOCK = 1024 * 1024
# Connections one worker accepts: far above any --http-connections the benchmark opens.
WORKER_CONNECTIONS = 4096


class OriginUnavailableError(RuntimeError):
    """nginx is missing or did not start; says what to do."""


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return ("\n  " + "\n  ".join(text[-lines:])) if text else ""


def _fill(path: Path, size: int) -> None:
    """size bytes of one random block repeated (incompressible within any TLS record).

    Synced to disk before returning, so the kernel's writeback of a 1 GiB file does not compete
    with the first measured download (it made the first run's direct figure 3x lower)."""
    block = os.urandom(FILL_BLOCK)
    with path.open("wb") as out:
        left = size
        while left > 0:
            out.write(block[: min(left, FILL_BLOCK)])
            left -= FILL_BLOCK
        out.flush()
        os.fsync(out.fileno())


class Origin:
    """nginx serving /small and /big on `http_port` (plain) and `tls_port` (TLS for TLS_HOST)."""

    def __init__(self, big_bytes: int) -> None:
        self.big_bytes = big_bytes
        self.http_port = 0
        self.tls_port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix="burrow-bench-origin-")
        self.dir = Path(self._tmp.name)
        self.ca_path = self.dir / "ca.pem"
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _config(self) -> str:
        d = self.dir
        body = SMALL_BODY.decode().replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        # As root, nginx would hand its worker to `nobody`, which cannot read our 0700 temp dir.
        user = f"user {pwd.getpwuid(0).pw_name};" if os.geteuid() == 0 else ""
        temp_paths = "\n".join(
            f"    {kind}_temp_path {d / 'temp' / kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        locations = f"""
        location = {SMALL_PATH} {{ return 200 "{body}"; }}
        location = {BIG_PATH} {{ alias {d / "big.bin"}; }}"""
        return f"""
daemon off;
master_process on;
worker_processes 1;
{user}
pid {d / "nginx.pid"};
error_log {d / "error.log"} warn;
events {{ worker_connections {WORKER_CONNECTIONS}; }}
http {{
    access_log off;
{temp_paths}
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    server {{
        listen 127.0.0.1:{self.http_port};{locations}
    }}
    server {{
        listen 127.0.0.1:{self.tls_port} ssl;
        ssl_certificate {d / "origin.pem"};
        ssl_certificate_key {d / "origin.key"};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache off;{locations}
    }}
}}
"""

    def _start(self) -> None:
        nginx = shutil.which(NGINX) or shutil.which(NGINX, path="/usr/sbin")
        if nginx is None:
            raise OriginUnavailableError(
                "nginx not found: the HTTP measures need it as their origin "
                "(apt-get install nginx-light; ./dev bench installs it when run as root)"
            )
        try:
            import trustme
        except ImportError as exc:
            raise OriginUnavailableError(
                "trustme not installed: .venv/bin/python -m pip install -e '.[test]'"
            ) from exc
        d = self.dir
        ca = trustme.CA()
        leaf = ca.issue_cert(TLS_HOST)
        ca.cert_pem.write_to_path(str(self.ca_path))
        leaf.private_key_pem.write_to_path(str(d / "origin.key"))
        (d / "origin.pem").write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        (d / "temp").mkdir()
        _fill(d / "big.bin", self.big_bytes)
        log = d / "nginx.log"
        for _attempt in range(5):  # a free port can be taken before nginx binds it: retry
            self.http_port, self.tls_port = free_port(), free_port()
            (d / "nginx.conf").write_text(self._config())
            with log.open("ab") as stderr:
                self.proc = subprocess.Popen(
                    [nginx, "-p", str(d), "-c", str(d / "nginx.conf")],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                )
            if self._wait_listening():
                return
            self._stop()
        raise OriginUnavailableError(f"nginx did not start{_tail(log)}{_tail(d / 'error.log')}")

    def _wait_listening(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                return False
            try:
                for port in (self.http_port, self.tls_port):
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                time.sleep(0.02)
        return False

    def warm_cache(self) -> None:
        """Read big.bin once, so the page cache holds it before a timed download.

        Reclaim of cold pages (DAMON runs on these VMs) evicted it during the minutes the http
        measure took, and the next download then read from disk at a third of the speed."""
        with (self.dir / "big.bin").open("rb", buffering=0) as f:
            buf = bytearray(FILL_BLOCK)
            while f.readinto(buf):
                pass

    def pids(self) -> list[int]:
        """The master and its worker(s): the origin's CPU is summed over these."""
        assert self.proc is not None
        return [self.proc.pid, *descendants(self.proc.pid)]

    def _stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        workers = descendants(proc.pid)
        proc.terminate()  # SIGTERM: nginx's fast shutdown, workers included
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            for pid in workers:  # the master was killed outright: its workers may remain
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def close(self) -> None:
        try:
            self._stop()
        finally:
            self._tmp.cleanup()
