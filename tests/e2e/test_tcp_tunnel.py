"""A real edge and a real agent (separate processes) carrying tcp:// traffic on loopback.

Most tests share the module's edge (`shared_edge`); those that measure the edge's memory, count
its audit events, restart it or need their own heartbeat settings start their own.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.e2e.harness import BIN, EchoServer, Edge, make_agent, make_edge, roundtrip, rss_kib

MiB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class HashServer:
    """Upstream for the integrity test. A client sends an 8-byte length M, then its payload,
    then half-closes; the server answers sha256(payload), then M random bytes, then their
    sha256. Both directions are verified end to end."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=256)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _serve(conn: socket.socket) -> None:
        with conn:
            head = b""
            while len(head) < 8:
                chunk = conn.recv(8 - len(head))
                if not chunk:
                    return
                head += chunk
            (wanted,) = struct.unpack(">Q", head)
            digest = hashlib.sha256()
            while data := conn.recv(262144):
                digest.update(data)
            reply = random.randbytes(wanted)
            conn.sendall(digest.digest() + reply + hashlib.sha256(reply).digest())
            conn.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        # shutdown() first: close() alone leaves a socket blocked in accept() (or recv()) in
        # its thread, which can then take connections meant for a later test's server.
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


@pytest.fixture
def hash_server() -> Iterator[HashServer]:
    server = HashServer()
    yield server
    server.close()


def exchange(port: int, up: int, down: int, seed: int) -> None:
    rng = random.Random(seed)
    payload = rng.randbytes(up)
    with socket.create_connection(("127.0.0.1", port), timeout=120) as conn:
        received = bytearray()

        def reader() -> None:
            while data := conn.recv(262144):
                received.extend(data)

        thread = threading.Thread(target=reader)
        thread.start()
        conn.sendall(struct.pack(">Q", down) + payload)
        conn.shutdown(socket.SHUT_WR)
        thread.join(120)
    assert len(received) == 32 + down + 32, (seed, len(received), down)
    assert bytes(received[:32]) == hashlib.sha256(payload).digest(), f"upload {seed} corrupted"
    body = bytes(received[32 : 32 + down])
    assert hashlib.sha256(body).digest() == bytes(received[32 + down :]), (
        f"download {seed} corrupted"
    )


def test_hundred_concurrent_connections_verified_by_sha256(
    shared_edge: Edge, hash_server: HashServer, tmp_path: Path
) -> None:
    edge = shared_edge
    agent = make_agent(edge, edge.credential(), f"127.0.0.1:{hash_server.port}", tmp_path).start()
    try:
        rng = random.Random(20261127)
        jobs = [(rng.randint(0, 8 * MiB), rng.randint(0, 8 * MiB), seed) for seed in range(100)]
        jobs[0] = (0, 0, 0)  # empty both ways
        jobs[1] = (8 * MiB, 8 * MiB, 1)  # the largest both ways
        with ThreadPoolExecutor(max_workers=100) as pool:
            for future in [
                pool.submit(exchange, agent.port, up, down, seed) for up, down, seed in jobs
            ]:
                future.result(timeout=300)
    finally:
        agent.kill()


def test_half_close_client_first(shared_edge: Edge, echo: EchoServer, tmp_path: Path) -> None:
    """The client shuts down its write side first and still gets every byte of the reply."""
    edge = shared_edge
    agent = make_agent(edge, edge.credential(), f"127.0.0.1:{echo.port}", tmp_path).start()
    try:
        payload = random.randbytes(3 * MiB + 5)
        assert roundtrip(agent.port, payload) == payload
    finally:
        agent.kill()


def test_half_close_upstream_first(shared_edge: Edge, tmp_path: Path) -> None:
    """The upstream finishes its reply and half-closes while the client is still sending."""
    edge = shared_edge
    server = socket.create_server(("127.0.0.1", 0))
    got = bytearray()
    done = threading.Event()

    def upstream() -> None:
        conn, _ = server.accept()
        with conn:
            conn.sendall(b"greeting first\n")
            conn.shutdown(socket.SHUT_WR)
            while data := conn.recv(65536):
                got.extend(data)
        done.set()

    threading.Thread(target=upstream, daemon=True).start()
    agent = make_agent(
        edge, edge.credential(), f"127.0.0.1:{server.getsockname()[1]}", tmp_path
    ).start()
    try:
        with socket.create_connection(("127.0.0.1", agent.port), timeout=30) as conn:
            reply = bytearray()
            while data := conn.recv(65536):
                reply.extend(data)
            assert reply == b"greeting first\n"  # EOF seen while our side is still open
            late = random.randbytes(MiB)
            conn.sendall(late)  # the other direction still works after the peer's FIN
            conn.shutdown(socket.SHUT_WR)
            assert done.wait(30)
        assert got == late
    finally:
        agent.kill()
        server.close()


