"""Edge restart without a herd: a fleet of light agents on one real edge, the edge restarted,
and every agent back (same URL, traffic flowing) with its reconnect attempts spread out.

The edge is the real `burrow-edge serve` process, restarted on the same ports. The agents are
real `agent.session.Agent`s (TLS, muxado, Auth, Bind, heartbeats, the reconnect back-off of
agent.backoff) in this test's process, each with one `http://` endpoint, a seeded random
source and a dial that records when it is called (then opens TCP + TLS to the edge as the
agent's own dial does, by address, so a thousand agents need no name lookups). They are
"light" only in sharing one process and one upstream.

A lockstep schedule (ngrok-go's 0.5 s, 1 s, 2 s, ... or Burrow's former 25% jitter) would put
every agent's first reconnect within ~125 ms; full jitter spreads them over the whole first
window [0, 0.5 s) and the later ones over ever wider windows.
"""

from __future__ import annotations

import io
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from random import Random

import pytest
import trio

from agent.cli_endpoints import http_endpoint
from agent.config import AgentSettings, Secret
from agent.edge_dial import edge_tls_context, wrap_edge_tls
from agent.requests import HostInfo
from agent.session import Agent, Reporter
from tests.e2e.harness import PORT_RANGE, Edge
from tests.e2e.upstreams import HttpUpstream

CONNECT_HOST = "connect.burrow.localhost"
HOST = HostInfo(os="linux", arch="x86_64", hostname="herd")
#: The window the spread is judged over, and the most of the fleet one such window may hold.
#: Full jitter puts a fifth of the fleet's first attempts in any 100 ms (the first window is
#: 500 ms wide) and a tenth of its second ones (1 s wide) on top: about 0.3 of the fleet, which
#: is what 200 agents show (0.33). Lockstep puts nearly all of it there (the former 25% jitter:
#: 0.79), so half the fleet is a bound that only a herd breaks.
WINDOW = 0.1
MAX_FLEET_SHARE_PER_WINDOW = 0.5
#: Requests through the edge at once when checking that every endpoint is back.
CHECK_CONCURRENCY = 50


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def herd_edge(tmp_path: Path, fleet: int) -> Edge:
    """An edge on fixed ports (a restart must come back where the agents dial), allowing the
    whole fleet's connections from 127.0.0.1 with room for the ones a restart leaves behind."""
    tls_port, http_port = free_port(), free_port()
    config = tmp_path / "edge.yml"
    config.write_text(
        f'listen: {{tls: "127.0.0.1:{tls_port}", http: "127.0.0.1:{http_port}"}}\n'
        "tcp: {bind_host: 127.0.0.1, public_host: 127.0.0.1, "
        f'port_range: "{PORT_RANGE[0]}-{PORT_RANGE[1]}"}}\n'
        'admin: {listen: "127.0.0.1:0"}\n'
        f"limits: {{max_connections_per_address: {fleet * 3}}}\n"
    )
    return Edge(data_dir=tmp_path / "edge-data", config_path=config, port_range=PORT_RANGE)


@dataclass
class LightAgent:
    index: int
    agent: Agent
    out: io.StringIO
    err: io.StringIO
    attempts: list[float] = field(default_factory=list)

    def forwarding(self) -> list[str]:
        return self.out.getvalue().splitlines()


def make_fleet(
    count: int, edge: Edge, token: str, upstream_port: int, context: ssl.SSLContext
) -> list[LightAgent]:
    settings = AgentSettings(
        authtoken=Secret(token),
        connect_url=f"{CONNECT_HOST}:{edge.agents_port}",
        connect_cas=str(edge.ca_path),
    )
    fleet = []
    for index in range(count):
        out, err = io.StringIO(), io.StringIO()
        endpoint = http_endpoint(
            f"127.0.0.1:{upstream_port}",
            url=f"http://herd-{index}.burrow.localhost",
            name=f"herd-{index}",
        )
        attempts: list[float] = []
        agent = Agent(
            settings,
            [endpoint],
            reporter=Reporter(out, err),
            random=Random(index),
            host=HOST,
            dial=_recording_dial(attempts, edge.agents_port, context),
        )
        fleet.append(LightAgent(index, agent, out, err, attempts))
    return fleet


