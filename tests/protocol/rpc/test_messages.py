"""RPC messages: wire names, lenient decoding, strict types (protocol/rpc/messages.py)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from protocol.rpc import messages
from protocol.rpc.messages import (
    PROTOCOL_VERSIONS,
    RPC_MESSAGES,
    AgentVersionDeprecated,
    Auth,
    AuthExtra,
    AuthResp,
    AuthRespExtra,
    Bind,
    BindExtra,
    BindResp,
    BindRespExtra,
    ConnectAddress,
    Fingerprint,
    Message,
    PatchTunnelState,
    PatchTunnelStateResp,
    ProxyHeader,
    Restart,
    RestartResp,
    SrvInfo,
    SrvInfoResp,
    StartTunnelWithLabel,
    StartTunnelWithLabelResp,
    Stop,
    StopResp,
    StopTunnel,
    StreamType,
    Unbind,
    UnbindResp,
    Update,
    UpdateResp,
    from_wire,
    to_wire,
)

AUTH = Auth(
    version=PROTOCOL_VERSIONS,
    client_id="",
    extra=AuthExtra(
        os="linux",
        arch="x86_64",
        authtoken="2abcSECRET",
        version="1.4.0",
        hostname="",
        user_agent="ngrok-python/1.4.0 ngrok-rust/0.14.0-pre.14",
        metadata="",
        cookie="",
        heartbeat_interval=10_000_000_000,
        heartbeat_tolerance=15_000_000_000,
        update_unsupported_error="",
        stop_unsupported_error="",
        restart_unsupported_error="",
        proxy_type="",
        mutual_tls=False,
    ),
)

#: One instance of every message class with every field away from its default.
SAMPLES: tuple[Message, ...] = (
    Fingerprint(m=("a",), d=("b", "c")),
    AgentVersionDeprecated(next_min="3.0.0", next_date="2030-01-01T00:00:00Z", msg="update"),
    ConnectAddress(region="eu", server_addr="connect.eu.example:443"),
    AuthExtra(
        os="linux",
        arch="amd64",
        authtoken="tok",
        version="1.0",
        hostname="h",
        user_agent="burrow/0.1",
        metadata="m",
        cookie="c",
        heartbeat_interval=10_000_000_000,
        heartbeat_tolerance=15_000_000_000,
        fingerprint=Fingerprint(m=("x",)),
        update_unsupported_error="no updates",
        stop_unsupported_error="",
        restart_unsupported_error="nope",
        proxy_type="socks5",
        mutual_tls=True,
        service_run=True,
        config_version="3",
        custom_interface=True,
        custom_cas=True,
        client_type="burrow",
        leg_number=2,
    ),
    AUTH,
    AuthRespExtra(
        version="burrow-edge/0.1",
        region="local",
        cookie="k",
        account_name="acme",
        session_duration=3600,
        plan_name="self-hosted",
        banner="hello",
        deprecation_warning=AgentVersionDeprecated(msg="old"),
        connect_addresses=(ConnectAddress(region="us", server_addr="a:443"), ConnectAddress()),
        agent_session_id="as_1",
    ),
    AuthResp(version="3", client_id="cid", error="boom", extra=AuthRespExtra(region="eu")),
    BindExtra(
        name="api",
        token="t",
        ip_policy_ref="ipp_1",
        metadata="m",
        description="d",
        bindings=("internal",),
        pooling_enabled=True,
    ),
    Bind(
        id="b1",
        proto="https",
        forwards_to="localhost:8080",
        forwards_proto="http1",
        opts={"URL": "https://api.clinic-a.internal", "ProxyProto": 0, "TrafficPolicy": ""},
        extra=BindExtra(pooling_enabled=True),
    ),
    BindRespExtra(token="t", tunnel_id="tn_1"),
    BindResp(
        id="b1",
        url="https://api.example",
        proto="https",
        opts={"URL": "https://api.example"},
        error="e",
        extra=BindRespExtra(token="t"),
    ),
    Unbind(id="b1", extra={"any": ["thing", 1]}),
    UnbindResp(error="e", extra="x"),
    StartTunnelWithLabel(
        labels={"edge": "edghts_1"}, forwards_to="x:1", forwards_proto="http2", metadata="m"
    ),
    StartTunnelWithLabelResp(id="l1", error="e"),
    PatchTunnelState(
        tunnel_id="tn_1",
        name="n",
        description="d",
        metadata="m",
        pooling_enabled=False,
        traffic_policy="on_http_request: []",
    ),
    PatchTunnelStateResp(error="e"),
    Restart(),
    RestartResp(error="e"),
    Stop(),
    StopResp(error="e"),
    Update(version="2.0.0", permit_major_version=True),
    UpdateResp(error="e"),
    StopTunnel(id="b1", message="bye", error_code="ERR_NGROK_334"),
    SrvInfo(),
    SrvInfoResp(region="local"),
    ProxyHeader(
        id="b1", client_addr="203.0.113.5:51234", proto="https", edge_type="3", passthrough_tls=True
    ),
)

ALL_MESSAGE_CLASSES: set[type[Message]] = {
    obj
    for obj in vars(messages).values()
    if isinstance(obj, type) and issubclass(obj, Message) and obj is not Message
}


def _by_name(cls: type[Message]) -> str:
    return cls.__name__


#: The keys ngrok-go sends, in its order (internal/tunnel/proto/msg.go, ngrok.md §8.7).
WIRE_KEYS: dict[type[Message], tuple[str, ...]] = {
    Auth: ("Version", "ClientId", "Extra"),
    AuthExtra: (
        "OS",
        "Arch",
        "Authtoken",
        "Version",
        "Hostname",
        "UserAgent",
        "Metadata",
        "Cookie",
        "HeartbeatInterval",
        "HeartbeatTolerance",
        "Fingerprint",
        "UpdateUnsupportedError",
        "StopUnsupportedError",
        "RestartUnsupportedError",
        "ProxyType",
        "MutualTLS",
        "ServiceRun",
        "ConfigVersion",
        "CustomInterface",
        "CustomCAs",
        "ClientType",
        "LegNumber",
    ),
    Fingerprint: ("M", "D"),
    AuthResp: ("Version", "ClientId", "Error", "Extra"),
    AuthRespExtra: (
        "Version",
        "Region",
        "Cookie",
        "AccountName",
        "SessionDuration",
        "PlanName",
        "Banner",
        "DeprecationWarning",
        "ConnectAddresses",
        "AgentSessionID",
    ),
    AgentVersionDeprecated: ("NextMin", "NextDate", "Msg"),
    ConnectAddress: ("Region", "ServerAddr"),
    Bind: ("Id", "Proto", "ForwardsTo", "ForwardsProto", "Opts", "Extra"),
    BindExtra: (
        "Name",
        "Token",
        "IPPolicyRef",
        "Metadata",
        "Description",
        "Bindings",
        "PoolingEnabled",
    ),
    BindResp: ("Id", "URL", "Proto", "Opts", "Error", "Extra"),
    BindRespExtra: ("Token", "TunnelID"),
    Unbind: ("Id", "Extra"),
    UnbindResp: ("Error", "Extra"),
    StartTunnelWithLabel: ("Labels", "ForwardsTo", "ForwardsProto", "Metadata"),
    StartTunnelWithLabelResp: ("Id", "Error"),
    PatchTunnelState: ("TunnelId",),  # the rest only when set
    PatchTunnelStateResp: ("Error",),
    Restart: (),
    RestartResp: ("Error",),
    Stop: (),
    StopResp: ("Error",),
    Update: ("Version", "PermitMajorVersion"),
    UpdateResp: ("Error",),
    StopTunnel: ("Id", "Message", "ErrorCode"),
    SrvInfo: (),
    SrvInfoResp: ("Region",),
    ProxyHeader: ("Id", "ClientAddr", "Proto", "EdgeType", "PassthroughTLS"),
}


CLASSES_BY_NAME: list[type[Message]] = sorted(ALL_MESSAGE_CLASSES, key=_by_name)


def test_samples_and_key_table_cover_every_message_class() -> None:
    assert {type(m) for m in SAMPLES} == ALL_MESSAGE_CLASSES
    assert set(WIRE_KEYS) == ALL_MESSAGE_CLASSES


@pytest.mark.parametrize("cls", CLASSES_BY_NAME)
def test_default_message_has_ngrok_go_keys_in_order(cls: type[Message]) -> None:
    assert tuple(to_wire(cls())) == WIRE_KEYS[cls]


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_wire_round_trip(msg: Message) -> None:
    wire = to_wire(msg)
    assert from_wire(type(msg), wire) == msg
    # The wire form is plain JSON data (nested messages are dicts, tuples are lists).
    assert json.loads(json.dumps(wire)) == wire


@pytest.mark.parametrize("cls", CLASSES_BY_NAME)
def test_missing_keys_give_defaults(cls: type[Message]) -> None:
    assert from_wire(cls, {}) == cls()


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_null_gives_default(msg: Message) -> None:
    nulls = dict.fromkeys(to_wire(msg))
    assert from_wire(type(msg), nulls) == type(msg)()


def test_go_and_rust_authtoken_spellings_both_decode() -> None:
    go = from_wire(Auth, {"Extra": {"Authtoken": "go-token"}})
    rust = from_wire(Auth, {"Extra": {"AuthToken": "rust-token"}})
    assert go.extra.authtoken == "go-token"
    assert rust.extra.authtoken == "rust-token"


def test_older_ngrok_go_allows_pooling_is_an_alias() -> None:
    bind = from_wire(Bind, {"Extra": {"AllowsPooling": True}})
    assert bind.extra.pooling_enabled is True
    assert "AllowsPooling" not in to_wire(bind.extra)


def test_unknown_keys_are_ignored() -> None:
    wire = to_wire(AUTH)
    wire["FutureField"] = {"nested": [1, 2]}
    extra = wire["Extra"]
    assert isinstance(extra, dict)
    extra["SomethingNew"] = 7
    assert from_wire(Auth, wire) == AUTH


def test_patch_tunnel_state_omits_unset_fields() -> None:
    assert to_wire(PatchTunnelState(tunnel_id="tn", pooling_enabled=False)) == {
        "TunnelId": "tn",
        "PoolingEnabled": False,
    }


def test_rust_auth_from_ngrok_md_section_12_decodes() -> None:
    # The body ngrok-python 1.4.0 (ngrok-rust 0.14) sent, secrets elided (ngrok.md §12).
    body = (
        '{"Version":["3","2"],"ClientId":"","Extra":{"OS":"linux","Arch":"x86_64",'
        '"AuthToken":"2abcSECRET","Version":"1.4.0","Hostname":"",'
        '"UserAgent":"ngrok-python/1.4.0 ngrok-rust/0.14.0-pre.14","Metadata":"","Cookie":"",'
        '"HeartbeatInterval":10000000000,"HeartbeatTolerance":15000000000,'
        '"UpdateUnsupportedError":"","StopUnsupportedError":"","RestartUnsupportedError":"",'
        '"ProxyType":"","MutualTLS":false,"ServiceRun":false,"ConfigVersion":"",'
        '"CustomInterface":false,"CustomCAs":false,"ClientType":""}}'
    )
    assert from_wire(Auth, json.loads(body)) == AUTH


def test_auth_json_keys_follow_section_12_in_go_spelling() -> None:
    # Same order as the Rust client's body in §12; Go adds Fingerprint and LegNumber and
    # spells Authtoken with a small t.
    wire = json.dumps(to_wire(AUTH), separators=(",", ":"))
    assert wire == (
        '{"Version":["3","2"],"ClientId":"","Extra":{"OS":"linux","Arch":"x86_64",'
        '"Authtoken":"2abcSECRET","Version":"1.4.0","Hostname":"",'
        '"UserAgent":"ngrok-python/1.4.0 ngrok-rust/0.14.0-pre.14","Metadata":"","Cookie":"",'
        '"HeartbeatInterval":10000000000,"HeartbeatTolerance":15000000000,"Fingerprint":null,'
        '"UpdateUnsupportedError":"","StopUnsupportedError":"","RestartUnsupportedError":"",'
        '"ProxyType":"","MutualTLS":false,"ServiceRun":false,"ConfigVersion":"",'
        '"CustomInterface":false,"CustomCAs":false,"ClientType":"","LegNumber":0}}'
    )


def test_secrets_stay_out_of_repr() -> None:
    text = repr(AUTH) + repr(BindExtra(token="bind-secret")) + repr(AuthRespExtra(cookie="ck"))
    assert "2abcSECRET" not in text
    assert "bind-secret" not in text
    assert "ck" not in text


def test_messages_are_frozen_and_keyword_only() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        AUTH.client_id = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        SrvInfoResp("eu")  # type: ignore[call-arg]


def test_stream_type_numbers() -> None:
    assert {t.name: t.value for t in StreamType} == {
        "AUTH": 0,
        "BIND": 1,
        "UNBIND": 2,
        "PROXY": 3,
        "RESTART": 4,
        "STOP": 5,
        "UPDATE": 6,
        "START_TUNNEL_WITH_LABEL": 7,
        "SRV_INFO": 8,
        "STOP_TUNNEL": 9,
        "PATCH_TUNNEL_STATE": 10,
        "HEARTBEAT": 0xFFFFFFFF,
    }


def test_rpc_messages_cover_every_rpc_stream_type() -> None:
    assert set(RPC_MESSAGES) == set(StreamType) - {StreamType.PROXY, StreamType.HEARTBEAT}
    assert RPC_MESSAGES[StreamType.AUTH] == (Auth, AuthResp)
    assert RPC_MESSAGES[StreamType.STOP_TUNNEL] == (StopTunnel, None)


@pytest.mark.parametrize("cls", [Stop, Restart])
def test_stop_and_restart_carry_who_asked_only_when_given(cls: type[Stop | Restart]) -> None:
    # ngrok's shape is `{}`; Burrow's edge adds `Message`, which ngrok's agents ignore.
    assert to_wire(cls()) == {}
    asked = cls(message="the admin API, key ak_1")
    assert to_wire(asked) == {"Message": "the admin API, key ak_1"}
    assert from_wire(cls, {"message": "the admin API, key ak_1"}) == asked
