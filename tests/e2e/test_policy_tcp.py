"""on_tcp_connect Traffic Policy on a tcp:// endpoint, end to end: a real edge, Burrow's agent
(`burrow tcp --traffic-policy-file`, and `burrow start` with an inline `traffic_policy`), an
echo upstream, and clients bound to different loopback source addresses (127.0.0.2 allowed by
`restrict-ips`, 127.0.0.3 not)."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.e2e.harness import BIN, EchoServer, Edge, log_messages_of, make_agent

#: Bound on `burrow config check`: it reads one file.
CHECK_TIMEOUT = 60

#: Bound on each client socket operation: loopback answers in milliseconds.
CLIENT_TIMEOUT = 30
POLICY = """\
on_tcp_connect:
  - name: who
    actions:
      - type: log
        config:
          metadata: {client: "${conn.client_ip}", port: "${endpoint.port}"}
  - name: office only
    actions:
      - type: restrict-ips
        config: {allow: [127.0.0.2/32]}
"""


def exchange_from(source: str, port: int, payload: bytes) -> bytes:
    """Connect from `source` to the endpoint, send `payload`, half-close, read to EOF."""
    with socket.socket() as conn:
        conn.settimeout(CLIENT_TIMEOUT)
        conn.bind((source, 0))
        conn.connect(("127.0.0.1", port))
        try:
            conn.sendall(payload)
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            return b""  # the edge closed it first
        received = bytearray()
        try:
            while data := conn.recv(65536):
                received.extend(data)
        except ConnectionResetError:
            pass
        return bytes(received)


def wait_for(predicate: Callable[[], bool], timeout: float = CLIENT_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def assert_policy_enforced(edge: Edge, echo: EchoServer, port: int, mark: int) -> None:
    assert exchange_from("127.0.0.2", port, b"hello from .2") == b"hello from .2"
    wait_for(lambda: echo.connections == 1)
    assert exchange_from("127.0.0.3", port, b"hello from .3") == b""
    wait_for(lambda: "127.0.0.3" in edge.log_since(mark) and "closed by" in edge.log_since(mark))
    assert echo.connections == 1  # the refused client never reached the upstream
    log = "\n".join(log_messages_of(edge.log_since(mark)))
    assert "policy on_tcp_connect" in log
    assert '"client": "127.0.0.2"' in log and '"client": "127.0.0.3"' in log
    assert f'"port": {port}' in log
    assert "closed by its traffic policy" in log


def test_restrict_ips_from_a_policy_file(shared_edge: Edge, tmp_path: Path) -> None:
    edge = shared_edge
    mark = edge.log_size()
    policy = tmp_path / "policy.yml"
    policy.write_text(POLICY)
    echo = EchoServer()
    agent = make_agent(
        edge,
        edge.credential(),
        f"127.0.0.1:{echo.port}",
        tmp_path,
        "--traffic-policy-file",
        str(policy),
    ).start()
    try:
        assert "with a traffic policy" in edge.log_since(mark)
        assert_policy_enforced(edge, echo, agent.port, mark)
    finally:
        agent.kill()
        echo.close()


def test_restrict_ips_inline_in_the_agent_config(shared_edge: Edge, tmp_path: Path) -> None:
    """`burrow start` with an inline `traffic_policy` mapping: the agent sends it, the edge
    enforces it (and `burrow config check` accepts the file)."""
    edge = shared_edge
    mark = edge.log_size()
    echo = EchoServer()
    indented = "".join(f"      {line}\n" for line in POLICY.splitlines())
    config = tmp_path / "burrow.yml"
    config.write_text(
        "version: 3\n"
        "agent:\n"
        f"  authtoken: {edge.credential()}\n"
        f"  connect_url: localhost:{edge.agents_port}\n"
        f"  connect_cas: {edge.ca_path}\n"
        "  log: stderr\n"
        "endpoints:\n"
        "  - name: db\n"
        f"    upstream: {{url: '127.0.0.1:{echo.port}'}}\n"
        "    url: tcp://\n"
        "    traffic_policy:\n"
        f"{indented}"
    )
    checked = subprocess.run(
        [str(BIN / "burrow"), "config", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=CHECK_TIMEOUT,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    agent = make_agent(edge, "", "", tmp_path)
    agent.args = ["start", "--all", "--config", str(config)]
    agent.start()
    try:
        assert_policy_enforced(edge, echo, agent.port, mark)
    finally:
        agent.kill()
        echo.close()
