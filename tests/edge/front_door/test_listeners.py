"""The front door in-process: the bound on concurrent public connections, refusals by SNI."""

from __future__ import annotations

import ssl
from pathlib import Path

import trio

from edge.certs.ca import DevCA
from edge.certs.cert_store import CertStore
from edge.config import CertificatesConfig, EdgeConfig, LimitsConfig
from edge.endpoints.registry import EndpointRegistry
from edge.front_door.listeners import FrontDoor
from protocol.adapters.tls import TLSStream

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
