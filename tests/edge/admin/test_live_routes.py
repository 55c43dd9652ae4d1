"""The admin API's handlers for tunnel sessions and endpoints (`edge.admin.live_routes`),
through `AdminApi` without sockets: listing, getting and stopping what runs, and remote
management (Stop, Restart, Update through the agent), against a real SQLite store in a temp dir
and small stand-ins for the running edge and the agents."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from edge.admin.live import EndpointInfo, endpoint_id
from edge.admin.routes import AdminApi, Response
from edge.events import EventLog
from edge.store import SQLiteStore
from edge.tunnels.remote_ops import OpAnswer, RemoteOp
from protocol.rpc.messages import AuthExtra
from tests.edge.admin.harness import BASE, Client, FakeLive

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
def managed(store: SQLiteStore, live: FakeLive, control: FakeControl, tmp_path: Path) -> Client:
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
