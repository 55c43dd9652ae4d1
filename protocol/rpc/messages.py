"""The typed-stream RPC messages of ngrok's agent protocol, and the ProxyHeader.

Theory of operation
-------------------
Every message is a frozen, keyword-only dataclass with snake_case attributes. Each field names
its wire key in `metadata={"wire": ...}` (ngrok-go's spelling, which is what `to_wire` emits).
`_wire_message` runs once per class, when the class is defined: it reads the fields and their
annotations and builds a small table of per-field decode/encode functions, so `to_wire` and
`from_wire` do no reflection per call.

Decoding follows Go's `encoding/json`, the most lenient peer we must accept:

* keys match without regard to case (Go sends `Authtoken`, Rust `AuthToken`);
* unknown keys are ignored (newer peers add fields);
* a missing key, or a JSON null, leaves the field at its default;
* a value of the wrong type raises `RpcDecodeError` naming the field (`Auth.Extra.OS`).

Values are checked cheaply by kind: str, int (int64 range; a bool is not an int), bool, lists,
objects. Free-form members (`Bind.Opts`, `Unbind.Extra`) are passed through as decoded.

Where ngrok-go and ngrok-rust differ on the wire
------------------------------------------------
* `AuthExtra.Authtoken`: Go spells it `Authtoken`, Rust `AuthToken`.
* `AuthExtra.Fingerprint` and `AuthExtra.LegNumber` are sent by Go only.
* `AuthResp.Error`: Rust's struct has no such field (it reads errors separately); Go's does.
* `AuthRespExtra`: every field is optional (`Option`) in Rust; Rust ignores `DeprecationWarning`,
  `ConnectAddresses` and `AgentSessionID`.
* `BindExtra.PoolingEnabled`: ngrok-rust and newer ngrok-go send `PoolingEnabled`; ngrok-go
  before the rename sent `AllowsPooling`, accepted here as an alias. Rust sends neither `Name`
  nor `Description`.
* `Unbind.Extra` / `UnbindResp.Extra`: Go sends `null`; Rust sends no `Extra` at all.
* `StopResp`/`RestartResp`/`UpdateResp`: Rust omits `Error` on success (`{}`); Go sends `""`.
* `StopTunnel.ErrorCode`: a string in Go, an optional string in Rust (may be null).
* `ProxyHeader.EdgeType` is a decimal string ("0".."3") in both; Rust rejects a JSON number.
"""

from __future__ import annotations

import dataclasses
import enum
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, NoneType, UnionType
from typing import Any, ClassVar, TypeVar

__all__ = [
    "PROTOCOL_VERSIONS",
    "RPC_MESSAGES",
    "AgentVersionDeprecated",
    "Auth",
    "AuthExtra",
    "AuthResp",
    "AuthRespExtra",
    "Bind",
    "BindExtra",
    "BindResp",
    "BindRespExtra",
    "ConnectAddress",
    "Fingerprint",
    "Message",
    "PatchTunnelState",
    "PatchTunnelStateResp",
    "ProxyHeader",
    "Restart",
    "RestartResp",
    "RpcDecodeError",
    "SrvInfo",
    "SrvInfoResp",
    "StartTunnelWithLabel",
    "StartTunnelWithLabelResp",
    "Stop",
    "StopResp",
    "StopTunnel",
    "StreamType",
    "Unbind",
    "UnbindResp",
    "Update",
    "UpdateResp",
    "from_wire",
    "to_wire",
]

#: Protocol versions an agent offers in `Auth.Version`, most preferred first (ngrok-go's list).
PROTOCOL_VERSIONS: tuple[str, ...] = ("3", "2")

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1


class StreamType(enum.IntEnum):
    """The 4-byte type written first on every typed stream; the numbers are fixed forever."""

    AUTH = 0
    BIND = 1
    UNBIND = 2
    PROXY = 3
    RESTART = 4
    STOP = 5
    UPDATE = 6
    START_TUNNEL_WITH_LABEL = 7
    SRV_INFO = 8
    STOP_TUNNEL = 9
    PATCH_TUNNEL_STATE = 10
    HEARTBEAT = 0xFFFFFFFF


