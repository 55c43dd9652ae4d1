"""The edge config file loaded and validated: fixtures in configs/valid and configs/invalid,
the example, relative paths, and the errors a bad file gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config import (
    AdminConfig,
    CertificateFiles,
    CertificatesConfig,
    EdgeConfig,
    HeartbeatConfig,
    HttpConfig,
    LimitsConfig,
    ListenConfig,
    TcpConfig,
    TlsConfig,
)
from edge.config_file import ConfigError, load_edge_config

CONFIGS = Path(__file__).parent / "configs"
VALID = sorted((CONFIGS / "valid").glob("*.yml"))
INVALID = sorted((CONFIGS / "invalid").glob("*.yml"))
EXAMPLE = Path(__file__).parents[2] / "deploy" / "edge.example.yml"


def expected_error(path: Path) -> str:
    first_line = path.read_text(encoding="utf-8").splitlines()[0]
    assert first_line.startswith("# error: "), f"{path.name} must start with '# error: <text>'"
    return first_line.removeprefix("# error: ")


def test_fixture_folders_are_not_empty() -> None:
    assert len(VALID) >= 5
    assert len(INVALID) >= 25


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_fixture_loads(path: Path) -> None:
    assert isinstance(load_edge_config(path), EdgeConfig)


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_fixture_fails_with_its_message(path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_edge_config(path)
    message = str(caught.value)
    assert expected_error(path) in message
    assert message.startswith(str(path)), "every error names the file first"
    assert caught.value.file == path


def test_example_config_parses_to_the_defaults() -> None:
    assert load_edge_config(EXAMPLE) == EdgeConfig()


def test_no_file_and_empty_file_mean_defaults(tmp_path: Path) -> None:
    empty = tmp_path / "edge.yml"
    empty.write_text("")
    assert load_edge_config(None) == EdgeConfig()
    assert load_edge_config(empty) == EdgeConfig()


def test_every_key_set() -> None:
    here = (CONFIGS / "valid" / "everything.yml").absolute()
    config = load_edge_config(here)
    assert config == EdgeConfig(
        domain="example.test",
        connect_host="agents.example.test",
        listen=ListenConfig(tls=("0.0.0.0", 443), http=("0.0.0.0", 80)),
        certificates=CertificatesConfig(
            files=(CertificateFiles(cert=here, key=here),),
            development_ca=False,
            cache_size=10,
            reload_interval=60.0,
        ),
        http=HttpConfig(max_head_size=8 * 1024, head_timeout=3.0, idle_timeout=60.0, http2=True),
        tcp=TcpConfig(
            bind_host="0.0.0.0", public_host="203.0.113.7", port_range=range(30000, 30100)
        ),
        heartbeat=HeartbeatConfig(interval=90.0, tolerance=2.0),
        limits=LimitsConfig(
            max_streams_per_session=100,
            accept_backlog=8,
            session_buffer_bytes=1_000_000_000,
            stream_window_max=512 * 1024,
            max_endpoints_per_session=3,
            auth_timeout=0.25,
            hello_timeout=2.0,
            max_public_connections=50,
        ),
        admin=AdminConfig(enabled=False, listen=("::", 9041)),
    )


def test_admin_tls_paths_are_relative_to_the_file() -> None:
    path = CONFIGS / "valid" / "admin-tls.yml"
    config = load_edge_config(path)
    assert config.admin.listen == ("127.0.0.1", 0)
    assert config.admin.tls == TlsConfig(cert=path.absolute(), key=path.absolute())


def test_plain_http_port_can_be_turned_off(tmp_path: Path) -> None:
    path = tmp_path / "edge.yml"
    path.write_text("listen:\n  http: false\n")
    assert load_edge_config(path).listen.http is None


def test_nulls_mean_defaults() -> None:
    assert load_edge_config(CONFIGS / "valid" / "nulls.yml") == EdgeConfig()


def test_ipv6_and_single_port() -> None:
    config = load_edge_config(CONFIGS / "valid" / "ipv6.yml")
    assert config.listen.tls == ("::1", 0)
    assert config.tcp.bind_host == "::"
    assert config.tcp.port_range == range(20000, 20001)


def test_static_tls_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "edge.pem").write_text("chain")
    (tmp_path / "certs" / "edge.key").write_text("key")
    config_file = tmp_path / "edge.yml"
    config_file.write_text("tls:\n  cert: certs/edge.pem\n  key: certs/edge.key\n")
    config = load_edge_config(config_file)
    assert config.tls == TlsConfig(
        cert=tmp_path / "certs" / "edge.pem", key=tmp_path / "certs" / "edge.key"
    )


def test_missing_file_says_what_to_do(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yml"
    with pytest.raises(ConfigError, match="no such file; create it"):
        load_edge_config(missing)


def test_invalid_utf8_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "edge.yml"
    bad.write_bytes(b"domain: \xff\xfe\n")
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_edge_config(bad)


def test_config_error_carries_the_key_and_line() -> None:
    path = CONFIGS / "invalid" / "unknown-nested-key.yml"
    with pytest.raises(ConfigError) as caught:
        load_edge_config(path)
    assert (caught.value.file, caught.value.key, caught.value.line) == (path, "listen.tlz", 3)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("limits: &a\n  x: *a\n", "edge.yml:1: the file is not valid YAML: recursive YAML alias"),
        ("domain: &a [*a]\n", "the file is not valid YAML: recursive YAML alias"),
        ("limits: 2024-13-45\n", "the file is not valid YAML: month must be in 1..12"),
    ],
)
def test_hostile_yaml_is_a_config_error(tmp_path: Path, text: str, message: str) -> None:
    config_file = tmp_path / "edge.yml"
    config_file.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_edge_config(config_file)
    assert message in str(caught.value)
    assert str(caught.value).startswith(str(config_file))
