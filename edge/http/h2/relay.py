"""One HTTP/2 request stream's exchange over its agent stream: the request written as HTTP/1.1,
the upstream's response read back and sent to the client as HTTP/2 frames.

Theory of operation
-------------------
The agent pipes an agent stream's bytes unchanged to the upstream (the customer's service), so
what goes over it is HTTP/1.1, spoken through the same sans-IO client side as HTTP/1.1 clients
get (`edge/http/h1/upstream.py`, no h11): the request head is the `RequestHead` the exchanger
checked once (`edge.http.h2.stream`), its body is framed by the codec (counted for a
Content-Length, else chunked), and the response is parsed by the same strict `UpstreamCodec`,
so a response a proxy must not pass on (obs-fold, a bare CR, Content-Lengths that differ,
Content-Length with Transfer-Encoding, Transfer-Encoding other than chunked, a 101 nobody asked
for, an over-size head) is an invalid response (502 ERR_NGROK_3004) whichever HTTP version the
client speaks, and a bare-LF head or repeated equal Content-Lengths pass as through ngrok.

`AgentRelay.run` carries one exchange. A request without a body goes out in one write and its
response is relayed in the same task; otherwise a second task streams the body while this one
relays the response, so an upstream may answer early (the request is then cut short). 1xx
heads go to the client as HTTP/2 informational headers (a `100 Continue` lets the body's rate
count again); a 101 is refused (HTTP/2 cannot switch protocols). The final head goes through
`edge.http.seam.client_response_headers` (Traffic Policy's response phase: header changes, an
answer that replaces the response, or a body rewrite), then its body as DATA frames; trailers
are dropped. The final HEADERS frame is held until the next read would block, so a bodiless
response carries END_STREAM on its HEADERS.

Flow control. Request bodies: the task acknowledges (`Frames.acknowledge`) only what its agent
stream has taken, so an upload runs at the upstream's pace. Response bodies: the task reads at
most `READ_SIZE` from its agent stream, hands it to `Frames.send_body` (which sends DATA frames
as the client's windows allow), and reads again only once it all went out.

Errors are raised as `RelayError`s (`edge.http.seam`): `AgentStreamError` for an agent stream
that failed, ended early or carried an unacceptable response, `ClientBodyError` for a body that
breaks its Content-Length, `ClientTooSlowError` for one below `BodyLimits`, `ClientGoneError`
from `Frames`. The relay never closes the agent stream and never answers a page: the caller
(`edge.http.h2.stream.Exchanger`) does, and keeps the stream only when `UpstreamCodec.reusable`
says both messages ended cleanly. Cancellation propagates.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, cast

import trio

from edge.config import HttpConfig
from edge.http.body_rate import BodyLimits, BodyRate, SlowBody
from edge.http.h1.exchange import READ_SIZE
from edge.http.h1.upstream import (
    END,
    NEED_DATA,
    ResponseHead,
    UnforwardableError,
    UpstreamCodec,
    UpstreamError,
)
from edge.http.headers import Headers, h2_response_fields, h2_response_headers
from edge.http.response_body import BodyStream
from edge.http.seam import (
    AgentStreamError,
    ClientBodyError,
    ClientTooSlowError,
    PolicyAnswer,
    RelayError,
    ResponsePolicy,
    RewrittenResponse,
    client_response_headers,
)

if TYPE_CHECKING:  # edge.http.h2.stream imports this module
    from edge.http.h1.upstream import RequestHead
    from edge.http.h2.stream import Frames, H2Stream

__all__ = ["AgentRelay"]

log = logging.getLogger(__name__)


class AgentRelay:
    """Relays the exchanges of one client connection's request streams over agent streams.
    `peer` names the client in logs; `limits` gives the body limits and the most response
    body a policy's find-replace holds."""

    __slots__ = ("body", "frames", "peer", "response_buffer")

    def __init__(self, frames: Frames, *, peer: str, limits: HttpConfig) -> None:
        self.frames = frames
        self.peer = peer
        self.body = BodyLimits.of(limits)
        self.response_buffer = limits.max_buffered_response_body

    async def run(
        self,
        stream: H2Stream,
        agent: trio.abc.HalfCloseableStream,
        codec: UpstreamCodec,
        head: RequestHead,
        policy: ResponsePolicy | None,
    ) -> None:
        """Relay `head` (with the body `stream` brings) and the response `codec` parses
        (`policy`: the endpoint's Traffic Policy's response phase, if it has one). Returns once
        the response went to the client whole; raises RelayError for what went wrong. A
        response may come before the request ended (the request is then cut short)."""
        encoded = codec.send_head(head)
        if not stream.body:
            try:
                end = codec.send_end()
            except UnforwardableError as exc:  # a Content-Length above 0, and no body
                raise ClientBodyError(f"bad request body: {exc}") from exc
            try:
                await agent.send_all(encoded + end if end else encoded)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise AgentStreamError(f"sending the request failed: {exc}") from exc
            stream.request_sent = True
            stream.touch()
            await self._relay_response(stream, agent, codec, policy)
            return
        failures: list[RelayError] = []
        async with trio.open_nursery() as nursery:

            async def guard(relay: Callable[[], Awaitable[None]]) -> None:
                try:
                    await relay()
                except RelayError as exc:
                    failures.append(exc)
                    nursery.cancel_scope.cancel()

            nursery.start_soon(guard, lambda: self._relay_request(stream, agent, codec, encoded))
            await guard(lambda: self._relay_response(stream, agent, codec, policy))
            if not stream.request_done:
                nursery.cancel_scope.cancel()  # answered before the request ended
        if failures:
            raise failures[0]

    async def _relay_request(
        self,
        stream: H2Stream,
        agent: trio.abc.HalfCloseableStream,
        codec: UpstreamCodec,
        head: bytes,
    ) -> None:
        """Client -> agent stream: the head's bytes, then the body as it arrives, acknowledged
        to the client only once the agent stream took it. Raises ClientTooSlowError for a body
        that breaks `BodyLimits`, ClientBodyError for one that breaks its Content-Length."""
        frames = self.frames
        rate = BodyRate(self.body, now=trio.current_time())
        parts: list[bytes] = [head]
        while True:
            chunks, stream.chunks = stream.chunks, []
            taken = stream.held
            ended = stream.ended
            rate.received(sum(map(len, chunks)), trio.current_time())
            try:
                for chunk in chunks:
                    parts.extend(codec.send_body(chunk))
                if ended:
                    end = codec.send_end()
                    if end:
                        parts.append(end)
            except UnforwardableError as exc:  # more or less than its Content-Length
                raise ClientBodyError(f"bad request body: {exc}") from exc
            try:
                await agent.send_all(b"".join(parts) if len(parts) != 1 else parts[0])
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                # Leave the verdict to the response side: the upstream may have answered
                # already (and closed), or its reset tells why it is gone.
                log.debug(
                    "http2 %s: the agent stream stopped taking the request: %s", self.peer, exc
                )
                return
            stream.touch()
            if taken:
                stream.held -= taken
                frames.acknowledge(stream.id, taken)
                await frames.flush()
            if ended:
                stream.request_done = stream.request_sent = True
                return
            parts = []
            while not stream.chunks and not stream.ended:
                now = trio.current_time()
                # A client waiting for a 100 Continue is not slow: only the total time counts.
                deadline = rate.hold(now) if stream.continuing else rate.wait(now)
                stream.arrived = trio.Event()
                with trio.move_on_at(deadline) as waiting:
                    await stream.arrived.wait()
                if waiting.cancelled_caught:
                    verdict = rate.verdict(trio.current_time()) or SlowBody.TOO_SLOW
                    raise ClientTooSlowError(rate.describe(verdict))

    async def _relay_response(
        self,
        stream: H2Stream,
        agent: trio.abc.HalfCloseableStream,
        codec: UpstreamCodec,
        policy: ResponsePolicy | None,
    ) -> None:
        """Agent stream -> client: 1xx heads, the head, the body; returns at the response's end
        (or once a Traffic Policy's answer replaced the response: the upstream's body is then
        never read, and the unfinished agent stream is closed, not reused)."""
        frames = self.frames
        pending: Headers | None = None  # a head not sent yet: it may carry END_STREAM
        rewrite: BodyStream | None = None  # a policy's compress-response or find-replace
        while True:
            try:
                event = codec.next_event()
            except UpstreamError as exc:
                ended, head_seen = codec.ended, bool(stream.status)
                raise AgentStreamError.from_upstream(exc, ended=ended, head_seen=head_seen) from exc
            if event is NEED_DATA:
                if pending is not None:
                    await self._send_final_headers(stream, pending)
                    pending = None
                try:
                    data = await agent.receive_some(READ_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    raise AgentStreamError(f"the agent stream failed: {exc}") from exc
                if data:
                    stream.touch()
                codec.receive_data(data)
                continue
            kind = type(event)
            if kind is bytes:
                if pending is not None:
                    await self._send_final_headers(stream, pending)
                    pending = None
                payload = cast(bytes, event)
                if rewrite is not None:
                    payload = rewrite.feed(payload)
                if payload:
                    await frames.send_body(stream, payload)
                    stream.body_bytes += len(payload)
            elif event is END:
                tail = rewrite.finish() if rewrite is not None else b""
                stream.body_bytes += len(tail)
                if pending is not None:
                    await self._send_final_headers(stream, pending, end_stream=not tail)
                    if tail:
                        await frames.send_body(stream, tail, end_stream=True)
                else:
                    await frames.send_body(stream, tail, end_stream=True)
                stream.response_done = True
                return
            elif kind is ResponseHead:
                response = cast(ResponseHead, event)
                if response.status < 200:
                    await self._informational(stream, response)
                    continue
                stream.status = response.status
                if policy is None:
                    headers = client_response_headers(response.headers)
                else:
                    decided = client_response_headers(
                        response.headers, policy=policy, status=stream.status, now=time.time()
                    )
                    if isinstance(decided, PolicyAnswer):
                        await self._policy_answer(stream, decided)
                        return
                    if isinstance(decided, RewrittenResponse):
                        rewrite = decided.start(self.response_buffer)
                        decided = decided.headers
                    headers = decided
                pending = h2_response_fields(response.status, headers)
            else:  # PAUSED cannot come before the response ends
                raise AgentStreamError(f"the agent stream ended early ({event!r})")

    async def _informational(self, stream: H2Stream, info: ResponseHead) -> None:
        """Relay a 1xx head; a 101 (only ever an answer to an upgrade a policy asked for) is
        an error: HTTP/2 cannot switch protocols."""
        if info.status == 101:
            raise AgentStreamError("the upstream switched protocols, which HTTP/2 cannot")
        await self.frames.send_headers(stream, h2_response_headers(info.status, info.headers))
        if stream.continuing:  # the body may come now: count its rate again
            stream.continuing = False
            stream.arrived.set()

    async def _policy_answer(self, stream: H2Stream, answer: PolicyAnswer) -> None:
        """Send the Traffic Policy's answer in place of the upstream's response (whose body is
        never read)."""
        log.info("http2 %s: %d from %s", self.peer, answer.status, answer.reason)
        stream.status = answer.status
        fields = h2_response_fields(answer.status, list(answer.headers))
        body = answer.body_for(b"")
        await self._send_final_headers(stream, fields, end_stream=not body)
        if body:
            await self.frames.send_body(stream, body, end_stream=True)
        stream.body_bytes += len(body)
        stream.response_done = True

    async def _send_final_headers(
        self, stream: H2Stream, headers: Headers, *, end_stream: bool = False
    ) -> None:
        await self.frames.send_headers(stream, headers, end_stream=end_stream)
        stream.response_started = True
