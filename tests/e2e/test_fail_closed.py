"""Fail closed: an endpoint option the edge does not enforce is refused, never ignored.

A user who asked ngrok's SDK for OAuth or compression believes the endpoint is protected (or
changed) by it. Until Burrow enforces such an option, the Bind is refused with an error that
names it, and nothing is served: the upstream is never reached. The options Burrow enforces
(a Traffic Policy, and basic auth, CIDR restrictions and header changes, which become one) now
bind, and a first request shows they are not ignored (their full behaviour is tested with the
HTTP policy phases). Real processes on loopback: an edge, ngrok's official SDK in a subprocess,
Burrow's agent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest

from tests.e2e.harness import Edge, curl_endpoint, sdk_http_bind_once
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
        ([["oauth", "google"]], "Opts.OAuth"),
        ([["oidc", "https://id.example.com", "client", "secret"]], "Opts.OIDC"),
        ([["compression"]], "Opts.Compression"),
        ([["websocket_tcp_conversion"]], "Opts.WebsocketTCPConverter"),
        ([["circuit_breaker", 0.5]], "Opts.CircuitBreaker"),
        ([["webhook_verification", "github", "secret"]], "Opts.WebhookVerification"),
    ],
    ids=[
        "oauth",
        "oidc",
        "compression",
        "websocket_tcp_conversion",
        "circuit_breaker",
        "webhook_verification",
    ],
)
def test_sdk_bind_with_an_unenforced_option_is_refused(
    shared_edge: Edge, upstream: HttpUpstream, options: list[list[str]], named: str
) -> None:
    edge = shared_edge
    mark = edge.log_size()  # the edge is shared: the lines after this are this test's
    token = edge.credential()
    result = sdk_http_bind_once(edge, token, upstream.port, options, SDK_TIMEOUT)
    assert "bind_error" in result, (result, edge.log()[-3000:])
    error = " ".join(result["bind_error"])
    assert named in error
    assert "does not enforce" in error
    log = edge.log_since(mark)
    assert " bound https://" not in log  # "session ... bound URL" for every Bind
    assert "bind refused" in log


@pytest.mark.sdk
@pytest.mark.parametrize(
    ("options", "status"),
    [
        ([["basic_auth", "user", "password123"]], 401),
        ([["deny_cidr", "127.0.0.0/8"]], 403),
        ([["allow_cidr", "10.0.0.0/8"]], 403),
        ([["traffic_policy", POLICY]], 403),
    ],
    ids=["basic_auth", "deny_cidr", "allow_cidr", "traffic_policy"],
)
def test_sdk_bind_with_an_enforced_option_binds_and_is_not_ignored(
    shared_edge: Edge, upstream: HttpUpstream, options: list[list[str]], status: int
) -> None:
    """Each of these would let a request from 127.0.0.1 without credentials through if it
    were ignored; the endpoint binds, and that request is refused with `status`."""
    edge = shared_edge
    mark = edge.log_size()
    env = {**os.environ, "SDK_OPTIONS": json.dumps(options)}
    sdk = subprocess.Popen(
        [
            sys.executable,
            str(SDK_DRIVER),
            f"localhost:{edge.agents_port}",
            str(edge.ca_path),
            edge.credential(),
            f"http://127.0.0.1:{upstream.port}",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert sdk.stdout is not None and sdk.stdin is not None
        line = sdk.stdout.readline()  # the SDK's own RPC bound keeps this from hanging
        result = json.loads(line)
        assert "url" in result, (result, edge.log_since(mark)[-3000:])
        host = urllib.parse.urlsplit(result["url"]).hostname
        done = curl_endpoint(
            edge, host, ["/"], "--output", "/dev/null", "--write-out", "%{http_code}"
        )
        assert done.stdout == str(status), (done.stdout, done.stderr)
        sdk.stdin.close()
        sdk.wait(timeout=SDK_TIMEOUT)
    finally:
        if sdk.poll() is None:
            sdk.kill()
            sdk.wait(timeout=SDK_TIMEOUT)
    assert " bound https://" in edge.log_since(mark)


def test_agent_config_with_an_unenforced_policy_is_refused_at_bind(
    shared_edge: Edge, tmp_path: Path
) -> None:
    """`burrow start` with a traffic_policy whose rules this edge does not run (on_tcp_connect
    on an http:// endpoint: the plain-HTTP port learns the endpoint per request) passes
    `burrow config check` (the agent checks only the document's shape) and is refused by the
    edge at Bind, naming the phase; nothing is served."""
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
        "    url: http://api.example.test\n"
        "    upstream: {url: 8080}\n"
        "    traffic_policy:\n"
        "      on_tcp_connect:\n"
        "        - actions: [{type: restrict-ips, config: {allow: [10.0.0.0/8]}}]\n"
    )
    burrow = str(Path(sys.executable).parent / "burrow")
    checked = subprocess.run(
        [burrow, "config", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=SDK_TIMEOUT,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    done = subprocess.run(
        [burrow, "start", "--all", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=SDK_TIMEOUT,
        check=False,
    )
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "does not run on_tcp_connect rules for http endpoints" in done.stderr
    log = edge.log_since(mark)
    assert "bind refused" in log
    assert " bound http://" not in log
