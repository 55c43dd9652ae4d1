"""The tap passes bytes through unchanged and shows them to the capture on the way."""

from __future__ import annotations

import trio
import trio.testing

from agent.inspector.capture import CaptureStore, ConnectionCapture
from agent.inspector.tap import TapStream, wall_and_monotonic


async def test_bytes_pass_unchanged_and_are_captured() -> None:
    store = CaptureStore(10**6)
    capture = ConnectionCapture(store, tunnel_name="web", remote_addr="x", clock=wall_and_monotonic)
    client, server = trio.testing.memory_stream_pair()
    tapped = TapStream(server, capture, capture.request_bytes)
    request = b"GET /tapped HTTP/1.1\r\nHost: a\r\n\r\n"
    with trio.fail_after(10):
        await client.send_all(request)
        assert await tapped.receive_some(1000) == request
        await tapped.send_all(b"back")
        assert await client.receive_some(1000) == b"back"
        await tapped.send_eof()
        assert await client.receive_some(1000) == b""  # half-closed, passed through
    (exchange,) = store
    assert exchange.request.head == request and exchange.request.complete


async def test_after_an_upgrade_bytes_still_pass_and_are_no_longer_captured() -> None:
    store = CaptureStore(10**6)
    capture = ConnectionCapture(store, tunnel_name="web", remote_addr="x", clock=wall_and_monotonic)
    client, server = trio.testing.memory_stream_pair()
    tapped = TapStream(server, capture, capture.request_bytes)
    upgrade = b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n"
    with trio.fail_after(10):
        await client.send_all(upgrade)
        assert await tapped.receive_some(1000) == upgrade
        capture.response_bytes(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n")
        assert not capture.following
        frame = b"GET /not-a-request HTTP/1.1\r\n\r\n"
        await client.send_all(frame)
        assert await tapped.receive_some(1000) == frame
    assert len(store) == 1


async def test_taps_keep_splices_direct_path_and_still_capture_every_byte() -> None:
    # The agent's inspected proxy stream: a tapped mux stream spliced to a tapped upstream
    # socket. The mux reader hands the request straight to the socket (the direct path), and
    # the capture still sees the whole request once; the response comes back the usual way.
    from protocol.adapters.mux import open_mux_session
    from protocol.adapters.pipe import splice
    from protocol.wire.session import Role

    store = CaptureStore(10**6)
    capture = ConnectionCapture(store, tunnel_name="web", remote_addr="x", clock=wall_and_monotonic)
    request = b"GET /direct HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    delivered: list[bytes] = []
    left, right = trio.testing.memory_stream_pair()
    with trio.fail_after(30):
        (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
        async with (
            listener,
            open_mux_session(left, Role.CLIENT) as client,
            open_mux_session(right, Role.SERVER) as server,
        ):
            edge_side = await client.open_stream()
            await edge_side.send_all(b"G")
            agent_side = await server.accept_stream()
            assert await agent_side.receive_some(1) == b"G"
            capture.request_bytes(b"G")
            port = listener.socket.getsockname()[1]
            near = await trio.open_tcp_stream("127.0.0.1", port)
            upstream = await listener.accept()
            tapped_mux = TapStream(agent_side, capture, capture.request_bytes)
            tapped_socket = TapStream(near, capture, capture.response_bytes)
            original = tapped_mux.deliver_to

            def spying(sink):  # type: ignore[no-untyped-def]
                if sink is None:
                    return original(None)

                def counted(data: bytes) -> int:
                    taken = int(sink(data))
                    delivered.append(data[:taken])
                    return taken

                return original(counted)

            tapped_mux.deliver_to = spying  # type: ignore[method-assign]
            async with trio.open_nursery() as nursery:
                nursery.start_soon(splice, tapped_mux, tapped_socket)
                await edge_side.send_all(request[1:])
                got = b""
                while len(got) < len(request) - 1:
                    got += await upstream.receive_some()
                assert got == request[1:]
                await upstream.send_all(response)
                back = b""
                while len(back) < len(response):
                    back += await edge_side.receive_some()
                assert back == response
                await edge_side.aclose()
                await upstream.aclose()
    assert b"".join(delivered) == request[1:]  # it went the direct way
    (exchange,) = store
    assert exchange.request.head + exchange.request.body == request
    assert exchange.response is not None and exchange.response.head.startswith(b"HTTP/1.1 200")


async def test_one_tap_sees_requests_received_and_responses_sent() -> None:
    # forward's shape: only the edge side is tapped; what is sent through it is the response.
    store = CaptureStore(10**6)
    capture = ConnectionCapture(store, tunnel_name="web", remote_addr="x", clock=wall_and_monotonic)
    client, server = trio.testing.memory_stream_pair()
    tapped = TapStream(server, capture, capture.request_bytes, sent=capture.response_bytes)
    request = b"GET /both HTTP/1.1\r\nHost: a\r\n\r\n"
    response = b"HTTP/1.1 200 OK\r\n\r\nuntil the end"  # framed by the connection's end
    with trio.fail_after(10):
        await client.send_all(request)
        assert await tapped.receive_some(1000) == request
        await tapped.send_all(response[:20])
        await tapped.send_all(memoryview(response)[20:])
        got = b""
        while len(got) < len(response):
            got += await client.receive_some(1000)
        assert got == response  # unchanged
        (exchange,) = store
        assert exchange.response is not None and not exchange.response.complete
        await tapped.send_eof()  # the response's end
        assert await client.receive_some(1000) == b""
    assert exchange.response.complete and exchange.response.body == b"until the end"
    assert tapped.plain_sender is None  # its sends are watched: splice must not bypass them


async def test_one_tap_on_a_spliced_mux_stream_captures_both_ways() -> None:
    from protocol.adapters.mux import open_mux_session
    from protocol.adapters.pipe import splice
    from protocol.wire.session import Role

    store = CaptureStore(10**6)
    capture = ConnectionCapture(store, tunnel_name="web", remote_addr="x", clock=wall_and_monotonic)
    requests = [b"GET /%d HTTP/1.1\r\nHost: a\r\n\r\n" % n for n in range(3)]
    responses = [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n%02d" % n for n in range(3)]
    left, right = trio.testing.memory_stream_pair()
    with trio.fail_after(30):
        (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
        async with (
            listener,
            open_mux_session(left, Role.CLIENT) as client,
            open_mux_session(right, Role.SERVER) as server,
        ):
            edge_side = await client.open_stream()
            await edge_side.send_all(requests[0][:1])
            agent_side = await server.accept_stream()
            first = await agent_side.receive_some(1)
            capture.request_bytes(first)
            port = listener.socket.getsockname()[1]
            near = await trio.open_tcp_stream("127.0.0.1", port)
            upstream = await listener.accept()
            await near.send_all(first)
            tapped = TapStream(
                agent_side, capture, capture.request_bytes, sent=capture.response_bytes
            )
            async with trio.open_nursery() as nursery:
                nursery.start_soon(splice, tapped, near)
                await edge_side.send_all(requests[0][1:])
                for n in range(3):
                    if n:
                        await edge_side.send_all(requests[n])
                    got = b""
                    while len(got) < len(requests[n]):
                        got += await upstream.receive_some()
                    assert got == requests[n]
                    await upstream.send_all(responses[n])
                    back = b""
                    while len(back) < len(responses[n]):
                        back += await edge_side.receive_some()
                    assert back == responses[n]
                await edge_side.aclose()
                await upstream.aclose()
    exchanges = list(store)
    assert [e.request.head for e in exchanges] == requests
    assert [e.response.body if e.response else None for e in exchanges] == [b"00", b"01", b"02"]
    assert all(e.response and e.response.complete for e in exchanges)
