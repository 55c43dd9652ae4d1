"""The agent's inspector and local API, end to end: a real edge, a real agent with `web_addr`,
a real upstream, curl through the tunnel, the API over HTTP, Prometheus' own parser on
/metrics, and the inspector page in Debian's headless Chromium."""

from __future__ import annotations

import http.server
import json
import socket
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.browser import open_browser
from tests.e2e.harness import Agent, Edge, curl_endpoint, make_agent

#: The API and the page are local and answer in milliseconds; this only catches hangs.
API_TIMEOUT = 20.0


class _Recorder(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[tuple[str, str, bytes]]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length) if length else b""
        self.seen.append((self.command, self.path, body))
        reply = json.dumps({"seen": len(self.seen), "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()


class RecordingUpstream:
    """An HTTP/1.1 upstream that records every request it answers."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, bytes]] = []
        handler = type("Handler", (_Recorder,), {"seen": self.seen})
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Inspected:
    edge: Edge
    agent: Agent
    upstream: RecordingUpstream
    web: str  # http://127.0.0.1:PORT

    def api(self, method: str, path: str, body: object = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.web + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=API_TIMEOUT) as answer:
                raw = answer.read()
                status = answer.status
        except urllib.error.HTTPError as exc:
            raw, status = exc.read(), exc.code
        text = raw.decode()
        if not text:
            return status, None
        return status, json.loads(text) if text.startswith(("{", "[")) else text

    def wait_for_requests(self, count: int) -> list[dict[str, Any]]:
        deadline = time.monotonic() + API_TIMEOUT
        while True:
            _, body = self.api("GET", "/api/requests/http")
            done = [r for r in body["requests"] if r["response"] and r["response"]["body"]]
            if len(done) >= count or time.monotonic() > deadline:
                return list(body["requests"])
            time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def inspected(edge: Edge, tmp_path: Path) -> Iterator[Inspected]:
    upstream = RecordingUpstream()
    port = free_port()
    config = tmp_path / "burrow.yml"
    config.write_text(
        "version: 3\n"
        f"agent:\n  log: stderr\n  web_addr: 127.0.0.1:{port}\n"
        "endpoints:\n"
        "  - name: web\n"
        "    url: https://\n"
        f"    upstream: {{url: 127.0.0.1:{upstream.port}}}\n"
    )
    agent = make_agent(edge, edge.credential(), "web", tmp_path, "--config", str(config))
    agent.args[0] = "start"
    agent.start()
    running = Inspected(edge, agent, upstream, f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + API_TIMEOUT
        while running.api("GET", "/readyz")[0] != 200:
            assert time.monotonic() < deadline, agent.log()
            time.sleep(0.05)
        yield running
    finally:
        agent.kill()
        upstream.close()


def curl(inspected: Inspected, path: str, *args: str) -> str:
    done = curl_endpoint(inspected.edge, inspected.agent.host, [path], *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_request_through_the_tunnel_is_captured_and_replayed(inspected: Inspected) -> None:
    body = '{"order": 42, "items": ["tea"]}'
    curl(
        inspected,
        "/orders?x=1",
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "--data",
        body,
    )
    (captured,) = inspected.wait_for_requests(1)
    request = captured["request"]
    assert (request["method"], request["uri"]) == ("POST", "/orders?x=1")
    assert request["headers"]["Content-Type"] == ["application/json"]
    assert "X-Forwarded-For" in request["headers"]  # what the edge sent the agent
    assert captured["tunnel_name"] == "web"
    assert captured["response"]["status_code"] == 200
    assert captured["duration"] > 0

    status, tunnels = inspected.api("GET", "/api/tunnels")
    assert status == 200
    (tunnel,) = tunnels["tunnels"]
    assert (tunnel["name"], tunnel["public_url"]) == ("web", inspected.agent.url)
    assert tunnel["config"]["addr"] == f"http://127.0.0.1:{inspected.upstream.port}"

    status, _ = inspected.api("POST", "/api/requests/http", {"id": captured["id"]})
    assert status == 204
    assert [(m, p, b) for m, p, b in inspected.upstream.seen] == [
        ("POST", "/orders?x=1", body.encode()),
        ("POST", "/orders?x=1", body.encode()),
    ]
    requests = inspected.wait_for_requests(2)
    assert requests[0]["replay_of"] == captured["id"]  # the replay shows, newest first
    assert requests[0]["response"]["status_code"] == 200

    status, _ = inspected.api("DELETE", "/api/requests/http")
    assert status == 204
    assert inspected.api("GET", "/api/requests/http")[1]["requests"] == []


def metric_samples(inspected: Inspected) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    status, text = inspected.api("GET", "/metrics")
    assert status == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_move_under_a_short_load(inspected: Inspected) -> None:
    web = frozenset({("endpoint", "web")})
    state = "burrow_agent_session_state"
    before = metric_samples(inspected)
    assert before[(state, frozenset({(state, "established")}))] == 1
    for n in range(10):
        curl(inspected, f"/load/{n}")
    deadline = time.monotonic() + API_TIMEOUT
    while True:
        after = metric_samples(inspected)
        opened = after.get(("burrow_agent_streams_opened_total", web), 0)
        if opened >= 10 and after.get(("burrow_agent_streams_open", web)) == 0:
            break
        assert time.monotonic() < deadline, after
        time.sleep(0.05)
    assert opened - before.get(("burrow_agent_streams_opened_total", web), 0) >= 10
    assert after[("burrow_agent_upstream_dial_seconds_count", web)] >= 10
    bytes_in = after[("burrow_agent_bytes_total", web | {("direction", "in")})]
    bytes_out = after[("burrow_agent_bytes_total", web | {("direction", "out")})]
    assert bytes_in > 10 * len("GET /load/0 HTTP/1.1\r\n")
    assert bytes_out > 10 * len("HTTP/1.0 200 OK\r\n")
    assert inspected.api("GET", "/healthz")[0] == 200


async def test_the_page_lists_opens_and_replays_in_a_real_browser(inspected: Inspected) -> None:
    shot = Path(tempfile.gettempdir()) / "burrow-inspector.png"
    with trio.fail_after(90):
        async with open_browser() as page:
            await page.navigate(inspected.web + "/")
            await page.wait_for("document.title === 'Burrow inspector'")
            await trio.to_thread.run_sync(
                lambda: curl(
                    inspected,
                    "/signup",
                    "-X",
                    "POST",
                    "-H",
                    "Content-Type: application/x-www-form-urlencoded",
                    "--data",
                    "name=Ada&city=London",
                )
            )
            # The list polls the API: the request appears without a reload.
            await page.wait_for(
                "[...document.querySelectorAll('#requests tbody tr')]"
                ".some(r => r.textContent.includes('/signup') && r.textContent.includes('200'))"
            )
            await page.evaluate("document.querySelector('#requests tbody tr button').click()")
            form = await page.wait_for(
                "(() => { const t = document.querySelector('#detail table[data-kind=form]');"
                " return t && t.innerText; })()"
            )
            assert "Ada" in form and "London" in form
            assert "200 OK" in await page.evaluate("document.getElementById('detail').innerText")
            response = await page.evaluate(
                "document.querySelector('#detail pre[data-kind=json]').textContent"
            )
            assert json.loads(response)["path"] == "/signup"  # pretty-printed JSON
            await page.evaluate("document.getElementById('replay').click()")
            await page.wait_for(
                "document.getElementById('replay-result').textContent.startsWith('Replayed')"
            )
            await page.wait_for(
                "[...document.querySelectorAll('#requests tbody tr')]"
                ".filter(r => r.textContent.includes('/signup')).length === 2"
            )
            shot.write_bytes(await page.screenshot())
    assert [p for _, p, _ in inspected.upstream.seen] == ["/signup", "/signup"]
    assert shot.stat().st_size > 10_000