def _recording_dial(
    attempts: list[float], port: int, context: ssl.SSLContext
) -> Callable[[], Awaitable[trio.abc.Stream]]:
    async def dial() -> trio.abc.Stream:
        attempts.append(trio.current_time())
        with trio.fail_after(10):
            tcp = await trio.open_tcp_stream("127.0.0.1", port)
            return await wrap_edge_tls(tcp, context, CONNECT_HOST)

    return dial


async def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    with trio.move_on_after(timeout):
        while not condition():
            await trio.sleep(0.05)
        return
    raise AssertionError(f"not within {timeout}s: {what}")


async def get(port: int, host: str, path: str) -> bytes:
    with trio.fail_after(20):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
            await stream.send_all(request.encode())
            answer = b""
            while chunk := await stream.receive_some(65536):
                answer += chunk
    return answer


def busiest_window(times: list[float], width: float) -> int:
    """The most of `times` that fall within any `width`-second interval."""
    ordered = sorted(times)
    most, start = 0, 0
    for end, moment in enumerate(ordered):
        while moment - ordered[start] >= width:
            start += 1
        most = max(most, end - start + 1)
    return most


async def restart_without_a_herd(tmp_path: Path, count: int, settle: float) -> None:
    edge = herd_edge(tmp_path, count)
    upstream = HttpUpstream()
    await trio.to_thread.run_sync(edge.start)
    try:
        token = await trio.to_thread.run_sync(edge.credential)
        context = edge_tls_context(str(edge.ca_path))
        fleet = make_fleet(count, edge, token, upstream.port, context)
        async with trio.open_nursery() as nursery:
            for light in fleet:
                nursery.start_soon(light.agent.run)
            await wait_until(
                lambda: all(len(a.forwarding()) == 1 for a in fleet),
                settle,
                f"all {count} agents online",
            )
            first_urls = [a.forwarding()[0] for a in fleet]
            for light in fleet:
                light.attempts.clear()

            restarted_at = trio.current_time()
            await trio.to_thread.run_sync(edge.stop)
            await trio.to_thread.run_sync(edge.start)
            await wait_until(
                lambda: all(len(a.forwarding()) == 2 for a in fleet),
                settle,
                f"all {count} agents back after the restart",
            )
            back_after = trio.current_time() - restarted_at

            # Every session and endpoint came back on its own, at the same URL...
            for light, url in zip(fleet, first_urls, strict=True):
                assert light.forwarding() == [url, url], light.err.getvalue()
            # ...and carries traffic again.
            limiter = trio.CapacityLimiter(CHECK_CONCURRENCY)
            answers: dict[int, bytes] = {}

            async def check(light: LightAgent) -> None:
                async with limiter:
                    answers[light.index] = await get(
                        edge.http_port, f"herd-{light.index}.burrow.localhost", f"/{light.index}"
                    )

            async with trio.open_nursery() as checks:
                for light in fleet:
                    checks.start_soon(check, light)
            for light in fleet:
                answer = answers[light.index]
                assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
                assert answer.endswith(f"hello from /{light.index}\n".encode()), answer[-200:]

            # The attempts spread over the back-off window instead of arriving together.
            attempts = [t - restarted_at for a in fleet for t in a.attempts]
            assert all(a.attempts for a in fleet)
            busiest = busiest_window(attempts, WINDOW)
            assert busiest <= MAX_FLEET_SHARE_PER_WINDOW * count, (
                f"{busiest} of {len(attempts)} attempts ({count} agents) within {WINDOW}s"
            )
            firsts = sorted(a.attempts[0] - restarted_at for a in fleet)
            # The first reconnects fill the first window, [0, 0.5 s), not its last 125 ms.
            first_spread = firsts[int(0.9 * count)] - firsts[int(0.1 * count)]
            assert first_spread > 0.25, f"first attempts 10th-90th percentile: {first_spread}s"
            assert back_after < settle
            for light in fleet:
                light.agent.stop()
    finally:
        await trio.to_thread.run_sync(edge.stop)
        upstream.close()


async def test_200_agents_come_back_after_an_edge_restart_without_a_herd(tmp_path: Path) -> None:
    with trio.fail_after(240):
        await restart_without_a_herd(tmp_path, 200, settle=60.0)


@pytest.mark.slow
async def test_1000_agents_come_back_after_an_edge_restart_without_a_herd(
    tmp_path: Path,
) -> None:
    with trio.fail_after(600):
        await restart_without_a_herd(tmp_path, 1000, settle=150.0)
