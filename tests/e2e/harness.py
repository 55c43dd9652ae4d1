"""Real processes for end-to-end tests: an edge, credentials, agents, and simple upstreams.

Everything listens on 127.0.0.1. Each helper waits for the line a process prints when it is
ready (never a sleep), with a generous timeout that only catches hangs.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
READY_TIMEOUT = 30.0


def _read_line_matching(
    proc: subprocess.Popen[str], pattern: re.Pattern[str], timeout: float
) -> re.Match[str]:
    """The first line `proc` prints on stdout from now on that matches `pattern`.

    Reads the pipe's descriptor a byte at a time, never through `proc.stdout`'s buffers: a
    buffered readline takes every line already in the pipe, and select() then waits for more
    while the next line sits unread in the buffer (an agent that printed its two Forwarding
    lines at once seemed to print only one). So nothing is left buffered for the next call,
    or for a test that reads `proc.stdout` itself afterwards."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        line = _read_raw_line(fd)
        if not line:
            break
        seen.append(line)
        match = pattern.search(line)
        if match:
            return match
    raise AssertionError(
        f"{proc.args!r} did not print {pattern.pattern!r} within {timeout}s "
        f"(exit {proc.poll()}); stdout so far: {''.join(seen)!r}"
    )


def _read_raw_line(fd: int) -> str:
    """One line from `fd` (with its newline; without one at EOF; "" at EOF), read a byte at a
    time so that nothing past it is consumed."""
    line = bytearray()
    while not line.endswith(b"\n"):
        byte = os.read(fd, 1)
        if not byte:
            break
        line += byte
    return line.decode(errors="replace")


