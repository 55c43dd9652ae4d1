"""`edge.cli.options`: which way a management command goes (the admin API or the store offline)
as the flags and the environment say, and which store an offline command works on."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.cli.main import main
from tests.edge.cli.fake_api import (
    KEY,
    FakeApi,
    listing,
)


def test_the_environment_gives_key_and_url(
    api: FakeApi, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    api.on("GET", "/credentials", listing("credentials", []))
    monkeypatch.setenv("BURROW_API_KEY", KEY)
    monkeypatch.setenv("BURROW_API_URL", api.url)
    assert main(["credential", "list"]) == 0
    assert api.seen[0].headers["authorization"] == f"Bearer {KEY}"


def test_an_explicit_data_dir_stays_offline_whatever_the_environment_says(
    api: FakeApi, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BURROW_API_KEY", KEY)
    monkeypatch.setenv("BURROW_API_URL", api.url)
    assert main(["service-user", "create", "a", "--data-dir", str(tmp_path), "--init"]) == 0
    assert (tmp_path / "burrow.db").exists()
    assert api.seen == []


def test_api_key_and_data_dir_together_are_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["credential", "list", "--api-key", KEY, "--data-dir", str(tmp_path)])
    assert exited.value.code == 2
    assert "give one of them" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args",
    [["sessions", "list"], ["sessions", "stop", "ts_1"], ["events", "list", "--follow"]],
)
def test_commands_that_need_the_edge_say_how_to_get_a_key(
    args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    for needed in ("BURROW_API_KEY", "--api-key", "burrow-edge init", "api-key create"):
        assert needed in err


@pytest.mark.parametrize(
    "args",
    [
        ["credential", "create"],
        ["credential", "list"],
        ["service-user", "create", "a"],
        ["api-key", "create"],
        ["events", "list"],
    ],
)
def test_offline_commands_refuse_to_start_a_store_unless_told(
    args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "typo"
    assert main([*args, "--data-dir", str(data_dir)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"burrow-edge: no store at {data_dir / 'burrow.db'}: ")
    assert "--init" in err and "burrow-edge init" in err
    assert not data_dir.exists()  # nothing was created


def test_offline_commands_name_the_store_they_work_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "burrow.db"
    assert main(["credential", "create", "--data-dir", str(tmp_path), "--init"]) == 0
    made = capsys.readouterr()
    assert made.err == f"burrow-edge: offline, on the store at {store}\n"
    assert made.out.splitlines()[-1]  # the token, on stdout as before
    assert main(["credential", "list", "--data-dir", str(tmp_path)]) == 0  # exists: no --init
    assert capsys.readouterr().err == f"burrow-edge: offline, on the store at {store}\n"
