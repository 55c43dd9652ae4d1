"""The Auth and Bind requests built from settings, and the resume state between sessions."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from agent.cli_endpoints import http_endpoint, tcp_endpoint, tls_endpoint
from agent.config import AgentSettings, EndpointSettings, Secret
from agent.config_load import load_config
from agent.errors import AgentError
from agent.requests import (
    AGENT_VERSION,
    BoundEndpoint,
    HostInfo,
    ResumeState,
    build_auth,
    build_bind,
    check_supported,
    upstream_display,
)
from protocol.rpc.codec import Codec, decode, encode
from protocol.rpc.messages import Auth, AuthResp, AuthRespExtra, Bind, BindResp, BindRespExtra

HOST = HostInfo(os="linux", arch="x86_64", hostname="clinic-box")


def tcp(addr: str = "5432", url: str | None = None, pooling: bool = False) -> EndpointSettings:
    return tcp_endpoint(addr, url=url, name="db", pooling=pooling)


def test_auth_carries_the_settings_in_ngrok_units() -> None:
    settings = AgentSettings(
        authtoken=Secret("tok_abcdefghijklmnop"),
        heartbeat_interval=10.0,
        heartbeat_tolerance=15.0,
        metadata="clinic-a/agent-1",
    )
    auth = build_auth(settings, ResumeState(), HOST)
    assert auth.version == ("3", "2")
    assert auth.client_id == ""
    extra = auth.extra
    assert (extra.os, extra.arch, extra.hostname) == ("linux", "x86_64", "clinic-box")
    assert extra.authtoken == "tok_abcdefghijklmnop"
    assert extra.version == AGENT_VERSION
    assert extra.user_agent == f"burrow/{AGENT_VERSION}"
    assert extra.client_type == "burrow"
    assert extra.metadata == "clinic-a/agent-1"
    assert extra.cookie == ""
    assert extra.heartbeat_interval == 10_000_000_000
    assert extra.heartbeat_tolerance == 15_000_000_000
    assert extra.stop_unsupported_error == ""
    assert extra.restart_unsupported_error == ""  # Restart reconnects as a new session
    assert "does not support remote update" in (extra.update_unsupported_error or "")
    assert extra.custom_cas is False


def test_auth_survives_the_msgpack_round_trip() -> None:
    auth = build_auth(AgentSettings(authtoken=Secret("t" * 20)), ResumeState(), HOST)
    assert decode(Auth, encode(auth, Codec.MSGPACK), Codec.MSGPACK) == auth


def test_auth_without_a_token_sends_an_empty_one() -> None:
    assert build_auth(AgentSettings(), ResumeState(), HOST).extra.authtoken == ""


def test_auth_reports_a_custom_ca() -> None:
    settings = AgentSettings(connect_cas="/etc/burrow/ca.pem")
    assert build_auth(settings, ResumeState(), HOST).extra.custom_cas is True


def test_resume_state_feeds_the_next_auth_and_binds() -> None:
    resume = ResumeState()
    resume.authenticated(AuthResp(client_id="cl_9", extra=AuthRespExtra(cookie="c00kie")))
    bound = resume.bound(
        "db", BindResp(id="bd_1", url="tcp://edge:20001", extra=BindRespExtra(token="tk"))
    )
    assert bound == BoundEndpoint("bd_1", "tcp://edge:20001", "tk")
    auth = build_auth(AgentSettings(), resume, HOST)
    assert (auth.client_id, auth.extra.cookie) == ("cl_9", "c00kie")
    bind = build_bind(tcp(), resume.binds["db"])
    assert (bind.id, bind.extra.token) == ("bd_1", "tk")


def test_an_empty_cookie_keeps_the_previous_one() -> None:
    resume = ResumeState(client_id="cl_1", cookie="old")
    resume.authenticated(AuthResp(client_id="cl_1"))
    assert resume.cookie == "old"


def test_bind_for_a_random_tcp_address() -> None:
    bind = build_bind(tcp("5432"), None)
    assert bind.id == ""
    assert bind.proto == "tcp"
    assert bind.forwards_to == "localhost:5432"
    assert bind.opts == {"URL": "", "Addr": "", "ProxyProto": 0}
    assert bind.extra.name == "db"
    assert bind.extra.token == ""
    assert bind.extra.bindings == ("public",)
    assert bind.extra.pooling_enabled is False


def test_bind_for_a_fixed_tcp_address_with_pooling() -> None:
    bind = build_bind(tcp("10.0.0.6:5432", "tcp://db.example.com:15432", pooling=True), None)
    assert bind.opts == {
        "URL": "tcp://db.example.com:15432",
        "Addr": "db.example.com:15432",
        "ProxyProto": 0,
    }
    assert bind.forwards_to == "10.0.0.6:5432"
    assert bind.extra.pooling_enabled is True


def test_bind_for_an_internal_tcp_endpoint() -> None:
    bind = build_bind(tcp("5432", "tcp://db.clinic-a.internal:5432"), None)
    assert bind.extra.bindings == ("internal",)
    assert bind.opts["Addr"] == "db.clinic-a.internal:5432"


def test_bind_for_config_endpoints(tmp_path: Path) -> None:
    path = tmp_path / "burrow.yml"
    path.write_text(
        "version: 3\n"
        "agent: {}\n"
        "endpoints:\n"
        "  - name: api\n"
        "    url: https://api.clinic-a.internal\n"
        "    description: Clinic A API\n"
        "    metadata: m\n"
        "    upstream: {url: 8080, protocol: http1}\n"
    )
    (api,) = load_config([path], {}).endpoints
    bind = build_bind(api, None, traffic_policy='{"on_http_request": []}')
    assert bind.proto == "https"
    assert bind.forwards_to == "http://localhost:8080"
    assert bind.forwards_proto == "http1"
    assert bind.opts == {
        "URL": "https://api.clinic-a.internal",
        "ProxyProto": 0,
        "TrafficPolicy": '{"on_http_request": []}',
    }
    assert (bind.extra.description, bind.extra.metadata) == ("Clinic A API", "m")
    assert bind.extra.bindings == ("internal",)


def test_upstream_display_brackets_ipv6() -> None:
    assert upstream_display(tcp("[::1]:5432")) == "[::1]:5432"


def test_upstream_http2_is_refused_however_the_endpoint_was_built() -> None:
    web = http_endpoint("8080")
    http2 = replace(web, upstream=replace(web.upstream, protocol="http2"))
    with pytest.raises(AgentError, match=r"'command_line': upstream protocol http2 is not supp"):
        check_supported([http2])
    check_supported([tcp(), web])


def test_bind_for_a_random_https_name() -> None:
    """`burrow http 8080`: an empty URL means "a random https name" (reference §1.5)."""
    bind = build_bind(http_endpoint("8080"), None)
    assert bind.proto == "https"
    assert bind.opts == {"URL": "", "ProxyProto": 0}
    assert bind.forwards_to == "http://localhost:8080"
    assert bind.forwards_proto == ""
    assert bind.extra.bindings == ("public",)


def test_bind_for_an_http_url_with_a_proxy_protocol_upstream() -> None:
    endpoint = http_endpoint(
        "https://10.0.0.5",
        url="http://app.example.com",
        proxy_protocol=1,
        upstream_protocol="http1",
    )
    bind = build_bind(endpoint, None)
    assert bind.proto == "http"
    assert bind.opts == {"URL": "http://app.example.com", "ProxyProto": 1}
    assert bind.forwards_to == "https://10.0.0.5:443"
    assert bind.forwards_proto == "http1"


def test_bind_for_a_domain_only_url_is_https() -> None:
    bind = build_bind(http_endpoint("3000", url="app.example.com", pooling=True), None)
    assert (bind.proto, bind.opts["URL"]) == ("https", "https://app.example.com")
    assert bind.extra.pooling_enabled is True


def test_bind_for_tls_endpoints() -> None:
    passthrough = build_bind(tls_endpoint("8443"), None)
    assert passthrough.proto == "tls"
    assert passthrough.opts == {"URL": "", "ProxyProto": 0, "MutualTLSAtAgent": False}
    assert passthrough.forwards_to == "localhost:8443"
    pem = Path(__file__).parent / "configs" / "pem"
    files = {"crt": str(pem / "server.pem"), "key": str(pem / "server.key")}
    url = "tls://secure.example.com"
    terminated = build_bind(tls_endpoint("10.0.0.6:5432", url=url, proxy_protocol=2, **files), None)
    assert terminated.opts == {"URL": url, "ProxyProto": 2, "MutualTLSAtAgent": False}
    mutual = tls_endpoint("5432", url=url, mutual_tls_cas=str(pem / "ca.pem"), **files)
    assert build_bind(mutual, None).opts["MutualTLSAtAgent"] is True


def test_bind_for_a_tcp_endpoint_with_a_proxy_protocol_upstream() -> None:
    bind = build_bind(tcp_endpoint("22", url="tcp://ssh.internal:22", proxy_protocol=2), None)
    assert bind.opts == {"URL": "tcp://ssh.internal:22", "Addr": "ssh.internal:22", "ProxyProto": 2}


@pytest.mark.parametrize(
    "endpoint",
    [http_endpoint("8080"), tls_endpoint("8443", url="tls://x.example.com"), tcp_endpoint("22")],
    ids=["http", "tls", "tcp"],
)
def test_binds_survive_the_msgpack_round_trip(endpoint: EndpointSettings) -> None:
    bind = build_bind(endpoint, BoundEndpoint("bd_1", "x", "tok"))
    assert decode(Bind, encode(bind, Codec.MSGPACK), Codec.MSGPACK) == bind


def test_remote_management_off_says_stop_and_restart_are_unsupported() -> None:
    # ngrok's agent.remote_management: false. The edge reads these fields and refuses the
    # admin API's stop/restart (ERR_NGROK_805/804) without sending them.
    on = build_auth(AgentSettings(authtoken=Secret("t" * 20)), ResumeState(), HOST).extra
    assert on.stop_unsupported_error == "" and on.restart_unsupported_error == ""
    settings = AgentSettings(authtoken=Secret("t" * 20), remote_management=False)
    off = build_auth(settings, ResumeState(), HOST).extra
    assert "agent.remote_management" in off.stop_unsupported_error
    assert "agent.remote_management" in off.restart_unsupported_error
