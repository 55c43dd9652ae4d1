"""One session to the edge, once the transport is dialed: its tasks, its state, and how it
ended.

Theory of operation
-------------------
`SessionTasks.run` starts a muxado session as the client over the transport and then, in one
nursery:

* an accept loop hands each edge-opened stream to its own task, which reads the 4-byte type:
  PROXY goes to `agent.forward`, HEARTBEAT is echoed, STOP, RESTART and UPDATE are answered
  as `agent.control` decides (Stop ends the agent, Restart reconnects at once as a new
  session, Update is refused), STOP_TUNNEL stops one endpoint;
* a heartbeat requester pings the edge every `heartbeat_interval` and ends the session when no
  echo comes within interval + tolerance;
* the session's own task sends Auth, then one Bind per endpoint, prints a `Forwarding` line
  for each, and waits.

It returns an `Outcome`: LOST when the transport or the mux breaks, a heartbeat is missed, or
an RPC fails; RESTARTED when the edge sends Restart; STOPPED when the edge sends Stop, `end`
is called with it, or a drain finishes. A refusal the user must act on (a bad authtoken, a URL
that is not ours on the first connect) raises `AgentError` instead. What to do next (back off,
reconnect, return) is `agent.session.Agent`'s decision; the state kept across sessions (resume,
routes, settings) is the agent's, which this module reads and updates.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import trio

from agent.config import EndpointSettings
from agent.control import COMMAND_REQUESTS, Next, decide
from agent.errors import AgentError
from agent.forward import Route, handle_proxy_stream
from agent.requests import build_auth, build_bind, upstream_display
from protocol.adapters import rpc
from protocol.adapters.heartbeat import HeartbeatTimeout, answer_heartbeats, send_heartbeats
from protocol.adapters.mux import MuxSession, MuxStream, open_mux_session, read_stream_type
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

if TYPE_CHECKING:
    from agent.session import Agent

__all__ = [
    "COMMAND_ACK_WAIT",
    "COMMAND_TIMEOUT",
    "STREAM_TYPE_TIMEOUT",
    "Ending",
    "Outcome",
    "SessionTasks",
]

# The name these tasks logged under before they left agent.session: log lines stay the same.
log = logging.getLogger("agent.session")

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


class Ending(enum.Enum):
    LOST = "lost"  # reconnect after a backoff delay
    STOPPED = "stopped"  # the edge sent Stop, or stop() was called: run() returns
    RESTARTED = "restarted"  # the edge sent Restart: reconnect at once, as a new session


@dataclass(frozen=True, slots=True)
class Outcome:
    ending: Ending
    reason: str
    established: bool
    #: Seconds the session lived after it bound every endpoint (0 if it never did).
    lived: float = 0.0


class SessionTasks:
    """One session's tasks and state; `run` returns how it ended or raises AgentError."""

    def __init__(
        self, agent: Agent, transport: trio.abc.Stream, on_established: Callable[[], None]
    ) -> None:
        self.agent = agent
        self.transport = transport
        self.on_established = on_established
        self.routes: dict[str, Route] = {}
        self.ending: tuple[Ending, str] | None = None
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
            self.end(Ending.STOPPED, "stopped")
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
        self.end(Ending.STOPPED, "stopped")

    def end(self, ending: Ending, reason: str) -> None:
        if self.ending is None:
            self.ending = (ending, reason)
        self._cancel.cancel()

    async def run(self) -> Outcome:
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
        ending, reason = self.ending or (Ending.LOST, "session ended")
        lived = trio.current_time() - self._established_at if self.established else 0.0
        return Outcome(ending, reason, self.established, lived)

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
            self.end(Ending.LOST, f"the edge did not answer within {timeout:g}s")
            return
        except (rpc.RpcError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.end(Ending.LOST, f"session failed during setup: {_describe_mux(mux, exc)}")
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
            self.end(Ending.LOST, f"the edge refused the session: {message} ({parsed.code})")
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
                self.end(Ending.LOST, f"{message} ({parsed.code})")
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
            self.end(Ending.LOST, f"the edge stopped answering heartbeats: {exc}")

    async def _accept_loop(self, mux: MuxSession, nursery: trio.Nursery) -> None:
        while True:
            try:
                stream = await mux.accept_stream()
            except trio.BrokenResourceError as exc:
                self.end(Ending.LOST, f"session lost: {_describe_mux(mux, exc)}")
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
            self.end(Ending.STOPPED, decision.notice)
        elif decision.next is Next.RECONNECT:
            self.end(Ending.RESTARTED, decision.notice)
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


def _describe_mux(mux: MuxSession, exc: BaseException) -> str:
    if mux.goaway is not None:
        debug = mux.goaway.debug.decode(errors="replace")
        return f"the edge closed the session ({debug or 'no reason given'})"
    if mux.error is not None:
        # e.g. "transport failed: " when the socket closed without a word: drop the empty tail.
        return str(mux.error).rstrip(": ") or "the connection to the edge was lost"
    return str(exc) or type(exc).__name__
