"""The capture: exchanges opened by request heads, matched to responses, in a bounded store."""

from __future__ import annotations

from random import Random

import pytest

from agent.inspector.capture import (
    CAPTURED_BODY_LIMIT,
    OWN_EXCHANGES_KEPT,
    CaptureStore,
    ConnectionCapture,
    Exchange,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> tuple[float, float]:
        return self.now, self.now - 1_699_000_000.0


def connection(store: CaptureStore, clock: Clock | None = None, **kw: int) -> ConnectionCapture:
    return ConnectionCapture(
        store, tunnel_name="web", remote_addr="203.0.113.5:4000", clock=clock or Clock(), **kw
    )


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: app.example\r\n\r\n".encode()


def ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def test_keep_alive_exchanges_are_split_and_matched_in_order() -> None:
    store = CaptureStore(10**6, random=Random(1))
    clock = Clock()
    capture = connection(store, clock)
    capture.request_bytes(get("/one") + get("/two"))  # pipelined
    assert [e.response for e in store] == [None, None]  # shown before any answer
    clock.now += 0.25
    capture.response_bytes(ok(b"first") + ok(b"second")[:40])
    first, second = store.newest()[::-1]
    assert first.response is not None and first.response.body == b"first"
    assert first.duration == pytest.approx(0.25)
    assert second.response is not None and not second.response.complete
    capture.response_bytes(ok(b"second")[40:])
    assert second.response.body == b"second" and second.response.complete
    assert first.request.head.startswith(b"GET /one ")
    assert (first.tunnel_name, first.remote_addr) == ("web", "203.0.113.5:4000")
    assert first.id != second.id and len(first.id) == 16


def test_bodies_are_cut_at_the_limit_with_their_full_size() -> None:
    store = CaptureStore(10**6)
    capture = connection(store)
    body = b"z" * (CAPTURED_BODY_LIMIT * 3)
    capture.request_bytes(b"POST /up HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    (exchange,) = store
    assert exchange.request.body == body[:CAPTURED_BODY_LIMIT]
    assert (exchange.request.body_size, exchange.request.truncated) == (len(body), True)
    assert exchange.request.complete


def test_the_store_drops_the_oldest_past_its_limit() -> None:
    store = CaptureStore(4000)
    capture = connection(store, body_limit=1000)
    for n in range(10):
        capture.request_bytes(get(f"/{n}"))
        capture.response_bytes(ok(b"b" * 900))
    assert store.size <= store.limit
    kept = [e.request.head.split(b" ")[1] for e in store]
    assert kept == [b"/8", b"/9"]  # oldest first out, the newest stay
    assert store.size == sum(e.size for e in store)


def test_an_exchange_dropped_in_flight_is_no_longer_counted() -> None:
    store = CaptureStore(1200)
    capture = connection(store, body_limit=1000)
    capture.request_bytes(get("/slow"))
    (slow,) = store
    other = connection(store, body_limit=1000)
    other.request_bytes(get("/fast"))
    other.response_bytes(ok(b"x" * 600))  # pushes /slow out
    assert store.get(slow.id) is None
    before = store.size
    capture.response_bytes(ok(b"late"))
    assert slow.response is not None and slow.response.body == b"late"  # still fed
    assert store.size == before  # but not counted


def test_newest_filters_and_limits() -> None:
    store = CaptureStore(10**6)
    web = connection(store)
    api = ConnectionCapture(store, tunnel_name="api", remote_addr="x", clock=Clock())
    for n in range(3):
        web.request_bytes(get(f"/w{n}"))
        api.request_bytes(get(f"/a{n}"))
    assert [e.tunnel_name for e in store.newest(limit=2)] == ["api", "web"]
    assert [e.request.head.split(b" ")[1] for e in store.newest(tunnel_name="web")] == [
        b"/w2",
        b"/w1",
        b"/w0",
    ]
    store.clear()
    assert (len(store), store.size) == (0, 0)


def test_an_unasked_response_stops_the_capture() -> None:
    store = CaptureStore(10**6)
    capture = connection(store)
    capture.response_bytes(ok(b"nobody asked"))
    assert len(store) == 0
    capture.request_bytes(get("/after"))
    assert len(store) == 1  # the request side is still followed
    assert capture.following


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        CaptureStore(0)
    assert isinstance(Exchange, type)


def test_a_long_keep_alive_connection_remembers_only_its_first_exchanges() -> None:
    store = CaptureStore(10**6)
    capture = connection(store)
    for n in range(OWN_EXCHANGES_KEPT + 5):
        capture.request_bytes(get(f"/{n}"))
        capture.response_bytes(ok(b"x"))
    assert len(store) == OWN_EXCHANGES_KEPT + 5  # the store shows every one
    assert len(capture.exchanges) == OWN_EXCHANGES_KEPT
    assert capture.exchanges[0].request.head.startswith(b"GET /0 ")


def test_each_completed_exchange_is_reported_once_with_its_response() -> None:
    done: list[Exchange] = []
    store = CaptureStore(10**6, on_complete=done.append)
    capture = connection(store)
    capture.request_bytes(get("/a") + get("/b"))
    capture.response_bytes(ok(b"1") + ok(b"22")[:30])
    assert [e.request.head.split(b" ")[1] for e in done] == [b"/a"]
    capture.response_bytes(ok(b"22")[30:])
    assert [e.response.body for e in done if e.response] == [b"1", b"22"]
