"""The circuit-breaker action end to end: a real edge and agent in front of an upstream that
answers 500 to everything. After the volume threshold the edge answers 503 ERR_NGROK_3202
itself and the upstream is not reached (its hits are counted). The same policy's `log` action
shows up in the admin API's events."""

from __future__ import annotations

import http.server
import json
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import Agent, Edge, curl_endpoint, make_agent

VOLUME = 4  # upstream errors before the breaker trips

POLICY = f"""
      on_http_request:
        - actions:
            - type: log
              config: {{metadata: {{path: "${{req.url.path}}"}}}}
            - type: circuit-breaker
              config:
                error_threshold: 0.5
                volume_threshold: {VOLUME}
                window_duration: 60s
                tripped_duration: 2m
"""


class FailingUpstream:
    """An HTTP/1.1 server that answers every request 500 and counts them."""

    def __init__(self) -> None:
        self.hits = 0
        self._lock = threading.Lock()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                with owner._lock:
                    owner.hits += 1
                body = b"upstream broke\n"
                self.send_response(500)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def failing() -> Iterator[FailingUpstream]:
    server = FailingUpstream()
    try:
        yield server
    finally:
        server.close()


def start_agent(edge: Edge, upstream: FailingUpstream, tmp_path: Path) -> Agent:
    config = tmp_path / "burrow.yml"
    config.write_text(
        "version: 3\n"
        "agent:\n  log: stderr\n"
        "endpoints:\n"
        "  - name: web\n"
        "    url: https://\n"
        "    upstream:\n"
        f"      url: 127.0.0.1:{upstream.port}\n"
        "    traffic_policy:" + POLICY
    )
    agent = make_agent(edge, edge.credential(), "web", tmp_path, "--config", str(config))
    agent.args[0] = "start"
    return agent.start()


def status_line(edge: Edge, agent: Agent, *args: str) -> str:
    done = curl_endpoint(edge, agent.host, ["/work"], "--include", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()[0] if done.stdout else ""


def policy_log_events(edge: Edge, host: str) -> list[dict[str, Any]]:
    request = urllib.request.Request(
        f"{edge.admin_url}/events?type=traffic_policy_log.v0&limit=100",
        headers={"Authorization": f"Bearer {edge.api_key()}", "Ngrok-Version": "2"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        listed = json.loads(response.read())
    return [
        event
        for event in listed["events"]
        if event["object"]["endpoint"]["url"] == f"https://{host}"
    ]


def test_the_breaker_trips_after_upstream_errors_and_the_edge_answers_503(
    shared_edge: Edge, failing: FailingUpstream, tmp_path: Path
) -> None:
    agent = start_agent(shared_edge, failing, tmp_path)
    try:
        for _ in range(VOLUME):
            assert status_line(shared_edge, agent, "--http1.1").startswith("HTTP/1.1 500")
        assert failing.hits == VOLUME
        # Open: the edge answers itself and the upstream sees nothing.
        for _ in range(2):
            done = curl_endpoint(shared_edge, agent.host, ["/work"], "--include", "--http1.1")
            assert done.returncode == 0, done.stderr
            head, _, body = done.stdout.partition("\n\n")
            assert head.startswith("HTTP/1.1 503"), done.stdout
            assert "ngrok-error-code: ERR_NGROK_3202" in head
            assert body.startswith("ERR_NGROK_3202")
        assert failing.hits == VOLUME
        # Every request ran the log action before the breaker: each is an event.
        events = policy_log_events(shared_edge, agent.host)
        assert len(events) == VOLUME + 2
        logs = [event["object"]["traffic_policy"]["logs"][0] for event in events]
        assert all(entry["metadata"] == {"path": "/work"} for entry in logs)
        assert all(entry["phase"] == "on_http_request" for entry in logs)
    finally:
        agent.kill()
