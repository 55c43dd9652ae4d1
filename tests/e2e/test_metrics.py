"""The edge's /metrics under a short real load, read with prometheus_client's own parser: a
real edge, a real agent with a tcp and an https endpoint, curl, an echo upstream, a refused
bind and a failed TLS handshake; and /healthz and /readyz as a probe sees them."""

from __future__ import annotations

import socket
import ssl
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.harness import EchoServer, Edge, curl_endpoint, make_agent, make_edge, roundtrip
from tests.e2e.upstreams import HttpUpstream
from tests.protocol.formats.test_logs import parse_logfmt

#: Small enough for the quick suite, enough to see every counter move.
REQUESTS = 10
CONNECTIONS = 5

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[Edge]:
    running = make_edge(tmp_path).start()
    try:
        yield running
    finally:
        running.stop()


def scrape(edge: Edge) -> Samples:
    with urllib.request.urlopen(edge.admin_url + "/metrics", timeout=30) as response:
        assert response.status == 200
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_for(edge: Edge, check: str, predicate: Callable[[Samples], bool]) -> Samples:
    """Scrape until `predicate(samples)` holds (the edge counts as connections end)."""
    deadline = time.monotonic() + 30
    while True:
        samples = scrape(edge)
        if predicate(samples):
            return samples
        assert time.monotonic() < deadline, (check, samples)
        time.sleep(0.2)


def test_metrics_move_under_load(
    edge: Edge, echo: EchoServer, upstream: HttpUpstream, tmp_path: Path
) -> None:
    before = scrape(edge)
    assert value(before, "burrow_edge_sessions") == 0
    token = edge.credential()
    tcp = make_agent(edge, token, f"127.0.0.1:{echo.port}", tmp_path, name="tcp").start()
    web = make_agent(
        edge, token, f"127.0.0.1:{upstream.port}", tmp_path, name="web", command="http"
    ).start()
    try:
        for index in range(CONNECTIONS):
            payload = b"x" * (1000 + index)
            assert roundtrip(tcp.port, payload) == payload
        for _ in range(REQUESTS):
            done = curl_endpoint(edge, web.host, ["/"], "--output", "/dev/null")
            assert done.returncode == 0, done.stderr
        # A Host no endpoint serves (plain http: over TLS no certificate would be offered):
        # the edge's 404, counted under no endpoint.
        offline = curl_endpoint(
            edge,
            "nobody.burrow.localhost",
            ["/"],
            "-w",
            "%{http_code}",
            "-o",
            "/dev/null",
            scheme="http",
        )
        assert offline.stdout == "404", offline.stderr
        # The same tcp URL again, from another agent: a bind refusal with its code.
        taken = make_agent(edge, token, "127.0.0.1:9", tmp_path, "--url", tcp.url, name="dup")
        assert taken.run_to_exit().returncode != 0
        # An authtoken the edge does not know: an auth refusal with its code.
        stranger = make_agent(edge, "2" * 40, "127.0.0.1:9", tmp_path, name="stranger")
        assert stranger.run_to_exit().returncode != 0
        # A TLS client that rejects the edge's certificate ends the handshake with an alert.
        context = ssl.create_default_context()
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        with (
            socket.create_connection(("127.0.0.1", edge.agents_port), timeout=30) as raw,
            pytest.raises(ssl.SSLError),
        ):
            context.wrap_socket(raw, server_hostname=web.host)

        sent = sum(1000 + i for i in range(CONNECTIONS))
        after = wait_for(
            edge,
            "streams closed and the handshake failure counted",
            lambda s: (
                value(s, "burrow_edge_streams_open") == 0
                and value(s, "burrow_edge_tls_handshake_failures_total", role="https") >= 1
            ),
        )
        requests = "burrow_edge_http_requests_total"
        assert value(after, requests, endpoint=f"https://{web.host}", status="2xx") == REQUESTS
        assert value(after, requests, endpoint="none", status="4xx") == 1
        assert value(after, "burrow_edge_sessions") == 2
        assert value(after, "burrow_edge_endpoints") == 2
        assert value(after, "burrow_edge_streams_opened_total", proto="tcp") == CONNECTIONS
        assert value(after, "burrow_edge_streams_opened_total", proto="https") >= 1
        to_agent = value(after, "burrow_edge_bytes_total", direction="to_agent")
        from_agent = value(after, "burrow_edge_bytes_total", direction="from_agent")
        assert to_agent >= sent + REQUESTS * len("GET / HTTP/1.1\r\n")
        assert from_agent >= sent + REQUESTS * len("HTTP/1.1 200 OK\r\n")
        refusals = {
            dict(labels)["code"]: count
            for (name, labels), count in after.items()
            if name == "burrow_edge_refusals_total" and dict(labels)["kind"] == "bind"
        }
        assert sum(refusals.values()) >= 1 and all(c.startswith("ERR_NGROK_") for c in refusals)
        auth = {
            dict(labels)["code"]
            for (name, labels), count in after.items()
            if name == "burrow_edge_refusals_total" and dict(labels)["kind"] == "auth" and count
        }
        assert auth and all(c.startswith("ERR_NGROK_") for c in auth), auth
        assert value(after, "burrow_edge_store_seconds_count") > value(
            before, "burrow_edge_store_seconds_count"
        )
        # The edge's log under that load: every line logfmt, with the shared fields.
        records = [parse_logfmt(line) for line in edge.log().splitlines()]
        bound = [r for r in records if r.get("endpoint") == f"https://{web.host}"]
        assert bound and all(r["session"].startswith("ts_") for r in bound)
        assert any(r.get("code") in refusals for r in records if r["lvl"] == "warn")
    finally:
        tcp.kill()
        web.kill()


