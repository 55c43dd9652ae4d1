"""edge/tunnels/bind_options.py: which Bind options the edge refuses because it would not
enforce them."""

from __future__ import annotations

import pytest

from edge.tunnels.bind_options import POLICY_OPTIONS, refusal_message, unenforced_options
from protocol.rpc.messages import Bind, BindExtra
from tests.edge.policy.test_sdk_options import RUST_HTTP

#: What ngrok-rust's HttpEndpoint sends when nothing but a URL was asked for (null and empty).
SDK_HTTP_DEFAULTS: dict[str, object] = {**RUST_HTTP, "URL": ""}


def refused(
    proto: str, opts: dict[str, object], *, burrow: bool = False, **bind: object
) -> list[str]:
    return unenforced_options(
        Bind(proto=proto, opts=opts, **bind),  # type: ignore[arg-type]
        agent_writes_proxy_headers=burrow,
    )


def test_a_plain_bind_is_accepted() -> None:
    assert refused("https", SDK_HTTP_DEFAULTS) == []
    assert refused("tcp", {"URL": "", "Addr": "", "ProxyProto": 0, "IPRestriction": None}) == []
    assert refused("tls", {"URL": "tls://db.example.com", "MutualTLSAtAgent": True}) == []


@pytest.mark.parametrize("key", ["WebsocketTCPConverter"])
def test_a_switch_sent_as_an_empty_object_is_refused(key: str) -> None:
    """ngrok's SDKs turn these on with `{}` (and off with null): an empty object asks for it."""
    (only,) = refused("https", {**SDK_HTTP_DEFAULTS, key: {}})
    assert only.startswith(f"Opts.{key} (")
    assert refused("https", {**SDK_HTTP_DEFAULTS, key: None}) == []


def test_compression_sent_as_an_empty_object_is_left_to_the_policy_path() -> None:
    """`Compression: {}` (the SDK's `compression()`) becomes a compress-response rule
    (tests/edge/policy/test_sdk_options.py); on tcp and tls it has none and stays refused."""
    assert "Compression" in POLICY_OPTIONS["https"] and "Compression" in POLICY_OPTIONS["http"]
    assert refused("https", {**SDK_HTTP_DEFAULTS, "Compression": {}}) == []
    (only,) = refused("tcp", {"URL": "", "Compression": {}})
    assert only == "Opts.Compression (compression)"


def test_empty_objects_are_not_options() -> None:
    opts = {**SDK_HTTP_DEFAULTS, "IPRestriction": {"allow_cidrs": [], "deny_cidrs": []}}
    assert refused("http", opts) == []


@pytest.mark.parametrize(
    ("proto", "key", "value", "what"),
    [
        ("tcp", "RequestHeaders", {"add": ["x-a:b"]}, "request header"),
        ("tls", "BasicAuth", {"credentials": [{"username": "u"}]}, "basic auth"),
        ("tcp", "UserAgentFilter", {"deny": ["curl"]}, "user agent"),
        ("https", "Policy", {"Inbound": [{"Name": "x"}]}, "legacy"),
        ("https", "OAuth", {"provider": "google"}, "OAuth"),
        ("https", "OIDC", {"issuer_url": "https://id.example.com"}, "OpenID Connect"),
        ("https", "MutualTLSCA", {"mutual_tls_ca": [1]}, "mutual TLS at the edge"),
        ("https", "MutualTLSAtEdge", True, "mutual TLS at the edge"),
        ("https", "TLSTermination", {"cert": "x"}, "TLS termination at the edge"),
        ("https", "HostHeaderRewrite", True, "Host header rewriting"),
        ("tcp", "WebhookVerification", {"provider": "github"}, "webhook"),
        ("tls", "CircuitBreaker", {"error_threshold": 0.5}, "circuit breaker"),
        ("https", "SomethingNew", {"on": True}, "does not know"),
    ],
)
def test_an_unenforced_option_is_refused_by_name(
    proto: str, key: str, value: object, what: str
) -> None:
    (only,) = refused(proto, {"URL": "", key: value})
    assert only.startswith(f"Opts.{key} (")
    assert what in only


def test_proxy_proto_is_the_agents_own_business_only_for_burrows_agent() -> None:
    assert refused("tcp", {"ProxyProto": 2}, burrow=True) == []
    assert refused("tcp", {"ProxyProto": 2}) == [
        "Opts.ProxyProto (PROXY protocol headers written by the edge)"
    ]


def test_an_ip_policy_reference_and_an_http2_upstream_are_refused() -> None:
    assert refused("https", {}, extra=BindExtra(ip_policy_ref="ipp_1")) == [
        "Extra.IPPolicyRef (an IP policy)"
    ]
    (only,) = refused("https", {}, forwards_proto="http2")
    assert only.startswith("ForwardsProto http2")
    assert refused("https", {}, forwards_proto="http1") == []


@pytest.mark.parametrize(
    ("proto", "key", "value"),
    [
        ("https", "BasicAuth", {"credentials": [{"username": "u", "cleartext_password": "p"}]}),
        ("https", "Auth", "user:password"),
        ("http", "IPRestriction", {"deny_cidrs": ["10.0.0.0/8"]}),
        ("tcp", "IPRestriction", {"allow_cidrs": ["127.0.0.1/32"]}),
        ("tls", "IPRestriction", {"allow_cidrs": ["127.0.0.1/32"]}),
        ("tls", "TLSTermination", {"cert": "LS0t", "key": "LS0t"}),
        ("tls", "MutualTLSAtEdge", {"mutual_tls_ca": "LS0t"}),
        ("https", "RequestHeaders", {"add": ["x-a:b"]}),
        ("https", "ResponseHeaders", {"remove": ["server"]}),
        ("https", "UserAgentFilter", {"deny": ["curl"]}),
        ("https", "WebhookVerification", {"provider": "github", "secret": "s"}),
        ("http", "CircuitBreaker", {"error_threshold": 0.5}),
        ("https", "Compression", {}),
        ("https", "TrafficPolicy", "on_http_request: []"),
        ("tcp", "TrafficPolicy", '{"on_tcp_connect": []}'),
        ("tls", "TrafficPolicy", "on_tcp_connect: []"),
    ],
)
def test_policy_options_are_left_to_the_policy_path(proto: str, key: str, value: object) -> None:
    """A Traffic Policy and the legacy options that become one are enforced by the policy
    engine: the Bind path validates them (tests/edge/tunnels/test_decisions.py), not this list."""
    assert key in POLICY_OPTIONS[proto]
    assert refused(proto, {"URL": "", key: value}) == []


def test_every_refused_option_is_named_in_a_stable_order() -> None:
    # Compression is mapped now (left to the policy path); HostHeaderRewrite takes its place.
    got = refused(
        "https",
        {"OIDC": {"issuer_url": "x"}, "OAuth": {"a": 1}, "Compression": {},
         "HostHeaderRewrite": True},
    )  # fmt: skip
    assert [item.split(" ")[0] for item in got] == [
        "Opts.HostHeaderRewrite",
        "Opts.OAuth",
        "Opts.OIDC",
    ]
    message = refusal_message("https://a.example.com", got)
    assert "does not enforce Opts.HostHeaderRewrite" in message
    assert "did not bind https://a.example.com" in message
    assert all(item in message for item in got)
