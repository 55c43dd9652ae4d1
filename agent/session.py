"""The agent's session lifecycle: dial, TLS, Auth, Bind, heartbeat, serve, reconnect.

Theory of operation
-------------------
`Agent.run` loops over sessions. Each attempt dials the edge's `connect_url` over TCP, wraps
it in TLS (SNI = the connect host, the edge's certificate verified), starts a muxado session
as the client, and then, in one nursery per session:

* an accept loop hands each edge-opened stream to its own task, which reads the 4-byte type:
  PROXY goes to `agent.forward`, HEARTBEAT is echoed, STOP, RESTART and UPDATE are answered
  as `agent.control` decides (Stop ends the agent, Restart reconnects at once as a new
  session, Update is refused), STOP_TUNNEL stops one endpoint;
* a heartbeat requester pings the edge every `heartbeat_interval` and ends the session when no
  echo comes within interval + tolerance;
* the session's own task sends Auth, then one Bind per endpoint, prints a `Forwarding` line
  for each, and waits.

A session ends when the transport or the mux breaks, a heartbeat is missed, or an RPC fails
(all "lost": reconnect after a backoff delay), when the edge sends Restart ("restarted":
reconnect at once), or when the edge sends Stop ("stopped": `run` returns). A refusal the
user must act on (a bad authtoken, a URL that is not ours on the first connect) raises
`AgentError` out of `run`; there is no point retrying it.

Resume: AuthResp's ClientId and Cookie and each BindResp's Id and Token are kept in
`ResumeState` and sent again on the next session, so the edge can hand this agent its own
endpoints back (same URLs) instead of refusing them while the dead session times out. If the
edge still refuses with ERR_NGROK_334 on a reconnect, the attempt counts as failed and backs
off, as ngrok-go does.

Backoff (`agent.backoff`): exponential with full jitter, each wait drawn from [0, ceiling)
where the ceiling starts at 0.5 s and doubles up to 30 s (ngrok-go's schedule), so a fleet of
agents that lost the same edge spreads its reconnects over the window instead of coming back
in lockstep. It resets after a session that stayed up: one that authenticated, bound all its
endpoints and then lived `BACKOFF_RESET_AFTER` seconds; a session that fails its rebind, or
is dropped at once, keeps backing off.

Trust: `connect_cas` is a PEM path (the edge's CA, e.g. the development edge's `ca.pem`), or
`host` / `trusted`, which both mean the operating system's store. Burrow bundles no root of its
own: unlike ngrok, there is no single vendor edge to pin.
"""

from __future__ import annotations

import enum
import json
import logging
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from random import Random
from typing import TextIO

import trio

from agent.backoff import backoff_delays, stayed_up
from agent.config import AgentSettings, EndpointSettings
from agent.control import COMMAND_REQUESTS, Next, decide
from agent.errors import AgentError
from agent.forward import Route, handle_proxy_stream, route_for
from agent.inspector.capture import CaptureStore
from agent.metrics import AgentMetrics
from agent.proxy_dial import dial_edge_transport
from agent.requests import (
    HostInfo,
    ResumeState,
    build_auth,
    build_bind,
    check_supported,
    upstream_display,
)
from agent.tls_contexts import TLSMaterialError
from protocol.adapters import rpc
from protocol.adapters.heartbeat import HeartbeatTimeout, answer_heartbeats, send_heartbeats
from protocol.adapters.mux import (
    MuxConfig,
    MuxSession,
    MuxStream,
    open_mux_session,
    read_stream_type,
)
from protocol.adapters.tls import TLSStream
from protocol.rpc.codec import Codec
from protocol.rpc.errcodes import ERR_NGROK_108, ERR_NGROK_334, ERR_NGROK_10000, parse_wire_error
from protocol.rpc.messages import (
    AuthResp,
    BindResp,
    StopTunnel,
    StreamType,
    edge_keeps_large_windows,
)
from protocol.wire.errors import ErrorCode
from protocol.wire.session import Role

__all__ = ["Agent", "AgentError", "Reporter", "edge_tls_context", "wrap_edge_tls"]

log = logging.getLogger(__name__)

#: The first bytes of an edge-opened stream (its type) arrive with its SYN; one that sends
#: nothing for this long is closed.
STREAM_TYPE_TIMEOUT = 10.0
#: A Stop/Restart/Update/StopTunnel request body is tiny and sent at once.
COMMAND_TIMEOUT = 10.0

