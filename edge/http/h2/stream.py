"""One HTTP/2 request stream of the public https port, answered as an HTTP/1.1 exchange over an
agent stream of its own, as ngrok does (the agent and the upstream only ever see HTTP/1.1).

Theory of operation
-------------------
`edge/http/h2/proxy.py` owns the client connection: its reader task feeds `h2` and fills each
stream's `H2Stream` (body chunks, END_STREAM, window wake-ups, the RST_STREAM cancel scope), and
it starts one task per request stream that calls `Exchanger.run`. This module is that task. It
never touches the `H2Connection`: every HTTP/2 frame it sends goes through the connection's
`Frames` (which queue on `h2` and flush under the connection's one write lock).

`Exchanger.run` answers one stream: translate the head (`edge.http.headers.translate_h2_request`:
Host from `:authority`, the same hop-by-hop and `X-Forwarded-*` rules as HTTP/1.1) into the
seam's `HttpRequest`, decide on it as HTTP/1.1 does (`edge.http.seam.decide`), check the head
once as the HTTP/1.1 request that goes out (`edge.http.h1.upstream.RequestHead`: the body
framed by the request's Content-Length, else chunked), take an agent stream the connection kept
from an earlier exchange to the same endpoint or open a new one (`edge.http.h2.kept`,
`HttpRoute.open_agent_stream`), and relay (`edge.http.h2.relay.AgentRelay`: the request out,
the response parsed by a fresh `UpstreamCodec`, the same strict parser HTTP/1.1 clients get,
and sent back as HTTP/2 headers and DATA frames with flow control both ways). After an exchange
the codec calls `reusable` (both messages whole, the upstream keeps its connection, nothing
unframed left over) the agent stream is kept for the connection's next request (at most
`edge.http.h2.kept.MAX_KEPT`, each for `AGENT_STREAM_HOLD`); otherwise it is closed. A bodiless
request with a replayable method that fails on a kept stream before any response byte (its
upstream connection closed meanwhile) is sent once more on a new stream.

Errors the edge answers itself, as HTTP/2 responses on the stream (the failure -> page mapping:
`edge.http.seam.failure_response`; pages: `edge.http.error_pages`):

| condition                                                         | status | code           |
| ----------------------------------------------------------------- | ------ | -------------- |
| no route for the :authority                                       | 404    | ERR_NGROK_3200 |
| an :authority of another endpoint than the connection's TLS SNI   | 421    | BURROW_*       |
| opening the agent stream failed or took longer than `idle_timeout`| 502    | ERR_NGROK_3200 |
| the agent reset the stream STREAM_REFUSED before a response head  | 502    | ERR_NGROK_8012 |
| EOF, another reset, or non-HTTP bytes before a whole response head| 502    | ERR_NGROK_3004 |
| a response head a proxy must not pass on (`edge.http.h1.upstream`)| 502    | ERR_NGROK_3004 |
| nothing moved on the stream for `idle_timeout` before a response  | 504    | BURROW_*       |
| a missing or bad :authority, Content-Length values that disagree  | 400    | BURROW_*       |
| a Content-Length above 2^63-1, a :path not `/...` (or `*`: OPTIONS)| 400   | BURROW_*       |
| a head HTTP/1.1 cannot carry (`RequestHead.of` refuses it)        | 400    | BURROW_*       |
| more than `max_headers` header fields                             | 431    | BURROW_*       |
| a request body that breaks its Content-Length                     | 400    | BURROW_*       |
| a request body below `body_min_rate`, or over `body_timeout`      | 408    | BURROW_*       |
| CONNECT (this is a reverse proxy; extended CONNECT is not offered)| 405    | BURROW_*       |

Pools. As over HTTP/1.1, a request to a pool whose agent stream the chosen member's agent
ended before any response byte came back (STREAM_REFUSED for an idempotent bodiless request,
REMOTE_GONE_AWAY for any bodiless one: `edge.http.retry.may_move`) is sent once more, on another
member (`edge.http.routing.retry_elsewhere`); only then does the client get the table's page.

Slow request bodies. As over HTTP/1.1, a request body is held to `BodyLimits`
(`edge/http/body_rate.py`: `http.body_min_rate` over `http.body_rate_window`, and
`http.body_timeout` in all), counted only while the task waits for the client's DATA (not while
the agent stream holds a write, nor while the client waits for a `100 Continue`). A body that
breaks them gets a 408 page (BURROW_REQUEST_TIMEOUT) and RST_STREAM(NO_ERROR) if no response
started, else the reset below; either way its agent stream is closed at once.

An endpoint's Traffic Policy (`edge.http.seam.decide`, `client_response_headers`) may answer
the request itself (not an error page), reset the stream without an answer (close-connection:
CANCEL), or replace the upstream's response (its agent stream is then closed unread). Its
compress-response and response-body-find-replace run the upstream's DATA through a
`BodyStream` (`edge.http.response_body`) before it goes out; the head then has no content-length.
A policy that reads request bodies (`seam.BufferBody`) has the DATA read whole first
(`edge/http/h2/buffered.py`: 413 past `http.max_buffered_body`), then sent with a content-length.

Once a response head went out, a failure resets that stream (INTERNAL_ERROR) and nothing
else. A response that ends before its request body did is followed by RST_STREAM(NO_ERROR),
which tells the client to stop sending (RFC 9113 §8.1). Each phase of the exchange (opening the
agent stream, relaying, sending a page) has its own `idle_timeout` deadline, pushed later
whenever bytes move (`H2Stream.touch`). The agent stream is closed (or kept, see above) when
`run` returns; cancellation (the client's RST_STREAM, the connection ending) propagates after
closing it.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

import trio
from h2.errors import ErrorCodes

from edge.admin.metrics import EdgeMetrics, answer_code, endpoint_label
from edge.config import HttpConfig
from edge.http.body_buffer import BodyTooLargeError, BufferBody, decide_with_body, too_large
from edge.http.body_rate import BodyLimits
from edge.http.error_pages import ErrorPage
from edge.http.h1.proxy import AGENT_STREAM_HOLD
from edge.http.h1.upstream import RequestHead, UnforwardableError, UpstreamCodec
from edge.http.h2.buffered import read_body
from edge.http.h2.kept import KeptStreams
from edge.http.h2.relay import AgentRelay
from edge.http.headers import (
    Headers,
    RefusedError,
    translate_h2_request,
)
from edge.http.policy import ClientConn, upstream_failed
from edge.http.retry import REPLAYABLE_METHODS, agent_reset, may_move
from edge.http.routing import HttpRouter, retry_elsewhere
from edge.http.seam import (
    AgentStreamError,
    ClientGoneError,
    ClientTooSlowError,
    Failure,
    HttpRequest,
    Policed,
    PolicyAnswer,
    PolicyClose,
    Refusal,
    RelayError,
    close_agent_stream,
    decide,
    error_response,
    failure_kind,
    failure_response,
    log_refusal,
    open_failure,
)

__all__ = ["Exchanger", "Frames", "H2Stream"]

#: What `decide` returns when the endpoint's Traffic Policy ran (one isinstance check).
_POLICY_OUTCOMES = (Policed, PolicyAnswer, PolicyClose)

log = logging.getLogger(__name__)


class Frames(Protocol):
    """What a stream task asks of its client connection: every h2 call and every write."""

    async def send_headers(
        self, stream: H2Stream, headers: Headers, *, end_stream: bool = False
    ) -> None:
        """Send a header block on `stream`; raises ClientGoneError if the client's stream is
        gone."""
        ...

    async def send_body(self, stream: H2Stream, data: bytes, *, end_stream: bool = False) -> None:
        """Send `data` as the client's windows allow; raises ClientGoneError if the client's
        stream is gone."""
        ...

    async def reset(self, stream: H2Stream, code: ErrorCodes) -> None:
        """Reset `stream` (nothing if it is already closed)."""
        ...

    def acknowledge(self, stream_id: int, length: int) -> None:
        """Give `length` flow-controlled bytes back to the client (sent by the next flush)."""
        ...

    async def flush(self) -> None:
        """Send what is queued."""
        ...


class H2Stream:
    """One request stream: what the reader hands its task, and how far the exchange got."""

    __slots__ = (
        "arrived",
        "body",
        "body_bytes",
        "chunks",
        "continuing",
        "ended",
        "fields",
        "held",
        "id",
        "idle",
        "request_done",
        "request_sent",
        "response_done",
        "response_started",
        "scope",
        "started",
        "status",
        "timer",
        "window",
    )

    def __init__(
        self, stream_id: int, fields: list[tuple[bytes, bytes]], *, ended: bool, idle: float
    ) -> None:
        self.id = stream_id
        self.fields = fields  # the request's header list, pseudo-headers first
        self.body = not ended  # a body follows the head
        self.chunks: list[bytes] = []  # body bytes not yet sent over the agent stream
        self.held = 0  # flow-controlled bytes received and not yet acknowledged
        self.ended = ended  # the client's END_STREAM arrived
        self.continuing = False  # the client waits for a 100 Continue before its body
        self.arrived = trio.Event()  # set when `chunks` or `ended` change
        self.window = trio.Event()  # set when the client's windows may have opened
        self.scope = trio.CancelScope()  # the task; cancelled by the client's RST_STREAM
        self.idle = idle
        self.timer: trio.CancelScope | None = None  # the current phase's idle deadline
        self.started = trio.current_time()
        self.request_done = ended  # the client's request body was read whole
        self.request_sent = False  # ... and written whole to the agent stream
        self.response_started = False  # a final response head went to the client
        self.response_done = False
        self.status = 0
        self.body_bytes = 0

    def touch(self) -> None:
        """Bytes moved: push the current phase's idle deadline later."""
        timer = self.timer
        if timer is not None:
            timer.deadline = trio.current_time() + self.idle

    def phase(self) -> trio.CancelScope:
        """A new idle deadline scope for the next phase of the exchange."""
        self.timer = trio.CancelScope(deadline=trio.current_time() + self.idle)
        return self.timer


