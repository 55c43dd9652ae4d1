"""A Host that is not the connection's TLS server name, end to end: a real edge, two agents of
two credentials (two customers), an HTTP/1.1 upstream each, and curl told to connect for one
name (`--resolve`, SNI) while naming the other in `Host` (`-H`, or `:authority` over HTTP/2).
The edge answers 421 Misdirected Request and the other customer's upstream never sees it.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Agent, Edge, curl_endpoint, make_agent, make_edge
from tests.e2e.upstreams import HttpUpstream


class CountingUpstream(HttpUpstream):
    """The e2e HTTP upstream, counting the GET requests that reach it."""

    def __init__(self) -> None:
        super().__init__()
        self.requests = 0
        lock = threading.Lock()
        upstream = self
        base = self.server.RequestHandlerClass

        class Counting(base):  # type: ignore[valid-type,misc]
            def do_GET(self) -> None:  # noqa: N802 (http.server names it)
                with lock:
                    upstream.requests += 1
                super().do_GET()

        self.server.RequestHandlerClass = Counting


@pytest.fixture
def tenants(
    tmp_path: Path,
) -> Iterator[tuple[Edge, Agent, CountingUpstream, Agent, CountingUpstream]]:
    """An edge with HTTP/2 on, and two customers' https endpoints, each with its own upstream."""
    edge = make_edge(tmp_path, extra_config="http: {http2: true}\n").start()
    mine_up, victim_up = CountingUpstream(), CountingUpstream()
    agents: list[Agent] = []
    try:
        for name, upstream in (("mine", mine_up), ("victim", victim_up)):
            agent = make_agent(
                edge,
                edge.credential("--description", name),
                f"127.0.0.1:{upstream.port}",
                tmp_path,
                "--url",
                f"https://{name}.burrow.localhost",
                command="http",
                name=name,
            )
            agents.append(agent.start())
        yield edge, agents[0], mine_up, agents[1], victim_up
    finally:
        for agent in agents:
            agent.kill()
        edge.stop()
        mine_up.close()
        victim_up.close()


def curl_as(
    edge: Edge, sni_host: str, host_header: str, *args: str
) -> subprocess.CompletedProcess[str]:
    """curl https://`sni_host`/ (its SNI) with `Host: host_header`, headers included."""
    return curl_endpoint(edge, sni_host, ["/"], "--include", "-H", f"Host: {host_header}", *args)


@pytest.mark.parametrize("version", ["--http1.1", "--http2"])
def test_a_host_of_another_customers_endpoint_is_421(
    tenants: tuple[Edge, Agent, CountingUpstream, Agent, CountingUpstream], version: str
) -> None:
    edge, mine, mine_up, victim, victim_up = tenants
    expected_version = "HTTP/2" if version == "--http2" else "HTTP/1.1"
    assert mine.host == "mine.burrow.localhost" and victim.host == "victim.burrow.localhost"
    for host_header in (victim.host, f"{victim.host}:{edge.agents_port}"):
        out = curl_as(edge, mine.host, host_header, version)
        assert out.returncode == 0, out.stderr
        status_line = out.stdout.splitlines()[0]
        assert status_line.split()[:2] == [expected_version, "421"], out.stdout
        assert "burrow-error-code: burrow_misdirected_request" in out.stdout.lower()
        assert "ngrok-error-code" not in out.stdout.lower()
    assert victim_up.requests == 0
    # Each name on its own connection is served, over the same edge.
    for agent, upstream in ((mine, mine_up), (victim, victim_up)):
        out = curl_as(edge, agent.host, f"{agent.host}:{edge.agents_port}", version)
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines()[0].split()[1] == "200", out.stdout
        assert "hello from /" in out.stdout
        assert upstream.requests == 1
    assert "Traceback" not in edge.log()


def test_the_plain_http_port_has_no_sni_and_routes_by_host(tmp_path: Path) -> None:
    edge = make_edge(tmp_path).start()
    upstream = CountingUpstream()
    agent = make_agent(
        edge,
        edge.credential(),
        f"127.0.0.1:{upstream.port}",
        tmp_path,
        "--url",
        "http://plain.burrow.localhost",
        command="http",
    )
    try:
        agent.start()
        out = curl_endpoint(edge, agent.host, ["/"], "--include", scheme="http")
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith("HTTP/1.1 200")
        assert upstream.requests == 1
    finally:
        agent.kill()
        edge.stop()
        upstream.close()