def test_health_and_readiness(edge: Edge) -> None:
    for path, body in (("/healthz", b"ok\n"), ("/readyz", b"ready\n")):
        with urllib.request.urlopen(edge.admin_url + path, timeout=30) as response:
            assert (response.status, response.read()) == (200, body)


def test_http2_requests_are_counted_too(upstream: HttpUpstream, tmp_path: Path) -> None:
    edge = make_edge(tmp_path, extra_config="http: {http2: true}\n").start()
    try:
        web = make_agent(
            edge, edge.credential(), f"127.0.0.1:{upstream.port}", tmp_path, command="http"
        ).start()
        try:
            paths = ["/"] * REQUESTS  # one curl, one HTTP/2 connection, REQUESTS streams
            done = curl_endpoint(
                edge, web.host, paths, "--http2", "-o", "/dev/null", "-o", "/dev/null"
            )
            assert done.returncode == 0, done.stderr
            samples = scrape(edge)
            key = "burrow_edge_http_requests_total"
            assert value(samples, key, endpoint=f"https://{web.host}", status="2xx") == REQUESTS
        finally:
            web.kill()
    finally:
        edge.stop()


def test_policy_refusals_are_counted_by_code(
    edge: Edge, upstream: HttpUpstream, tmp_path: Path
) -> None:
    """A Traffic Policy that denies: the answer is counted under the endpoint and as a policy
    refusal with its code (or `http_<status>` when the answer carries none)."""
    policy = tmp_path / "policy.yml"
    policy.write_text(
        "on_http_request:\n  - actions:\n      - type: deny\n        config: {status_code: 403}\n"
    )
    web = make_agent(
        edge,
        edge.credential(),
        f"127.0.0.1:{upstream.port}",
        tmp_path,
        "--traffic-policy-file",
        str(policy),
        command="http",
    ).start()
    try:
        for _ in range(3):
            done = curl_endpoint(edge, web.host, ["/"], "-w", "%{http_code}", "-o", "/dev/null")
            assert done.stdout == "403", done.stderr
        samples = scrape(edge)
        key = "burrow_edge_http_requests_total"
        assert value(samples, key, endpoint=f"https://{web.host}", status="4xx") == 3
        policy_refusals = {
            dict(labels)["code"]: count
            for (name, labels), count in samples.items()
            if name == "burrow_edge_refusals_total" and dict(labels)["kind"] == "policy"
        }
        assert sum(policy_refusals.values()) == 3, policy_refusals
    finally:
        web.kill()
