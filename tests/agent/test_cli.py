"""`burrow` command-line parsing and its one-line errors (nothing here reaches an edge).

The endpoint rules behind `burrow http|tls|tcp`, called directly: test_cli_endpoints.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cli import endpoint_from_argv, main
from agent.cli_endpoints import CLI_ENDPOINT_NAME
from agent.errors import UsageError
from protocol.formats.urls import UpstreamURL

CONFIGS = Path(__file__).parent / "configs"
PEM = CONFIGS / "pem"  # made by pem/make_pem.py


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
    # web_addr is live now (the inspector and local API), so nothing is reported for it.
    assert out == f"Valid configuration file at {path}\n"
    assert err == ""


def test_config_check_reports_settings_it_accepts_but_ignores(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """ngrok's files load unchanged, but a setting with no effect is named, with its line."""
    path = tmp_path / "burrow.yml"
    path.write_text(
        "version: 3\n"
        "agent:\n"
        "  web_addr: 127.0.0.1:4040\n"
        "  console_ui: true\n"
        "  update_check: true\n"
        "endpoints:\n"
        "  - name: web\n"
        "    upstream: {url: 80}\n"
        "    inspect: true\n"
        "  - {name: quiet, upstream: {url: 81}, inspect: false}\n"
    )
    status, out, err = run(capsys, "config", "check", "--config", str(path))
    assert status == 0, err
    lines = out.splitlines()
    # web_addr and inspect act now (the inspector), and console_ui (agent.console), so only
    # update_check is reported.
    assert lines == [
        f"warning: {path}:5: agent.update_check: not supported by Burrow yet; accepted and ignored",
        f"Valid configuration file at {path}",
    ]


def test_config_check_accepts_a_traffic_policy(capsys: pytest.CaptureFixture[str]) -> None:
    """The edge enforces policies now, so the agent accepts them (and the edge validates)."""
    for name in ("traffic_policy_mapping.yml", "traffic_policy_forms.yml"):
        path = CONFIGS / "valid" / name
        status, out, err = run(capsys, "config", "check", "--config", str(path))
        assert (status, err) == (0, "")
        assert out == f"Valid configuration file at {path}\n"


