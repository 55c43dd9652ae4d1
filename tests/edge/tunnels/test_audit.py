"""Audit events of an agent session, built from values: exact shapes, in ngrok's field names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from edge.store import Credential
from edge.tunnels.audit import (
    audit_refs,
    endpoint_bound,
    endpoint_unbound,
    login_failed,
    session_started,
    session_stopped,
)
from protocol.rpc.messages import Auth, AuthExtra

STARTED = datetime(2025, 3, 14, 15, 9, 26, 535897, tzinfo=UTC)


def _credential(owner_id: str | None = None) -> Credential:
    return Credential(
        id="cr_1",
        account_id="acct_1",
        created_at=STARTED,
        description="",
        metadata="",
        acl=(),
        active=True,
        owner_id=owner_id,
    )


AUTH = Auth(
    extra=AuthExtra(
        os="linux",
        arch="amd64",
        version="3.2.1",
        user_agent="burrow-agent/3.2.1",
        metadata="clinic-a",
    )
)


def test_the_principal_is_the_credential_without_a_service_user() -> None:
    credential_ref, principal = audit_refs(_credential())
    assert credential_ref == {"id": "cr_1", "uri": "/credentials/cr_1"}
    assert principal == {"id": "cr_1", "source": "agent", "credential": credential_ref}


def test_the_principal_is_the_owning_service_user() -> None:
    credential_ref, principal = audit_refs(_credential(owner_id="bot_7"))
    assert principal == {"id": "bot_7", "source": "agent", "credential": credential_ref}


def test_endpoint_bound() -> None:
    event = endpoint_bound(
        _credential(),
        session_id="ts_1",
        url="https://app.example.com",
        proto="https",
        binding="public",
    )
    assert event.type == "endpoint_bound.v0"
    assert event.obj == {
        "url": "https://app.example.com",
        "proto": "https",
        "binding": "public",
        "tunnel_session": {"id": "ts_1", "uri": "/tunnel_sessions/ts_1"},
        "credential": {"id": "cr_1", "uri": "/credentials/cr_1"},
    }
    assert "reason" not in event.obj
    assert event.principal is not None
    assert event.principal["id"] == "cr_1"


def test_endpoint_unbound_says_why() -> None:
    event = endpoint_unbound(
        _credential(owner_id="bot_7"),
        session_id="ts_1",
        url="tcp://edge.example.com:20001",
        proto="tcp",
        binding="public",
        reason="unbound",
    )
    assert event.type == "endpoint_unbound.v0"
    assert event.obj == {
        "url": "tcp://edge.example.com:20001",
        "proto": "tcp",
        "binding": "public",
        "tunnel_session": {"id": "ts_1", "uri": "/tunnel_sessions/ts_1"},
        "credential": {"id": "cr_1", "uri": "/credentials/cr_1"},
        "reason": "unbound",
    }
    assert event.principal is not None
    assert event.principal["id"] == "bot_7"


def test_session_started() -> None:
    event = session_started(
        _credential(),
        session_id="ts_1",
        auth=AUTH,
        agent_ip="203.0.113.9",
        ingress_hostname="connect.example.com",
        started_at=STARTED,
    )
    assert event.type == "agent_session_start.v0"
    assert event.obj == {
        "session": {"id": "ts_1", "uri": "/tunnel_sessions/ts_1"},
        "credential": {"id": "cr_1", "uri": "/credentials/cr_1"},
        "agent_ip": "203.0.113.9",
        "region": "local",
        "ingress_hostname": "connect.example.com",
        "user_agent": "burrow-agent/3.2.1",
        "metadata": "clinic-a",
        "os": "linux",
        "arch": "amd64",
        "version": "3.2.1",
        "transport": "muxado",
        "started_at": "2025-03-14T15:09:26Z",
        "error": "",
    }
    assert "stopped_at" not in event.obj


def test_session_stopped_adds_the_error_and_the_stop_time_in_utc() -> None:
    stopped_at = datetime(2025, 3, 14, 17, 0, 1, tzinfo=timezone(timedelta(hours=1)))
    event = session_stopped(
        _credential(),
        session_id="ts_1",
        auth=AUTH,
        agent_ip="203.0.113.9",
        ingress_hostname="connect.example.com",
        started_at=STARTED,
        stopped_at=stopped_at,
        error="heartbeat: no answer",
    )
    assert event.type == "agent_session_stop.v0"
    assert event.obj["error"] == "heartbeat: no answer"
    assert event.obj["stopped_at"] == "2025-03-14T16:00:01Z"
    assert event.obj["started_at"] == "2025-03-14T15:09:26Z"
    assert list(event.obj)[-2:] == ["error", "stopped_at"]


def test_login_failed_names_the_address_code_and_revoked_credential_only() -> None:
    long_agent = Auth(
        extra=AuthExtra(
            authtoken="cr_x_topsecret",
            os="linux",
            arch="amd64",
            version="3.2.1",
            user_agent="x" * 10_000,
            metadata="m" * 10_000,
        )
    )
    event = login_failed(
        session_id="ts_1",
        auth=long_agent,
        agent_ip="203.0.113.9",
        ingress_hostname="connect.example.com",
        error_code="ERR_NGROK_300",
        revoked_credential_id="cr_x",
        throttled=False,
        failures_in_window=2,
        unrecorded_failures=5,
    )
    assert event.type == "agent_login_failed.v0"
    assert event.principal is None
    assert event.obj == {
        "session": {"id": "ts_1"},
        "agent_ip": "203.0.113.9",
        "region": "local",
        "ingress_hostname": "connect.example.com",
        "error_code": "ERR_NGROK_300",
        "credential": {"id": "cr_x", "uri": "/credentials/cr_x"},
        "throttled": False,
        "failures_in_window": 2,
        "unrecorded_failures": 5,
        "user_agent": "x" * 128,
        "os": "linux",
        "arch": "amd64",
        "version": "3.2.1",
    }
    assert "topsecret" not in repr(event.obj)


def test_login_failed_without_a_credential() -> None:
    event = login_failed(
        session_id="ts_1",
        auth=AUTH,
        agent_ip="203.0.113.9",
        ingress_hostname="connect.example.com",
        error_code="ERR_NGROK_107",
        revoked_credential_id=None,
        throttled=True,
        failures_in_window=11,
        unrecorded_failures=0,
    )
    assert event.obj["credential"] is None
    assert event.obj["throttled"] is True
