"""The agent's session lifecycle: dial, TLS, Auth, Bind, heartbeat, serve, reconnect.

Theory of operation
-------------------
`Agent.run` loops over sessions. Each attempt dials the edge's `connect_url` over TCP, wraps
it in TLS (SNI = the connect host, the edge's certificate verified; `agent.edge_dial`), and
runs one session over it (`agent.session_tasks`: Auth, Binds, heartbeats, the edge's streams
and commands) until it ends.

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

Trust: `connect_cas` names the CA that verifies the edge (`agent.edge_dial`).
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from random import Random
from typing import TextIO

import trio

from agent.backoff import backoff_delays, stayed_up
from agent.config import AgentSettings, EndpointSettings
from agent.edge_dial import edge_tls_context, why_dial_failed, wrap_edge_tls
from agent.errors import AgentError
from agent.forward import Route, route_for
from agent.inspector.capture import CaptureStore
from agent.metrics import AgentMetrics
from agent.proxy_dial import dial_edge_transport
from agent.requests import HostInfo, ResumeState, check_supported
from agent.session_tasks import Ending, Outcome, SessionTasks
from agent.tls_contexts import TLSMaterialError
from protocol.adapters.mux import MuxConfig

__all__ = ["Agent", "AgentError", "Reporter"]

_DialFn = Callable[[], Awaitable[trio.abc.Stream]]


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
        self._session: SessionTasks | None = None
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
            self._session.end(Ending.STOPPED, "stopped")

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
            if self._stopping or outcome.ending is Ending.STOPPED:
                self._reporter.notice(outcome.reason if not self._stopping else "stopped")
                if self.metrics is not None:
                    self.metrics.session_state("stopped")
                return
            if outcome.ending is Ending.RESTARTED:
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

    async def _attempt(self, on_established: Callable[[], None]) -> Outcome:
        host, port = self.settings.connect_address
        with trio.CancelScope() as dialing:
            self._dial_scope = dialing
            if self._stopping:
                dialing.cancel()
            try:
                transport = await self._dial()
            except (OSError, trio.TooSlowError, trio.BrokenResourceError, ssl.SSLError) as exc:
                return Outcome(
                    Ending.LOST,
                    f"cannot connect to the edge at {host}:{port}: {why_dial_failed(exc)}",
                    False,
                )
        self._dial_scope = None
        if dialing.cancelled_caught:
            return Outcome(Ending.STOPPED, "stopped", False)
        if self._stopping:  # stop() came just as the dial finished
            await trio.aclose_forcefully(transport)
            return Outcome(Ending.STOPPED, "stopped", False)
        session = SessionTasks(self, transport, on_established)
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
