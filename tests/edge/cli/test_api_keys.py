"""`edge.cli.api_keys`: `burrow-edge api-key ...` through the fake admin API on 127.0.0.1
(tests/edge/cli/fake_api.py) and offline on a real store, and `burrow-edge init --new-store`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge.cli.main import build_parser, main
from edge.store import SQLiteStore
from tests.edge.cli.fake_api import (
    KEY,
    TS,
    FakeApi,
    listing,
)


def run(api: FakeApi, *args: str) -> int:
    return main([*args, "--api-key", KEY, "--api-url", api.url])


def test_api_keys_through_the_api(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    made = {"id": "ak_2", "created_at": TS, "description": "ci", "token": "tok", "owner_id": None}
    api.on("POST", "/api_keys", (201, made))
    api.on("GET", "/api_keys", listing("keys", [{**made, "token": None}]))
    api.on("DELETE", "/api_keys/ak_2", (204, b""))
    assert run(api, "api-key", "create", "--description", "ci") == 0
    assert run(api, "api-key", "list") == 0
    assert run(api, "api-key", "delete", "ak_2") == 0
    assert capsys.readouterr().out.splitlines() == [
        "API key ak_2 created; use it as 'Authorization: Bearer <key>'.",
        "Its token (shown only now):",
        "tok",
        f"ak_2  {TS}  owner=-  ci",
        "API key ak_2 deleted",
    ]
    assert api.seen[0].body == {"description": "ci", "metadata": ""}


def test_offline_api_key_list_and_delete(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    offline = ["--data-dir", str(tmp_path)]
    assert main(["api-key", "create", "--description", "ci", "--init", *offline]) == 0
    key_id = capsys.readouterr().out.split()[2]
    assert main(["api-key", "list", *offline]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert line.startswith(key_id) and line.endswith("owner=-  ci")
    assert main(["api-key", "delete", key_id, *offline]) == 0
    assert capsys.readouterr().out == f"API key {key_id} deleted\n"
    assert main(["api-key", "delete", key_id, *offline]) == 1
    assert main(["events", "list", "--type", "api_key_deleted.v0", *offline]) == 0
    assert json.loads(capsys.readouterr().out)["object"]["id"] == key_id


def test_init_with_new_store_starts_a_new_store_in_an_empty_files_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "burrow.db").write_bytes(b"")
    assert main(["init", "--data-dir", str(tmp_path)]) == 1  # not without the flag
    capsys.readouterr()
    assert main(["init", "--new-store", "--data-dir", str(tmp_path)]) == 0
    key = capsys.readouterr().out.strip().splitlines()[-1]
    assert main(["api-key", "list", "--data-dir", str(tmp_path)]) == 0
    (listed,) = capsys.readouterr().out.strip().splitlines()
    assert listed.startswith("ak_")
    with SQLiteStore.open(tmp_path / "burrow.db") as store:  # a store now: no flag needed
        assert store.authenticate_api_key(key) is not None
    assert build_parser().parse_args(["serve", "--new-store"]).new_store is True
    assert build_parser().parse_args(["serve"]).new_store is False