#: After answering Stop or Restart, how long the agent waits for the edge to close the command
#: stream (it has read the answer) before ending the session: ending it at once could cut the
#: answer off. The edge closes as soon as it has read it; a second is ample on any link.
COMMAND_ACK_WAIT = 1.0

# How reading or answering one edge command can fail; each just drops that command.
_COMMAND_ERRORS = (
    rpc.RpcError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    trio.TooSlowError,
)
_DialFn = Callable[[], Awaitable[trio.abc.Stream]]


def edge_tls_context(connect_cas: str) -> ssl.SSLContext:
    """The client context that verifies the edge: a PEM file path, or the OS store for `host`
    and `trusted` (Burrow bundles no roots). Raises AgentError if the file is unusable."""
    try:
        if connect_cas in ("host", "trusted"):
            context = ssl.create_default_context()
        else:
            context = ssl.create_default_context(cafile=connect_cas)
    except (OSError, ssl.SSLError) as exc:
        raise AgentError(
            f"connect_cas {connect_cas!r}: cannot load CA certificates ({exc}); "
            "give a PEM file such as the edge's ca.pem"
        ) from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # ngrok's agents require TLS 1.2 or later
    return context


async def wrap_edge_tls(
    transport: trio.abc.Stream, context: ssl.SSLContext, server_hostname: str
) -> trio.abc.Stream:
    """The one place the edge connection gets its TLS layer: wrap `transport` in
    `protocol.adapters.tls.TLSStream` (which drains every ready TLS record per read) and complete
    the handshake. On failure (BrokenResourceError whose cause is the ssl error, or cancellation)
    the transport is closed."""
    tls = TLSStream(transport, context, server_hostname=server_hostname)
    try:
        await tls.do_handshake()
    except BaseException:
        await trio.aclose_forcefully(tls)
        raise
    return tls


class Reporter:
    """What a person at the terminal sees: `Forwarding` lines on `out` (tests and benchmarks
    parse them), session news on `err`. Diagnostics go to logging instead."""

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self._out = out
        self._err = err

    def forwarding(self, url: str, upstream: str) -> None:
        print(f"Forwarding {url} -> {upstream}", file=self._out, flush=True)

    def notice(self, text: str) -> None:
        print(f"burrow: {text}", file=self._err, flush=True)


# --- the I/O shell ---------------------------------------------------------------------------


class _Ending(enum.Enum):
    LOST = "lost"  # reconnect after a backoff delay
    STOPPED = "stopped"  # the edge sent Stop, or stop() was called: run() returns
    RESTARTED = "restarted"  # the edge sent Restart: reconnect at once, as a new session


@dataclass(frozen=True, slots=True)
class _Outcome:
    ending: _Ending
    reason: str
    established: bool
    #: Seconds the session lived after it bound every endpoint (0 if it never did).
    lived: float = 0.0


