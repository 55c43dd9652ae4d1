"""The edge's settings: defaults, names under the domain, frozen values, the example documenting
every key, and each named limit's default with how it loads."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from edge.config import (
    AdminConfig,
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
EXAMPLE = Path(__file__).parents[2] / "deploy" / "edge.example.yml"


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


def test_config_is_frozen() -> None:
    config = EdgeConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.domain = "other.test"  # type: ignore[misc]


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