def test_stalled_upstream_keeps_memory_bounded(edge: Edge, tmp_path: Path) -> None:
    """An upstream that never reads: the client's sends block; edge and agent stay small."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def upstream() -> None:
        conn, _ = server.accept()
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        held.append(conn)  # accepted, never read

    threading.Thread(target=upstream, daemon=True).start()
    agent = make_agent(
        edge, edge.credential(), f"127.0.0.1:{server.getsockname()[1]}", tmp_path
    ).start()
    assert edge.proc is not None and agent.proc is not None
    try:
        before = (rss_kib(edge.proc.pid), rss_kib(agent.proc.pid))
        with socket.create_connection(("127.0.0.1", agent.port), timeout=30) as conn:
            conn.setblocking(False)
            chunk = b"z" * 65536
            sent = 0
            deadline = time.monotonic() + 4
            while time.monotonic() < deadline and sent < 512 * MiB:
                try:
                    sent += conn.send(chunk)
                except BlockingIOError:
                    time.sleep(0.01)
            after = (rss_kib(edge.proc.pid), rss_kib(agent.proc.pid))
        # Kernel buffers on four sockets plus one 256 KiB window: far below what was offered.
        assert sent < 64 * MiB, f"the sender was not held back: {sent} bytes accepted"
        assert after[0] - before[0] < 32 * 1024, f"edge grew {after[0] - before[0]} KiB"
        assert after[1] - before[1] < 32 * 1024, f"agent grew {after[1] - before[1]} KiB"
    finally:
        agent.kill()
        for conn in held:
            conn.close()
        server.close()


def test_killing_the_agent_frees_its_endpoint_at_once(
    shared_edge: Edge, echo: EchoServer, tmp_path: Path
) -> None:
    edge = shared_edge
    token = edge.credential()
    port = edge.port_range[0] + 7
    first = make_agent(
        edge,
        token,
        f"127.0.0.1:{echo.port}",
        tmp_path,
        "--url",
        f"tcp://127.0.0.1:{port}",
        name="first",
    ).start()
    assert first.port == port
    first.kill()  # SIGKILL: no GOAWAY, the edge sees the TCP connection close
    second = make_agent(
        edge,
        token,
        f"127.0.0.1:{echo.port}",
        tmp_path,
        "--url",
        f"tcp://127.0.0.1:{port}",
        name="second",
    ).start()
    try:
        assert second.port == port
        assert roundtrip(port, b"after takeover") == b"after takeover"
    finally:
        second.kill()


def test_ctrl_c_stops_cleanly_and_releases_the_endpoint(
    shared_edge: Edge, echo: EchoServer, tmp_path: Path
) -> None:
    edge = shared_edge
    token = edge.credential()
    agent = make_agent(edge, token, f"127.0.0.1:{echo.port}", tmp_path).start()
    port = agent.port
    mark = edge.log_size()
    assert agent.interrupt() == 0
    assert "burrow: stopped" in agent.log()
    # The agent said goodbye on the wire (the line is this agent's: it comes after the mark).
    assert "peer sent GOAWAY (NO_ERROR)" in edge.log_since(mark)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    again = make_agent(
        edge,
        token,
        f"127.0.0.1:{echo.port}",
        tmp_path,
        "--url",
        f"tcp://127.0.0.1:{port}",
        name="again",
    ).start()
    again.kill()


def test_restarting_the_edge_brings_the_endpoint_back(tmp_path: Path) -> None:
    echo = EchoServer()
    edge = make_edge(tmp_path, agents_port=free_port()).start()
    token = edge.credential()
    port = edge.port_range[0] + 11
    agent = make_agent(
        edge, token, f"127.0.0.1:{echo.port}", tmp_path, "--url", f"tcp://127.0.0.1:{port}"
    ).start()
    try:
        assert roundtrip(port, b"before") == b"before"
        edge.kill()
        edge.start()  # same data dir (same CA, same credential), same agents port
        agent.wait_forwarding(timeout=60)
        assert agent.port == port
        assert roundtrip(port, b"after restart") == b"after restart"
    finally:
        agent.kill()
        edge.stop()
        echo.close()


def test_bad_token_is_refused_with_err_ngrok_107(
    shared_edge: Edge, echo: EchoServer, tmp_path: Path
) -> None:
    edge = shared_edge
    out = make_agent(edge, "wrong_token", f"127.0.0.1:{echo.port}", tmp_path).run_to_exit()
    assert out.returncode != 0
    assert "ERR_NGROK_107" in out.stderr + out.stdout


def test_second_bind_of_a_url_gets_err_ngrok_334(
    shared_edge: Edge, echo: EchoServer, tmp_path: Path
) -> None:
    edge = shared_edge
    token = edge.credential()
    url = f"tcp://127.0.0.1:{edge.port_range[0] + 3}"
    upstream = f"127.0.0.1:{echo.port}"
    first = make_agent(edge, token, upstream, tmp_path, "--url", url, name="first").start()
    try:
        out = make_agent(edge, token, upstream, tmp_path, "--url", url, name="second").run_to_exit()
        assert out.returncode != 0
        assert "ERR_NGROK_334" in out.stderr + out.stdout
        assert url in out.stderr + out.stdout
        assert roundtrip(first.port, b"first still serves") == b"first still serves"
    finally:
        first.kill()


def test_port_outside_the_range_is_refused(
    shared_edge: Edge, echo: EchoServer, tmp_path: Path
) -> None:
    edge = shared_edge
    upstream = f"127.0.0.1:{echo.port}"
    agent = make_agent(edge, edge.credential(), upstream, tmp_path, "--url", "tcp://127.0.0.1:80")
    out = agent.run_to_exit()
    assert out.returncode != 0
    assert "outside this edge's range" in out.stderr + out.stdout


def test_edge_drops_a_silent_agent_and_frees_its_endpoint(tmp_path: Path) -> None:
    """A frozen agent (SIGSTOP: its TCP connection stays open) misses the edge's heartbeats;
    the edge ends the session and frees the URL for another agent."""
    echo = EchoServer()
    # Short beats, so that the frozen agent is found out in well under a second.
    edge = make_edge(tmp_path, heartbeat="heartbeat: {interval: 250ms, tolerance: 500ms}\n")
    edge.start()
    token = edge.credential()
    url = f"tcp://127.0.0.1:{edge.port_range[0] + 9}"
    frozen = make_agent(edge, token, f"127.0.0.1:{echo.port}", tmp_path, "--url", url, name="a")
    frozen.start()
    assert frozen.proc is not None
    frozen.proc.send_signal(signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 30
        while "heartbeat" not in edge.log() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "no heartbeat reply" in edge.log()
        second = make_agent(edge, token, f"127.0.0.1:{echo.port}", tmp_path, "--url", url, name="b")
        second.start()
        assert roundtrip(second.port, b"the new agent serves") == b"the new agent serves"
        second.kill()
    finally:
        frozen.proc.send_signal(signal.SIGCONT)
        frozen.kill()
        edge.stop()
        echo.close()


def test_bind_outside_the_credentials_acl_gets_err_ngrok_308(
    shared_edge: Edge, echo: EchoServer, tmp_path: Path
) -> None:
    edge = shared_edge
    upstream = f"127.0.0.1:{echo.port}"
    scoped = edge.credential("--acl", "bind:*.clinic-a.internal")
    out = make_agent(edge, scoped, upstream, tmp_path, name="scoped").run_to_exit()
    assert out.returncode != 0
    assert "ERR_NGROK_308" in out.stderr + out.stdout
    allowed = edge.credential("--acl", "bind:127.0.0.1")
    agent = make_agent(edge, allowed, upstream, tmp_path, name="allowed").start()
    try:
        assert roundtrip(agent.port, b"allowed") == b"allowed"
    finally:
        agent.kill()


def test_session_start_and_stop_are_audited(edge: Edge, echo: EchoServer, tmp_path: Path) -> None:
    token = edge.credential("--description", "clinic a")
    agent = make_agent(edge, token, f"127.0.0.1:{echo.port}", tmp_path).start()
    assert agent.interrupt() == 0
    out = subprocess.run(
        [str(BIN / "burrow-edge"), "events", "list", "--data-dir", str(edge.data_dir)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    everything = [json.loads(line) for line in out.splitlines()]
    assert [e["event_type"] for e in everything] == [
        "agent_session_stop.v0",
        "endpoint_unbound.v0",
        "endpoint_bound.v0",
        "agent_session_start.v0",
    ]
    assert everything[1]["object"]["url"] == agent.url == everything[2]["object"]["url"]
    events = [e for e in everything if e["event_type"].startswith("agent_session")]
    stop, start = events[0]["object"], events[1]["object"]
    assert stop["session"]["id"] == start["session"]["id"]
    assert start["credential"]["id"].startswith("cr_")
    assert start["agent_ip"] == "127.0.0.1" and start["transport"] == "muxado"
    assert start["user_agent"].startswith("burrow/") and start["error"] == ""
    assert "agent closed the session" in stop["error"] and stop["stopped_at"]
    assert events[0]["principal"]["credential"]["id"] == start["credential"]["id"]
    shipped = (edge.data_dir / "events.jsonl").read_text().splitlines()
    assert [json.loads(line)["event_id"] for line in shipped][-4:] == [
        e["event_id"] for e in reversed(everything)
    ]
