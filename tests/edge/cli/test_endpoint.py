"""`burrow-edge endpoint create|list|get|update|delete` (edge/cli/endpoint.py) against the real
admin API: `serve_admin` on 127.0.0.1 in a thread of its own, over a real SQLite store and a
real registry, so each command's effect on the running edge is checked where it lands."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
import trio

from edge.admin.http import serve_admin
from edge.admin.routes import AdminApi
from edge.cli.main import main
from edge.config import EdgeConfig
from edge.endpoints.cloud_live import CloudEndpoints
from edge.endpoints.registry import EndpointRegistry
from edge.events import EventLog
from edge.store import SQLiteStore
from edge.tunnels.binding import BindResolver

ANSWER = (
    "on_http_request:\n  - actions:\n      - type: custom-response\n        config: {body: one}\n"
)


@dataclass
class Edge:
    url: str
    key: str
    store: SQLiteStore
    registry: EndpointRegistry

    def run(self, *args: str) -> int:
        return main(["endpoint", *args, "--api-key", self.key, "--api-url", self.url])


class _NoLive:
    """No agent is connected in these tests: no sessions, no agent endpoints."""

    def sessions(self) -> list[object]:
        return []

    def endpoints(self) -> list[object]:
        return []

    def stop_session(self, session_id: str, reason: str) -> bool:
        return False

    def stop_revoked_sessions(self) -> int:
        return 0


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[Edge]:
    store = SQLiteStore.open(tmp_path / "burrow.db")
    registry = EndpointRegistry()
    cloud = CloudEndpoints(registry, BindResolver(EdgeConfig(domain="burrow.localhost"), registry))
    events = EventLog(store, tmp_path / "events.jsonl")
    api = AdminApi(store, _NoLive(), events, cloud=cloud)  # type: ignore[arg-type]
    _, key = store.create_api_key(description="cli tests")
    started: queue.Queue[tuple[tuple[str, int], trio.lowlevel.TrioToken, trio.CancelScope]] = (
        queue.Queue()
    )

    async def serve() -> None:
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                address = await nursery.start(partial(serve_admin, api, "127.0.0.1", 0))
                started.put((address, trio.lowlevel.current_trio_token(), scope))

    thread = threading.Thread(target=trio.run, args=(serve,), daemon=True)
    thread.start()
    (host, port), token, scope = started.get(timeout=10)
    try:
        yield Edge(f"http://{host}:{port}", key, store, registry)
    finally:
        trio.from_thread.run_sync(scope.cancel, trio_token=token)
        thread.join(timeout=10)
        assert not thread.is_alive()
        store.close()


def test_create_get_update_list_delete(
    edge: Edge, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "policy.yml"
    policy.write_text(ANSWER)
    assert (
        edge.run(
            "create",
            "--url",
            "https://api.acme.example",
            "--traffic-policy-file",
            str(policy),
            "--description",
            "Acme API",
            "--json",
        )
        == 0
    )
    created = json.loads(capsys.readouterr().out)
    assert created["type"] == "cloud" and created["traffic_policy"] == ANSWER
    endpoint = edge.registry.lookup("https://api.acme.example")
    assert endpoint is not None and endpoint.policy is not None
    assert endpoint.policy.text == ANSWER

    assert edge.run("get", created["id"]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert shown[0] == f"{created['id']}  cloud  https://api.acme.example  public  -  Acme API"
    assert shown[1:] == ["traffic_policy:", *(f"  {line}" for line in ANSWER.splitlines())]

    policy.write_text(ANSWER.replace("one", "two"))
    assert edge.run("update", created["id"], "--traffic-policy-file", str(policy)) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"endpoint {created['id']} updated\n")
    endpoint = edge.registry.lookup("https://api.acme.example")
    assert endpoint is not None and endpoint.policy is not None
    assert "body: two" in endpoint.policy.text

    assert edge.run("list") == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{created['id']}  cloud  https://api.acme.example  public  -  Acme API"
    ]
    assert edge.run("list", "--url", "https://other.example") == 0
    assert capsys.readouterr().out == ""

    assert edge.run("delete", created["id"]) == 0
    assert capsys.readouterr().out == f"endpoint {created['id']} deleted\n"
    assert edge.registry.lookup("https://api.acme.example") is None
    assert edge.store.list_cloud_endpoints() == []


def test_refusals_print_the_edges_message_and_code(
    edge: Edge, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "policy.yml"
    policy.write_text(
        "on_http_request:\n  - actions: [{type: add-headers, config: {headers: {a: b}}}]\n"
    )
    assert (
        edge.run("create", "--url", "https://a.example", "--traffic-policy-file", str(policy)) == 1
    )
    err = capsys.readouterr().err
    assert err.startswith(
        "burrow-edge: traffic_policy: The traffic policy provided is not guaranteed"
    )
    assert err.rstrip().endswith("(ERR_NGROK_2235)")
    assert edge.store.list_cloud_endpoints() == []
    missing = tmp_path / "nope.yml"
    assert (
        edge.run("create", "--url", "https://a.example", "--traffic-policy-file", str(missing)) == 1
    )
    assert f"cannot read the traffic policy file {missing}" in capsys.readouterr().err
    assert edge.run("update", "ep_X") == 1
    assert "nothing to update" in capsys.readouterr().err
    assert edge.run("delete", "ep_NONE") == 1
    assert "(ERR_NGROK_404)" in capsys.readouterr().err


def test_endpoint_commands_need_an_api_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["endpoint", "list"]) == 1
    err = capsys.readouterr().err
    assert "`burrow-edge endpoint` talks to the running edge's admin API" in err
    assert "--api-key" in err