class RpcDecodeError(ValueError):
    """An RPC body or ProxyHeader that cannot be decoded.

    `field` is the dotted wire path of the offending value (`"Auth.Extra.OS"`), or `None` when
    the fault is in the framing or the encoding rather than in one field.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


# --- the per-class wire table -------------------------------------------------------------

_Decode = Callable[[object, str], object]
_Encode = Callable[[Any], object]


@dataclass(frozen=True, slots=True)
class _WireField:
    attr: str
    wire: str
    decode: _Decode  # (non-null wire value, dotted path) -> Python value, or RpcDecodeError
    encode: _Encode  # Python value -> wire value
    omit_none: bool  # leave the key out when the value is None (PatchTunnelState)


@dataclass(frozen=True, slots=True)
class _WireTable:
    fields: tuple[_WireField, ...]
    by_key: Mapping[str, _WireField]  # lower-cased wire names and aliases


class Message:
    """Base of every RPC message; `_wire_message` fills in `_wire` when the class is defined."""

    __slots__ = ()
    _wire: ClassVar[_WireTable]


M = TypeVar("M", bound=Message)


def _wire(name: str, *aliases: str, omit_none: bool = False) -> dict[str, object]:
    """Field metadata: the wire key ngrok-go sends, other spellings accepted on decode."""
    return {"wire": name, "aliases": aliases, "omit_none": omit_none}


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _wrong(where: str, expected: str, value: object) -> RpcDecodeError:
    return RpcDecodeError(f"{where}: expected {expected}, got {_kind(value)}", field=where)


def _decode_str(value: object, where: str) -> object:
    if type(value) is str:
        return value
    raise _wrong(where, "a string", value)


def _decode_int(value: object, where: str) -> object:
    if type(value) is int:
        if _INT64_MIN <= value <= _INT64_MAX:
            return value
        raise RpcDecodeError(f"{where}: integer {value} is out of the int64 range", field=where)
    raise _wrong(where, "an integer", value)


def _decode_bool(value: object, where: str) -> object:
    if type(value) is bool:
        return value
    raise _wrong(where, "a boolean", value)


def _decode_any(value: object, where: str) -> object:
    return value


def _identity(value: Any) -> object:
    return value


def _decode_object(value: object, where: str) -> object:
    if type(value) is dict:
        return value
    raise _wrong(where, "an object", value)


def _to_list(value: Any) -> object:
    return list(value)


def _copy_dict(value: Any) -> object:
    return dict(value)


def _str_map_decoder(value: object, where: str) -> object:
    if type(value) is not dict:
        raise _wrong(where, "an object", value)
    for key, item in value.items():
        if type(key) is not str or type(item) is not str:
            raise _wrong(f"{where}[{key!r}]", "a string", item)
    return value


_SCALARS: Mapping[object, _Decode] = MappingProxyType(
    {str: _decode_str, int: _decode_int, bool: _decode_bool, Any: _decode_any}
)


def _list_codec(item_type: object, owner: str) -> tuple[_Decode, _Encode]:
    item_decode, item_encode = _codec_for(item_type, owner)

    def decode(value: object, where: str) -> object:
        if type(value) is not list:
            raise _wrong(where, "an array", value)
        return tuple(item_decode(item, f"{where}[{index}]") for index, item in enumerate(value))

    if item_encode is _identity:
        return decode, _to_list

    def encode(value: Any) -> object:
        return [item_encode(item) for item in value]

    return decode, encode


def _message_codec(cls: type[Message]) -> tuple[_Decode, _Encode]:
    def decode(value: object, where: str) -> object:
        return _decode_message(cls, value, where)

    return decode, to_wire


def _codec_for(tp: object, owner: str) -> tuple[_Decode, _Encode]:
    """The decode/encode pair for one annotation; called once per field at class definition."""
    if tp in _SCALARS:
        return _SCALARS[tp], _identity
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is UnionType and len(args) == 2 and NoneType in args:
        # `X | None`: None never reaches the decoder (null means "the default", which is None).
        inner = args[0] if args[1] is NoneType else args[1]
        inner_decode, inner_encode = _codec_for(inner, owner)
        if inner_encode is _identity:
            return inner_decode, _identity

        def encode_optional(value: Any) -> object:
            return None if value is None else inner_encode(value)

        return inner_decode, encode_optional
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return _list_codec(args[0], owner)
    if origin is dict and args == (str, str):
        return _str_map_decoder, _copy_dict
    if origin is dict and args == (str, Any):
        return _decode_object, _copy_dict
    if isinstance(tp, type) and issubclass(tp, Message):
        return _message_codec(tp)
    raise TypeError(f"{owner}: no wire codec for annotation {tp!r}")


def _wire_message(cls: type[M]) -> type[M]:
    """Build `cls._wire` from the dataclass fields; a class decorator, applied once."""
    hints = typing.get_type_hints(cls)
    fields: list[_WireField] = []
    by_key: dict[str, _WireField] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]  # cls is a dataclass here
        wire = f.metadata["wire"]
        decode, encode = _codec_for(hints[f.name], f"{cls.__name__}.{f.name}")
        entry = _WireField(f.name, wire, decode, encode, bool(f.metadata["omit_none"]))
        fields.append(entry)
        for key in (wire, *f.metadata["aliases"]):
            by_key[key.lower()] = entry
    cls._wire = _WireTable(tuple(fields), MappingProxyType(by_key))
    return cls


def _decode_message(cls: type[M], obj: object, where: str) -> M:
    if type(obj) is not dict:
        raise _wrong(where, "an object", obj)
    by_key = cls._wire.by_key
    kwargs: dict[str, object] = {}
    for key, value in obj.items():
        if value is None or type(key) is not str:
            continue  # null means "the default"; non-string msgpack keys are never ours
        entry = by_key.get(key.lower())
        if entry is not None:
            kwargs[entry.attr] = entry.decode(value, f"{where}.{entry.wire}")
    return cls(**kwargs)


def from_wire(cls: type[M], obj: object) -> M:
    """Build a `cls` from a decoded JSON object / msgpack map.

    Keys match case-insensitively; unknown keys are ignored; missing keys and nulls give the
    default. Raises `RpcDecodeError` (naming the field) for a value of the wrong type, or when
    `obj` is not a dict at all.
    """
    return _decode_message(cls, obj, cls.__name__)


def to_wire(msg: Message) -> dict[str, object]:
    """The message as a dict with ngrok-go's key names, nested messages as nested dicts."""
    out: dict[str, object] = {}
    for entry in type(msg)._wire.fields:
        value = getattr(msg, entry.attr)
        if value is None and entry.omit_none:
            continue
        out[entry.wire] = entry.encode(value)
    return out