def test_config_check_refuses_a_policy_that_is_not_a_mapping(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = CONFIGS / "invalid" / "policy_string_not_mapping.yml"
    status, out, err = run(capsys, "config", "check", "--config", str(path))
    assert status == 1
    assert out == ""
    line = one_error_line(err)
    assert f"{path}:5: endpoints[0].traffic_policy: must be a mapping of phases" in line


@pytest.mark.parametrize("command", ["http", "tls", "tcp"])
def test_traffic_policy_file_flag(command: str, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yml"
    policy.write_text("on_tcp_connect:\n  - actions: [{type: deny}]\n")
    endpoint = endpoint_from_argv([command, "8080", "--traffic-policy-file", str(policy)])
    assert endpoint.traffic_policy_file == str(policy.resolve())
    assert endpoint.traffic_policy is None


def test_traffic_policy_file_flag_refuses_a_missing_or_bad_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yml"
    with pytest.raises(UsageError, match=r"--traffic-policy-file .*nope\.yml: no such file"):
        endpoint_from_argv(["tcp", "5432", "--traffic-policy-file", str(missing)])
    bad = tmp_path / "bad.yml"
    bad.write_text("- just a list\n")
    with pytest.raises(UsageError, match=r"bad\.yml: must be a mapping of phases"):
        endpoint_from_argv(["http", "80", "--traffic-policy-file", str(bad)])


def test_config_check_several_files_comma_separated(capsys: pytest.CaptureFixture[str]) -> None:
    a, b = CONFIGS / "valid" / "minimal.yml", CONFIGS / "valid" / "representative.yml"
    status, out, _ = run(capsys, "--config", f"{a},{b}", "config", "check")
    assert status == 0
    # No warnings: representative.yml's web_addr, once reported, is live now.
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
    for command in ("http", "tls", "tcp", "start"):
        assert command in out
    status, out, _ = run(capsys, "http", "--help")
    assert status == 0
    assert "--upstream-tls-verify-cas" in out
    assert "--no-upstream-tls-verify" not in out  # the hidden half of --flag=false
    status, out, _ = run(capsys, "--version")
    assert status == 0
    assert out.startswith("burrow 0.1.0")
    status, out, _ = run(capsys, "version")
    assert (status, out) == (0, "burrow 0.1.0\n")


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


def test_config_check_reports_a_key_that_does_not_match_its_certificate(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = CONFIGS / "invalid" / "tls_termination_key_mismatch.yml"
    status, out, err = run(capsys, "config", "check", "--config", str(path))
    assert (status, out) == (1, "")
    line = one_error_line(err)
    assert f"{path}:" in line
    assert "agent_tls_termination.server_private_key: does not match server_certificate" in line


# --- burrow http / tls / tcp: every upstream form, every flag ---------------------------------


@pytest.mark.parametrize(
    ("addr", "target"),
    [
        ("8080", "http://localhost:8080"),
        ("10.0.0.5:8080", "http://10.0.0.5:8080"),
        ("http://app.local", "http://app.local:80"),
        ("http://app.local:8000", "http://app.local:8000"),
        ("https://app.local", "https://app.local:443"),
        ("https://app.local:8443", "https://app.local:8443"),
        ("https://", "https://localhost:443"),
        ("example.org", "http://example.org:80"),
        ("[::1]:80", "http://[::1]:80"),
        ("HTTPS://[2001:db8::5]", "https://[2001:db8::5]:443"),
    ],
)
def test_http_upstream_forms(addr: str, target: str) -> None:
    endpoint = endpoint_from_argv(["http", addr])
    assert str(endpoint.upstream.target) == target
    assert endpoint.upstream.url == target


@pytest.mark.parametrize("command", ["tcp", "tls"])
@pytest.mark.parametrize(
    ("addr", "target"),
    [
        ("5432", UpstreamURL("tcp", "localhost", 5432)),
        ("db.local:5432", UpstreamURL("tcp", "db.local", 5432)),
        ("[::1]:5432", UpstreamURL("tcp", "::1", 5432)),
        ("tcp://10.0.0.6:5432", UpstreamURL("tcp", "10.0.0.6", 5432)),
        ("tls://db.local:5433", UpstreamURL("tls", "db.local", 5433)),
    ],
)
def test_tcp_and_tls_upstream_forms(command: str, addr: str, target: UpstreamURL) -> None:
    assert endpoint_from_argv([command, addr]).upstream.target == target


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["tcp", "localhost"], "has no port"),
        (["tls", "example.org"], "has no port"),
        (["tls", "https://example.org:443"], "cannot forward to"),
        (["tcp", "https://"], "cannot forward to"),
        (["http", "tcp://localhost:22"], "cannot forward to"),
        (["http", "ftp://x"], "cannot forward to"),
        (["http", "http://x/path"], "has a path"),
        (["http", "99999"], "outside the range 1-65535"),
        (["http", ""], "upstream URL is empty"),
    ],
)
def test_bad_upstreams(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        endpoint_from_argv(argv)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["http", "80", "--url", "tcp://"], "`burrow http` serves https:// and http:// addresses"),
        (["http", "80", "--url", "tls://x.example.com"], r"or use `burrow tls`"),
        (["tls", "443", "--url", "https://x.example.com"], r"write tls://HOST \(or use `burrow"),
        (["tcp", "22", "--url", "http://x.example.com"], r"or use `burrow http`"),
        (["http", "80", "--url", "https://x.example.com:8443"], "must use port 443"),
        (["http", "80", "--binding", "internal"], "needs a host name ending in .internal"),
        (["tls", "1", "--url", "x.example.com", "--binding", "internal"], "must end in .internal"),
        (["http", "80", "--binding", "private"], "invalid choice: 'private'"),
        (["http", "80", "--name", " "], "--name must not be empty"),
        (["http", "80", "--metadata", "m" * 4097], "--metadata is 4097 characters long"),
    ],
)
def test_bad_endpoint_flags(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        endpoint_from_argv(argv)


def test_endpoint_flags() -> None:
    endpoint = endpoint_from_argv(
        [
            "http",
            "8080",
            "--url=https://app.example.com",
            "--name",
            "web",
            "--binding",
            "public",
            "--pooling-enabled",
            "--description",
            "the web app",
            "--metadata",
            '{"team": "web"}',
            "--upstream-proxy-protocol",
            "2",
            "--upstream-protocol",
            "http1",
        ]
    )
    assert (endpoint.name, endpoint.url, endpoint.bindings) == (
        "web",
        "https://app.example.com",
        ("public",),
    )
    assert endpoint.pooling_enabled is True
    assert (endpoint.description, endpoint.metadata) == ("the web app", '{"team": "web"}')
    assert (endpoint.upstream.proxy_protocol, endpoint.upstream.protocol) == (2, "http1")
    defaults = endpoint_from_argv(["tcp", "22"])
    assert (defaults.name, defaults.pooling_enabled, defaults.upstream.proxy_protocol) == (
        CLI_ENDPOINT_NAME,
        False,
        None,
    )


@pytest.mark.parametrize(
    ("flags", "pooling"),
    [
        (["--pooling-enabled"], True),
        (["--pooling-enabled=true"], True),
        (["--pooling-enabled=1"], True),
        (["--pooling-enabled=false"], False),
        (["--pooling-enabled=F"], False),
        (["--pooling-enabled", "--pooling-enabled=false"], False),  # the last one wins
    ],
)
def test_bool_flags_take_gos_forms(flags: list[str], pooling: bool) -> None:
    assert endpoint_from_argv(["tcp", "22", *flags]).pooling_enabled is pooling


def test_a_bare_bool_flag_does_not_swallow_the_upstream() -> None:
    endpoint = endpoint_from_argv(["tcp", "--pooling-enabled", "5432"])
    assert endpoint.pooling_enabled is True
    assert endpoint.upstream.target.port == 5432


def test_a_bool_flag_with_another_value_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "tcp", "22", "--pooling-enabled=maybe")
    assert status == 1
    assert "--pooling-enabled=maybe: expected --pooling-enabled=true or" in one_error_line(err)


