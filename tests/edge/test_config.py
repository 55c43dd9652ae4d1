"""The edge config file: fixtures in configs/valid and configs/invalid, the example, the parsers."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from edge.config import (
    AdminConfig,
    CertificateFiles,
    CertificatesConfig,
    ConfigError,
    EdgeConfig,
    HeartbeatConfig,
    HttpConfig,
    LimitsConfig,
    ListenConfig,
    TcpConfig,
    TlsConfig,
    load_edge_config,
    parse_duration,
    parse_hostport,
    parse_port_range,
    parse_size,
)

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


def test_example_config_shows_every_key() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    sections = {
        "listen": ListenConfig,
        "tcp": TcpConfig,
        "tls": TlsConfig,
        "http": HttpConfig,
        "heartbeat": HeartbeatConfig,
        "limits": LimitsConfig,
        "admin": AdminConfig,
    }
    for field in dataclasses.fields(EdgeConfig):
        assert f"\n{field.name}:" in text, field.name
    for section, schema in sections.items():
        for field in dataclasses.fields(schema):
            assert f"\n  {field.name}:" in text, f"{section}.{field.name}"
    admin = text[text.index("\nadmin:") :]
    for field in dataclasses.fields(TlsConfig):
        assert f"\n    {field.name}:" in admin, f"admin.tls.{field.name}"


def test_no_file_and_empty_file_mean_defaults(tmp_path: Path) -> None:
    empty = tmp_path / "edge.yml"
    empty.write_text("")
    assert load_edge_config(None) == EdgeConfig()
    assert load_edge_config(empty) == EdgeConfig()


def test_defaults() -> None:
    config = EdgeConfig()
    assert config.domain == "burrow.localhost"
    assert config.connect_host == "connect.burrow.localhost"
    assert config.listen.tls == ("127.0.0.1", 8443)
    assert config.tcp == TcpConfig(
        bind_host="127.0.0.1", public_host="burrow.localhost", port_range=range(20000, 21000)
    )
    assert config.tls == TlsConfig(cert=None, key=None)
    assert config.heartbeat == HeartbeatConfig(interval=10.0, tolerance=15.0)
    assert config.limits == LimitsConfig(
        max_streams_per_session=4096,
        accept_backlog=256,
        session_buffer_bytes=64 * 1024 * 1024,
        stream_window_max=16 * 1024 * 1024,
        max_endpoints_per_session=100,
        auth_timeout=10.0,
    )
    assert config.admin == AdminConfig(
        enabled=True, listen=("127.0.0.1", 4041), tls=TlsConfig(cert=None, key=None)
    )


def test_names_under_the_domain_follow_it() -> None:
    config = load_edge_config(CONFIGS / "valid" / "domain-only.yml")
    assert config.domain == "tunnels.example.test"  # lower-cased, trailing dot dropped
    assert config.connect_host == "connect.tunnels.example.test"
    assert config.tcp.public_host == "tunnels.example.test"
    built = EdgeConfig(domain="example.test")
    assert (built.connect_host, built.tcp.public_host) == ("connect.example.test", "example.test")


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


def test_http2_is_off_unless_asked_for(tmp_path: Path) -> None:
    assert EdgeConfig().http.http2 is False
    path = tmp_path / "edge.yml"
    path.write_text("http:\n  http2: true\n")
    assert load_edge_config(path).http == HttpConfig(http2=True)
    path.write_text("http:\n  http2: 'yes'\n")
    with pytest.raises(ConfigError) as caught:
        load_edge_config(path)
    expected = f"{path}:2: http.http2: expected true or false, got a string ('yes')"
    assert str(caught.value) == expected


def test_nulls_mean_defaults() -> None:
    assert load_edge_config(CONFIGS / "valid" / "nulls.yml") == EdgeConfig()


def test_ipv6_and_single_port() -> None:
    config = load_edge_config(CONFIGS / "valid" / "ipv6.yml")
    assert config.listen.tls == ("::1", 0)
    assert config.tcp.bind_host == "::"
    assert config.tcp.port_range == range(20000, 20001)


def test_config_is_frozen() -> None:
    config = EdgeConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.domain = "other.test"  # type: ignore[misc]


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


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("10s", 10.0),
        ("1m30s", 90.0),
        ("2h", 7200.0),
        ("1h2m3s4ms", 3723.004),
        ("1.5s", 1.5),
        ("0", 0.0),
        ("45", 45.0),
        (" 10s ", 10.0),
        (7, 7.0),
        (0.5, 0.5),
    ],
)
def test_parse_duration(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["", "s", "10 s", "10sec", "1m30", "-1s", "1e3s", "\u0661s", "ms", "1.s", "10S"]
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(text)


@pytest.mark.parametrize("value", [-1, float("inf"), float("nan"), "9" * 400])
def test_parse_duration_rejects_negative_and_infinite(value: str | float) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


def test_parsers_reject_booleans() -> None:
    with pytest.raises(TypeError):
        parse_duration(True)
    with pytest.raises(TypeError):
        parse_size(False)
    with pytest.raises(TypeError):
        parse_port_range(True)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("64MiB", 64 * 1024**2),
        ("512 KiB", 512 * 1024),
        ("1GiB", 1024**3),
        ("1KB", 1000),
        ("2MB", 2_000_000),
        ("1GB", 1_000_000_000),
        ("1.5KiB", 1536),
        ("100B", 100),
        ("4096", 4096),
        (4096, 4096),
    ],
)
def test_parse_size(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "MiB", "64Mb", "64 mib", "-1", "1.5", "64  MiB", "1e3"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


@pytest.mark.parametrize(
    ("text", "hostport"),
    [
        ("127.0.0.1:8443", ("127.0.0.1", 8443)),
        ("localhost:80", ("localhost", 80)),
        ("Connect.Burrow.Localhost:443", ("connect.burrow.localhost", 443)),
        ("[::1]:8443", ("::1", 8443)),
        ("[::]:0", ("::", 0)),
        ("[2001:DB8::1]:65535", ("2001:db8::1", 65535)),
        ("0.0.0.0:443", ("0.0.0.0", 443)),
    ],
)
def test_parse_hostport(text: str, hostport: tuple[str, int]) -> None:
    assert parse_hostport(text) == hostport


@pytest.mark.parametrize(
    "text",
    [
        "",
        "127.0.0.1",
        ":8443",
        "127.0.0.1:",
        "127.0.0.1:65536",
        "127.0.0.1:-1",
        "127.0.0.1:\uff18\uff10",
        "::1:8443",
        "[::1]8443",
        "[::1",
        "[not-ipv6]:80",
        "bad_host:80",
        "[::1]:",
    ],
)
def test_parse_hostport_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_hostport(text)


@pytest.mark.parametrize(
    ("text", "ports"),
    [
        ("20000-20999", range(20000, 21000)),
        ("1-65535", range(1, 65536)),
        ("8080", range(8080, 8081)),
        ("5 - 7", range(5, 8)),
        (9000, range(9000, 9001)),
    ],
)
def test_parse_port_range(text: str | int, ports: range) -> None:
    assert parse_port_range(text) == ports


@pytest.mark.parametrize("text", ["", "0-10", "1-65536", "20-10", "a-b", "10-", "-10", "1-2-3"])
def test_parse_port_range_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_port_range(text)


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


def test_request_body_limits_load_and_are_validated(tmp_path: Path) -> None:
    """http.body_min_rate, http.body_rate_window and http.body_timeout (finding 3 of the
    hardening issue: slow request bodies)."""
    assert (HttpConfig().body_min_rate, HttpConfig().body_rate_window) == (500, 20.0)
    assert HttpConfig().body_timeout == 3600.0
    path = tmp_path / "edge.yml"
    path.write_text("http:\n  body_min_rate: 1KiB\n  body_rate_window: 30s\n  body_timeout: 2h\n")
    assert load_edge_config(path).http == HttpConfig(
        body_min_rate=1024, body_rate_window=30.0, body_timeout=7200.0
    )
    for text, message in [
        ("http:\n  body_min_rate: 0\n", "http.body_min_rate: must be at least 1 byte"),
        ("http:\n  body_rate_window: 0s\n", "http.body_rate_window: must be longer than zero"),
        ("http:\n  body_timeout: soon\n", "http.body_timeout:"),
    ]:
        path.write_text(text)
        with pytest.raises(ConfigError) as caught:
            load_edge_config(path)
        assert message in str(caught.value), str(caught.value)
        assert caught.value.line == 2


def test_header_count_and_forwarded_host_settings_load_and_are_validated(tmp_path: Path) -> None:
    """http.max_headers and http.replace_x_forwarded_host (finding 7 of the hardening issue)."""
    assert HttpConfig().max_headers == 100
    assert HttpConfig().replace_x_forwarded_host is False  # ngrok's behaviour
    path = tmp_path / "edge.yml"
    path.write_text("http:\n  max_headers: 250\n  replace_x_forwarded_host: true\n")
    assert load_edge_config(path).http == HttpConfig(max_headers=250, replace_x_forwarded_host=True)
    for text, message in [
        ("http:\n  max_headers: 0\n", "http.max_headers: must be at least 1, got 0"),
        ("http:\n  max_headers: many\n", "http.max_headers: expected an integer"),
        (
            "http:\n  replace_x_forwarded_host: replace\n",
            "http.replace_x_forwarded_host: expected true or false",
        ),
    ]:
        path.write_text(text)
        with pytest.raises(ConfigError) as caught:
            load_edge_config(path)
        assert message in str(caught.value), str(caught.value)
        assert caught.value.line == 2


def test_max_buffered_response_body_is_a_size_of_at_least_one_byte(tmp_path: Path) -> None:
    assert HttpConfig().max_buffered_response_body == 10 * 1024 * 1024
    path = tmp_path / "edge.yml"
    path.write_text("http:\n  max_buffered_response_body: 256KiB\n")
    assert load_edge_config(path).http.max_buffered_response_body == 256 * 1024
    path.write_text("http:\n  max_buffered_response_body: 0\n")
    with pytest.raises(ConfigError) as caught:
        load_edge_config(path)
    assert "http.max_buffered_response_body: must be at least 1 byte" in str(caught.value)


def test_forward_internal_max_hops_loads_and_must_be_at_least_one(tmp_path: Path) -> None:
    assert LimitsConfig().forward_internal_max_hops == 5
    path = tmp_path / "edge.yml"
    path.write_text("limits:\n  forward_internal_max_hops: 2\n")
    assert load_edge_config(path).limits.forward_internal_max_hops == 2
    path.write_text("limits:\n  forward_internal_max_hops: 0\n")
    with pytest.raises(ConfigError) as caught:
        load_edge_config(path)
    assert "limits.forward_internal_max_hops: must be at least 1" in str(caught.value)


def test_admin_metrics_settings(tmp_path: Path) -> None:
    path = tmp_path / "edge.yml"
    path.write_text("admin:\n  metrics_require_api_key: true\n  metrics_max_endpoint_labels: 50\n")
    admin = load_edge_config(path).admin
    assert (admin.metrics_require_api_key, admin.metrics_max_endpoint_labels) == (True, 50)
    assert (AdminConfig().metrics_require_api_key, AdminConfig().metrics_max_endpoint_labels) == (
        False,
        2000,
    )
