"""The cheap framer: message boundaries on one direction, whole or byte by byte."""

from __future__ import annotations

from collections import deque

from agent.inspector.framing import MAX_CHUNK_LINE, Event, HeadEnded, MessageEnded, MessageFramer


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


# --- the fast paths: each agrees with the slow one it stands in for -----------------------


def test_heads_that_frame_bodies_oddly_are_read_line_by_line_and_agree() -> None:
    # Each head needs the line-by-line reading (a name twice, spaced, in a value, or in the
    # target): the framer must frame its body exactly as that reading says.
    cases = [
        (b"POST /a HTTP/1.1\r\nContent-Length: 9\r\nContent-Length: 3\r\n\r\nabc", b"abc"),
        (b"POST /a HTTP/1.1\r\nContent-Length : 3\r\n\r\nabc", b"abc"),
        (b"POST /content-length HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", b"abc"),
        (b"POST /a HTTP/1.1\r\nX-Note: content-length\r\nContent-Length: 3\r\n\r\nabc", b"abc"),
        (
            b"POST /a HTTP/1.1\r\nUpgrade-Insecure-Requests: 1\r\nContent-Length: 3\r\n\r\nabc",
            b"abc",
        ),
        (
            b"POST /a HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            b"abc",
        ),
    ]
    for request, body in cases:
        framer = requests_framer()
        events = framer.feed(request + b"GET /next HTTP/1.1\r\n\r\n")
        ends = [e for e in events if isinstance(e, MessageEnded)]
        assert [e.body for e in ends] == [body, b""], request
        assert not framer.opaque, request


def test_a_body_whole_in_one_read_and_one_split_across_reads_are_the_same() -> None:
    message = b"POST /a HTTP/1.1\r\nContent-Length: 6\r\n\r\nabcdef"
    whole = requests_framer().feed(message)
    framer = requests_framer()
    split = framer.feed(message[:-2]) + framer.feed(message[-2:])
    assert whole == split
    assert whole[1] == MessageEnded(body=b"abcdef"[:8], size=6, truncated=False)
    assert requests_framer().feed(message.replace(b"6", b"9") + b"xyz")[1] == MessageEnded(
        body=b"abcdefxy", size=9, truncated=True
    )


def test_response_status_lines_read_fast_or_slow_agree() -> None:
    for start, shown in (
        (b"HTTP/1.1 200 OK", True),
        (b"HTTP/1.1 200", True),
        (b"HTTP/1.0 200 OK", True),
        (b"HTTP/1.1 103 Early Hints", False),
        (b"HTTP/1.1 2xx nope", None),
    ):
        framer = responses_framer()
        events = framer.feed(start + b"\r\nContent-Length: 2\r\n\r\nok", deque(["GET"]))
        if shown is None:
            assert events == [] and framer.opaque, start
        elif shown:
            assert [type(e) for e in events] == [HeadEnded, MessageEnded], start
        else:
            assert events == [] and not framer.opaque, start  # interim: not shown


def test_a_chunk_line_split_anywhere_and_one_too_long() -> None:
    body = b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunks = b"a;name=value\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n"
    for split in range(1, len(chunks)):
        framer = requests_framer()
        events = framer.feed(body + chunks[:split]) + framer.feed(chunks[split:])
        assert events[1:] == [MessageEnded(body=b"01234567", size=10, truncated=True)], split
    long_line = requests_framer()
    long_line.feed(body + b"1" * (MAX_CHUNK_LINE + 10))
    assert long_line.opaque
    long_split = requests_framer()
    long_split.feed(body + b"1" * 100)
    long_split.feed(b"1" * MAX_CHUNK_LINE + b"\r\n")
    assert long_split.opaque


def test_many_chunks_in_one_read_are_all_counted() -> None:
    chunked = b"".join(b"4\r\nabcd\r\n" for _ in range(20_000)) + b"0\r\n\r\n"
    framer = requests_framer()
    events = framer.feed(b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked)
    assert events[1] == MessageEnded(body=b"abcdabcd", size=80_000, truncated=True)


def test_sinks_get_the_events_feed_would_return() -> None:
    got: list[Event] = []
    framer = MessageFramer(
        is_response=False,
        head_limit=1024,
        body_limit=8,
        on_head=lambda head: got.append(HeadEnded(head=head)),
        on_end=lambda body, size, cut: got.append(
            MessageEnded(body=body, size=size, truncated=cut)
        ),
    )
    assert framer.feed(PIPELINE) == []
    assert got == requests_framer().feed(PIPELINE)


def test_stop_from_a_sink_ends_the_following_at_once() -> None:
    framer: MessageFramer
    heads: list[bytes] = []

    def head_seen(head: bytes) -> None:
        heads.append(head)
        framer.stop()

    framer = MessageFramer(
        is_response=False,
        head_limit=1024,
        body_limit=8,
        on_head=head_seen,
        on_end=lambda body, size, cut: None,
    )
    framer.feed(PIPELINE)
    assert len(heads) == 1 and framer.opaque
