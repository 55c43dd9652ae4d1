"""The agent's terminal, end to end: a real edge, a real `burrow` process and curl.

On a real pseudo-terminal the live view shows the endpoint's URL and, after a request through
the tunnel, that request with its status, while log lines stay off the screen (they go to the
configured log file); Ctrl-C restores the screen and echo. With stdout a pipe and
`log_format: json` or `logfmt`, every line the agent writes parses, with one info line per
request and per connection."""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import (
    BIN,
    FORWARDING,
    READY_TIMEOUT,
    EchoServer,
    Edge,
    curl_endpoint,
    make_agent,
    roundtrip,
)
from tests.e2e.upstreams import HttpUpstream
from tests.protocol.formats.test_logs import parse_logfmt

#: How long the screen or the output gets to show something; it takes well under a second.
SHOW_TIMEOUT = 30.0
#: Terminal control sequences (CSI ... final byte), stripped to read the screen's text.
_CSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _config(tmp_path: Path, agent: str, endpoints: str) -> Path:
    path = tmp_path / "burrow.yml"
    path.write_text(
        f"version: 3\nagent:\n  web_addr: 127.0.0.1:{_free_port()}\n{agent}endpoints:\n{endpoints}"
    )
    return path


class _Terminal:
    """The master side of a pseudo-terminal, read by a thread into `output`."""

    def __init__(self, columns: int, rows: int) -> None:
        self.master, self.slave = os.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        self.output = bytearray()
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._done.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                try:
                    data = os.read(self.master, 65536)
                except OSError:
                    return
                with self._lock:
                    self.output += data

    def text(self) -> str:
        with self._lock:
            return self.output.decode(errors="replace")

    def wait_for(self, found: Callable[[str], Any], what: str) -> Any:
        deadline = time.monotonic() + SHOW_TIMEOUT
        while time.monotonic() < deadline:
            result = found(_CSI.sub("", self.text()))
            if result:
                return result
            time.sleep(0.05)
        raise AssertionError(f"the screen never showed {what}: {self.text()[-3000:]!r}")

    def close(self) -> None:
        self._done.set()
        self._thread.join(5)
        os.close(self.master)
        os.close(self.slave)


def test_the_live_view_on_a_real_terminal(edge: Edge, tmp_path: Path) -> None:
    upstream = HttpUpstream()
    log_file = tmp_path / "agent-file.log"
    config = _config(
        tmp_path,
        f"  log: {log_file}\n",
        f"  - name: web\n    url: https://\n    upstream: {{url: 127.0.0.1:{upstream.port}}}\n",
    )
    env = make_agent(edge, "unused", "1", tmp_path).env
    terminal = _Terminal(columns=120, rows=40)
    proc = subprocess.Popen(
        # util-linux's setsid: a session of its own with the pty as its controlling terminal
        # (-c), so that Ctrl-C typed on the master is a real SIGINT from the terminal.
        ["setsid", "-c", "-w", str(BIN / "burrow"), "start", "--all", "--config", str(config)],
        stdin=terminal.slave,
        stdout=terminal.slave,
        stderr=terminal.slave,
        env={**env, "BURROW_AUTHTOKEN": edge.credential()},
    )
    try:
        url = terminal.wait_for(
            lambda screen: re.search(r"Forwarding\s+(https://[^\s~]+) -> http://127", screen),
            "the endpoint's URL",
        ).group(1)
        terminal.wait_for(lambda screen: "Session Status                online" in screen, "online")
        host = url.removeprefix("https://").split(":")[0]
        done = curl_endpoint(edge, host, ["/hello?who=pty"])
        assert done.returncode == 0, done.stderr
        assert done.stdout == "hello from /hello\n"
        row = terminal.wait_for(
            lambda screen: re.search(r"GET\s+/hello\?who=pty\s+200 OK\s+\d+ms", screen),
            "the request with its status",
        )
        assert row
        # Log lines never reach the view's terminal; they went to the log file instead.
        screen = _CSI.sub("", terminal.text())
        assert "lvl=" not in screen and "authenticated as client" not in screen
        assert "GET /hello?who=pty 200 OK" in log_file.read_text()

        os.write(terminal.master, b"\x03")  # Ctrl-C, typed
        assert proc.wait(timeout=30) == 0
        text = terminal.text()
        # the screen and the cursor are restored, then the last notice is printed
        assert re.search(r"\x1b\[\?25h\x1b\[\?1049lburrow: stopped\r\n$", text), text[-300:]
        assert termios.tcgetattr(terminal.slave)[3] & termios.ECHO  # echo is back on
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        terminal.close()
        upstream.close()


