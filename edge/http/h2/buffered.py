"""Reading an HTTP/2 request body whole, for an endpoint whose Traffic Policy reads bodies
(`edge.http.body_buffer`: verify-webhook, request-body-find-replace).

`read_body` collects the DATA the connection's reader task puts in `H2Stream.chunks` until the
client's END_STREAM: at most `limit` bytes (a `content-length` above it is refused before any
byte is read), held to the same `BodyLimits` as a streamed body (`edge.http.body_rate`). Every
byte is acknowledged as it is taken (WINDOW_UPDATE), so the client's flow-control windows never
hold the body back: `limit` bounds what the edge holds. A client that waits for a
`100 Continue` gets one from the edge first (the edge, not the upstream, reads the body now).

Errors: `BodyTooLargeError` past `limit`; `ClientTooSlowError` below the minimum rate or over the
total time; `ClientGoneError` if the 100 Continue cannot be sent. The client's RST_STREAM
cancels the task (`H2Stream.scope`), which propagates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from edge.http.body_buffer import BodyTooLargeError, declared_length
from edge.http.body_rate import BodyLimits, BodyRate, SlowBody
from edge.http.headers import Headers
from edge.http.seam import ClientTooSlowError

if TYPE_CHECKING:  # edge.http.h2.stream imports this module
    from edge.http.h2.stream import Frames, H2Stream

__all__ = ["read_body"]


async def read_body(
    stream: H2Stream, frames: Frames, *, headers: Headers, limit: int, limits: BodyLimits
) -> bytes:
    """The whole request body of `stream` (`headers` are its request's, HTTP/1.1 spelling)."""
    declared = declared_length(headers)
    if declared is not None and declared > limit:
        raise BodyTooLargeError(f"the request body has {declared} bytes (content-length)")
    if stream.continuing:
        await frames.send_headers(stream, [(b":status", b"100")])
        stream.continuing = False
    rate = BodyRate(limits, now=trio.current_time())
    parts: list[bytes] = []
    size = 0
    while True:
        chunks, stream.chunks = stream.chunks, []
        taken, stream.held = stream.held, 0
        for chunk in chunks:
            size += len(chunk)
            parts.append(chunk)
        if size > limit:
            raise BodyTooLargeError(f"the request body has more than {limit} bytes")
        rate.received(sum(map(len, chunks)), trio.current_time())
        if taken:
            stream.touch()
            frames.acknowledge(stream.id, taken)
            await frames.flush()
        if stream.ended:
            stream.request_done = True
            return b"".join(parts)
        while not stream.chunks and not stream.ended:
            stream.arrived = trio.Event()
            with trio.move_on_at(rate.wait(trio.current_time())) as waiting:
                await stream.arrived.wait()
            if waiting.cancelled_caught:
                verdict = rate.verdict(trio.current_time()) or SlowBody.TOO_SLOW
                raise ClientTooSlowError(rate.describe(verdict))
