"""The edge process: the public ports (`edge.front_door.listeners`), the admin API listener, and the
wiring between store, certificates, sessions and endpoints."""

from __future__ import annotations

import logging
import signal
import ssl
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import trio

from edge.admin.http import serve_admin
from edge.admin.live import HubLiveState
from edge.admin.probes import Probes
from edge.admin.routes import AdminApi
from edge.admin.session_control import HubSessionControl
from edge.certs.ca import DevCA, server_context_from_pem
from edge.certs.cert_store import ALPN_PROTOCOLS, CertStore, watch_certificates
from edge.certs.connect_cert import connect_tls_context
from edge.config import EdgeConfig
from edge.endpoints.cloud_live import CloudEndpoints
from edge.events import EVENTS_FILE, EventLog
from edge.front_door.listeners import FrontDoor, open_public_listeners
from edge.store import SQLiteStore, StoreError
from edge.tunnels.hub import EdgeHub
from edge.tunnels.session import AgentSession
from protocol.adapters.mux import MuxConfig, open_mux_session
from protocol.adapters.tls import TLSStream
from protocol.formats.urls import format_host_port
from protocol.wire.errors import ErrorCode
from protocol.wire.session import Role, SessionConfig

log = logging.getLogger(__name__)

STORE_FILE = "burrow.db"
#: How often live sessions are checked against revoked credentials (the issue asks for 1 s).
REVOCATION_POLL = 0.5
#: ALPN for https:// endpoints when http.http2 is on: h2 first, since the server's order picks.
HTTP2_ALPN = ("h2", "http/1.1")


def agent_tls_context(config: EdgeConfig, ca: DevCA) -> ssl.SSLContext:
    """The certificate agents see: the configured PEM files (`tls.cert`, `tls.key`, checked to
    load, match and cover the connect host; `CertError` naming the key otherwise), else one from
    the development CA covering the connect host plus `localhost` (`edge.certs.connect_cert`)."""
    return connect_tls_context(config, ca)


def mux_config(config: EdgeConfig) -> MuxConfig:
    limits = config.limits
    return MuxConfig(
        session=SessionConfig(
            max_streams=limits.max_streams_per_session,
            max_stream_window=limits.stream_window_max,
            session_window_budget=limits.session_buffer_bytes,
        ),
        accept_backlog=limits.accept_backlog,
    )


@dataclass(frozen=True, kw_only=True)
class EdgeAddresses:
    """Where a running edge listens (port 0 in the config is resolved here)."""

    agents: tuple[str, int]  # the public TLS port: agents, https:// and tls:// endpoints
    http: tuple[str, int] | None = None  # the plain-HTTP port; None when turned off
    admin: tuple[str, int] | None  # None when the admin API is disabled


class ListenError(OSError):
    """A listener's address could not be bound when the edge started: one line naming the
    address, the config key that sets it, the reason and what to do. An `OSError` with the
    original errno, so callers that catch `OSError` still do."""

    def __init__(self, key: str, address: tuple[str, int], exc: OSError) -> None:
        reason = exc.strerror or str(exc)
        super().__init__(exc.errno, reason)
        self.key = key
        self.address = address
        self.message = (
            f"cannot listen on {format_host_port(*address)} ({key}): {reason}; stop whatever "
            f"uses that address or set {key} to another one in the config file"
        )

    def __str__(self) -> str:
        return self.message


async def _open_listeners(key: str, address: tuple[str, int]) -> list[trio.SocketListener]:
    try:
        return await open_public_listeners(address)
    except OSError as exc:
        raise ListenError(key, address, exc) from exc


class _Readiness:
    """What /readyz reports: ready once every listener is bound and while the store answers."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store
        self.listening = False

    def __call__(self) -> str | None:
        if not self.listening:
            return "the listeners are starting"
        try:
            _ = self.store.schema_version
        except StoreError as exc:
            return f"the store failed: {exc}"
        return None


def admin_tls_context(config: EdgeConfig) -> ssl.SSLContext | None:
    """The admin API's certificate, if the config names one; None serves plain HTTP."""
    tls = config.admin.tls
    if tls.cert is None or tls.key is None:
        return None
    return server_context_from_pem(tls.cert.read_bytes(), tls.key.read_bytes())


