"""Tests for edge/http/h1/upstream.py: the forwarded request's bytes and the strict parser of
an upstream's response, without I/O (every response also parsed split at every byte, to show
the parser does not depend on how the bytes arrive)."""

from __future__ import annotations

import time

import h11
import pytest

from edge.http.h1.upstream import (
    END,
    NEED_DATA,
    PAUSED,
    RequestHead,
    ResponseHead,
    UnforwardableError,
    UpstreamCodec,
    UpstreamError,
)

MAX_HEAD = 1024
GET = RequestHead.of(b"GET", b"/", [(b"Host", b"app.test")])


def parse(
    raw: bytes, *, request: RequestHead = GET, split: int | None = None, eof: bool = False
) -> tuple[UpstreamCodec, list[object]]:
    """Feed `raw` (in `split`-byte pieces, or whole) after sending `request`; the events up
    to the first NEED_DATA after the last piece, or to END/PAUSED, with body bytes joined."""
    codec = UpstreamCodec(MAX_HEAD)
    codec.send_head(request)
    codec.send_end()
    pieces = [raw] if split is None else [raw[i : i + split] for i in range(0, len(raw), split)]
    if eof:
        pieces.append(b"")
    events: list[object] = []
    body: list[bytes] = []  # body bytes since the last other event

    def add(event: object) -> None:
        if body and not isinstance(event, bytes):
            events.append(b"".join(body))
            body.clear()
        if isinstance(event, bytes):
            body.append(event)
        elif event is not NEED_DATA:
            events.append(event)

    for piece in pieces:
        codec.receive_data(piece)
        while True:
            event = codec.next_event()
            add(event)
            if event is NEED_DATA:
                break
            if event is END or event is PAUSED:
                return codec, events
    add(NEED_DATA)
    return codec, events


def status_and_body(events: list[object]) -> tuple[list[int], bytes]:
    statuses = [event.status for event in events if isinstance(event, ResponseHead)]
    return statuses, b"".join(event for event in events if isinstance(event, bytes))


# ----------------------------------------------------------------------------- request head


def test_request_head_bytes_put_host_first_and_keep_names_as_given() -> None:
    head = RequestHead.of(
        b"POST",
        b"/up?x=1",
        [(b"X-One", b"1"), (b"Host", b"app.test"), (b"Content-Length", b"3")],
    )
    assert head.encoded == (
        b"POST /up?x=1 HTTP/1.1\r\nHost: app.test\r\nX-One: 1\r\nContent-Length: 3\r\n\r\n"
    )
    # An upstream (h11 here) reads back exactly the same request.
    server = h11.Connection(h11.SERVER)
    server.receive_data(head.encoded + b"abc")
    request = server.next_event()
    assert isinstance(request, h11.Request)
    assert (request.method, request.target) == (b"POST", b"/up?x=1")
    assert request.headers.raw_items() == [
        (b"Host", b"app.test"),
        (b"X-One", b"1"),
        (b"Content-Length", b"3"),
    ]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (b"X-Evil", b"a\r\nContent-Length: 0"),  # CR LF injection
        (b"X-Evil", b"a\nB: c"),  # bare LF
        (b"X-Evil", b"a\rb"),  # bare CR
        (b"X-Evil", b"a\x00b"),  # NUL
        (b"X-Evil", b"a\x7fb"),  # DEL
        (b"X-Evil", b" padded"),  # whitespace at the ends
        (b"X-Evil", b"padded\t"),
        (b"X Evil", b"1"),  # not a token
        (b"X-Evil\r\nContent-Length", b"0"),
        (b"", b"1"),
        (b"X:Evil", b"1"),
    ],
)
def test_a_header_that_would_not_parse_back_is_unforwardable(name: bytes, value: bytes) -> None:
    with pytest.raises(UnforwardableError):
        RequestHead.of(b"GET", b"/", [(b"Host", b"app.test"), (name, value)])


