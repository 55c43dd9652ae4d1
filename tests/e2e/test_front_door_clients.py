"""The front door with other clients and agents: ngrok's official SDK binding an https://
endpoint, WebSocket echoes through https:// and http:// endpoints, and an agent verifying (or
deliberately not verifying) its https:// upstream's certificate.

Everything runs for real on loopback: an edge process, an agent process or the SDK in a
subprocess, curl, and trio-websocket in the test's own trio loop.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import trio
import trustme
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    WebSocketRequest,
    serve_websocket,
    wrap_client_stream,
)

from tests.e2e.harness import Agent, Edge, _read_line_matching, curl_endpoint, make_agent
from tests.e2e.upstreams import HttpUpstream

CURL_TIMEOUT = 60
SDK_DRIVER = Path(__file__).with_name("sdk_http_client.py")
#: Bounds that only catch hangs: each test's real work takes a second or two.
TEST_DEADLINE = 60
#: WebSocket messages up to 1 MiB travel whole; both ends accept a little more than that.
WS_MAX_MESSAGE = 4 * 1024 * 1024


def curl(
    edge: Edge, host: str, path: str, *args: str, scheme: str = "https"
) -> subprocess.CompletedProcess[str]:
    """curl `scheme://host:PORT/path` through the edge."""
    return curl_endpoint(edge, host, [path], *args, scheme=scheme)


def check_get_post_and_keep_alive(edge: Edge, host: str, tmp_path: Path) -> None:
    """A GET, a POST whose body the upstream hashes, and two requests on one connection."""
    got = curl(edge, host, "/hello", "--include")
    head, _, body = got.stdout.partition("\n\n")  # text mode turned CRLF into LF
    assert head.startswith("HTTP/1.1 200"), (got.stdout, got.stderr)
    assert body == "hello from /hello\n"

    headers = {k.lower(): v for k, v in json.loads(curl(edge, host, "/headers").stdout)["headers"]}
    assert headers["x-forwarded-proto"] == "https"
    assert headers["host"] == f"{host}:{edge.agents_port}"

    payload = os.urandom(300 * 1024 + 5)
    (tmp_path / "post.bin").write_bytes(payload)
    posted = curl(edge, host, "/upload", "--data-binary", f"@{tmp_path / 'post.bin'}")
    assert json.loads(posted.stdout) == {
        "sha256": hashlib.sha256(payload).hexdigest(),
        "size": len(payload),
        "transfer_encoding": "",
    }, posted.stderr

    # Two URLs on one command line: curl reuses the connection for the second one.
    port = edge.agents_port
    both = subprocess.run(
        [
            "curl",
            "--silent",
            "--show-error",
            "--cacert",
            str(edge.ca_path),
            "--resolve",
            f"{host}:{port}:127.0.0.1",
            "--write-out",
            "|%{http_code}|%{num_connects}\\n",
            f"https://{host}:{port}/one",
            f"https://{host}:{port}/two",
        ],
        capture_output=True,
        text=True,
        timeout=CURL_TIMEOUT,
        check=False,
    )
    assert both.stdout == "hello from /one\n|200|1\nhello from /two\n|200|0\n", both.stderr


# --------------------------------------------------------------------- ngrok's Python SDK

JSON_LINE = re.compile(r"^\{.*\}$")


@pytest.mark.sdk
@pytest.mark.parametrize("domain", ["", "sdk.burrow.localhost"], ids=["random", "domain"])
def test_sdk_https_endpoint_serves_curl(
    shared_edge: Edge, upstream: HttpUpstream, tmp_path: Path, domain: str
) -> None:
    """`session.http_endpoint()[.domain(...)].listen_and_forward("http://...")` binds an
    https:// endpoint on the edge, and curl's requests reach the SDK's upstream through it."""
    edge = shared_edge
    mark = edge.log_size()
    token = edge.credential()
    sdk_log = tmp_path / "sdk.log"
    with sdk_log.open("w") as stderr:
        sdk = subprocess.Popen(
            [
                sys.executable,
                str(SDK_DRIVER),
                f"localhost:{edge.agents_port}",
                str(edge.ca_path),
                token,
                f"http://127.0.0.1:{upstream.port}",
                domain,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        bound = json.loads(_read_line_matching(sdk, JSON_LINE, TEST_DEADLINE).group(0))
        assert "url" in bound, (bound, sdk_log.read_text()[-2000:], edge.log()[-3000:])
        assert bound["proto"] == "https"
        url = urlsplit(bound["url"])
        assert url.scheme == "https"
        assert url.port == edge.agents_port  # the development edge's non-standard TLS port
        host = url.hostname
        assert host is not None
        if domain:
            assert host == domain
        else:
            assert host.endswith(".burrow.localhost")

        check_get_post_and_keep_alive(edge, host, tmp_path)

        assert sdk.stdin is not None
        sdk.stdin.close()  # the SDK closes its listener and session
        closed = json.loads(_read_line_matching(sdk, JSON_LINE, TEST_DEADLINE).group(0))
        assert closed == {"closed": True}, (closed, sdk_log.read_text()[-2000:])
        assert f"unbound https://{host}" in edge.log_since(mark)
    finally:
        if sdk.poll() is None:
            sdk.kill()
        sdk.wait(timeout=10)


# ------------------------------------------------------------------------------ WebSocket


class WebSocketEcho:
    """A trio-websocket handler that echoes every message and records each request's headers."""

    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []

    async def handle(self, request: WebSocketRequest) -> None:
        self.requests.append({k.decode().lower(): v.decode() for k, v in request.headers})
        ws = await request.accept()
        try:
            while True:
                await ws.send_message(await ws.get_message())
        except ConnectionClosed:
            pass


#: Text and binary messages around the frame-length boundaries (125/126, 65535/65536) up to
#: 1 MiB, so the echo crosses many muxado frames and window updates each way.
WS_MESSAGES: list[str | bytes] = [
    "hello burrow",
    "",
    "ünïcødé ✓ " * 7000,
    b"",
    os.urandom(125),
    os.urandom(126),
    os.urandom(65535),
    os.urandom(65536),
    os.urandom(1024 * 1024),
    "x" * (1024 * 1024),
]


async def echo_messages(ws: WebSocketConnection) -> None:
    for message in WS_MESSAGES:
        await ws.send_message(message)
        echoed = await ws.get_message()
        assert type(echoed) is type(message)
        assert echoed == message, f"echo of a {len(message)}-long {type(message).__name__} differs"
    await ws.aclose()  # a close handshake: our Close frame out, the upstream's back
    assert ws.closed is not None
    assert ws.closed.code == 1000


async def start_ws_agent(
    edge: Edge, nursery: trio.Nursery, tmp_path: Path, *extra: str
) -> tuple[WebSocketEcho, Agent]:
    echo = WebSocketEcho()
    server = await nursery.start(
        lambda task_status: serve_websocket(
            echo.handle,
            "127.0.0.1",
            0,
            None,
            max_message_size=WS_MAX_MESSAGE,
            task_status=task_status,
        )
    )
    agent = make_agent(
        edge,
        await trio.to_thread.run_sync(edge.credential),
        f"127.0.0.1:{server.port}",
        tmp_path,
        *extra,
        command="http",
    )
    await trio.to_thread.run_sync(agent.start)
    return echo, agent


async def test_websocket_echo_through_an_https_endpoint(shared_edge: Edge, tmp_path: Path) -> None:
    """wss:// to the edge's TLS port: TLS with the endpoint's name as SNI, then an Upgrade the
    edge passes to the agent's upstream; every message comes back unchanged."""
    edge = shared_edge
    agent: Agent | None = None
    with trio.fail_after(TEST_DEADLINE):
        async with trio.open_nursery() as nursery:
            try:
                echo, agent = await start_ws_agent(edge, nursery, tmp_path)
                assert agent.url.startswith("https://")
                # *.burrow.localhost does not resolve here: dial 127.0.0.1, name the host in
                # SNI and in Host, as a browser would after resolving it.
                tcp = await trio.open_tcp_stream("127.0.0.1", edge.agents_port)
                context = ssl.create_default_context(cafile=str(edge.ca_path))
                tls = trio.SSLStream(tcp, context, server_hostname=agent.host)
                ws = await wrap_client_stream(
                    nursery,
                    tls,
                    f"{agent.host}:{edge.agents_port}",
                    "/echo",
                    max_message_size=WS_MAX_MESSAGE,
                )
                await echo_messages(ws)
                (request,) = echo.requests
                assert request["x-forwarded-proto"] == "https"
                assert request["x-forwarded-host"] == f"{agent.host}:{edge.agents_port}"
            finally:
                if agent is not None:
                    agent.kill()
                nursery.cancel_scope.cancel()


async def test_websocket_echo_through_an_http_endpoint(shared_edge: Edge, tmp_path: Path) -> None:
    """ws:// to the edge's plain HTTP port, routed by Host."""
    edge = shared_edge
    agent: Agent | None = None
    with trio.fail_after(TEST_DEADLINE):
        async with trio.open_nursery() as nursery:
            try:
                echo, agent = await start_ws_agent(
                    edge, nursery, tmp_path, "--url", "http://ws.burrow.localhost"
                )
                assert agent.url == f"http://ws.burrow.localhost:{edge.http_port}"
                tcp = await trio.open_tcp_stream("127.0.0.1", edge.http_port)
                ws = await wrap_client_stream(
                    nursery,
                    tcp,
                    f"ws.burrow.localhost:{edge.http_port}",
                    "/echo",
                    max_message_size=WS_MAX_MESSAGE,
                )
                await echo_messages(ws)
                (request,) = echo.requests
                assert request["x-forwarded-proto"] == "http"
            finally:
                if agent is not None:
                    agent.kill()
                nursery.cancel_scope.cancel()


# ------------------------------------------------------------------- upstream TLS verification


@pytest.fixture
def tls_upstream(tmp_path: Path) -> Iterator[tuple[HttpUpstream, Path]]:
    """An https upstream whose certificate for `localhost` comes from a private trustme CA,
    and that CA's PEM file."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    ca_file = tmp_path / "upstream-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server = HttpUpstream(context)
    try:
        yield server, ca_file
    finally:
        server.close()


@pytest.mark.parametrize("mode", ["private-ca", "no-verify"])
def test_https_upstream_is_reached_when_trusted_or_unverified(
    shared_edge: Edge, tls_upstream: tuple[HttpUpstream, Path], tmp_path: Path, mode: str
) -> None:
    """With the upstream's CA (`--upstream-tls-verify-cas`), or with verification off
    (`--upstream-tls-verify=false`), the agent speaks TLS to the upstream and requests work."""
    edge = shared_edge
    server, ca_file = tls_upstream
    flags = (
        ["--upstream-tls-verify-cas", str(ca_file)]
        if mode == "private-ca"
        else ["--upstream-tls-verify=false"]
    )
    agent = make_agent(
        edge,
        edge.credential(),
        f"https://localhost:{server.port}",
        tmp_path,
        *flags,
        command="http",
    ).start()
    try:
        check_get_post_and_keep_alive(edge, agent.host, tmp_path)
        assert "certificate verify failed" not in agent.log()
    finally:
        agent.kill()


def test_untrusted_https_upstream_gives_err_ngrok_8012(
    shared_edge: Edge, tls_upstream: tuple[HttpUpstream, Path], tmp_path: Path
) -> None:
    """Without the private CA the system store does not trust the upstream: the edge answers
    502 ERR_NGROK_8012 and the agent's log says the certificate did not verify."""
    edge = shared_edge
    server, _ = tls_upstream
    upstream_url = f"https://localhost:{server.port}"
    agent = make_agent(edge, edge.credential(), upstream_url, tmp_path, command="http").start()
    try:
        out = curl(edge, agent.host, "/", "--include")
        head, _, body = out.stdout.partition("\n\n")
        assert head.startswith("HTTP/1.1 502"), (out.stdout, out.stderr)
        assert "ngrok-error-code: ERR_NGROK_8012" in head
        assert "ERR_NGROK_8012" in body
        log = agent.log()
        reason = (
            f"could not reach upstream {upstream_url}: "
            "TLS handshake failed: certificate verify failed"
        )
        assert reason in log, log[-2000:]
    finally:
        agent.kill()
