"""The edge's HTTP/1.1 reverse proxy: one public client connection, relayed request by request
to agent endpoints chosen by Host.

Theory of operation
-------------------
Two h11 state machines meet in every exchange. `cc` (a SERVER) parses the public client's
requests and frames our responses to it; it lives as long as the client connection. Each
upstream stream (a stream to an agent, which pipes its bytes unchanged to the customer's
service) has its own `uh` (a CLIENT) that frames the requests we forward and parses the
answers. Events cross between them (`Request` -> `Request`, `Data` -> `Data`, ...) with their
headers rewritten: hop-by-hop headers dropped both ways, `X-Forwarded-*` added to requests, the
edge's own error-code headers removed from responses. Framing headers pass unchanged, so h11
frames the other side the same way (and re-frames a read-until-close response as chunked for an
HTTP/1.1 client, as it must).

One exchange:

1. Read a request head from the client (`head_timeout`; after the first request the wait for
   the first byte is `idle_timeout`, then `head_timeout` for the rest). Refuse bad framing.
2. Take whatever body h11 already holds. If that is the whole body (a GET, a small POST), the
   request goes upstream in one write and the response is relayed in the same task. Otherwise
   a second task streams the request body while this one relays the response, so an upstream
   may answer early (a 413 while the upload is running); the client connection then closes.
3. Every read is at most `READ_SIZE`; every write is awaited before the next read, so memory
   per connection is bounded by a few reads whatever the body sizes (backpressure).
4. A `101` answer to an upgrade request switches both sides to raw bytes: h11's unparsed bytes
   (`trailing_data`) are forwarded first, then `protocol.pipe.splice` copies both ways.

Upstream stream reuse: after an exchange in which both h11 machines finished cleanly (both
DONE, nothing left over), the stream is kept for the client's next request if that request
routes to the same endpoint (`HttpRoute.key`); otherwise it is closed and a new one opened. A
kept stream may have been closed by the upstream meanwhile (a keep-alive timeout there), so a
request without a body and with a replayable method that fails on a reused stream before any
response byte is retried once on a new stream (Go's http.Transport does the same).

Errors the edge answers itself (pages and codes: `edge/error_pages.py`):

| condition                                                         | status | code           |
| ----------------------------------------------------------------- | ------ | -------------- |
| no route for the Host                                             | 404    | ERR_NGROK_3200 |
| `open_stream` failed (the agent's session is gone)                | 502    | ERR_NGROK_3200 |
| the agent reset the stream STREAM_REFUSED before a response head  | 502    | ERR_NGROK_8012 |
| EOF, another reset, or non-HTTP bytes before a whole response head| 502    | ERR_NGROK_3004 |
| nothing moved either way for `idle_timeout` before a response head| 504    | BURROW_*       |
| bad head, bad Host, CL with TE, repeated CL, bad chunked body     | 400    | BURROW_*       |
| CONNECT (this is a reverse proxy)                                 | 405    | BURROW_*       |
| head not whole `head_timeout` after accept / after its first byte  | 408    | BURROW_*       |
| head larger than `max_head_size`                                  | 431    | BURROW_*       |
| a Transfer-Encoding other than chunked                            | 501    | BURROW_*       |

Once a response head has gone to the client, no page can follow: any failure then aborts the
client connection. A page keeps the connection alive only when the whole request was read.
Trailers (rare, and never needed by HTTP/1.1 semantics) are dropped in both directions.

Timeouts: each connection has one deadline and one watchdog task. The connection's phase (idle
between requests, reading a head, opening a stream, relaying, upgraded, closing) says what the
deadline passing means: a quiet close, a 408, a 502, a 504 or an abort. Moving bytes push the
deadline later by storing a float (no cancel scope per request or per chunk, which would cost
more than the rest of the relay logic); a phase change that brings it earlier wakes the
watchdog. There is no limit on a request's or a response's total time, as at ngrok.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Literal, Protocol, cast

import h11
import trio

from edge.config import HttpConfig
from edge.error_pages import (
    ErrorPage,
    agent_unreachable,
    bad_request,
    endpoint_offline,
    gateway_timeout,
    invalid_response,
    method_not_allowed,
    prefers_json,
    render,
    request_timeout,
    upstream_unreachable,
)
from protocol.errors import ErrorCode
from protocol.mux import reset_code
from protocol.pipe import splice
from protocol.units import KiB
from protocol.urls import format_host_port

__all__ = ["READ_SIZE", "HttpRoute", "HttpRouter", "route_host", "serve_http"]

log = logging.getLogger(__name__)

#: Bytes asked of either side per read: large enough to amortise per-call cost, small enough
#: that a connection holds little (a body is never held whole, whatever its size).
READ_SIZE = 64 * KiB
#: A graceful close (a TLS close_notify, a FIN) gets this long before it is abandoned.
CLOSE_TIMEOUT = 1.0
#: After answering a request whose body we did not read, keep reading (and discarding) for up
#: to this long before closing, so the kernel does not reset the connection under the client
#: before it has read the answer (nginx's lingering close; its lingering_timeout is 5 s).
LINGER_TIME = 2.0
#: Methods that may be sent twice (RFC 9110 §9.2.2, as Go's transport counts them); only these,
#: without a body, are retried on a fresh stream when a reused one turns out to be dead.
REPLAYABLE_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE"})

# Header handling tags (one dict lookup per header on the hot path).
_HOP, _CONNECTION, _UPGRADE, _HOST, _CL, _TE, _ACCEPT, _XFF, _XFP, _XFH = range(10)
#: RFC 9110 §7.6.1 hop-by-hop headers, plus the non-standard ones proxies meet.
_HOP_BY_HOP = (
    b"keep-alive",
    b"proxy-connection",
    b"te",
    b"trailer",
    b"proxy-authenticate",
    b"proxy-authorization",
)
_REQUEST_TAGS = {
    **dict.fromkeys(_HOP_BY_HOP, _HOP),
    b"connection": _CONNECTION,
    b"upgrade": _UPGRADE,
    b"host": _HOST,
    b"content-length": _CL,
    b"transfer-encoding": _TE,
    b"accept": _ACCEPT,
    b"x-forwarded-for": _XFF,
    b"x-forwarded-proto": _XFP,
    b"x-forwarded-host": _XFH,
}
#: Headers only the edge may set: an upstream must never be able to fake an edge error.
_EDGE_HEADERS = (b"burrow-error-code", b"ngrok-error-code")
_RESPONSE_TAGS = {
    **dict.fromkeys(_HOP_BY_HOP + _EDGE_HEADERS, _HOP),
    b"connection": _CONNECTION,
    b"upgrade": _UPGRADE,
}
#: Never removed because a Connection header names them: dropping framing would desync the two
#: sides, and Host is what the request is routed by.
_PROTECTED = frozenset({b"content-length", b"transfer-encoding", b"host"})
#: A head ends at its first empty line (h11 accepts bare LF line ends too).
_HEAD_END = re.compile(rb"\n\r?\n")
_CONTENT_LENGTH_LINE = re.compile(rb"\ncontent-length:([^\n]*)")
#: A Host value: a name or a bracketed IPv6 address, then an optional port (lowercased first).
_HOST_VALUE = re.compile(r"(?:([a-z0-9_][a-z0-9_.-]*)|\[([0-9a-f:.]+)\])(?::[0-9]*)?", re.ASCII)

Headers = list[tuple[bytes, bytes]]


class _RawHeaders(Protocol):
    """h11's header list (not exported by h11): names as the peer spelt them."""

    def raw_items(self) -> list[tuple[bytes, bytes]]: ...


