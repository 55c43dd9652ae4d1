"""HTTP/2 on https:// endpoints end to end: a real edge with `http.http2` on, a real agent, an
HTTP/1.1 upstream, and `curl --http2` (built with nghttp2). The edge speaks HTTP/2 to curl and
HTTP/1.1 through the agent; with `http.http2` off (the default) curl gets HTTP/1.1.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

from tests.e2e.harness import Agent, Edge, curl_endpoint, make_agent, make_edge
from tests.e2e.upstreams import HttpUpstream, pattern_sha256


def curl_http2(
    edge: Edge, agent: Agent, *args: str, paths: tuple[str, ...]
) -> subprocess.CompletedProcess[str]:
    """curl --http2 `args` for `paths` on the endpoint."""
    return curl_endpoint(edge, agent.host, paths, "--http2", *args)


def test_curl_gets_http2_through_an_http1_upstream(tmp_path: Path, upstream: HttpUpstream) -> None:
    edge = make_edge(tmp_path, extra_config="http: {http2: true}\n").start()
    agent = make_agent(
        edge, edge.credential(), f"127.0.0.1:{upstream.port}", tmp_path, command="http"
    ).start()
    try:
        # Two requests on one curl command line share one HTTP/2 connection.
        out = curl_http2(
            edge,
            agent,
            "--write-out",
            "|%{http_version}|%{num_connects}\\n",
            paths=("/one", "/two"),
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout == "hello from /one\n|2|1\nhello from /two\n|2|0\n"

        out = curl_http2(edge, agent, paths=("/headers",))
        headers = {k.lower(): v for k, v in json.loads(out.stdout)["headers"]}
        assert headers["host"] == f"{agent.host}:{edge.agents_port}"
        assert headers["x-forwarded-proto"] == "https"
        assert headers["x-forwarded-for"] == "127.0.0.1"

        size = 16 * 1024 * 1024 + 5
        output = str(tmp_path / "big.bin")
        out = curl_http2(edge, agent, "--output", output, paths=(f"/big?size={size}",))
        assert out.returncode == 0, out.stderr
        assert hashlib.sha256((tmp_path / "big.bin").read_bytes()).hexdigest() == (
            pattern_sha256(size)
        )

        body = os.urandom(4 * 1024 * 1024 + 1)
        (tmp_path / "up.bin").write_bytes(body)
        data = f"@{tmp_path / 'up.bin'}"
        out = curl_http2(edge, agent, "--data-binary", data, paths=("/upload",))
        assert out.returncode == 0, out.stderr
        result = json.loads(out.stdout)
        assert result["sha256"] == hashlib.sha256(body).hexdigest()
        assert result["size"] == len(body)

        out = curl_http2(edge, agent, "--include", paths=("/error-header",))
        assert out.stdout.startswith("HTTP/2 200")
        assert "error-code" not in out.stdout.lower()  # only the edge may set those
        assert "Traceback" not in edge.log()
    finally:
        agent.kill()
        edge.stop()


def test_http2_is_off_by_default(edge: Edge, upstream: HttpUpstream, tmp_path: Path) -> None:
    agent = make_agent(
        edge, edge.credential(), f"127.0.0.1:{upstream.port}", tmp_path, command="http"
    ).start()
    try:
        out = curl_http2(edge, agent, "--write-out", "|%{http_version}", paths=("/one",))
        assert out.returncode == 0, out.stderr
        assert out.stdout == "hello from /one\n|1.1"
    finally:
        agent.kill()