def prepare_data_dir(data_dir: Path, *, new_store: bool = False) -> tuple[DevCA, SQLiteStore]:
    """Create the data directory, development CA and store on first run; load them after.

    The store is checked as it opens (`SQLiteStore.open`): `EmptyStoreError` for a 0-byte store
    file unless `new_store`, `StoreError` for a damaged one, before anything listens."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca = DevCA.load_or_create(data_dir)
    return ca, SQLiteStore.open(data_dir / STORE_FILE, new_store=new_store)


async def serve_edge(
    config: EdgeConfig,
    ca: DevCA,
    store: SQLiteStore,
    *,
    reload_on_sighup: bool = False,
    drain: trio.Event | None = None,
    task_status: trio.TaskStatus[EdgeAddresses] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the edge until cancelled; `task_status.started` gets the listeners' addresses.
    `reload_on_sighup` (the CLI, which runs in the main thread) reloads certificates on SIGHUP.
    When `drain` is set (SIGTERM), the edge drains (`_drain`) and returns.

    `ListenError` (an `OSError` naming the address and its config key; for `admin.listen`
    inside trio's ExceptionGroup) if a listener's address cannot be bound: the edge then does
    not start."""
    hub = EdgeHub(config, store, events=EventLog(store, store.path.parent / EVENTS_FILE))
    store.observe_latency(hub.metrics.store_call)
    readiness = _Readiness(store)
    alpn = HTTP2_ALPN if config.http.http2 else ALPN_PROTOCOLS
    certs = CertStore(config.certificates, ca, alpn=alpn)
    front_door = FrontDoor(
        config,
        hub.registry,
        agent_tls=agent_tls_context(config, ca),
        certs=certs,
        serve_agent=partial(_handle_agent, hub),
        metrics=hub.metrics,
    )
    admin_tls = admin_tls_context(config)
    tls_listeners = await _open_listeners("listen.tls", config.listen.tls)
    tls_address = _address(tls_listeners)
    http_listeners: list[trio.SocketListener] = []
    http_address = None
    if config.listen.http is not None:
        http_listeners = await _open_listeners("listen.http", config.listen.http)
        http_address = _address(http_listeners)
        hub.public_ports["http"] = http_address[1]
    hub.public_ports.update(https=tls_address[1], tls=tls_address[1])
    cloud = _load_cloud_endpoints(hub)
    log.info(
        "public TLS port %s (agents: SNI %s), http port %s",
        format_host_port(*tls_address),
        config.connect_host,
        "off" if http_address is None else format_host_port(*http_address),
    )
    covered = certs.hosts_covered()
    if covered:
        log.info("certificate files cover: %s", ", ".join(covered))
    async with trio.open_nursery() as nursery:
        hub.nursery = nursery  # shared tcp ports' connections outlive the member that opened them
        admin_address = None
        if config.admin.enabled:
            api = AdminApi(
                store, HubLiveState(hub), hub.events, cloud=cloud, control=HubSessionControl(hub)
            )
            probes = Probes(
                api,
                hub.metrics,
                readiness,
                metrics_require_api_key=config.admin.metrics_require_api_key,
            )
            admin_host, admin_port = config.admin.listen
            try:
                admin_address = await nursery.start(
                    partial(serve_admin, api, admin_host, admin_port, tls=admin_tls, probes=probes)
                )
            except OSError as exc:
                raise ListenError("admin.listen", config.admin.listen, exc) from exc
        nursery.start_soon(_watch_revocations, hub)
        await nursery.start(cloud.serve_jwks)  # cloud endpoints' JWKS keys, while online
        nursery.start_soon(watch_certificates, certs, config.certificates.reload_interval)
        if reload_on_sighup:
            nursery.start_soon(_reload_on_sighup, certs)
        if http_listeners:
            nursery.start_soon(front_door.serve, http_listeners, front_door.handle_http)
        nursery.start_soon(front_door.serve, tls_listeners, front_door.handle_tls)
        readiness.listening = True
        task_status.started(
            EdgeAddresses(agents=tls_address, http=http_address, admin=admin_address)
        )
        if drain is not None:
            await drain.wait()
            readiness.listening = False
            await _drain(hub, front_door, grace=config.limits.drain_timeout)
            nursery.cancel_scope.cancel()


#: How often a drain looks whether the last proxy stream has ended.
_DRAIN_POLL = 0.05


