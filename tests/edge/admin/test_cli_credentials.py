"""`burrow-edge credential create/list` offline, straight on the store: the per-credential
limits (`--max-sessions`, `--max-endpoints`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.cli.main import main
from edge.store import SQLiteStore


def test_create_with_limits_and_list_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new_store = ["--data-dir", str(tmp_path), "--init"]
    args = ["credential", "create", *new_store, "--description", "clinic box"]
    assert main([*args, "--max-sessions", "2", "--max-endpoints", "5"]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    assert main(["credential", "create", "--data-dir", str(tmp_path), "--acl", "bind:*"]) == 0
    capsys.readouterr()
    with SQLiteStore.open(tmp_path / "burrow.db") as store:
        limited = store.authenticate(token)
        assert limited is not None
        assert (limited.max_sessions, limited.max_endpoints) == (2, 5)
        unlimited = store.list_credentials()[0]
        assert (unlimited.max_sessions, unlimited.max_endpoints) == (None, None)
    assert main(["credential", "list", "--data-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(unlimited.id)
    assert "acl=bind:*  max_sessions=-  max_endpoints=-" in lines[0]
    assert lines[1].startswith(limited.id)
    assert "acl=-  max_sessions=2  max_endpoints=5  clinic box" in lines[1]


@pytest.mark.parametrize("value", ["0", "-1", "1000001", "two", "1.5", ""])
@pytest.mark.parametrize("flag", ["--max-sessions", "--max-endpoints"])
def test_bad_limits_are_refused_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["credential", "create", "--data-dir", str(tmp_path), flag, value])
    assert exited.value.code == 2
    assert "must be a whole number from 1 to 1000000" in capsys.readouterr().err
    assert not (tmp_path / "burrow.db").exists()
