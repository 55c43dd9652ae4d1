"""Fail closed: an endpoint option the edge does not enforce is refused, never ignored.

A user who asked ngrok's SDK for OAuth or OpenID Connect believes the endpoint is protected by
it. Until Burrow enforces such an option, the Bind is refused with an error that names it, and
nothing is served: the upstream is never reached. The options Burrow enforces (a Traffic
Policy, and basic auth, CIDR restrictions, header changes, webhook verification, a circuit
breaker and compression, which become one) bind, and requests show each is enforced (the
actions' full behaviour is tested with the HTTP policy phases). Real processes on loopback: an
edge, ngrok's official SDK in a subprocess, Burrow's agent.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import hmac
import json
import os
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Edge, curl_endpoint, sdk_http_bind_once
from tests.e2e.test_policy_breaker import FailingUpstream
from tests.e2e.upstreams import PATTERN, HttpUpstream

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
        ([["websocket_tcp_conversion"]], "Opts.WebsocketTCPConverter"),
        # Compression, CircuitBreaker and WebhookVerification were refused here until they
        # were mapped to their policy actions: test_sdk_compression_is_enforced and the two
        # tests after it now show each one enforced.
    ],
    ids=["oauth", "oidc", "websocket_tcp_conversion"],
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
    with sdk_endpoint(edge, upstream.port, options) as host:
        done = curl_endpoint(
            edge, host, ["/"], "--output", "/dev/null", "--write-out", "%{http_code}"
        )
        assert done.stdout == str(status), (done.stdout, done.stderr)
    assert " bound https://" in edge.log_since(mark)


@contextlib.contextmanager
def sdk_endpoint(edge: Edge, upstream_port: int, options: list[list[object]]) -> Iterator[str]:
    """An http endpoint bound by ngrok's Python SDK (sdk_http_client.py) with the builder
    calls `options`, forwarding to the upstream on `upstream_port`: its host name, for as long
    as the block runs; the SDK is then let go (stdin closed) and waited for, or killed."""
    mark = edge.log_size()
    env = {**os.environ, "SDK_OPTIONS": json.dumps(options)}
    sdk = subprocess.Popen(
        [
            sys.executable,
            str(SDK_DRIVER),
            f"localhost:{edge.agents_port}",
            str(edge.ca_path),
            edge.credential(),
            f"http://127.0.0.1:{upstream_port}",
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
        assert host is not None
        yield host
        sdk.stdin.close()
        sdk.wait(timeout=SDK_TIMEOUT)
    finally:
        if sdk.poll() is None:
            sdk.kill()
            sdk.wait(timeout=SDK_TIMEOUT)


@pytest.mark.sdk
def test_sdk_compression_is_enforced(
    shared_edge: Edge, upstream: HttpUpstream, tmp_path: Path
) -> None:
    """`.compression()` (Opts.Compression `{}`, once refused here): `curl --compressed` gets
    gzip on the wire that decodes to the upstream's bytes; a client that asks for no encoding
    gets them as they are."""
    size = 20_000
    body = tmp_path / "body"
    with sdk_endpoint(shared_edge, upstream.port, [["compression"]]) as host:
        path = f"/big?size={size}"
        asked = curl_endpoint(
            shared_edge, host, [path], "--dump-header", "-", "--output", str(body),
            "-H", "Accept-Encoding: gzip",
        )  # fmt: skip
        assert asked.returncode == 0, asked.stderr
        head = asked.stdout.lower()
        assert "content-encoding: gzip" in head, asked.stdout
        wire = body.read_bytes()
        assert len(wire) < size and gzip.decompress(wire) == PATTERN[:size]
        decoded = curl_endpoint(
            shared_edge, host, [path], "--compressed", "--output", str(body),
            "--write-out", "%{http_code}",
        )  # fmt: skip
        assert decoded.stdout == "200" and body.read_bytes() == PATTERN[:size]
        plain = curl_endpoint(
            shared_edge, host, [path], "--dump-header", "-", "--output", str(body)
        )
        assert "content-encoding" not in plain.stdout.lower(), plain.stdout
        assert body.read_bytes() == PATTERN[:size]


@pytest.mark.sdk
def test_sdk_webhook_verification_is_enforced(shared_edge: Edge, upstream: HttpUpstream) -> None:
    """`.webhook_verification('github', secret)` (once refused here): an unsigned or wrongly
    signed POST is refused at the edge with ngrok's 403 ERR_NGROK_3204; a correctly signed one
    reaches the upstream with its body unchanged."""
    secret = "sdk-webhook-secret"
    payload = '{"zen":"Keep it logically awesome."}'
    good = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
    bad = hmac.new(b"another secret", payload.encode(), hashlib.sha256).hexdigest()
    options: list[list[object]] = [["webhook_verification", "github", secret]]
    with sdk_endpoint(shared_edge, upstream.port, options) as host:

        def post(*args: str) -> subprocess.CompletedProcess[str]:
            return curl_endpoint(
                shared_edge, host, ["/hook"], "--include", "--http1.1",
                "--data-binary", payload, "-H", "Content-Type: application/json", *args,
            )  # fmt: skip

        for refused in (post(), post("-H", f"X-Hub-Signature-256: sha256={bad}")):
            assert refused.stdout.startswith("HTTP/1.1 403"), refused.stdout
            assert "ngrok-error-code: ERR_NGROK_3204" in refused.stdout
        signed = post("-H", f"X-Hub-Signature-256: sha256={good}")
        head, _, body = signed.stdout.partition("\n\n")
        assert head.startswith("HTTP/1.1 200"), signed.stdout
        seen = json.loads(body)
        assert seen["sha256"] == hashlib.sha256(payload.encode()).hexdigest()


@pytest.mark.sdk
def test_sdk_circuit_breaker_is_enforced(shared_edge: Edge) -> None:
    """`.circuit_breaker(0.5)` (once refused here): the action's default volume (10) of
    upstream 500s trips it, and the edge then answers 503 ERR_NGROK_3202 itself without
    reaching the upstream."""
    volume = 10  # circuit-breaker's default volume_threshold: the SDK sends only the ratio
    failing = FailingUpstream()
    try:
        with sdk_endpoint(shared_edge, failing.port, [["circuit_breaker", 0.5]]) as host:

            def get() -> subprocess.CompletedProcess[str]:
                done = curl_endpoint(shared_edge, host, ["/work"], "--include", "--http1.1")
                assert done.returncode == 0, done.stderr
                return done

            for _ in range(volume):
                assert get().stdout.startswith("HTTP/1.1 500")
            assert failing.hits == volume
            tripped = get()
            assert tripped.stdout.startswith("HTTP/1.1 503"), tripped.stdout
            assert "ngrok-error-code: ERR_NGROK_3202" in tripped.stdout
            assert failing.hits == volume
    finally:
        failing.close()


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