async def _drain(hub: EdgeHub, front_door: FrontDoor, *, grace: float) -> None:
    """Stop taking new connections (the public listeners and every tcp endpoint's port
    close), tell every agent GOAWAY (reconnect: this edge opens no new streams), and give the
    connections and requests in flight `grace` seconds to finish. The caller then cancels
    what is left; agents' sessions then close and they reconnect with back-off."""
    front_door.stop_accepting()
    for port in list(hub.tcp_ports.values()):
        port.close()
    hub.tcp_ports.clear()
    sessions = [s for s in hub.sessions.values() if isinstance(s, AgentSession)]
    for session in sessions:
        session.go_away("edge shutting down: reconnect")
    log.info("draining: %d agent sessions told to reconnect", len(sessions))
    with trio.move_on_after(grace) as waited:
        # Streams end in many sessions' tasks; a short poll is simpler than an event per
        # stream, and a drain happens once per process.
        while any(session.proxy_streams for session in sessions):  # noqa: ASYNC110
            await trio.sleep(_DRAIN_POLL)
    left = sum(session.proxy_streams for session in sessions)
    if waited.cancelled_caught:
        log.warning("drain: %d streams still open after %gs; closing them", left, grace)
    else:
        log.info("drained: no stream in flight")


def _load_cloud_endpoints(hub: EdgeHub) -> CloudEndpoints:
    """The stored cloud endpoints, online before any listener serves (no agent is connected
    yet, so none of their URLs is taken). One that no longer passes the checks stays offline,
    logged with the reason; the others are served."""
    cloud = CloudEndpoints(
        hub.registry,
        hub.binder,
        public_url=hub.public_url,
        events=hub.events,
        jwks=hub.config.jwks,
    )
    records = hub.store.list_cloud_endpoints()
    for failure in cloud.load(reversed(records)):  # oldest first: the first to claim a URL
        log.error(
            "cloud endpoint %s (%s) stays offline: %s%s",
            failure.record.id,
            failure.record.url,
            failure.refused.message,
            f" ({failure.refused.code})" if failure.refused.code else "",
        )
    if records:
        log.info("cloud endpoints: %d of %d online", len(cloud), len(records))
    return cloud


def _address(listeners: list[trio.SocketListener]) -> tuple[str, int]:
    sockname = listeners[0].socket.getsockname()
    return str(sockname[0]), int(sockname[1])


async def _reload_on_sighup(certs: CertStore) -> None:
    """SIGHUP reloads the certificate files at once (they are also polled for changes)."""
    with trio.open_signal_receiver(signal.SIGHUP) as signals:
        async for _ in signals:
            errors = certs.reload()
            for error in errors:
                log.error("certificate reload: %s", error)
            if not errors:
                log.info("certificates reloaded (SIGHUP)")


async def _watch_revocations(hub: EdgeHub) -> None:
    """Revocation reaches live sessions within REVOCATION_POLL: the store may be changed by
    another process (the CLI), so the edge asks it rather than waiting to be told. A store that
    fails is logged in one line when it starts failing (or fails differently) and when it works
    again, not at every poll."""
    failing = ""
    while True:
        await trio.sleep(REVOCATION_POLL)
        try:
            stopped, problem = hub.stop_revoked_sessions(), ""
        except StoreError as exc:
            stopped, problem = 0, str(exc)
        if problem and problem != failing:
            log.error("could not check for revoked credentials (will keep trying): %s", problem)
        elif failing and not problem:
            log.info("the store works again: checking for revoked credentials")
        failing = problem
        if stopped:
            log.info("stopped %d session(s) whose credential was revoked", stopped)


async def _handle_agent(
    hub: EdgeHub,
    stream: TLSStream[trio.SocketStream],
    remote: tuple[str, int],
    auth_deadline: float,
) -> None:
    """One agent connection (the front door routed it here by SNI). Whatever goes wrong with
    it is logged and ends it alone: no error of one connection may stop the edge."""
    try:
        await _serve_agent_connection(hub, stream, remote, auth_deadline)
    except Exception:
        log.exception("agent connection failed unexpectedly; closing it")
        await trio.aclose_forcefully(stream)


async def _serve_agent_connection(
    hub: EdgeHub,
    stream: TLSStream[trio.SocketStream],
    remote: tuple[str, int],
    auth_deadline: float,
) -> None:
    # One budget from accept to Auth: a slow handshake leaves less time to authenticate.
    try:
        with trio.fail_at(auth_deadline):
            await stream.do_handshake()
    except (trio.TooSlowError, trio.BrokenResourceError) as exc:
        log.info("agent connection from %s: TLS handshake failed: %s", remote[0], exc)
        hub.metrics.handshake_failed("agent")
        await trio.aclose_forcefully(stream)
        return
    async with open_mux_session(stream, Role.SERVER, mux_config(hub.config)) as mux:
        session = AgentSession(hub, mux, remote, auth_deadline=auth_deadline)
        await session.run()
        await mux.aclose(ErrorCode.NO_ERROR, session.stop_reason or "session closed")
