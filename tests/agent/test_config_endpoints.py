"""Tests for agent/config_endpoints.py: every endpoint key, URL and upstream forms, TLS
termination, Traffic Policy forms and `policy_problem`, loaded from real files.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import AgentConfig, ConfigError
from agent.config_endpoints import policy_problem
from agent.config_load import load_config
from protocol.formats.urls import UpstreamURL

HERE = Path(__file__).parent


def load(*paths: Path, env: dict[str, str] | None = None) -> AgentConfig:
    return load_config(list(paths), env or {})


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_all_endpoint_keys() -> None:
    config = load(HERE / "configs" / "valid" / "all_endpoint_keys.yml")
    everything, k8s = config.endpoints
    assert everything.bindings == ("internal",)
    assert everything.inspect is False
    assert everything.upstream.proxy_protocol == 1
    assert everything.upstream.target == UpstreamURL("tcp", "10.0.0.6", 5432)
    assert everything.description == "all the keys"
    assert everything.traffic_policy == {
        "on_tcp_connect": [
            {"actions": [{"type": "restrict-ips", "config": {"allow": ["10.0.0.0/8"]}}]}
        ]
    }
    assert everything.metadata == '{"team": "db"}'
    termination = everything.agent_tls_termination
    assert termination is not None
    assert len(termination.mutual_tls_certificate_authorities) == 1
    assert k8s.binding == "kubernetes"
    assert k8s.upstream.url == "http://web.example.org:80"
    assert k8s.upstream.protocol == "http1"


def test_tls_termination_alpn_protocols() -> None:
    config = load(HERE / "configs" / "valid" / "tls_termination_alpn.yml")
    (db,) = config.endpoints
    assert db.agent_tls_termination is not None
    assert db.agent_tls_termination.alpn_protocols == ("postgresql",)
    # Without the key (ngrok's files), the agent's TLS server ignores ALPN, as before.
    everything, _ = load(HERE / "configs" / "valid" / "all_endpoint_keys.yml").endpoints
    assert everything.agent_tls_termination is not None
    assert everything.agent_tls_termination.alpn_protocols == ()


def test_url_forms_canonicalise() -> None:
    config = load(HERE / "configs" / "valid" / "url_forms.yml")
    urls = {e.name: e.url for e in config.endpoints}
    assert urls == {
        "empty": "https://",
        "empty-string": "https://",
        "domain": "https://example.org",
        "origin": "https://x.example.com",
        "http": "http://x.example.com",
        "scheme-only": "tcp://",
        "tcp": "tcp://1.tcp.example.com:12345",
        "tls": "tls://x.example.com",
        "internal-domain": "https://foo.internal",
        "internal-port": "https://example.internal:1234",
        "internal-wildcard": "https://*.svc.internal",
        "wildcard": "https://*.example.com",
        "ipv6": "tcp://[2001:db8::1]:9000",
        "five-parts": "https://a.b.c.d.internal",
    }
    bindings = {e.name: e.binding for e in config.endpoints}
    assert bindings["internal-domain"] == "internal"
    assert bindings["empty"] == "public"


def test_upstream_forms_canonicalise() -> None:
    config = load(HERE / "configs" / "valid" / "upstream_forms.yml")
    upstreams = {e.name: e.upstream.url for e in config.endpoints}
    assert upstreams == {
        "port": "http://localhost:8080",
        "port-string": "http://localhost:8080",
        "host-port": "http://10.0.0.5:8080",
        "https-origin": "https://example.org:443",
        "http-origin-port": "http://example.org:8000",
        "domain": "http://example.org:80",
        "scheme-only": "https://localhost:443",
        "ipv6": "http://[::1]:80",
        "tcp-port": "tcp://localhost:22",
        "tcp-origin": "tcp://127.0.0.1:80",
        "tls-to-tls": "tls://db.local:5433",
    }


def test_config_error_carries_the_ngrok_code(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "c.yml",
        "version: 3\nagent: {}\nendpoints:\n  - {name: x, url: 'tcp://h.internal:0', "
        "upstream: {url: 1}}\n",
    )
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert caught.value.code == "ERR_NGROK_9030"


def test_traffic_policy_forms() -> None:
    """A string is kept as written (the agent sends it as is); a file is checked, kept by path."""
    config = load(HERE / "configs" / "valid" / "traffic_policy_forms.yml")
    api, front, as_json, from_file = config.endpoints
    assert api.traffic_policy is None and api.traffic_policy_file is None
    assert isinstance(front.traffic_policy, str)
    assert front.traffic_policy.startswith("on_http_request:\n")
    assert as_json.traffic_policy == '{"on_http_request": [{"actions": [{"type": "deny"}]}]}'
    assert from_file.traffic_policy is None
    assert from_file.traffic_policy_file is not None
    assert (
        Path(from_file.traffic_policy_file).resolve()
        == (HERE / "configs" / "policies" / "restrict.yml").resolve()
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", None),
        ("# only a comment\n", None),
        ("on_http_request: []\n", None),
        ('{"on_tcp_connect": []}', None),
        ('{\n\t"on_tcp_connect": []\n}', None),  # JSON with tabs: not YAML, still accepted
        ("- a\n", "must be a mapping of phases"),
        ("42", "must be a mapping of phases"),
        ("on_http_request: [\n", "is not YAML or JSON"),
    ],
)
def test_policy_problem(text: str, problem: str | None) -> None:
    got = policy_problem(text)
    if problem is None:
        assert got is None
    else:
        assert got is not None and problem in got