# --- nested objects -----------------------------------------------------------------------


@_wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class Fingerprint(Message):
    """ngrok-go's `AuthExtra.Fingerprint`; unused by ngrok, carried for completeness."""

    m: tuple[str, ...] = field(default=(), metadata=_wire("M"))
    d: tuple[str, ...] = field(default=(), metadata=_wire("D"))


@_wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class AgentVersionDeprecated(Message):
    """`AuthRespExtra.DeprecationWarning`: the agent should update by `next_date`."""

    next_min: str = field(default="", metadata=_wire("NextMin"))
    next_date: str = field(default="", metadata=_wire("NextDate"))  # RFC 3339 (Go time.Time)
    msg: str = field(default="", metadata=_wire("Msg"))


@_wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class ConnectAddress(Message):
    """One entry of `AuthRespExtra.ConnectAddresses`: where else the agent may connect."""

    region: str = field(default="", metadata=_wire("Region"))
    server_addr: str = field(default="", metadata=_wire("ServerAddr"))


# --- Auth (type 0) ------------------------------------------------------------------------


@_wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class AuthExtra(Message):
    """Everything the agent says about itself when it authenticates."""

    os: str = field(default="", metadata=_wire("OS"))
    arch: str = field(default="", metadata=_wire("Arch"))
    authtoken: str = field(default="", metadata=_wire("Authtoken"), repr=False)
    version: str = field(default="", metadata=_wire("Version"))
    hostname: str = field(default="", metadata=_wire("Hostname"))
    user_agent: str = field(default="", metadata=_wire("UserAgent"))
    metadata: str = field(default="", metadata=_wire("Metadata"))
    cookie: str = field(default="", metadata=_wire("Cookie"), repr=False)
    heartbeat_interval: int = field(default=0, metadata=_wire("HeartbeatInterval"))  # ns
    heartbeat_tolerance: int = field(default=0, metadata=_wire("HeartbeatTolerance"))  # ns
    fingerprint: Fingerprint | None = field(default=None, metadata=_wire("Fingerprint"))
    # None: the agent is too old to say; "": supported; otherwise why it is not supported.
    update_unsupported_error: str | None = field(
        default=None, metadata=_wire("UpdateUnsupportedError")
    )
    stop_unsupported_error: str | None = field(default=None, metadata=_wire("StopUnsupportedError"))
    restart_unsupported_error: str | None = field(
        default=None, metadata=_wire("RestartUnsupportedError")
    )
    proxy_type: str = field(default="", metadata=_wire("ProxyType"))
    mutual_tls: bool = field(default=False, metadata=_wire("MutualTLS"))
    service_run: bool = field(default=False, metadata=_wire("ServiceRun"))
    config_version: str = field(default="", metadata=_wire("ConfigVersion"))
    custom_interface: bool = field(default=False, metadata=_wire("CustomInterface"))
    custom_cas: bool = field(default=False, metadata=_wire("CustomCAs"))
    client_type: str = field(default="", metadata=_wire("ClientType"))
    leg_number: int = field(default=0, metadata=_wire("LegNumber"))  # uint32 in Go


