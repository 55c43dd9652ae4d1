"""The admin API's request handling, without sockets: requests in, responses out, against a real
SQLite store in a temp dir and a small stand-in for the running edge."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import trio

from edge.admin.auth import FailedAuthLimiter
from edge.admin.live import EndpointInfo, SessionInfo, endpoint_id
from edge.admin.routes import AdminApi, Request, Response
from edge.events import EventLog
from edge.store import SQLiteStore
from edge.tunnels.remote_ops import OpAnswer, RemoteOp
from protocol.rpc.messages import AuthExtra

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


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    with SQLiteStore.open(tmp_path / "burrow.db") as opened:
        yield opened


@pytest.fixture
def live(store: SQLiteStore) -> FakeLive:
    return FakeLive(store)


@pytest.fixture
def client(store: SQLiteStore, live: FakeLive, tmp_path: Path) -> Client:
    api = AdminApi(
        store,
        live,
        EventLog(store, tmp_path / "events.jsonl"),
        limiter=FailedAuthLimiter(burst=3, refill_seconds=10),
    )
    _, token = store.create_api_key(description="test key")
    return Client(api, token)


def event_types(store: SQLiteStore) -> list[str]:
    return [e.event_type for e in store.list_events()]


# ---------------------------------------------------------------------------- service users


def test_service_user_lifecycle(client: Client, store: SQLiteStore) -> None:
    created = client.ok("POST", "/service_users", {"name": "clinic-a"}, status=201)
    assert created["id"].startswith("service_")
    assert created["uri"] == f"{BASE}/service_users/{created['id']}"
    assert created["name"] == "clinic-a" and created["active"] is True
    assert created["created_at"].endswith("Z") and "T" in created["created_at"]
    assert set(created) == {"id", "uri", "name", "active", "created_at"}
    assert client.ok("GET", f"/service_users/{created['id']}") == created
    updated = client.ok("PATCH", f"/service_users/{created['id']}", {"name": "clinic-a2"})
    assert updated["name"] == "clinic-a2" and updated["active"] is True
    listed = client.ok("GET", "/service_users")
    assert listed["service_users"] == [updated]
    assert listed["uri"] == f"{BASE}/service_users" and listed["next_page_uri"] is None
    assert client.ok("DELETE", f"/service_users/{created['id']}", status=204) is None
    assert client.error("GET", f"/service_users/{created['id']}")["status_code"] == 404
    assert event_types(store)[:3] == [
        "service_user_deleted.v0",
        "service_user_updated.v0",
        "service_user_created.v0",
    ]
    event = store.list_events(event_type="service_user_created.v0")[0]
    assert event.principal is not None and event.principal["source"] == "API"
    assert event.object["uri"] == f"/service_users/{created['id']}"


def test_service_user_refusals(client: Client) -> None:
    client.ok("POST", "/service_users", {"name": "dup"}, status=201)
    assert client.error("POST", "/service_users", {"name": "dup"})["status_code"] == 409
    error = client.error("POST", "/service_users", {"name": ""})
    assert error["error_code"] == "ERR_NGROK_213" and "name" in error["msg"]
    assert "required" in client.error("POST", "/service_users", {})["msg"]
    error = client.error("POST", "/service_users", {"name": "x", "active": "yes"})
    assert "active must be true or false" in error["msg"]
    error = client.error("POST", "/service_users", {"name": "x", "role": "admin"})
    assert "'role'" in error["msg"] and error["status_code"] == 400


def test_deactivating_a_service_user_cuts_its_sessions(
    client: Client, store: SQLiteStore, live: FakeLive
) -> None:
    user = client.ok("POST", "/service_users", {"name": "clinic-a"}, status=201)
    other = client.ok("POST", "/service_users", {"name": "clinic-b"}, status=201)
    mine = store.create_credential(owner_id=user["id"])[0]
    theirs = store.create_credential(owner_id=other["id"])[0]
    live.add_session(mine.id, user["id"], 1)
    live.add_session(theirs.id, other["id"], 2)
    client.ok("PATCH", f"/service_users/{user['id']}", {"active": False})
    assert list(live.stopped) == ["ts_1"]
    client.ok("DELETE", f"/service_users/{other['id']}", status=204)
    assert list(live.stopped) == ["ts_1", "ts_2"]
    deleted = store.list_events(event_type="service_user_deleted.v0")[0]
    assert deleted.object["deleted_credential_ids"] == [theirs.id]


# ---------------------------------------------------------------------------- credentials


def test_credential_lifecycle(client: Client, store: SQLiteStore) -> None:
    user = client.ok("POST", "/service_users", {"name": "clinic-a"}, status=201)
    created = client.ok(
        "POST",
        "/credentials",
        {
            "description": "clinic A box",
            "metadata": '{"site": 1}',
            "acl": ["bind:*.clinic-a.internal"],
            "owner_id": user["id"],
        },
        status=201,
    )
    token = created["token"]
    assert token and store.authenticate(token) is not None
    assert created["id"].startswith("cr_") and token.startswith(created["id"][3:] + "_")
    assert created["acl"] == ["bind:*.clinic-a.internal"] and created["owner_id"] == user["id"]
    assert created["max_sessions"] is None and created["max_endpoints"] is None
    assert set(created) == {
        "id",
        "uri",
        "created_at",
        "description",
        "metadata",
        "token",
        "acl",
        "owner_id",
        "active",
        "max_sessions",
        "max_endpoints",
    }
    fetched = client.ok("GET", f"/credentials/{created['id']}")
    assert fetched["token"] is None
    assert {k: v for k, v in fetched.items() if k != "token"} == {
        k: v for k, v in created.items() if k != "token"
    }
    listed = client.ok("GET", "/credentials")["credentials"]
    assert [c["id"] for c in listed] == [created["id"]] and listed[0]["token"] is None
    client.ok("DELETE", f"/credentials/{created['id']}", status=204)
    assert store.authenticate(token) is None
    assert client.error("DELETE", f"/credentials/{created['id']}")["status_code"] == 404
    types = event_types(store)
    assert types[:2] == ["tunnel_credential_deleted.v0", "tunnel_credential_created.v0"]
    for event in store.list_events():
        assert "token" not in json.dumps(event.object) or event.object.get("token") is None


def test_credential_refusals(client: Client) -> None:
    error = client.error("POST", "/credentials", {"acl": ["connect:foo"]})
    assert error["error_code"] == "ERR_NGROK_10007" and "connect:foo" in error["msg"]
    error = client.error("POST", "/credentials", {"acl": "bind:*"})
    assert error["error_code"] == "ERR_NGROK_213" and "acl must be an array" in error["msg"]
    error = client.error("POST", "/credentials", {"acl": [1]})
    assert "acl[0] must be a string" in error["msg"]
    error = client.error("POST", "/credentials", {"owner_id": "service_NOPE"})
    assert error["error_code"] == "ERR_NGROK_380" and "service_NOPE" in error["msg"]
    error = client.error("POST", "/credentials", {"descripton": "typo"})
    assert "'descripton'" in error["msg"] and "description" in error["msg"]
    error = client.error("POST", "/credentials", {"precomputed_token": "x"})
    assert "not supported" in error["msg"]
    error = client.error("POST", "/credentials", {"description": "x" * 256})
    assert "256 bytes" in error["msg"]
    assert client.error("POST", "/credentials", raw=b"[1, 2]")["msg"].endswith("not an array.")
    assert "not valid JSON" in client.error("POST", "/credentials", raw=b"{nope")["msg"]
    assert "not valid JSON" in client.error("POST", "/credentials", raw=b"[" * 100_000)["msg"]
    assert client.error("POST", "/credentials", raw=b"\xff\xfe")["error_code"] == "ERR_NGROK_213"


def test_null_fields_mean_not_given(client: Client) -> None:
    created = client.ok(
        "POST", "/credentials", {"description": None, "owner_id": None, "acl": None}, status=201
    )
    assert created["acl"] == [] and created["owner_id"] is None and created["description"] == ""


def test_credential_patch_active_revokes_and_restores(
    client: Client, store: SQLiteStore, live: FakeLive
) -> None:
    created = client.ok("POST", "/credentials", {}, status=201)
    live.add_session(created["id"], None, 1)
    revoked = client.ok("PATCH", f"/credentials/{created['id']}", {"active": False})
    assert revoked["active"] is False and "ts_1" in live.stopped
    assert store.authenticate(created["token"]) is None
    client.ok("PATCH", f"/credentials/{created['id']}", {"active": True})
    assert store.authenticate(created["token"]) is not None


def test_credential_create_with_limits(client: Client, store: SQLiteStore) -> None:
    created = client.ok(
        "POST", "/credentials", {"max_sessions": 2, "max_endpoints": 10}, status=201
    )
    assert (created["max_sessions"], created["max_endpoints"]) == (2, 10)
    credential = store.authenticate(created["token"])
    assert credential is not None
    assert (credential.max_sessions, credential.max_endpoints) == (2, 10)
    assert client.ok("GET", f"/credentials/{created['id']}")["max_sessions"] == 2
    event = store.list_events(event_type="tunnel_credential_created.v0")[0]
    assert (event.object["max_sessions"], event.object["max_endpoints"]) == (2, 10)
    unlimited = client.ok(
        "POST", "/credentials", {"max_sessions": None, "max_endpoints": None}, status=201
    )
    assert (unlimited["max_sessions"], unlimited["max_endpoints"]) == (None, None)


def test_credential_patch_changes_ngrok_fields_and_limits(
    client: Client, store: SQLiteStore, live: FakeLive
) -> None:
    created = client.ok(
        "POST",
        "/credentials",
        {"description": "box", "metadata": "m", "acl": ["bind:a.test"], "max_sessions": 3},
        status=201,
    )
    uri = f"/credentials/{created['id']}"
    live.add_session(created["id"], None, 1)
    updated = client.ok(
        "PATCH",
        uri,
        {
            "description": "front desk",
            "metadata": '{"site": 2}',
            "acl": ["bind:*.clinic-a.internal"],
            "max_endpoints": 4,
        },
    )
    expected = {
        **created,
        "token": None,
        "description": "front desk",
        "metadata": '{"site": 2}',
        "acl": ["bind:*.clinic-a.internal"],
        "max_sessions": 3,  # not in the body: kept
        "max_endpoints": 4,
    }
    assert updated == expected
    assert client.ok("GET", uri) == expected
    assert live.stopped == {}  # a change that is not a revocation leaves sessions alone
    credential = store.authenticate(created["token"])  # the token keeps working
    assert credential is not None and credential.acl == ("bind:*.clinic-a.internal",)
    event = store.list_events(event_type="tunnel_credential_updated.v0")[0]
    assert event.object == {**expected, "uri": uri}
    assert event.principal is not None and event.principal["source"] == "API"
    # null removes a limit; other null fields mean "not given"; an empty ACL is unrestricted.
    cleared = client.ok(
        "PATCH", uri, {"max_sessions": None, "description": None, "acl": [], "active": None}
    )
    assert cleared == {**expected, "max_sessions": None, "acl": []}
    both = client.ok("PATCH", uri, {"max_sessions": 7, "max_endpoints": None, "active": False})
    assert (both["max_sessions"], both["max_endpoints"], both["active"]) == (7, None, False)
    assert "ts_1" in live.stopped and store.authenticate(created["token"]) is None
    assert event_types(store)[:3] == ["tunnel_credential_updated.v0"] * 3


def test_credential_patch_with_nothing_changes_nothing(client: Client, store: SQLiteStore) -> None:
    created = client.ok("POST", "/credentials", {"max_sessions": 1}, status=201)
    before = event_types(store)
    assert client.ok("PATCH", f"/credentials/{created['id']}", {}) == {**created, "token": None}
    assert client.ok("PATCH", f"/credentials/{created['id']}")["max_sessions"] == 1
    assert event_types(store) == before


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"max_sessions": 0}, "max_sessions must be from 1 to 1000000 (or null for no limit)"),
        ({"max_endpoints": -3}, "max_endpoints must be from 1 to 1000000"),
        ({"max_sessions": 1_000_001}, "max_sessions must be from 1 to 1000000"),
        ({"max_sessions": "3"}, "max_sessions must be a whole number (or null for no limit)"),
        ({"max_endpoints": True}, "max_endpoints must be a whole number"),
        ({"max_endpoints": 2.5}, "max_endpoints must be a whole number"),
        ({"max_sessions": [1]}, "max_sessions must be a whole number"),
        ({"description": "x" * 256}, "description is 256 bytes"),
        ({"metadata": 7}, "metadata must be a string"),
        ({"active": "no"}, "active must be true or false"),
        ({"owner_id": "service_X"}, "Unknown field 'owner_id'"),
        ({"token": "x"}, "Unknown field 'token'"),
    ],
)
def test_credential_patch_refusals(
    client: Client, store: SQLiteStore, body: dict[str, Any], message: str
) -> None:
    created = client.ok("POST", "/credentials", {"description": "box"}, status=201)
    before = store.get_credential(created["id"])
    # A valid change alongside the bad field is not applied either.
    error = client.error("PATCH", f"/credentials/{created['id']}", {"metadata": "new", **body})
    assert error["status_code"] == 400 and error["error_code"] == "ERR_NGROK_213", error
    assert message in error["msg"], error
    assert store.get_credential(created["id"]) == before
    assert event_types(store)[0] == "tunnel_credential_created.v0"
    if "max_sessions" in body:  # and POST refuses the same values
        assert message in client.error("POST", "/credentials", body)["msg"]


def test_credential_patch_acl_that_does_not_parse(client: Client, store: SQLiteStore) -> None:
    created = client.ok("POST", "/credentials", {"acl": ["bind:a.test"]}, status=201)
    uri = f"/credentials/{created['id']}"
    error = client.error("PATCH", uri, {"acl": ["connect:foo"], "description": "new"})
    assert error["error_code"] == "ERR_NGROK_10007" and "connect:foo" in error["msg"]
    assert client.error("PATCH", uri, {"acl": "bind:*"})["error_code"] == "ERR_NGROK_213"
    assert client.ok("GET", uri) == {**created, "token": None}


def test_credential_patch_of_unknown_or_foreign_credentials_is_404(
    client: Client, store: SQLiteStore
) -> None:
    assert client.error("PATCH", "/credentials/cr_NOPE", {"description": "x"})["status_code"] == 404
    with sqlite3.connect(store.path) as raw:
        raw.execute(
            "INSERT INTO accounts (id, name, created_at)"
            " VALUES ('acct_other', 'other', '2025-01-01T00:00:00Z')"
        )
    foreign, _ = store.create_credential(account_id="acct_other", max_sessions=1)
    error = client.error("PATCH", f"/credentials/{foreign.id}", {"max_sessions": None})
    assert error["status_code"] == 404
    assert store.get_credential(foreign.id) == foreign


# ---------------------------------------------------------------------------- API keys


def test_api_key_lifecycle(client: Client, store: SQLiteStore) -> None:
    created = client.ok("POST", "/api_keys", {"description": "ci"}, status=201)
    assert created["id"].startswith("ak_") and created["token"]
    assert set(created) == {
        "id",
        "uri",
        "description",
        "metadata",
        "created_at",
        "token",
        "owner_id",
    }
    listed = client.ok("GET", "/api_keys")
    assert [k["description"] for k in listed["keys"]] == ["ci", "test key"]
    assert all(k["token"] is None for k in listed["keys"])
    assert client.ok("GET", f"/api_keys/{created['id']}")["token"] is None
    other = Client(client.api, created["token"])
    assert other.ok("GET", "/api_keys")["keys"][0]["id"] == created["id"]
    client.ok("DELETE", f"/api_keys/{created['id']}", status=204)
    assert other.error("GET", "/api_keys")["error_code"] == "ERR_NGROK_203"
    assert event_types(store)[:2] == ["api_key_deleted.v0", "api_key_created.v0"]
    assert client.error("PATCH", "/api_keys/ak_X", {"description": "x"})["status_code"] == 404


def test_api_key_patch(client: Client, store: SQLiteStore) -> None:
    created = client.ok("POST", "/api_keys", {"description": "ci", "metadata": "m"}, status=201)
    uri = f"/api_keys/{created['id']}"
    updated = client.ok("PATCH", uri, {"description": "deploys"})
    expected = {**created, "token": None, "description": "deploys"}
    assert updated == expected
    both = client.ok("PATCH", uri, {"description": "", "metadata": '{"team": "ops"}'})
    assert both == {**expected, "description": "", "metadata": '{"team": "ops"}'}
    assert client.ok("GET", uri) == both
    assert client.ok("PATCH", uri, {"description": None}) == both  # null: not given
    key = store.authenticate_api_key(created["token"])  # the token keeps working
    assert key is not None and key.metadata == '{"team": "ops"}'
    assert event_types(store)[:2] == ["api_key_updated.v0", "api_key_updated.v0"]
    event = store.list_events(event_type="api_key_updated.v0")[0]
    assert event.object == {**both, "uri": uri}
    assert event.principal is not None and event.principal["source"] == "API"
    error = client.error("PATCH", uri, {"description": "x", "owner_id": "service_X"})
    assert error["error_code"] == "ERR_NGROK_213" and "'owner_id'" in error["msg"]
    error = client.error("PATCH", uri, {"metadata": "m" * 4097})
    assert error["error_code"] == "ERR_NGROK_213" and "4097 bytes" in error["msg"]
    assert client.error("PATCH", uri, {"description": 1})["status_code"] == 400
    assert client.ok("GET", uri) == both
    assert event_types(store)[0] == "api_key_updated.v0"
    assert len(store.list_events(event_type="api_key_updated.v0")) == 2


# ---------------------------------------------------------------------------- sessions, endpoints


def test_tunnel_sessions_list_get_stop(client: Client, store: SQLiteStore, live: FakeLive) -> None:
    credential = store.create_credential()[0]
    live.add_session(credential.id, None, 1)
    live.add_session(credential.id, None, 2)
    listed = client.ok("GET", "/tunnel_sessions")["tunnel_sessions"]
    assert [s["id"] for s in listed] == ["ts_2", "ts_1"]
    assert listed[0] == {
        "id": "ts_2",
        "uri": f"{BASE}/tunnel_sessions/ts_2",
        "agent_version": "3.1.0",
        "credential": {"id": credential.id, "uri": f"{BASE}/credentials/{credential.id}"},
        "ip": "192.0.2.7",
        "metadata": "clinic box",
        "os": "linux",
        "region": "local",
        "started_at": "2025-01-02T03:04:02Z",
        "transport": "ngrok/2",
    }
    assert client.ok("GET", "/tunnel_sessions/ts_1")["id"] == "ts_1"
    assert client.ok("POST", "/tunnel_sessions/ts_1/stop", status=204) is None
    assert "admin API" in live.stopped["ts_1"]
    assert client.error("GET", "/tunnel_sessions/ts_1")["status_code"] == 404
    assert client.error("POST", "/tunnel_sessions/ts_1/stop")["status_code"] == 404
    # Without remote management (no SessionControl), restart and update are 4xx with a code.
    restart = client.error("POST", "/tunnel_sessions/ts_2/restart")
    assert (restart["status_code"], restart["error_code"]) == (400, "ERR_NGROK_804")
    update = client.error("POST", "/tunnel_sessions/ts_2/update")
    assert (update["status_code"], update["error_code"]) == (400, "ERR_NGROK_806")


def test_sessions_of_another_account_are_invisible(
    client: Client, store: SQLiteStore, live: FakeLive
) -> None:
    live.add_session("cr_SOMEONE_ELSES", None, 1)
    assert client.ok("GET", "/tunnel_sessions")["tunnel_sessions"] == []
    assert client.error("POST", "/tunnel_sessions/ts_1/stop")["status_code"] == 404
    assert live.stopped == {}


def test_endpoints_list_filter_get(client: Client, store: SQLiteStore, live: FakeLive) -> None:
    user = store.create_service_user("clinic-a")
    credential = store.create_credential(owner_id=user.id)[0]
    live.add_session(credential.id, user.id, 1)
    live.add_session(credential.id, user.id, 2)
    listed = client.ok("GET", "/endpoints")["endpoints"]
    assert [e["url"] for e in listed] == ["tcp://127.0.0.1:21002", "tcp://127.0.0.1:21001"]
    first = listed[0]
    assert first["id"].startswith("ep_") and first["type"] == "ephemeral"
    assert first["public_url"] == first["url"] and first["proto"] == "tcp"
    assert first["port"] == 21002 and first["host"] == "127.0.0.1"
    assert first["tunnel_session"] == {"id": "ts_2", "uri": f"{BASE}/tunnel_sessions/ts_2"}
    assert first["principal"]["id"] == user.id
    by_url = client.ok("GET", "/endpoints?url=tcp://127.0.0.1:21001")["endpoints"]
    assert [e["id"] for e in by_url] == [listed[1]["id"]]
    by_id = client.ok("GET", f"/endpoints?id={first['id']}&id=ep_NONE")["endpoints"]
    assert [e["id"] for e in by_id] == [first["id"]]
    assert client.ok("GET", f"/endpoints/{first['id']}") == first
    assert client.error("GET", "/endpoints/ep_NONE")["status_code"] == 404
    not_offered = client.error("POST", "/endpoints", {"url": "https://x"})
    assert (not_offered["status_code"], not_offered["error_code"]) == (400, "ERR_NGROK_400")
    assert "does not offer cloud endpoints" in not_offered["msg"]


def test_endpoints_list_and_get_show_each_traffic_policy(
    client: Client, store: SQLiteStore, live: FakeLive
) -> None:
    credential = store.create_credential()[0]
    session = live.add_session(credential.id, None, 1)
    text = '{"on_http_request":[{"actions":[{"type":"deny","config":{"status_code":403}}]}]}'
    live.online.append(
        EndpointInfo(
            id=endpoint_id(session.id, "tun_policy"),
            url="https://app.burrow.localhost",
            proto="https",
            port=None,
            session_id=session.id,
            owner_id=None,
            started_at=session.started_at,
            traffic_policy=text,
        )
    )
    shown = {e["url"]: e for e in client.ok("GET", "/endpoints")["endpoints"]}
    assert shown["https://app.burrow.localhost"]["traffic_policy"] == text
    assert shown["tcp://127.0.0.1:21001"]["traffic_policy"] == ""
    got = client.ok("GET", f"/endpoints/{endpoint_id(session.id, 'tun_policy')}")
    assert got["traffic_policy"] == text
    assert got == shown["https://app.burrow.localhost"]


def test_https_and_internal_endpoints_show_their_host_and_port(
    client: Client, store: SQLiteStore, live: FakeLive
) -> None:
    credential = store.create_credential()[0]
    session = live.add_session(credential.id, None, 1)
    for n, (url, proto) in enumerate(
        [
            ("https://app.burrow.localhost", "https"),
            ("https://dev.burrow.localhost:8443", "https"),
            ("tls://db.clinic.internal:5432", "tls"),
            ("http://[::1]", "http"),
        ]
    ):
        live.online.append(
            EndpointInfo(
                id=endpoint_id(session.id, f"tun_x{n}"),
                url=url,
                proto=proto,
                port=None,
                session_id=session.id,
                owner_id=None,
                started_at=session.started_at,
            )
        )
    shown = {e["url"]: e for e in client.ok("GET", "/endpoints")["endpoints"]}
    app = shown["https://app.burrow.localhost"]
    assert (app["host"], app["port"], app["hostport"], app["scheme"]) == (
        "app.burrow.localhost",
        443,
        "app.burrow.localhost:443",
        "https",
    )
    assert shown["https://dev.burrow.localhost:8443"]["port"] == 8443
    assert shown["tls://db.clinic.internal:5432"]["hostport"] == "db.clinic.internal:5432"
    assert shown["http://[::1]"]["hostport"] == "[::1]:80"


# ---------------------------------------------------------------------------- paging and events


def test_paging_with_limit_and_before_id(client: Client) -> None:
    ids = [
        client.ok("POST", "/service_users", {"name": f"u{n}"}, status=201)["id"] for n in range(5)
    ]
    newest_first = ids[::-1]
    first = client.ok("GET", "/service_users?limit=2")
    assert [u["id"] for u in first["service_users"]] == newest_first[:2]
    assert first["next_page_uri"] == (f"{BASE}/service_users?before_id={newest_first[1]}&limit=2")
    target = first["next_page_uri"].removeprefix(BASE)
    second = client.ok("GET", target)
    assert [u["id"] for u in second["service_users"]] == newest_first[2:4]
    last = client.ok("GET", second["next_page_uri"].removeprefix(BASE))
    assert [u["id"] for u in last["service_users"]] == newest_first[4:]
    assert last["next_page_uri"] is None
    assert client.ok("GET", "/service_users?limit=5")["next_page_uri"] is None


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("limit=0", "limit must be a whole number from 1 to 100"),
        ("limit=101", "limit must be a whole number from 1 to 100"),
        ("limit=abc", "limit must be"),
        ("limit=1&limit=2", "more than once"),
        ("before_id=service_GONE", "names nothing in this list"),
        ("filter=obj.id%3D%3D1", "CEL list filters"),
        ("sort=asc", "Unknown query parameter 'sort'"),
        ("a=1&b", "could not be parsed"),
    ],
)
def test_bad_queries(client: Client, query: str, message: str) -> None:
    error = client.error("GET", f"/service_users?{query}")
    assert error["error_code"] == "ERR_NGROK_230" and message in error["msg"], error


def test_query_field_count_is_bounded(client: Client) -> None:
    error = client.error("GET", "/service_users?" + "&".join(f"x{n}=1" for n in range(1000)))
    assert error["status_code"] == 400


def test_events_list_newest_first_with_type_filter_and_paging(
    client: Client, store: SQLiteStore
) -> None:
    for n in range(3):
        client.ok("POST", "/service_users", {"name": f"u{n}"}, status=201)
    client.ok("POST", "/credentials", {}, status=201)
    events = client.ok("GET", "/events")["events"]
    assert [e["event_type"] for e in events] == [
        "tunnel_credential_created.v0",
        "service_user_created.v0",
        "service_user_created.v0",
        "service_user_created.v0",
    ]
    assert set(events[0]) == {
        "event_id",
        "event_type",
        "event_timestamp",
        "account_id",
        "principal",
        "object",
    }
    assert events[0]["event_timestamp"].endswith("Z")
    page = client.ok("GET", "/events?type=service_user_created.v0&limit=2")
    assert [e["object"]["name"] for e in page["events"]] == ["u2", "u1"]
    assert "type=service_user_created.v0" in page["next_page_uri"]
    rest = client.ok("GET", page["next_page_uri"].removeprefix(BASE))
    assert [e["object"]["name"] for e in rest["events"]] == ["u0"]
    assert rest["next_page_uri"] is None
    assert client.error("GET", "/events?before_id=ev_GONE")["error_code"] == "ERR_NGROK_230"


# ---------------------------------------------------------------------------- auth, version, routes


def test_no_or_bad_key_is_401_then_429(client: Client) -> None:
    assert client.error("GET", "/credentials", headers=())["error_code"] == "ERR_NGROK_200"
    bad = (("authorization", "Bearer AAAA_BBBB"),)
    assert client.error("GET", "/credentials", headers=bad)["error_code"] == "ERR_NGROK_203"
    assert client.error("GET", "/credentials", headers=bad)["status_code"] == 401
    # The budget (3) is spent: a wrong key from that address is refused at once ...
    limited = client.call("GET", "/credentials", headers=bad)
    assert limited.status == 429
    assert json.loads(limited.body)["error_code"] == "ERR_NGROK_226"
    assert ("retry-after", "10") in limited.headers
    # ... but the right key still works (issue 9.6: lock out the failures, not the key).
    assert client.ok("GET", "/credentials")["credentials"] == []
    assert client.call("GET", "/credentials", headers=()).status == 429
    other = Client(client.api, client.token, remote="192.0.2.99")
    assert other.ok("GET", "/credentials") == {
        "credentials": [],
        "uri": f"{BASE}/credentials",
        "next_page_uri": None,
    }
    client.now = 10.0
    assert client.ok("GET", "/credentials")["credentials"] == []


def test_successes_do_not_spend_the_budget(client: Client) -> None:
    for _ in range(20):
        client.ok("GET", "/service_users")


def test_ngrok_version_header(client: Client) -> None:
    auth = ("authorization", f"Bearer {client.token}")
    assert client.call("GET", "/service_users", headers=(auth,)).status == 200
    error = client.error("GET", "/service_users", headers=(auth, ("ngrok-version", "1")))
    assert error["error_code"] == "ERR_NGROK_217" and error["status_code"] == 400
    twice = (auth, auth)
    assert client.error("GET", "/service_users", headers=twice)["status_code"] == 400


def test_unknown_paths_and_methods(client: Client) -> None:
    assert client.error("GET", "/nope")["status_code"] == 404
    assert client.error("GET", "/")["status_code"] == 404
    assert client.error("GET", "/credentials/a/b/c")["status_code"] == 404
    assert client.error("GET", "/credentials/" + "x" * 500)["status_code"] == 404
    response = client.call("PUT", "/credentials")
    assert response.status == 405 and ("allow", "GET, POST") in response.headers
    assert client.error("GET", "http://evil/credentials")["status_code"] == 400


def test_a_broken_store_is_503_not_a_crash(client: Client, store: SQLiteStore) -> None:
    store.close()
    error = client.error("GET", "/service_users")
    assert error["status_code"] == 503 and "store" in error["msg"]


# ------------------------------------------------------------------- remote management


@dataclass
class FakeControl:
    """Agents as remote management sees them: what each said in Auth, and its answers."""

    said: dict[str, AuthExtra] = field(default_factory=dict)
    answers: dict[str, OpAnswer] = field(default_factory=dict)
    asked: list[tuple[str, RemoteOp, str]] = field(default_factory=list)

    def capabilities(self, session_id: str) -> AuthExtra | None:
        return self.said.get(session_id)

    async def remote_op(self, session_id: str, op: RemoteOp, who: str) -> OpAnswer:
        self.asked.append((session_id, op, who))
        return self.answers.get(session_id, OpAnswer())


BURROW_AGENT = AuthExtra(
    stop_unsupported_error="",
    restart_unsupported_error="",
    update_unsupported_error="Burrow does not support remote update",
)


@pytest.fixture
def control() -> FakeControl:
    return FakeControl()


@pytest.fixture
def managed(
    store: SQLiteStore, live: FakeLive, control: FakeControl, tmp_path: Path
) -> Client:
    api = AdminApi(store, live, EventLog(store, tmp_path / "events.jsonl"), control=control)
    _, token = store.create_api_key(description="ops laptop")
    return Client(api, token)


def settle(response: Response) -> Response:
    """The response the HTTP shell sends: the deferred one, once the agent has answered."""
    assert response.deferred is not None
    return trio.run(response.deferred)


def test_stop_and_restart_ask_the_agent_and_name_the_key(
    managed: Client, store: SQLiteStore, live: FakeLive, control: FakeControl
) -> None:
    credential = store.create_credential()[0]
    live.add_session(credential.id, None, 1)
    control.said["ts_1"] = BURROW_AGENT
    (key,) = store.list_api_keys(account_id=credential.account_id)
    for op in ("stop", "restart"):
        response = settle(managed.call("POST", f"/tunnel_sessions/ts_1/{op}", {"id": "ts_1"}))
        assert (response.status, response.body) == (204, b"")
    who = f"the admin API, key {key.id} (ops laptop)"
    assert control.asked == [("ts_1", RemoteOp.STOP, who), ("ts_1", RemoteOp.RESTART, who)]
    assert live.stopped == {}, "the agent ends its session itself; the edge does not cut it"


def test_an_op_the_agent_said_it_cannot_do_is_a_4xx_with_its_reason(
    managed: Client, store: SQLiteStore, live: FakeLive, control: FakeControl
) -> None:
    credential = store.create_credential()[0]
    live.add_session(credential.id, None, 1)
    control.said["ts_1"] = BURROW_AGENT
    error = managed.error("POST", "/tunnel_sessions/ts_1/update")
    assert (error["status_code"], error["error_code"]) == (400, "ERR_NGROK_806")
    assert error["msg"] == (
        "This agent does not support remote updating: Burrow does not support remote update."
    )
    assert control.asked == [], "nothing is sent to an agent that said it cannot"


def test_an_agents_failure_and_silence_reach_the_caller_with_codes(
    managed: Client, store: SQLiteStore, live: FakeLive, control: FakeControl
) -> None:
    credential = store.create_credential()[0]
    live.add_session(credential.id, None, 1)
    live.add_session(credential.id, None, 2)
    control.said.update(ts_1=BURROW_AGENT, ts_2=BURROW_AGENT)
    control.answers["ts_1"] = OpAnswer(error="Callback error: busy")
    control.answers["ts_2"] = OpAnswer(undelivered="no answer in time")
    failed = settle(managed.call("POST", "/tunnel_sessions/ts_1/stop"))
    body = json.loads(failed.body)
    assert (failed.status, body["error_code"]) == (400, "ERR_NGROK_807")
    assert body["msg"].endswith(": Callback error: busy")
    lost = settle(managed.call("POST", "/tunnel_sessions/ts_2/restart"))
    assert (lost.status, json.loads(lost.body)["error_code"]) == (502, "ERR_NGROK_810")


def test_remote_ops_on_unknown_or_foreign_sessions_are_404(
    managed: Client, live: FakeLive, control: FakeControl
) -> None:
    live.add_session("cr_SOMEONE_ELSES", None, 1)
    control.said["ts_1"] = BURROW_AGENT
    for op in ("stop", "restart", "update"):
        assert managed.error("POST", f"/tunnel_sessions/ts_1/{op}")["status_code"] == 404
        assert managed.error("POST", f"/tunnel_sessions/ts_9/{op}")["status_code"] == 404
    assert control.asked == []