class HttpRoute(Protocol):
    """An endpoint a request was routed to."""

    @property
    def key(self) -> object:
        """The endpoint's identity: an upstream stream is reused only for the same key."""
        ...

    @property
    def forwards_to(self) -> str:
        """The agent's upstream as the agent described it (named in ERR_NGROK_8012's page)."""
        ...

    async def open_stream(self, client_addr: str) -> trio.abc.HalfCloseableStream:
        """A new stream to the agent with its ProxyHeader written; `client_addr` is the public
        client as "host:port". Raises trio.BrokenResourceError if the agent's session is gone."""
        ...


class HttpRouter(Protocol):
    """Where requests go: the edge's view of online http(s) endpoints."""

    def route(self, host: str, scheme: str) -> HttpRoute | None:
        """The endpoint serving `host` (lowercased, no port, no trailing dot) for `scheme`
        ("http" or "https"), or None when none is online."""
        ...


def route_host(value: bytes) -> str | None:
    """The routing name in a Host header value: lowercased, port and one trailing dot removed
    (`Example.COM.:8080` -> `example.com`; `[::1]:80` -> `::1`); None if it is not a name or an
    address."""
    try:
        text = value.decode("ascii").lower()
    except UnicodeDecodeError:
        return None
    match = _HOST_VALUE.fullmatch(text)
    if match is None:
        return None
    name = match.group(1)
    if name is None:
        return match.group(2)
    return name.removesuffix(".") or None


async def serve_http(
    client: trio.abc.Stream,
    *,
    client_addr: tuple[str, int],
    scheme: Literal["http", "https"],
    router: HttpRouter,
    limits: HttpConfig,
) -> None:
    """Serve one client connection (plaintext: TLS, if any, is already terminated) until it
    ends, routing each request by Host through `router`.

    Always closes `client` and every upstream stream it opened. Never raises for
    connection-level trouble (a reset, a bad request, a dead agent: each is answered or logged);
    cancellation propagates after both sides are closed forcefully.
    """
    connection = _Connection(client, client_addr, scheme, router, limits)
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


