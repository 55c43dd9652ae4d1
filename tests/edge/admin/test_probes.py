"""edge/admin/probes.py: /metrics, /healthz and /readyz, answered before the API's routes, over
a real store; and once through a real admin listener on 127.0.0.1."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from edge.admin.auth import FailedAuthLimiter
from edge.admin.http import serve_admin
from edge.admin.metrics import EdgeMetrics
from edge.admin.probes import Probes
from edge.admin.routes import AdminApi, Request, Response
from edge.events import EventLog
from edge.store import SQLiteStore
from tests.edge.admin.test_http import NoLive


def get(path: str, *, token: str | None = None, method: str = "GET") -> Request:
    headers = (("authorization", f"Bearer {token}"),) if token is not None else ()
    return Request(
        method=method,
        target=path,
        headers=headers,
        body=b"",
        remote="127.0.0.1",
        base_url="http://127.0.0.1:4041",
    )


class Ready:
    def __init__(self) -> None:
        self.reason: str | None = None

    def __call__(self) -> str | None:
        return self.reason


@pytest.fixture
def store(tmp_path: Path) -> SQLiteStore:
    return SQLiteStore.open(tmp_path / "burrow.db")


def probes(store: SQLiteStore, *, require_key: bool = False) -> tuple[Probes, Ready]:
    api = AdminApi(store, NoLive(), EventLog(store, None), limiter=FailedAuthLimiter())
    ready = Ready()
    metrics = EdgeMetrics()
    metrics.refused("bind", "ERR_NGROK_334")
    return Probes(api, metrics, ready, metrics_require_api_key=require_key), ready


def answered(response: Response | None) -> Response:
    assert response is not None
    return response


def test_healthz_and_readyz_need_no_key(store: SQLiteStore) -> None:
    front, ready = probes(store, require_key=True)
    health = answered(front.handle(get("/healthz"), now=0.0))
    assert (health.status, health.body) == (200, b"ok\n")
    assert answered(front.handle(get("/readyz"), now=0.0)).status == 200
    ready.reason = "the listeners are starting"
    not_ready = answered(front.handle(get("/readyz?verbose"), now=0.0))
    assert (not_ready.status, not_ready.body) == (503, b"not ready: the listeners are starting\n")


def test_metrics_without_a_key_by_default_parse_as_prometheus_text(store: SQLiteStore) -> None:
    front, _ = probes(store)
    response = answered(front.handle(get("/metrics"), now=0.0))
    assert response.status == 200
    assert dict(response.headers)["content-type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(response.body.decode())}
    [refusal] = families["burrow_edge_refusals"].samples
    assert refusal.labels == {"kind": "bind", "code": "ERR_NGROK_334"} and refusal.value == 1


def test_metrics_can_require_an_api_key(store: SQLiteStore) -> None:
    _, token = store.create_api_key()
    front, _ = probes(store, require_key=True)
    refused = answered(front.handle(get("/metrics"), now=0.0))
    assert refused.status == 401
    assert json.loads(refused.body)["error_code"]
    wrong = answered(front.handle(get("/metrics", token="nope"), now=0.0))
    assert wrong.status == 401
    allowed = answered(front.handle(get("/metrics", token=token), now=0.0))
    assert allowed.status == 200 and b"burrow_edge_refusals_total" in allowed.body


def test_other_methods_and_paths(store: SQLiteStore) -> None:
    front, _ = probes(store)
    assert answered(front.handle(get("/metrics", method="POST"), now=0.0)).status == 405
    assert front.handle(get("/credentials"), now=0.0) is None  # the API's, not ours
    assert front.handle(get("/metricsx"), now=0.0) is None


async def test_through_a_real_admin_listener(store: SQLiteStore) -> None:
    front, _ = probes(store)

    async def fetch(port: int, path: str) -> bytes:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
            )
            data = b""
            while chunk := await stream.receive_some(65536):
                data += chunk
        return data

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            _, port = await nursery.start(
                partial(serve_admin, front.api, "127.0.0.1", 0, probes=front)
            )
            health = await fetch(port, "/healthz")
            assert health.startswith(b"HTTP/1.1 200 ") and health.endswith(b"\r\n\r\nok\n")
            metrics = await fetch(port, "/metrics")
            assert metrics.startswith(b"HTTP/1.1 200 ") and b"burrow_edge_sessions" in metrics
            api = await fetch(port, "/credentials")  # still the API, which wants a key
            assert api.startswith(b"HTTP/1.1 401 ")
            nursery.cancel_scope.cancel()
