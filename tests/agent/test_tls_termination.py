"""tls:// endpoints: TLS passed through to the upstream, or terminated at the agent with
client certificates required (mutual TLS)."""

from __future__ import annotations

import datetime
import logging
import ssl
from pathlib import Path

import pytest
import trio
import trustme

from agent.forward import Route
from agent.tls_contexts import termination_context
from agent.tls_termination import TLS_HANDSHAKE_TIMEOUT
from protocol.adapters.mux import receive_exactly
from protocol.adapters.tls import TLSStream
from protocol.formats.urls import UpstreamURL
from protocol.rpc.messages import StreamType
from tests.agent.conftest import PemFiles, write_pems
from tests.agent.proxying import (
    CLIENT_ADDR,
    HeaderFirst,
    free_port,
    header,
    mux_pair,
    serve_one,
    serve_upstream,
)

SNI = "secure.example.com"
MESSAGE = b"SELECT 1;\n"
TLS_VERSIONS = [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3]


class EchoUpstream:
    """A plain TCP upstream that counts its connections and echoes what it receives."""

    def __init__(self) -> None:
        self.connections = 0
        self.received = b""

    async def serve(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        async with stream:
            while data := await stream.receive_some():
                self.received += data
                await stream.send_all(data)


@pytest.fixture
def server_pems(tmp_path: Path, ca: trustme.CA) -> PemFiles:
    """The endpoint's certificate (for SNI), from the CA public clients trust."""
    return write_pems(tmp_path / "server", ca, ca.issue_cert(SNI))


@pytest.fixture
def clients(tmp_path: Path) -> PemFiles:
    """The CA named by mutual_tls_certificate_authorities, and a client it issued."""
    authority = trustme.CA(organization_name="Clinic A clients")
    return write_pems(tmp_path / "clients", authority, authority.issue_cert("client-1@clinic-a"))


def client_context(
    trusted: trustme.CA, cert: trustme.LeafCert | None, version: ssl.TLSVersion
) -> ssl.SSLContext:
    context = ssl.create_default_context()
    trusted.configure_trust(context)
    context.maximum_version = version
    if cert is not None:
        cert.configure_cert(context)
    return context


def tls_route(port: int, termination: ssl.SSLContext | None) -> dict[str, Route]:
    upstream = UpstreamURL("tcp", "localhost", port)
    return {
        "bd_1": Route(
            name="db", url=f"tls://{SNI}", proto="tls", upstream=upstream, termination=termination
        )
    }


async def talk(
    upstream_handler: object, termination: ssl.SSLContext | None, context: ssl.SSLContext
) -> bytes:
    """One public client: TLS through a proxy stream (ClientHello in the header's DATA frame),
    send MESSAGE, read as many bytes back. A TLS failure is raised as BrokenResourceError."""
    reply: bytes | trio.BrokenResourceError = b""
    async with trio.open_nursery() as nursery, mux_pair() as (agent, edge):
        port = await serve_upstream(nursery, upstream_handler)  # type: ignore[arg-type]
        nursery.start_soon(serve_one, agent, tls_route(port, termination))
        stream = await edge.open_typed_stream(StreamType.PROXY)
        client = TLSStream(HeaderFirst(stream, header()), context, server_hostname=SNI)
        try:
            await client.send_all(MESSAGE)
            reply = await receive_exactly(client, len(MESSAGE))
        except trio.BrokenResourceError as exc:
            reply = exc
        await trio.aclose_forcefully(client)
        nursery.cancel_scope.cancel()
    if isinstance(reply, trio.BrokenResourceError):
        raise reply
    return reply


async def test_passthrough_hands_the_clients_own_tls_to_the_upstream(
    server_pems: PemFiles,
) -> None:
    """Without termination the upstream is the TLS server: the ClientHello that arrived with
    the header reaches it intact, and the handshake is end to end."""
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_pems.cert.configure_cert(server)

    async def tls_echo(tcp: trio.SocketStream) -> None:
        async with TLSStream(tcp, server, server_side=True) as stream:
            await stream.send_all(await receive_exactly(stream, len(MESSAGE)))

    context = client_context(server_pems.ca, None, ssl.TLSVersion.TLSv1_3)
    with trio.fail_after(5):
        assert await talk(tls_echo, None, context) == MESSAGE


@pytest.mark.parametrize("version", TLS_VERSIONS, ids=["tls1.2", "tls1.3"])
async def test_terminated_tls_with_a_good_client_certificate_reaches_the_upstream(
    version: ssl.TLSVersion, server_pems: PemFiles, clients: PemFiles
) -> None:
    termination = termination_context(
        server_pems.cert_path, server_pems.key_path, [clients.ca_path]
    )
    upstream = EchoUpstream()
    context = client_context(server_pems.ca, clients.cert, version)
    with trio.fail_after(5):
        assert await talk(upstream.serve, termination, context) == MESSAGE
    assert upstream.received == MESSAGE  # plaintext: the agent decrypted it


async def test_terminated_tls_without_client_cas_needs_no_client_certificate(
    server_pems: PemFiles,
) -> None:
    termination = termination_context(server_pems.cert_path, server_pems.key_path)
    upstream = EchoUpstream()
    context = client_context(server_pems.ca, None, ssl.TLSVersion.TLSv1_3)
    with trio.fail_after(5):
        assert await talk(upstream.serve, termination, context) == MESSAGE


def bad_client(kind: str, clients: PemFiles, other_ca: trustme.CA) -> trustme.LeafCert | None:
    if kind == "no certificate":
        return None
    if kind == "another CA":
        return other_ca.issue_cert("client-1@clinic-a")
    now = datetime.datetime.now(datetime.UTC)
    return clients.ca.issue_cert(
        "client-1@clinic-a",
        not_before=now - datetime.timedelta(days=30),
        not_after=now - datetime.timedelta(days=1),
    )


# What the agent logs for each, and the alert OpenSSL sends the client (for no certificate,
# handshake_failure under TLS 1.2 and certificate_required under 1.3).
REFUSALS = {
    "no certificate": ("peer did not return a certificate", "_ALERT_"),
    "another CA": (
        "certificate verify failed: unable to get local issuer certificate",
        "ALERT_UNKNOWN_CA",
    ),
    "expired": ("certificate verify failed: certificate has expired", "ALERT_CERTIFICATE_EXPIRED"),
}


@pytest.mark.parametrize("version", TLS_VERSIONS, ids=["tls1.2", "tls1.3"])
@pytest.mark.parametrize("kind", list(REFUSALS))
async def test_a_client_without_a_valid_certificate_fails_the_handshake(
    kind: str,
    version: ssl.TLSVersion,
    server_pems: PemFiles,
    clients: PemFiles,
    other_ca: trustme.CA,
    caplog: pytest.LogCaptureFixture,
) -> None:
    termination = termination_context(
        server_pems.cert_path, server_pems.key_path, [clients.ca_path]
    )
    upstream = EchoUpstream()
    context = client_context(server_pems.ca, bad_client(kind, clients, other_ca), version)
    logged, alert = REFUSALS[kind]
    with (
        trio.fail_after(5),
        caplog.at_level(logging.WARNING, logger="agent.forward"),
        pytest.raises(trio.BrokenResourceError) as caught,
    ):
        await talk(upstream.serve, termination, context)
    # Under TLS 1.2 the client's own handshake fails; under 1.3 its first read does. Either
    # way it is OpenSSL's alert from the agent that tells it, not a bare EOF.
    cause = caught.value.__cause__
    assert isinstance(cause, ssl.SSLError), repr(caught.value)
    assert alert in (cause.reason or ""), cause
    assert upstream.connections == 0, "a refused client must never reach the upstream"
    (line,) = [r.getMessage() for r in caplog.records if r.name == "agent.forward"]
    assert line == f"endpoint db: refused TLS client {CLIENT_ADDR}: {logged}"


async def test_a_silent_client_is_dropped_after_the_handshake_timeout(
    autojump_clock: trio.abc.Clock, server_pems: PemFiles, caplog: pytest.LogCaptureFixture
) -> None:
    termination = termination_context(server_pems.cert_path, server_pems.key_path)
    port = await free_port()
    with trio.fail_after(TLS_HANDSHAKE_TIMEOUT + 5):
        async with trio.open_nursery() as nursery, mux_pair() as (agent, edge):
            nursery.start_soon(serve_one, agent, tls_route(port, termination))
            stream = await edge.open_typed_stream(StreamType.PROXY)
            start = trio.current_time()
            await stream.send_all(header())  # and no ClientHello
            assert await stream.receive_some() == b""
            assert trio.current_time() - start == pytest.approx(TLS_HANDSHAKE_TIMEOUT)
    assert f"refused TLS client {CLIENT_ADDR}: no TLS handshake within 10s" in caplog.text
