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
