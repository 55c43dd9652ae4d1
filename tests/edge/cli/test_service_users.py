"""`edge.cli.service_users`: `burrow-edge service-user ...` through the admin API, against the
fake admin API on 127.0.0.1 (tests/edge/cli/fake_api.py)."""

from __future__ import annotations

import json

import pytest

from edge.cli.main import main
from tests.edge.cli.fake_api import (
    KEY,
    TS,
    FakeApi,
    credential,
    listing,
    user,
)


def run(api: FakeApi, *args: str) -> int:
    return main([*args, "--api-key", KEY, "--api-url", api.url])


def test_service_users_through_the_api(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.on("POST", "/service_users", lambda s: (201, user("service_1", s.body["name"])))
    api.on("GET", "/service_users", listing("service_users", [user("service_1", "a", False)]))
    api.on("PATCH", "/service_users/service_1", lambda s: (200, user("service_1", "a")))
    api.on("DELETE", "/service_users/service_1", (204, b""))
    owned = [credential("cr_1", owner_id="service_1"), credential("cr_2")]
    api.on("GET", "/credentials", listing("credentials", owned))
    api.on("GET", "/api_keys", listing("keys", [{"id": "ak_1", "owner_id": "service_1"}]))
    assert run(api, "service-user", "create", "clinic-a") == 0
    assert run(api, "service-user", "list") == 0
    assert run(api, "service-user", "deactivate", "service_1") == 0
    assert run(api, "service-user", "activate", "service_1") == 0
    assert run(api, "service-user", "delete", "service_1") == 0
    assert capsys.readouterr().out.splitlines() == [
        "service user service_1 (clinic-a) created",
        f"service_1  {TS}  inactive  a",
        "service user service_1 deactivated",
        "service user service_1 activated",
        "service user service_1 deleted with 1 credential(s) and 1 API key(s)",
    ]
    assert api.seen[0].body == {"name": "clinic-a"}
    assert [s.body for s in api.seen if s.method == "PATCH"] == [
        {"active": False},
        {"active": True},
    ]
    assert run(api, "service-user", "create", "b", "--json") == 0
    assert json.loads(capsys.readouterr().out)["name"] == "b"
