"""edge/http/h2/kept.py: which kept agent stream a request gets, the bound on how many are
kept, and that each is closed once it waited `hold` (on trio's mock clock) or the connection
ends."""

from __future__ import annotations

from dataclasses import dataclass

import trio
import trio.testing

from edge.http.h2.kept import MAX_KEPT, KeptStreams


class Stream(trio.abc.HalfCloseableStream):
    """A stand-in agent stream that records that it was closed."""

    def __init__(self) -> None:
        self.closed = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        raise AssertionError("a kept stream is not written to here")

    async def wait_send_all_might_not_block(self) -> None:
        raise AssertionError("a kept stream is not written to here")

    async def send_eof(self) -> None:
        raise AssertionError("a kept stream is never half-closed")

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        raise AssertionError("a kept stream is not read here")

    async def aclose(self) -> None:
        self.closed = True
        await trio.lowlevel.checkpoint()


@dataclass
class Route:
    key: object


def streams(count: int) -> list[Stream]:
    return [Stream() for _ in range(count)]


async def test_take_gives_the_newest_stream_kept_for_that_endpoint() -> None:
    kept = KeptStreams(hold=1.0)
    a1, b1, a2 = streams(3)
    assert kept.keep("a", a1) and kept.keep("b", b1) and kept.keep("a", a2)
    assert await kept.take(Route("a")) is a2  # type: ignore[arg-type]
    assert await kept.take(Route("a")) is a1  # type: ignore[arg-type]
    assert await kept.take(Route("a")) is None  # type: ignore[arg-type]
    assert await kept.take(Route("c")) is None  # type: ignore[arg-type]
    assert len(kept) == 1 and not any(s.closed for s in (a1, b1, a2))


async def test_at_most_limit_streams_are_kept() -> None:
    kept = KeptStreams(hold=1.0)
    several = streams(MAX_KEPT + 2)
    taken = [kept.keep("a", stream) for stream in several]
    assert taken == [True] * MAX_KEPT + [False, False]  # the caller closes the rest
    assert len(kept) == MAX_KEPT


async def test_sweep_closes_each_stream_once_it_waited_hold(
    autojump_clock: trio.testing.MockClock,
) -> None:
    kept = KeptStreams(hold=1.0)
    first, second, third = streams(3)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(kept.sweep)
        await trio.sleep(5)  # nothing kept: the sweeper waits without a deadline
        kept.keep("a", first)
        await trio.sleep(0.6)
        kept.keep("a", second)
        kept.keep("a", third)
        assert await kept.take(Route("a")) is third  # type: ignore[arg-type]
        await trio.sleep(0.5)  # first: 1.1 s old; second: 0.5 s
        assert first.closed and not second.closed
        await trio.sleep(0.6)
        assert second.closed and len(kept) == 0
        assert not third.closed  # taken: no longer the sweeper's
        nursery.cancel_scope.cancel()


async def test_close_all_closes_every_kept_stream() -> None:
    kept = KeptStreams(hold=1.0)
    several = streams(3)
    for stream in several:
        kept.keep("a", stream)
    await kept.close_all(clean=False)
    assert all(s.closed for s in several) and len(kept) == 0
    again = streams(2)
    for stream in again:
        kept.keep("a", stream)
    await kept.close_all(clean=True)
    assert all(s.closed for s in again) and len(kept) == 0


async def test_close_all_cancelled_still_closes_the_rest_at_once() -> None:
    class Stuck(Stream):
        async def aclose(self) -> None:
            self.closed = True
            await trio.sleep_forever()  # a graceful close that never finishes

    kept = KeptStreams(hold=1.0)
    stuck, rest = Stuck(), Stream()
    kept.keep("a", stuck)
    kept.keep("a", rest)
    with trio.move_on_after(0.05):
        await kept.close_all(clean=True)
    assert rest.closed