class _RefusedError(Exception):
    """Answer the current request with an error page, then close the connection."""

    def __init__(self, page: ErrorPage, reason: str, accept: bytes | None = None) -> None:
        super().__init__(reason)
        self.page = page
        self.reason = reason
        self.accept = accept


class _RelayError(Exception):
    """Why a relay task stopped an exchange (recorded in `_Exchange.failure`)."""


class _ClientGoneError(_RelayError):
    """The client closed or reset its connection, or stopped taking bytes."""


class _ClientBodyError(_RelayError):
    """The client's request body broke its framing (a bad chunk)."""


class _UpstreamError(_RelayError):
    """The upstream stream ended, was reset or sent something that is not HTTP."""


class _Head:
    """A request head as parsed, with the raw bytes it came in (to check framing h11 hides)."""

    __slots__ = ("chunks", "request")

    def __init__(self, request: h11.Request, chunks: list[bytes | bytearray]) -> None:
        self.request = request
        self.chunks = chunks


class _Forward:
    """A request ready to go upstream: where to, and what to send."""

    __slots__ = ("accept", "complete", "datas", "host", "request", "started")

    def __init__(
        self,
        *,
        host: str,
        accept: bytes | None,
        request: h11.Request,
        datas: list[h11.Data],
        complete: bool,
        started: float,
    ) -> None:
        self.host = host
        self.accept = accept
        self.request = request
        self.datas = datas
        self.complete = complete
        self.started = started


class _Upstream:
    """One stream to an agent and the h11 client machine that speaks over it."""

    __slots__ = ("h11", "key", "reused", "stream")

    def __init__(self, key: object, stream: trio.abc.HalfCloseableStream, max_head: int) -> None:
        self.key = key
        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_head)
        self.reused = False


class _Exchange:
    """The state of one request/response relay, shared by its two directions."""

    __slots__ = (
        "body_bytes",
        "failure",
        "forward",
        "received",
        "request_done",
        "request_sent",
        "response_done",
        "response_started",
        "status",
        "switched",
        "upstream",
    )

    def __init__(self, forward: _Forward, upstream: _Upstream) -> None:
        self.forward = forward
        self.upstream = upstream
        self.failure: _RelayError | None = None
        self.request_done = forward.complete  # the client's request has been read whole
        self.request_sent = False  # ... and written whole to the upstream
        self.received = False  # some byte came from the upstream
        self.response_started = False  # a final response head went to the client
        self.response_done = False
        self.switched = False  # 101: both sides are raw bytes now
        self.status = 0
        self.body_bytes = 0


class _Phase(Enum):
    """What the connection is waiting for, which says what its deadline passing means."""

    IDLE = "idle"  # the next request's first byte: close quietly
    HEAD = "head"  # the rest of a request head: 408
    OPENING = "opening"  # a stream to the agent: 502 ERR_NGROK_3200
    EXCHANGE = "exchange"  # bytes either way: 504 before a response head, abort after
    UPGRADED = "upgraded"  # bytes either way after a 101: close
    CLOSING = "closing"  # a page or a lingering close: abort


