"""The edge's HTTP/1.1 reverse proxy: one public client connection, relayed request by request
to agent endpoints chosen by Host.

Theory of operation
-------------------
The proxy is three modules, one concern each:

* this one owns the client connection: its request loop, its one deadline, the choice of an
  agent stream (and whether to retry on another), and every ending: an error page, a
  lingering close, an abort;
* `edge/http/headers.py` decides what heads become on the way through (routing name, framing
  checks, hop-by-hop removal, `X-Forwarded-*`), with no I/O;
* `edge/http/h1/exchange.py` relays one request/response exchange between the client's codec
  (`cc`, `edge/http/h1/client.py`: it parses requests and frames responses, and lives as long
  as the connection) and an agent stream (whose HTTP/1.1 bytes `edge/http/h1/upstream.py`
  frames and parses), and splices the two after a 101.

What a request means is decided in `edge/http/seam.py`, as for HTTP/2: the head becomes an
`HttpRequest`, `decide` routes it (or answers 404), and every failure becomes its page through
`failure_response`. An *agent stream* is the proxy stream to the endpoint's agent; the
*upstream* is the customer's service the agent pipes it to.

One request:

1. Read a request head from the client (`head_timeout`; after the first request the wait for
   the first byte is `keepalive_timeout`, then `head_timeout` for the rest). Refuse bad
   framing.
2. Take whatever body `cc` already holds, route by Host (an absolute-form target's authority;
   on TLS, only to the endpoint of the connection's SNI: `seam.decide`), and get an agent
   stream.
3. Relay the exchange (`Relay.run`): in one task if the whole request is here, else with a
   second task streaming the request body, so an upstream may answer early (a 413 while the
   upload is running); the client connection then closes.
4. A `101` answer to an upgrade request switches both sides to raw bytes (`Relay.splice`).

Agent stream reuse: after an exchange in which both messages finished cleanly (the
upstream keeping its connection, nothing left over), the stream is kept for the client's next
request if that request routes to the same endpoint (`HttpRoute.key`) and, for a pool, to the
same member while it is in the pool and healthy (`edge.http.routing.reusable`; the member is
chosen per request, a tie going to the kept stream's: `edge.http.routing.keeping`); otherwise
it is closed and a new one opened. A
kept stream may have been closed meanwhile (a keep-alive timeout there), so a
request without a body and with a replayable method that fails on a reused stream before any
response byte is retried once on a new stream (Go's http.Transport does the same).

An idle client holds no agent stream: a kept stream is closed once the client has sent
nothing for `AGENT_STREAM_HOLD` after an exchange (the watchdog does it, as it does the
deadlines), so back-to-back requests reuse it while a keep-alive connection waiting for its
next request costs the agent neither a stream (of its session's `max_streams_per_session`)
nor an upstream connection. Were streams kept for the whole keep-alive wait, a few thousand
idle clients could hold all of an agent's streams and take every one of its endpoints offline.

Errors the edge answers itself (the failure -> page mapping: `edge.http.seam.failure_response`;
pages and codes: `edge/http/error_pages.py`):

| condition                                                         | status | code           |
| ----------------------------------------------------------------- | ------ | -------------- |
| no route for the Host                                             | 404    | ERR_NGROK_3200 |
| a Host of another endpoint than the connection's TLS SNI          | 421    | BURROW_*       |
| opening the agent stream failed (the agent's session is gone)     | 502    | ERR_NGROK_3200 |
| the agent at its stream limit (session, or this endpoint's share)| 503    | BURROW_*       |
| the agent reset the stream STREAM_REFUSED before a response head  | 502    | ERR_NGROK_8012 |
| EOF, another reset, or non-HTTP bytes before a whole response head| 502    | ERR_NGROK_3004 |
| nothing moved either way for `idle_timeout` before a response head| 504    | BURROW_*       |
| bad head, bad Host, CL with TE, repeated CL, bad chunked body     | 400    | BURROW_*       |
| a CL above 2^63-1, a target neither a path nor an http(s) URL, `*`| 400    | BURROW_*       |
| ... with a method other than OPTIONS                              |        |                |
| more than `max_headers` header fields                             | 431    | BURROW_*       |
| a request line for HTTP/2.0 (any major version but 1)             | 505    | BURROW_*       |
| CONNECT (this is a reverse proxy)                                 | 405    | BURROW_*       |
| head not whole `head_timeout` after accept / after its first byte  | 408    | BURROW_*       |
| a request body below `body_min_rate`, or over `body_timeout`      | 408    | BURROW_*       |
| head larger than `max_head_size`                                  | 431    | BURROW_*       |
| a Transfer-Encoding other than chunked                            | 501    | BURROW_*       |

An endpoint's Traffic Policy (`seam.decide`, `seam.client_response_headers`) may answer a
request itself (`_answer`: deny, redirect, 401, 429, ...; not an error page), close the
connection without an answer, or replace the upstream's response (`Relay`: the agent stream is
then closed, not kept, since its response was not read to its end). A policy that reads request
bodies (`seam.BufferBody`) has the body read whole first (`edge/http/h1/buffered.py`: 413 past
`http.max_buffered_body`), and the request goes out with that body in one write.

Once a response head has gone to the client, no page can follow: any failure then aborts the
client connection. A page keeps the connection alive only when the whole request was read.
Trailers (rare, and never needed by HTTP/1.1 semantics) are dropped in both directions.

Timeouts: each connection has one deadline and one watchdog task. The connection's phase (idle
between requests, reading a head, opening a stream, relaying, upgraded, closing) says what the
deadline passing means: a quiet close, a 408, a 502, a 504 or an abort. The same watchdog
closes a kept agent stream at `release_at`, if the client is still idle then. Moving bytes
push the deadline later by storing a float (no cancel scope per request or per chunk, which
would cost more than the rest of the relay logic); a phase change that brings it earlier
wakes the watchdog. A request body is also held to a minimum rate and a total time (`Relay`, with
`edge/http/body_rate.py`); a response has no limit on its total time, as at ngrok.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from enum import Enum
from typing import Literal, cast

import trio

from edge.admin.metrics import EdgeMetrics, answer_code, endpoint_label
from edge.config import HttpConfig
from edge.http.body_buffer import BodyTooLargeError, BufferBody, decide_with_body, too_large
from edge.http.body_rate import BodyLimits
from edge.http.error_pages import ErrorPage
from edge.http.h1.buffered import read_body
from edge.http.h1.client import CLOSED, NEED_DATA, ClientCodec, ClientError, Request
from edge.http.h1.exchange import READ_SIZE, AgentStream, Exchange, Forward, Relay
from edge.http.h1.upstream import RequestHead, UnforwardableError
from edge.http.headers import Headers, RefusedError, head_error_page, prepare_request
from edge.http.policy import ClientConn, upstream_failed
from edge.http.retry import REPLAYABLE_METHODS, agent_reset, may_move
from edge.http.routing import HttpRoute, HttpRouter, keeping, retry_elsewhere, reusable
from edge.http.seam import (
    CLOSE_TIMEOUT,
    AgentStreamError,
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
from protocol.formats.urls import format_host_port

__all__ = ["READ_SIZE", "serve_http"]

log = logging.getLogger(__name__)

#: After answering a request whose body we did not read, keep reading (and discarding) for up
#: to this long before closing, so the kernel does not reset the connection under the client
#: before it has read the answer (nginx's lingering close; its lingering_timeout is 5 s).
LINGER_TIME = 2.0
#: A kept agent stream is closed once its client has sent nothing for this long after an
#: exchange. A page's requests follow each other within milliseconds and keep reusing it; a
#: client quiet for a second is idle (a person reading), and must not hold one of its agent's
#: streams, nor the agent's upstream connection, for the whole `keepalive_timeout`. Opening a
#: new stream when it comes back costs about a millisecond.
AGENT_STREAM_HOLD = 1.0
#: What `decide` returns when the endpoint's Traffic Policy ran (one isinstance check).
_POLICY_OUTCOMES = (Policed, PolicyAnswer, PolicyClose)


async def serve_http(
    client: trio.abc.Stream,
    *,
    client_addr: tuple[str, int],
    scheme: Literal["http", "https"],
    router: HttpRouter,
    limits: HttpConfig,
    sni: str | None = None,
    metrics: EdgeMetrics | None = None,
) -> None:
    """Serve one client connection (plaintext: TLS, if any, is already terminated; `sni` is
    the name its ClientHello asked for) until it ends, routing each request by Host through
    `router`. Each response is counted in `metrics` (`edge.admin.metrics`), if given.

    Always closes `client` and every agent stream it opened. Never raises for
    connection-level trouble (a reset, a bad request, a dead agent: each is answered or logged);
    cancellation propagates after both sides are closed forcefully.
    """
    connection = _Connection(client, client_addr, scheme, router, limits, sni, metrics)
    try:
        await connection.run()
    except Exception:
        connection.abort = True
        log.exception("http %s: the connection failed unexpectedly; closing it", connection.peer)
    except BaseException:
        connection.abort = True
        raise
    finally:
        await connection.close()


# --------------------------------------------------------------------------------- internals


class _Phase(Enum):
    """What the connection is waiting for, which says what its deadline passing means."""

    IDLE = "idle"  # the next request's first byte (a kept agent stream goes): close quietly
    HEAD = "head"  # the rest of a request head: 408
    OPENING = "opening"  # a stream to the agent: 502 ERR_NGROK_3200
    EXCHANGE = "exchange"  # bytes either way: 504 before a response head, abort after
    UPGRADED = "upgraded"  # bytes either way after a 101: close
    CLOSING = "closing"  # a page or a lingering close: abort


class _Connection:
    """One public client connection: the request loop and its agent stream."""

    def __init__(
        self,
        client: trio.abc.Stream,
        client_addr: tuple[str, int],
        scheme: Literal["http", "https"],
        router: HttpRouter,
        limits: HttpConfig,
        sni: str | None,
        metrics: EdgeMetrics | None = None,
    ) -> None:
        self.client = client
        self.metrics = metrics
        self.peer = format_host_port(*client_addr)
        self.client_ip = client_addr[0].encode("ascii")
        self.scheme = scheme
        self.scheme_bytes = scheme.encode("ascii")
        self.sni = sni
        self.conn = ClientConn(client, client_addr, sni)  # a policy's `conn.*`, on first use
        self.router = router
        self.limits = limits
        self.cc = ClientCodec(limits.max_head_size)
        self.relay = Relay(
            cc=self.cc,
            client=client,
            touch=self._touch,
            peer=self.peer,
            body=BodyLimits.of(limits),
            response_buffer=limits.max_buffered_response_body,
        )
        self.agent_stream: AgentStream | None = None  # kept for the next request
        self.client_eof = False
        #: Close the client connection with a reset rather than gracefully.
        self.abort = False
        # The one timer: `_watchdog` ends the connection when `deadline` passes, and `phase`
        # says what that means. Bytes moving push the deadline later with a float store (no
        # cancel scope per request or per chunk); only a phase change may move it earlier,
        # which wakes the watchdog.
        self.accepted_at = trio.current_time()
        self.deadline = self.accepted_at + limits.head_timeout
        self._alarm: trio.CancelScope | None = None  # the watchdog's sleep
        self.phase = _Phase.IDLE
        #: When the watchdog closes the kept agent stream if the client is still idle.
        self.release_at = math.inf
        self.forward: Forward | None = None  # the request being served
        self.exchange: Exchange | None = None  # ... and its relay, once under way
        self.timed_out = False

    # ---------------------------------------------------------------------------- the loop

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watchdog, nursery.cancel_scope)
            await self._loop()
            nursery.cancel_scope.cancel()
        if self.timed_out:
            await self._timed_out()

    async def _watchdog(self, scope: trio.CancelScope) -> None:
        while True:
            with trio.CancelScope(deadline=min(self.deadline, self.release_at)) as self._alarm:
                await trio.sleep_forever()
            now = trio.current_time()
            if now >= self.release_at:
                await self._release_idle_stream()
            if now >= self.deadline:
                self.timed_out = True
                scope.cancel()
                return

    def _hold_agent_stream(self) -> None:
        """The client went idle after an exchange: have the watchdog close the kept agent
        stream (if any) `AGENT_STREAM_HOLD` from now unless a request comes first."""
        if self.agent_stream is None:
            return
        self.release_at = when = trio.current_time() + AGENT_STREAM_HOLD
        alarm = self._alarm
        if alarm is not None and when < alarm.deadline:
            alarm.deadline = when

    async def _release_idle_stream(self) -> None:
        """Close the kept agent stream if the client is still idle (taken from the connection
        first, so a request arriving meanwhile opens a new one)."""
        self.release_at = math.inf
        agent = self.agent_stream
        if agent is None or self.phase is not _Phase.IDLE:
            return
        self.agent_stream = None
        log.debug("http %s: client idle; agent stream released", self.peer)
        await close_agent_stream(agent.stream, clean=True)

    def _touch(self) -> None:
        """Bytes moved: push the idle deadline back (only ever later within a phase)."""
        self.deadline = trio.current_time() + self.limits.idle_timeout

    def _set_deadline(self, phase: _Phase, when: float) -> None:
        """Enter `phase`, due at `when`; wakes the watchdog if that is before its alarm."""
        self.phase = phase
        self.deadline = when
        alarm = self._alarm
        if alarm is not None and when < alarm.deadline:
            alarm.deadline = when

    async def _timed_out(self) -> None:
        """The deadline passed in `phase`: answer if an answer is still possible, and close."""
        phase = self.phase
        forward = self.forward
        exchange = self.exchange
        agent, self.agent_stream = self.agent_stream, None
        if agent is not None:
            await trio.aclose_forcefully(agent.stream)
        if phase is _Phase.IDLE:
            log.debug("http %s: idle; closing", self.peer)
        elif phase is _Phase.HEAD:
            refusal = failure_response(Failure.HEAD_TIMEOUT, limits=self.limits)
            await self._refuse(refusal.page, refusal.reason, accept=None, keep=False)
        elif phase is _Phase.OPENING and forward is not None:
            request = forward.request
            host = request.host
            refusal = failure_response(Failure.AGENT_TOO_SLOW, limits=self.limits, host=host)
            await self._refuse(
                refusal.page, refusal.reason, accept=request.accept, keep=False, host=host
            )
        elif phase is _Phase.EXCHANGE and forward is not None and exchange is not None:
            request = forward.request
            if exchange.response_started:
                log.warning(
                    "http %s: %s: response aborted: nothing moved for %gs",
                    self.peer,
                    request.host,
                    self.limits.idle_timeout,
                )
                self.abort = True
            else:
                refusal = failure_response(Failure.RESPONSE_TIMEOUT, limits=self.limits)
                await self._refuse(
                    refusal.page,
                    refusal.reason,
                    accept=request.accept,
                    keep=False,
                    host=request.host,
                )
        elif phase is _Phase.UPGRADED:
            log.info("http %s: upgraded connection idle; closed", self.peer)
        else:
            self.abort = True

    async def _loop(self) -> None:
        first = True
        while True:
            try:
                head = await self._read_head(first)
            except RefusedError as refusal:
                await self._refuse(refusal.page, refusal.reason, accept=None, keep=False)
                return
            if head is None:
                return
            if not await self._serve(head):
                return
            self.cc.start_next_cycle()
            first = False

    async def close(self) -> None:
        """Close the agent stream (if one is kept) and the client connection."""
        agent, self.agent_stream = self.agent_stream, None
        if agent is not None:
            await close_agent_stream(agent.stream, clean=not self.abort)
        if self.abort:
            await trio.aclose_forcefully(self.client)
            return
        with trio.move_on_after(CLOSE_TIMEOUT):
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await self.client.aclose()

    # --------------------------------------------------------------------------- the head

    async def _read_head(self, first: bool) -> Request | None:
        """The next request head, or None when the client is gone or idle (close quietly).
        Raises RefusedError for a head that is malformed, too large or too slow."""
        cc = self.cc
        limits = self.limits
        leftover = cc.trailing_data[0]  # a pipelined request already read
        self.forward = self.exchange = None
        # The first head is due head_timeout after accept (a TLS handshake included); a later
        # one may idle first, then is due head_timeout after its first byte.
        if first:
            head_deadline = self.accepted_at + limits.head_timeout
            self._set_deadline(_Phase.HEAD if leftover else _Phase.IDLE, head_deadline)
        elif leftover:
            head_deadline = trio.current_time() + limits.head_timeout
            self._set_deadline(_Phase.HEAD, head_deadline)
        else:
            head_deadline = 0.0  # set at the first byte
            self._set_deadline(_Phase.IDLE, trio.current_time() + limits.keepalive_timeout)
            self._hold_agent_stream()
        # With nothing pipelined, read first rather than ask `cc` for a head it cannot have.
        waiting = not leftover
        while True:
            if waiting:
                waiting = False
                event: object = NEED_DATA
            else:
                try:
                    event = cc.next_request()
                except ClientError as exc:
                    if self.client_eof:
                        log.debug("http %s: the client left mid-head: %s", self.peer, exc)
                        return None  # nobody is left to read an answer
                    status = exc.status_hint
                    raise RefusedError(
                        head_error_page(status, limits.max_head_size), f"bad request head: {exc}"
                    ) from exc
            if event is NEED_DATA:
                if self.phase is _Phase.HEAD and self.deadline != head_deadline:
                    # Only a head split across reads gets here: its own deadline (408) now.
                    self._set_deadline(_Phase.HEAD, head_deadline)
                try:
                    data = await self.client.receive_some(READ_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    log.debug("http %s: the client connection failed: %s", self.peer, exc)
                    return None
                if not data:
                    self.client_eof = True
                elif self.phase is _Phase.IDLE:
                    self.phase = _Phase.HEAD
                    if not first:
                        head_deadline = trio.current_time() + limits.head_timeout
                cc.receive_data(data)
                continue
            if event is CLOSED:
                return None  # the client closed between requests
            return cast(Request, event)

    # ------------------------------------------------------------------------ one request

    async def _serve(self, parsed: Request) -> bool:
        """Answer one request; True if the client connection may carry another."""
        started = trio.current_time()
        try:
            host, accept, headers, upgrade, target = prepare_request(
                parsed,
                (parsed.raw,),
                client_ip=self.client_ip,
                scheme=self.scheme_bytes,
                max_headers=self.limits.max_headers,
                replace_forwarded_host=self.limits.replace_x_forwarded_host,
            )
        except RefusedError as refused:
            await self._refuse(refused.page, refused.reason, accept=refused.accept, keep=False)
            return False
        try:
            datas, complete = self.cc.take_body()
        except ClientError as exc:
            detail = f"bad request body: {exc}"
            refusal = failure_response(Failure.BAD_BODY, limits=self.limits, detail=detail)
            await self._refuse(refusal.page, refusal.reason, accept=accept, keep=False)
            return False
        if upgrade is not None and complete:
            headers.append((b"Connection", b"upgrade"))
            headers.append((b"Upgrade", upgrade))
        request = HttpRequest(
            method=parsed.method,
            target=target,
            host=host,
            scheme=self.scheme,
            headers=headers,
            accept=accept,
            client_addr=self.peer,
            sni=self.sni,
            conn=self.conn,
            version="HTTP/" + parsed.http_version.decode("ascii"),
        )
        kept = self.agent_stream
        router = self.router if kept is None else keeping(self.router, kept.stream)
        route = decide(request, router, now=time.time())
        if isinstance(route, Refusal):
            return await self._refuse(
                route.page, route.reason, accept=accept, keep=complete, host=host
            )
        if isinstance(route, BufferBody):  # the policy reads the body: read it whole first
            whole = await self._read_whole_body(route, datas, complete, accept=accept, host=host)
            if whole is None:
                return False
            route, complete = whole, True
        policy = None
        if isinstance(route, _POLICY_OUTCOMES):
            if isinstance(route, PolicyAnswer):
                return await self._answer(route, parsed.method, keep=complete, host=host)
            if isinstance(route, PolicyClose):
                log.info("http %s: %s: closed by the policy (%s)", self.peer, host, route.reason)
                return False
            if route.body is not None:  # read whole for the policy: forward it as it left it
                datas = [route.body] if route.body else []
            request, policy, route = route.request, route.response, route.route
        try:
            forward_head = RequestHead.of(parsed.method, request.target, request.headers)
        except UnforwardableError as exc:  # `cc` parsed it: only a policy's edit gets here
            refusal = failure_response(Failure.UNFORWARDABLE, limits=self.limits, detail=str(exc))
            await self._refuse(refusal.page, refusal.reason, accept=accept, keep=False)
            return False
        forward = Forward(
            request=request,
            head=forward_head,
            datas=datas,
            complete=complete,
            started=started,
            policy=policy,
        )
        self.forward = forward
        replayable = complete and not datas and parsed.method in REPLAYABLE_METHODS
        moved = False  # retried once on another pool member already
        while True:
            self._set_deadline(_Phase.OPENING, trio.current_time() + self.limits.idle_timeout)
            agent = await self._agent_stream_for(route, host)
            if isinstance(agent, Refusal):
                return await self._refuse(
                    agent.page, agent.reason, accept=accept, keep=complete, host=host
                )
            exchange = self.exchange = Exchange(forward, agent)
            self.phase = _Phase.EXCHANGE
            await self.relay.run(exchange)
            failure = exchange.failure
            if exchange.response_done or exchange.switched:
                # (A failure now can only be the client leaving once it had the answer.)
                return await self._finish(exchange)
            # The exchange failed (the relays end early only with a whole response or a 101):
            # this agent stream is done for.
            assert failure is not None
            self.agent_stream = None
            await trio.aclose_forcefully(agent.stream)
            if (
                isinstance(failure, AgentStreamError)
                and not exchange.response_started
                and agent.reused
                and not exchange.received
                and replayable
            ):
                log.debug(
                    "http %s: reused agent stream was dead (%s); retrying", self.peer, failure
                )
                continue
            if (
                isinstance(failure, AgentStreamError)
                and may_move(
                    agent_reset(failure),
                    method=parsed.method,
                    bodiless=complete and not datas,
                    answered=exchange.response_started or exchange.received,
                    moved=moved,
                )
                and retry_elsewhere(agent.stream)
            ):
                # A pool member refused it before any byte reached an upstream: once more,
                # on another member (edge.http.retry.may_move; edge.http.routing.retry_elsewhere
                # says whether one is there).
                moved = True
                log.info(
                    "http %s: %s: a pool member refused the request (%s); retrying on another",
                    self.peer,
                    host,
                    failure,
                )
                continue
            upstream_error = isinstance(failure, AgentStreamError) and not exchange.response_started
            if upstream_error and exchange.forward.policy is not None:  # to its circuit breakers
                upstream_failed(exchange.forward.policy, now=time.time())
            return await self._failed(exchange, failure, route.forwards_to)

    async def _read_whole_body(
        self,
        pending: BufferBody,
        datas: list[bytes],
        complete: bool,
        *,
        accept: bytes | None,
        host: str,
    ) -> Policed | PolicyAnswer | PolicyClose | None:
        """Read the request body whole for the endpoint's policy and run its request phase on
        it; None once the request was answered (413, 408, 400) or the client left."""
        limits = self.limits
        self._set_deadline(_Phase.HEAD, trio.current_time() + limits.idle_timeout)
        try:
            body = await read_body(
                self.cc,
                self.client,
                headers=pending.request.headers,
                datas=datas,
                complete=complete,
                limit=limits.max_buffered_body,
                limits=self.relay.body,
                touch=self._touch,
            )
        except BodyTooLargeError as exc:
            page = too_large(limits.max_buffered_body)
            await self._refuse(page, str(exc), accept=accept, keep=False, host=host)
            return None
        except RelayError as exc:
            kind = failure_kind(exc)
            if kind is None:  # the client is gone
                log.debug("http %s: %s", self.peer, exc)
                self.abort = True
                return None
            refusal = failure_response(kind, limits=limits, host=host, detail=str(exc))
            await self._refuse(refusal.page, refusal.reason, accept=accept, keep=False, host=host)
            return None
        return decide_with_body(pending, body, now=time.time())

    async def _agent_stream_for(self, route: HttpRoute, host: str) -> AgentStream | Refusal:
        """The kept agent stream if it serves the same endpoint, else a new one; the page to
        answer with if the agent cannot be reached (502) or is at its stream limit (503)."""
        agent = self.agent_stream
        if agent is not None:
            if agent.key == route.key and reusable(agent.stream, route):
                agent.reused = True
                return agent
            self.agent_stream = None
            await close_agent_stream(agent.stream, clean=True)
        try:
            stream = await route.open_agent_stream(self.peer)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            log.debug("http %s: opening an agent stream failed: %s", self.peer, exc)
            return failure_response(
                open_failure(exc), limits=self.limits, host=host, detail=str(exc)
            )
        self.agent_stream = AgentStream(route.key, stream, self.limits.max_head_size)
        return self.agent_stream

    # ------------------------------------------------------------------------ the endings

    async def _finish(self, exchange: Exchange) -> bool:
        """A response went out whole (or a 101): log it, keep or close the agent stream."""
        self._count(exchange.forward.request.host, exchange.status)
        agent = exchange.agent
        if exchange.switched:
            self.agent_stream = None
            self._set_deadline(_Phase.UPGRADED, trio.current_time() + self.limits.idle_timeout)
            if not await self.relay.splice(exchange):
                self.abort = True
            self._log_done(exchange)
            return False
        self._log_done(exchange)
        codec = agent.codec
        # Not kept: an upstream that closes after this response, or sent more than it framed.
        if exchange.request_sent and codec.reusable:
            codec.start_next_cycle()
        else:
            self.agent_stream = None
            clean = exchange.request_sent and codec.done
            await close_agent_stream(agent.stream, clean=clean)
        if exchange.failure is not None:
            log.debug("http %s: %s", self.peer, exchange.failure)
            self.abort = True
            return False
        if not exchange.request_done:
            await self._linger()
            return False
        return self.cc.reusable

    async def _failed(self, exchange: Exchange, failure: RelayError, forwards_to: str) -> bool:
        """The exchange ended without a whole response: answer with a page if none started."""
        request = exchange.forward.request
        kind = failure_kind(failure)
        if kind is None:  # the client is gone
            log.debug("http %s: %s", self.peer, failure)
            self.abort = True
            return False
        if exchange.response_started:
            log.warning(
                "http %s: %s: response aborted after it started: %s",
                self.peer,
                request.host,
                failure,
            )
            self.abort = True
            return False
        refusal = failure_response(
            kind,
            limits=self.limits,
            host=request.host,
            forwards_to=forwards_to,
            detail=str(failure),
        )
        # A body that broke its framing leaves the connection's bytes unreadable.
        keep = exchange.request_done and kind is not Failure.BAD_BODY
        return await self._refuse(
            refusal.page, refusal.reason, accept=request.accept, keep=keep, host=request.host
        )

    async def _refuse(
        self,
        page: ErrorPage,
        reason: str,
        *,
        accept: bytes | None,
        keep: bool,
        host: str | None = None,
    ) -> bool:
        """Log and send an error page; True if the connection may carry another request."""
        log_refusal(log, "http", self.peer, host, page, reason)
        # A request for no endpoint is counted under none, not under its (any) Host.
        self._count(None if page.code == "ERR_NGROK_3200" else host, page.status)
        if not self.cc.can_respond:
            return False
        # Bounded here (this also runs after the watchdog has stopped), not by the watchdog.
        self._set_deadline(
            _Phase.CLOSING, trio.current_time() + self.limits.idle_timeout + CLOSE_TIMEOUT
        )
        headers, body = error_response(page, accept)
        return await self._respond(page.status, page.reason, headers, body, keep=keep)

    async def _answer(self, answer: PolicyAnswer, method: bytes, *, keep: bool, host: str) -> bool:
        """Send the answer of the endpoint's Traffic Policy to the request; True if the
        connection may carry another request."""
        log.info("http %s: %s: %d from %s", self.peer, host, answer.status, answer.reason)
        self._count(host, answer.status)
        if self.metrics is not None and answer.status >= 400:  # a refusal, not a custom answer
            self.metrics.refused("policy", answer_code(answer.status, answer.headers))
        if not self.cc.can_respond:
            return False
        self._set_deadline(
            _Phase.CLOSING, trio.current_time() + self.limits.idle_timeout + CLOSE_TIMEOUT
        )
        headers = list(answer.headers)
        body = answer.body_for(method)
        return await self._respond(answer.status, answer.phrase, headers, body, keep=keep)

    async def _respond(
        self, status: int, reason: bytes, headers: Headers, body: bytes, *, keep: bool
    ) -> bool:
        """Send a whole response the edge made; True if the connection may carry another."""
        cc = self.cc
        if not keep:
            headers.append((b"Connection", b"close"))
        try:
            data = cc.send_whole(status, reason, headers, body)
        except ClientError as exc:
            log.debug("http %s: cannot send the %d answer: %s", self.peer, status, exc)
            return False
        sent = False
        with trio.move_on_after(self.limits.idle_timeout):
            try:
                await self.client.send_all(data)
                sent = True
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                log.debug("http %s: the answer did not reach the client: %s", self.peer, exc)
        if not sent:
            self.abort = True
            return False
        if not keep:
            await self._linger()
            return False
        return cc.reusable

    async def _linger(self) -> None:
        """Half-close, then read and discard what the client still sends, for a moment."""
        client = self.client
        self._set_deadline(_Phase.CLOSING, trio.current_time() + LINGER_TIME + CLOSE_TIMEOUT)
        with trio.move_on_after(LINGER_TIME):
            try:
                if isinstance(client, trio.abc.HalfCloseableStream):
                    await client.send_eof()
                while await client.receive_some(READ_SIZE):
                    pass
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

    def _count(self, host: str | None, status: int) -> None:
        if self.metrics is not None:
            self.metrics.http_response(endpoint_label(self.scheme, host), status)

    def _log_done(self, exchange: Exchange) -> None:
        if not log.isEnabledFor(logging.DEBUG):
            return
        request = exchange.forward.request
        log.debug(
            "http %s: %s %s %s %d %d %.1fms",
            self.peer,
            request.method.decode("ascii", "replace"),
            request.host,
            request.target.decode("ascii", "replace"),
            exchange.status,
            exchange.body_bytes,
            (trio.current_time() - exchange.forward.started) * 1000,
        )
