"""Replay: the captured request goes to a real upstream again, reframed, and is captured."""

from __future__ import annotations

import pytest
import trio

from agent.forward import Route
from agent.inspector.capture import CaptureStore, ConnectionCapture, Exchange
from agent.inspector.replay import ReplayError, replay, replay_bytes
from protocol.formats.urls import UpstreamURL
from tests.agent.inspector.upstream_recorder import RecordingUpstream

CHUNKED = (
    b"POST /hook?x=1 HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: chunked\r\n"
    b"X-Forwarded-For: 203.0.113.5\r\nConnection: keep-alive\r\n\r\n"
    b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
)


def captured(store: CaptureStore, request: bytes) -> Exchange:
    capture = ConnectionCapture(
        store, tunnel_name="web", remote_addr="203.0.113.5:4000", clock=lambda: (0.0, 0.0)
    )
    capture.request_bytes(request)
    return capture.exchanges[0]


def test_replay_bytes_reframe_the_body_with_a_length_and_close() -> None:
    store = CaptureStore(10**6)
    data = replay_bytes(captured(store, CHUNKED))
    head, _, body = data.partition(b"\r\n\r\n")
    assert body == b"hello world"
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /hook?x=1 HTTP/1.1"
    assert b"Content-Length: 11" in lines and b"Connection: close" in lines
    assert b"X-Forwarded-For: 203.0.113.5" in lines
    assert not any(line.lower().startswith(b"transfer-encoding") for line in lines)


async def test_replay_reaches_the_upstream_and_is_captured_again() -> None:
    store = CaptureStore(10**6)
    original = captured(store, CHUNKED)
    upstream = RecordingUpstream()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(upstream.serve)
            route = Route(
                name="web",
                url="https://app.example",
                proto="https",
                upstream=UpstreamURL("http", "127.0.0.1", upstream.port),
            )
            replayed = await replay(original, route, store)
            nursery.cancel_scope.cancel()
    ((method, target, headers, body),) = upstream.requests
    assert (method, target, body) == (b"POST", b"/hook?x=1", b"hello world")
    assert headers[b"x-forwarded-for"] == b"203.0.113.5"
    assert replayed is not original and store.get(replayed.id) is replayed
    assert replayed.response is not None and replayed.response.body == b"seen 1"
    assert replayed.remote_addr == original.remote_addr
    assert (replayed.replay_of, original.replay_of) == (original.id, "")


async def test_an_unreachable_upstream_is_a_replay_error() -> None:
    store = CaptureStore(10**6)
    original = captured(store, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    with trio.socket.socket() as probe:  # a port nobody listens on
        await probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    route = Route(
        name="web", url="u", proto="http", upstream=UpstreamURL("http", "127.0.0.1", port)
    )
    with trio.fail_after(20), pytest.raises(ReplayError, match="cannot reach the upstream of web"):
        await replay(original, route, store)
