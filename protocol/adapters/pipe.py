"""Bidirectional copy between two trio streams, with TCP half-close semantics.

Each direction copies until its source reaches EOF, then half-closes its destination
(`send_eof`), so a client that shuts down its write side still gets the whole reply. If either
direction fails (reset, broken transport), both streams are closed at once: a failure is never
half-hidden. Payload is never copied in Python beyond what `receive_some` returns.
"""

from __future__ import annotations

import contextlib
import logging

import trio

log = logging.getLogger(__name__)

#: Bytes asked of a source per read: large enough to amortise per-call cost on fast links.
COPY_CHUNK = 256 * 1024
#: A graceful close (e.g. a TLS close_notify) gets this long before it is abandoned.
CLOSE_TIMEOUT = 1.0


async def splice(a: trio.abc.Stream, b: trio.abc.Stream) -> tuple[int, int]:
    """Copy a→b and b→a until both directions end; close both. Returns (a→b, b→a) bytes.

    Never raises for a broken or closed stream (that is how connections end); cancellation
    propagates as usual.
    """
    counts = [0, 0]
    failed = False

    async def copy(src: trio.abc.Stream, dst: trio.abc.Stream, index: int) -> None:
        nonlocal failed
        try:
            while True:
                data = await src.receive_some(COPY_CHUNK)
                if not data:
                    break
                await dst.send_all(data)
                counts[index] += len(data)
            if isinstance(dst, trio.abc.HalfCloseableStream):
                await dst.send_eof()
            else:
                await dst.aclose()
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            log.debug("splice: direction %d ended: %s", index, exc)
            failed = True
            nursery.cancel_scope.cancel()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(copy, a, b, 0)
            nursery.start_soon(copy, b, a, 1)
    finally:
        await _close(a, abort=failed)
        await _close(b, abort=failed)
    return counts[0], counts[1]


async def _close(stream: trio.abc.Stream, *, abort: bool) -> None:
    if abort:
        await trio.aclose_forcefully(stream)
        return
    with (
        trio.CancelScope(shield=True),
        trio.move_on_after(CLOSE_TIMEOUT),
        contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError),
    ):
        await stream.aclose()