class _Lines:
    """The agent's stdout, read from its pipe's descriptor (not through the buffered file, so
    that select() sees every byte) and split into lines."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        self._fd = proc.stdout.fileno()
        self._partial = b""
        self.lines: list[str] = []

    def read_until(self, until: Callable[[], bool], timeout: float = SHOW_TIMEOUT) -> None:
        """Read lines until `until()` holds or the pipe ends; AssertionError after `timeout`."""
        deadline = time.monotonic() + timeout
        while not until():
            assert time.monotonic() < deadline, f"gave up waiting; stdout so far: {self.lines!r}"
            ready, _, _ = select.select([self._fd], [], [], 0.2)
            if not ready:
                continue
            data = os.read(self._fd, 65536)
            if not data:
                return
            *complete, self._partial = (self._partial + data).split(b"\n")
            self.lines.extend(line.decode() for line in complete)


_PARSERS: dict[str, Callable[[str], dict[str, Any]]] = {
    "json": json.loads,
    "logfmt": parse_logfmt,
}


@pytest.mark.parametrize("fmt", ["json", "logfmt"])
def test_every_line_parses_with_one_info_line_per_request_and_connection(
    edge: Edge, tmp_path: Path, fmt: str
) -> None:
    parse = _PARSERS[fmt]
    upstream = HttpUpstream()
    echo = EchoServer()
    config = _config(
        tmp_path,
        f"  log: stdout\n  log_format: {fmt}\n  log_level: info\n",
        f"  - name: web\n    url: https://\n    upstream: {{url: 127.0.0.1:{upstream.port}}}\n"
        f"  - name: raw\n    url: tcp://\n    upstream: {{url: 127.0.0.1:{echo.port}}}\n",
    )
    agent = make_agent(edge, edge.credential(), "1", tmp_path)
    agent.args = ["start", "--all", "--config", str(config), "--authtoken", agent.args[3]]
    agent.start(wait=False)
    assert agent.proc is not None
    stdout = _Lines(agent.proc)
    lines = stdout.lines
    try:
        records: list[dict[str, Any]] = []

        def forwarded() -> list[re.Match[str]]:
            records[:] = [parse(line) for line in lines]  # every line parses, always
            found = [FORWARDING.search(r["msg"]) for r in records]
            return [m for m in found if m]

        stdout.read_until(lambda: len(forwarded()) == 2)
        urls = {m.group(1).split(":")[0]: m for m in forwarded()}
        https, tcp = urls["https"], urls["tcp"]
        done = curl_endpoint(edge, https.group(2), ["/one", "/two"])
        assert done.returncode == 0, done.stderr
        assert roundtrip(int(tcp.group(3)), b"ping") == b"ping"

        def info(obj: str, pattern: str) -> list[dict[str, Any]]:
            return [
                r
                for r in records
                if r["lvl"] == "info" and r["obj"] == obj and re.search(pattern, r["msg"])
            ]

        def both_logged() -> bool:
            forwarded()
            return len(info("agent.console", "^GET ")) == 2 and bool(
                info("agent.forward", "^tcp connection from")
            )

        stdout.read_until(both_logged)
        assert agent.interrupt() == 0
        stdout.read_until(lambda: False)  # to the end of the pipe
        forwarded()
        requests = info("agent.console", "^GET ")
        assert [r["msg"].split(" from ")[0].rsplit(" ", 1)[0] for r in requests] == [
            "GET /one 200 OK",
            "GET /two 200 OK",
        ]
        assert {r["endpoint"] for r in requests} == {"web"}
        (connection,) = info("agent.forward", "^tcp connection from")
        assert connection["endpoint"] == "raw"
        assert "4 bytes in, 4 bytes out" in connection["msg"]
        # the https connection is logged per request only (its connection line is debug)
        assert not info("agent.forward", "^https connection from")
        # stderr carries only the notices (burrow: stopped), in the same format
        notices = [parse(line) for line in agent.log().splitlines()]
        assert [n["msg"] for n in notices] == ["stopped"]
    finally:
        agent.kill()
        upstream.close()
        echo.close()


def test_term_keeps_the_plain_forwarding_line(edge: Edge, tmp_path: Path) -> None:
    """The default format keeps the `Forwarding URL -> UPSTREAM` line scripts parse, and the
    terminal view stays off when stdout is not a terminal."""
    echo = EchoServer()
    agent = make_agent(edge, edge.credential(), str(echo.port), tmp_path)
    try:
        agent.start()
        assert agent.proc is not None and agent.proc.stdout is not None
        assert agent.url.startswith("tcp://")
        assert roundtrip(agent.port, b"hi") == b"hi"
        deadline = time.monotonic() + READY_TIMEOUT
        while "tcp connection from" not in agent.log():
            assert time.monotonic() < deadline, agent.log()
            time.sleep(0.05)
        agent.proc.send_signal(signal.SIGINT)
        assert agent.proc.wait(timeout=30) == 0
        assert "\x1b" not in agent.proc.stdout.read()
        assert "burrow: stopped" in agent.log()
    finally:
        agent.kill()
        echo.close()
