"""The white-labelled connect URL, end to end with real TLS: an edge serving agents on
`connect.acme.example` with the operator's certificate files, and agents dialling it with
`connect_url` and `connect_cas` from a v3 config file. The last test runs both as real processes.

The edge and the agent run in this process (`serve_edge`, `Agent`) so that the name
`connect.acme.example` can resolve to 127.0.0.1 the way a DNS record would make it: through trio's
documented hook for hostname resolution (`trio.socket.set_custom_hostname_resolver`), which
answers for that one name and passes every other name to the system resolver. The product code
runs unchanged: the agent dials the name from its connect_url, sends it as SNI and verifies the
edge's certificate against connect_cas; the edge routes by that SNI and presents its files.
"""

from __future__ import annotations

import io
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio
import trustme

from agent.config_load import load_config
from agent.session import Agent, Reporter
from edge.config import AdminConfig, EdgeConfig, ListenConfig, TlsConfig
from edge.server import EdgeAddresses, prepare_data_dir, serve_edge
from tests.e2e.harness import READY_TIMEOUT, EchoServer, make_agent, make_edge, roundtrip

CONNECT_HOST = "connect.acme.example"
APP_HOST = "app.burrow.localhost"
LOOPBACK_ANY_PORT = ("127.0.0.1", 0)