@_wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class Auth(Message):
    """Agent → edge, type 0. `client_id` is the previous session's id on reconnect."""

    version: tuple[str, ...] = field(default=(), metadata=_wire("Version"))
    client_id: str = field(default="", metadata=_wire("ClientId"))
    extra: AuthExtra = field(default_factory=AuthExtra, metadata=_wire("Extra"))


@_wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class AuthRespExtra(Message):
    """What the edge tells an authenticated agent."""

    version: str = field(default="", metadata=_wire("Version"))
    region: str = field(default="", metadata=_wire("Region"))
    cookie: str = field(default="", metadata=_wire("Cookie"), repr=False)
    account_name: str = field(default="", metadata=_wire("AccountName"))
    session_duration: int = field(default=0, metadata=_wire("SessionDuration"))  # seconds
    plan_name: str = field(default="", metadata=_wire("PlanName"))
    banner: str = field(default="", metadata=_wire("Banner"))
    deprecation_warning: AgentVersionDeprecated | None = field(
        default=None, metadata=_wire("DeprecationWarning")
    )
    connect_addresses: tuple[ConnectAddress, ...] = field(
        default=(), metadata=_wire("ConnectAddresses")
    )
    agent_session_id: str = field(default="", metadata=_wire("AgentSessionID"))


@_wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class AuthResp(Message):
    """Edge → agent reply to Auth. A non-empty `error` refuses the session."""

    version: str = field(default="", metadata=_wire("Version"))
    client_id: str = field(default="", metadata=_wire("ClientId"))
    error: str = field(default="", metadata=_wire("Error"))
    extra: AuthRespExtra = field(default_factory=AuthRespExtra, metadata=_wire("Extra"))


# --- Bind (type 1) and Unbind (type 2) ----------------------------------------------------


@_wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class BindExtra(Message):
    """Endpoint metadata that rides along with a Bind."""

    name: str = field(default="", metadata=_wire("Name"))
    token: str = field(default="", metadata=_wire("Token"), repr=False)
    ip_policy_ref: str = field(default="", metadata=_wire("IPPolicyRef"))
    metadata: str = field(default="", metadata=_wire("Metadata"))
    description: str = field(default="", metadata=_wire("Description"))
    bindings: tuple[str, ...] = field(default=(), metadata=_wire("Bindings"))
    pooling_enabled: bool = field(default=False, metadata=_wire("PoolingEnabled", "AllowsPooling"))


