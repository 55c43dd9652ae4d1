"""Endpoint pools end to end: two real `burrow` agents pooled behind one https:// and one
tcp:// endpoint of a real edge, under a steady, bounded request load.

Each scenario runs a few worker threads that send requests (a new TLS connection and one
`GET` each for https, a new connection and one echo round trip each for tcp) for a couple of
seconds, and records every request: when it started and ended, whether it succeeded, and which
agent's upstream answered. What the tests measured is printed (run with -s to see it) and
summed up in README.md's "Endpoint pools" section.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import random
import re
import signal
import socket
import socketserver
import ssl
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import (
    BIN,
    FORWARDING,
    SDK_HTTP_DRIVER,
    Agent,
    Edge,
    _read_line_matching,
    curl_endpoint,
    make_edge,
    sdk_http_bind_once,
)

#: The edge drops an agent that stops answering heartbeats within interval + tolerance.
HEARTBEAT_INTERVAL = 0.3
HEARTBEAT_TOLERANCE = 0.4
#: Worker threads of the load, and how long a scenario's load runs in all.
WORKERS = 4
LOAD_SECONDS = 2.5
#: Every request gets this long; a healthy one takes milliseconds.
REQUEST_TIMEOUT = 10.0


# --------------------------------------------------------------------------- the upstreams


class NamedHttp:
    """An HTTP/1.1 upstream that answers every GET with its name; `/slow` waits 300 ms first
    (to have requests in flight when an agent goes). `close` makes it unreachable (8012)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.served = 0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path.startswith("/slow"):
                    time.sleep(0.3)
                owner.served += 1
                body = owner.name.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class NamedEcho:
    """A TCP upstream that answers each connection with its name, then echoes."""

    def __init__(self, name: str) -> None:
        self.name = name.encode()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                data = conn.recv(65536)  # the client speaks first
                time.sleep(0.05)
                conn.sendall(self.name + b":" + data)
            except OSError:
                pass

    def close(self) -> None:
        # shutdown() first: close() alone leaves a listener that a thread blocked in accept()
        # holds still taking connections into its backlog, which nobody then serves.
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


# ---------------------------------------------------------------------------------- the load


@dataclass
class Outcome:
    started: float
    ended: float
    ok: bool
    who: str  # the upstream that answered ("" on failure)
    error: str = ""


@dataclass
class Load:
    """`WORKERS` threads calling `request` back to back until stopped; every outcome kept."""

    request: Callable[[], str]
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                who = self.request()
                self.outcomes.append(Outcome(started, time.monotonic(), True, who))
            except Exception as exc:
                self.outcomes.append(Outcome(started, time.monotonic(), False, "", repr(exc)))
            time.sleep(0.005)

    def __enter__(self) -> Load:
        for _ in range(WORKERS):
            thread = threading.Thread(target=self._run, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(REQUEST_TIMEOUT + 5)

    def failures(self, *, started_after: float = 0.0) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok and o.started >= started_after]

    def shares(self, *, started_after: float = 0.0) -> Counter[str]:
        return Counter(o.who for o in self.outcomes if o.ok and o.started >= started_after)


