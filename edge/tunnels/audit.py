"""The audit events an agent session writes, in ngrok's shapes: who, which session, what.

Pure: each function takes values (the credential, the session's id and facts, the time) and
returns an `AuditEvent`; the session hands it to `EventLog.record`. No clock here: the caller
passes `started_at` and `stopped_at`.

A failed login (`agent_login_failed.v0`) has no principal: nobody authenticated. Its object
names the source address, the refusal's code, and the credential only when the authtoken
belonged to a revoked one; never the authtoken itself, and only a bounded prefix of the
agent-supplied strings, so that a flood of failures cannot put large rows in the store.
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
    "login_failed",
    "session_started",
    "session_stopped",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEvent:
    """One event to record: its type, its object, and the principal that caused it."""

    type: str
    obj: dict[str, object]
    principal: dict[str, object] | None


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


#: The most characters of an agent-supplied string (user agent, version, os, arch) a failed
#: login's event keeps: real values are a few dozen, and the event of an unauthenticated peer
#: must stay small however long its Auth's fields are.
MAX_UNTRUSTED_FIELD = 128


def login_failed(
    *,
    session_id: str,
    auth: Auth,
    agent_ip: str,
    ingress_hostname: str,
    error_code: str,
    revoked_credential_id: str | None,
    throttled: bool,
    failures_in_window: int,
    unrecorded_failures: int,
) -> AuditEvent:
    """`agent_login_failed.v0`: an Auth from `agent_ip` was refused with `error_code`.

    `revoked_credential_id` names the revoked credential the authtoken belonged to (None for a
    missing or unknown authtoken); `throttled` whether the address had spent its budget;
    `failures_in_window` its failures in the current window, this one included;
    `unrecorded_failures` how many earlier failures of the address were throttled without an
    event of their own since its last recorded one."""

    def bounded(value: str) -> str:
        return value[:MAX_UNTRUSTED_FIELD]

    credential: dict[str, object] | None = None
    if revoked_credential_id is not None:
        credential = {
            "id": revoked_credential_id,
            "uri": f"/credentials/{revoked_credential_id}",
        }
    obj: dict[str, object] = {
        "session": {"id": session_id},
        "agent_ip": agent_ip,
        "region": "local",
        "ingress_hostname": ingress_hostname,
        "error_code": error_code,
        "credential": credential,
        "throttled": throttled,
        "failures_in_window": failures_in_window,
        "unrecorded_failures": unrecorded_failures,
        "user_agent": bounded(auth.extra.user_agent),
        "os": bounded(auth.extra.os),
        "arch": bounded(auth.extra.arch),
        "version": bounded(auth.extra.version),
    }
    return AuditEvent(type="agent_login_failed.v0", obj=obj, principal=None)
