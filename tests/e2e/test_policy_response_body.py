"""compress-response and response-body-find-replace end to end: a real edge, a real agent
whose config file gives the endpoint a `traffic_policy`, a real upstream, and curl."""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

from tests.e2e.harness import Agent, Edge, curl_endpoint, make_agent
from tests.e2e.upstreams import PATTERN, HttpUpstream

POLICY = """
      on_http_response:
        - expressions: ["req.url.path.startsWith('/greet')"]
          actions:
            - type: response-body-find-replace
              config:
                replacements:
                  - {from: "hello from (/[a-z]+)", to: "goodbye from $1"}
        - actions:
            - type: compress-response
              config: {algorithms: [gzip, deflate]}
"""


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
    agent = make_agent(edge, edge.credential(), "web", tmp_path, "--config", str(config))
    agent.args[0] = "start"
    return agent.start()


def fetch(
    edge: Edge, agent: Agent, path: str, body: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """curl `path` over HTTP/1.1: the head on stdout, the body (as curl leaves it) in `body`."""
    return curl_endpoint(
        edge, agent.host, [path], "--http1.1", "--dump-header", "-", "--output", str(body), *args
    )


def head_of(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, result.stderr
    return [line.strip().lower() for line in result.stdout.splitlines()]


def test_curl_compressed_gets_gzip_that_decodes_to_the_upstreams_bytes(
    shared_edge: Edge, upstream: HttpUpstream, tmp_path: Path
) -> None:
    agent = start_agent(shared_edge, upstream, tmp_path)
    try:
        size = 300_000
        decoded, raw = tmp_path / "decoded", tmp_path / "raw"
        head = head_of(fetch(shared_edge, agent, f"/big?size={size}", decoded, "--compressed"))
        assert head[0].startswith("http/1.1 200"), head
        assert "content-encoding: gzip" in head
        assert "vary: accept-encoding" in head
        assert not any(line.startswith("content-length") for line in head)
        assert decoded.read_bytes() == PATTERN[:size]  # curl decoded it to the upstream's bytes
        # The same, asked by hand: the bytes on the wire are gzip, smaller than the original.
        fetch(shared_edge, agent, f"/big?size={size}", raw, "-H", "Accept-Encoding: gzip")
        wire = raw.read_bytes()
        assert gzip.decompress(wire) == PATTERN[:size]
        assert len(wire) < size // 10
        # A client that asks for no coding gets the upstream's bytes and length.
        plain = head_of(fetch(shared_edge, agent, "/big?size=5000", raw))
        assert f"content-length: {5000}" in plain and "content-encoding: gzip" not in plain
        assert raw.read_bytes() == PATTERN[:5000]
    finally:
        agent.kill()


def test_find_replace_rewrites_the_body_then_compression_applies(
    shared_edge: Edge, upstream: HttpUpstream, tmp_path: Path
) -> None:
    agent = start_agent(shared_edge, upstream, tmp_path)
    try:
        body = tmp_path / "body"
        path = "/greetings/to/all"  # the upstream says "hello from /greetings/to/all"
        rewritten = head_of(fetch(shared_edge, agent, path, body))
        assert rewritten[0].startswith("http/1.1 200"), rewritten
        assert body.read_bytes() == b"goodbye from /greetings/to/all\n"
        assert not any(line.startswith("content-length") for line in rewritten)
        both = head_of(fetch(shared_edge, agent, path, body, "--compressed"))
        assert "content-encoding: gzip" in both
        assert body.read_bytes() == b"goodbye from /greetings/to/all\n"
        untouched = head_of(fetch(shared_edge, agent, "/other", body))  # the rule's expression
        assert body.read_bytes() == b"hello from /other\n"
        assert "content-length: 18" in untouched
    finally:
        agent.kill()
