"""The agent API on `web_addr`: what each request gets, decided from values (no sockets).

ngrok's agent API shapes (reference §2.2): `GET /api/`, `/api/status`, `/api/tunnels[/:name]`
(the legacy shape scripts read `public_url` and `config.addr` from), `/api/endpoints[/:name]`,
`GET /api/requests/http[?limit=&tunnel_name=]`, `GET /api/requests/http/:id`,
`DELETE /api/requests/http` and `POST /api/requests/http {"id", "tunnel_name"?}` (replay, which
the I/O shell carries out: `answer` returns `ReplayAsked` for it). Starting and stopping
endpoints through the API (`POST/PUT/DELETE /api/endpoints`, `POST/DELETE /api/tunnels`) is not
supported and is refused with 405 and a message saying so, rather than ignored.

A POST must say `Content-Type: application/json`: a web page on another site can send a
cross-origin POST without asking only with a form content type, so this keeps other sites from
replaying requests through a user's browser (the Host check in the shell covers DNS rebinding).
Errors are JSON: `{"status_code", "msg", "details"}`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from agent.inspector.capture import CaptureStore, Exchange
from agent.inspector.render import API_REQUESTS_PATH, exchange_json

__all__ = [
    "DEFAULT_LIST_LIMIT",
    "AgentView",
    "ApiAnswer",
    "EndpointView",
    "ReplayAsked",
    "answer",
]

#: How many requests `GET /api/requests/http` lists without `limit` (ngrok's inspector page
#: shows the latest 50 as well).
DEFAULT_LIST_LIMIT = 50

JSON = dict[str, object]


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointView:
    """One configured endpoint as the API shows it; `url` is empty until the edge bound it."""

    name: str
    url: str
    proto: str
    upstream_url: str
    upstream_protocol: str
    inspect: bool
    traffic_policy: str
    pooling_enabled: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentView:
    """What the API says about the agent, as of one request."""

    online: bool
    agent_version: str
    latency: float | None  # the last heartbeat round trip, seconds
    endpoints: tuple[EndpointView, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiAnswer:
    status: int
    body: JSON | None = None  # None: no body (204)
    headers: tuple[tuple[str, str], ...] = field(default=())


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayAsked:
    """Replay `exchange`'s request to `tunnel_name`'s upstream, then answer 204."""

    exchange: Exchange
    tunnel_name: str


def _error(status: int, msg: str, **details: object) -> ApiAnswer:
    return ApiAnswer(
        status=status, body={"status_code": status, "msg": msg, "details": dict(details)}
    )


def answer(
    method: str,
    target: str,
    body: bytes,
    *,
    content_type: str,
    store: CaptureStore | None,
    view: AgentView,
) -> ApiAnswer | ReplayAsked:
    """The answer to one API request (`target` is the path and query). `store` is None when
    inspection is off (`inspect_db_size: -1`): the requests API then says so with 404."""
    parts = urlsplit(target)
    path = parts.path.rstrip("/") or "/"
    query = parse_qs(parts.query)
    if path == "/api":
        return _only_get(method) or ApiAnswer(status=200, body=_root())
    if path == "/api/status":
        return _only_get(method) or ApiAnswer(status=200, body=_status(view))
    if path in ("/api/tunnels", "/api/endpoints") or path.startswith(
        ("/api/tunnels/", "/api/endpoints/")
    ):
        return _endpoints(method, path, view)
    if path == API_REQUESTS_PATH or path.startswith(API_REQUESTS_PATH + "/"):
        if store is None:
            return _error(404, "request inspection is off (agent.inspect_db_size is -1)")
        return _requests(method, path, query, body, content_type, store, view)
    return _error(404, f"no such API path: {path}")


def _only_get(method: str) -> ApiAnswer | None:
    if method in ("GET", "HEAD"):
        return None
    return _error(405, f"{method} is not allowed here; use GET")


def _root() -> JSON:
    return {
        "uri": "/api/",
        "status": "/api/status",
        "tunnels": "/api/tunnels",
        "endpoints": "/api/endpoints",
        "requests": API_REQUESTS_PATH,
    }


def _status(view: AgentView) -> JSON:
    legs = []
    if view.online:
        latency = None if view.latency is None else round(view.latency * 1e9)
        legs.append({"region": "", "latency": latency})
    return {
        "uri": "/api/status",
        "status": "online" if view.online else "reconnecting",
        "agent_version": view.agent_version,
        "session": {"legs": legs},
    }


def _tunnel(endpoint: EndpointView) -> JSON:
    return {
        "name": endpoint.name,
        "uri": f"/api/tunnels/{endpoint.name}",
        "public_url": endpoint.url,
        "proto": endpoint.proto,
        "config": {"addr": endpoint.upstream_url, "inspect": endpoint.inspect},
    }


def _endpoint(endpoint: EndpointView) -> JSON:
    return {
        "name": endpoint.name,
        "uri": f"/api/endpoints/{endpoint.name}",
        "url": endpoint.url,
        "upstream": {"url": endpoint.upstream_url, "protocol": endpoint.upstream_protocol},
        "inspect": endpoint.inspect,
        "traffic_policy": endpoint.traffic_policy,
        "pooling_enabled": endpoint.pooling_enabled,
    }


def _endpoints(method: str, path: str, view: AgentView) -> ApiAnswer:
    legacy = path.startswith("/api/tunnels")
    if method not in ("GET", "HEAD"):
        return _error(
            405,
            f"{method} {path}: Burrow's agent API does not start or stop endpoints; define "
            "them in the config file and restart the agent",
        )
    # ngrok's tunnels list holds only what is online; its endpoints list, what is configured.
    shown = [e for e in view.endpoints if e.url] if legacy else list(view.endpoints)
    collection = "/api/tunnels" if legacy else "/api/endpoints"
    render = _tunnel if legacy else _endpoint
    if path == collection:
        key = "tunnels" if legacy else "endpoints"
        return ApiAnswer(status=200, body={key: [render(e) for e in shown], "uri": collection})
    name = path.removeprefix(collection + "/")
    for endpoint in shown:
        if endpoint.name == name:
            return ApiAnswer(status=200, body=render(endpoint))
    return _error(404, f"no endpoint named {name!r}")


def _requests(
    method: str,
    path: str,
    query: dict[str, list[str]],
    body: bytes,
    content_type: str,
    store: CaptureStore,
    view: AgentView,
) -> ApiAnswer | ReplayAsked:
    if path != API_REQUESTS_PATH:
        if method not in ("GET", "HEAD"):
            return _error(405, f"{method} is not allowed here; use GET")
        id = path.removeprefix(API_REQUESTS_PATH + "/")
        exchange = store.get(id)
        if exchange is None:
            return _error(404, f"no captured request with id {id!r}", id=id)
        return ApiAnswer(status=200, body=exchange_json(exchange))
    if method in ("GET", "HEAD"):
        return _list(query, store)
    if method == "DELETE":
        store.clear()
        return ApiAnswer(status=204)
    if method == "POST":
        return _replay(body, content_type, store, view)
    return _error(405, f"{method} is not allowed here; use GET, POST or DELETE")


def _list(query: dict[str, list[str]], store: CaptureStore) -> ApiAnswer:
    limit_text = query.get("limit", [str(DEFAULT_LIST_LIMIT)])[-1]
    try:
        limit = int(limit_text)
    except ValueError:
        limit = -1
    if limit < 0:
        return _error(400, f"limit must be a whole number, not {limit_text!r}")
    tunnel_name = query.get("tunnel_name", [""])[-1]
    found = store.newest(limit=limit, tunnel_name=tunnel_name)
    return ApiAnswer(
        status=200,
        body={"uri": API_REQUESTS_PATH, "requests": [exchange_json(e) for e in found]},
    )


def _replay(
    body: bytes, content_type: str, store: CaptureStore, view: AgentView
) -> ApiAnswer | ReplayAsked:
    if content_type.split(";", 1)[0].strip().lower() != "application/json":
        return _error(415, "send the replay request as JSON (Content-Type: application/json)")
    try:
        asked = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        return _error(400, f"the body is not JSON: {exc}")
    if not isinstance(asked, dict) or not isinstance(asked.get("id"), str):
        return _error(400, 'give the request to replay as {"id": "..."}')
    tunnel_name = asked.get("tunnel_name") or ""
    if not isinstance(tunnel_name, str):
        return _error(400, "tunnel_name must be a string")
    exchange = store.get(asked["id"])
    if exchange is None:
        return _error(404, f"no captured request with id {asked['id']!r}", id=asked["id"])
    target = tunnel_name or exchange.tunnel_name
    if not any(e.name == target and e.url for e in view.endpoints):
        return _error(404, f"no online endpoint named {target!r} to replay to")
    if not exchange.request.complete:
        return _error(409, "the request has not been received in full yet; replay it later")
    if exchange.request.truncated:
        return _error(
            409,
            f"only {len(exchange.request.body)} of the request body's "
            f"{exchange.request.body_size} bytes were captured, so it cannot be replayed as sent",
        )
    return ReplayAsked(exchange=exchange, tunnel_name=target)
