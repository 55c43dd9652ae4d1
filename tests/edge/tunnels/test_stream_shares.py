"""Each endpoint's share of its session's streams, and the stream that gives its share back."""

from __future__ import annotations

import trio
import trio.testing

from edge.tunnels.stream_shares import SharedStream, StreamShares


def test_an_endpoint_takes_at_most_its_share_and_others_keep_theirs() -> None:
    shares = StreamShares(session_limit=8, percent=50)
    assert shares.per_endpoint == 4
    assert all(shares.take("a") for _ in range(4))
    assert not shares.take("a")  # its share is taken, though the session has room
    assert shares.held("a") == 4
    assert all(shares.take("b") for _ in range(4))  # another endpoint still gets its own
    shares.give_back("a")
    assert shares.take("a")
    for _ in range(4):
        shares.give_back("a")
    assert shares.held("a") == 0


def test_a_share_is_at_least_one_stream() -> None:
    assert StreamShares(session_limit=1, percent=1).per_endpoint == 1
    assert StreamShares(session_limit=4096, percent=50).per_endpoint == 2048
    assert StreamShares(session_limit=4096, percent=100).per_endpoint == 4096


async def test_closing_the_stream_gives_its_share_back_once() -> None:
    shares = StreamShares(session_limit=2, percent=50)
    assert shares.take("a")
    left, right = trio.testing.memory_stream_pair()
    stream = SharedStream(left, shares, "a")
    with trio.fail_after(5):
        await stream.send_all(b"ping")
        assert await right.receive_some() == b"ping"
        await right.send_all(b"pong")
        assert await stream.receive_some() == b"pong"
        assert not shares.take("a")  # still held
        await stream.aclose()
        assert shares.held("a") == 0
        await stream.aclose()  # closing twice gives back once
        assert shares.held("a") == 0
        assert await right.receive_some() == b""  # the wrapped stream was closed too


async def test_a_forceful_close_under_cancellation_gives_the_share_back() -> None:
    shares = StreamShares(session_limit=2, percent=100)
    assert shares.take("a")
    left, _right = trio.testing.memory_stream_pair()
    stream = SharedStream(left, shares, "a")
    with trio.fail_after(5):
        await trio.aclose_forcefully(stream)
    assert shares.held("a") == 0