@pytest.mark.parametrize("value", ["3", "0", "v2"])
def test_upstream_proxy_protocol_is_1_or_2(value: str) -> None:
    with pytest.raises(UsageError, match="--upstream-proxy-protocol: invalid choice"):
        endpoint_from_argv(["tcp", "22", "--upstream-proxy-protocol", value])


def test_endpoint_metadata_is_the_endpoints_after_the_command() -> None:
    endpoint = endpoint_from_argv(["--metadata", "session", "tls", "443", "--metadata", "mine"])
    assert endpoint.metadata == "mine"


def test_upstream_http2_is_not_supported_yet(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "http", "80", "--upstream-protocol", "http2", "--authtoken", "t")
    assert status == 1
    assert "HTTP/2 to the upstream is not supported yet" in one_error_line(err)


def test_upstream_tls_verify_flags() -> None:
    verified = endpoint_from_argv(["http", "https://localhost:8443"])
    assert (verified.upstream.tls_verify, verified.upstream.tls_verify_cas) == (True, None)
    off = endpoint_from_argv(["http", "https://localhost:8443", "--upstream-tls-verify=false"])
    assert off.upstream.tls_verify is False
    cas = endpoint_from_argv(["http", "https://", "--upstream-tls-verify-cas", str(PEM / "ca.pem")])
    assert cas.upstream.tls_verify_cas == str(PEM / "ca.pem")