@dataclass
class Edge:
    data_dir: Path
    config_path: Path
    port_range: tuple[int, int]
    proc: subprocess.Popen[str] | None = None
    agents_port: int = 0  # the public TLS port (agents, https:// and tls:// endpoints)
    http_port: int = 0
    admin_port: int = 0  # 0 until started, and when the admin API is off
    log_path: Path = field(default_factory=Path)

    @property
    def ca_path(self) -> Path:
        return self.data_dir / "ca.pem"

    @property
    def connect_url(self) -> str:
        return f"connect.burrow.localhost:{self.agents_port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def start(self) -> Edge:
        self.log_path = self.data_dir.parent / f"edge-{self.data_dir.name}.log"
        log = self.log_path.open("a")
        self.proc = subprocess.Popen(
            [
                str(BIN / "burrow-edge"),
                "serve",
                "--data-dir",
                str(self.data_dir),
                "--config",
                str(self.config_path),
                "--log-level",
                "debug",
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        match = _read_line_matching(
            self.proc,
            re.compile(
                r"burrow-edge ready: tls=\S+:(\d+) http=(?:\S+:(\d+)|off) admin=(?:\S+:(\d+)|off)"
            ),
            READY_TIMEOUT,
        )
        self.agents_port = int(match.group(1))
        self.http_port = int(match.group(2) or 0)
        self.admin_port = int(match.group(3) or 0)
        return self

    def credential(self, *extra: str) -> str:
        out = subprocess.run(
            [
                str(BIN / "burrow-edge"),
                "credential",
                "create",
                "--data-dir",
                str(self.data_dir),
                *extra,
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        return out.strip().splitlines()[-1]

    def api_key(self, *extra: str) -> str:
        """A new admin API key, made offline with `burrow-edge api-key create`."""
        out = subprocess.run(
            [
                str(BIN / "burrow-edge"),
                "api-key",
                "create",
                "--data-dir",
                str(self.data_dir),
                *extra,
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        return out.strip().splitlines()[-1]

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def log_messages(self) -> list[str]:
        """The message of each line the edge logged (`log_messages_of`)."""
        return log_messages_of(self.log())

    def log_size(self) -> int:
        """How many bytes the edge has logged so far: a mark to pass to `log_since` later."""
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def log_since(self, mark: int) -> str:
        """What the edge logged after `mark` (an earlier `log_size()`): on an edge shared by
        several tests, the lines of one test's own doing."""
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as log:
            log.seek(mark)
            return log.read().decode(errors="replace")


#: A logfmt line's message (the edge logs logfmt when stderr is not a terminal).
_LOGFMT_MSG = re.compile(r' msg=("(?:[^"\\]|\\.)*")')


def log_messages_of(text: str) -> list[str]:
    """The `msg` of each logfmt line of `text`, decoded (logfmt quotes a message, escaping its
    own quotes), so that a test can look for text with quotes in it; a line that is not
    logfmt is kept whole."""
    messages = []
    for line in text.splitlines():
        found = _LOGFMT_MSG.search(line)
        messages.append(json.loads(found.group(1)) if found else line)
    return messages


#: The tcp port range of `make_edge`'s edges.
PORT_RANGE = (21000, 21999)
#: The tcp port range of an edge shared by a module's tests (conftest's `shared_edge`): apart
#: from PORT_RANGE, so that a shared edge and a test's own fresh edge, both running, never
#: pick the same port for their agents.
SHARED_PORT_RANGE = (22000, 22999)


def make_edge(
    tmp_path: Path,
    *,
    agents_port: int = 0,
    port_range: tuple[int, int] = PORT_RANGE,
    heartbeat: str = "",
    extra_config: str = "",
) -> Edge:
    data_dir = tmp_path / "edge-data"
    config = tmp_path / "edge.yml"
    config.write_text(
        f'listen: {{tls: "127.0.0.1:{agents_port}", http: "127.0.0.1:0"}}\n'
        "tcp: {bind_host: 127.0.0.1, public_host: 127.0.0.1, "
        f'port_range: "{port_range[0]}-{port_range[1]}"}}\n'
        # A free port for the admin API, so that edges of concurrent tests never collide.
        'admin: {listen: "127.0.0.1:0"}\n' + heartbeat + extra_config
    )
    return Edge(data_dir=data_dir, config_path=config, port_range=port_range)


FORWARDING = re.compile(
    r"Forwarding ((?:tcp|tls|https?)://(\[[^\]]+\]|[^\s:/]+)(?::(\d+))?) -> (\S+)"
)


@dataclass
class Agent:
    args: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[str] | None = None
    url: str = ""
    host: str = ""  # the URL's host (the SNI and Host clients use)
    port: int = 0  # the URL's port; 0 when the URL names none

    def start(self, *, wait: bool = True) -> Agent:
        """Start the agent; by default wait until it prints its Forwarding line."""
        log = self.log_path.open("a")
        self.proc = subprocess.Popen(
            [str(BIN / "burrow"), *self.args],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=self.env,
        )
        if wait:
            self.wait_forwarding()
        return self

    def run_to_exit(self, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run the agent expecting it to give up (refusals are fatal); output is captured."""
        return subprocess.run(
            [str(BIN / "burrow"), *self.args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def wait_forwarding(self, timeout: float = READY_TIMEOUT) -> str:
        assert self.proc is not None
        match = _read_line_matching(self.proc, FORWARDING, timeout)
        self.url, self.host = match.group(1), match.group(2)
        self.port = int(match.group(3) or 0)
        return self.url

    def interrupt(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=20)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""


def make_agent(
    edge: Edge,
    token: str,
    upstream: str,
    tmp_path: Path,
    *extra: str,
    name: str = "agent",
    command: str = "tcp",
) -> Agent:
    env = dict(os.environ)
    env.update(
        BURROW_CONNECT_URL=edge.connect_url,
        BURROW_CONNECT_CAS=str(edge.ca_path),
        HOME=str(tmp_path),  # no stray ~/.config/burrow/burrow.yml
        XDG_CONFIG_HOME=str(tmp_path / "xdg"),
    )
    return Agent(
        [command, upstream, "--authtoken", token, "--log", "stderr", *extra],
        env,
        tmp_path / f"{name}.log",
    )


class EchoServer:
    """A threaded TCP echo server on 127.0.0.1 (the upstream of most tests)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            try:
                while data := conn.recv(262144):
                    conn.sendall(data)
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self) -> None:
        # shutdown() first: close() alone leaves the listener to the thread blocked in
        # accept(), still taking (and echoing) connections while later tests run.
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def roundtrip(port: int, payload: bytes, timeout: float = 30.0) -> bytes:
    """Send `payload`, half-close, and read everything back."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        received = bytearray()

        def reader() -> None:
            while data := conn.recv(262144):
                received.extend(data)

        thread = threading.Thread(target=reader)
        thread.start()
        conn.sendall(payload)
        conn.shutdown(socket.SHUT_WR)
        thread.join(timeout)
        assert not thread.is_alive(), "reply did not finish in time"
        return bytes(received)


def rss_kib(pid: int) -> int:
    """Resident memory of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


#: curl runs against endpoints get this long; a healthy one takes well under a second.
CURL_TIMEOUT = 120


def curl_endpoint(
    edge: Edge,
    host: str,
    paths: Sequence[str],
    *args: str,
    scheme: str = "https",
    ca: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """curl `paths` on an endpoint by its real name (SNI and Host), resolved to the edge's
    loopback port for `scheme` (the TLS port, or the HTTP port for http), trusting `ca` (the
    edge's development CA by default)."""
    port = edge.http_port if scheme == "http" else edge.agents_port
    return subprocess.run(
        [
            "curl",
            "--silent",
            "--show-error",
            "--cacert",
            str(ca or edge.ca_path),
            "--resolve",
            f"{host}:{port}:127.0.0.1",
            *args,
            *(f"{scheme}://{host}:{port}{path}" for path in paths),
        ],
        capture_output=True,
        text=True,
        timeout=CURL_TIMEOUT,
        check=False,
    )


SDK_HTTP_DRIVER = Path(__file__).with_name("sdk_http_client.py")


def sdk_http_bind_once(
    edge: Edge, token: str, upstream_port: int, options: list[list[object]], timeout: float = 60
) -> dict[str, Any]:
    """Bind an http endpoint with ngrok's Python SDK (tests/e2e/sdk_http_client.py), builder
    `options` applied first, and let it go at once (stdin is closed): the first JSON line it
    printed, `{"url": ...}` or `{"bind_error": [...]}`."""
    done = subprocess.run(
        [
            sys.executable,
            str(SDK_HTTP_DRIVER),
            f"localhost:{edge.agents_port}",
            str(edge.ca_path),
            token,
            f"http://127.0.0.1:{upstream_port}",
        ],
        input="",
        capture_output=True,
        text=True,
        env={**os.environ, "SDK_OPTIONS": json.dumps(options)},
        timeout=timeout,
        check=False,
    )
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, (done.stdout, done.stderr[-2000:])
    first: dict[str, Any] = lines[0]
    return first
