"""The agent's web listener on `web_addr`: the inspector page, the agent API, metrics, probes.

Theory of operation
-------------------
`serve_web` listens on `web_addr` (default 127.0.0.1:4040) and serves each connection with h11,
keep-alive included, one request at a time:

* `/` and `/inspect/http`: the inspector page (`page.html`, one self-contained file);
* `/api/...`: the agent API (`agent.inspector.api` decides; a replay is carried out here);
* `/metrics`: the agent's Prometheus metrics; `/healthz`: 200 while the process runs;
  `/readyz`: 200 while a session is established, else 503.

Only requests whose `Host` is a loopback name (`localhost`, `127.0.0.1`, `[::1]`) or
`web_addr`'s own host are served; anything else gets 403, so a web page whose name an attacker
points at 127.0.0.1 (DNS rebinding) cannot read the captured traffic.

If `web_addr` cannot be bound (in use, or not an address of this machine), one warning line
says so and the agent carries on without the inspector: a second agent on the same machine
still forwards traffic. (ngrok also carries on; Burrow does not move to the next port, so
the address a script reads is never a surprise.) Per-connection failures are logged at debug
and end that connection only; cancellation closes the listener and every connection.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

import h11
import trio

from agent.forward import Route
from agent.inspector.api import AgentView, ApiAnswer, EndpointView, ReplayAsked, answer
from agent.inspector.capture import CaptureStore
from agent.inspector.replay import ReplayError, replay
from agent.metrics import METRICS_CONTENT_TYPE, AgentMetrics
from agent.requests import AGENT_VERSION
from agent.session import Agent

__all__ = [
    "MAX_API_BODY",
    "REQUEST_TIMEOUT",
    "WebApp",
    "agent_view",
    "load_page",
    "serve_agent_web",
    "serve_web",
]

log = logging.getLogger(__name__)

#: The largest request body the API reads: a replay request is a few dozen bytes of JSON.
MAX_API_BODY = 64 * 1024
#: A client gets this long to send each request (head and body) and to read each answer;
#: the page polls once a second, so a healthy one is never near it.
REQUEST_TIMEOUT = 30.0
#: Bytes asked per read.
_READ = 16 * 1024
_LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def load_page() -> bytes:
    """The inspector page, shipped beside this module."""
    return resources.files("agent.inspector").joinpath("page.html").read_bytes()


@dataclass(frozen=True, slots=True, kw_only=True)
class WebApp:
    """What the listener serves from: the capture (None when inspection is off), the metrics,
    and three views of the running agent."""

    store: CaptureStore | None
    metrics: AgentMetrics
    view: Callable[[], AgentView]  # the agent as the API shows it now
    route: Callable[[str], Route | None]  # an online endpoint's route, by name
    web_host: str  # web_addr's host, also accepted as Host
    page: bytes


def agent_view(agent: Agent) -> AgentView:
    """`agent` as the API shows it now: online or not, and each endpoint with its URL."""
    urls = {route.name: route.url for route in agent.bound_routes()}
    endpoints = []
    for endpoint in agent.endpoints:
        policy = agent.traffic_policy(endpoint.name)
        endpoints.append(
            EndpointView(
                name=endpoint.name,
                url=urls.get(endpoint.name, ""),
                proto=endpoint.endpoint_url.scheme,
                upstream_url=endpoint.upstream.url,
                upstream_protocol=endpoint.upstream.protocol or "http1"
                if endpoint.endpoint_url.scheme in ("http", "https")
                else "",
                inspect=endpoint.inspect,
                traffic_policy=policy or "",
                pooling_enabled=endpoint.pooling_enabled,
            )
        )
    return AgentView(
        online=agent.established,
        agent_version=AGENT_VERSION,
        latency=agent.last_rtt,
        endpoints=tuple(endpoints),
    )


async def serve_agent_web(
    agent: Agent, *, task_status: trio.TaskStatus[int | None] = trio.TASK_STATUS_IGNORED
) -> None:
    """`serve_web` for `agent` on its `web_addr` (which must not be None); the agent must
    have been given its metrics."""
    assert agent.settings.web_addr is not None and agent.metrics is not None
    host, port = agent.settings.web_addr

    def route(name: str) -> Route | None:
        return next((r for r in agent.bound_routes() if r.name == name), None)

    app = WebApp(
        store=agent.captures,
        metrics=agent.metrics,
        view=lambda: agent_view(agent),
        route=route,
        web_host=host,
        page=load_page(),
    )
    await serve_web(app, host, port, task_status=task_status)


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    body: bytes
    content_type: str = "application/json"


async def serve_web(
    app: WebApp,
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[int | None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `app` on host:port until cancelled. `task_status.started()` gets the bound port,
    or None if the address could not be bound (logged; this then returns)."""
    try:
        listeners = await trio.open_tcp_listeners(port, host=host)
    except OSError as exc:
        log.warning(
            "web_addr %s:%d: %s; the inspector and the local API are off (set agent.web_addr "
            "to a free address, or to false)",
            host,
            port,
            exc.strerror or exc,
        )
        task_status.started(None)
        return
    bound = listeners[0].socket.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    log.info("inspector and local API on http://%s:%d", shown, bound)
    task_status.started(bound)

    async def handler(stream: trio.SocketStream) -> None:
        await _serve_connection(app, stream)

    await trio.serve_listeners(handler, listeners)