def test_upstream_tls_verify_cas_is_resolved_from_the_working_directory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(PEM)
    endpoint = endpoint_from_argv(["http", "https://", "--upstream-tls-verify-cas", "ca.pem"])
    assert endpoint.upstream.tls_verify_cas == str((PEM / "ca.pem").resolve())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["http", "8080", "--upstream-tls-verify"], "applies to an https:// upstream"),
        (
            ["http", "8080", "--upstream-tls-verify-cas", str(PEM / "ca.pem")],
            "the upstream is http://localhost:8080",
        ),
        (["http", "https://", "--upstream-tls-verify-cas", "nope.pem"], "nope.pem: no such file"),
        (
            ["http", "https://", "--upstream-tls-verify-cas", str(PEM / "server.key")],
            "holds no PEM certificate",
        ),
        (
            [
                "http",
                "https://",
                "--upstream-tls-verify=false",
                "--upstream-tls-verify-cas",
                str(PEM / "ca.pem"),
            ],
            "has no effect with --upstream-tls-verify=false",
        ),
        (["http", "https://", "--upstream-tls-verify=nah"], "expected --upstream-tls-verify=true"),
        (["tcp", "22", "--upstream-tls-verify"], "unrecognized arguments"),
    ],
)
def test_bad_upstream_tls_flags(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        endpoint_from_argv(argv)


def test_tls_termination_flags() -> None:
    endpoint = endpoint_from_argv(
        [
            "tls",
            "5432",
            "--url",
            "tls://secure.example.com",
            "--crt",
            str(PEM / "server.pem"),
            "--key",
            str(PEM / "server.key"),
            "--mutual-tls-cas",
            str(PEM / "ca.pem"),
        ]
    )
    termination = endpoint.agent_tls_termination
    assert termination is not None
    assert termination.server_certificate == str(PEM / "server.pem")
    assert termination.server_private_key == str(PEM / "server.key")
    assert termination.mutual_tls_certificate_authorities == (str(PEM / "ca.pem"),)
    assert endpoint_from_argv(["tls", "5432"]).agent_tls_termination is None


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--crt", str(PEM / "server.pem")], "--crt and --key go together"),
        (["--key", str(PEM / "server.key")], "--crt and --key go together"),
        (["--mutual-tls-cas", str(PEM / "ca.pem")], "--mutual-tls-cas needs --crt and --key"),
        (["--crt", "missing.pem", "--key", str(PEM / "server.key")], "--crt missing.pem: no such"),
        (
            ["--crt", str(PEM / "server.pem"), "--key", str(PEM / "other.key")],
            "--key: does not match server_certificate",
        ),
        (
            ["--crt", str(PEM / "server.pem"), "--key", str(PEM / "encrypted.key")],
            "--key: is encrypted",
        ),
        (
            ["--crt", str(PEM / "server.key"), "--key", str(PEM / "server.key")],
            "--crt: holds no PEM certificate",
        ),
        (
            [
                "--crt",
                str(PEM / "server.pem"),
                "--key",
                str(PEM / "server.key"),
                "--mutual-tls-cas",
                str(PEM / "other.key"),
            ],
            "--mutual-tls-cas: holds no PEM certificate",
        ),
    ],
)
def test_bad_tls_termination_flags(flags: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        endpoint_from_argv(["tls", "5432", *flags])


def test_endpoint_errors_through_main_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["tls", "443", "--crt", "x.pem", "--authtoken", "t"],
        ["http", "8080", "--upstream-tls-verify", "--authtoken", "t"],
        ["http", "--url", "tcp://", "80", "--authtoken", "t"],
    ):
        status, out, err = run(capsys, *argv)
        assert (status, out) == (1, "")
        one_error_line(err)


def test_http_endpoints_are_inspected_unless_inspect_false() -> None:
    """ngrok's `--inspect` (http only, default true), written Go's way."""
    assert endpoint_from_argv(["http", "8080"]).inspect is True
    assert endpoint_from_argv(["http", "8080", "--inspect=false"]).inspect is False
    assert endpoint_from_argv(["http", "8080", "--inspect=true"]).inspect is True
    assert endpoint_from_argv(["tcp", "5432"]).inspect is False  # raw bytes: nothing to inspect
