"""`edge.cli.credentials`: `burrow-edge credential ...` through the admin API, against a tiny
stdlib HTTP server on 127.0.0.1 that answers canned ngrok-shaped JSON and records every request
(tests/edge/cli/fake_api.py)."""

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
)


def run(api: FakeApi, *args: str) -> int:
    return main([*args, "--api-key", KEY, "--api-url", api.url])


def test_credential_create_prints_the_token_last(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    api.on("POST", "/credentials", (201, credential("cr_1", token="the-token")))
    args = ["credential", "create", "--owner", "service_1", "--acl", "bind:*", "--acl", "bind:x"]
    assert run(api, *args, "--max-sessions", "2", "--max-endpoints", "3", "--metadata", "m") == 0
    assert capsys.readouterr().out.splitlines() == [
        "credential cr_1 created; its authtoken (shown only now):",
        "the-token",
    ]
    assert api.seen[0].body == {
        "description": "",
        "metadata": "m",
        "acl": ["bind:*", "bind:x"],
        "owner_id": "service_1",
        "max_sessions": 2,
        "max_endpoints": 3,
    }


def test_credential_list_revoke_activate_delete(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    limited = credential("cr_2", acl=["bind:a"], max_sessions=2, max_endpoints=5, description="d")
    api.on("GET", "/credentials", listing("credentials", [limited, credential("cr_1")]))
    api.on("PATCH", "/credentials/cr_2", lambda s: (200, {**limited, **s.body}))
    api.on("DELETE", "/credentials/cr_2", (204, b""))
    assert run(api, "credential", "list") == 0
    assert capsys.readouterr().out.splitlines() == [
        f"cr_2  {TS}  active  acl=bind:a  max_sessions=2  max_endpoints=5  d",
        f"cr_1  {TS}  active  acl=-  max_sessions=-  max_endpoints=-  ",
    ]
    assert run(api, "credential", "list", "--json") == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["cr_2", "cr_1"]
    assert run(api, "credential", "revoke", "cr_2") == 0
    assert run(api, "credential", "activate", "cr_2") == 0
    assert run(api, "credential", "delete", "cr_2") == 0
    assert capsys.readouterr().out.splitlines() == [
        "credential cr_2 revoked",
        "credential cr_2 activated",
        "credential cr_2 deleted",
    ]
    assert [(s.method, s.body) for s in api.seen[2:]] == [
        ("PATCH", {"active": False}),
        ("PATCH", {"active": True}),
        ("DELETE", None),
    ]
    assert run(api, "credential", "revoke", "cr_2", "--json") == 0
    assert json.loads(capsys.readouterr().out)["active"] is False
