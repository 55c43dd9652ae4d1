"""The admin API driven without sockets, shared by the route tests: a small stand-in for the
running edge (`FakeLive`) and a client that sends `Request`s to an `AdminApi` and checks the
shape of every error body it gets back (`Client`). The fixtures are in conftest.py."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from edge.admin.live import EndpointInfo, SessionInfo, endpoint_id
from edge.admin.routes import AdminApi, Request, Response
from edge.store import SQLiteStore

BASE = "http://127.0.0.1:4041"


@dataclass
class FakeLive:
    """The running edge as the API sees it: sessions and endpoints as values."""

    store: SQLiteStore
    live: list[SessionInfo] = field(default_factory=list)
    online: list[EndpointInfo] = field(default_factory=list)
    stopped: dict[str, str] = field(default_factory=dict)

    def sessions(self) -> list[SessionInfo]:
        return list(self.live)

    def endpoints(self) -> list[EndpointInfo]:
        return list(self.online)

    def stop_session(self, session_id: str, reason: str) -> bool:
        for session in self.live:
            if session.id == session_id:
                self.live.remove(session)
                self.online = [e for e in self.online if e.session_id != session_id]
                self.stopped[session_id] = reason
                return True
        return False

    def stop_revoked_sessions(self) -> int:
        usable = self.store.usable_credentials({s.credential_id for s in self.live})
        revoked = [s for s in self.live if s.credential_id not in usable]
        for session in revoked:
            self.stop_session(session.id, "revoked")
        return len(revoked)

    def add_session(self, credential_id: str, owner_id: str | None, n: int) -> SessionInfo:
        session = SessionInfo(
            id=f"ts_{n}",
            credential_id=credential_id,
            owner_id=owner_id,
            agent_version="3.1.0",
            ip="192.0.2.7",
            metadata="clinic box",
            os="linux",
            started_at=datetime(2025, 1, 2, 3, 4, n, tzinfo=UTC),
        )
        self.live.insert(0, session)
        self.online.insert(
            0,
            EndpointInfo(
                id=endpoint_id(session.id, f"tun_{n}"),
                url=f"tcp://127.0.0.1:{21000 + n}",
                proto="tcp",
                port=21000 + n,
                session_id=session.id,
                owner_id=owner_id,
                started_at=session.started_at,
            ),
        )
        return session


@dataclass
class Client:
    api: AdminApi
    token: str
    remote: str = "192.0.2.1"
    now: float = 0.0

    def call(
        self,
        method: str,
        target: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: tuple[tuple[str, str], ...] | None = None,
    ) -> Response:
        if headers is None:
            headers = (("authorization", f"Bearer {self.token}"), ("ngrok-version", "2"))
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        request = Request(
            method=method,
            target=target,
            headers=headers,
            body=data,
            remote=self.remote,
            base_url=BASE,
        )
        return self.api.handle(request, now=self.now)

    def ok(self, method: str, target: str, body: Any = None, status: int = 200) -> Any:
        response = self.call(method, target, body)
        assert response.status == status, response.body
        return json.loads(response.body) if response.body else None

    def error(self, method: str, target: str, body: Any = None, **kw: Any) -> dict[str, Any]:
        response = self.call(method, target, body, **kw)
        assert response.status >= 400, response.body
        error: dict[str, Any] = json.loads(response.body)
        assert error["status_code"] == response.status
        assert error["details"]["operation_id"].startswith("op_")
        assert set(error) == {"error_code", "status_code", "msg", "details"}
        return error


def event_types(store: SQLiteStore) -> list[str]:
    return [e.event_type for e in store.list_events()]
