"""Declaring RPC messages and moving them to and from the wire (protocol/rpc/schema.py): Go's
lenient decoding rules and the errors that name the field, on the real messages and on small
classes declared here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from protocol.rpc.messages import (
    AgentVersionDeprecated,
    Auth,
    AuthExtra,
    AuthResp,
    AuthRespExtra,
    Bind,
    ConnectAddress,
    PatchTunnelState,
    ProxyHeader,
    SrvInfoResp,
    StartTunnelWithLabel,
    Unbind,
)
from protocol.rpc.schema import (
    Message,
    RpcDecodeError,
    from_wire,
    to_wire,
    wire_key,
    wire_message,
)


@wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class Sample(Message):
    """A message declared outside protocol/rpc/messages.py, with every kind of field."""

    name: str = field(default="", metadata=wire_key("Name", "Title"))
    count: int = field(default=0, metadata=wire_key("Count"))
    note: str | None = field(default=None, metadata=wire_key("Note", omit_none=True))
    tags: tuple[str, ...] = field(default=(), metadata=wire_key("Tags"))
    labels: dict[str, str] = field(default_factory=dict, metadata=wire_key("Labels"))
    inner: ConnectAddress | None = field(default=None, metadata=wire_key("Inner"))


def test_a_declared_class_encodes_in_field_order_with_its_wire_keys() -> None:
    sample = Sample(name="a", count=2, tags=("x",), labels={"k": "v"}, inner=ConnectAddress())
    assert to_wire(sample) == {
        "Name": "a",
        "Count": 2,
        "Tags": ["x"],
        "Labels": {"k": "v"},
        "Inner": {"Region": "", "ServerAddr": ""},
    }
    assert from_wire(Sample, to_wire(sample)) == sample


def test_aliases_decode_and_omitted_fields_stay_off_the_wire() -> None:
    assert from_wire(Sample, {"title": "t", "Note": "n"}) == Sample(name="t", note="n")
    assert "Title" not in to_wire(Sample(name="t"))
    assert "Note" not in to_wire(Sample())


def test_integers_must_fit_in_int64() -> None:
    assert from_wire(Sample, {"Count": -(1 << 63)}).count == -(1 << 63)
    assert from_wire(Sample, {"Count": (1 << 63) - 1}).count == (1 << 63) - 1
    with pytest.raises(RpcDecodeError, match=r"^Sample\.Count: integer .* int64 range"):
        from_wire(Sample, {"Count": -(1 << 63) - 1})


def test_an_annotation_without_a_codec_fails_when_the_class_is_defined() -> None:
    with pytest.raises(TypeError, match=r"Odd\.when: no wire codec for annotation"):

        @wire_message
        @dataclass(frozen=True, kw_only=True, slots=True)
        class Odd(Message):
            when: float = field(default=0.0, metadata=wire_key("When"))


def test_free_form_any_is_passed_through() -> None:
    @wire_message
    @dataclass(frozen=True, kw_only=True, slots=True)
    class Loose(Message):
        extra: Any = field(default=None, metadata=wire_key("Extra"))

    assert from_wire(Loose, {"Extra": {"a": [1]}}).extra == {"a": [1]}


def test_nested_null_gives_default() -> None:
    wire = {"Version": None, "Extra": {"OS": None, "Fingerprint": None, "LegNumber": None}}
    assert from_wire(Auth, wire) == Auth()


def test_to_wire_nests_messages_and_lists() -> None:
    resp = AuthResp(
        extra=AuthRespExtra(
            connect_addresses=(ConnectAddress(region="us", server_addr="a:443"),),
            deprecation_warning=AgentVersionDeprecated(msg="old"),
        )
    )
    extra = to_wire(resp)["Extra"]
    assert isinstance(extra, dict)
    assert extra["ConnectAddresses"] == [{"Region": "us", "ServerAddr": "a:443"}]
    assert extra["DeprecationWarning"] == {"NextMin": "", "NextDate": "", "Msg": "old"}
    assert to_wire(Auth(version=("3", "2")))["Version"] == ["3", "2"]


def test_keys_match_case_insensitively() -> None:
    msg = from_wire(
        Auth,
        {"version": ["3"], "clientid": "c1", "EXTRA": {"os": "linux", "mutualtls": True}},
    )
    assert msg == Auth(version=("3",), client_id="c1", extra=AuthExtra(os="linux", mutual_tls=True))
    assert from_wire(ProxyHeader, {"passthroughtls": True, "ID": "x"}) == ProxyHeader(
        id="x", passthrough_tls=True
    )


def test_non_string_keys_are_ignored() -> None:
    # msgpack maps may carry keys of other types; none of them can be ours.
    assert from_wire(SrvInfoResp, {1: "x", b"Region": "y", "Region": "eu"}) == SrvInfoResp(
        region="eu"
    )


def test_free_form_members_pass_through() -> None:
    opts = {"URL": "tcp://1.2.3.4:5", "Addr": "", "ProxyProto": 2, "Nested": {"a": [None, 1.5]}}
    assert from_wire(Bind, {"Opts": opts}).opts == opts
    assert from_wire(Unbind, {"Extra": [1, "x"]}).extra == [1, "x"]


def test_optional_strings_keep_empty_distinct_from_null() -> None:
    # null: the agent is too old to say; "": the operation is supported.
    extra = from_wire(AuthExtra, {"StopUnsupportedError": "", "UpdateUnsupportedError": None})
    assert extra.stop_unsupported_error == ""
    assert extra.update_unsupported_error is None
    assert to_wire(extra)["UpdateUnsupportedError"] is None


@pytest.mark.parametrize(
    ("cls", "wire", "field"),
    [
        (Auth, {"Extra": {"OS": ["linux"]}}, "Auth.Extra.OS"),
        (Auth, {"Version": "3"}, "Auth.Version"),
        (Auth, {"Version": ["3", 2]}, "Auth.Version[1]"),
        (Auth, {"Extra": "nope"}, "Auth.Extra"),
        (Auth, {"Extra": {"HeartbeatInterval": "10s"}}, "Auth.Extra.HeartbeatInterval"),
        (Auth, {"Extra": {"HeartbeatInterval": 1.5}}, "Auth.Extra.HeartbeatInterval"),
        (Auth, {"Extra": {"HeartbeatInterval": True}}, "Auth.Extra.HeartbeatInterval"),
        (Auth, {"Extra": {"HeartbeatInterval": 1 << 63}}, "Auth.Extra.HeartbeatInterval"),
        (Auth, {"Extra": {"MutualTLS": 1}}, "Auth.Extra.MutualTLS"),
        (Auth, {"Extra": {"Fingerprint": {"M": "x"}}}, "Auth.Extra.Fingerprint.M"),
        (Auth, {"Extra": {"StopUnsupportedError": False}}, "Auth.Extra.StopUnsupportedError"),
        (AuthResp, {"Extra": {"ConnectAddresses": [{"Region": 1}]}}, None),
        (Bind, {"Opts": ["URL"]}, "Bind.Opts"),
        (Bind, {"Extra": {"Bindings": [None]}}, "Bind.Extra.Bindings[0]"),
        (StartTunnelWithLabel, {"Labels": {"edge": 1}}, None),
        (ProxyHeader, {"EdgeType": 3}, "ProxyHeader.EdgeType"),
        (ProxyHeader, {"PassthroughTLS": "true"}, "ProxyHeader.PassthroughTLS"),
        (PatchTunnelState, {"PoolingEnabled": "yes"}, "PatchTunnelState.PoolingEnabled"),
    ],
)
def test_wrong_types_name_the_field(cls: type[Message], wire: object, field: str | None) -> None:
    with pytest.raises(RpcDecodeError) as info:
        from_wire(cls, wire)
    expected = (
        field
        or {
            AuthResp: "AuthResp.Extra.ConnectAddresses[0].Region",
            StartTunnelWithLabel: "StartTunnelWithLabel.Labels['edge']",
        }[cls]
    )
    assert info.value.field == expected
    assert str(info.value).startswith(expected + ": ")


@pytest.mark.parametrize("obj", [[], "x", 3, None, b"{}"])
def test_top_level_must_be_an_object(obj: object) -> None:
    with pytest.raises(RpcDecodeError, match=r"^Auth: expected an object"):
        from_wire(Auth, obj)