class _Connection:
    """One public client connection: the request loop and its upstream stream."""

    def __init__(
        self,
        client: trio.abc.Stream,
        client_addr: tuple[str, int],
        scheme: Literal["http", "https"],
        router: HttpRouter,
        limits: HttpConfig,
    ) -> None:
        self.client = client
        self.peer = format_host_port(*client_addr)
        self.client_ip = client_addr[0].encode("ascii")
        self.scheme = scheme
        self.scheme_bytes = scheme.encode("ascii")
        self.router = router
        self.limits = limits
        self.cc = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_head_size)
        self.upstream: _Upstream | None = None
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
        self.forward: _Forward | None = None  # the request being served
        self.exchange: _Exchange | None = None  # ... and its relay, once under way
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
            with trio.CancelScope(deadline=self.deadline) as self._alarm:
                await trio.sleep_forever()
            if trio.current_time() >= self.deadline:
                self.timed_out = True
                scope.cancel()
                return

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
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            await trio.aclose_forcefully(upstream.stream)
        if phase is _Phase.IDLE:
            log.debug("http %s: idle; closing", self.peer)
        elif phase is _Phase.HEAD:
            page = request_timeout(self.limits.head_timeout)
            await self._refuse(page, "the request head was too slow", accept=None, keep=False)
        elif phase is _Phase.OPENING and forward is not None:
            await self._refuse(
                agent_unreachable(forward.host),
                "the agent did not open a stream in time",
                accept=forward.accept,
                keep=False,
                host=forward.host,
            )
        elif phase is _Phase.EXCHANGE and forward is not None and exchange is not None:
            if exchange.response_started:
                log.warning(
                    "http %s: %s: response aborted: nothing moved for %gs",
                    self.peer,
                    forward.host,
                    self.limits.idle_timeout,
                )
                self.abort = True
            else:
                await self._refuse(
                    gateway_timeout(self.limits.idle_timeout),
                    "nothing moved for the idle timeout before a response",
                    accept=forward.accept,
                    keep=False,
                    host=forward.host,
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
            except _RefusedError as refusal:
                await self._refuse(refusal.page, refusal.reason, accept=None, keep=False)
                return
            if head is None:
                return
            if not await self._serve(head):
                return
            self.cc.start_next_cycle()
            first = False

    async def close(self) -> None:
        """Close the upstream stream (if one is kept) and the client connection."""
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            await self._close_upstream(upstream, clean=not self.abort)
        if self.abort:
            await trio.aclose_forcefully(self.client)
            return
        with trio.move_on_after(CLOSE_TIMEOUT):
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await self.client.aclose()

    # --------------------------------------------------------------------------- the head

    async def _read_head(self, first: bool) -> _Head | None:
        """The next request head, or None when the client is gone or idle (close quietly).
        Raises _RefusedError for a head that is malformed, too large or too slow."""
        cc = self.cc
        limits = self.limits
        leftover = cc.trailing_data[0]  # a pipelined request already read
        chunks: list[bytes | bytearray] = [leftover] if leftover else []
        received = len(leftover)
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
            self._set_deadline(_Phase.IDLE, trio.current_time() + limits.idle_timeout)
        while True:
            try:
                event = cc.next_event()
            except h11.RemoteProtocolError as exc:
                if self.client_eof:
                    log.debug("http %s: the client left mid-head: %s", self.peer, exc)
                    return None  # nobody is left to read an answer
                status = exc.error_status_hint
                raise _RefusedError(
                    _head_error_page(status, limits), f"bad request head: {exc}"
                ) from exc
            if event is h11.NEED_DATA:
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
                received += len(data)
                chunks.append(data)
                cc.receive_data(cast(bytes, data))  # h11 appends it to a bytearray
                continue
            if isinstance(event, h11.Request):
                if received > limits.max_head_size:
                    # h11 bounds only an incomplete head; one that came whole in a single read
                    # is measured here, so the limit holds however the bytes were split.
                    size = len(_raw_head(chunks))
                    if size > limits.max_head_size:
                        page = _head_error_page(431, limits)
                        raise _RefusedError(page, f"the request head has {size} bytes")
                return _Head(event, chunks)
            return None  # ConnectionClosed: the client closed between requests

    # ------------------------------------------------------------------------ one request

    async def _serve(self, head: _Head) -> bool:
        """Answer one request; True if the client connection may carry another."""
        started = trio.current_time()
        try:
            host, accept, headers, upgrade = _prepare(
                head, client_ip=self.client_ip, scheme=self.scheme_bytes
            )
        except _RefusedError as refusal:
            await self._refuse(refusal.page, refusal.reason, accept=refusal.accept, keep=False)
            return False
        head.chunks.clear()  # checked: do not hold a first body piece for the whole exchange
        try:
            datas, complete = _take_body(self.cc)
        except h11.RemoteProtocolError as exc:
            page = bad_request(400, "The request body is malformed.")
            await self._refuse(page, f"bad request body: {exc}", accept=accept, keep=False)
            return False
        route = self.router.route(host, self.scheme)
        if route is None:
            page = endpoint_offline(host)
            return await self._refuse(
                page, "no endpoint is online", accept=accept, keep=complete, host=host
            )
        if upgrade is not None and complete:
            headers.append((b"Connection", b"upgrade"))
            headers.append((b"Upgrade", upgrade))
        request = head.request
        try:
            upstream_request = h11.Request(
                method=request.method, target=request.target, headers=headers
            )
        except h11.LocalProtocolError as exc:  # h11 parsed it, so this is not expected
            page = bad_request(400, "The request cannot be forwarded.")
            await self._refuse(page, f"unforwardable request: {exc}", accept=accept, keep=False)
            return False
        forward = _Forward(
            host=host,
            accept=accept,
            request=upstream_request,
            datas=datas,
            complete=complete,
            started=started,
        )
        self.forward = forward
        replayable = complete and not datas and request.method in REPLAYABLE_METHODS
        while True:
            self._set_deadline(_Phase.OPENING, trio.current_time() + self.limits.idle_timeout)
            upstream = await self._upstream_for(route)
            if upstream is None:
                page = agent_unreachable(host)
                return await self._refuse(
                    page, "the agent is unreachable", accept=accept, keep=complete, host=host
                )
            exchange = self.exchange = _Exchange(forward, upstream)
            self.phase = _Phase.EXCHANGE
            if complete:
                await self._guard(self._relay_simple, exchange, None)
            else:
                await self._relay_concurrent(exchange)
            failure = exchange.failure
            if exchange.response_done or exchange.switched:
                # (A failure now can only be the client leaving once it had the answer.)
                return await self._finish(exchange)
            # The exchange failed (the relays end early only with a whole response or a 101):
            # this upstream stream is done for.
            assert failure is not None
            self.upstream = None
            await trio.aclose_forcefully(upstream.stream)
            if (
                isinstance(failure, _UpstreamError)
                and not exchange.response_started
                and upstream.reused
                and not exchange.received
                and replayable
            ):
                log.debug(
                    "http %s: reused upstream stream was dead (%s); retrying", self.peer, failure
                )
                continue
            return await self._failed(exchange, failure, route.forwards_to)

    async def _upstream_for(self, route: HttpRoute) -> _Upstream | None:
        """The kept upstream stream if it serves the same endpoint, else a new one (None if the
        agent cannot be reached)."""
        upstream = self.upstream
        if upstream is not None:
            if upstream.key == route.key:
                upstream.reused = True
                return upstream
            self.upstream = None
            await self._close_upstream(upstream, clean=True)
        try:
            stream = await route.open_stream(self.peer)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            log.debug("http %s: open_stream failed: %s", self.peer, exc)
            return None
        self.upstream = _Upstream(route.key, stream, self.limits.max_head_size)
        return self.upstream

    async def _guard(
        self,
        relay: Callable[[_Exchange], Awaitable[None]],
        exchange: _Exchange,
        scope: trio.CancelScope | None,
    ) -> None:
        try:
            await relay(exchange)
        except _RelayError as failure:
            if exchange.failure is None:
                exchange.failure = failure
            if scope is not None:
                scope.cancel()

    async def _relay_simple(self, exchange: _Exchange) -> None:
        """The whole request is here: send it in one write, then relay the response."""
        upstream = exchange.upstream
        uh = upstream.h11
        parts: list[bytes] = [uh.send(exchange.forward.request)]
        for event in exchange.forward.datas:
            parts.extend(_passthrough(uh, event))
        parts.append(uh.send(h11.EndOfMessage()))
        try:
            await _send_parts(upstream.stream, parts)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise _UpstreamError(f"sending the request failed: {exc}") from exc
        exchange.request_sent = True
        await self._relay_response(exchange)

    async def _relay_concurrent(self, exchange: _Exchange) -> None:
        """The body is still coming: stream it in a second task while relaying the response."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._guard, self._relay_request, exchange, nursery.cancel_scope)
            await self._guard(self._relay_response, exchange, nursery.cancel_scope)
            if not exchange.request_done:
                # Answered before the request ended (a 413, say): stop reading it.
                nursery.cancel_scope.cancel()

    async def _relay_request(self, exchange: _Exchange) -> None:
        """Client -> upstream: the head, then the body as it arrives."""
        cc = self.cc
        client = self.client
        upstream = exchange.upstream
        uh = upstream.h11
        parts: list[bytes] = [uh.send(exchange.forward.request)]
        datas = exchange.forward.datas
        ended = False
        while True:
            for event in datas:
                parts.extend(_passthrough(uh, event))
            if ended:
                parts.append(uh.send(h11.EndOfMessage()))
            try:
                await _send_parts(upstream.stream, parts)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                # Leave the verdict to the response side: the upstream may have answered
                # already (and closed), or its reset tells why it is gone.
                log.debug("http %s: upstream stopped taking the request: %s", self.peer, exc)
                return
            if ended:
                exchange.request_sent = True
                return
            self._touch()
            try:
                data = await client.receive_some(READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise _ClientGoneError(f"the client connection failed mid-body: {exc}") from exc
            if not data:
                raise _ClientGoneError("the client closed its connection mid-body")
            self._touch()
            cc.receive_data(cast(bytes, data))  # h11 appends it to a bytearray
            try:
                datas, ended = _take_body(cc)
            except h11.RemoteProtocolError as exc:
                raise _ClientBodyError(f"bad request body: {exc}") from exc
            if ended:
                exchange.request_done = True
            parts = []

    async def _relay_response(self, exchange: _Exchange) -> None:
        """Upstream -> client: 1xx, the head, the body; returns at its end or after a 101."""
        cc = self.cc
        upstream = exchange.upstream
        uh = upstream.h11
        stream = upstream.stream
        out: list[bytes] = []
        ended = False
        while True:
            try:
                event = uh.next_event()
            except h11.RemoteProtocolError as exc:
                if ended:
                    what = "response" if exchange.response_started else "response head"
                    reason = f"the upstream stream ended before a complete {what}"
                else:
                    reason = f"invalid response: {exc}"
                raise _UpstreamError(reason) from exc
            if event is h11.NEED_DATA:
                if out:
                    await self._to_client(exchange, out)
                    out = []
                try:
                    data = await stream.receive_some(READ_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    raise _UpstreamError(f"the upstream stream failed: {exc}") from exc
                if data:
                    exchange.received = True
                    self._touch()
                else:
                    ended = True
                uh.receive_data(cast(bytes, data))
                continue
            kind = type(event)
            if kind is h11.Data:
                data_event = cast(h11.Data, event)
                out.extend(_passthrough(cc, data_event))
                exchange.body_bytes += len(data_event.data)
            elif kind is h11.Response:
                response = cast(h11.Response, event)
                headers = _response_headers(response.headers, upgrade=False)
                if not exchange.request_done:
                    headers.append((b"Connection", b"close"))
                out.append(
                    cc.send(
                        h11.Response(
                            status_code=response.status_code,
                            headers=headers,
                            reason=response.reason,
                        )
                    )
                )
                exchange.response_started = True
                exchange.status = response.status_code
            elif kind is h11.EndOfMessage:
                out.append(cc.send(h11.EndOfMessage()))
                await self._to_client(exchange, out)
                exchange.response_done = True
                return
            elif kind is h11.InformationalResponse:
                info = cast(h11.InformationalResponse, event)
                if info.status_code == 101:  # h11 accepts it only as an answer to an upgrade
                    headers = _response_headers(info.headers, upgrade=True)
                    out.append(
                        cc.send(
                            h11.InformationalResponse(
                                status_code=101, headers=headers, reason=info.reason
                            )
                        )
                    )
                    await self._to_client(exchange, out)
                    exchange.status = 101
                    exchange.switched = True
                    return
                version = cc.their_http_version
                if version is not None and version >= b"1.1":  # RFC 9110 §15.2: none to 1.0
                    headers = _response_headers(info.headers, upgrade=False)
                    out.append(
                        cc.send(
                            h11.InformationalResponse(
                                status_code=info.status_code, headers=headers, reason=info.reason
                            )
                        )
                    )
            else:  # ConnectionClosed or PAUSED cannot come before the response ends
                raise _UpstreamError(f"the upstream stream ended early ({event!r})")

    async def _to_client(self, exchange: _Exchange, parts: list[bytes]) -> None:
        try:
            await _send_parts(self.client, parts)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise _ClientGoneError(f"the client connection failed: {exc}") from exc
        self._touch()

    # ------------------------------------------------------------------------ the endings

    async def _finish(self, exchange: _Exchange) -> bool:
        """A response went out whole (or a 101): log it, keep or close the upstream."""
        upstream = exchange.upstream
        if exchange.switched:
            self.upstream = None
            await self._switch(exchange)
            self._log_done(exchange)
            return False
        self._log_done(exchange)
        uh = upstream.h11
        if (
            exchange.request_sent
            and uh.our_state is h11.DONE
            and uh.their_state is h11.DONE
            and not uh.trailing_data[0]  # an upstream that sent more than it framed
        ):
            uh.start_next_cycle()
        else:
            self.upstream = None
            clean = exchange.request_sent and uh.their_state in (h11.DONE, h11.MUST_CLOSE)
            await self._close_upstream(upstream, clean=clean)
        if exchange.failure is not None:
            log.debug("http %s: %s", self.peer, exchange.failure)
            self.abort = True
            return False
        if not exchange.request_done:
            await self._linger()
            return False
        return _both_done(self.cc)

    async def _failed(self, exchange: _Exchange, failure: _RelayError, forwards_to: str) -> bool:
        """The exchange ended without a whole response: answer with a page if none started."""
        forward = exchange.forward
        keep = exchange.request_done
        if isinstance(failure, _ClientGoneError):
            log.debug("http %s: %s", self.peer, failure)
            self.abort = True
            return False
        if exchange.response_started:
            log.warning(
                "http %s: %s: response aborted after it started: %s",
                self.peer,
                forward.host,
                failure,
            )
            self.abort = True
            return False
        if isinstance(failure, _ClientBodyError):
            page = bad_request(400, "The request body is malformed.")
            reason = str(failure)
            keep = False
        elif reset_code(_root(failure)) == ErrorCode.STREAM_REFUSED:
            page = upstream_unreachable(forwards_to)
            reason = f"the agent could not reach {forwards_to}"
        else:
            page = invalid_response()
            reason = str(failure)
        return await self._refuse(page, reason, accept=forward.accept, keep=keep, host=forward.host)

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
        # WARNING for what an operator may need to act on (agents, upstreams); INFO for what
        # clients get wrong.
        level = logging.WARNING if page.status in (502, 504) else logging.INFO
        log.log(
            level, "http %s: %s: %d %s: %s", self.peer, host or "-", page.status, page.code, reason
        )
        cc = self.cc
        if cc.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return False
        # Bounded here (this also runs after the watchdog has stopped), not by the watchdog.
        self._set_deadline(
            _Phase.CLOSING, trio.current_time() + self.limits.idle_timeout + CLOSE_TIMEOUT
        )
        headers, body = render(page, as_json=prefers_json(accept))
        if not keep:
            headers.append((b"Connection", b"close"))
        try:
            data = b"".join(
                (
                    cc.send(
                        h11.Response(status_code=page.status, headers=headers, reason=page.reason)
                    ),
                    cc.send(h11.Data(data=body)),
                    cc.send(h11.EndOfMessage()),
                )
            )
        except h11.LocalProtocolError as exc:
            log.debug("http %s: cannot send the %d page: %s", self.peer, page.status, exc)
            return False
        sent = False
        with trio.move_on_after(self.limits.idle_timeout):
            try:
                await self.client.send_all(data)
                sent = True
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                log.debug("http %s: the page did not reach the client: %s", self.peer, exc)
        if not sent:
            self.abort = True
            return False
        if not keep:
            await self._linger()
            return False
        return _both_done(cc)

    async def _switch(self, exchange: _Exchange) -> None:
        """After a relayed 101: hand over h11's leftovers, then copy raw bytes both ways."""
        upstream = exchange.upstream
        self._set_deadline(_Phase.UPGRADED, trio.current_time() + self.limits.idle_timeout)
        spliced = False
        try:
            from_client = self.cc.trailing_data[0]
            from_upstream = upstream.h11.trailing_data[0]
            if from_client:
                await upstream.stream.send_all(from_client)
            if from_upstream:
                await self.client.send_all(from_upstream)
            spliced = True
            await splice(_watch(self.client, self._touch), _watch(upstream.stream, self._touch))
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            log.debug("http %s: upgraded connection failed at once: %s", self.peer, exc)
            self.abort = True
        finally:
            if not spliced:
                await trio.aclose_forcefully(upstream.stream)

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

    async def _close_upstream(self, upstream: _Upstream, *, clean: bool) -> None:
        if not clean:
            await trio.aclose_forcefully(upstream.stream)
            return
        with trio.move_on_after(CLOSE_TIMEOUT):
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await upstream.stream.aclose()

    def _log_done(self, exchange: _Exchange) -> None:
        if not log.isEnabledFor(logging.DEBUG):
            return
        forward = exchange.forward
        log.debug(
            "http %s: %s %s %s %d %d %.1fms",
            self.peer,
            forward.request.method.decode("ascii", "replace"),
            forward.host,
            forward.request.target.decode("ascii", "replace"),
            exchange.status,
            exchange.body_bytes,
            (trio.current_time() - forward.started) * 1000,
        )


# ----------------------------------------------------------------------------- pure helpers


def _prepare(
    head: _Head, *, client_ip: bytes, scheme: bytes
) -> tuple[str, bytes | None, Headers, bytes | None]:
    """Route host, Accept, the headers to send upstream (without the upgrade pair) and the
    Upgrade value if this is an upgrade request. Raises _RefusedError for a request the
    edge will not forward."""
    request = head.request
    headers: Headers = []
    tokens: set[bytes] = set()
    host = accept = upgrade = forwarded_host = None
    forwarded_for: list[bytes] = []
    forwarded_proto: list[bytes] = []
    lengths = 0
    chunked = False
    tags = _REQUEST_TAGS
    for raw, value in request.headers.raw_items():
        tag = tags.get(raw.lower())
        if tag is None:
            headers.append((raw, value))
        elif tag == _HOP:
            pass
        elif tag == _CONNECTION:
            tokens.update(token.strip().lower() for token in value.split(b","))
        elif tag == _UPGRADE:
            upgrade = value
        elif tag == _XFF:
            forwarded_for.append(value)
        elif tag == _XFP:
            forwarded_proto.append(value)
        elif tag == _XFH:
            if forwarded_host is None:
                forwarded_host = value
        else:
            if tag == _HOST:
                host = value
            elif tag == _CL:
                lengths += 1
            elif tag == _TE:
                chunked = True
            elif tag == _ACCEPT:
                accept = value
            headers.append((raw, value))
    if request.method == b"CONNECT":
        raise _RefusedError(method_not_allowed("CONNECT"), "CONNECT request", accept)
    if lengths and chunked:
        raise _RefusedError(
            bad_request(400, "The request has both Content-Length and Transfer-Encoding."),
            "Content-Length with Transfer-Encoding",
            accept,
        )
    if lengths:
        # h11 folds repeated equal Content-Length lines into one; the raw head shows them.
        values = _CONTENT_LENGTH_LINE.findall(_raw_head(head.chunks).lower())
        if len(values) != 1 or b"," in values[0]:
            raise _RefusedError(
                bad_request(400, "The request has more than one Content-Length."),
                "repeated Content-Length",
                accept,
            )
    route = route_host(host) if host is not None else None
    if host is None or route is None:
        raise _RefusedError(
            bad_request(400, "The request needs a valid Host header."), "bad Host", accept
        )
    drop = tokens - _PROTECTED
    if drop:
        headers = [item for item in headers if item[0].lower() not in drop]
        if b"x-forwarded-for" in drop:
            forwarded_for = []
        if b"x-forwarded-proto" in drop:
            forwarded_proto = []
        if b"x-forwarded-host" in drop:
            forwarded_host = None
    forwarded_for.append(client_ip)
    forwarded_proto.append(scheme)
    headers.append((b"X-Forwarded-For", b", ".join(forwarded_for)))
    headers.append((b"X-Forwarded-Host", host if forwarded_host is None else forwarded_host))
    headers.append((b"X-Forwarded-Proto", b", ".join(forwarded_proto)))
    if b"upgrade" not in tokens:
        upgrade = None
    return route, accept, headers, upgrade


def _take_body(cc: h11.Connection) -> tuple[list[h11.Data], bool]:
    """The body events h11 can produce without more bytes, and whether the body ended."""
    datas: list[h11.Data] = []
    while True:
        event = cc.next_event()
        if event is h11.NEED_DATA:
            return datas, False
        if type(event) is h11.Data:
            datas.append(event)
            continue
        return datas, True  # EndOfMessage (its trailers, if any, are dropped)


def _both_done(conn: h11.Connection) -> bool:
    """Both directions of `conn` finished their message: it may start another cycle."""
    return conn.our_state is h11.DONE and conn.their_state is h11.DONE


def _passthrough(conn: h11.Connection, event: h11.Data) -> list[bytes]:
    """The bytes that frame `event` on `conn`, with the payload object itself among them."""
    parts = conn.send_with_data_passthrough(event)
    assert parts is not None  # None only for ConnectionClosed
    return parts


async def _send_parts(stream: trio.abc.SendStream, parts: list[bytes]) -> None:
    """One write for a list of byte strings (a lone payload goes out without a copy)."""
    if len(parts) == 1:
        await stream.send_all(parts[0])
    elif parts:
        # Chunk framing or a head with a first body piece: one copy beats several syscalls.
        await stream.send_all(b"".join(parts))


def _response_headers(headers: _RawHeaders, *, upgrade: bool) -> Headers:
    """A response's headers as the client gets them: hop-by-hop and edge-only ones removed;
    for a 101, `Connection: upgrade` and the upstream's `Upgrade` kept."""
    out: Headers = []
    tokens: set[bytes] = set()
    upgrade_value = None
    tags = _RESPONSE_TAGS
    for raw, value in headers.raw_items():
        tag = tags.get(raw.lower())
        if tag is None:
            out.append((raw, value))
        elif tag == _CONNECTION:
            tokens.update(token.strip().lower() for token in value.split(b","))
        elif tag == _UPGRADE:
            upgrade_value = value
    drop = tokens - _PROTECTED
    if drop:
        out = [item for item in out if item[0].lower() not in drop]
    if upgrade:
        out.append((b"Connection", b"upgrade"))
        if upgrade_value is not None:
            out.append((b"Upgrade", upgrade_value))
    return out


def _raw_head(chunks: list[bytes | bytearray]) -> bytes:
    """The bytes of a request head (through its empty line) from the chunks it arrived in."""
    joined = b"".join(chunks)
    match = _HEAD_END.search(joined)
    return joined if match is None else joined[: match.end()]


def _head_error_page(status: int, limits: HttpConfig) -> ErrorPage:
    if status == 431:
        return bad_request(431, f"The request head is larger than {limits.max_head_size} bytes.")
    if status == 501:
        return bad_request(501, "Only Transfer-Encoding: chunked is supported.")
    return bad_request(status if 400 <= status < 600 else 400, "The request is malformed.")


def _root(failure: BaseException) -> BaseException:
    """The exception a relay failure was raised from (a stream error carries the reset code)."""
    cause = failure.__cause__
    return cause if cause is not None else failure


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
