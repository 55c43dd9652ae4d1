"""`edge.cli.sessions`: `burrow-edge sessions list|stop` through the fake admin API on 127.0.0.1
(tests/edge/cli/fake_api.py)."""

from __future__ import annotations

import json

import pytest

from edge.cli.main import main
from tests.edge.cli.fake_api import (
    KEY,
    TS,
    FakeApi,
    listing,
)


def run(api: FakeApi, *args: str) -> int:
    return main([*args, "--api-key", KEY, "--api-url", api.url])


def test_sessions_list_and_stop(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    session = {
        "id": "ts_1",
        "started_at": TS,
        "credential": {"id": "cr_1", "uri": "x"},
        "ip": "127.0.0.1",
        "agent_version": "0.1.0",
        "os": "linux",
        "metadata": "box",
    }
    api.on("GET", "/tunnel_sessions", listing("tunnel_sessions", [session]))
    endpoint = {"id": "ep_1", "url": "tcp://127.0.0.1:21000", "tunnel_session": {"id": "ts_1"}}
    api.on("GET", "/endpoints", listing("endpoints", [endpoint]))
    api.on("POST", "/tunnel_sessions/ts_1/stop", (204, b""))
    assert run(api, "sessions", "list") == 0
    assert run(api, "sessions", "stop", "ts_1") == 0
    assert capsys.readouterr().out.splitlines() == [
        f"ts_1  {TS}  credential=cr_1  ip=127.0.0.1  agent=0.1.0/linux  "
        "endpoints=tcp://127.0.0.1:21000  box",
        "session ts_1 stopped",
    ]
    assert run(api, "sessions", "list", "--json") == 0
    assert json.loads(capsys.readouterr().out) == session
