"""`edge.cli.main`: how `burrow-edge` reports what goes wrong, one line on stderr and exit 1: an
admin API refusal (from the fake admin API on 127.0.0.1, tests/edge/cli/fake_api.py), no edge
listening, an empty store. Each command group's own tests are in test_<its module>.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.cli.main import main
from tests.edge.cli.fake_api import (
    KEY,
    FakeApi,
    error,
    refused_url,
)


def run(api: FakeApi, *args: str) -> int:
    return main([*args, "--api-key", KEY, "--api-url", api.url])


def test_api_errors_are_one_line_and_exit_1(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    api.on("POST", "/credentials", (400, error(400, "ERR_NGROK_10007", "acl[0]: bad rule")))
    assert run(api, "credential", "create", "--acl", "nope") == 1
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err == "burrow-edge: acl[0]: bad rule (ERR_NGROK_10007)\n"


def test_nobody_listening_is_said_plainly(capsys: pytest.CaptureFixture[str]) -> None:
    url = refused_url()
    assert main(["credential", "list", "--api-key", KEY, "--api-url", url]) == 1
    assert capsys.readouterr().err == (
        f"burrow-edge: no edge answers at {url} (is burrow-edge serve running? is admin enabled?)\n"
    )


def test_an_empty_store_is_refused_in_one_line_that_names_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "burrow.db").write_bytes(b"")
    assert main(["credential", "list", "--data-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"burrow-edge: the store at {tmp_path / 'burrow.db'} is empty (0 bytes)")
    assert err.rstrip().endswith(
        "with `burrow-edge serve --new-store` or `burrow-edge init --new-store`"
    )
    assert (tmp_path / "burrow.db").read_bytes() == b""
