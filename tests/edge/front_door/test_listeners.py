"""The front door in-process: the bound on concurrent public connections, refusals by SNI."""

from __future__ import annotations

import ssl
from pathlib import Path

import trio

from edge.certs.ca import DevCA
from edge.certs.cert_store import CertStore
from edge.config import CertificatesConfig, EdgeConfig, LimitsConfig
from edge.endpoints.registry import AttachedPolicy, Endpoint, EndpointRegistry, Member
from edge.front_door.listeners import FrontDoor
from edge.policy.document import load_policy
from edge.policy.validate import validate
from protocol.adapters.tls import TLSStream
from tests.edge.front_door.test_tcp_ports import FakeAgent

#: Not TLS: the front door answers it with a fatal alert record (content type 21).
NOT_TLS = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


async def _no_agents(stream: TLSStream[trio.SocketStream], peer: object, deadline: float) -> None:
    raise AssertionError("no agent connection expected")


async def _front_door(
    tmp_path: Path, nursery: trio.Nursery, *, max_connections: int
) -> tuple[FrontDoor, int]:
    config = EdgeConfig(
        limits=LimitsConfig(max_public_connections=max_connections, hello_timeout=60.0)
    )
    ca = DevCA.load_or_create(tmp_path)
    door = FrontDoor(
        config,
        EndpointRegistry(),
        agent_tls=ca.server_context(["connect.burrow.localhost"]),
        certs=CertStore(CertificatesConfig(), ca),
        serve_agent=_no_agents,
    )
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    nursery.start_soon(door.serve, listeners, door.handle_tls)
    return door, listeners[0].socket.getsockname()[1]


async def _refused_with_alert(port: int) -> bool:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(NOT_TLS)
        reply = await stream.receive_some(64)
    return reply[:1] == b"\x15"


async def test_connections_past_the_limit_wait_until_a_slot_frees(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            _, port = await _front_door(tmp_path, nursery, max_connections=2)
            # Two silent clients hold both slots (they would wait for hello_timeout).
            holders = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(2)]
            await trio.sleep(0.2)
            third = await trio.open_tcp_stream("127.0.0.1", port)  # the kernel accepts it
            await third.send_all(NOT_TLS)
            with trio.move_on_after(0.5) as waited:
                await third.receive_some(64)
            assert waited.cancelled_caught, "served while both slots were taken"
            await holders[0].aclose()  # a slot frees: the third is served now
            reply = await third.receive_some(64)
            assert reply[:1] == b"\x15"
            await third.aclose()
            await holders[1].aclose()
            # Served connections give their slots back: more clients than slots, in turn.
            for _ in range(5):
                assert await _refused_with_alert(port)
            nursery.cancel_scope.cancel()


async def test_unknown_sni_and_no_sni_get_unrecognized_name(tmp_path: Path) -> None:
    """A real TLS client (stdlib ssl over trio) sees the alert as an SSL error naming it."""
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            _, port = await _front_door(tmp_path, nursery, max_connections=10)
            for server_hostname in ("nobody.burrow.localhost", None):
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
                tcp = await trio.open_tcp_stream("127.0.0.1", port)
                client = trio.SSLStream(tcp, context, server_hostname=server_hostname)
                try:
                    await client.do_handshake()
                except trio.BrokenResourceError as exc:
                    assert "UNRECOGNIZED_NAME" in repr(exc.__cause__).upper()
                else:
                    raise AssertionError("handshake succeeded for an unknown name")
                await trio.aclose_forcefully(client)
            nursery.cancel_scope.cancel()


# ------------------------------------------------------------------- on_tcp_connect policy

ONLY_127_0_0_2 = (
    "on_tcp_connect: [{actions: [{type: restrict-ips, config: {allow: [127.0.0.2/32]}}]}]"
)


def _policy_endpoint(url: str, proto: str, host: str, opener: FakeAgent | None) -> Endpoint:
    async def unreachable(client_addr: str) -> trio.abc.HalfCloseableStream:
        raise AssertionError("no proxy stream expected")

    compiled = validate(load_policy(ONLY_127_0_0_2), protocol=proto)
    member = Member(
        bind_id="tun_1",
        token="tok",
        session_id="ts_1",
        client_id="client",
        opener=opener.open if opener is not None else unreachable,
        policy=AttachedPolicy(compiled, ONLY_127_0_0_2),
    )
    return Endpoint(url=url, proto=proto, host=host, members=(member,))


async def _door_with(tmp_path: Path, nursery: trio.Nursery, endpoint: Endpoint) -> int:
    door, port = await _front_door(tmp_path, nursery, max_connections=10)
    door.registry.add(endpoint)
    return port


async def _tls_from(source: str, port: int, sni: str) -> trio.SSLStream[trio.SocketStream]:
    sock = trio.socket.socket()
    await sock.bind((source, 0))
    await sock.connect(("127.0.0.1", port))
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return trio.SSLStream(trio.SocketStream(sock), context, server_hostname=sni)


async def test_https_on_tcp_connect_closes_before_the_handshake(tmp_path: Path) -> None:
    host = "app.burrow.localhost"
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            endpoint = _policy_endpoint(f"https://{host}", "https", host, None)
            port = await _door_with(tmp_path, nursery, endpoint)
            refused = await _tls_from("127.0.0.3", port, host)
            try:
                await refused.do_handshake()
            except trio.BrokenResourceError as exc:
                # Closed without an alert: the client saw EOF, not a TLS alert.
                assert "ALERT" not in repr(exc.__cause__).upper()
            else:
                raise AssertionError("handshake succeeded from a refused address")
            await trio.aclose_forcefully(refused)
            allowed = await _tls_from("127.0.0.2", port, host)
            await allowed.do_handshake()  # the edge terminated TLS for the allowed client
            await trio.aclose_forcefully(allowed)
            nursery.cancel_scope.cancel()


async def test_tls_passthrough_on_tcp_connect_runs_after_the_sni_decision(tmp_path: Path) -> None:
    host = "db.burrow.localhost"
    agent = FakeAgent()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            endpoint = _policy_endpoint(f"tls://{host}", "tls", host, agent)
            port = await _door_with(tmp_path, nursery, endpoint)
            refused = await _tls_from("127.0.0.3", port, host)
            try:
                await refused.do_handshake()
            except trio.BrokenResourceError:
                pass
            else:
                raise AssertionError("handshake succeeded from a refused address")
            await trio.aclose_forcefully(refused)
            assert agent.client_addrs == []  # no proxy stream for the refused client
            allowed = await _tls_from("127.0.0.2", port, host)
            nursery.start_soon(allowed.do_handshake)  # the agent side never answers
            proxied = await agent.streams.receive()
            first = await proxied.receive_some(5)
            assert first[:1] == b"\x16"  # the ClientHello, passed through untouched
            assert agent.client_addrs[0].startswith("127.0.0.2:")
            nursery.cancel_scope.cancel()
