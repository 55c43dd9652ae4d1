"""`burrow-edge init` and `burrow-edge api-key create`: the offline way to the first API key."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.cli.main import main
from edge.store import SQLiteStore


def test_init_makes_the_data_dir_and_prints_a_working_key_last(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "edge"
    assert main(["init", "--data-dir", str(data_dir)]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    assert (data_dir / "ca.pem").exists()
    with SQLiteStore.open(data_dir / "burrow.db") as store:
        key = store.authenticate_api_key(token)
        assert key is not None and "init" in key.description
        event = store.list_events(event_type="api_key_created.v0")[0]
        assert event.object["id"] == key.id and event.object["token"] is None
        assert event.principal is not None and event.principal["source"] == "CLI"
    assert token not in (data_dir / "events.jsonl").read_text()


def test_api_key_create_with_description_and_owner(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with SQLiteStore.open(tmp_path / "burrow.db") as store:
        owner = store.create_service_user("ops")
    args = ["api-key", "create", "--data-dir", str(tmp_path), "--description", "ci"]
    assert main([*args, "--owner", owner.id]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    with SQLiteStore.open(tmp_path / "burrow.db") as store:
        key = store.authenticate_api_key(token)
        assert key is not None and (key.description, key.owner_id) == ("ci", owner.id)


def test_api_key_create_for_an_unknown_owner_fails_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["api-key", "create", "--data-dir", str(tmp_path), "--init", "--owner", "service_NOPE"]
    assert main(args) == 1
    assert "service_NOPE" in capsys.readouterr().err
