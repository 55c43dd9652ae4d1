"""The agent driven by a v3 config file, and resuming its session through a network outage."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config_load import load_config
from tests.e2e.harness import Agent, EchoServer, Edge, make_edge, roundtrip

ROOT = Path(__file__).resolve().parents[2]


def agent_env(edge: Edge, tmp_path: Path, token: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        BURROW_AUTHTOKEN=token,
        BURROW_CONNECT_URL=edge.connect_url,
        BURROW_CONNECT_CAS=str(edge.ca_path),
        HOME=str(tmp_path),
        XDG_CONFIG_HOME=str(tmp_path / "xdg"),
    )
    return env


def test_example_tcp_config_is_valid() -> None:
    config = load_config([ROOT / "deploy" / "agent.tcp.yml"], {})
    assert [e.name for e in config.endpoints] == ["ssh", "postgres"]


def write_config(path: Path, endpoints: dict[str, tuple[str, int]], extra_agent: str = "") -> Path:
    lines = ["version: 3", "agent:", "  log: stderr", extra_agent, "endpoints:"]
    for name, (url, port) in endpoints.items():
        lines += [
            f"  - name: {name}",
            f"    url: {url}",
            "    upstream:",
            f"      url: 127.0.0.1:{port}",
        ]
    path.write_text("\n".join(line for line in lines if line) + "\n")
    return path


def test_start_all_and_start_by_name(edge: Edge, echo: EchoServer, tmp_path: Path) -> None:
    other = EchoServer()
    config = write_config(
        tmp_path / "burrow.yml",
        {
            "one": ("tcp://", echo.port),
            "two": (f"tcp://127.0.0.1:{edge.port_range[0] + 5}", other.port),
        },
    )
    env = agent_env(edge, tmp_path, edge.credential())
    both = Agent(["start", "--all", "--config", str(config)], env, tmp_path / "all.log")
    both.start()
    second_url = both.wait_forwarding()
    try:
        ports = {both.port, int(second_url.rsplit(":", 1)[1])}
        assert edge.port_range[0] + 5 in ports
        for port in ports:
            assert roundtrip(port, b"via config") == b"via config"
    finally:
        both.kill()
    only = Agent(["start", "two", "--config", str(config)], env, tmp_path / "two.log").start()
    try:
        assert only.port == edge.port_range[0] + 5
    finally:
        only.kill()
    other.close()


class FreezableRelay:
    """A TCP relay between the agent and the edge that can go silent without closing anything:
    the network outage a laptop sees when it sleeps or changes networks."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.frozen = threading.Event()
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self.held += [client, upstream]
            frozen_now = self.frozen.is_set()
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b, frozen_now), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, born_frozen: bool) -> None:
        try:
            while data := src.recv(65536):
                if self.frozen.is_set() and not born_frozen:
                    return  # the old path went silent: drop everything, close nothing
                dst.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        # shutdown() first: close() alone leaves the listener to the thread blocked in
        # accept(), which then took connections meant for later tests' servers.
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        for s in self.held:
            s.close()


@pytest.fixture
def relay_edge(tmp_path: Path) -> Iterator[tuple[Edge, FreezableRelay]]:
    # The edge is slow to notice dead agents (long heartbeat); the agent is quick.
    edge = make_edge(tmp_path, heartbeat="heartbeat: {interval: 60s, tolerance: 60s}\n").start()
    relay = FreezableRelay(edge.agents_port)
    try:
        yield edge, relay
    finally:
        relay.close()
        edge.stop()


def test_agent_resumes_its_session_after_an_outage(
    relay_edge: tuple[Edge, FreezableRelay], echo: EchoServer, tmp_path: Path
) -> None:
    """The old session is still alive at the edge when the agent reconnects: without resume
    (ClientId + Cookie) its rebind would fail with ERR_NGROK_334 until the edge timed out."""
    edge, relay = relay_edge
    config = write_config(
        tmp_path / "burrow.yml",
        {"svc": ("tcp://", echo.port)},
        # Short beats, so that the agent notices the outage in under a second.
        extra_agent="  heartbeat_interval: 250ms\n  heartbeat_tolerance: 500ms",
    )
    env = agent_env(edge, tmp_path, edge.credential())
    env["BURROW_CONNECT_URL"] = f"connect.burrow.localhost:{relay.port}"
    agent = Agent(["start", "--all", "--config", str(config)], env, tmp_path / "agent.log").start()
    try:
        port = agent.port
        assert roundtrip(port, b"before") == b"before"
        relay.frozen.set()  # the agent's heartbeats now go unanswered
        agent.wait_forwarding(timeout=60)
        assert agent.port == port, "the endpoint did not come back at the same URL"
        assert roundtrip(port, b"after the outage") == b"after the outage"
        assert "ERR_NGROK_334" not in agent.log()
        assert "resumes client" in edge.log()
    finally:
        agent.kill()