class Exchanger:
    """Answers the request streams of one client connection, each in the task that calls
    `run`. `peer` names the client in logs; `client_ip` goes into X-Forwarded-For; `sni` is the
    name the connection's ClientHello asked for."""

    __slots__ = (
        "client_ip",
        "conn",
        "frames",
        "kept",
        "limits",
        "metrics",
        "peer",
        "relay",
        "router",
        "sni",
    )

    def __init__(
        self,
        frames: Frames,
        *,
        peer: str,
        client_ip: bytes,
        router: HttpRouter,
        limits: HttpConfig,
        sni: str | None = None,
        conn: ClientConn | None = None,
        metrics: EdgeMetrics | None = None,
    ) -> None:
        self.frames = frames
        self.metrics = metrics  # each response counted (`edge.admin.metrics`), if given
        self.conn = conn  # a policy's `conn.*`, built on first use
        self.peer = peer
        self.client_ip = client_ip
        self.router = router
        self.limits = limits
        self.sni = sni
        # Agent streams of finished exchanges, for the next requests (`sweep` runs in the
        # connection's nursery, `close_all` when it ends: `edge.http.h2.proxy`).
        self.kept = KeptStreams(hold=AGENT_STREAM_HOLD)
        self.relay = AgentRelay(frames, peer=peer, limits=limits)

    async def run(self, stream: H2Stream) -> None:
        """Answer one request: route it, relay it over an agent stream (a kept one, else a new
        one), or answer a page. A failure is answered (a page or a reset), not raised; the
        agent stream is closed, or kept (`self.kept`) after a clean exchange."""
        try:
            translated = translate_h2_request(
                stream.fields,
                body=stream.body,
                client_ip=self.client_ip,
                scheme=b"https",
                max_headers=self.limits.max_headers,
                replace_forwarded_host=self.limits.replace_x_forwarded_host,
            )
        except RefusedError as refused:
            await self._refuse(stream, refused.page, refused.reason, accept=refused.accept)
            return
        stream.fields = []  # translated: do not hold the originals for the whole exchange
        stream.continuing = stream.body and _expects_continue(translated.headers)
        host, accept = translated.host, translated.accept
        request = HttpRequest(
            method=translated.method,
            target=translated.target,
            host=host,
            scheme="https",
            headers=translated.headers,
            accept=accept,
            client_addr=self.peer,
            sni=self.sni,
            conn=self.conn,
            version="HTTP/2.0",
        )
        route = decide(request, self.router, now=time.time())
        if isinstance(route, Refusal):
            await self._refuse(stream, route.page, route.reason, accept=accept, host=host)
            return
        if isinstance(route, BufferBody):  # the policy reads the body: read it whole first
            whole = await self._read_whole_body(stream, route, accept=accept, host=host)
            if whole is None:
                return
            route = whole
        policy = None
        if isinstance(route, _POLICY_OUTCOMES):
            if isinstance(route, PolicyAnswer):
                log.info("http2 %s: %s: %d from %s", self.peer, host, route.status, route.reason)
                self._count(host, route.status)
                if self.metrics is not None and route.status >= 400:  # a refusal, not an answer
                    self.metrics.refused("policy", answer_code(route.status, route.headers))
                body = route.body_for(request.method)
                await self._send(stream, route.status, list(route.headers), body)
                return
            if isinstance(route, PolicyClose):
                log.info("http2 %s: %s: reset by the policy (%s)", self.peer, host, route.reason)
                await self.frames.reset(stream, ErrorCodes.CANCEL)
                return
            if route.body is not None:  # read whole for the policy: forward it as it left it
                stream.chunks = [route.body] if route.body else []
            request, policy, route = route.request, route.response, route.route
        limits = self.limits
        try:
            head = RequestHead.of(request.method, request.target, request.headers)
        except UnforwardableError as exc:  # a field h2 took that HTTP/1.1 cannot carry
            refusal = failure_response(Failure.UNFORWARDABLE, limits=limits, detail=str(exc))
            await self._refuse(stream, refusal.page, refusal.reason, accept=accept)
            return
        moved = False  # retried once on another pool member already
        fresh = False  # retried on a new stream after a kept one failed
        while True:
            # A kept stream first (`edge.http.h2.kept`), unless this is a retry.
            agent = None if moved or fresh else await self.kept.take(route)
            reused = agent is not None
            kind = Failure.AGENT_TOO_SLOW
            detail = ""
            if agent is None:
                with stream.phase() as timer:
                    try:
                        agent = await route.open_agent_stream(self.peer)
                    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                        log.debug("http2 %s: opening an agent stream failed: %s", self.peer, exc)
                        kind, detail = open_failure(exc), str(exc)
            if agent is None:
                refusal = failure_response(kind, limits=limits, host=host, detail=detail)
                await self._refuse(stream, refusal.page, refusal.reason, accept=accept, host=host)
                return
            failure: RelayError | None = None
            clean = keep = False
            codec = UpstreamCodec(limits.max_head_size)  # a kept stream has nothing pending
            try:
                with stream.phase() as timer:
                    try:
                        await self.relay.run(stream, agent, codec, head, policy)
                    except RelayError as exc:
                        failure = exc
                clean = stream.response_done and stream.request_sent and codec.done
                # Both messages whole, the upstream keeps the connection and sent nothing
                # more: the stream may carry another exchange.
                keep = clean and codec.reusable
            finally:
                if stream.response_started:  # counted even if the client resets the stream now
                    self._count(request.host, stream.status)
                if not (keep and self.kept.keep(route.key, agent)):
                    await close_agent_stream(agent, clean=clean)
            if (
                reused
                and isinstance(failure, AgentStreamError)
                and not timer.cancelled_caught
                and not stream.response_started
                and not stream.status
                and not stream.body
                and request.method in REPLAYABLE_METHODS
            ):
                # A kept stream may have been closed meanwhile (the upstream's keep-alive ran
                # out): once more on a new one, as over HTTP/1.1.
                fresh = True
                log.debug("http2 %s: kept agent stream was dead (%s); retrying", self.peer, failure)
                continue
            if (
                isinstance(failure, AgentStreamError)
                and not timer.cancelled_caught
                and may_move(
                    agent_reset(failure),
                    method=request.method,
                    bodiless=not stream.body,
                    answered=stream.response_started or bool(stream.status),
                    moved=moved,
                )
                and retry_elsewhere(agent)
            ):
                # A pool member refused it before any byte reached an upstream: once more, on
                # another member, as over HTTP/1.1 (edge.http.retry.may_move).
                moved = True
                log.info(
                    "http2 %s: %s: a pool member refused the request (%s); retrying on another",
                    self.peer,
                    host,
                    failure,
                )
                continue
            break
        if stream.response_done:
            if not stream.ended:
                await self.frames.reset(stream, ErrorCodes.NO_ERROR)  # stop sending, we answered
            self._log_done(stream, request)
        elif timer.cancelled_caught:
            if stream.response_started:
                log.warning(
                    "http2 %s: %s: response aborted: nothing moved for %gs",
                    self.peer,
                    host,
                    limits.idle_timeout,
                )
                await self.frames.reset(stream, ErrorCodes.INTERNAL_ERROR)
            else:
                refusal = failure_response(Failure.RESPONSE_TIMEOUT, limits=limits)
                await self._refuse(stream, refusal.page, refusal.reason, accept=accept, host=host)
        else:
            assert failure is not None
            upstream_error = isinstance(failure, AgentStreamError) and not stream.response_started
            if upstream_error and policy is not None:  # to the policy's circuit breakers
                upstream_failed(policy, now=time.time())
            await self._failed(stream, failure, route.forwards_to, accept, host)

    async def _read_whole_body(
        self, stream: H2Stream, pending: BufferBody, *, accept: bytes | None, host: str
    ) -> Policed | PolicyAnswer | PolicyClose | None:
        """Read the request body whole for the endpoint's policy and run its request phase on
        it; None once the request was answered (413, 408) or the client left."""
        limits = self.limits
        try:
            body = await read_body(
                stream,
                self.frames,
                headers=pending.request.headers,
                limit=limits.max_buffered_body,
                limits=BodyLimits.of(limits),
            )
        except BodyTooLargeError as exc:
            page = too_large(limits.max_buffered_body)
            await self._refuse(stream, page, str(exc), accept=accept, host=host)
            return None
        except ClientGoneError as exc:
            log.debug("http2 %s: %s", self.peer, exc)
            return None
        except ClientTooSlowError as exc:
            refusal = failure_response(
                Failure.BODY_TIMEOUT, limits=limits, host=host, detail=str(exc)
            )
            await self._refuse(stream, refusal.page, refusal.reason, accept=accept, host=host)
            return None
        return decide_with_body(pending, body, now=time.time())

    async def _failed(
        self,
        stream: H2Stream,
        failure: RelayError,
        forwards_to: str,
        accept: bytes | None,
        host: str,
    ) -> None:
        """The exchange ended without a whole response: a page if none started, else reset."""
        kind = failure_kind(failure)
        if kind is None:  # the client is gone
            log.debug("http2 %s: %s", self.peer, failure)
            return
        if stream.response_started:
            log.warning(
                "http2 %s: %s: response aborted after it started: %s", self.peer, host, failure
            )
            await self.frames.reset(stream, ErrorCodes.INTERNAL_ERROR)
            return
        refusal = failure_response(
            kind, limits=self.limits, host=host, forwards_to=forwards_to, detail=str(failure)
        )
        await self._refuse(stream, refusal.page, refusal.reason, accept=accept, host=host)

    async def _refuse(
        self,
        stream: H2Stream,
        page: ErrorPage,
        reason: str,
        *,
        accept: bytes | None,
        host: str | None = None,
    ) -> None:
        """Log and answer with an error page; then stop the request body if it is still
        coming."""
        log_refusal(log, "http2", self.peer, host, page, reason)
        # A request for no endpoint is counted under none, not under its (any) authority.
        self._count(None if page.code == "ERR_NGROK_3200" else host, page.status)
        headers, body = error_response(page, accept)
        await self._send(stream, page.status, headers, body)

    async def _send(self, stream: H2Stream, status: int, headers: Headers, body: bytes) -> None:
        """Answer with a whole response the edge made (HTTP/1.1 header spelling); then stop the
        request body if it is still coming."""
        fields: Headers = [(b":status", b"%d" % status)]
        fields += [(name.lower(), value) for name, value in headers]
        with stream.phase() as timer:
            try:
                await self.frames.send_headers(stream, fields)
                await self.frames.send_body(stream, body, end_stream=True)
            except ClientGoneError as exc:
                log.debug("http2 %s: the page did not reach the client: %s", self.peer, exc)
                return
        if timer.cancelled_caught:  # the client granted no window for it
            await self.frames.reset(stream, ErrorCodes.CANCEL)
        elif not stream.ended:
            await self.frames.reset(stream, ErrorCodes.NO_ERROR)

    def _count(self, host: str | None, status: int) -> None:
        if self.metrics is not None:
            self.metrics.http_response(endpoint_label("https", host), status)

    def _log_done(self, stream: H2Stream, request: HttpRequest) -> None:
        if not log.isEnabledFor(logging.DEBUG):
            return
        log.debug(
            "http2 %s: %s %s %s %d %d %.1fms",
            self.peer,
            request.method.decode("ascii", "replace"),
            request.host,
            request.target.decode("ascii", "replace"),
            stream.status,
            stream.body_bytes,
            (trio.current_time() - stream.started) * 1000,
        )


def _expects_continue(headers: Headers) -> bool:
    """The request asks for a 100 Continue before its body (RFC 9110 §10.1.1)."""
    return any(
        name.lower() == b"expect" and value.strip().lower() == b"100-continue"
        for name, value in headers
    )
