"""`edge.front_door.tls_termination` in the real front door on 127.0.0.1: a tls:// endpoint whose
policy runs terminate-tls. Real TLS on both sides (stdlib `ssl` clients over trio); the agent is
a memory stream pair (`FakeAgent`), so what the agent receives is exactly what the edge sent."""

from __future__ import annotations

import ssl
from pathlib import Path

import trio
from cryptography.hazmat.primitives.serialization import Encoding

from edge.endpoints.registry import AttachedPolicy, Endpoint, Member
from edge.front_door.tls_termination import terminate
from edge.policy.actions_tls import TerminateTlsConfig
from edge.policy.document import load_policy
from edge.policy.validate import validate
from tests.edge.front_door.test_listeners import _front_door
from tests.edge.front_door.test_tcp_ports import FakeAgent, receive_exactly
from tests.edge.policy.tls_helpers import Issued, make_ca, make_leaf, terminate_tls_policy

#: Generous: loopback handshakes take milliseconds.
BOUND = 30
HOST = "db.burrow.localhost"


def _endpoint(policy_text: str, agent: FakeAgent) -> Endpoint:
    compiled = validate(load_policy(policy_text), protocol="tls")
    member = Member(
        bind_id="tun_1",
        token="tok",
        session_id="ts_1",
        client_id="client",
        opener=agent.open,
        policy=AttachedPolicy(compiled, policy_text),
    )
    return Endpoint(url=f"tls://{HOST}", proto="tls", host=HOST, members=(member,))


async def _door(tmp_path: Path, nursery: trio.Nursery, policy_text: str, agent: FakeAgent) -> int:
    door, port = await _front_door(tmp_path, nursery, max_connections=10)
    door.registry.add(_endpoint(policy_text, agent))
    return port


def _client_context(
    trusted: Issued, client: Issued | None = None, directory: Path | None = None
) -> ssl.SSLContext:
    """A client that trusts only `trusted` (the policy's self-signed certificate) and checks
    the host name, presenting `client`'s certificate (written to `directory`) if given."""
    context = ssl.create_default_context(cadata=trusted.cert_pem)
    if client is not None:
        assert directory is not None
        cert_path, key_path = directory / "client.pem", directory / "client.key"
        cert_path.write_text(client.cert_pem)
        key_path.write_text(client.key_pem)
        context.load_cert_chain(cert_path, key_path)
    return context


async def _connect(port: int, context: ssl.SSLContext) -> trio.SSLStream[trio.SocketStream]:
    tcp = await trio.open_tcp_stream("127.0.0.1", port)
    return trio.SSLStream(tcp, context, server_hostname=HOST)


async def test_the_edge_terminates_with_the_policys_certificate_and_forwards_plaintext(
    tmp_path: Path,
) -> None:
    server = make_leaf(HOST)
    agent = FakeAgent()
    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            port = await _door(tmp_path, nursery, terminate_tls_policy(server), agent)
            client = await _connect(port, _client_context(server))
            await client.do_handshake()  # verified against the policy's certificate only
            seen = client.getpeercert(binary_form=True)
            assert seen == server.cert.public_bytes(Encoding.DER)
            await client.send_all(b"SELECT 1;\n")
            proxied = await agent.streams.receive()
            assert await receive_exactly(proxied, 10) == b"SELECT 1;\n"  # plaintext, no TLS
            await proxied.send_all(b"one row\n")
            assert await receive_exactly(client, 8) == b"one row\n"
            # The agent ends its side: the client sees the TLS connection end.
            await proxied.send_eof()
            assert await client.receive_some(100) == b""
            await trio.aclose_forcefully(client)
            nursery.cancel_scope.cancel()


async def test_mutual_tls_refuses_clients_without_a_good_certificate(tmp_path: Path) -> None:
    server, client_ca, stranger_ca = make_leaf(HOST), make_ca(), make_ca("not trusted")
    good = make_leaf("client.example", client_ca, client=True)
    stranger = make_leaf("client.example", stranger_ca, client=True)
    agent = FakeAgent()
    policy = terminate_tls_policy(server, client_ca=client_ca)
    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            port = await _door(tmp_path, nursery, policy, agent)
            for presented in (None, stranger):
                client = await _connect(port, _client_context(server, presented, tmp_path))
                try:
                    # TLS 1.3: the client's handshake may finish before the edge checks its
                    # certificate; the refusal then arrives on the first read.
                    await client.do_handshake()
                    await client.send_all(b"hi")
                    refused = await client.receive_some(100) == b""
                except trio.BrokenResourceError:
                    refused = True
                assert refused, f"a client with {presented} was served"
                await trio.aclose_forcefully(client)
            assert agent.client_addrs == []  # no refused client ever reached the agent
            client = await _connect(port, _client_context(server, good, tmp_path))
            await client.do_handshake()
            await client.send_all(b"hello")
            proxied = await agent.streams.receive()
            assert await receive_exactly(proxied, 5) == b"hello"
            assert len(agent.client_addrs) == 1
            await trio.aclose_forcefully(client)
            nursery.cancel_scope.cancel()


async def test_a_client_that_never_finishes_the_handshake_is_closed_in_time() -> None:
    """`terminate` directly: a client that sends nothing gets closed after the bound."""
    config = _config(make_leaf(HOST))
    with trio.fail_after(BOUND):
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        client = await trio.open_tcp_stream("127.0.0.1", port)
        conn = await listeners[0].accept()
        started = trio.current_time()
        result = await terminate(
            conn, config, initial_data=b"", handshake_seconds=0.3, peer=("127.0.0.1", 1), url="x"
        )
        assert result is None
        assert trio.current_time() - started >= 0.3
        assert await client.receive_some(100) == b""  # the edge closed the connection
        await client.aclose()
        await listeners[0].aclose()


def _config(server: Issued) -> TerminateTlsConfig:
    compiled = validate(load_policy(terminate_tls_policy(server)), protocol="tls")
    config = compiled.on_tcp_connect[0].actions[0].config
    assert isinstance(config, TerminateTlsConfig)
    return config
