"""`burrow` command-line parsing and its one-line errors (nothing here reaches an edge)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cli import CLI_ENDPOINT_NAME, UsageError, main, tcp_endpoint

CONFIGS = Path(__file__).parent / "configs"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No default config file and no BURROW_* variables from the machine running the tests."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    for name in ("BURROW_AUTHTOKEN", "BURROW_CONNECT_URL", "BURROW_CONNECT_CAS"):
        monkeypatch.delenv(name, raising=False)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("burrow: ")
    assert "Traceback" not in err
    return lines[0]


def test_config_check_valid_file(capsys: pytest.CaptureFixture[str]) -> None:
    path = CONFIGS / "valid" / "representative.yml"
    status, out, err = run(capsys, "config", "check", "--config", str(path))
    assert status == 0
    assert out == f"Valid configuration file at {path}\n"
    assert err == ""


def test_config_check_several_files_comma_separated(capsys: pytest.CaptureFixture[str]) -> None:
    a, b = CONFIGS / "valid" / "minimal.yml", CONFIGS / "valid" / "representative.yml"
    status, out, _ = run(capsys, "--config", f"{a},{b}", "config", "check")
    assert status == 0
    assert out == f"Valid configuration file at {a}, {b}\n"


def test_config_check_invalid_file(capsys: pytest.CaptureFixture[str]) -> None:
    path = CONFIGS / "invalid" / "unknown_agent_key.yml"
    status, out, err = run(capsys, "config", "check", "--config", str(path))
    assert status == 1
    assert out == ""
    line = one_error_line(err)
    assert str(path) in line
    assert "unknown key" in line


def test_config_check_reads_the_default_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    default = tmp_path / "home" / ".config" / "burrow" / "burrow.yml"
    default.parent.mkdir(parents=True)
    default.write_text("version: 3\nagent: {}\n")
    status, out, _ = run(capsys, "config", "check")
    assert status == 0
    assert out == f"Valid configuration file at {default}\n"


def test_config_check_without_any_file(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "config", "check")
    assert status == 1
    assert "no config file" in one_error_line(err)
    assert "pass --config FILE" in err


def test_a_missing_authtoken_says_how_to_give_one(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "tcp", "5432")
    assert status == 1
    assert out == ""
    line = one_error_line(err)
    assert "--authtoken" in line
    assert "BURROW_AUTHTOKEN" in line


def test_a_bad_url_for_tcp(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(
        capsys, "tcp", "5432", "--url", "https://x.example.com", "--authtoken", "t"
    )
    assert status == 1
    assert "tcp://HOST:PORT" in one_error_line(err)


def test_a_bad_upstream_for_tcp(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "tcp", "localhost", "--authtoken", "t")
    assert status == 1
    assert "upstream 'localhost'" in one_error_line(err)


def test_argument_errors_are_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "tcp")
    assert status == 1
    assert "burrow tcp --help" in one_error_line(err)
    status, _, err = run(capsys, "frobnicate")
    assert status == 1
    assert "invalid choice" in one_error_line(err)
    status, _, err = run(capsys, "--log-format", "xml", "tcp", "1")
    assert status == 1
    one_error_line(err)


def test_help_and_version_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "--help")
    assert status == 0
    assert "tcp" in out
    assert "start" in out
    status, out, _ = run(capsys, "--version")
    assert status == 0
    assert out.startswith("burrow 0.1.0")


def test_start_needs_names_or_all(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(CONFIGS / "valid" / "minimal.yml")
    status, _, err = run(capsys, "start", "--config", path, "--authtoken", "t")
    assert status == 1
    assert "--all" in one_error_line(err)


def test_start_with_an_unknown_name_lists_the_known_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = str(CONFIGS / "valid" / "representative.yml")
    status, _, err = run(capsys, "start", "nope", "--config", path, "--authtoken", "t")
    assert status == 1
    line = one_error_line(err)
    assert "no endpoint named 'nope'" in line
    assert "api, ssh, tlsdemo, front" in line


def test_start_without_endpoints(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "empty.yml"
    path.write_text("version: 3\nagent: {authtoken: t}\n")
    status, _, err = run(capsys, "start", "--all", "--config", str(path))
    assert status == 1
    assert "no endpoints are defined" in one_error_line(err)


def test_start_refuses_settings_the_agent_cannot_honour(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = str(CONFIGS / "valid" / "representative.yml")
    status, _, err = run(capsys, "start", "ssh", "--config", path, "--authtoken", "t")
    assert status == 1
    assert "proxy_protocol is not supported" in one_error_line(err)


def test_tcp_endpoint_defaults() -> None:
    endpoint = tcp_endpoint("5432", url=None, name=CLI_ENDPOINT_NAME, pooling=False)
    assert endpoint.name == "command_line"
    assert endpoint.url == "tcp://"
    assert endpoint.endpoint_url.is_random
    assert str(endpoint.upstream.target) == "tcp://localhost:5432"
    assert endpoint.bindings == ("public",)


def test_tcp_endpoint_with_a_url_without_scheme() -> None:
    endpoint = tcp_endpoint("10.0.0.6:5432", url="db.example.com:15432", name="db", pooling=True)
    assert endpoint.url == "tcp://db.example.com:15432"
    assert endpoint.pooling_enabled is True


def test_tcp_endpoint_internal_needs_a_port() -> None:
    with pytest.raises(UsageError, match="needs a port"):
        tcp_endpoint("5432", url="tcp://db.internal", name="db", pooling=False)