def https_get(edge: Edge, host: str, context: ssl.SSLContext, path: str = "/") -> str:
    """One GET on a new TLS connection (SNI and Host `host`); the upstream's name."""
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    address = ("127.0.0.1", edge.agents_port)
    with (
        socket.create_connection(address, timeout=REQUEST_TIMEOUT) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        tls.sendall(request)
        response = bytearray()
        while data := tls.recv(65536):
            response += data
    head, _, body = bytes(response).partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    if b" 200 " not in status:
        raise AssertionError(f"{status!r}: {body[:200]!r}")
    return body.decode()


def tcp_roundtrip(port: int) -> str:
    """One connection: send a line, read the answer; the upstream's name."""
    with socket.create_connection(("127.0.0.1", port), timeout=REQUEST_TIMEOUT) as conn:
        conn.sendall(b"ping")
        answer = bytearray()
        while data := conn.recv(65536):
            answer += data
    name, sep, echoed = bytes(answer).partition(b":")
    if not sep or echoed != b"ping":
        raise AssertionError(f"unexpected answer {bytes(answer)!r}")
    return name.decode()


# ---------------------------------------------------------------------------- the processes


@pytest.fixture(scope="module")
def pool_edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    """An edge that heartbeats agents every 0.3 s and drops one silent for 0.3 + 0.4 s."""
    running = make_edge(
        tmp_path_factory.mktemp("pool-edge"),
        port_range=(23000, 23999),
        heartbeat=(
            f"heartbeat: {{interval: {HEARTBEAT_INTERVAL}s, tolerance: {HEARTBEAT_TOLERANCE}s}}\n"
        ),
        extra_config="limits: {pool_member_backoff: 2s, pool_member_backoff_max: 2s}\n",
    ).start()
    try:
        yield running
    finally:
        running.stop()


@dataclass
class Pool:
    """Two agents, each serving one https:// and one tcp:// endpoint, both pooled."""

    edge: Edge
    host: str
    tcp_port: int
    agents: dict[str, Agent]
    http: dict[str, NamedHttp]
    echo: dict[str, NamedEcho]
    context: ssl.SSLContext
    api_key: str

    def get(self, path: str = "/") -> str:
        return https_get(self.edge, self.host, self.context, path)

    def roundtrip(self) -> str:
        return tcp_roundtrip(self.tcp_port)

    def members(self) -> list[dict[str, Any]]:
        """The https endpoint's pool as the admin API shows it ([] when it is alone)."""
        request = urllib.request.Request(
            f"{self.edge.admin_url}/endpoints",
            headers={"Authorization": f"Bearer {self.api_key}", "Ngrok-Version": "2"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            listing = json.load(response)
        for endpoint in listing["endpoints"]:
            if endpoint["host"] == self.host and endpoint["proto"] == "https":
                members: list[dict[str, Any]] = endpoint["pools"]
                return members
        return []

    def wait_members(self, count: int, timeout: float = 10.0) -> float:
        """Poll the admin API until the https pool has `count` members (0: the endpoint
        is alone); the monotonic time it was seen."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.members()) == count:
                return time.monotonic()
            time.sleep(0.02)
        raise AssertionError(f"the pool did not reach {count} members: {self.members()}")


def start_agent(edge: Edge, token: str, tmp_path: Path, name: str, config: str) -> Agent:
    path = tmp_path / f"{name}.yml"
    path.write_text(config)
    env = dict(os.environ, HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    agent = Agent(
        ["start", "--all", "--config", str(path), "--authtoken", token, "--log", "stderr"],
        env,
        tmp_path / f"{name}.log",
    )
    agent.start(wait=False)
    assert agent.proc is not None
    try:
        for _ in range(2):  # one Forwarding line per endpoint
            _read_line_matching(agent.proc, FORWARDING, 30)
    except AssertionError as exc:  # say why: the agent's own log
        agent.kill()  # not left running (and reconnecting) after the test
        log = tmp_path / f"{name}.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
        raise AssertionError(f"{exc}\nagent log:\n{tail}") from None
    return agent


def agent_config(edge: Edge, host: str, tcp_port: int, http_port: int, echo_port: int) -> str:
    return (
        "version: 3\n"
        "agent:\n"
        f"  connect_url: {edge.connect_url}\n"
        f"  connect_cas: {edge.ca_path}\n"
        "  web_addr: false\n"
        "  log_level: debug\n"
        "  drain_timeout: 5s\n"
        "endpoints:\n"
        "  - name: web\n"
        f"    url: https://{host}\n"
        "    pooling_enabled: true\n"
        f"    upstream: {{url: 'http://127.0.0.1:{http_port}'}}\n"
        "  - name: db\n"
        f"    url: tcp://127.0.0.1:{tcp_port}\n"
        "    pooling_enabled: true\n"
        f"    upstream: {{url: '127.0.0.1:{echo_port}'}}\n"
    )


def free_tcp_port(edge: Edge) -> int:
    """A port of `edge`'s tcp range that nothing on this machine holds now, for a tcp://
    endpoint's URL. Picked at random (not in a fixed order), so that runs going at once,
    each with its own edge on the same range, seldom try the same port; the edge binds it
    when the first agent asks."""
    ports = list(range(edge.port_range[0], edge.port_range[1] + 1))
    random.shuffle(ports)
    for port in ports:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise AssertionError(f"every port of {edge.port_range} is taken")


@pytest.fixture
def pool(pool_edge: Edge, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Pool]:
    edge = pool_edge
    token = edge.credential()
    label = request.node.name.removeprefix("test_").replace("_", "-")[:40].rstrip("-")
    host = f"pool-{label}.burrow.localhost"
    tcp_port = free_tcp_port(edge)
    http = {name: NamedHttp(name) for name in ("a", "b")}
    echo = {name: NamedEcho(name) for name in ("a", "b")}
    agents: dict[str, Agent] = {}
    try:
        for name in ("a", "b"):
            config = agent_config(edge, host, tcp_port, http[name].port, echo[name].port)
            agents[name] = start_agent(edge, token, tmp_path, f"agent-{name}", config)
        context = ssl.create_default_context(cafile=str(edge.ca_path))
        yield Pool(edge, host, tcp_port, agents, http, echo, context, edge.api_key())
    finally:
        for agent in agents.values():
            if agent.proc is not None and agent.proc.poll() is None:
                agent.proc.send_signal(signal.SIGCONT)
            agent.kill()
        for server in (*http.values(), *echo.values()):
            server.close()


def report(label: str, load: Load, **figures: object) -> None:
    failed = load.failures()
    print(
        f"\n[pools] {label}: {len(load.outcomes)} requests, {len(failed)} failed, "
        f"shares {dict(load.shares())}, "
        + ", ".join(f"{key}={value}" for key, value in figures.items())
    )


# ---------------------------------------------------------------------------------- the tests


def test_both_members_get_a_fair_share_over_https_and_tcp(pool: Pool) -> None:
    assert len(pool.members()) == 2
    with Load(pool.get) as web:
        time.sleep(LOAD_SECONDS / 2)
    with Load(pool.roundtrip) as db:
        time.sleep(LOAD_SECONDS / 2)
    report("fair share https", web)
    report("fair share tcp", db)
    for load in (web, db):
        assert not load.failures(), load.failures()[:3]
        shares = load.shares()
        total = sum(shares.values())
        assert total >= 20
        assert set(shares) == {"a", "b"}
        assert min(shares.values()) >= 0.3 * total, shares  # fair: ~50/50, never under 30%


def test_requests_on_one_keep_alive_connection_are_balanced_one_by_one(pool: Pool) -> None:
    # curl sends the 20 GETs over one connection: each is balanced on its own.
    done = curl_endpoint(pool.edge, pool.host, ["/"] * 20)
    assert done.returncode == 0, done.stderr
    assert (
        "Re-using existing connection"
        in curl_endpoint(pool.edge, pool.host, ["/", "/"], "--verbose").stderr
    )
    served = Counter(done.stdout)
    assert set(served) == {"a", "b"} and sum(served.values()) == 20, done.stdout
    assert min(served.values()) >= 5, served


def test_the_admin_api_and_cli_show_the_pool(pool: Pool) -> None:
    members = pool.members()
    assert len(members) == 2
    for member in members:
        assert member["type"] == "ephemeral"
        assert member["health"] == "healthy"
        assert member["agent_addr"].startswith("127.0.0.1:")
        assert member["tunnel_session"]["id"].startswith("ts_")
    assert len({m["tunnel_session"]["id"] for m in members}) == 2
    listed = subprocess_run(
        [
            str(BIN / "burrow-edge"),
            "endpoint",
            "list",
            "--api-url",
            pool.edge.admin_url,
            "--api-key",
            pool.api_key,
        ]
    )
    lines = [line for line in listed.splitlines() if line.strip().startswith("member ")]
    assert len(lines) >= 4, listed  # two members for each of the two endpoints
    assert all("health=healthy" in line and "agent=127.0.0.1:" in line for line in lines)


def subprocess_run(args: list[str]) -> str:
    import subprocess

    done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_kill_9_of_one_member_fails_no_request_after_the_edge_sees_it(pool: Pool) -> None:
    victim = pool.agents["a"]
    assert victim.proc is not None
    with Load(pool.get) as web, Load(pool.roundtrip) as db:
        time.sleep(0.8)
        killed = time.monotonic()
        victim.proc.kill()
        seen = pool.wait_members(0)  # the edge took it out of the pool: B is alone
        time.sleep(1.0)
    victim.proc.wait(10)
    for label, load in (("kill -9 https", web), ("kill -9 tcp", db)):
        in_flight = load.failures()
        last = max((o.ended for o in in_flight), default=killed)
        report(
            label,
            load,
            edge_saw_close_after_ms=round((seen - killed) * 1000),
            failed_in_flight=len(in_flight),
            failures_for_ms=round((last - killed) * 1000),
        )
        assert not load.failures(started_after=seen), load.failures(started_after=seen)[:3]
        assert all(o.started < seen for o in in_flight)
        assert load.shares(started_after=seen + 0.1).keys() == {"b"}


def test_sigstop_leaves_the_pool_within_interval_plus_tolerance(pool: Pool) -> None:
    victim = pool.agents["a"]
    assert victim.proc is not None
    with Load(pool.get) as web:
        time.sleep(0.5)
        stopped = time.monotonic()
        victim.proc.send_signal(signal.SIGSTOP)  # no close on the wire: only heartbeats tell
        seen = pool.wait_members(0)
        time.sleep(1.0)
    victim.proc.send_signal(signal.SIGCONT)
    left_after = seen - stopped
    report(
        "SIGSTOP https",
        web,
        left_pool_after_ms=round(left_after * 1000),
        failed_in_flight=len(web.failures()),
    )
    # The edge's beat may have just been answered: up to one interval, then interval +
    # tolerance for the unanswered one, plus the admin API poll.
    assert left_after <= 2 * HEARTBEAT_INTERVAL + HEARTBEAT_TOLERANCE + 0.5
    assert not web.failures(started_after=seen)
    assert web.shares(started_after=seen + 0.1).keys() == {"b"}


def test_an_upstream_that_dies_behind_one_member_moves_traffic_to_the_other(pool: Pool) -> None:
    with Load(pool.get) as web, Load(pool.roundtrip) as db:
        time.sleep(0.5)
        dying = time.monotonic()
        pool.http["a"].close()  # agent a's dials now fail: ERR_NGROK_8012 ...
        pool.echo["a"].close()  # ... for both endpoints
        died = time.monotonic()
        time.sleep(1.5)
    report(
        "upstream dies https",
        web,
        failed_while_it_closed=len(web.failures()),
        closing_took_ms=round((died - dying) * 1000),
    )
    report("upstream dies tcp", db, failed_while_it_closed=len(db.failures()))
    # A request the upstream took as it was closing may fail with it (its connection is
    # reset mid-request: ERR_NGROK_3004); once it is gone, every dial fails before any byte
    # reached it, and the request is retried on b: nothing fails.
    assert not web.failures(started_after=died), web.failures(started_after=died)[:3]
    # (The edge once dropped a tcp client's "ping" when it read it in the same moment as a's
    # refusal: the retry on b carried nothing, and the client waited out its timeout.)
    assert not db.failures(started_after=died), db.failures(started_after=died)[:3]
    assert all(o.started >= dying - REQUEST_TIMEOUT for o in web.failures())
    assert web.shares(started_after=died + 0.1).keys() == {"b"}
    assert db.shares(started_after=died + 0.1).keys() == {"b"}
    unhealthy = [m for m in pool.members() if m["health"] != "healthy"]
    assert len(unhealthy) == 1 and "8012" in unhealthy[0]["health_reason"]


def test_sigterm_drains_one_member_and_no_request_fails(pool: Pool) -> None:
    victim = pool.agents["a"]
    assert victim.proc is not None
    with Load(lambda: pool.get("/slow")) as web, Load(pool.roundtrip) as db:
        time.sleep(0.8)
        terminated = time.monotonic()
        victim.proc.send_signal(signal.SIGTERM)
        seen = pool.wait_members(0)
        code = victim.proc.wait(10)
        exited = time.monotonic()
        time.sleep(0.5)
    report(
        "SIGTERM https",
        web,
        left_pool_after_ms=round((seen - terminated) * 1000),
        exited_after_ms=round((exited - terminated) * 1000),
    )
    report("SIGTERM tcp", db)
    assert code == 0
    assert not web.failures(), web.failures()[:3]
    assert not db.failures(), db.failures()[:3]
    assert web.shares(started_after=seen + 0.1).keys() == {"b"}
    assert "a" in web.shares()  # it served until it drained


@pytest.mark.slow
def test_a_rolling_restart_of_both_members_loses_no_request(
    pool: Pool, pool_edge: Edge, tmp_path: Path
) -> None:
    token = pool_edge.credential()
    with Load(pool.get) as web, Load(pool.roundtrip) as db:
        for name in ("a", "b"):
            time.sleep(2.0)
            agent = pool.agents[name]
            assert agent.proc is not None
            agent.proc.send_signal(signal.SIGTERM)
            assert agent.proc.wait(15) == 0
            config = agent_config(
                pool_edge, pool.host, pool.tcp_port, pool.http[name].port, pool.echo[name].port
            )
            pool.agents[name] = start_agent(pool_edge, token, tmp_path, f"again-{name}", config)
            pool.wait_members(2)
        time.sleep(2.0)
    report("rolling restart https", web)
    report("rolling restart tcp", db)
    assert not web.failures() and not db.failures()
    assert len(web.outcomes) > 100 and len(db.outcomes) > 100


def test_the_edge_drains_on_sigterm_and_tells_agents_to_reconnect(tmp_path: Path) -> None:
    edge = make_edge(tmp_path, extra_config="limits: {drain_timeout: 5s}\n").start()
    http, echo = NamedHttp("a"), NamedEcho("a")
    agent: Agent | None = None
    try:
        token = edge.credential()
        host = "drain.burrow.localhost"
        config = agent_config(edge, host, free_tcp_port(edge), http.port, echo.port)
        agent = start_agent(edge, token, tmp_path, "agent", config)
        context = ssl.create_default_context(cafile=str(edge.ca_path))
        results: list[str] = []

        def slow() -> None:
            results.append(https_get(edge, host, context, "/slow"))

        request = threading.Thread(target=slow)
        request.start()
        time.sleep(0.1)  # the request is at the upstream (it answers after 300 ms)
        assert edge.proc is not None
        signalled = time.monotonic()
        edge.proc.send_signal(signal.SIGTERM)
        request.join(REQUEST_TIMEOUT)
        assert results == ["a"]  # the request in flight finished
        with pytest.raises(OSError):  # no new connection is taken
            for _ in range(50):
                https_get(edge, host, context)
                time.sleep(0.02)
        assert edge.proc.wait(10) == 0
        print(f"\n[pools] edge SIGTERM: exited after {time.monotonic() - signalled:.2f}s")
        assert time.monotonic() - signalled < 5.0  # not the whole drain_timeout: it drained
        messages = "\n".join(edge.log_messages())
        assert "agent sessions told to reconnect" in messages
        assert "drained: no stream in flight" in messages
        deadline = time.monotonic() + 10
        while "reconnecting in" not in agent.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "reconnecting in" in agent.log()  # the agent goes on trying: back-off
    finally:
        if agent is not None:
            agent.kill()
        edge.stop()
        http.close()
        echo.close()


@pytest.mark.sdk
def test_the_ngrok_sdk_without_pooling_gets_334_naming_the_fix(pool: Pool) -> None:
    # ngrok's Python SDK 1.4 (the newest .venv's Python 3.11 installs) has no pooling_enabled
    # builder method and never sends PoolingEnabled, so by ngrok's rules it cannot join a
    # pool: its Bind onto the pooled URL is refused as ngrok refuses it, with the fix. SDK
    # 1.5+ can: test_the_ngrok_sdk_1_5_pools_with_a_burrow_agent.
    result = sdk_http_bind_once(
        pool.edge, pool.edge.credential(), pool.http["a"].port, [["domain", pool.host]]
    )
    assert "bind_error" in result, result
    error = " ".join(str(part) for part in result["bind_error"])
    assert "ERR_NGROK_334" in error
    assert "--pooling-enabled" in error
    assert len(pool.members()) == 2  # the pool is untouched


def test_an_upstream_dead_behind_one_member_fails_no_http2_request(tmp_path: Path) -> None:
    """The 8012 case over HTTP/2 (`http.http2` on, `curl --http2`): agent a's upstream is dead,
    so a's agent refuses each stream it gets (STREAM_REFUSED) before any byte reached an
    upstream, and the edge sends the GET to b instead: no request started after it died
    fails."""
    edge = make_edge(
        tmp_path,
        extra_config=(
            "http: {http2: true}\n"
            # A back-off longer than the load, so the admin API still shows a unhealthy after.
            "limits: {pool_member_backoff: 5s, pool_member_backoff_max: 5s}\n"
        ),
    ).start()
    http = {name: NamedHttp(name) for name in ("a", "b")}
    echo = {name: NamedEcho(name) for name in ("a", "b")}
    agents: dict[str, Agent] = {}
    try:
        token = edge.credential()
        host = "pool-http2.burrow.localhost"
        tcp_port = free_tcp_port(edge)
        for name in ("a", "b"):
            config = agent_config(edge, host, tcp_port, http[name].port, echo[name].port)
            agents[name] = start_agent(edge, token, tmp_path, f"agent-{name}", config)
        context = ssl.create_default_context(cafile=str(edge.ca_path))
        pool = Pool(edge, host, tcp_port, agents, http, echo, context, edge.api_key())
        pool.wait_members(2)

        def get_http2() -> str:
            done = curl_endpoint(
                edge, host, ["/"], "--http2", "--write-out", "\n%{http_version} %{http_code}"
            )
            who, _, status = done.stdout.rpartition("\n")
            if done.returncode != 0 or status != "2 200":
                raise AssertionError(f"{status!r} {who[:200]!r} {done.stderr[:200]!r}")
            return who

        assert get_http2() in ("a", "b")  # HTTP/2 end to end, both members up
        http["a"].close()  # agent a's dials now fail: ERR_NGROK_8012
        died = time.monotonic()
        with Load(get_http2) as web:
            time.sleep(1.2)
        report("upstream dead https over HTTP/2", web)
        assert len(web.outcomes) >= 10
        assert not web.failures(started_after=died), web.failures(started_after=died)[:3]
        assert web.shares().keys() == {"b"}
        # a was picked and refused (it is in back-off for 8012), yet no request failed: the
        # edge moved it to b.
        unhealthy = [m for m in pool.members() if m["health"] != "healthy"]
        assert len(unhealthy) == 1 and "8012" in unhealthy[0]["health_reason"]
    finally:
        for agent in agents.values():
            agent.kill()
        edge.stop()
        for server in (*http.values(), *echo.values()):
            server.close()


#: A JSON line the SDK driver (tests/e2e/sdk_http_client.py) prints.
SDK_JSON_LINE = re.compile(r"^\{.*\}$")
#: ngrok's Python SDK 1.5+ (the first with `pooling_enabled`) needs Python 3.12+, so it has its
#: own environment, made by `./dev test` (setup_sdk_client) from a Python >= 3.12.
SDK_PYTHON = Path(__file__).parents[2] / ".venv-sdk" / "bin" / "python"
#: Requests sent through the pool while both members are in it, and after the SDK has left.
SDK_POOL_REQUESTS = 30
SDK_ALONE_REQUESTS = 15
#: Bound on the SDK client's connect + bind, and on its close and exit.
SDK_SECONDS = 60


@pytest.mark.sdk
def test_the_ngrok_sdk_1_5_pools_with_a_burrow_agent(pool_edge: Edge, tmp_path: Path) -> None:
    """ngrok's own Python SDK (1.5+, `.pooling_enabled(True)`) and a `burrow` agent
    (`pooling_enabled: true`) bind the same https:// URL and form one pool: requests through
    the edge reach both; once the SDK closes its listener and session, all go to the agent."""
    if not SDK_PYTHON.exists():
        pytest.fail(
            f"{SDK_PYTHON} is missing: ngrok's Python SDK 1.5+ (pooling_enabled) needs Python "
            "3.12+ in its own virtual environment; run ./dev test once to create it (it says "
            "why when it cannot)"
        )
    edge = pool_edge
    token = edge.credential()
    host = "pool-sdk.burrow.localhost"
    tcp_port = free_tcp_port(edge)
    http = {name: NamedHttp(name) for name in ("burrow", "sdk")}
    echo = NamedEcho("burrow")
    agent: Agent | None = None
    sdk: subprocess.Popen[str] | None = None
    sdk_log = tmp_path / "sdk.log"
    try:
        config = agent_config(edge, host, tcp_port, http["burrow"].port, echo.port)
        agent = start_agent(edge, token, tmp_path, "agent", config)
        with sdk_log.open("w") as log:
            sdk = subprocess.Popen(
                [
                    str(SDK_PYTHON),
                    str(SDK_HTTP_DRIVER),
                    f"localhost:{edge.agents_port}",
                    str(edge.ca_path),
                    token,
                    f"http://127.0.0.1:{http['sdk'].port}",
                    host,
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env={**os.environ, "SDK_OPTIONS": json.dumps([["pooling_enabled", True]])},
            )
        bound = json.loads(_read_line_matching(sdk, SDK_JSON_LINE, SDK_SECONDS).group(0))
        expected = f"https://{host}:{edge.agents_port}"
        assert bound.get("url") == expected, (bound, sdk_log.read_text()[-2000:])
        context = ssl.create_default_context(cafile=str(edge.ca_path))
        pool = Pool(edge, host, tcp_port, {"burrow": agent}, http, {}, context, edge.api_key())
        pool.wait_members(2)

        together = Counter(pool.get() for _ in range(SDK_POOL_REQUESTS))
        print(f"\n[pools] ngrok SDK + burrow agent: {dict(together)}")
        assert sum(together.values()) == SDK_POOL_REQUESTS
        assert set(together) == {"burrow", "sdk"}, together  # both members served

        assert sdk.stdin is not None
        sdk.stdin.close()  # the client closes its listener and session, and exits
        closed = json.loads(_read_line_matching(sdk, SDK_JSON_LINE, SDK_SECONDS).group(0))
        assert closed == {"closed": True}, (closed, sdk_log.read_text()[-2000:])
        assert sdk.wait(SDK_SECONDS) == 0
        pool.wait_members(0)  # the agent's endpoint is alone again
        alone = Counter(pool.get() for _ in range(SDK_ALONE_REQUESTS))
        assert alone == Counter({"burrow": SDK_ALONE_REQUESTS}), alone
    finally:
        if sdk is not None and sdk.poll() is None:
            sdk.kill()
            sdk.wait(10)
        if agent is not None:
            agent.kill()
        for server in http.values():
            server.close()
        echo.close()


def https_member_config(edge: Edge, host: str, http_port: int, policy: str | None) -> str:
    """One pooled https:// endpoint to `http_port`, with `policy` (YAML flow) if given."""
    return (
        "version: 3\n"
        "agent:\n"
        f"  connect_url: {edge.connect_url}\n"
        f"  connect_cas: {edge.ca_path}\n"
        "  web_addr: false\n"
        "endpoints:\n"
        "  - name: web\n"
        f"    url: https://{host}\n"
        "    pooling_enabled: true\n"
        f"    upstream: {{url: 'http://127.0.0.1:{http_port}'}}\n"
        + (f"    traffic_policy: {policy}\n" if policy is not None else "")
    )


def test_an_https_connection_is_served_only_by_members_whose_on_tcp_connect_let_it_in(
    pool_edge: Edge, tmp_path: Path
) -> None:
    """In a pool whose members' on_tcp_connect rules differ (a rolling update adding
    restrict-ips), each https:// connection is checked by the rules of the member chosen for it,
    and all its requests then go to members with those same rules: a client the restricting
    member would refuse never has a request served by it, whichever member let it in."""
    edge = pool_edge
    token = edge.credential()
    host = "pool-pinned.burrow.localhost"
    http = {name: NamedHttp(name) for name in ("a", "b")}
    only_office = (
        "{on_tcp_connect: [{actions: [{type: restrict-ips, config: {allow: [127.0.0.2/32]}}]}]}"
    )
    agents: list[Agent] = []
    try:
        for name, policy in (("a", only_office), ("b", None)):
            path = tmp_path / f"agent-{name}.yml"
            path.write_text(https_member_config(edge, host, http[name].port, policy))
            env = dict(os.environ, HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "xdg"))
            agent = Agent(
                ["start", "--all", "--config", str(path), "--authtoken", token, "--log", "stderr"],
                env,
                tmp_path / f"agent-{name}.log",
            )
            agent.start(wait=False)
            agents.append(agent)
            assert agent.proc is not None
            _read_line_matching(agent.proc, FORWARDING, 30)
        served: dict[str, Counter[str]] = {"127.0.0.2": Counter(), "127.0.0.3": Counter()}
        closed = Counter[str]()
        for attempt in range(16):
            source = "127.0.0.3" if attempt % 2 else "127.0.0.2"
            # --fail-early: a refused first connection ends the run (no second connection).
            done = curl_endpoint(edge, host, ["/"] * 10, "--interface", source, "--fail-early")
            if done.returncode != 0:  # a's rules were chosen and refused the outsider
                assert source == "127.0.0.3" and done.stdout == "", (source, done)
                closed[source] += 1
                continue
            answers = Counter(done.stdout)
            assert sum(answers.values()) == 10, (done.stdout, done.stderr)
            # One connection, one set of rules: every request went to one kind of member.
            assert len(answers) == 1, (source, answers)
            served[source] += answers
        assert served["127.0.0.3"]["a"] == 0  # never the member that refuses it
        assert closed["127.0.0.3"] + served["127.0.0.3"]["b"] // 10 == 8
        assert served["127.0.0.2"]["a"] + served["127.0.0.2"]["b"] == 80
    finally:
        for agent in agents:
            agent.kill()
        for server in http.values():
            server.close()