@_wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class Bind(Message):
    """Agent → edge, type 1. `opts` is the per-proto options object (`{"URL": ..., ...}`)."""

    id: str = field(default="", metadata=_wire("Id"))
    proto: str = field(default="", metadata=_wire("Proto"))
    forwards_to: str = field(default="", metadata=_wire("ForwardsTo"))
    forwards_proto: str = field(default="", metadata=_wire("ForwardsProto"))
    opts: dict[str, Any] = field(default_factory=dict, metadata=_wire("Opts"))
    extra: BindExtra = field(default_factory=BindExtra, metadata=_wire("Extra"))


@_wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class BindRespExtra(Message):
    token: str = field(default="", metadata=_wire("Token"), repr=False)
    tunnel_id: str = field(default="", metadata=_wire("TunnelID"))


@_wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class BindResp(Message):
    """Edge → agent reply to Bind; the agent routes proxy streams by `id`."""

    id: str = field(default="", metadata=_wire("Id"))
    url: str = field(default="", metadata=_wire("URL"))
    proto: str = field(default="", metadata=_wire("Proto"))
    opts: dict[str, Any] = field(default_factory=dict, metadata=_wire("Opts"))
    error: str = field(default="", metadata=_wire("Error"))
    extra: BindRespExtra = field(default_factory=BindRespExtra, metadata=_wire("Extra"))


@_wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class Unbind(Message):
    """Agent → edge, type 2. `extra` is application-defined (Go sends null)."""

    id: str = field(default="", metadata=_wire("Id"))
    extra: Any = field(default=None, metadata=_wire("Extra"))


@_wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class UnbindResp(Message):
    error: str = field(default="", metadata=_wire("Error"))
    extra: Any = field(default=None, metadata=_wire("Extra"))


# --- labeled tunnels (type 7, legacy Edges) and PatchTunnelState (type 10) ----------------


@_wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class StartTunnelWithLabel(Message):
    labels: dict[str, str] = field(default_factory=dict, metadata=_wire("Labels"))
    forwards_to: str = field(default="", metadata=_wire("ForwardsTo"))
    forwards_proto: str = field(default="", metadata=_wire("ForwardsProto"))
    metadata: str = field(default="", metadata=_wire("Metadata"))


@_wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class StartTunnelWithLabelResp(Message):
    id: str = field(default="", metadata=_wire("Id"))
    error: str = field(default="", metadata=_wire("Error"))


@_wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class PatchTunnelState(Message):
    """Agent → edge, type 10. A field left at None is omitted and stays unchanged."""

    tunnel_id: str = field(default="", metadata=_wire("TunnelId"))
    name: str | None = field(default=None, metadata=_wire("Name", omit_none=True))
    description: str | None = field(default=None, metadata=_wire("Description", omit_none=True))
    metadata: str | None = field(default=None, metadata=_wire("Metadata", omit_none=True))
    pooling_enabled: bool | None = field(
        default=None, metadata=_wire("PoolingEnabled", omit_none=True)
    )
    traffic_policy: str | None = field(
        default=None, metadata=_wire("TrafficPolicy", omit_none=True)
    )


@_wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class PatchTunnelStateResp(Message):
    error: str = field(default="", metadata=_wire("Error"))


# --- edge → agent commands (types 4, 5, 6, 9) ---------------------------------------------


@_wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class Restart(Message):
    """Edge → agent, type 4: restart yourself. `message` (a Burrow extension, absent from the
    wire when None; ngrok's agents ignore it) says who asked, for the agent to show."""

    message: str | None = field(default=None, metadata=_wire("Message", omit_none=True))


@_wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class RestartResp(Message):
    error: str = field(default="", metadata=_wire("Error"))


@_wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class Stop(Message):
    """Edge → agent, type 5: stop yourself. `message` (a Burrow extension, absent from the
    wire when None; ngrok's agents ignore it) says who asked, for the agent to show."""

    message: str | None = field(default=None, metadata=_wire("Message", omit_none=True))


