"""Tests for agent/config_load.py: fixture folders, the example config, the `agent:` section,
versions and top-level keys, relative paths, and any file loading or raising `ConfigError`.

Reading files, merging them and the environment overrides: test_config_source.py; the
endpoints section: test_config_endpoints.py.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config import (
    DEFAULT_CONNECT_URL,
    AgentConfig,
    AgentSettings,
    ConfigError,
    Secret,
)
from agent.config_load import load_config
from agent.proxy_url import ProxyURL
from protocol.formats.urls import EndpointURL, UpstreamURL

HERE = Path(__file__).parent
VALID = sorted((HERE / "configs" / "valid").glob("*.yml"))
INVALID = sorted((HERE / "configs" / "invalid").glob("*.yml"))
EXAMPLE = HERE.parent.parent / "deploy" / "agent.example.yml"
PEM = HERE / "configs" / "pem"  # made by pem/make_pem.py
ERROR_PREFIX = "# error: "


def load(*paths: Path, env: dict[str, str] | None = None) -> AgentConfig:
    return load_config(list(paths), env or {})


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# Config-file-shaped text: real keys and YAML punctuation joined at random.
_YAMLISH = st.lists(
    st.sampled_from(
        [
            "version: 3\n",
            "agent:\n",
            "endpoints:\n",
            "  - ",
            "  ",
            "name: a\n",
            "url: ",
            "upstream: {url: 80}\n",
            "upstream:\n    url: tcp://",
            "bindings: [internal]\n",
            "authtoken: tok\n",
            "heartbeat_interval: 1m\n",
            "connect_url: ",
            "x.internal:22\n",
            "&a ",
            "*a\n",
            "<<: ",
            "{",
            "}",
            "[",
            "]",
            ": ",
            "\t",
            "\n",
            "- ",
            "'",
            '"',
            "#",
            "!!binary ",
            "---\n",
            "null\n",
            "true\n",
            "1\n",
        ]
    ),
    max_size=25,
).map("".join)


def test_fixture_folders_are_not_empty() -> None:
    assert len(VALID) >= 8
    assert len(INVALID) >= 40


@pytest.mark.parametrize("path", VALID, ids=[p.stem for p in VALID])
def test_valid_fixture_loads(path: Path) -> None:
    config = load(path)
    assert config.sources == (path,)


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_fixture_fails_with_its_message(path: Path) -> None:
    first_line = path.read_text().splitlines()[0]
    assert first_line.startswith(ERROR_PREFIX), f"{path.name} lacks an '# error:' line"
    expected = first_line.removeprefix(ERROR_PREFIX).strip()
    with pytest.raises(ConfigError) as caught:
        load(path)
    message = str(caught.value)
    assert expected in message
    assert message.startswith(str(path)), "every error names the file first"


def test_example_config_parses() -> None:
    config = load(EXAMPLE)
    assert config.agent.connect_url == DEFAULT_CONNECT_URL
    assert config.agent.authtoken is None
    assert [e.name for e in config.endpoints] == ["api", "db"]
    api, db = config.endpoints
    assert api.url == "https://api.clinic-a.internal"
    assert api.binding == "internal"
    assert api.upstream.target == UpstreamURL("http", "10.0.0.5", 8080)
    assert db.endpoint_url == EndpointURL("tcp", "db.clinic-a.internal", 5432)
    assert db.upstream.proxy_protocol == 2
    assert db.upstream.url == "tcp://10.0.0.6:5432"


def test_representative_file_values() -> None:
    config = load(HERE / "configs" / "valid" / "representative.yml")
    agent = config.agent
    assert agent.authtoken is not None
    assert agent.authtoken.reveal() == "2abcdefghijklmnopqrstuvwxyz_token"
    assert agent.connect_url == "connect.example.com:443"
    assert agent.connect_address == ("connect.example.com", 443)
    assert agent.connect_cas == "host"
    assert (agent.heartbeat_interval, agent.heartbeat_tolerance) == (10.0, 15.0)
    assert (agent.log, agent.log_format, agent.log_level) == ("stdout", "json", "info")
    assert agent.ngrok_options == {}
    assert agent.web_addr == ("127.0.0.1", 4040)
    api = config.endpoint("api")
    assert api is not None
    assert api.pooling_enabled
    assert api.bindings == ("internal",)
    assert api.upstream.url == "http://localhost:8080"
    assert api.upstream.protocol == "http1"
    ssh = config.endpoint("ssh")
    assert ssh is not None
    assert ssh.url == "tcp://ssh.internal:22"
    assert ssh.upstream.url == "tcp://localhost:22"
    tls = config.endpoint("tlsdemo")
    assert tls is not None
    assert tls.agent_tls_termination is not None
    assert tls.agent_tls_termination.server_certificate.startswith("-----BEGIN CERTIFICATE")
    key_body = (PEM / "server.key").read_text().splitlines()[1]
    assert key_body in tls.agent_tls_termination.server_private_key
    assert key_body not in repr(tls.agent_tls_termination)
    front = config.endpoint("front")
    assert front is not None
    assert front.binding == "public"
    assert front.traffic_policy is None
    assert config.endpoint("missing") is None


def test_all_agent_keys_are_kept() -> None:
    config = load(HERE / "configs" / "valid" / "all_agent_keys.yml")
    agent = config.agent
    assert agent.connect_url == "[::1]:8443"
    assert agent.connect_address == ("::1", 8443)
    assert agent.connect_timeout == 90.0
    assert agent.heartbeat_interval == 0.25
    assert agent.heartbeat_tolerance == 3600.0
    assert agent.log == "false"
    assert agent.log_level == "debug"
    options = agent.ngrok_options
    assert agent.console_ui == "iftty"  # acted on now: agent.console
    assert "console_ui" not in options
    assert agent.web_addr is None  # web_addr: false
    assert agent.inspect_db_size == -1
    assert options["dns_resolver_ips"] == ["1.1.1.1", "8.8.8.8"]
    assert "proxy_url" not in options  # acted on: agent.proxy
    assert agent.remote_management is False  # acted on: the Auth refuses stop and restart
    assert "remote_management" not in options
    assert agent.proxy == ProxyURL(scheme="socks5", host="proxy.example.com", port=1080)
    api_key = options["api_key"]
    assert isinstance(api_key, Secret)
    assert api_key.reveal() == "key_all_agent_keys_4567"
    assert "key_all_agent_keys" not in repr(config)


def test_proxy_url_is_acted_on_not_reported_as_ignored(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "proxy.yml",
        "version: 3\nagent:\n  proxy_url: http://clinic:s%40cret@proxy.lan:3128\n"
        "  update_check: true\n",
    )
    config = load(path)
    assert config.agent.proxy == ProxyURL(
        scheme="http", host="proxy.lan", port=3128, username="clinic", password="s@cret"
    )
    assert "s@cret" not in repr(config)
    assert [line for line in config.not_supported if "agent.proxy_url" in line] == []
    assert [line.split(": ", 1)[1] for line in config.not_supported] == [
        "agent.update_check: not supported by Burrow yet; accepted and ignored"
    ]


def test_yaml_anchors_and_merge_keys() -> None:
    config = load(HERE / "configs" / "valid" / "yaml_features.yml")
    one, two, three = config.endpoints
    assert two.pooling_enabled and two.upstream == one.upstream
    assert three.upstream.url == "http://localhost:8080"
    assert (one.url, two.url) == ("https://one.example.internal", "https://two.example.internal")


def test_empty_sections_mean_defaults() -> None:
    config = load(HERE / "configs" / "valid" / "empty_sections.yml")
    assert config.agent == AgentSettings()
    assert config.endpoints == ()


def test_logs_go_to_stderr_unless_the_file_says_otherwise() -> None:
    """Burrow's default sink is stderr; an explicit `log: false` (ngrok's) means none."""
    config = load(HERE / "configs" / "valid" / "empty_sections.yml")
    assert (config.agent.log, config.agent.console_ui) == ("stderr", "iftty")
    assert load(HERE / "configs" / "valid" / "all_agent_keys.yml").agent.log == "false"


def test_no_files_gives_defaults_and_environment() -> None:
    config = load_config([], {"BURROW_AUTHTOKEN": "tok_from_environment_01"})
    assert config.sources == ()
    assert config.agent.connect_url == DEFAULT_CONNECT_URL
    assert config.agent.connect_cas == "trusted"
    assert config.agent.authtoken == Secret("tok_from_environment_01")


def test_version_is_checked_in_every_file(tmp_path: Path) -> None:
    base = write(tmp_path, "base.yml", "version: 3\nagent: {}\n")
    old = write(tmp_path, "old.yml", "version: 2\n")
    with pytest.raises(ConfigError, match="version 2 files are not supported") as caught:
        load(base, old)
    assert caught.value.source == str(old)


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    write(conf, "policy.yml", "on_http_request: []\n")
    write(conf, "edge-ca.pem", (PEM / "ca.pem").read_text())
    write(conf, "site.crt", (PEM / "server.pem").read_text())
    write(conf, "site.key", (PEM / "server.key").read_text())
    path = write(
        conf,
        "burrow.yml",
        "version: 3\n"
        "agent:\n  connect_cas: edge-ca.pem\n  log: logs/agent.log\n"
        "endpoints:\n"
        "  - {name: web, upstream: {url: 80}}\n"
        "  - name: db\n    url: tls://db.example.com\n    upstream: {url: 5432}\n"
        "    agent_tls_termination:\n"
        "      server_certificate: site.crt\n      server_private_key: site.key\n"
        "      mutual_tls_certificate_authorities: [edge-ca.pem]\n",
    )
    config = load(path)
    directory = path.resolve().parent
    assert config.agent.connect_cas == str(directory / "edge-ca.pem")
    assert config.agent.log == str(directory / "logs" / "agent.log")
    web, db = config.endpoints
    assert web.traffic_policy_file is None
    assert db.agent_tls_termination is not None
    assert db.agent_tls_termination.server_private_key == str(directory / "site.key")
    assert db.agent_tls_termination.mutual_tls_certificate_authorities == (
        str(directory / "edge-ca.pem"),
    )


def test_empty_file_needs_a_version(tmp_path: Path) -> None:
    path = write(tmp_path, "empty.yml", "")
    with pytest.raises(ConfigError, match=r"version: missing; add `version: 3`"):
        load(path)


def test_metadata_length_limit(tmp_path: Path) -> None:
    path = write(tmp_path, "long.yml", f"version: 3\nagent:\n  metadata: {'m' * 4097}\n")
    with pytest.raises(ConfigError, match=r"agent\.metadata: is 4097 characters long"):
        load(path)


@settings(deadline=None, max_examples=300)
@given(_YAMLISH)
def test_any_file_loads_or_raises_config_error(text: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "fuzz.yml"
        path.write_text(text)
        try:
            load(path)
        except ConfigError as exc:
            assert str(exc).startswith(str(path))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:4041", ("127.0.0.1", 4041)),
        ("localhost:0", ("localhost", 0)),
        ("'[::1]:4040'", ("::1", 4040)),
        ("false", None),
    ],
)
def test_web_addr_forms(tmp_path: Path, value: str, expected: tuple[str, int] | None) -> None:
    path = tmp_path / "burrow.yml"
    path.write_text(f"version: 3\nagent:\n  web_addr: {value}\n  inspect_db_size: 1000000\n")
    agent = load(path).agent
    assert agent.web_addr == expected
    assert agent.inspect_db_size == 1_000_000


def test_web_addr_and_inspect_default_to_ngroks() -> None:
    config = load(HERE / "configs" / "valid" / "minimal.yml")
    assert config.agent.web_addr == ("127.0.0.1", 4040)
    assert config.agent.inspect_db_size == 0  # ngrok's 0: the default size (50 MB)