class Agent:
    """One agent: a session to the edge, re-established forever, serving `endpoints`.

    `dial` opens the transport to the edge (default: TCP + TLS to `settings.connect_url`);
    `random` drives the backoff jitter; `host` is what Auth says about this machine.
    `captures` receives inspected endpoints' requests (None: nothing is captured); `metrics`
    counts the session's life and its streams (None: nothing is counted).
    Raises AgentError at construction for endpoint settings it cannot serve, and builds each
    endpoint's TLS contexts there too (once: not per session, not per connection).
    """

    def __init__(
        self,
        settings: AgentSettings,
        endpoints: Sequence[EndpointSettings],
        *,
        reporter: Reporter,
        random: Random | None = None,
        host: HostInfo | None = None,
        dial: _DialFn | None = None,
        mux_config: MuxConfig | None = None,
        captures: CaptureStore | None = None,
        metrics: AgentMetrics | None = None,
    ) -> None:
        check_supported(endpoints)
        # url is filled in from each BindResp; everything else about a route is fixed here.
        self._routes = {endpoint.name: _route(endpoint) for endpoint in endpoints}
        self.settings = settings
        self.resume = ResumeState()
        self._endpoints = {endpoint.name: endpoint for endpoint in endpoints}
        self._policies = {e.name: _policy_text(e) for e in endpoints}
        self._reporter = reporter
        self._random = random or Random()
        self._host = host or HostInfo.current()
        self._dial = dial or self._dial_edge
        self._dials_edge = dial is None
        self._mux_config = mux_config or MuxConfig()
        self._tls_context: ssl.SSLContext | None = None
        #: True once a session has authenticated and bound every endpoint.
        self.established_once = False
        #: The last heartbeat round trip, in seconds (None before the first).
        self.last_rtt: float | None = None
        self._stopping = False
        self.captures = captures
        self.metrics = metrics
        self._stop_requested = trio.Event()
        self._session: _Session | None = None
        self._dial_scope: trio.CancelScope | None = None

    @property
    def endpoints(self) -> tuple[EndpointSettings, ...]:
        """The endpoints still served (the edge may stop some with StopTunnel)."""
        return tuple(self._endpoints.values())

    @property
    def established(self) -> bool:
        """True while a session is up with every endpoint bound."""
        return self._session is not None and self._session.established

    def traffic_policy(self, name: str) -> str | None:
        """The policy text endpoint `name` binds with, if it has one."""
        return self._policies.get(name)

    def bound_routes(self) -> tuple[Route, ...]:
        """The current session's endpoints, each with the URL the edge gave it (none between
        sessions)."""
        return tuple(self._session.routes.values()) if self._session is not None else ()

    @property
    def stopping(self) -> bool:
        """True once `stop()` was called."""
        return self._stopping

    def drain(self) -> None:
        """Stop gracefully (SIGTERM): the open session sends GOAWAY at once (the edge moves new
        traffic to the endpoints' other pool members) and refuses new streams, the streams it
        serves get `settings.drain_timeout` to finish, then it closes and `run` returns. A dial
        or a backoff wait in progress is abandoned. Safe to call at any time; `stop()` after
        it ends the session at once."""
        session = self._session
        if session is None or not session.established:
            self.stop()
            return
        self._stopping = True
        self._stop_requested.set()
        session.drain(self.settings.drain_timeout)

    def stop(self) -> None:
        """Ask `run` to end cleanly: the open session sends GOAWAY and closes, a dial or a
        backoff wait in progress is abandoned, and `run` returns. Safe to call at any time."""
        self._stopping = True
        self._stop_requested.set()
        if self._dial_scope is not None:
            self._dial_scope.cancel()
        if self._session is not None:
            self._session._end(_Ending.STOPPED, "stopped")

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until the edge sends Stop or `stop()` is called (returns), or the edge refuses
        us for good (raises AgentError).

        `task_status.started()` is called once the first session has bound every endpoint.
        Prefer `stop()` to cancelling: a cancelled session cannot flush its GOAWAY.
        """
        if self._dials_edge:
            self._tls_context = edge_tls_context(self.settings.connect_cas)
        started = False

        def on_established() -> None:
            nonlocal started
            if not started:
                started = True
                task_status.started()

        delays = backoff_delays(self._random.random)
        while True:
            outcome = await self._attempt(on_established)
            if self._stopping or outcome.ending is _Ending.STOPPED:
                self._reporter.notice(outcome.reason if not self._stopping else "stopped")
                if self.metrics is not None:
                    self.metrics.session_state("stopped")
                return
            if outcome.ending is _Ending.RESTARTED:
                self._reporter.notice(outcome.reason)
                delays = backoff_delays(self._random.random)
                continue
            if stayed_up(outcome.established, outcome.lived):
                delays = backoff_delays(self._random.random)
            delay = next(delays)
            if self.metrics is not None:
                self.metrics.reconnecting()
            self._reporter.notice(f"{outcome.reason}; reconnecting in {delay:.1f}s")
            with trio.move_on_after(delay):
                await self._stop_requested.wait()

    async def _attempt(self, on_established: Callable[[], None]) -> _Outcome:
        host, port = self.settings.connect_address
        with trio.CancelScope() as dialing:
            self._dial_scope = dialing
            if self._stopping:
                dialing.cancel()
            try:
                transport = await self._dial()
            except (OSError, trio.TooSlowError, trio.BrokenResourceError, ssl.SSLError) as exc:
                return _Outcome(
                    _Ending.LOST,
                    f"cannot connect to the edge at {host}:{port}: {_why(exc)}",
                    False,
                )
        self._dial_scope = None
        if dialing.cancelled_caught:
            return _Outcome(_Ending.STOPPED, "stopped", False)
        if self._stopping:  # stop() came just as the dial finished
            await trio.aclose_forcefully(transport)
            return _Outcome(_Ending.STOPPED, "stopped", False)
        session = _Session(self, transport, on_established)
        self._session = session
        try:
            return await session.run()
        finally:
            self._session = None

    async def _dial_edge(self) -> trio.abc.Stream:
        """TCP (through `proxy_url` or the environment's proxy, if any: agent.proxy_dial) +
        TLS to `connect_url`, all within `connect_timeout`."""
        host, port = self.settings.connect_address
        assert self._tls_context is not None
        timeout = self.settings.connect_timeout
        with trio.fail_after(timeout):
            tcp = await dial_edge_transport(
                host, port, proxy=self.settings.proxy, connect_timeout=timeout
            )
            return await wrap_edge_tls(tcp, self._tls_context, host)

    # --- called by sessions ---------------------------------------------------------------

    def _stop_endpoint(self, name: str) -> None:
        self._endpoints.pop(name, None)
        self.resume.binds.pop(name, None)


class _Session:
    """One session's tasks and state; `run` returns how it ended or raises AgentError."""

    def __init__(
        self, agent: Agent, transport: trio.abc.Stream, on_established: Callable[[], None]
    ) -> None:
        self.agent = agent
        self.transport = transport
        self.on_established = on_established
        self.routes: dict[str, Route] = {}
        self.ending: tuple[_Ending, str] | None = None
        self.fatal: AgentError | None = None
        self.established = False
        self._established_at = 0.0
        self._cancel = trio.CancelScope()
        # Draining (`drain`): proxy streams still being served, and who waits for none.
        self._serving = 0
        self._idle = trio.Event()
        self._draining = False
        self._mux: MuxSession | None = None
        self._nursery: trio.Nursery | None = None

    def drain(self, grace: float) -> None:
        """GOAWAY now (no new streams either way; the ones open carry on), then end the session
        once no proxy stream is being served, or after `grace` seconds."""
        if self._draining or self._mux is None or self._nursery is None:
            self._end(_Ending.STOPPED, "stopped")
            return
        self._draining = True
        self._mux.go_away(ErrorCode.NO_ERROR, "agent draining: reconnect to another member")
        log.info("draining: GOAWAY sent; %d streams in flight", self._serving)
        self._nursery.start_soon(self._finish_drain, grace)

    async def _finish_drain(self, grace: float) -> None:
        with trio.move_on_after(grace) as waited:
            while self._serving:
                self._idle = trio.Event()
                await self._idle.wait()
        if waited.cancelled_caught:
            log.warning("drain: %d streams still open after %gs; closing", self._serving, grace)
        self._end(_Ending.STOPPED, "stopped")

    def _end(self, ending: _Ending, reason: str) -> None:
        if self.ending is None:
            self.ending = (ending, reason)
        self._cancel.cancel()

    async def run(self) -> _Outcome:
        agent = self.agent
        async with open_mux_session(self.transport, Role.CLIENT, agent._mux_config) as mux:
            with self._cancel:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._accept_loop, mux, nursery)
                    nursery.start_soon(self._heartbeat, mux)
                    self._mux, self._nursery = mux, nursery
                    await self._establish(mux)
                    await trio.sleep_forever()
        if self.fatal is not None:
            raise self.fatal
        ending, reason = self.ending or (_Ending.LOST, "session ended")
        lived = trio.current_time() - self._established_at if self.established else 0.0
        return _Outcome(ending, reason, self.established, lived)

    # --- auth and binds --------------------------------------------------------------------

    async def _establish(self, mux: MuxSession) -> None:
        agent = self.agent
        timeout = agent.settings.connect_timeout
        try:
            with trio.fail_after(timeout):
                auth = build_auth(agent.settings, agent.resume, agent._host)
                response = await rpc.call(mux, StreamType.AUTH, auth, AuthResp, Codec.MSGPACK)
            if response.error:
                self._refused_auth(response.error)
                return
            agent.resume.authenticated(response)
            if edge_keeps_large_windows(response):
                mux.allow_window_growth()
            log.info("authenticated as client %s", response.client_id)
            if response.extra.banner:
                agent._reporter.notice(response.extra.banner)
            for endpoint in list(agent.endpoints):
                with trio.fail_after(timeout):
                    ok = await self._bind(mux, endpoint)
                if not ok:
                    return
        except trio.TooSlowError:
            self._end(_Ending.LOST, f"the edge did not answer within {timeout:g}s")
            return
        except (rpc.RpcError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._end(_Ending.LOST, f"session failed during setup: {_describe_mux(mux, exc)}")
            return
        self.established = True
        self._established_at = trio.current_time()
        agent.established_once = True
        if agent.metrics is not None:
            agent.metrics.session_state("established")
        self.on_established()

    def _refused_auth(self, error: str) -> None:
        parsed = parse_wire_error(error)
        message = parsed.message or "authentication failed"
        if (self.agent.established_once and parsed.code == ERR_NGROK_108) or (
            parsed.code == ERR_NGROK_10000
        ):
            # 108: our previous session may still be counted against the limit until it
            # expires. 10000: the edge failed on its side (its store, say), not our token:
            # back off and try again rather than stop a service that will work once it heals.
            self._end(_Ending.LOST, f"the edge refused the session: {message} ({parsed.code})")
            return
        self.fatal = AgentError(f"the edge refused the session: {message}", parsed.code)
        self._cancel.cancel()

    async def _bind(self, mux: MuxSession, endpoint: EndpointSettings) -> bool:
        agent = self.agent
        previous = agent.resume.binds.get(endpoint.name)
        request = build_bind(endpoint, previous, traffic_policy=agent._policies.get(endpoint.name))
        response = await rpc.call(mux, StreamType.BIND, request, BindResp, Codec.MSGPACK)
        if response.error:
            parsed = parse_wire_error(response.error)
            message = f"endpoint {endpoint.name!r} ({endpoint.url}): {parsed.message}"
            if agent.established_once and parsed.code == ERR_NGROK_334:
                self._end(_Ending.LOST, f"{message} ({parsed.code})")
            else:
                self.fatal = AgentError(message, parsed.code)
                self._cancel.cancel()
            return False
        bound = agent.resume.bound(endpoint.name, response)
        self.routes[bound.bind_id] = replace(agent._routes[endpoint.name], url=bound.url)
        agent._reporter.forwarding(bound.url, upstream_display(endpoint))
        return True

    # --- background tasks --------------------------------------------------------------------

    async def _heartbeat(self, mux: MuxSession) -> None:
        settings = self.agent.settings

        def on_rtt(rtt: float) -> None:
            self.agent.last_rtt = rtt

        try:
            await send_heartbeats(
                mux,
                interval=settings.heartbeat_interval,
                tolerance=settings.heartbeat_tolerance,
                on_rtt=on_rtt,
            )
        except HeartbeatTimeout as exc:
            self._end(_Ending.LOST, f"the edge stopped answering heartbeats: {exc}")

    async def _accept_loop(self, mux: MuxSession, nursery: trio.Nursery) -> None:
        while True:
            try:
                stream = await mux.accept_stream()
            except trio.BrokenResourceError as exc:
                self._end(_Ending.LOST, f"session lost: {_describe_mux(mux, exc)}")
                return
            nursery.start_soon(self._handle_stream, stream)

    async def _handle_stream(self, stream: MuxStream) -> None:
        try:
            with trio.fail_after(STREAM_TYPE_TIMEOUT):
                kind = await read_stream_type(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
            stream.close_now()
            return
        if kind == StreamType.PROXY:
            agent = self.agent
            self._serving += 1
            try:
                await handle_proxy_stream(
                    stream,
                    self.routes,
                    Codec.MSGPACK,
                    captures=agent.captures,
                    metrics=agent.metrics,
                )
            finally:
                self._serving -= 1
                if not self._serving:
                    self._idle.set()
        elif kind == StreamType.HEARTBEAT:
            try:
                await answer_heartbeats(stream)
            finally:
                stream.close_now()
        elif kind in (StreamType.STOP, StreamType.RESTART, StreamType.UPDATE):
            await self._command(stream, StreamType(kind))
        elif kind == StreamType.STOP_TUNNEL:
            await self._stop_tunnel(stream)
        else:
            log.debug("closing edge stream %d of unknown type %d", stream.stream_id, kind)
            stream.close_now()

    async def _command(self, stream: MuxStream, kind: StreamType) -> None:
        """Answer Stop, Restart or Update as `agent.control` decides, then act on it. A request
        that cannot be read or answered within COMMAND_TIMEOUT is dropped (logged)."""
        try:
            with trio.fail_after(COMMAND_TIMEOUT):
                request, codec = await rpc.read_message(stream, COMMAND_REQUESTS[kind], None)
                decision = decide(request)
                await rpc.respond(stream, decision.response, codec)
            if decision.next is not Next.CARRY_ON:
                await _until_closed(stream, COMMAND_ACK_WAIT)  # the answer is out, then end
        except _COMMAND_ERRORS:
            log.warning("edge %s request could not be read or answered; ignored", kind.name)
            return
        finally:
            stream.close_now()
        if decision.next is Next.EXIT:
            self._end(_Ending.STOPPED, decision.notice)
        elif decision.next is Next.RECONNECT:
            self._end(_Ending.RESTARTED, decision.notice)
        else:
            log.warning("%s", decision.notice)

    async def _stop_tunnel(self, stream: MuxStream) -> None:
        try:
            with trio.fail_after(COMMAND_TIMEOUT):
                request, _ = await rpc.read_message(stream, StopTunnel, None)
        except _COMMAND_ERRORS:
            log.warning("edge StopTunnel request could not be read; ignored")
            return
        finally:
            stream.close_now()
        route = self.routes.pop(request.id, None)
        if route is None:
            log.warning("the edge stopped endpoint id %r, which is not ours", request.id)
            return
        self.agent._stop_endpoint(route.name)
        code = f" ({request.error_code})" if request.error_code else ""
        message = request.message or "no reason given"
        self.agent._reporter.notice(
            f"the edge stopped endpoint {route.name!r} ({route.url}): {message}{code}"
        )


async def _until_closed(stream: MuxStream, wait: float) -> None:
    """Read and drop whatever arrives until the peer closes `stream` (EOF or reset), for at most
    `wait` seconds."""
    with trio.move_on_after(wait):
        try:
            while await stream.receive_some():
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


def _route(endpoint: EndpointSettings) -> Route:
    """`route_for`, with the endpoint named in the error if its TLS material cannot be loaded
    (the config check passed, so a file must have changed since)."""
    try:
        return route_for(endpoint)
    except TLSMaterialError as exc:
        where = exc.field if exc.index is None else f"{exc.field}[{exc.index}]"
        raise AgentError(f"endpoint {endpoint.name!r}: {where}: {exc}") from None


def _policy_text(endpoint: EndpointSettings) -> str | None:
    """The endpoint's traffic policy as text for Bind's TrafficPolicy option, if it has one:
    an inline string as written, an inline mapping as JSON (a YAML date becomes its text), a
    file's text as read now. Raises AgentError if the file cannot be read."""
    if isinstance(endpoint.traffic_policy, str):
        return endpoint.traffic_policy
    if endpoint.traffic_policy is not None:
        return json.dumps(endpoint.traffic_policy, default=str)
    if endpoint.traffic_policy_file is not None:
        try:
            return Path(endpoint.traffic_policy_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise AgentError(
                f"endpoint {endpoint.name!r}: cannot read traffic_policy_file "
                f"{endpoint.traffic_policy_file}: {exc}"
            ) from None
    return None


def _why(exc: BaseException) -> str:
    """A one-line reason for a dial failure, with a hint for the common TLS trust problem."""
    if isinstance(exc, trio.TooSlowError):
        return "timed out"
    cause = exc.__cause__ if isinstance(exc, trio.BrokenResourceError) and exc.__cause__ else exc
    if isinstance(cause.__cause__, BaseExceptionGroup):
        # trio.open_tcp_stream: "all attempts to connect to H:P failed" from one error per
        # address tried; the addresses' own reasons are what a person needs.
        reasons = [
            error.strerror or str(error)
            for error in cause.__cause__.exceptions
            if isinstance(error, OSError)
        ]
        return "; ".join(dict.fromkeys(reasons)) or str(cause)
    text = str(cause) or type(cause).__name__
    if isinstance(cause, ssl.SSLCertVerificationError):
        text += (
            "; if the edge uses its own CA, set connect_cas (or BURROW_CONNECT_CAS) to its "
            "CA certificate, e.g. the edge's ca.pem"
        )
    return text


def _describe_mux(mux: MuxSession, exc: BaseException) -> str:
    if mux.goaway is not None:
        debug = mux.goaway.debug.decode(errors="replace")
        return f"the edge closed the session ({debug or 'no reason given'})"
    if mux.error is not None:
        # e.g. "transport failed: " when the socket closed without a word: drop the empty tail.
        return str(mux.error).rstrip(": ") or "the connection to the edge was lost"
    return str(exc) or type(exc).__name__
