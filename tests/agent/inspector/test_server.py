"""The web listener, over real sockets: page, API, replay, metrics, probes, Host check, and a
taken port."""

from __future__ import annotations

import json
import logging

import h11
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from agent.forward import Route
from agent.inspector.api import AgentView, EndpointView
from agent.inspector.capture import CaptureStore, ConnectionCapture
from agent.inspector.server import WebApp, load_page, serve_web
from agent.metrics import AgentMetrics
from protocol.formats.urls import UpstreamURL
from tests.agent.inspector.upstream_recorder import RecordingUpstream


async def fetch(
    port: int,
    method: str,
    path: str,
    body: bytes = b"",
    *,
    host: str = "localhost",
    content_type: str = "application/json",
) -> tuple[int, dict[bytes, bytes], bytes]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    conn = h11.Connection(h11.CLIENT)
    headers = [("Host", f"{host}:{port}"), ("Content-Length", str(len(body)))]
    if body:
        headers.append(("Content-Type", content_type))
    data = conn.send(h11.Request(method=method, target=path, headers=headers)) or b""
    data += conn.send(h11.Data(data=body)) or b"" if body else b""
    data += conn.send(h11.EndOfMessage()) or b""
    async with stream:
        await stream.send_all(data)
        status, response_headers, received = 0, {}, b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Response):
                status, response_headers = event.status_code, dict(event.headers)
            elif isinstance(event, h11.Data):
                received += event.data
            elif isinstance(event, h11.EndOfMessage):
                return status, response_headers, received
            else:
                raise AssertionError(event)


class Agentish:
    """What the listener reads from the agent: plain values a test flips."""

    def __init__(self, upstream_port: int) -> None:
        self.online = False
        self.route = Route(
            name="web",
            url="https://app.example",
            proto="https",
            upstream=UpstreamURL("http", "127.0.0.1", upstream_port),
            inspect=True,
        )

    def view(self) -> AgentView:
        endpoint = EndpointView(
            name="web",
            url=self.route.url if self.online else "",
            proto="https",
            upstream_url=str(self.route.upstream),
            upstream_protocol="http1",
            inspect=True,
            traffic_policy="",
            pooling_enabled=False,
        )
        return AgentView(
            online=self.online, agent_version="0.1.0", latency=None, endpoints=(endpoint,)
        )

    def find(self, name: str) -> Route | None:
        return self.route if self.online and name == "web" else None


async def test_page_api_replay_metrics_and_probes() -> None:
    store = CaptureStore(10**6)
    metrics = AgentMetrics()
    upstream = RecordingUpstream()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(upstream.serve)
            agent = Agentish(upstream.port)
            app = WebApp(
                store=store,
                metrics=metrics,
                view=agent.view,
                route=agent.find,
                web_host="127.0.0.1",
                page=load_page(),
            )
            port = await nursery.start(serve_web, app, "127.0.0.1", 0)
            assert isinstance(port, int)

            status, headers, page = await fetch(port, "GET", "/")
            assert status == 200 and headers[b"content-type"].startswith(b"text/html")
            assert b"Burrow inspector" in page and b"Replay" in page
            assert b"<script src" not in page and b"<link" not in page  # self-contained
            assert (await fetch(port, "GET", "/inspect/http"))[2] == page
            assert (await fetch(port, "GET", "/healthz"))[0] == 200
            assert (await fetch(port, "GET", "/readyz"))[0] == 503
            agent.online = True
            assert (await fetch(port, "GET", "/readyz"))[0] == 200

            status, _, body = await fetch(port, "GET", "/api/tunnels")
            assert json.loads(body)["tunnels"][0]["public_url"] == "https://app.example"

            capture = ConnectionCapture(
                store, tunnel_name="web", remote_addr="1.2.3.4:5", clock=lambda: (0, 0)
            )
            capture.request_bytes(
                b"PUT /thing HTTP/1.1\r\nHost: app\r\nContent-Length: 3\r\n\r\nabc"
            )
            (exchange,) = store
            replay_body = json.dumps({"id": exchange.id}).encode()
            status, _, _ = await fetch(port, "POST", "/api/requests/http", replay_body)
            assert status == 204
            assert upstream.requests[0][:2] == (b"PUT", b"/thing")
            listed = json.loads((await fetch(port, "GET", "/api/requests/http"))[2])["requests"]
            assert len(listed) == 2 and listed[0]["response"]["status_code"] == 200

            metrics.stream_opened("web")
            status, headers, text = await fetch(port, "GET", "/metrics")
            assert status == 200 and headers[b"content-type"].startswith(b"text/plain")
            names = {f.name for f in text_string_to_metric_families(text.decode())}
            assert "burrow_agent_streams_opened" in names

            status, _, _ = await fetch(port, "DELETE", "/api/requests/http")
            assert status == 204 and len(store) == 0
            nursery.cancel_scope.cancel()


async def test_a_foreign_host_is_refused() -> None:
    """DNS rebinding: a page at evil.example resolved to 127.0.0.1 must not read the API."""
    app = WebApp(
        store=CaptureStore(10**6),
        metrics=AgentMetrics(),
        view=Agentish(1).view,
        route=Agentish(1).find,
        web_host="127.0.0.1",
        page=b"page",
    )
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve_web, app, "127.0.0.1", 0)
            assert (await fetch(port, "GET", "/api/requests/http", host="evil.example"))[0] == 403
            assert (await fetch(port, "GET", "/api/requests/http", host="127.0.0.1"))[0] == 200
            assert (await fetch(port, "GET", "/healthz", host="[::1]"))[0] == 200
            nursery.cancel_scope.cancel()


async def test_a_taken_port_logs_one_line_and_serves_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = WebApp(
        store=None,
        metrics=AgentMetrics(),
        view=Agentish(1).view,
        route=Agentish(1).find,
        web_host="127.0.0.1",
        page=b"",
    )
    with trio.fail_after(30):
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        try:
            with caplog.at_level(logging.WARNING, logger="agent.inspector.server"):
                async with trio.open_nursery() as nursery:
                    bound = await nursery.start(serve_web, app, "127.0.0.1", port)
        finally:
            for listener in listeners:
                await listener.aclose()
    assert bound is None
    (record,) = caplog.records
    message = record.getMessage()
    assert f"web_addr 127.0.0.1:{port}" in message and "\n" not in message
    assert "inspector and the local API are off" in message
