"""ALPN through agent TLS termination, with real edge and agent processes and real clients.

A tls:// endpoint whose TLS the agent terminates (`agent_tls_termination`) selects its ALPN
protocol from `alpn_protocols`: PostgreSQL 17+ clients with `sslnegotiation=direct` need the
server to select `postgresql`. A client that offers only protocols the list does not name still
completes the handshake, with no protocol selected (the documented behaviour).
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from tests.e2e.harness import Agent, EchoServer, Edge

HOST = "pg.burrow.localhost"


@pytest.fixture
def pg_agent(shared_edge: Edge, echo: EchoServer, tmp_path: Path) -> Iterator[tuple[Agent, Path]]:
    """An agent terminating tls://pg.burrow.localhost with alpn_protocols [postgresql], its
    upstream an echo server; yields it with the path of the server certificate's CA."""
    edge = shared_edge
    server_ca = trustme.CA()
    leaf = server_ca.issue_cert(HOST)
    (tmp_path / "server.pem").write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    server_ca.cert_pem.write_to_path(str(tmp_path / "server-ca.pem"))
    config = tmp_path / "burrow.yml"
    config.write_text(
        "version: 3\n"
        "agent: {log: stderr}\n"
        "endpoints:\n"
        "  - name: pg\n"
        f"    url: tls://{HOST}\n"
        f"    upstream: {{url: '127.0.0.1:{echo.port}'}}\n"
        "    agent_tls_termination:\n"
        "      server_certificate: server.pem\n"
        "      server_private_key: server.key\n"
        "      alpn_protocols: [postgresql]\n"
    )
    env = dict(os.environ)
    env.update(
        BURROW_AUTHTOKEN=edge.credential(),
        BURROW_CONNECT_URL=edge.connect_url,
        BURROW_CONNECT_CAS=str(edge.ca_path),
        HOME=str(tmp_path),
        XDG_CONFIG_HOME=str(tmp_path / "xdg"),
    )
    agent = Agent(["start", "--all", "--config", str(config)], env, tmp_path / "agent.log")
    agent.start()
    try:
        assert agent.url == f"tls://{HOST}:{edge.agents_port}"
        yield agent, tmp_path / "server-ca.pem"
    finally:
        agent.kill()


def _connect(edge: Edge, ca: Path, offer: list[str]) -> tuple[str | None, bytes]:
    """Python's ssl client through the edge's public TLS port, offering `offer` in ALPN: the
    protocol the agent selected, and what the echo upstream sent back."""
    context = ssl.create_default_context(cafile=str(ca))
    context.set_alpn_protocols(offer)
    raw = socket.create_connection(("127.0.0.1", edge.agents_port), timeout=30)
    with context.wrap_socket(raw, server_hostname=HOST) as tls:
        selected = tls.selected_alpn_protocol()
        tls.sendall(b"SELECT 1;")
        echoed = b""
        while len(echoed) < len(b"SELECT 1;"):
            chunk = tls.recv(1024)
            if not chunk:
                break
            echoed += chunk
    return selected, echoed


def _s_client(edge: Edge, ca: Path, alpn: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "openssl",
            "s_client",
            "-connect",
            f"127.0.0.1:{edge.agents_port}",
            "-servername",
            HOST,
            "-CAfile",
            str(ca),
            "-verify_return_error",
            "-alpn",
            alpn,
        ],
        input="",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_openssl_s_client_sees_postgresql_selected(
    shared_edge: Edge, pg_agent: tuple[Agent, Path]
) -> None:
    _, ca = pg_agent
    out = _s_client(shared_edge, ca, "postgresql")
    assert "ALPN protocol: postgresql" in out.stdout, out.stdout + out.stderr
    assert "Verify return code: 0 (ok)" in out.stdout


def test_a_python_client_offering_postgresql_gets_it_and_reaches_the_upstream(
    shared_edge: Edge, pg_agent: tuple[Agent, Path]
) -> None:
    _, ca = pg_agent
    assert _connect(shared_edge, ca, ["postgresql"]) == ("postgresql", b"SELECT 1;")
    # Of the client's offers, the listed one is selected, whatever the client's order.
    assert _connect(shared_edge, ca, ["h2", "postgresql"]) == ("postgresql", b"SELECT 1;")


def test_a_client_offering_only_unlisted_protocols_connects_without_one(
    shared_edge: Edge, pg_agent: tuple[Agent, Path]
) -> None:
    """Documented: no protocol is selected and the connection proceeds (Python's ssl cannot
    send RFC 7301's no_application_protocol alert); the client decides whether that will do."""
    _, ca = pg_agent
    assert _connect(shared_edge, ca, ["h2"]) == (None, b"SELECT 1;")
    out = _s_client(shared_edge, ca, "h2")
    assert "No ALPN negotiated" in out.stdout, out.stdout + out.stderr
    assert "Verify return code: 0 (ok)" in out.stdout