@_wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class StopResp(Message):
    error: str = field(default="", metadata=_wire("Error"))


@_wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class Update(Message):
    """Edge → agent, type 6: update to `version` (empty: the latest)."""

    version: str = field(default="", metadata=_wire("Version"))
    permit_major_version: bool = field(default=False, metadata=_wire("PermitMajorVersion"))


@_wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class UpdateResp(Message):
    error: str = field(default="", metadata=_wire("Error"))


@_wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class StopTunnel(Message):
    """Edge → agent, type 9: close tunnel `id` and show `message` / `error_code` to the user."""

    id: str = field(default="", metadata=_wire("Id"))
    message: str = field(default="", metadata=_wire("Message"))
    error_code: str = field(default="", metadata=_wire("ErrorCode"))


# --- SrvInfo (type 8) ---------------------------------------------------------------------


@_wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class SrvInfo(Message):
    """Agent → edge, type 8: which region am I connected to?"""


@_wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class SrvInfoResp(Message):
    region: str = field(default="", metadata=_wire("Region"))


# --- proxy streams (type 3) ---------------------------------------------------------------


@_wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class ProxyHeader(Message):
    """Edge → agent, first on every proxy stream (after an int64 LE length; see codec.py).

    `edge_type` is "0" undefined, "1" TCP, "2" TLS, "3" HTTPS (legacy Edges); "" also means
    undefined. `passthrough_tls` is true when the bytes that follow are still TLS-encrypted.
    """

    id: str = field(default="", metadata=_wire("Id"))
    client_addr: str = field(default="", metadata=_wire("ClientAddr"))
    proto: str = field(default="", metadata=_wire("Proto"))
    edge_type: str = field(default="", metadata=_wire("EdgeType"))
    passthrough_tls: bool = field(default=False, metadata=_wire("PassthroughTLS"))


#: Request and response message class for each RPC stream type (None: no response body).
#: PROXY and HEARTBEAT carry no RPC message and are absent.
RPC_MESSAGES: Mapping[StreamType, tuple[type[Message], type[Message] | None]] = MappingProxyType(
    {
        StreamType.AUTH: (Auth, AuthResp),
        StreamType.BIND: (Bind, BindResp),
        StreamType.UNBIND: (Unbind, UnbindResp),
        StreamType.RESTART: (Restart, RestartResp),
        StreamType.STOP: (Stop, StopResp),
        StreamType.UPDATE: (Update, UpdateResp),
        StreamType.START_TUNNEL_WITH_LABEL: (StartTunnelWithLabel, StartTunnelWithLabelResp),
        StreamType.SRV_INFO: (SrvInfo, SrvInfoResp),
        StreamType.STOP_TUNNEL: (StopTunnel, None),
        StreamType.PATCH_TUNNEL_STATE: (PatchTunnelState, PatchTunnelStateResp),
    }
)


# --- Burrow's own capability signals ---------------------------------------------------------
# Burrow peers keep send credit past muxado's 256 KiB window (ngrok's implementations clamp it),
# so each side lets its receive windows grow only once the handshake names a Burrow peer.

#: `Auth.Extra.ClientType` sent by Burrow's agent.
BURROW_CLIENT_TYPE = "burrow"
#: Prefix of `AuthResp.Extra.Version` sent by a Burrow edge.
BURROW_EDGE_VERSION_PREFIX = "burrow-edge/"


def agent_keeps_large_windows(auth: Auth) -> bool:
    return auth.extra.client_type == BURROW_CLIENT_TYPE


def agent_writes_proxy_headers(auth: Auth) -> bool:
    """Burrow's agent writes PROXY headers to its upstream itself and reports the version in
    Bind `Opts.ProxyProto`; ngrok's clients mean by it that the edge should write them."""
    return auth.extra.client_type == BURROW_CLIENT_TYPE


def edge_keeps_large_windows(resp: AuthResp) -> bool:
    return resp.extra.version.startswith(BURROW_EDGE_VERSION_PREFIX)
