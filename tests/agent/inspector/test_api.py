"""The agent API's answers: ngrok's shapes, filters, refusals, and replay requests."""

from __future__ import annotations

import json

from agent.inspector.api import AgentView, ApiAnswer, EndpointView, ReplayAsked, answer
from agent.inspector.capture import CAPTURED_BODY_LIMIT, CaptureStore, ConnectionCapture

WEB = EndpointView(
    name="web",
    url="https://app.example",
    proto="https",
    upstream_url="http://localhost:8080",
    upstream_protocol="http1",
    inspect=True,
    traffic_policy="",
    pooling_enabled=False,
)
OFFLINE = EndpointView(
    name="db",
    url="",
    proto="tcp",
    upstream_url="tcp://localhost:5432",
    upstream_protocol="",
    inspect=False,
    traffic_policy="on_tcp_connect: []",
    pooling_enabled=True,
)
VIEW = AgentView(online=True, agent_version="0.1.0", latency=0.012, endpoints=(WEB, OFFLINE))


def capture(store: CaptureStore, name: str, request: bytes) -> None:
    c = ConnectionCapture(store, tunnel_name=name, remote_addr="1.2.3.4:5", clock=lambda: (0, 0))
    c.request_bytes(request)


def call(
    method: str,
    target: str,
    store: CaptureStore | None = None,
    body: object = None,
    content_type: str = "application/json",
) -> ApiAnswer | ReplayAsked:
    data = b"" if body is None else json.dumps(body).encode()
    return answer(method, target, data, content_type=content_type, store=store, view=VIEW)


def ok(result: ApiAnswer | ReplayAsked, status: int = 200) -> dict[str, object]:
    assert isinstance(result, ApiAnswer), result
    assert result.status == status, result.body
    return result.body or {}


def test_tunnels_in_ngroks_legacy_shape_only_online_ones() -> None:
    body = ok(call("GET", "/api/tunnels"))
    assert body == {
        "tunnels": [
            {
                "name": "web",
                "uri": "/api/tunnels/web",
                "public_url": "https://app.example",
                "proto": "https",
                "config": {"addr": "http://localhost:8080", "inspect": True},
            }
        ],
        "uri": "/api/tunnels",
    }
    assert ok(call("GET", "/api/tunnels/web"))["public_url"] == "https://app.example"
    assert ok(call("GET", "/api/tunnels/db"), 404)["msg"] == "no endpoint named 'db'"


def test_endpoints_list_every_configured_endpoint() -> None:
    body = ok(call("GET", "/api/endpoints/"))
    endpoints = body["endpoints"]
    assert isinstance(endpoints, list)
    assert [e["name"] for e in endpoints] == ["web", "db"]
    assert endpoints[1] == {
        "name": "db",
        "uri": "/api/endpoints/db",
        "url": "",
        "upstream": {"url": "tcp://localhost:5432", "protocol": ""},
        "inspect": False,
        "traffic_policy": "on_tcp_connect: []",
        "pooling_enabled": True,
    }


def test_status_says_online_with_the_latency_in_nanoseconds() -> None:
    assert ok(call("GET", "/api/status")) == {
        "uri": "/api/status",
        "status": "online",
        "agent_version": "0.1.0",
        "session": {"legs": [{"region": "", "latency": 12_000_000}]},
    }


def test_changing_endpoints_through_the_api_is_refused_not_ignored() -> None:
    for method, path in (("POST", "/api/endpoints"), ("DELETE", "/api/tunnels/web")):
        body = ok(call(method, path), 405)
        assert "does not start or stop endpoints" in str(body["msg"])


def test_requests_list_get_limit_filter_and_clear() -> None:
    store = CaptureStore(10**6)
    for n in range(4):
        capture(store, "web" if n % 2 else "api", f"GET /{n} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
    listed = ok(call("GET", "/api/requests/http", store))
    requests = listed["requests"]
    assert isinstance(requests, list)
    assert [r["request"]["uri"] for r in requests] == ["/3", "/2", "/1", "/0"]
    limited = ok(call("GET", "/api/requests/http?limit=1&tunnel_name=api", store))["requests"]
    assert isinstance(limited, list)
    assert [r["request"]["uri"] for r in limited] == ["/2"]
    one = ok(call("GET", f"/api/requests/http/{requests[0]['id']}", store))
    assert one["id"] == requests[0]["id"]
    assert ok(call("GET", "/api/requests/http/nope", store), 404)["details"] == {"id": "nope"}
    assert ok(call("GET", "/api/requests/http?limit=x", store), 400)
    assert call("DELETE", "/api/requests/http", store) == ApiAnswer(status=204)
    assert len(store) == 0


def test_replay_is_asked_for_a_whole_captured_request() -> None:
    store = CaptureStore(10**6)
    capture(store, "web", b"POST /hook HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi")
    (exchange,) = store
    asked = call("POST", "/api/requests/http", store, {"id": exchange.id})
    assert asked == ReplayAsked(exchange=exchange, tunnel_name="web")


def test_replay_refusals() -> None:
    store = CaptureStore(10**6)
    capture(store, "web", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\n\r\npart")
    size = CAPTURED_BODY_LIMIT + 1
    capture(store, "web", b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % size + b"b" * size)
    capture(store, "db", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    partial, cut, offline = list(store)
    path = "/api/requests/http"
    assert ok(call("POST", path, store, {"id": partial.id}), 409)
    assert "cannot be replayed" in str(ok(call("POST", path, store, {"id": cut.id}), 409)["msg"])
    assert ok(call("POST", path, store, {"id": offline.id}), 404)  # db is not online
    assert ok(call("POST", path, store, {"id": "missing"}), 404)
    assert ok(call("POST", path, store, ["not", "an", "object"]), 400)
    # A form-encoded POST is what another site could send without asking: refused.
    assert ok(call("POST", path, store, {"id": cut.id}, content_type="text/plain"), 415)


def test_requests_api_when_inspection_is_off() -> None:
    body = ok(call("GET", "/api/requests/http", None), 404)
    assert "inspection is off" in str(body["msg"])


def test_unknown_paths_and_root() -> None:
    assert ok(call("GET", "/api/nope"), 404)
    assert ok(call("GET", "/api/"))["tunnels"] == "/api/tunnels"
    assert ok(call("POST", "/api/status"), 405)