async def _serve_connection(app: WebApp, stream: trio.abc.Stream) -> None:
    connection = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_API_BODY)
    try:
        while True:
            with trio.fail_after(REQUEST_TIMEOUT):
                request = await _next_event(connection, stream)
                if not isinstance(request, h11.Request):
                    return
                body = bytearray()
                while True:
                    event = await _next_event(connection, stream)
                    if isinstance(event, h11.Data):
                        body += event.data
                        if len(body) > MAX_API_BODY:
                            await _send(connection, stream, _text(413, "body too large\n"), request)
                            return
                    elif isinstance(event, h11.EndOfMessage):
                        break
                    else:
                        return
            reply = await _dispatch(app, request, bytes(body))
            with trio.fail_after(REQUEST_TIMEOUT):
                await _send(connection, stream, reply, request)
            if connection.our_state is not h11.DONE or connection.their_state is not h11.DONE:
                return
            connection.start_next_cycle()
    except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError) as exc:
        log.debug("web connection ended: %r", exc)
    except h11.RemoteProtocolError as exc:
        if connection.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            reply = _text(exc.error_status_hint, f"bad request: {exc}\n")
            try:
                with trio.fail_after(REQUEST_TIMEOUT):
                    await _send(connection, stream, reply, None)
            except (trio.BrokenResourceError, trio.TooSlowError, h11.LocalProtocolError):
                pass
    finally:
        await trio.aclose_forcefully(stream)


async def _next_event(connection: h11.Connection, stream: trio.abc.Stream) -> object:
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            connection.receive_data(bytes(await stream.receive_some(_READ)))
            continue
        return event


async def _send(
    connection: h11.Connection,
    stream: trio.abc.Stream,
    reply: _Reply,
    request: h11.Request | None,
) -> None:
    headers = [("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff")]
    if reply.status != 204:  # a 204 has no body, so no framing headers
        headers += [("Content-Type", reply.content_type), ("Content-Length", str(len(reply.body)))]
    data = connection.send(h11.Response(status_code=reply.status, headers=headers)) or b""
    if reply.body and not (request is not None and request.method == b"HEAD"):
        data += connection.send(h11.Data(data=reply.body)) or b""
    data += connection.send(h11.EndOfMessage()) or b""
    await stream.send_all(data)


def _text(status: int, text: str) -> _Reply:
    return _Reply(status, text.encode(), "text/plain; charset=utf-8")


def _json(status: int, value: object) -> _Reply:
    return _Reply(status, json.dumps(value, indent=None).encode())


def _host_allowed(app: WebApp, request: h11.Request) -> bool:
    host = next((v for n, v in request.headers if n == b"host"), b"").decode("latin-1").lower()
    if host.startswith("["):
        name = host[1:].partition("]")[0]
    else:
        name = host.rpartition(":")[0] if host.count(":") == 1 else host
    return name in _LOOPBACK_HOSTS or name == app.web_host.lower()


async def _dispatch(app: WebApp, request: h11.Request, body: bytes) -> _Reply:
    if not _host_allowed(app, request):
        return _text(403, "this address serves only loopback names (Host: localhost:PORT)\n")
    method = request.method.decode("ascii")
    target = request.target.decode("latin-1")
    path = target.partition("?")[0]
    if path.startswith("/api/") or path == "/api":
        content_type = next((v for n, v in request.headers if n == b"content-type"), b"").decode(
            "latin-1"
        )
        decided = answer(
            method, target, body, content_type=content_type, store=app.store, view=app.view()
        )
        if isinstance(decided, ReplayAsked):
            return await _replay(app, decided)
        return _api_reply(decided)
    if method not in ("GET", "HEAD"):
        return _text(405, f"{method} is not allowed here\n")
    if path in ("/", "/inspect/http"):
        return _Reply(200, app.page, "text/html; charset=utf-8")
    if path == "/metrics":
        return _Reply(200, app.metrics.exposition(), METRICS_CONTENT_TYPE)
    if path == "/healthz":
        return _text(200, "ok\n")
    if path == "/readyz":
        if app.view().online:
            return _text(200, "ready: session established\n")
        return _text(503, "not ready: no session to the edge\n")
    return _text(404, f"nothing at {path}\n")


def _api_reply(decided: ApiAnswer) -> _Reply:
    if decided.body is None:
        return _Reply(decided.status, b"")
    return _json(decided.status, decided.body)


async def _replay(app: WebApp, asked: ReplayAsked) -> _Reply:
    route = app.route(asked.tunnel_name)
    if route is None or app.store is None:
        return _json(404, {"status_code": 404, "msg": f"{asked.tunnel_name!r} is not online"})
    try:
        replayed = await replay(asked.exchange, route, app.store)
    except ReplayError as exc:
        log.warning("replay of request %s failed: %s", asked.exchange.id, exc)
        return _json(502, {"status_code": 502, "msg": str(exc), "details": {}})
    log.info("replayed request %s as %s", asked.exchange.id, replayed.id)
    return _Reply(204, b"")
