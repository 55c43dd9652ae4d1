"""Cloud endpoints through the admin API (`edge.admin.cloud_endpoints` behind
`edge.admin.routes`): ngrok's shapes and codes, the audit events, and the running edge's
registry changing with each call. Real SQLite store, real registry; no sockets."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from edge.admin.auth import FailedAuthLimiter
from edge.admin.live import EndpointInfo, endpoint_id
from edge.admin.routes import AdminApi
from edge.config import EdgeConfig
from edge.endpoints.cloud import is_cloud
from edge.endpoints.cloud_live import CloudEndpoints
from edge.endpoints.registry import Endpoint, EndpointRegistry, Member
from edge.events import EventLog
from edge.store import SQLiteStore
from edge.tunnels.binding import BindResolver
from tests.edge.admin.harness import BASE, Client, FakeLive

ANSWER = json.dumps(
    {"on_http_request": [{"actions": [{"type": "custom-response", "config": {"body": "one"}}]}]}
)
OTHER = "on_http_request:\n  - actions: [{type: custom-response, config: {body: two}}]\n"
NOT_GUARANTEED = "on_http_request:\n  - actions: [{type: add-headers, config: {headers: {a: b}}}]"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    with SQLiteStore.open(tmp_path / "burrow.db") as opened:
        yield opened


@pytest.fixture
def registry() -> EndpointRegistry:
    return EndpointRegistry()


@pytest.fixture
def live(store: SQLiteStore) -> FakeLive:
    return FakeLive(store)


@pytest.fixture
def client(
    store: SQLiteStore, live: FakeLive, registry: EndpointRegistry, tmp_path: Path
) -> Client:
    resolver = BindResolver(EdgeConfig(domain="burrow.localhost"), registry)
    cloud = CloudEndpoints(registry, resolver, public_url=lambda e: f"{e.url}:8443")
    api = AdminApi(
        store,
        live,
        EventLog(store, tmp_path / "events.jsonl"),
        limiter=FailedAuthLimiter(burst=3, refill_seconds=10),
        cloud=cloud,
    )
    _, token = store.create_api_key(description="ops key")
    return Client(api, token)


def served_text(registry: EndpointRegistry, url: str) -> str | None:
    endpoint = registry.lookup(url)
    if endpoint is None:
        return None
    assert is_cloud(endpoint.members[0])
    assert endpoint.policy is not None
    return endpoint.policy.text


def create(client: Client, **fields: Any) -> dict[str, Any]:
    body = {"type": "cloud", "url": "https://api.acme.example", "traffic_policy": ANSWER}
    body.update(fields)
    created: dict[str, Any] = client.ok("POST", "/endpoints", body, status=201)
    return created


def test_create_answers_ngroks_shape_serves_it_and_audits_it(
    client: Client, store: SQLiteStore, registry: EndpointRegistry
) -> None:
    created = create(client, description="Acme API", metadata='{"env": "prod"}')
    assert created["id"].startswith("ep_")
    assert created["uri"] == f"{BASE}/endpoints/{created['id']}"
    assert created["type"] == "cloud"
    assert created["url"] == "https://api.acme.example"
    assert created["public_url"] == "https://api.acme.example:8443"
    assert (created["proto"], created["scheme"], created["host"], created["port"]) == (
        "https",
        "https",
        "api.acme.example",
        443,
    )
    assert created["hostport"] == "api.acme.example:443"
    assert created["traffic_policy"] == ANSWER
    assert created["bindings"] == ["public"] and created["pooling_enabled"] is False
    assert (created["description"], created["metadata"]) == ("Acme API", '{"env": "prod"}')
    assert created["tunnel_session"] is None
    assert created["created_at"].endswith("Z") and created["updated_at"] == created["created_at"]
    assert served_text(registry, "https://api.acme.example") == ANSWER
    (event,) = store.list_events(event_type="endpoint_created.v0")
    assert event.object["id"] == created["id"] and event.object["uri"].startswith("/endpoints/")
    assert event.principal is not None and event.principal["source"] == "API"
    assert store.get_cloud_endpoint(created["id"]) is not None


def test_get_list_filters_and_pages_with_agent_endpoints_alongside(
    client: Client, store: SQLiteStore, live: FakeLive
) -> None:
    credential = store.create_credential()[0]
    live.add_session(credential.id, None, 1)
    first = create(client, url="https://one.acme.example")
    second = create(
        client,
        url="tls://db.acme.example",
        traffic_policy="on_tcp_connect: [{actions: [{type: deny}]}]",
    )
    assert client.ok("GET", f"/endpoints/{first['id']}") == first
    listed = client.ok("GET", "/endpoints")
    ids = [e["id"] for e in listed["endpoints"]]
    agent_id = endpoint_id("ts_1", "tun_1")
    assert set(ids) == {first["id"], second["id"], agent_id}
    assert ids.index(second["id"]) < ids.index(first["id"])  # newest first
    types = {e["id"]: e["type"] for e in listed["endpoints"]}
    assert types[agent_id] == "ephemeral" and types[first["id"]] == "cloud"
    by_url = client.ok("GET", "/endpoints?url=tls://db.acme.example")["endpoints"]
    assert [e["id"] for e in by_url] == [second["id"]]
    by_public_url = client.ok("GET", "/endpoints?url=https://one.acme.example:8443")["endpoints"]
    assert [e["id"] for e in by_public_url] == [first["id"]]
    by_id = client.ok("GET", f"/endpoints?id={first['id']}&id={agent_id}")["endpoints"]
    assert {e["id"] for e in by_id} == {first["id"], agent_id}
    paged: list[str] = []
    target: str | None = "/endpoints?limit=1"
    while target is not None:  # one a page, following next_page_uri as ngrok's client does
        page = client.ok("GET", target)
        assert len(page["endpoints"]) == 1
        paged.append(page["endpoints"][0]["id"])
        target = page["next_page_uri"] and page["next_page_uri"].removeprefix(BASE)
    assert paged == ids


def test_update_changes_what_is_served_at_once(
    client: Client, store: SQLiteStore, registry: EndpointRegistry
) -> None:
    created = create(client)
    updated = client.ok("PATCH", f"/endpoints/{created['id']}", {"traffic_policy": OTHER})
    assert updated["traffic_policy"] == OTHER
    assert updated["description"] == created["description"]
    assert served_text(registry, "https://api.acme.example") == OTHER
    moved = client.ok(
        "PATCH",
        f"/endpoints/{created['id']}",
        {"url": "https://v2.acme.example", "description": "moved", "metadata": None},
    )
    assert moved["url"] == "https://v2.acme.example" and moved["description"] == "moved"
    assert registry.lookup("https://api.acme.example") is None
    assert served_text(registry, "https://v2.acme.example") == OTHER
    assert [e.event_type for e in store.list_events(event_type="endpoint_updated.v0")] == [
        "endpoint_updated.v0"
    ] * 2


def test_an_update_that_would_not_answer_changes_nothing(
    client: Client, store: SQLiteStore, registry: EndpointRegistry
) -> None:
    created = create(client)
    error = client.error("PATCH", f"/endpoints/{created['id']}", {"traffic_policy": NOT_GUARANTEED})
    assert (error["error_code"], error["status_code"]) == ("ERR_NGROK_2235", 400)
    assert "not guaranteed to handle traffic" in error["msg"]
    assert client.ok("GET", f"/endpoints/{created['id']}") == created
    assert served_text(registry, "https://api.acme.example") == ANSWER
    assert store.list_events(event_type="endpoint_updated.v0") == []


def test_delete_takes_it_offline_and_audits_it(
    client: Client, store: SQLiteStore, registry: EndpointRegistry
) -> None:
    created = create(client)
    assert client.call("DELETE", f"/endpoints/{created['id']}").status == 204
    assert registry.lookup("https://api.acme.example") is None
    assert store.get_cloud_endpoint(created["id"]) is None
    assert client.error("GET", f"/endpoints/{created['id']}")["status_code"] == 404
    assert client.error("DELETE", f"/endpoints/{created['id']}")["status_code"] == 404
    (event,) = store.list_events(event_type="endpoint_deleted.v0")
    assert event.object["id"] == created["id"] and event.object["type"] == "cloud"
    again = create(client)  # the URL is free again
    assert again["id"] != created["id"]


@pytest.mark.parametrize(
    ("body", "code", "text"),
    [
        ({"traffic_policy": ""}, "ERR_NGROK_2235", "not guaranteed to handle traffic"),
        ({"traffic_policy": NOT_GUARANTEED}, "ERR_NGROK_2235", "no expressions"),
        (
            {"traffic_policy": "on_http_request: [{actions: [{type: nope}]}]"},
            "ERR_NGROK_2201",
            "traffic_policy: ",
        ),
        ({"traffic_policy": "on_http_request: ["}, "ERR_NGROK_2236", "traffic_policy: "),
        ({"url": None}, "ERR_NGROK_213", "url is required"),
        ({"traffic_policy": None}, "ERR_NGROK_213", "traffic_policy is required"),
        ({"type": "ephemeral"}, "ERR_NGROK_213", "must be 'cloud'"),
        ({"url": 5}, "ERR_NGROK_213", "url must be a string"),
        ({"pooling_enabled": "yes"}, "ERR_NGROK_213", "pooling_enabled must be true or false"),
        ({"bindings": ["public", "internal"]}, "ERR_NGROK_15006", "exactly one binding"),
        ({"bindings": ["kubernetes"]}, "ERR_NGROK_15005", "not a binding this edge offers"),
        ({"url": "https://"}, "ERR_NGROK_400", "needs a full URL"),
        ({"upstream_url": "http://x"}, "ERR_NGROK_213", "Unknown field 'upstream_url'"),
    ],
)
def test_create_refusals_carry_ngroks_codes_and_change_nothing(
    client: Client,
    store: SQLiteStore,
    registry: EndpointRegistry,
    body: dict[str, Any],
    code: str,
    text: str,
) -> None:
    full = {"type": "cloud", "url": "https://api.acme.example", "traffic_policy": ANSWER}
    full.update(body)
    full = {k: v for k, v in full.items() if v is not None}
    error = client.error("POST", "/endpoints", full)
    assert (error["error_code"], error["status_code"]) == (code, 400), error
    assert text in error["msg"]
    assert store.list_cloud_endpoints() == [] and len(registry) == 0
    assert store.list_events(event_type="endpoint_created.v0") == []


async def _agent(client_addr: str) -> trio.abc.HalfCloseableStream:
    raise trio.BrokenResourceError("no agent in these tests")


def test_a_url_held_by_an_agent_is_refused_with_18017_or_18016(
    client: Client, registry: EndpointRegistry, store: SQLiteStore
) -> None:
    member = Member(bind_id="tun_1", token="t", session_id="ts_1", client_id="c", opener=_agent)
    registry.add(
        Endpoint(
            url="https://api.acme.example",
            proto="https",
            host="api.acme.example",
            members=(member,),
        )
    )
    body = {"type": "cloud", "url": "https://api.acme.example", "traffic_policy": ANSWER}
    plain = client.error("POST", "/endpoints", body)
    assert plain["error_code"] == "ERR_NGROK_18017" and "Stop or delete" in plain["msg"]
    pooled = client.error("POST", "/endpoints", {**body, "pooling_enabled": True})
    assert pooled["error_code"] == "ERR_NGROK_18016"
    assert "does not have pooling enabled" in pooled["msg"]  # the agent's endpoint does not
    assert "--pooling-enabled" in pooled["msg"]  # and how to fix that
    assert store.list_cloud_endpoints() == []
    # an update onto the agent's URL is refused the same way, and the cloud endpoint stays
    other = create(client, url="https://other.acme.example")
    moved = client.error("PATCH", f"/endpoints/{other['id']}", {"url": "https://api.acme.example"})
    assert moved["error_code"] == "ERR_NGROK_18017"
    assert served_text(registry, "https://other.acme.example") == ANSWER


def test_agent_endpoints_are_read_only_and_unknown_ids_are_404(
    client: Client, store: SQLiteStore, live: FakeLive
) -> None:
    credential = store.create_credential()[0]
    live.add_session(credential.id, None, 1)
    agent: EndpointInfo = live.online[0]
    for method, body in (("PATCH", {"description": "x"}), ("DELETE", None)):
        error = client.error(method, f"/endpoints/{agent.id}", body)
        assert error["status_code"] == 400 and "agent endpoint" in error["msg"]
        assert client.error(method, "/endpoints/ep_NONE", body)["status_code"] == 404
    assert [e["id"] for e in client.ok("GET", "/endpoints")["endpoints"]] == [agent.id]


def test_cloud_endpoints_need_an_api_key(client: Client, store: SQLiteStore) -> None:
    body = {"type": "cloud", "url": "https://api.acme.example", "traffic_policy": ANSWER}
    error = client.error("POST", "/endpoints", body, headers=(("ngrok-version", "2"),))
    assert (error["status_code"], error["error_code"]) == (401, "ERR_NGROK_200")
    assert store.list_cloud_endpoints() == []
