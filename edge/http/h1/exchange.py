"""One request/response exchange of the edge's HTTP proxy: relaying a request over an agent
stream and its response back, and splicing the two after a 101.

Theory of operation
-------------------
The client side speaks through `cc`, a `ClientCodec` (`edge/http/h1/client.py`, no h11) that
parses the public client's requests and frames our responses to it; it lives as long as the
client connection, which `edge/http/h1/proxy.py` owns. Each agent stream (a stream to an
agent, which pipes its bytes unchanged to the upstream, the customer's service) has its own
`AgentStream.codec` (`edge/http/h1/upstream.py`, no h11): the forwarded head goes out as the
bytes the connection checked and rewrote (`RequestHead`), body bytes go out as they came
(re-chunked if the head says chunked), and the upstream's response is parsed strictly
(anything a proxy must not pass on is an invalid response). The final response head is
rewritten by `edge/http/headers.py` (through `edge.http.seam.client_response_headers`, where
Traffic Policy's on_http_response phase runs) and framed for the client by `cc`: framing
headers pass unchanged, so the client's side is framed the same way (and a read-until-close
response is re-framed as chunked for an HTTP/1.1 client, as it must be). Trailers are dropped
both ways. A policy's compress-response or response-body-find-replace
(`edge.http.response_body`) runs the body through a `BodyStream` and drops Content-Length, so
`cc` frames the new body chunked (or to the close for HTTP/1.0).

`Relay.run` carries one exchange:

1. If the body `cc` already held when the head was read is the whole body (a GET, a small
   POST), the request goes to the agent stream in one write and the response is relayed in the
   same task. Otherwise a second task streams the request body while this one relays the
   response, so an upstream may answer early (a 413 while the upload is running); reading the
   request then stops, and the connection is to be closed.
   The body is held to `BodyLimits` (`edge/http/body_rate.py`): a minimum rate over a window
   and a total time, counted only while waiting for the client (not while an agent stream
   whose upstream reads slowly holds the write, nor while the client waits for a
   `100 Continue`). A body that breaks them fails with `ClientTooSlowError` (a 408 if no
   response has started), so its agent stream and upstream connection are released: each
   byte resetting the idle deadline is no bound.
2. Every read is at most `READ_SIZE`; every write is awaited before the next read, so memory
   per connection is bounded by a few reads whatever the body sizes (backpressure). Every read
   or write that moves bytes calls `touch`, which pushes the connection's idle deadline later.
3. A `101` answer to an upgrade request ends the relay with `Exchange.switched`; `Relay.splice`
   then forwards both sides' unparsed bytes (`trailing_data`) first, and
   `protocol.adapters.pipe.splice` copies both ways.

The relay never answers with an error page and never closes a stream: it records what went
wrong in `Exchange.failure` (a `RelayError` saying which side failed) and the progress flags
say how far it got, so the connection can decide between a page, a retry and an abort.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import cast

import trio

from edge.config import HttpConfig
from edge.http.body_rate import BodyLimits, BodyRate, SlowBody
from edge.http.h1.client import ClientCodec, ClientError
from edge.http.h1.upstream import (
    END,
    NEED_DATA,
    RequestHead,
    ResponseHead,
    UpstreamCodec,
    UpstreamError,
)
from edge.http.headers import response_headers
from edge.http.response_body import BodyStream
from edge.http.seam import (
    AgentStreamError,
    ClientBodyError,
    ClientGoneError,
    ClientTooSlowError,
    HttpRequest,
    PolicyAnswer,
    RelayError,
    ResponsePolicy,
    RewrittenResponse,
    client_response_headers,
)
from protocol.adapters.pipe import splice
from protocol.formats.units import KiB

__all__ = [
    "READ_SIZE",
    "AgentStream",
    "Exchange",
    "Forward",
    "Relay",
]

log = logging.getLogger(__name__)

#: Bytes asked of either side per read: large enough to amortise per-call cost, small enough
#: that a connection holds little (a body is never held whole, whatever its size).
READ_SIZE = 64 * KiB


class Forward:
    """A request ready to go over an agent stream: what it is, and what to send."""

    __slots__ = ("complete", "datas", "head", "policy", "request", "started")

    def __init__(
        self,
        *,
        request: HttpRequest,
        head: RequestHead,
        datas: list[bytes],
        complete: bool,
        started: float,
        policy: ResponsePolicy | None = None,
    ) -> None:
        self.request = request  # the request as the seam decided on it
        self.head = head  # ... as it goes out (with Connection/Upgrade for an upgrade)
        self.datas = datas  # the body read along with the head
        self.complete = complete  # ... is the whole body
        self.started = started  # when the head was read (for the log)
        self.policy = policy  # the endpoint's Traffic Policy's response phase, if it has one


class AgentStream:
    """One stream to an agent and the HTTP/1.1 client side that speaks over it."""

    __slots__ = ("codec", "key", "reused", "stream")

    def __init__(self, key: object, stream: trio.abc.HalfCloseableStream, max_head: int) -> None:
        self.key = key  # the HttpRoute.key it serves
        self.stream = stream
        self.codec = UpstreamCodec(max_head)
        self.reused = False  # kept from an earlier exchange (it may have died meanwhile)


class Exchange:
    """The state of one request/response relay, shared by its two directions."""

    __slots__ = (
        "agent",
        "body_bytes",
        "body_rate",
        "body_wait",
        "failure",
        "forward",
        "received",
        "request_done",
        "request_sent",
        "response_done",
        "response_started",
        "status",
        "switched",
    )

    def __init__(self, forward: Forward, agent: AgentStream) -> None:
        self.forward = forward
        self.agent = agent
        self.failure: RelayError | None = None
        self.request_done = forward.complete  # the client's request has been read whole
        self.request_sent = False  # ... and written whole to the agent stream
        self.received = False  # some byte came over the agent stream
        self.response_started = False  # a final response head went to the client
        self.response_done = False
        self.switched = False  # 101: both sides are raw bytes now
        self.status = 0
        self.body_bytes = 0
        # While the request body streams: its rate account, and the cancel scope whose
        # deadline bounds the wait for the client's next bytes (infinite when not waiting).
        self.body_rate: BodyRate | None = None
        self.body_wait: trio.CancelScope | None = None


class Relay:
    """Carries exchanges between one client connection (`client`, spoken to through `cc`) and
    agent streams. `touch` is called whenever bytes move; `peer` names the client in logs;
    `body` bounds how slowly a request body may come."""

    __slots__ = ("body", "cc", "client", "peer", "response_buffer", "touch")

    def __init__(
        self,
        *,
        cc: ClientCodec,
        client: trio.abc.Stream,
        touch: Callable[[], None],
        peer: str,
        body: BodyLimits,
        response_buffer: int = HttpConfig().max_buffered_response_body,
    ) -> None:
        self.cc = cc
        self.client = client
        self.touch = touch
        self.peer = peer
        self.body = body
        # The most response body a policy's response-body-find-replace holds
        # (`http.max_buffered_response_body`).
        self.response_buffer = response_buffer

    async def run(self, exchange: Exchange) -> None:
        """Relay `exchange` until its response went to the client whole, a 101 did, or it
        failed (`exchange.failure` says how). Closes nothing; cancellation propagates."""
        if exchange.forward.complete:
            await self._guard(self._relay_simple, exchange, None)
        else:
            await self._relay_concurrent(exchange)

    async def splice(self, exchange: Exchange) -> bool:
        """After a relayed 101: hand over the bytes read past the heads, then copy raw bytes
        both ways until both end. Always closes the agent stream (not the client); False if a
        side failed before the copy began (the client connection should then be aborted)."""
        agent = exchange.agent
        spliced = False
        try:
            from_client = self.cc.trailing_data[0]
            from_agent = agent.codec.trailing_data[0]
            if from_client:
                await agent.stream.send_all(from_client)
            if from_agent:
                await self.client.send_all(from_agent)
            spliced = True
            await splice(_watch(self.client, self.touch), _watch(agent.stream, self.touch))
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            log.debug("http %s: upgraded connection failed at once: %s", self.peer, exc)
            return False
        finally:
            if not spliced:
                await trio.aclose_forcefully(agent.stream)
        return True

    async def _guard(
        self,
        relay: Callable[[Exchange], Awaitable[None]],
        exchange: Exchange,
        scope: trio.CancelScope | None,
    ) -> None:
        try:
            await relay(exchange)
        except RelayError as failure:
            if exchange.failure is None:
                exchange.failure = failure
            if scope is not None:
                scope.cancel()

    async def _relay_simple(self, exchange: Exchange) -> None:
        """The whole request is here: send it in one write, then relay the response."""
        agent = exchange.agent
        codec = agent.codec
        parts: list[bytes] = [codec.send_head(exchange.forward.head)]
        for data in exchange.forward.datas:
            parts.extend(codec.send_body(data))
        end = codec.send_end()
        if end:
            parts.append(end)
        try:
            await _send_parts(agent.stream, parts)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise AgentStreamError(f"sending the request failed: {exc}") from exc
        exchange.request_sent = True
        await self._relay_response(exchange)

    async def _relay_concurrent(self, exchange: Exchange) -> None:
        """The body is still coming: stream it in a second task while relaying the response.
        The head is framed first, so the response is parsed knowing what it answers."""
        head = exchange.agent.codec.send_head(exchange.forward.head)

        async def relay_request(exchange: Exchange) -> None:
            await self._relay_request(exchange, head)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._guard, relay_request, exchange, nursery.cancel_scope)
            await self._guard(self._relay_response, exchange, nursery.cancel_scope)
            if not exchange.request_done:
                # Answered before the request ended (a 413, say): stop reading it.
                nursery.cancel_scope.cancel()

    async def _relay_request(self, exchange: Exchange, head: bytes) -> None:
        """Client -> agent stream: `head` (the request head's bytes), then the body as it
        arrives. Raises ClientTooSlowError for a body that breaks `self.body`'s limits."""
        rate = exchange.body_rate = BodyRate(self.body, now=trio.current_time())
        with trio.CancelScope(deadline=math.inf) as waiting:
            exchange.body_wait = waiting
            await self._stream_request(exchange, head, rate, waiting)
            return
        verdict = rate.verdict(trio.current_time()) or SlowBody.TOO_SLOW
        raise ClientTooSlowError(rate.describe(verdict))

    async def _stream_request(
        self, exchange: Exchange, head: bytes, rate: BodyRate, waiting: trio.CancelScope
    ) -> None:
        """`_relay_request`'s loop; `waiting`'s deadline bounds only the reads from the
        client."""
        cc = self.cc
        client = self.client
        touch = self.touch
        agent = exchange.agent
        codec = agent.codec
        parts: list[bytes] = [head]
        datas = exchange.forward.datas
        ended = False
        while True:
            for piece in datas:
                parts.extend(codec.send_body(piece))
            if ended:
                end = codec.send_end()
                if end:
                    parts.append(end)
            try:
                await _send_parts(agent.stream, parts)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                # Leave the verdict to the response side: the upstream may have answered
                # already (and closed), or its reset tells why it is gone.
                log.debug(
                    "http %s: the agent stream stopped taking the request: %s", self.peer, exc
                )
                return
            if ended:
                exchange.request_sent = True
                return
            touch()
            now = trio.current_time()
            # A client waiting for a 100 Continue is not slow: only the total time counts then.
            continuing = cc.waiting_for_100_continue
            waiting.deadline = rate.hold(now) if continuing else rate.wait(now)
            try:
                data = await client.receive_some(READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise ClientGoneError(f"the client connection failed mid-body: {exc}") from exc
            finally:
                waiting.deadline = math.inf
            if not data:
                raise ClientGoneError("the client closed its connection mid-body")
            touch()
            rate.received(len(data), trio.current_time())
            cc.receive_data(data)
            try:
                datas, ended = cc.take_body()
            except ClientError as exc:
                raise ClientBodyError(f"bad request body: {exc}") from exc
            if ended:
                exchange.request_done = True
            parts = []

    async def _relay_response(self, exchange: Exchange) -> None:
        """Agent stream -> client: 1xx, the head, the body; returns at its end or after a 101."""
        cc = self.cc
        agent = exchange.agent
        codec = agent.codec
        stream = agent.stream
        out: list[bytes] = []
        rewrite: BodyStream | None = None  # a policy's compress-response or find-replace
        # Nothing of the response is here yet unless an upstream sent more than it framed
        # last time: read first rather than ask for an event that cannot be there.
        pending, closed = codec.trailing_data
        waiting = not pending and not closed
        while True:
            if waiting:
                waiting = False
                event: object = NEED_DATA
            else:
                try:
                    event = codec.next_event()
                except UpstreamError as exc:
                    raise AgentStreamError.from_upstream(
                        exc, ended=codec.ended, head_seen=exchange.response_started
                    ) from exc
            if event is NEED_DATA:
                if out:
                    await self._to_client(out)
                    out = []
                try:
                    data = await stream.receive_some(READ_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    raise AgentStreamError(f"the agent stream failed: {exc}") from exc
                if data:
                    exchange.received = True
                    self.touch()
                codec.receive_data(data)
                continue
            kind = type(event)
            if kind is bytes:
                body = cast(bytes, event)
                if rewrite is not None:
                    body = rewrite.feed(body)
                if body:
                    out.extend(cc.send_data(body))
                    exchange.body_bytes += len(body)
            elif event is END:
                if rewrite is not None:
                    tail = rewrite.finish()
                    if tail:
                        out.extend(cc.send_data(tail))
                        exchange.body_bytes += len(tail)
                end = cc.send_end()
                if end:
                    out.append(end)
                await self._to_client(out)
                exchange.response_done = True
                return
            elif kind is ResponseHead:
                response = cast(ResponseHead, event)
                status = response.status
                if status < 200:
                    if await self._informational(exchange, response, out):
                        return
                    continue
                policy = exchange.forward.policy
                if policy is None:
                    headers = client_response_headers(response.headers)
                else:
                    decided = client_response_headers(
                        response.headers, policy=policy, status=status, now=time.time()
                    )
                    if isinstance(decided, PolicyAnswer):
                        await self._policy_answer(exchange, decided, out)
                        return
                    if isinstance(decided, RewrittenResponse):
                        rewrite = decided.start(self.response_buffer)
                        decided = decided.headers
                    headers = decided
                if not exchange.request_done:
                    headers.append((b"Connection", b"close"))
                out.append(cc.send_response(status, response.reason, headers))
                exchange.response_started = True
                exchange.status = status
            else:  # PAUSED cannot come before the response ends
                raise AgentStreamError(f"the agent stream ended early ({event!r})")

    async def _informational(
        self, exchange: Exchange, info: ResponseHead, out: list[bytes]
    ) -> bool:
        """Relay a 1xx head (none to an HTTP/1.0 client, RFC 9110 §15.2); True after a 101,
        which ends the relay (the codec takes a 101 only as an answer to an upgrade)."""
        cc = self.cc
        if info.status == 101:
            headers = response_headers(info.headers, upgrade=True)
            out.append(cc.send_informational(101, info.reason, headers))
            await self._to_client(out)
            exchange.status = 101
            exchange.switched = True
            return True
        version = cc.http_version
        if version is not None and version >= b"1.1":
            headers = response_headers(info.headers, upgrade=False)
            out.append(cc.send_informational(info.status, info.reason, headers))
            _continue_body(exchange)
        return False

    async def _policy_answer(
        self, exchange: Exchange, answer: PolicyAnswer, out: list[bytes]
    ) -> None:
        """Send the Traffic Policy's answer in place of the upstream's response. The upstream's
        body is never read: the agent stream is left unfinished, so it is closed, not kept."""
        cc = self.cc
        headers = list(answer.headers)
        if not exchange.request_done:
            headers.append((b"Connection", b"close"))
        body = answer.body_for(exchange.forward.head.method)
        try:
            out.append(cc.send_whole(answer.status, answer.phrase, headers, body))
        except ClientError as exc:  # validation keeps statuses sendable
            raise AgentStreamError(f"the policy's answer cannot be sent: {exc}") from exc
        exchange.response_started = True
        exchange.status = answer.status
        exchange.body_bytes += len(body)
        await self._to_client(out)
        exchange.response_done = True
        log.info("http %s: %d from %s on the response", self.peer, answer.status, answer.reason)

    async def _to_client(self, parts: list[bytes]) -> None:
        try:
            await _send_parts(self.client, parts)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise ClientGoneError(f"the client connection failed: {exc}") from exc
        self.touch()


# ----------------------------------------------------------------------------------- helpers


def _continue_body(exchange: Exchange) -> None:
    """A 1xx went to the client, which was waiting for a 100 Continue: if the request relay
    is waiting for its body, the rate counts again from now (`cc` has cleared its flag)."""
    waiting, rate = exchange.body_wait, exchange.body_rate
    if waiting is not None and rate is not None and waiting.deadline != math.inf:
        waiting.deadline = rate.wait(trio.current_time())


async def _send_parts(stream: trio.abc.SendStream, parts: list[bytes]) -> None:
    """One write for a list of byte strings (a lone payload goes out without a copy)."""
    if len(parts) == 1:
        await stream.send_all(parts[0])
    elif parts:
        # Chunk framing or a head with a first body piece: one copy beats several syscalls.
        await stream.send_all(b"".join(parts))


# --------------------------------------------------------------------------- watched streams


class _Watched(trio.abc.Stream):
    """A stream that reports every read (for splice: bytes moving keep the connection open)."""

    def __init__(self, inner: trio.abc.Stream, touch: Callable[[], None]) -> None:
        self.inner = inner
        self.touch = touch

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        data = await self.inner.receive_some(max_bytes)
        self.touch()
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.inner.aclose()


class _WatchedHalfCloseable(_Watched, trio.abc.HalfCloseableStream):
    async def send_eof(self) -> None:
        await cast(trio.abc.HalfCloseableStream, self.inner).send_eof()


def _watch(stream: trio.abc.Stream, touch: Callable[[], None]) -> _Watched:
    if isinstance(stream, trio.abc.HalfCloseableStream):
        return _WatchedHalfCloseable(stream, touch)
    return _Watched(stream, touch)
