"""The shared state of one edge process: config, store, online endpoints and live sessions.

Every agent session holds a reference to the hub; the hub holds no I/O of its own. Resumption
lives here: an agent that reconnects with the ClientId and Cookie of a previous session takes over
that session (which is stopped at once), so its endpoints come back without an "already bound"
error while the dead session would otherwise still be timing out.
"""

from __future__ import annotations

import hmac
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import trio

from edge.admin.metrics import EdgeMetrics
from edge.config import EdgeConfig
from edge.endpoints.health import HealthPolicy
from edge.endpoints.registry import Endpoint, EndpointRegistry
from edge.events import EventLog
from edge.front_door.tcp_ports import SharedPort
from edge.store import Store
from edge.tunnels.binding import BindResolver
from edge.tunnels.login_throttle import LoginThrottle
from protocol.formats.urls import DEFAULT_PORTS


class Stoppable(Protocol):
    id: str
    client_id: str

    @property
    def credential_id(self) -> str | None: ...

    def stop(self, reason: str) -> None: ...


@dataclass(slots=True)
class _Resumable:
    cookie: str
    credential_id: str
    session: Stoppable | None


#: Client ids remembered for resumption after their session ended.
MAX_RESUMABLE = 10_000


class EdgeHub:
    def __init__(
        self,
        config: EdgeConfig,
        store: Store,
        *,
        rng: random.Random | None = None,
        token_source: Callable[[int], str] = secrets.token_urlsafe,
        events: EventLog | None = None,
        metrics: EdgeMetrics | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.events = events or EventLog(store, None)
        self.rng = rng or random.Random()
        self.new_token = token_source
        limits = config.limits
        self.registry = EndpointRegistry(
            rng=self.rng,
            health_policy=HealthPolicy(
                backoff=limits.pool_member_backoff, backoff_max=limits.pool_member_backoff_max
            ),
        )
        #: The listening sockets of public tcp endpoints, by URL: a pool's members share one
        #: set, which closes with the pool's last member (`edge.front_door.tcp_ports`).
        self.tcp_ports: dict[str, SharedPort] = {}
        #: Where connections to shared tcp ports run, so that they outlive the member whose
        #: Bind opened the port (the server sets it; None: that session's own nursery).
        self.nursery: trio.Nursery | None = None
        self.binder = BindResolver(config, self.registry)
        #: The ports clients dial, by scheme, once the listeners are bound (the server fills
        #: this in); URLs handed to agents name a port only when it is not the default.
        self.public_ports: dict[str, int] = {}
        self.sessions: dict[str, Stoppable] = {}
        #: This edge's Prometheus counters (`edge.admin.metrics`), bumped by sessions, streams
        #: and listeners; sessions and endpoints online are read from here when scraped.
        self.metrics = metrics or EdgeMetrics(
            max_endpoint_labels=config.admin.metrics_max_endpoint_labels
        )
        self.metrics.watch(
            sessions=lambda: len(self.sessions), endpoints=lambda: len(self.registry)
        )
        self._resumable: dict[str, _Resumable] = {}
        #: Failed agent logins per source address, shared by every session of this edge.
        self.login_throttle = LoginThrottle(
            failures_per_window=limits.auth_failures_per_address,
            window=limits.auth_failure_window,
            max_addresses=limits.auth_failure_addresses,
        )

    def public_url(self, endpoint: Endpoint) -> str:
        """The URL clients dial for `endpoint`: its canonical URL, plus the edge's port when that
        is not the scheme's default (a development edge listens on 8443 and 8080)."""
        port = self.public_ports.get(endpoint.proto)
        if (
            endpoint.binding != "public"
            or port is None
            or port == DEFAULT_PORTS.get(endpoint.proto)
        ):
            return endpoint.url
        return f"{endpoint.url}:{port}"

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_{self.new_token(18)}"

    def register(self, session: Stoppable, *, credential_id: str) -> str:
        """Record a session that authenticated; returns the Cookie it can resume with."""
        self.sessions[session.id] = session
        cookie = self.new_token(24)
        self._resumable[session.client_id] = _Resumable(cookie, credential_id, session)
        while len(self._resumable) > MAX_RESUMABLE:
            self._resumable.pop(next(iter(self._resumable)))
        return cookie

    def resume(self, client_id: str, cookie: str, credential_id: str) -> bool:
        """True if (client_id, cookie) names an earlier session of this credential; that session,
        if still running, is stopped now so that the new one can take its endpoints."""
        entry = self._resumable.get(client_id)
        if entry is None or not cookie or entry.credential_id != credential_id:
            return False
        if not hmac.compare_digest(entry.cookie, cookie):
            return False
        if entry.session is not None:
            entry.session.stop("replaced by a reconnecting session of the same agent")
        return True

    def sessions_of(self, credential_id: str) -> int:
        """How many live sessions authenticated with this credential."""
        return sum(1 for s in self.sessions.values() if s.credential_id == credential_id)

    def stop_revoked_sessions(self) -> int:
        """End every live session whose credential can no longer authenticate (deleted,
        deactivated, or its service user deactivated); returns how many were stopped."""
        by_credential: dict[str, list[Stoppable]] = {}
        for session in self.sessions.values():
            if session.credential_id is not None:
                by_credential.setdefault(session.credential_id, []).append(session)
        if not by_credential:
            return 0
        usable = self.store.usable_credentials(by_credential)
        stopped = 0
        for credential_id, sessions in by_credential.items():
            if credential_id in usable:
                continue
            for session in sessions:
                session.stop(f"credential {credential_id} was revoked")
                stopped += 1
        return stopped

    def unregister(self, session: Stoppable) -> None:
        self.sessions.pop(session.id, None)
        entry = self._resumable.get(session.client_id)
        if entry is not None and entry.session is session:
            entry.session = None
