"""What the admin API sees of the running edge: live agent sessions and online endpoints, as
plain values, and the two actions it takes on them (stop one session; stop the sessions whose
credential was just revoked).

`LiveState` is the interface the pure request handlers use; `HubLiveState` reads it off the
`EdgeHub`. Tests hand the handlers a `LiveState` of their own.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import trio

from edge.endpoints import health
from edge.endpoints.registry import Endpoint, Member
from edge.tunnels.hub import EdgeHub
from edge.tunnels.session import AgentSession

#: Sorts a session that has authenticated but not yet been stamped as the newest.
_NOT_STARTED = datetime.max.replace(tzinfo=UTC)

__all__ = [
    "EndpointInfo",
    "HubLiveState",
    "LiveState",
    "PoolMemberInfo",
    "SessionInfo",
    "endpoint_id",
    "endpoint_info",
]


@dataclass(frozen=True, kw_only=True)
class SessionInfo:
    """One authenticated agent session (ngrok's tunnel session)."""

    id: str
    credential_id: str
    owner_id: str | None  # the credential's service user, if any
    agent_version: str
    ip: str
    metadata: str
    os: str
    started_at: datetime | None


@dataclass(frozen=True, kw_only=True)
class EndpointInfo:
    """One online (agent) endpoint."""

    id: str
    url: str
    proto: str
    port: int | None
    session_id: str
    owner_id: str | None
    started_at: datetime | None  # its session's start: the registry keeps no bind time
    binding: str = "public"  # or "internal"
    # The member's Traffic Policy as the agent sent it (for an SDK's legacy endpoint options,
    # the policy they became, as JSON); "" when it has none, as ngrok shows it.
    traffic_policy: str = ""
    pooling_enabled: bool = False  # the Bind's PoolingEnabled
    agent_addr: str = ""  # the agent's address as the edge sees it
    health: str = "healthy"  # edge.endpoints.health.State's value
    # Every member of the endpoint's pool (itself included); empty when it is alone.
    pool: tuple[PoolMemberInfo, ...] = ()


@dataclass(frozen=True, kw_only=True)
class PoolMemberInfo:
    """One member of a pool, as the admin API lists it under an endpoint's `pools`."""

    id: str  # the member's endpoint id (a cloud endpoint's own id)
    cloud: bool  # a cloud endpoint (no agent session)
    session_id: str  # "" for a cloud endpoint
    agent_addr: str
    health: str
    outstanding_streams: int
    streams_opened: int
    reason: str  # why it is unhealthy or gone, "" when healthy


class LiveState(Protocol):
    def sessions(self) -> Sequence[SessionInfo]:
        """Live sessions, newest first."""
        ...

    def endpoints(self) -> Sequence[EndpointInfo]:
        """Online endpoints, those of the newest session first."""
        ...

    def stop_session(self, session_id: str, reason: str) -> bool:
        """End one session now (its endpoints close at once); False if there is none."""
        ...

    def stop_revoked_sessions(self) -> int:
        """End every session whose credential can no longer authenticate; how many."""
        ...


def endpoint_id(session_id: str, bind_id: str) -> str:
    """A stable `ep_...` id for an endpoint while it is online: the registry names endpoints by
    URL and bind id only, and bind ids come from agents, so hash the pair into our id shape."""
    digest = hashlib.sha256(f"{session_id}\0{bind_id}".encode()).digest()[:16]
    return "ep_" + base64.b32encode(digest).decode("ascii").rstrip("=")


class HubLiveState:
    """`LiveState` over an `EdgeHub`. Call from the trio thread that runs the hub."""

    def __init__(self, hub: EdgeHub) -> None:
        self._hub = hub

    def _agent_sessions(self) -> list[AgentSession]:
        live = [s for s in self._hub.sessions.values() if isinstance(s, AgentSession)]
        live = [s for s in live if s.credential is not None and s.auth is not None]
        # Newest first; a session between Auth and its start stamp sorts as newest.
        live.sort(key=lambda s: s.started_at or _NOT_STARTED, reverse=True)
        return live

    def sessions(self) -> list[SessionInfo]:
        infos = []
        for session in self._agent_sessions():
            credential, auth = session.credential, session.auth
            assert credential is not None and auth is not None
            infos.append(
                SessionInfo(
                    id=session.id,
                    credential_id=credential.id,
                    owner_id=credential.owner_id,
                    agent_version=auth.extra.version,
                    ip=session.remote[0],
                    metadata=auth.extra.metadata,
                    os=auth.extra.os,
                    started_at=session.started_at,
                )
            )
        return infos

    def endpoints(self) -> list[EndpointInfo]:
        infos = []
        for session in self._agent_sessions():
            assert session.credential is not None
            for endpoint, member in self._hub.registry.held_by(session.id):
                infos.append(
                    endpoint_info(
                        endpoint,
                        member,
                        url=self._hub.public_url(endpoint),
                        owner_id=session.credential.owner_id,
                        started_at=session.started_at,
                        now=trio.current_time(),
                    )
                )
        return infos

    def stop_session(self, session_id: str, reason: str) -> bool:
        session = self._hub.sessions.get(session_id)
        if session is None:
            return False
        session.stop(reason)
        return True

    def stop_revoked_sessions(self) -> int:
        return self._hub.stop_revoked_sessions()


def endpoint_info(
    endpoint: Endpoint,
    member: Member,
    *,
    url: str,
    owner_id: str | None,
    started_at: datetime | None,
    now: float = 0.0,
) -> EndpointInfo:
    """What the API shows of `member`, one member of `endpoint`: `url` is the one clients dial
    (with the edge's port when it is not the default); `owner_id` and `started_at` are those of
    the member's session (its credential's service user, and when it started); health is as
    of `now` (trio's clock)."""
    pool = (
        tuple(_pool_member(peer, now) for peer in endpoint.members)
        if len(endpoint.members) > 1
        else ()
    )
    return EndpointInfo(
        id=endpoint_id(member.session_id, member.bind_id),
        url=url,
        proto=endpoint.proto,
        port=endpoint.port,
        session_id=member.session_id,
        owner_id=owner_id,
        started_at=started_at,
        binding=endpoint.binding,
        traffic_policy=member.policy.text if member.policy is not None else "",
        pooling_enabled=member.pooling,
        agent_addr=member.agent_addr,
        health=health.state(member.load.health, now=now).value,
        pool=pool,
    )


def _pool_member(member: Member, now: float) -> PoolMemberInfo:
    cloud = not member.session_id  # edge.endpoints.cloud.NO_SESSION
    load = member.load
    return PoolMemberInfo(
        id=member.bind_id if cloud else endpoint_id(member.session_id, member.bind_id),
        cloud=cloud,
        session_id=member.session_id,
        agent_addr=member.agent_addr,
        health=health.state(load.health, now=now).value,
        outstanding_streams=load.outstanding,
        streams_opened=load.opened,
        reason=load.health.reason,
    )
