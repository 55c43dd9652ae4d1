"""Tests for edge/http/h1/request_head.py: h11's request grammar and field rules, as pure
functions (the whole codec is held to h11 itself in tests/edge/http/h1/test_client.py)."""

from __future__ import annotations

import pytest

from edge.http.h1.request_head import (
    CHUNKED,
    FIELD,
    HEAD,
    ClientError,
    check_trailers,
    normalise,
    parse_slow,
)


def test_the_head_pattern_takes_a_plain_head_and_its_fields() -> None:
    head = b"GET /a?b HTTP/1.1\r\nHost: x\r\nX-Sp:  a  b \t\r\nEmpty:\r\n\r\n"
    match = HEAD.fullmatch(head)
    assert match is not None
    method, target, version, block = match.groups()
    assert (method, target, version) == (b"GET", b"/a?b", b"1.1")
    assert FIELD.findall(block) == [(b"Host", b"x"), (b"X-Sp", b"a  b"), (b"Empty", b"")]


@pytest.mark.parametrize(
    "head",
    [
        b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",  # obs-fold: parse_slow's
        b"GET / HTTP/1.1\r\nX : a\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\x00\r\n\r\n",
        b"GET /\x7f HTTP/1.1\r\n\r\n",
    ],
)
def test_the_head_pattern_refuses_what_needs_the_line_by_line_parse(head: bytes) -> None:
    assert HEAD.fullmatch(head) is None


def test_parse_slow_unfolds_obs_fold_with_one_space() -> None:
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n  b\r\n\tc\n\r\n"
    assert parse_slow(head) == (b"GET", b"/", b"1.1", [(b"Host", b"x"), (b"X", b"a b c")])


@pytest.mark.parametrize(
    "head, message",
    [
        (b"\r\n\r\n", "illegal request line"),  # (h11: "no request line", also 400)
        (b"GET / HTTP/1.1\r\n folded\r\n\r\n", "continuation line at start"),
        (b"GET / HTTP/1.1\r\nNo colon\r\n\r\n", "illegal header line"),
        (b"GET  / HTTP/1.1\r\n\r\n", "illegal request line"),
    ],
)
def test_parse_slow_names_the_fault(head: bytes, message: str) -> None:
    with pytest.raises(ClientError, match=message) as caught:
        parse_slow(head)
    assert caught.value.status_hint == 400


def test_normalise_folds_equal_lengths_and_lowercases_chunked() -> None:
    items = [(b"Host", b"x"), (b"Content-Length", b"5, 5"), (b"content-length", b"5")]
    meaning = normalise(b"POST", b"1.1", items)
    assert meaning.items == [(b"Host", b"x"), (b"Content-Length", b"5")]
    assert meaning.length == 5 and not meaning.close and not meaning.upgrade
    chunked = normalise(b"POST", b"1.1", [(b"Host", b"x"), (b"Transfer-Encoding", b"Chunked")])
    assert chunked.length == CHUNKED
    assert chunked.items == [(b"Host", b"x"), (b"Transfer-Encoding", b"chunked")]


def test_normalise_reads_connection_expect_and_upgrade() -> None:
    items = [
        (b"Host", b"x"),
        (b"Connection", b"Upgrade, CLOSE"),
        (b"Expect", b"100-Continue"),
        (b"Upgrade", b"websocket"),
    ]
    meaning = normalise(b"GET", b"1.1", items)
    assert meaning.close and meaning.expect_continue and meaning.upgrade
    old = normalise(b"GET", b"1.0", [(b"Expect", b"100-continue"), (b"Upgrade", b" ")])
    assert not old.expect_continue and not old.upgrade  # 1.0 ignores Expect; empty Upgrade
    assert normalise(b"CONNECT", b"1.1", [(b"Host", b"x")]).upgrade


@pytest.mark.parametrize(
    "version, items, status",
    [
        (b"1.1", [], 400),  # no Host
        (b"1.0", [(b"Host", b"a"), (b"Host", b"b")], 400),
        (b"1.1", [(b"Host", b"a"), (b"Content-Length", b"1, 2")], 400),
        (b"1.1", [(b"Host", b"a"), (b"Content-Length", b"1"), (b"Content-Length", b"2")], 400),
        (b"1.1", [(b"Host", b"a"), (b"Content-Length", b"+1")], 400),
        (b"1.1", [(b"Host", b"a"), (b"Content-Length", b"1" * 21)], 400),
        (b"1.1", [(b"Host", b"a"), (b"Transfer-Encoding", b"gzip")], 501),
        (
            b"1.1",
            [(b"Host", b"a"), (b"Transfer-Encoding", b"chunked")] * 1
            + [(b"Transfer-Encoding", b"chunked")],
            501,
        ),
    ],
)
def test_normalise_refuses_as_h11_does(
    version: bytes, items: list[tuple[bytes, bytes]], status: int
) -> None:
    with pytest.raises(ClientError) as caught:
        normalise(b"POST", version, list(items))
    assert caught.value.status_hint == status


def test_normalise_lets_other_versions_leave_host_out() -> None:
    assert normalise(b"GET", b"1.0", []).length == 0
    assert normalise(b"GET", b"2.0", []).items == []


def test_trailers_are_checked_as_fields() -> None:
    check_trailers(b"X-T: 1\r\nY: a\r\n  b\r\n\r\n")
    with pytest.raises(ClientError):
        check_trailers(b"bad trailer\r\n\r\n")
