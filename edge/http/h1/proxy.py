"""The edge's HTTP/1.1 reverse proxy: one public client connection, relayed request by request
to agent endpoints chosen by Host.

Theory of operation
-------------------
The proxy is three modules, one concern each:

* this one owns the client connection: its request loop, its one deadline, the choice of an
  upstream stream (and whether to retry on another), and every ending: an error page, a
  lingering close, an abort;
* `edge/http/headers.py` decides what heads become on the way through (routing name, framing
  checks, hop-by-hop removal, `X-Forwarded-*`), with no I/O;
* `edge/http/h1/exchange.py` relays one request/response exchange between the client's h11
  SERVER machine (`cc`, which lives as long as the connection) and an upstream stream's h11
  CLIENT machine, and splices the two after a 101.

One request:

1. Read a request head from the client (`head_timeout`; after the first request the wait for
   the first byte is `idle_timeout`, then `head_timeout` for the rest). Refuse bad framing.
2. Take whatever body h11 already holds, route by Host, and get an upstream stream.
3. Relay the exchange (`Relay.run`): in one task if the whole request is here, else with a
   second task streaming the request body, so an upstream may answer early (a 413 while the
   upload is running); the client connection then closes.
4. A `101` answer to an upgrade request switches both sides to raw bytes (`Relay.splice`).

Upstream stream reuse: after an exchange in which both h11 machines finished cleanly (both
DONE, nothing left over), the stream is kept for the client's next request if that request
routes to the same endpoint (`HttpRoute.key`); otherwise it is closed and a new one opened. A
kept stream may have been closed by the upstream meanwhile (a keep-alive timeout there), so a
request without a body and with a replayable method that fails on a reused stream before any
response byte is retried once on a new stream (Go's http.Transport does the same).

Errors the edge answers itself (pages and codes: `edge/http/error_pages.py`):

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
from enum import Enum
from typing import Literal, Protocol, cast

import h11
import trio

from edge.config import HttpConfig
from edge.http.error_pages import (
    ErrorPage,
    agent_unreachable,
    bad_request,
    endpoint_offline,
    gateway_timeout,
    invalid_response,
    prefers_json,
    render,
    request_timeout,
    upstream_unreachable,
)
from edge.http.h1.exchange import (
    READ_SIZE,
    ClientBodyError,
    ClientGoneError,
    Exchange,
    Forward,
    Relay,
    RelayError,
    Upstream,
    UpstreamError,
    both_done,
    take_body,
)
from edge.http.headers import RefusedError, head_error_page, prepare_request, raw_head, route_host
from protocol.adapters.mux import reset_code
from protocol.formats.urls import format_host_port
from protocol.wire.errors import ErrorCode

__all__ = ["READ_SIZE", "HttpRoute", "HttpRouter", "route_host", "serve_http"]

log = logging.getLogger(__name__)

#: A graceful close (a TLS close_notify, a FIN) gets this long before it is abandoned.
CLOSE_TIMEOUT = 1.0
#: After answering a request whose body we did not read, keep reading (and discarding) for up
#: to this long before closing, so the kernel does not reset the connection under the client
#: before it has read the answer (nginx's lingering close; its lingering_timeout is 5 s).
LINGER_TIME = 2.0
#: Methods that may be sent twice (RFC 9110 §9.2.2, as Go's transport counts them); only these,
#: without a body, are retried on a fresh stream when a reused one turns out to be dead.
REPLAYABLE_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE"})


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


class _Head:
    """A request head as parsed, with the raw bytes it came in (to check framing h11 hides)."""

    __slots__ = ("chunks", "request")

    def __init__(self, request: h11.Request, chunks: list[bytes | bytearray]) -> None:
        self.request = request
        self.chunks = chunks


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
        self.relay = Relay(cc=self.cc, client=client, touch=self._touch, peer=self.peer)
        self.upstream: Upstream | None = None
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
        Raises RefusedError for a head that is malformed, too large or too slow."""
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
        # With nothing pipelined, read first rather than ask h11 for an event it cannot have.
        waiting = not leftover
        while True:
            if waiting:
                waiting = False
                event: object = h11.NEED_DATA
            else:
                try:
                    event = cc.next_event()
                except h11.RemoteProtocolError as exc:
                    if self.client_eof:
                        log.debug("http %s: the client left mid-head: %s", self.peer, exc)
                        return None  # nobody is left to read an answer
                    status = exc.error_status_hint
                    raise RefusedError(
                        head_error_page(status, limits.max_head_size), f"bad request head: {exc}"
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
                    size = len(raw_head(chunks))
                    if size > limits.max_head_size:
                        page = head_error_page(431, limits.max_head_size)
                        raise RefusedError(page, f"the request head has {size} bytes")
                return _Head(event, chunks)
            return None  # ConnectionClosed: the client closed between requests

    # ------------------------------------------------------------------------ one request

    async def _serve(self, head: _Head) -> bool:
        """Answer one request; True if the client connection may carry another."""
        started = trio.current_time()
        try:
            host, accept, headers, upgrade = prepare_request(
                head.request, head.chunks, client_ip=self.client_ip, scheme=self.scheme_bytes
            )
        except RefusedError as refusal:
            await self._refuse(refusal.page, refusal.reason, accept=refusal.accept, keep=False)
            return False
        head.chunks.clear()  # checked: do not hold a first body piece for the whole exchange
        try:
            datas, complete = take_body(self.cc)
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
        forward = Forward(
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
            exchange = self.exchange = Exchange(forward, upstream)
            self.phase = _Phase.EXCHANGE
            await self.relay.run(exchange)
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
                isinstance(failure, UpstreamError)
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

    async def _upstream_for(self, route: HttpRoute) -> Upstream | None:
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
        self.upstream = Upstream(route.key, stream, self.limits.max_head_size)
        return self.upstream

    # ------------------------------------------------------------------------ the endings

    async def _finish(self, exchange: Exchange) -> bool:
        """A response went out whole (or a 101): log it, keep or close the upstream."""
        upstream = exchange.upstream
        if exchange.switched:
            self.upstream = None
            self._set_deadline(_Phase.UPGRADED, trio.current_time() + self.limits.idle_timeout)
            if not await self.relay.splice(exchange):
                self.abort = True
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
        return both_done(self.cc)

    async def _failed(self, exchange: Exchange, failure: RelayError, forwards_to: str) -> bool:
        """The exchange ended without a whole response: answer with a page if none started."""
        forward = exchange.forward
        keep = exchange.request_done
        if isinstance(failure, ClientGoneError):
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
        if isinstance(failure, ClientBodyError):
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
        return both_done(cc)

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

    async def _close_upstream(self, upstream: Upstream, *, clean: bool) -> None:
        if not clean:
            await trio.aclose_forcefully(upstream.stream)
            return
        with trio.move_on_after(CLOSE_TIMEOUT):
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await upstream.stream.aclose()

    def _log_done(self, exchange: Exchange) -> None:
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


def _root(failure: BaseException) -> BaseException:
    """The exception a relay failure was raised from (a stream error carries the reset code)."""
    cause = failure.__cause__
    return cause if cause is not None else failure
