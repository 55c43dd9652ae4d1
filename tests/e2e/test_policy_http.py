"""Traffic Policy on an https endpoint, end to end: a real edge, a real agent whose config file
gives the endpoint a `traffic_policy`, a real upstream, and curl from two source addresses."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Agent, Edge, curl_endpoint, make_agent, make_edge
from tests.e2e.upstreams import HttpUpstream

POLICY = """
      on_http_request:
        - name: audit
          actions:
            - type: log
              config: {metadata: {path: "${req.url.path}", client: "${conn.client_ip}"}}
            - type: restrict-ips
              config: {allow: [127.0.0.2/32]}
            - type: basic-auth
              config: {realm: e2e, credentials: ["ops:s3cret-pass"]}
            - type: add-headers
              config: {headers: {x-policy-client: "${conn.client_ip}"}}
      on_http_response:
        - actions:
            - type: add-headers
              config: {headers: {x-policy: seen}}
"""


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[Edge]:
    """An edge that offers HTTP/2 as well, so both HTTP versions meet the policy."""
    running = make_edge(tmp_path, extra_config="http: {http2: true}\n").start()
    try:
        yield running
    finally:
        running.stop()


def start_agent(edge: Edge, upstream: HttpUpstream, tmp_path: Path) -> Agent:
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
    # make_agent's environment and flags, with `start web --config` for `http ADDR`.
    agent = make_agent(edge, edge.credential(), "web", tmp_path, "--config", str(config))
    agent.args[0] = "start"
    return agent.start()


def get(edge: Edge, agent: Agent, source: str, *args: str) -> subprocess.CompletedProcess[str]:
    return curl_endpoint(edge, agent.host, ["/headers"], "--interface", source, "--include", *args)


def http1(edge: Edge, agent: Agent, source: str, *args: str) -> subprocess.CompletedProcess[str]:
    return get(edge, agent, source, "--http1.1", *args)


def test_basic_auth_and_restrict_ips_from_a_config_file(
    edge: Edge, upstream: HttpUpstream, tmp_path: Path
) -> None:
    agent = start_agent(edge, upstream, tmp_path)
    try:
        assert agent.url.startswith("https://")
        # Not on the allow list: refused whatever the credentials.
        outside = http1(edge, agent, "127.0.0.3", "--user", "ops:s3cret-pass")
        assert outside.returncode == 0, outside.stderr
        assert outside.stdout.startswith("HTTP/1.1 403"), outside.stdout
        assert "burrow-error-code" not in outside.stdout.lower()
        # On the list: basic-auth asks, then lets the right credentials through.
        anonymous = http1(edge, agent, "127.0.0.2")
        assert anonymous.stdout.startswith("HTTP/1.1 401"), anonymous.stdout
        assert 'www-authenticate: basic realm="e2e"' in anonymous.stdout.lower()
        wrong = http1(edge, agent, "127.0.0.2", "--user", "ops:wrong-pass")
        assert wrong.stdout.startswith("HTTP/1.1 401"), wrong.stdout
        allowed = http1(edge, agent, "127.0.0.2", "--user", "ops:s3cret-pass")
        assert allowed.returncode == 0, allowed.stderr
        head, _, body = allowed.stdout.partition("\n\n")  # (text mode: universal newlines)
        assert head.startswith("HTTP/1.1 200"), allowed.stdout
        assert "x-policy: seen" in head.lower()  # the response phase ran
        seen = {name.lower(): value for name, value in json.loads(body)["headers"]}
        assert seen["x-policy-client"] == "127.0.0.2"  # the request phase's change, upstream
        # The same policy over HTTP/2.
        refused = get(edge, agent, "127.0.0.3", "--http2", "--user", "ops:s3cret-pass")
        assert refused.stdout.startswith("HTTP/2 403"), refused.stdout
        h2 = get(edge, agent, "127.0.0.2", "--http2", "--user", "ops:s3cret-pass")
        assert h2.stdout.startswith("HTTP/2 200"), h2.stdout
        assert "x-policy: seen" in h2.stdout
        # The log action's records are the edge's INFO lines, naming the endpoint and rule.
        logged = [line for line in edge.log_messages() if 'rule 0 ("audit")' in line]
        assert len(logged) == 6, logged
        endpoint = f"policy https://{agent.host}: "
        assert all(endpoint in line and '"path": "/headers"' in line for line in logged)
        assert sum('"client": "127.0.0.3"' in line for line in logged) == 2
    finally:
        agent.kill()
