"""Fail closed: an endpoint option the edge does not enforce is refused, never ignored.

A user who asked ngrok's SDK for basic auth or a CIDR restriction, or who wrote a Traffic Policy,
believes the endpoint is protected. Until Burrow enforces those, the Bind is refused with an
error that names the option, and nothing is served: the upstream is never reached.
Real processes on loopback: an edge, ngrok's official SDK in a subprocess, Burrow's agent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.harness import Edge
from tests.e2e.upstreams import HttpUpstream

SDK_DRIVER = Path(__file__).with_name("sdk_http_client.py")
#: Bounds that only catch hangs: the SDK connects and binds in about a second.
SDK_TIMEOUT = 60

POLICY = json.dumps(
    {
        "on_http_request": [
            {
                "actions": [
                    {"type": "restrict-ips", "config": {"enforce": True, "allow": ["10.0.0.0/8"]}}
                ]
            }
        ]
    }
)


@pytest.mark.sdk
@pytest.mark.parametrize(
    ("options", "named"),
    [
        ([["basic_auth", "user", "password123"]], "Opts.BasicAuth (basic auth)"),
        ([["deny_cidr", "10.0.0.0/8"]], "Opts.IPRestriction"),
        ([["allow_cidr", "127.0.0.1/32"]], "Opts.IPRestriction"),
        ([["traffic_policy", POLICY]], "Opts.TrafficPolicy (a Traffic Policy)"),
        ([["request_header", "X-Tenant", "a"]], "Opts.RequestHeaders"),
        ([["oauth", "google"]], "Opts.OAuth"),
        ([["compression"]], "Opts.Compression"),
        ([["websocket_tcp_conversion"]], "Opts.WebsocketTCPConverter"),
    ],
    ids=[
        "basic_auth",
        "deny_cidr",
        "allow_cidr",
        "traffic_policy",
        "request_header",
        "oauth",
        "compression",
        "websocket_tcp_conversion",
    ],
)
def test_sdk_bind_with_an_unenforced_option_is_refused(
    shared_edge: Edge, upstream: HttpUpstream, options: list[list[str]], named: str
) -> None:
    edge = shared_edge
    mark = edge.log_size()  # the edge is shared: the lines after this are this test's
    token = edge.credential()
    env = {**os.environ, "SDK_OPTIONS": json.dumps(options)}
    done = subprocess.run(
        [
            sys.executable,
            str(SDK_DRIVER),
            f"localhost:{edge.agents_port}",
            str(edge.ca_path),
            token,
            f"http://127.0.0.1:{upstream.port}",
        ],
        input="",
        capture_output=True,
        text=True,
        env=env,
        timeout=SDK_TIMEOUT,
        check=False,
    )
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, (done.stdout, done.stderr[-2000:])
    result = lines[0]
    assert "bind_error" in result, (result, edge.log()[-3000:])
    error = " ".join(result["bind_error"])
    assert named in error
    assert "does not enforce" in error
    log = edge.log_since(mark)
    assert " bound https://" not in log  # "session ... bound URL" for every Bind
    assert "bind refused" in log


def test_agent_config_with_a_policy_is_refused_before_it_connects(
    shared_edge: Edge, tmp_path: Path
) -> None:
    """`burrow start` with a traffic_policy fails at once, naming the key path, and never
    reaches the edge; `burrow config check` says the same."""
    edge = shared_edge
    mark = edge.log_size()  # the edge is shared: the lines after this are this test's
    config = tmp_path / "burrow.yml"
    config.write_text(
        "version: 3\n"
        "agent:\n"
        f"  authtoken: {edge.credential()}\n"
        f"  connect_url: localhost:{edge.agents_port}\n"
        f"  connect_cas: {edge.ca_path}\n"
        "endpoints:\n"
        "  - name: api\n"
        "    url: https://api.example.test\n"
        "    upstream: {url: 8080}\n"
        "    traffic_policy:\n"
        "      on_http_request:\n"
        "        - actions: [{type: basic-auth, config: {credentials: ['u:password1']}}]\n"
    )
    burrow = str(Path(sys.executable).parent / "burrow")
    for argv in (["start", "--all"], ["config", "check"]):
        done = subprocess.run(
            [burrow, *argv, "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=SDK_TIMEOUT,
            check=False,
        )
        assert done.returncode == 1, (argv, done.stdout, done.stderr)
        assert f"{config}:10: endpoints[0].traffic_policy:" in done.stderr
        assert "not enforced by Burrow yet" in done.stderr
    assert "authenticated" not in edge.log_since(mark)