class _OneName(trio.abc.HostnameResolver):
    """CONNECT_HOST is 127.0.0.1 (as its DNS record would say); other names go to the system."""

    async def getaddrinfo(
        self,
        host: bytes | None,
        port: bytes | str | int | None,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[Any]:  # trio's own annotation is a union of per-family tuples
        name = host.decode() if isinstance(host, bytes) else host
        if name == CONNECT_HOST:
            number = int(port.decode() if isinstance(port, bytes) else port or 0)
            return [
                (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", number))
            ]
        return await trio.to_thread.run_sync(
            socket.getaddrinfo, name, port, family, type, proto, flags
        )

    async def getnameinfo(
        self, sockaddr: tuple[str, int] | tuple[str, int, int, int], flags: int
    ) -> tuple[str, str]:
        return await trio.to_thread.run_sync(socket.getnameinfo, sockaddr, flags)


def _write_leaf(ca: trustme.CA, directory: Path) -> tuple[Path, Path]:
    leaf = ca.issue_cert(CONNECT_HOST)
    cert, key = directory / "connect.pem", directory / "connect.key"
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    return cert, key


async def _http_upstream(stream: trio.SocketStream) -> None:
    """Answer one HTTP/1.1 request with `ok` and close."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return
        data += chunk
    await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    await stream.aclose()


@asynccontextmanager
async def _acme_edge(tmp_path: Path) -> AsyncIterator[tuple[EdgeAddresses, str, Path]]:
    """An edge whose connect host is CONNECT_HOST, with a certificate from Acme's own CA; yields
    its addresses, an authtoken and the path of Acme's CA certificate."""
    acme_ca = trustme.CA(organization_name="Acme connect CA")
    cert, key = _write_leaf(acme_ca, tmp_path)
    ca_path = tmp_path / "acme-ca.pem"
    acme_ca.cert_pem.write_to_path(str(ca_path))
    config = EdgeConfig(
        connect_host=CONNECT_HOST,
        tls=TlsConfig(cert=cert, key=key),
        listen=ListenConfig(tls=LOOPBACK_ANY_PORT, http=LOOPBACK_ANY_PORT),
        admin=AdminConfig(enabled=False),
    )
    dev_ca, store = prepare_data_dir(tmp_path / "edge-data")
    _, token = store.create_credential(description="clinic-a")
    try:
        async with trio.open_nursery() as nursery:
            addresses: EdgeAddresses = await nursery.start(serve_edge, config, dev_ca, store)
            yield addresses, token, ca_path
            nursery.cancel_scope.cancel()
    finally:
        store.close()


def _agent(
    tmp_path: Path, port: int, token: str, cas: Path, upstream: int
) -> tuple[Agent, io.StringIO]:
    config = tmp_path / "burrow.yml"
    config.write_text(
        "version: 3\n"
        "agent:\n"
        f"  authtoken: {token}\n"
        f"  connect_url: {CONNECT_HOST}:{port}\n"
        f"  connect_cas: {cas}\n"
        "  connect_timeout: 10s\n"
        "endpoints:\n"
        f"  - {{name: app, url: http://{APP_HOST}, upstream: {{url: {upstream}}}}}\n"
    )
    loaded = load_config([config], {})
    assert loaded.agent.connect_url == f"{CONNECT_HOST}:{port}"
    err = io.StringIO()
    return Agent(loaded.agent, loaded.endpoints, reporter=Reporter(io.StringIO(), err)), err


async def _get(http: tuple[str, int]) -> bytes:
    stream = await trio.open_tcp_stream(*http)
    await stream.send_all(
        f"GET / HTTP/1.1\r\nHost: {APP_HOST}\r\nConnection: close\r\n\r\n".encode()
    )
    answer = b""
    while chunk := await stream.receive_some(65536):
        answer += chunk
    await stream.aclose()
    return answer


async def test_agent_dials_the_white_labelled_connect_url_and_serves(tmp_path: Path) -> None:
    trio.socket.set_custom_hostname_resolver(_OneName())
    with trio.fail_after(30):
        async with trio.open_nursery() as upstreams:
            listeners = await upstreams.start(trio.serve_tcp, _http_upstream, 0)
            upstream_port = listeners[0].socket.getsockname()[1]
            async with _acme_edge(tmp_path) as (addresses, token, acme_ca):
                assert addresses.http is not None
                agent, err = _agent(tmp_path, addresses.agents[1], token, acme_ca, upstream_port)
                async with trio.open_nursery() as nursery:
                    await nursery.start(agent.run)  # returns once the endpoint is bound
                    answer = await _get(addresses.http)
                    assert answer.startswith(b"HTTP/1.1 200 "), answer
                    assert answer.endswith(b"\r\n\r\nok"), answer
                    agent.stop()
                assert agent.established_once, err.getvalue()
            upstreams.cancel_scope.cancel()


async def test_an_edge_certificate_from_another_ca_is_refused_with_a_clear_error(
    tmp_path: Path,
) -> None:
    trio.socket.set_custom_hostname_resolver(_OneName())
    stranger = trustme.CA(organization_name="Not Acme")
    wrong_ca = tmp_path / "wrong-ca.pem"
    stranger.cert_pem.write_to_path(str(wrong_ca))
    with trio.fail_after(30):
        async with _acme_edge(tmp_path) as (addresses, token, _):
            agent, err = _agent(tmp_path, addresses.agents[1], token, wrong_ca, 9)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(agent.run)
                while "reconnecting" not in err.getvalue():
                    await trio.sleep(0.05)
                agent.stop()
    text = err.getvalue()
    assert f"cannot connect to the edge at {CONNECT_HOST}:{addresses.agents[1]}" in text
    assert "certificate verify failed" in text
    assert "set connect_cas (or BURROW_CONNECT_CAS) to its CA certificate" in text
    assert not agent.established_once


def test_real_processes_on_an_operator_connect_host(tmp_path: Path, echo: EchoServer) -> None:
    """`burrow-edge serve` with connect_host and tls.cert/tls.key from its config file, and
    `burrow` dialling that host with BURROW_CONNECT_URL/BURROW_CONNECT_CAS. The host is under
    `.localhost` here so that the separate agent process can resolve it without DNS."""
    host = "connect.acme.localhost"
    acme_ca = trustme.CA(organization_name="Acme connect CA")
    leaf = acme_ca.issue_cert(host)
    (tmp_path / "connect.pem").write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(tmp_path / "connect.key"))
    acme_ca.cert_pem.write_to_path(str(tmp_path / "acme-ca.pem"))
    edge = make_edge(
        tmp_path,
        extra_config=f"connect_host: {host}\ntls: {{cert: connect.pem, key: connect.key}}\n",
    ).start()
    try:
        agent = make_agent(edge, edge.credential(), f"127.0.0.1:{echo.port}", tmp_path)
        agent.env.update(
            BURROW_CONNECT_URL=f"{host}:{edge.agents_port}",
            BURROW_CONNECT_CAS=str(tmp_path / "acme-ca.pem"),
        )
        agent.start()
        try:
            assert roundtrip(agent.port, b"through connect.acme") == b"through connect.acme"
        finally:
            agent.kill()
        # The development CA's certificate (what the edge would serve without tls.cert) is
        # not what it serves: an agent trusting only the dev CA is refused.
        doubter = make_agent(
            edge, edge.credential(), f"127.0.0.1:{echo.port}", tmp_path, name="doubter"
        )
        doubter.env.update(BURROW_CONNECT_URL=f"{host}:{edge.agents_port}")
        doubter.start(wait=False)
        try:
            deadline = time.monotonic() + READY_TIMEOUT
            while "certificate verify failed" not in doubter.log():
                assert time.monotonic() < deadline, doubter.log()
                time.sleep(0.1)
        finally:
            doubter.kill()
    finally:
        edge.stop()
