"""edge/cli/serve.py: `burrow-edge serve` with its log formats and levels, its one-line
startup errors (a real occupied port), and `burrow-edge config check`. The edge runs as a real
process on 127.0.0.1, as an operator would run it."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from edge.cli.main import main
from tests.protocol.formats.test_logs import parse_logfmt

BIN = Path(sys.executable).parent
READY = re.compile(r"burrow-edge ready: tls=\S+:(\d+) http=\S+ admin=\S+:(\d+)")
#: A cold start (CA, store, listeners) takes a second or two; generous for a loaded CI box.
START_TIMEOUT = 60


def write_config(path: Path, *, tls: str = "127.0.0.1:0", admin: str = "127.0.0.1:0") -> Path:
    path.write_text(f"listen:\n  tls: {tls}\n  http: 127.0.0.1:0\nadmin:\n  listen: {admin}\n")
    return path


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port some other program is listening on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


def serve(tmp_path: Path, config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    data = str(tmp_path / "data")
    return subprocess.run(
        [str(BIN / "burrow-edge"), "serve", "--data-dir", data, "--config", str(config), *extra],
        check=False,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
    )


@pytest.mark.parametrize("key", ["listen.tls", "admin.listen"])
def test_a_port_in_use_is_one_line_naming_the_address_and_its_key(
    tmp_path: Path, busy_port: int, key: str
) -> None:
    address = f"127.0.0.1:{busy_port}"
    config = write_config(
        tmp_path / "edge.yml",
        tls=address if key == "listen.tls" else "127.0.0.1:0",
        admin=address if key == "admin.listen" else "127.0.0.1:0",
    )
    done = serve(tmp_path, config, "--log-level", "error")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"burrow-edge: cannot listen on {address} ({key}): ")
    assert f"set {key} to another one" in done.stderr
    assert "Traceback" not in done.stderr and "ExceptionGroup" not in done.stderr


def run_edge_briefly(tmp_path: Path, *args: str) -> tuple[str, str]:
    """Start an edge, scrape its probes, stop it with SIGTERM; (probe answers, stderr)."""
    config = write_config(tmp_path / "edge.yml")
    data = str(tmp_path / "data")
    proc = subprocess.Popen(
        [str(BIN / "burrow-edge"), "serve", "--data-dir", data, "--config", str(config), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT
        match = None
        while match is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, "the edge exited before it was ready"
            match = READY.search(line)
        assert match is not None
        admin = f"http://127.0.0.1:{match.group(2)}"
        answers = []
        for path in ("/healthz", "/readyz", "/metrics"):
            with urllib.request.urlopen(admin + path, timeout=30) as response:
                assert response.status == 200
                answers.append(response.read().decode())
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    return "\n".join(answers), stderr


def test_json_logs_every_line_parses_and_probes_answer(tmp_path: Path) -> None:
    answers, stderr = run_edge_briefly(tmp_path, "--log-format", "json", "--log-level", "debug")
    lines = stderr.splitlines()
    assert len(lines) >= 4
    records = [json.loads(line) for line in lines]  # every line, or this raises
    assert all({"t", "lvl", "obj", "msg"} <= set(r) for r in records)
    assert any(r["msg"].startswith("agents connect to") for r in records)
    assert records[-1]["msg"] == "stopped"
    assert answers.startswith("ok\n\nready\n")
    families = {f.name for f in text_string_to_metric_families(answers.split("ready\n", 1)[1])}
    assert {
        "burrow_edge_sessions",
        "burrow_edge_streams_opened",
        "burrow_edge_store_seconds",
    } <= families


def test_logfmt_logs_every_line_parses_and_warning_is_a_level(tmp_path: Path) -> None:
    _, stderr = run_edge_briefly(tmp_path, "--log-format", "logfmt", "--log-level", "info")
    records = [parse_logfmt(line) for line in stderr.splitlines()]
    assert records and all(r["lvl"] in ("info", "warn", "eror", "crit") for r in records)
    assert any(r["msg"].startswith("public TLS port") for r in records)
    _, quiet = run_edge_briefly(tmp_path, "--log-format", "logfmt", "--log-level", "warning")
    assert all(parse_logfmt(line)["lvl"] != "info" for line in quiet.splitlines())


def test_config_check_says_ok_or_names_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write_config(tmp_path / "good.yml")
    assert main(["config", "check", "--config", str(good)]) == 0
    assert capsys.readouterr().out.startswith(f"{good}: ok (tls=127.0.0.1:0 http=127.0.0.1:0 ")
    bad = tmp_path / "bad.yml"
    bad.write_text("listen:\n  tlx: 127.0.0.1:0\n")
    assert main(["config", "check", "--config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "bad.yml:2: listen.tlx: unknown key; did you mean listen.tls?" in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert re.fullmatch(r"burrow-edge \d+\.\d+\.\d+\n", capsys.readouterr().out)
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert re.fullmatch(r"burrow-edge \d+\.\d+\.\d+\n", capsys.readouterr().out)