@pytest.mark.parametrize(
    ("method", "target", "headers"),
    [
        (b"G ET", b"/", [(b"Host", b"a")]),
        (b"GET", b"/a b", [(b"Host", b"a")]),
        (b"GET", b"/a\r\n", [(b"Host", b"a")]),
        (b"GET", b"/\x80", [(b"Host", b"a")]),
        (b"GET", b"/", []),  # no Host
        (b"GET", b"/", [(b"Host", b"a"), (b"host", b"b")]),  # two
        (b"POST", b"/", [(b"Host", b"a"), (b"Content-Length", b"1, 2")]),
        (b"POST", b"/", [(b"Host", b"a"), (b"Content-Length", b"1"), (b"Content-Length", b"2")]),
        (b"POST", b"/", [(b"Host", b"a"), (b"Content-Length", b"-1")]),
        (b"POST", b"/", [(b"Host", b"a"), (b"Content-Length", b"%d" % 2**63)]),
        (b"POST", b"/", [(b"Host", b"a"), (b"Transfer-Encoding", b"gzip")]),
        (
            b"POST",
            b"/",
            [(b"Host", b"a"), (b"Transfer-Encoding", b"chunked"), (b"Content-Length", b"1")],
        ),
    ],
)
def test_a_bad_request_line_host_or_framing_is_unforwardable(
    method: bytes, target: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    with pytest.raises(UnforwardableError):
        RequestHead.of(method, target, headers)


def test_request_bodies_are_framed_by_their_head() -> None:
    codec = UpstreamCodec(MAX_HEAD)
    chunked = RequestHead.of(b"POST", b"/", [(b"Host", b"a"), (b"Transfer-Encoding", b"chunked")])
    codec.send_head(chunked)
    assert b"".join(codec.send_body(b"hello")) == b"5\r\nhello\r\n"
    assert codec.send_body(b"") == []
    assert codec.send_end() == b"0\r\n\r\n"
    counted = RequestHead.of(b"POST", b"/", [(b"Host", b"a"), (b"Content-Length", b"4")])
    codec = UpstreamCodec(MAX_HEAD)
    codec.send_head(counted)
    assert codec.send_body(b"ab") == [b"ab"]
    with pytest.raises(UnforwardableError):
        codec.send_end()  # 2 short
    with pytest.raises(UnforwardableError):
        codec.send_body(b"abc")  # 1 over
    assert codec.send_body(b"cd") == [b"cd"]
    assert codec.send_end() == b""


def test_an_upgrade_head_is_marked_only_with_connection_upgrade() -> None:
    base = [(b"Host", b"a"), (b"Upgrade", b"websocket")]
    assert RequestHead.of(b"GET", b"/", [*base, (b"Connection", b"Upgrade")]).upgrade
    assert not RequestHead.of(b"GET", b"/", base).upgrade


# --------------------------------------------------------------------------------- response


RESPONSES = [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", [200], b"hello", True),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", [200], b"", True),
    (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
        [200],
        b"hello world",
        True,
    ),
    (b"HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\n0\r\n\r\n", [200], b"", True),
    (b"HTTP/1.1 204 No Content\r\n\r\n", [204], b"", True),
    (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", [304], b"", True),
    (b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok", [200], b"ok", True),  # no reason
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", [200], b"ok", False),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", [200], b"ok", False),
    (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early\r\nLink: </a>\r\n\r\n"
        b"HTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nx",
        [100, 103, 201],
        b"x",
        True,
    ),
]


@pytest.mark.parametrize(("raw", "statuses", "body", "reusable"), RESPONSES)
@pytest.mark.parametrize("split", [None, 1, 7])
def test_framed_responses_parse_however_the_bytes_arrive(
    raw: bytes, statuses: list[int], body: bytes, reusable: bool, split: int | None
) -> None:
    codec, events = parse(raw, split=split)
    assert events[-1] is END
    assert status_and_body(events) == (statuses, body)
    assert codec.done and codec.reusable is reusable


def test_response_headers_keep_their_spelling_and_lose_surrounding_whitespace() -> None:
    _, events = parse(b"HTTP/1.1 200 Fine\r\nX-App:  kept \t\r\nContent-Length: 0\r\n\r\n")
    head = events[0]
    assert isinstance(head, ResponseHead)
    assert (head.status, head.reason, head.http_version) == (200, b"Fine", b"1.1")
    assert head.headers.raw_items() == [(b"X-App", b"kept"), (b"Content-Length", b"0")]


def test_a_body_to_the_close_ends_at_eof_and_is_never_reused() -> None:
    codec, events = parse(b"HTTP/1.1 200 OK\r\n\r\nall of it", split=3, eof=True)
    assert events[-1] is END and status_and_body(events) == ([200], b"all of it")
    assert codec.done and not codec.reusable


def test_a_head_request_gets_no_body_whatever_the_length() -> None:
    head = RequestHead.of(b"HEAD", b"/", [(b"Host", b"a")])
    codec, events = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", request=head)
    assert events[-1] is END and status_and_body(events) == ([200], b"")
    assert codec.reusable


def test_bytes_past_the_response_stay_trailing_and_stop_reuse() -> None:
    codec, events = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA")
    assert events[-1] is END
    assert codec.trailing_data == (b"EXTRA", False)
    assert codec.done and not codec.reusable


def test_a_reused_codec_parses_the_next_exchange() -> None:
    codec, _ = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na")
    codec.start_next_cycle()
    codec.send_head(GET)
    codec.send_end()
    codec.receive_data(b"HTTP/1.1 404 Not Found\r\nContent-Length: 1\r\n\r\nb")
    head = codec.next_event()
    assert isinstance(head, ResponseHead) and head.status == 404
    assert codec.next_event() == b"b"
    assert codec.next_event() is END
    assert codec.next_event() is PAUSED


def test_a_101_to_an_upgrade_pauses_with_the_new_protocol_bytes_trailing() -> None:
    upgrade = RequestHead.of(
        b"GET", b"/", [(b"Host", b"a"), (b"Connection", b"upgrade"), (b"Upgrade", b"x")]
    )
    raw = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\nRAW"
    codec = UpstreamCodec(MAX_HEAD)
    codec.send_head(upgrade)
    codec.send_end()
    codec.receive_data(raw)
    head = codec.next_event()
    assert isinstance(head, ResponseHead) and head.status == 101
    assert codec.next_event() is PAUSED
    assert codec.trailing_data == (b"RAW", False)
    assert not codec.done and not codec.reusable


HOSTILE = [
    (b"this is not http\r\n\r\n", "status line"),
    (b"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n", "header line|bare"),  # bare CR
    (b"HTTP/1.1 200 OK\nX: a\rb\n\n", "header line|bare"),  # bare CR in a bare-LF head
    (b"HTTP/1.1 200 OK\r\r\nContent-Length: 0\r\n\r\n", "status line|bare"),
    (b"HTTP/1.1 200 OK\nX: a\n folded\nContent-Length: 0\n\n", "obs-fold"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\rok\r\n", "chunk-size|bare"),
    (b"HTTP/1.1 200 OK\r\nX: a\r\n folded\r\nContent-Length: 0\r\n\r\n", "obs-fold"),
    (b"HTTP/1.1 200 OK\r\nBad Name: a\r\n\r\n", "header line"),
    (b"HTTP/1.1 200 OK\r\nX: a\x00b\r\n\r\n", "header line"),
    (b"HTTP/1.1 200 OK\r\nX: a\x01b\r\n\r\n", "header line"),
    (b"HTTP/2.0 200 OK\r\n\r\n", "status line"),
    (b"HTTP/1.1 20 OK\r\n\r\n", "status line"),
    (b"HTTP/1.1 099 Low\r\n\r\n", "status code"),
    (b"HTTP/1.1  200 OK\r\n\r\n", "status line"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", "Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok", "Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok", "Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n", r"2\^63"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", "chunked"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "chunked"),
    (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        "chunked",
    ),
    (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        "Content-Length with Transfer-Encoding",
    ),
    (b"HTTP/1.1 101 Switching\r\nUpgrade: x\r\n\r\n", "no upgrade request"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk-size"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n", "chunk-size"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXX0\r\n\r\n", "CRLF"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX\r\n\r\n", "trailer"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n11111111111111111\r\n", "chunk-size"),
]


# Lenient as RFC 9112 §2.2 and §6.3 allow and Go's client (ngrok's edge) is: bare-LF line ends
# anywhere a line ends, and repeated equal Content-Length fields. Each parses to what its CRLF,
# single-Content-Length twin does.
LENIENT = [
    (
        b"HTTP/1.1 200 OK\nContent-Length: 2\nX-A: 1\n\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 1\r\n\r\nok",
    ),
    (
        b"HTTP/1.1 200 OK\r\nX-A: 1\nContent-Length: 2\r\n\nok",
        b"HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 2\r\n\r\nok",
    ),
    (  # the empty line comes before a CRLF CRLF in the body: the head ends at the first
        b"HTTP/1.1 200 OK\nContent-Length: 6\n\nab\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nab\r\n\r\n",
    ),
    (
        b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n2\nok\n3;x=y\nabc\r\n0\nT: v\n\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n3\r\nabc\r\n0\r\n\r\n",
    ),
    (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    ),
    (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 1\r\ncontent-length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 1\r\n\r\nok",
    ),
]


def _shape(events: list[object]) -> list[object]:
    """The heads and other events in order, with the body bytes between them joined (how a
    body is cut into events depends on how its bytes arrived)."""
    shape: list[object] = []
    for event in events:
        if isinstance(event, bytes) and shape and isinstance(shape[-1], bytes):
            shape[-1] += event
        elif isinstance(event, ResponseHead):
            shape.append((event.status, event.reason, event.http_version, event.headers.items))
        else:
            shape.append(event)
    return shape


@pytest.mark.parametrize(("lenient", "strict"), LENIENT)
@pytest.mark.parametrize("split", [None, 1, 7])
def test_bare_lf_and_equal_content_lengths_parse_as_their_strict_twin(
    lenient: bytes, strict: bytes, split: int | None
) -> None:
    codec, events = parse(lenient, split=split)
    twin, expected = parse(strict, split=split)
    assert _shape(events) == _shape(expected)
    assert events[-1] is END and codec.done and codec.reusable == twin.reusable


def test_a_bare_lf_head_larger_than_the_limit_is_refused() -> None:
    big = b"HTTP/1.1 200 OK\nX: " + b"x" * MAX_HEAD + b"\nContent-Length: 0\n\n"
    for split in (None, 1024):
        with pytest.raises(UpstreamError, match="larger than"):
            parse(big, split=split)


def test_the_next_response_after_a_bare_lf_one_is_parsed_strictly_again() -> None:
    raw = b"HTTP/1.1 200 OK\nContent-Length: 0\n\n"
    codec, events = parse(raw)
    assert events[-1] is END
    codec.start_next_cycle()
    codec.send_head(GET)
    codec.send_end()
    codec.receive_data(b"HTTP/1.1 204 No Content\r\nX: a\r\n\r\n")
    head = codec.next_event()
    assert isinstance(head, ResponseHead) and head.status == 204
    assert head.headers.items == [(b"X", b"a")]
    assert codec.next_event() is END


@pytest.mark.parametrize(("raw", "why"), HOSTILE)
@pytest.mark.parametrize("split", [None, 1])
def test_hostile_responses_are_refused(raw: bytes, why: str, split: int | None) -> None:
    with pytest.raises(UpstreamError, match=why):
        parse(raw, split=split)


def test_a_head_over_the_limit_is_refused_whole_or_in_pieces() -> None:
    big = b"HTTP/1.1 200 OK\r\nX: " + b"x" * MAX_HEAD + b"\r\nContent-Length: 0\r\n\r\n"
    with pytest.raises(UpstreamError, match="larger than"):
        parse(big)  # whole in one read
    codec = UpstreamCodec(MAX_HEAD)
    codec.send_head(GET)
    codec.receive_data(big[: MAX_HEAD + 1])  # incomplete and already over
    with pytest.raises(UpstreamError, match="larger than"):
        codec.next_event()
    # Exactly at the limit is fine.
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX: "
    exact = head + b"x" * (MAX_HEAD - len(head) - 4) + b"\r\n\r\n"
    assert len(exact) == MAX_HEAD
    _, events = parse(exact)
    assert events[-1] is END


def test_an_endless_chunk_size_line_or_trailer_is_refused() -> None:
    start = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    with pytest.raises(UpstreamError, match="chunk-size line larger"):
        parse(start + b"5;" + b"e" * MAX_HEAD)
    with pytest.raises(UpstreamError, match="trailer section larger"):
        parse(start + b"0\r\nX: " + b"t" * MAX_HEAD)


@pytest.mark.parametrize(
    ("raw", "eof_is_fine"),
    [
        (b"", False),
        (b"HTTP/1.1 200 OK\r\nContent-Le", False),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part", False),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", False),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", False),
        (b"HTTP/1.1 200 OK\r\n\r\nto the close", True),
    ],
)
def test_an_early_eof_is_an_error_and_says_the_stream_ended(raw: bytes, eof_is_fine: bool) -> None:
    if eof_is_fine:
        codec, events = parse(raw, eof=True)
        assert events[-1] is END
        return
    with pytest.raises(UpstreamError):
        parse(raw, eof=True)
    codec = UpstreamCodec(MAX_HEAD)
    codec.send_head(GET)
    codec.receive_data(raw)
    codec.receive_data(b"")
    assert codec.ended


def test_body_bytes_are_passed_without_copying_when_a_read_is_all_body() -> None:
    codec, _ = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
    piece = b"0123456789"
    codec.receive_data(piece)
    assert codec.next_event() is piece
    assert codec.next_event() is END


def test_many_tiny_chunks_in_one_read_parse_in_linear_time() -> None:
    """A hostile upstream's 1-byte chunks: each is parsed from where the last ended, not by
    copying the rest of the read (which would take minutes for this one, not milliseconds)."""
    count = 400_000
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1\r\nx\r\n" * count
    began = time.monotonic()
    codec, events = parse(raw + b"0\r\n\r\n")
    assert time.monotonic() - began < 20
    assert events[-1] is END and status_and_body(events) == ([200], b"x" * count)
    assert codec.reusable
