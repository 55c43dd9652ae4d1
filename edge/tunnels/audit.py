"""The audit events an agent session writes, in ngrok's shapes: who, which session, what.

Pure: each function takes values (the credential, the session's id and facts, the time) and
returns an `AuditEvent`; the session hands it to `EventLog.record`. No clock here: the caller
passes `started_at` and `stopped_at`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from edge.store import Credential
from edge.timestamps import rfc3339
from protocol.rpc.messages import Auth

__all__ = [
    "AuditEvent",
    "audit_refs",
    "endpoint_bound",
    "endpoint_unbound",
    "session_started",
    "session_stopped",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEvent:
    """One event to record: its type, its object, and the principal that caused it."""

    type: str
    obj: dict[str, object]
    principal: dict[str, object]


def audit_refs(credential: Credential) -> tuple[dict[str, object], dict[str, object]]:
    """(credential reference, principal) for a session's audit events: the principal is the
    credential's owning service user, else the credential itself."""
    credential_ref: dict[str, object] = {
        "id": credential.id,
        "uri": f"/credentials/{credential.id}",
    }
    principal: dict[str, object] = {
        "id": credential.owner_id or credential.id,
        "source": "agent",
        "credential": credential_ref,
    }
    return credential_ref, principal


def _endpoint_obj(
    credential_ref: dict[str, object], *, session_id: str, url: str, proto: str, binding: str
) -> dict[str, object]:
    return {
        "url": url,
        "proto": proto,
        "binding": binding,
        "tunnel_session": {"id": session_id, "uri": f"/tunnel_sessions/{session_id}"},
        "credential": credential_ref,
    }


def endpoint_bound(
    credential: Credential, *, session_id: str, url: str, proto: str, binding: str
) -> AuditEvent:
    """`endpoint_bound.v0`: the session's agent put `url` online."""
    credential_ref, principal = audit_refs(credential)
    obj = _endpoint_obj(
        credential_ref, session_id=session_id, url=url, proto=proto, binding=binding
    )
    return AuditEvent(type="endpoint_bound.v0", obj=obj, principal=principal)


def endpoint_unbound(
    credential: Credential, *, session_id: str, url: str, proto: str, binding: str, reason: str
) -> AuditEvent:
    """`endpoint_unbound.v0`: `url` went offline, and why (an Unbind, or the session's end)."""
    credential_ref, principal = audit_refs(credential)
    obj = _endpoint_obj(
        credential_ref, session_id=session_id, url=url, proto=proto, binding=binding
    )
    obj["reason"] = reason
    return AuditEvent(type="endpoint_unbound.v0", obj=obj, principal=principal)


def _session_obj(
    credential_ref: dict[str, object],
    *,
    session_id: str,
    auth: Auth,
    agent_ip: str,
    ingress_hostname: str,
    started_at: datetime,
    error: str,
) -> dict[str, object]:
    return {
        "session": {"id": session_id, "uri": f"/tunnel_sessions/{session_id}"},
        "credential": credential_ref,
        "agent_ip": agent_ip,
        "region": "local",
        "ingress_hostname": ingress_hostname,
        "user_agent": auth.extra.user_agent,
        "metadata": auth.extra.metadata,
        "os": auth.extra.os,
        "arch": auth.extra.arch,
        "version": auth.extra.version,
        "transport": "muxado",
        "started_at": rfc3339(started_at),
        "error": error,
    }


def session_started(
    credential: Credential,
    *,
    session_id: str,
    auth: Auth,
    agent_ip: str,
    ingress_hostname: str,
    started_at: datetime,
) -> AuditEvent:
    """`agent_session_start.v0`: who authenticated, from where, with which agent."""
    credential_ref, principal = audit_refs(credential)
    obj = _session_obj(
        credential_ref,
        session_id=session_id,
        auth=auth,
        agent_ip=agent_ip,
        ingress_hostname=ingress_hostname,
        started_at=started_at,
        error="",
    )
    return AuditEvent(type="agent_session_start.v0", obj=obj, principal=principal)


def session_stopped(
    credential: Credential,
    *,
    session_id: str,
    auth: Auth,
    agent_ip: str,
    ingress_hostname: str,
    started_at: datetime,
    stopped_at: datetime,
    error: str,
) -> AuditEvent:
    """`agent_session_stop.v0`: the start event's fields, why it stopped, and when."""
    credential_ref, principal = audit_refs(credential)
    obj = _session_obj(
        credential_ref,
        session_id=session_id,
        auth=auth,
        agent_ip=agent_ip,
        ingress_hostname=ingress_hostname,
        started_at=started_at,
        error=error,
    )
    obj["stopped_at"] = rfc3339(stopped_at)
    return AuditEvent(type="agent_session_stop.v0", obj=obj, principal=principal)
