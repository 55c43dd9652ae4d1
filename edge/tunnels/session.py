"""One agent session at the edge: Auth, Bind/Unbind, heartbeats, and proxy streams.

Theory of operation: the session accepts the agent's typed streams and handles each in its own
task. Until Auth succeeds only heartbeats and Auth are served, and Auth must succeed within
`limits.auth_timeout` of the TCP accept (the TLS handshake counts). Auth fixes the session's
codec (JSON for ngrok's SDKs, msgpack for Burrow's agent) from the first byte of its body.
Binds, Unbinds and the bound endpoints are `self.endpoints`
(`edge/tunnels/session_endpoints.py`); each endpoint runs in its own cancel scope inside the
session's nursery, so the session ending (transport loss, missed heartbeats, a resuming agent
taking over, the edge shutting down) releases every endpoint at once: the registry forgets them
in the same step in which their listeners are cancelled. An agent's GOAWAY (a drain) releases
them too, at once, while its open streams carry on until it closes the session.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import trio

from edge.store import Credential, StoreError
from edge.tunnels import audit, decisions
from edge.tunnels.decisions import AuthAccepted, Refused
from edge.tunnels.hub import EdgeHub
from edge.tunnels.remote_ops import OpAnswer, RemoteOp, op_request
from edge.tunnels.session_endpoints import RPC_TIMEOUT, SessionEndpoints
from protocol.adapters.heartbeat import HeartbeatTimeout, answer_heartbeats, send_heartbeats
from protocol.adapters.mux import MuxSession, MuxStream, read_stream_type
from protocol.adapters.rpc import RpcError, call, read_message, read_value, respond
from protocol.rpc.codec import Codec
from protocol.rpc.messages import (
    BURROW_EDGE_VERSION_PREFIX,
    Auth,
    AuthResp,
    AuthRespExtra,
    PatchTunnelStateResp,
    SrvInfo,
    SrvInfoResp,
    StartTunnelWithLabelResp,
    StreamType,
    agent_keeps_large_windows,
)
from protocol.wire.errors import ErrorCode, describe

log = logging.getLogger(__name__)

EDGE_VERSION = "0.1.0"
#: AuthResp.Extra.Version: Burrow's agent reads the "burrow-edge/" prefix as "this edge's
#: sender keeps credit past 256 KiB", and only then lets its receive windows grow.
EDGE_VERSION_STRING = f"{BURROW_EDGE_VERSION_PREFIX}{EDGE_VERSION}"
#: A stream's 4-byte type must arrive this quickly once the stream is open.
STREAM_TYPE_TIMEOUT = 10.0
#: Streams an unauthenticated peer may hold open (Auth, heartbeat, and a little slack).
PREAUTH_MAX_STREAMS = 4
#: An Auth body is about 1 KiB; more than this before authentication is not an Auth.
MAX_AUTH_SIZE = 64 * 1024
#: Requests ngrok's agents may send that this edge answers with an error.
UNSUPPORTED_REQUESTS: dict[
    int, tuple[str, type[StartTunnelWithLabelResp | PatchTunnelStateResp]]
] = {
    StreamType.START_TUNNEL_WITH_LABEL: (
        "labeled tunnels (ngrok Edges); bind an endpoint URL instead",
        StartTunnelWithLabelResp,
    ),
    StreamType.PATCH_TUNNEL_STATE: (
        "changing a live endpoint; restart it instead",
        PatchTunnelStateResp,
    ),
}


#: How a remote-management request can fail to get an answer (`AgentSession.remote_op`).
_OP_ERRORS = (RpcError, trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError)



class AgentSession:
    def __init__(
        self,
        hub: EdgeHub,
        mux: MuxSession,
        remote: tuple[str, int],
        *,
        auth_deadline: float | None = None,
    ) -> None:
        self.hub = hub
        #: trio time by which Auth must have succeeded (counted from the TCP accept).
        self.auth_deadline = auth_deadline
        self.mux = mux
        self.remote = remote
        self.id = hub.new_id("ts")
        self.client_id = ""
        self.codec: Codec | None = None
        self.credential: Credential | None = None
        self.auth: Auth | None = None
        self.stop_reason = ""
        self.started_at: datetime | None = None
        self._authenticated = trio.Event()
        self._auth_started = False
        self._peer_heartbeat = False
        # Until Auth succeeds a connection may hold only a few streams (Auth, a heartbeat and
        # little else), so an unauthenticated peer cannot make the edge buffer much.
        mux.limit_streams(PREAUTH_MAX_STREAMS)
        #: Its Binds, Unbinds and bound endpoints (`edge.tunnels.session_endpoints`).
        self.endpoints = SessionEndpoints(self)
        self._scope = trio.CancelScope()
        self._nursery: trio.Nursery | None = None

    # ------------------------------------------------------------------------------- running

    async def run(self) -> None:
        """Serve the session until it ends; every endpoint is released before this returns."""
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    self._nursery = self.endpoints.nursery = nursery
                    nursery.start_soon(self._enforce_auth_deadline)
                    nursery.start_soon(self._watch_goaway)
                    while True:
                        try:
                            stream = await self.mux.accept_stream()
                        except trio.BrokenResourceError:
                            self.stop_reason = self.stop_reason or self._ended_by_peer()
                            break
                        nursery.start_soon(self._handle_stream, stream)
                    nursery.cancel_scope.cancel()
        finally:
            self.endpoints.release_all()
            if self.credential is not None:
                self.hub.unregister(self)
                self._record_session(stopped=True)
            log.info(
                "session %s ended (%s): %d endpoints released",
                self.id,
                self.stop_reason or "closed",
                len(self.endpoints),
                extra={"session": self.id},
            )

    @property
    def credential_id(self) -> str | None:
        return self.credential.id if self.credential is not None else None

    def go_away(self, reason: str) -> None:
        """Tell the agent (GOAWAY) that this edge opens no new streams and it should
        reconnect; the streams open now carry on until the session is stopped (a drain)."""
        self.mux.go_away(ErrorCode.NO_ERROR, reason)

    @property
    def proxy_streams(self) -> int:
        """Proxy streams open now (public connections and HTTP exchanges in flight)."""
        return self.endpoints.shares.total

    def stop(self, reason: str) -> None:
        """End the session now (endpoints are released at once; GOAWAY follows)."""
        self.stop_reason = reason
        self.endpoints.release_all()
        self._scope.cancel()

    async def _watch_goaway(self) -> None:
        """The agent said GOAWAY (it is draining: `burrow` on SIGTERM): its endpoints leave
        their pools now, so new connections go to the other members at once, while the streams
        it still serves carry on until it closes the session."""
        await self.mux.goaway_received.wait()
        if not self.endpoints:
            return
        self.stop_reason = self.stop_reason or self._ended_by_peer()
        log.info(
            "session %s: the agent is draining (GOAWAY); %d endpoints leave their pools",
            self.id,
            len(self.endpoints),
        )
        self.endpoints.release_all()

    async def _enforce_auth_deadline(self) -> None:
        deadline = self.auth_deadline
        if deadline is None:
            deadline = trio.current_time() + self.hub.config.limits.auth_timeout
        with trio.move_on_at(deadline):
            await self._authenticated.wait()
            return
        log.warning("session %s from %s: no Auth in time; closing", self.id, self.peer)
        self.stop("no Auth before the deadline")

    async def _handle_stream(self, stream: MuxStream) -> None:
        try:
            with trio.fail_after(STREAM_TYPE_TIMEOUT):
                stream_type = await read_stream_type(stream)
            if stream_type == StreamType.HEARTBEAT:
                if self._peer_heartbeat:
                    log.warning("session %s: a second heartbeat stream; closing it", self.id)
                    return
                self._peer_heartbeat = True
                await answer_heartbeats(stream)
            elif stream_type == StreamType.AUTH:
                if self._auth_started:
                    log.warning("session %s: a second Auth; closing the session", self.id)
                    self.stop("a second Auth")
                    return
                self._auth_started = True
                try:
                    await self._serve_auth(stream)
                except StoreError as exc:
                    await self._refuse_auth_store_failed(stream, exc)
            elif not self._authenticated.is_set():
                log.warning("session %s: stream type %d before Auth", self.id, stream_type)
            elif stream_type == StreamType.BIND:
                await self.endpoints.serve_bind(stream)
            elif stream_type == StreamType.UNBIND:
                await self.endpoints.serve_unbind(stream)
            elif stream_type == StreamType.SRV_INFO:
                await self._serve_rpc_srv_info(stream)
            elif stream_type in UNSUPPORTED_REQUESTS:
                await self._refuse_request(stream, *UNSUPPORTED_REQUESTS[stream_type])
            else:
                log.info("session %s: ignoring stream type %d", self.id, stream_type)
        except trio.TooSlowError:
            log.warning(
                "session %s: stream %d stalled before its request", self.id, stream.stream_id
            )
        except RpcError as exc:
            log.warning("session %s: bad request on stream %d: %s", self.id, stream.stream_id, exc)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            stream.close_now()

    # ---------------------------------------------------------------------------------- auth

    async def _serve_auth(self, stream: MuxStream) -> None:
        with trio.fail_after(RPC_TIMEOUT):
            auth, codec = await read_message(stream, Auth, None, max_size=MAX_AUTH_SIZE)
        self.codec = codec
        self.auth = auth
        token = auth.extra.authtoken
        store = self.hub.store
        credential = store.authenticate(token) if token else None
        now = trio.current_time()
        throttled: decisions.LoginThrottled | None = None
        revoked_id: str | None = None
        if credential is None:
            # Only a failure looks at (and pays into) its address's budget: a valid authtoken
            # is accepted from a throttled address, and a throttled guess costs no more lookups.
            throttle = self.hub.login_throttle
            retry_after = throttle.retry_after(self.remote[0], now)
            if retry_after > 0:
                throttled = decisions.LoginThrottled(
                    address=self.remote[0],
                    retry_after=retry_after,
                    failures_per_window=throttle.failures_per_window,
                    window=throttle.window,
                )
            elif token:
                revoked_id = store.revoked_credential_id(token)
        # Resuming stops the agent's old session at once, so ask only for a usable credential.
        resuming = (
            credential is not None
            and bool(auth.client_id)
            and self.hub.resume(auth.client_id, auth.extra.cookie, credential.id)
        )
        decision = decisions.decide_auth(
            token=token,
            credential=credential,
            revoked_id=revoked_id,
            resuming=resuming,
            live_sessions=self.hub.sessions_of(credential.id) if credential is not None else 0,
            throttled=throttled,
        )
        if isinstance(decision, Refused):
            await self._refuse_auth(stream, auth, codec, decision, revoked_id=revoked_id, now=now)
            return
        await self._accept_auth(stream, auth, codec, decision)

    async def _refuse_auth_store_failed(self, stream: MuxStream, exc: StoreError) -> None:
        """The store failed while the Auth was checked: the agent gets ERR_NGROK_10000 with a
        message (not a bare GOAWAY), the edge logs one line (not a traceback per attempt)."""
        log.error("session %s from %s: the store failed at Auth: %s", self.id, self.peer, exc)
        refused = decisions.store_failed()
        self.hub.metrics.refused("auth", refused.code or "")
        assert self.codec is not None  # set from the Auth's first byte, before the store is asked
        await respond(stream, AuthResp(version="2", error=refused.wire()), self.codec)
        await trio.sleep(0.1)  # let the refusal reach the agent before the GOAWAY
        self.stop(f"auth refused: {refused.code}")

    async def _refuse_auth(
        self,
        stream: MuxStream,
        auth: Auth,
        codec: Codec,
        refused: Refused,
        *,
        revoked_id: str | None,
        now: float,
    ) -> None:
        """Answer a refused Auth, then end the session. A login failure is charged to its source
        address and audited (within the address's event budget) before the answer is written,
        so an agent that is gone by then still leaves its event."""
        code = refused.code
        self.hub.metrics.refused("auth", code or "")
        if code in decisions.LOGIN_FAILURES:
            assert code is not None
            address = self.remote[0]
            charged = self.hub.login_throttle.charge_failure(address, now)
            if charged.audit:
                self.write_event(
                    audit.login_failed(
                        session_id=self.id,
                        auth=auth,
                        agent_ip=address,
                        ingress_hostname=self.hub.config.connect_host,
                        error_code=code,
                        revoked_credential_id=revoked_id,
                        throttled=charged.throttled,
                        failures_in_window=charged.failures,
                        unrecorded_failures=charged.unaudited,
                    )
                )
            if not charged.throttled:
                log.warning(
                    "session %s from %s: auth refused (%s)",
                    self.id,
                    self.peer,
                    code,
                    extra={"session": self.id, "code": code},
                )
            elif charged.audit:  # the first throttled failure of this window: say so once
                log.warning(
                    "%s: %d failed agent logins within %gs; its failures are refused as "
                    "throttled (%s) until the window ends",
                    address,
                    charged.failures - 1,
                    self.hub.login_throttle.window,
                    code,
                )
        else:
            log.warning("session %s: refused, %s", self.id, refused.message)
        await respond(stream, AuthResp(version="2", error=refused.wire()), codec)
        await trio.sleep(0.1)  # let the refusal reach the agent before the GOAWAY
        self.stop(f"auth refused: {code}")

    async def _accept_auth(
        self, stream: MuxStream, auth: Auth, codec: Codec, accepted: AuthAccepted
    ) -> None:
        credential, resuming = accepted.credential, accepted.resuming
        self.credential = credential
        if resuming:
            self.client_id = auth.client_id
            log.info("session %s resumes client %s", self.id, self.client_id)
        else:
            self.client_id = self.hub.new_id("cl")
        cookie = self.hub.register(self, credential_id=credential.id)
        # Registered and audited in one step, before the answer: an agent gone by the time the
        # AuthResp is written still leaves its start event, and `run` records the stop event.
        self.started_at = datetime.now(UTC)
        self._record_session(stopped=False)
        await respond(
            stream,
            AuthResp(
                version="2",
                client_id=self.client_id,
                extra=AuthRespExtra(
                    version=EDGE_VERSION_STRING,
                    region="local",
                    cookie=cookie,
                    account_name=credential.account_id,
                    plan_name="self-hosted",
                    agent_session_id=self.id,
                ),
            ),
            codec,
        )
        self.mux.limit_streams(self.hub.config.limits.max_streams_per_session)
        if agent_keeps_large_windows(auth):
            self.mux.allow_window_growth()
        self._authenticated.set()
        log.info(
            "session %s from %s authenticated: credential %s, %s %s",
            self.id,
            self.peer,
            credential.id,
            auth.extra.client_type or "agent",
            auth.extra.version,
            extra={"session": self.id},
        )
        assert self._nursery is not None
        self._nursery.start_soon(self._heartbeat)

    async def _heartbeat(self) -> None:
        beats = self.hub.config.heartbeat
        try:
            await send_heartbeats(self.mux, interval=beats.interval, tolerance=beats.tolerance)
        except HeartbeatTimeout as exc:
            log.warning("session %s: %s; dropping it", self.id, exc)
            self.stop(f"heartbeat: {exc}")

    async def _refuse_request(
        self,
        stream: MuxStream,
        what: str,
        response: type[StartTunnelWithLabelResp | PatchTunnelStateResp],
    ) -> None:
        """Answer a request Burrow does not implement with an Error string (not a bare EOF)."""
        assert self.codec is not None
        with trio.fail_after(RPC_TIMEOUT):
            await read_value(stream, self.codec)
        message = f"This Burrow edge does not support {what}."
        await respond(stream, response(error=message), self.codec)

    async def remote_op(self, op: RemoteOp, who: str) -> OpAnswer:
        """Ask the agent to stop, restart or update (`edge.tunnels.remote_ops`) on a new typed
        stream and return its answer; `who` is told to the agent and becomes the session's stop
        reason if the agent ends it. Never raises for the agent's failings: a broken session, a
        malformed answer or none within `RPC_TIMEOUT` come back as `OpAnswer.undelivered`.
        Cancellation propagates (the stream is closed)."""
        reason = f"{op.value} requested by {who}"
        if op is not RemoteOp.UPDATE:
            self.stop_reason = reason  # kept if the agent now ends the session, as asked
        try:
            with trio.fail_after(RPC_TIMEOUT):
                request = op_request(op, who)
                codec = self.codec or Codec.JSON
                response = await call(self.mux, op.stream_type, request, op.response, codec)
        except _OP_ERRORS as exc:
            ended = self.mux.goaway_received.is_set() or self.mux.error is not None
            if not ended and self.stop_reason == reason:
                self.stop_reason = ""
            timed_out = isinstance(exc, trio.TooSlowError)
            why = "no answer in time" if timed_out else str(exc) or type(exc).__name__
            log.warning("session %s: %s request not answered: %s", self.id, op.value, why)
            return OpAnswer(undelivered=why, session_ended=ended)
        if response.error and self.stop_reason == reason:
            self.stop_reason = ""
        log.info(
            "session %s: %s requested by %s; the agent answered %s",
            self.id,
            op.value,
            who,
            repr(response.error) if response.error else "ok",
            extra={"session": self.id},
        )
        return OpAnswer(error=response.error)

    async def _serve_rpc_srv_info(self, stream: MuxStream) -> None:
        assert self.codec is not None
        with trio.fail_after(RPC_TIMEOUT):
            await read_message(stream, SrvInfo, self.codec)
        await respond(stream, SrvInfoResp(region="local"), self.codec)

    # ------------------------------------------------------------------------------ helpers

    def _ended_by_peer(self) -> str:
        goaway = self.mux.goaway
        if goaway is not None:
            why = describe(goaway.error_code)
            debug = goaway.debug.decode(errors="replace")
            return (
                f"agent closed the session ({why}: {debug})"
                if debug
                else (f"agent closed the session ({why})")
            )
        return f"transport closed: {self.mux.error}"

    def write_event(self, event: audit.AuditEvent) -> None:
        """Record `event` in the edge's event log."""
        self.hub.events.record(event.type, event.obj, principal=event.principal)

    def _record_session(self, *, stopped: bool) -> None:
        """The session's start or stop audit event: who, from where, and why it stopped."""
        credential, auth, started_at = self.credential, self.auth, self.started_at
        assert credential is not None and auth is not None and started_at is not None
        if stopped:
            event = audit.session_stopped(
                credential,
                session_id=self.id,
                auth=auth,
                agent_ip=self.remote[0],
                ingress_hostname=self.hub.config.connect_host,
                started_at=started_at,
                stopped_at=datetime.now(UTC),
                error=self.stop_reason,
            )
        else:
            event = audit.session_started(
                credential,
                session_id=self.id,
                auth=auth,
                agent_ip=self.remote[0],
                ingress_hostname=self.hub.config.connect_host,
                started_at=started_at,
            )
        self.write_event(event)

    @property
    def peer(self) -> str:
        """The agent's address as the edge sees it, `ip:port`."""
        return f"{self.remote[0]}:{self.remote[1]}"
