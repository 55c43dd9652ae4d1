"""The deprecated `tunnels:` map (agent/legacy_tunnels.py), loaded from real files through
`agent.config_load.load_config`; refusals are fixtures in configs/invalid/tunnels_*.yml."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from agent.cli import run
from agent.config import AgentConfig, ConfigError
from agent.config_load import load_config

PEM = Path(__file__).parent / "configs" / "pem"


def _load(tmp_path: Path, text: str) -> tuple[Path, AgentConfig]:
    path = tmp_path / "burrow.yml"
    path.write_text(text)
    return path, load_config([path], {})


def test_each_proto_maps_to_an_endpoint(tmp_path: Path) -> None:
    _, config = _load(
        tmp_path,
        "version: 3\n"
        "tunnels:\n"
        "  web: {proto: http, addr: 8080, domain: shop.example.com, inspect: false}\n"
        "  plain: {proto: http, addr: 'localhost:3000', schemes: [http], metadata: m}\n"
        "  old: {proto: http, addr: 80, hostname: old.example.com, bind_tls: false}\n"
        "  db: {proto: tcp, addr: 5432, remote_addr: 'db.example.com:25432', proxy_proto: 2}\n"
        "  rnd: {proto: tcp, addr: 22}\n"
        "  sni: {proto: tls, addr: 'localhost:8443', domain: secure.example.com}\n",
    )
    by_name = {endpoint.name: endpoint for endpoint in config.endpoints}
    assert list(by_name) == ["web", "plain", "old", "db", "rnd", "sni"]
    assert by_name["web"].url == "https://shop.example.com"
    assert by_name["web"].upstream.url == "http://localhost:8080"
    assert by_name["web"].inspect is False
    assert by_name["plain"].url == "http://"
    assert by_name["plain"].upstream.url == "http://localhost:3000"
    assert by_name["plain"].metadata == "m"
    assert by_name["old"].url == "http://old.example.com"
    assert by_name["db"].url == "tcp://db.example.com:25432"
    assert by_name["db"].upstream.proxy_protocol == 2
    assert by_name["rnd"].url == "tcp://"
    assert by_name["sni"].url == "tls://secure.example.com"
    assert by_name["sni"].agent_tls_termination is None


def test_each_tunnel_read_is_noted_with_its_line(tmp_path: Path) -> None:
    path, config = _load(
        tmp_path, "version: 3\ntunnels:\n  web:\n    proto: http\n    addr: 8080\n"
    )
    assert config.not_supported == (
        f"{path}:3: tunnels.web: deprecated v2-style tunnel, read as the endpoint 'web' with url "
        "https://; move it to endpoints: (see deploy/agent.example.yml)",
    )


def test_an_endpoint_of_the_same_name_takes_precedence(tmp_path: Path) -> None:
    path, config = _load(
        tmp_path,
        "version: 3\n"
        "endpoints:\n"
        "  - {name: web, url: 'https://a.example.com', upstream: {url: 9000}}\n"
        "tunnels:\n"
        "  web: {proto: http, addr: 8080, domain: b.example.com}\n",
    )
    assert [(e.name, e.url) for e in config.endpoints] == [("web", "https://a.example.com")]
    assert config.not_supported == (
        f"{path}:5: tunnels.web: an endpoint named 'web' is defined too and takes precedence, "
        "as in ngrok; this deprecated tunnel is ignored: remove it",
    )


def test_tls_crt_and_key_terminate_at_the_agent(tmp_path: Path) -> None:
    _, config = _load(
        tmp_path,
        "version: 3\n"
        "tunnels:\n"
        "  sni:\n"
        "    proto: tls\n"
        "    addr: 5432\n"
        "    domain: db.example.com\n"
        f"    crt: {PEM / 'server.pem'}\n"
        f"    key: {PEM / 'server.key'}\n"
        "    terminate_at: agent\n",
    )
    termination = config.endpoints[0].agent_tls_termination
    assert termination is not None
    assert termination.server_certificate == str(PEM / "server.pem")
    assert termination.server_private_key == str(PEM / "server.key")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ("crt: x.pem", "tunnels.sni.key: missing; crt and key go together"),
        ("terminate_at: edge", "tunnels.sni.terminate_at: 'edge' cannot be read by Burrow"),
        ("terminate_at: agent", "tunnels.sni.terminate_at: agent needs crt and key"),
        ("domain: a.example.com, hostname: b.example.com", "domain and hostname both give"),
        ("inspect: false", "tunnels.sni.inspect: only applies to http tunnels, and this is tls"),
    ],
)
def test_tls_tunnel_refusals(tmp_path: Path, fields: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, f"version: 3\ntunnels:\n  sni: {{proto: tls, addr: 443, {fields}}}\n")
    assert message in str(caught.value)


def test_a_missing_pem_points_at_the_tunnel_line(tmp_path: Path) -> None:
    text = (
        "version: 3\ntunnels:\n  sni:\n    proto: tls\n    addr: 443\n"
        "    crt: missing.pem\n    key: missing.key\n"
    )
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, text)
    assert str(caught.value).startswith(
        f"{tmp_path / 'burrow.yml'}:6: tunnels.sni.agent_tls_termination.server_certificate:"
    )


def test_config_check_and_start_use_the_tunnel(tmp_path: Path) -> None:
    path, _ = _load(tmp_path, "version: 3\ntunnels:\n  web: {proto: http, addr: 8080}\n")
    out, err = io.StringIO(), io.StringIO()
    assert run(["config", "check", "--config", str(path)], {}, out, err) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].startswith(f"warning: {path}:3: tunnels.web: deprecated v2-style tunnel")
    assert lines[1] == f"Valid configuration file at {path}"
    # `start NAME` finds it by its tunnel name (and then needs an authtoken, which is not set)
    out, err = io.StringIO(), io.StringIO()
    assert run(["start", "web", "--config", str(path)], {}, out, err) == 1
    assert "no authtoken" in err.getvalue()
    out, err = io.StringIO(), io.StringIO()
    assert run(["start", "nope", "--config", str(path)], {}, out, err) == 1
    assert "defined: web" in err.getvalue()


def test_tunnels_merge_across_files_key_by_key(tmp_path: Path) -> None:
    first = tmp_path / "a.yml"
    first.write_text(
        "version: 3\ntunnels:\n  a: {proto: tcp, addr: 1}\n  b: {proto: tcp, addr: 2}\n"
    )
    second = tmp_path / "b.yml"
    second.write_text("version: 3\ntunnels:\n  b: {proto: tcp, addr: 3}\n")
    config = load_config([first, second], {})
    assert [(e.name, e.upstream.url) for e in config.endpoints] == [
        ("a", "tcp://localhost:1"),
        ("b", "tcp://localhost:3"),
    ]
