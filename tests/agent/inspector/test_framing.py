"""The cheap framer: message boundaries on one direction, whole or byte by byte."""

from __future__ import annotations

from collections import deque

from agent.inspector.framing import Event, HeadEnded, MessageEnded, MessageFramer


def feed_all(
    framer: MessageFramer, data: bytes, *, split: int = 0, methods: deque[str] | None = None
) -> list[Event]:
    if not split:
        return framer.feed(data, methods)
    events: list[Event] = []
    for at in range(0, len(data), split):
        events += framer.feed(data[at : at + split], methods)
    return events


def requests_framer() -> MessageFramer:
    return MessageFramer(is_response=False, head_limit=1024, body_limit=8)


def responses_framer() -> MessageFramer:
    return MessageFramer(is_response=True, head_limit=1024, body_limit=8)


PIPELINE = (
    b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
    b"POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"3;ext=1\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nX-Trailer: t\r\n\r\n"
    b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n"
)


def test_keep_alive_requests_split_the_same_whole_or_byte_by_byte() -> None:
    for split in (0, 1, 2, 7):
        events = feed_all(requests_framer(), PIPELINE, split=split)
        heads = [e.head.split(b"\r\n")[0] for e in events if isinstance(e, HeadEnded)]
        ends = [e for e in events if isinstance(e, MessageEnded)]
        assert heads == [b"POST /a HTTP/1.1", b"POST /b HTTP/1.1", b"GET /c HTTP/1.1"], split
        assert [(e.body, e.size, e.truncated) for e in ends] == [
            (b"hello", 5, False),
            (b"abc01234", 19, True),  # de-chunked, cut at the 8-byte limit
            (b"", 0, False),
        ], split


def test_response_bodies_follow_the_request_methods() -> None:
    data = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n"  # answers HEAD: no body follows
        b"HTTP/1.1 204 No Content\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
        b"HTTP/1.1 200 OK\r\n\r\nuntil the end"
    )
    methods = deque(["HEAD", "GET", "GET", "GET"])
    framer = responses_framer()
    events = feed_all(framer, data, split=3, methods=methods)
    heads = [e.head.split(b"\r\n")[0] for e in events if isinstance(e, HeadEnded)]
    assert heads == [
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 204 No Content",
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 200 OK",
    ]
    ends = [e for e in events if isinstance(e, MessageEnded)]
    assert [e.body for e in ends] == [b"", b"", b"abc"]  # the last ends only at EOF
    assert framer.feed(b"") == [MessageEnded(body=b"until th", size=13, truncated=True)]
    assert not methods


def test_upgrade_turns_the_rest_opaque() -> None:
    framer = requests_framer()
    events = framer.feed(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"
        b"\x81\x05hello GET /not-http HTTP/1.1\r\n\r\n"
    )
    assert len([e for e in events if isinstance(e, HeadEnded)]) == 1
    assert framer.opaque
    responses = responses_framer()
    responses.feed(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x00", deque(["GET"])
    )
    assert responses.opaque


def test_a_head_over_the_limit_or_a_bad_length_turns_opaque() -> None:
    framer = MessageFramer(is_response=False, head_limit=64, body_limit=8)
    assert framer.feed(b"GET / HTTP/1.1\r\nX: " + b"a" * 100) == []
    assert framer.opaque
    bad = requests_framer()
    events = bad.feed(b"POST / HTTP/1.1\r\nContent-Length: nope\r\n\r\nbody")
    assert len(events) == 1 and isinstance(events[0], HeadEnded)
    assert bad.opaque
    chunk = requests_framer()
    chunk.feed(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
    assert chunk.opaque


def test_a_large_body_is_skipped_by_counting() -> None:
    framer = requests_framer()
    framer.feed(b"PUT /big HTTP/1.1\r\nContent-Length: 1000000\r\n\r\n")
    events: list[Event] = []
    for _ in range(100):
        events += framer.feed(b"x" * 10_000)
    assert events == [MessageEnded(body=b"x" * 8, size=1_000_000, truncated=True)]
    assert not framer.opaque
