"""Reading an HTTP/1.1 request body whole, for an endpoint whose Traffic Policy reads bodies
(`edge.http.body_buffer`: verify-webhook, request-body-find-replace).

`read_body` takes what the client's codec (`edge/http/h1/client.py`) already parsed along with
the head and reads the rest from the client: at most `limit` bytes (a Content-Length above it
is refused before any byte is read), held to the same `BodyLimits` as a streamed body
(`edge.http.body_rate`): the wait for each read is bounded by `BodyRate.wait`. A client that
sent `Expect: 100-continue` is told to go on first (the edge, not the upstream, is the one that
reads the body now).

Errors: `BodyTooLargeError` past `limit`; `ClientTooSlowError` below the minimum rate or over the
total time; `ClientBodyError` for a body that breaks its framing (a bad chunk, fewer bytes
than its Content-Length before EOF is `ClientGoneError`); `ClientGoneError` when the client
closes or its connection fails. In every error case the connection is not reusable (the rest
of the body is unread). Cancellation propagates.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from edge.http.body_buffer import BodyTooLargeError, declared_length
from edge.http.body_rate import BodyLimits, BodyRate, SlowBody
from edge.http.h1.client import ClientCodec, ClientError
from edge.http.h1.exchange import READ_SIZE
from edge.http.headers import Headers
from edge.http.seam import ClientBodyError, ClientGoneError, ClientTooSlowError

__all__ = ["read_body"]


async def read_body(
    cc: ClientCodec,
    client: trio.abc.Stream,
    *,
    headers: Headers,
    datas: list[bytes],
    complete: bool,
    limit: int,
    limits: BodyLimits,
    touch: Callable[[], None],
) -> bytes:
    """The whole body of the request `cc` is reading (`headers` are its head's; `datas` what
    came with the head; `complete` if that is all of it). `touch` is called when bytes move."""
    declared = declared_length(headers)
    if declared is not None and declared > limit:
        raise BodyTooLargeError(f"the request body has {declared} bytes (Content-Length)")
    parts = list(datas)
    size = sum(map(len, parts))
    if size > limit:
        raise BodyTooLargeError(f"the request body has more than {limit} bytes")
    if complete:
        return b"".join(parts)
    if cc.waiting_for_100_continue:
        continuing = cc.send_informational(100, b"", [])
        try:
            await client.send_all(continuing)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise ClientGoneError(f"the client connection failed: {exc}") from exc
    rate = BodyRate(limits, now=trio.current_time())
    while True:
        with trio.move_on_at(rate.wait(trio.current_time())) as waiting:
            try:
                data = await client.receive_some(READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise ClientGoneError(f"the client connection failed mid-body: {exc}") from exc
        if waiting.cancelled_caught:
            verdict = rate.verdict(trio.current_time()) or SlowBody.TOO_SLOW
            raise ClientTooSlowError(rate.describe(verdict))
        if not data:
            raise ClientGoneError("the client closed its connection mid-body")
        touch()
        rate.received(len(data), trio.current_time())
        cc.receive_data(data)
        try:
            pieces, ended = cc.take_body()
        except ClientError as exc:
            raise ClientBodyError(f"bad request body: {exc}") from exc
        for piece in pieces:
            size += len(piece)
            if size > limit:
                raise BodyTooLargeError(f"the request body has more than {limit} bytes")
            parts.append(piece)
        if ended:
            return b"".join(parts)
