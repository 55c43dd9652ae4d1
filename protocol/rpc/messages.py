"""The typed-stream RPC messages of ngrok's agent protocol, and the ProxyHeader.

Every message is a frozen, keyword-only dataclass with snake_case attributes whose fields name
their wire keys (ngrok-go's spelling); `protocol.rpc.schema` turns them into wire maps and back,
decoding as leniently as Go's `encoding/json` (its docstring has the rules). `to_wire`,
`from_wire`, `Message` and `RpcDecodeError` are importable from here too, as every user of the
messages needs them.

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

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from protocol.rpc.schema import (
    Message,
    RpcDecodeError,
    from_wire,
    to_wire,
    wire_key,
    wire_message,
)

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


# --- nested objects -----------------------------------------------------------------------


@wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class Fingerprint(Message):
    """ngrok-go's `AuthExtra.Fingerprint`; unused by ngrok, carried for completeness."""

    m: tuple[str, ...] = field(default=(), metadata=wire_key("M"))
    d: tuple[str, ...] = field(default=(), metadata=wire_key("D"))


@wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class AgentVersionDeprecated(Message):
    """`AuthRespExtra.DeprecationWarning`: the agent should update by `next_date`."""

    next_min: str = field(default="", metadata=wire_key("NextMin"))
    next_date: str = field(default="", metadata=wire_key("NextDate"))  # RFC 3339 (Go time.Time)
    msg: str = field(default="", metadata=wire_key("Msg"))


@wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class ConnectAddress(Message):
    """One entry of `AuthRespExtra.ConnectAddresses`: where else the agent may connect."""

    region: str = field(default="", metadata=wire_key("Region"))
    server_addr: str = field(default="", metadata=wire_key("ServerAddr"))


# --- Auth (type 0) ------------------------------------------------------------------------


@wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class AuthExtra(Message):
    """Everything the agent says about itself when it authenticates."""

    os: str = field(default="", metadata=wire_key("OS"))
    arch: str = field(default="", metadata=wire_key("Arch"))
    authtoken: str = field(default="", metadata=wire_key("Authtoken"), repr=False)
    version: str = field(default="", metadata=wire_key("Version"))
    hostname: str = field(default="", metadata=wire_key("Hostname"))
    user_agent: str = field(default="", metadata=wire_key("UserAgent"))
    metadata: str = field(default="", metadata=wire_key("Metadata"))
    cookie: str = field(default="", metadata=wire_key("Cookie"), repr=False)
    heartbeat_interval: int = field(default=0, metadata=wire_key("HeartbeatInterval"))  # ns
    heartbeat_tolerance: int = field(default=0, metadata=wire_key("HeartbeatTolerance"))  # ns
    fingerprint: Fingerprint | None = field(default=None, metadata=wire_key("Fingerprint"))
    # None: the agent is too old to say; "": supported; otherwise why it is not supported.
    update_unsupported_error: str | None = field(
        default=None, metadata=wire_key("UpdateUnsupportedError")
    )
    stop_unsupported_error: str | None = field(
        default=None, metadata=wire_key("StopUnsupportedError")
    )
    restart_unsupported_error: str | None = field(
        default=None, metadata=wire_key("RestartUnsupportedError")
    )
    proxy_type: str = field(default="", metadata=wire_key("ProxyType"))
    mutual_tls: bool = field(default=False, metadata=wire_key("MutualTLS"))
    service_run: bool = field(default=False, metadata=wire_key("ServiceRun"))
    config_version: str = field(default="", metadata=wire_key("ConfigVersion"))
    custom_interface: bool = field(default=False, metadata=wire_key("CustomInterface"))
    custom_cas: bool = field(default=False, metadata=wire_key("CustomCAs"))
    client_type: str = field(default="", metadata=wire_key("ClientType"))
    leg_number: int = field(default=0, metadata=wire_key("LegNumber"))  # uint32 in Go


@wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class Auth(Message):
    """Agent → edge, type 0. `client_id` is the previous session's id on reconnect."""

    version: tuple[str, ...] = field(default=(), metadata=wire_key("Version"))
    client_id: str = field(default="", metadata=wire_key("ClientId"))
    extra: AuthExtra = field(default_factory=AuthExtra, metadata=wire_key("Extra"))


@wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class AuthRespExtra(Message):
    """What the edge tells an authenticated agent."""

    version: str = field(default="", metadata=wire_key("Version"))
    region: str = field(default="", metadata=wire_key("Region"))
    cookie: str = field(default="", metadata=wire_key("Cookie"), repr=False)
    account_name: str = field(default="", metadata=wire_key("AccountName"))
    session_duration: int = field(default=0, metadata=wire_key("SessionDuration"))  # seconds
    plan_name: str = field(default="", metadata=wire_key("PlanName"))
    banner: str = field(default="", metadata=wire_key("Banner"))
    deprecation_warning: AgentVersionDeprecated | None = field(
        default=None, metadata=wire_key("DeprecationWarning")
    )
    connect_addresses: tuple[ConnectAddress, ...] = field(
        default=(), metadata=wire_key("ConnectAddresses")
    )
    agent_session_id: str = field(default="", metadata=wire_key("AgentSessionID"))


@wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class AuthResp(Message):
    """Edge → agent reply to Auth. A non-empty `error` refuses the session."""

    version: str = field(default="", metadata=wire_key("Version"))
    client_id: str = field(default="", metadata=wire_key("ClientId"))
    error: str = field(default="", metadata=wire_key("Error"))
    extra: AuthRespExtra = field(default_factory=AuthRespExtra, metadata=wire_key("Extra"))


# --- Bind (type 1) and Unbind (type 2) ----------------------------------------------------


@wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class BindExtra(Message):
    """Endpoint metadata that rides along with a Bind."""

    name: str = field(default="", metadata=wire_key("Name"))
    token: str = field(default="", metadata=wire_key("Token"), repr=False)
    ip_policy_ref: str = field(default="", metadata=wire_key("IPPolicyRef"))
    metadata: str = field(default="", metadata=wire_key("Metadata"))
    description: str = field(default="", metadata=wire_key("Description"))
    bindings: tuple[str, ...] = field(default=(), metadata=wire_key("Bindings"))
    pooling_enabled: bool = field(
        default=False, metadata=wire_key("PoolingEnabled", "AllowsPooling")
    )


@wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class Bind(Message):
    """Agent → edge, type 1. `opts` is the per-proto options object (`{"URL": ..., ...}`)."""

    id: str = field(default="", metadata=wire_key("Id"))
    proto: str = field(default="", metadata=wire_key("Proto"))
    forwards_to: str = field(default="", metadata=wire_key("ForwardsTo"))
    forwards_proto: str = field(default="", metadata=wire_key("ForwardsProto"))
    opts: dict[str, Any] = field(default_factory=dict, metadata=wire_key("Opts"))
    extra: BindExtra = field(default_factory=BindExtra, metadata=wire_key("Extra"))


@wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class BindRespExtra(Message):
    token: str = field(default="", metadata=wire_key("Token"), repr=False)
    tunnel_id: str = field(default="", metadata=wire_key("TunnelID"))


@wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class BindResp(Message):
    """Edge → agent reply to Bind; the agent routes proxy streams by `id`."""

    id: str = field(default="", metadata=wire_key("Id"))
    url: str = field(default="", metadata=wire_key("URL"))
    proto: str = field(default="", metadata=wire_key("Proto"))
    opts: dict[str, Any] = field(default_factory=dict, metadata=wire_key("Opts"))
    error: str = field(default="", metadata=wire_key("Error"))
    extra: BindRespExtra = field(default_factory=BindRespExtra, metadata=wire_key("Extra"))


@wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class Unbind(Message):
    """Agent → edge, type 2. `extra` is application-defined (Go sends null)."""

    id: str = field(default="", metadata=wire_key("Id"))
    extra: Any = field(default=None, metadata=wire_key("Extra"))


@wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class UnbindResp(Message):
    error: str = field(default="", metadata=wire_key("Error"))
    extra: Any = field(default=None, metadata=wire_key("Extra"))


# --- labeled tunnels (type 7, legacy Edges) and PatchTunnelState (type 10) ----------------


@wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class StartTunnelWithLabel(Message):
    labels: dict[str, str] = field(default_factory=dict, metadata=wire_key("Labels"))
    forwards_to: str = field(default="", metadata=wire_key("ForwardsTo"))
    forwards_proto: str = field(default="", metadata=wire_key("ForwardsProto"))
    metadata: str = field(default="", metadata=wire_key("Metadata"))


@wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class StartTunnelWithLabelResp(Message):
    id: str = field(default="", metadata=wire_key("Id"))
    error: str = field(default="", metadata=wire_key("Error"))


@wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class PatchTunnelState(Message):
    """Agent → edge, type 10. A field left at None is omitted and stays unchanged."""

    tunnel_id: str = field(default="", metadata=wire_key("TunnelId"))
    name: str | None = field(default=None, metadata=wire_key("Name", omit_none=True))
    description: str | None = field(default=None, metadata=wire_key("Description", omit_none=True))
    metadata: str | None = field(default=None, metadata=wire_key("Metadata", omit_none=True))
    pooling_enabled: bool | None = field(
        default=None, metadata=wire_key("PoolingEnabled", omit_none=True)
    )
    traffic_policy: str | None = field(
        default=None, metadata=wire_key("TrafficPolicy", omit_none=True)
    )


@wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class PatchTunnelStateResp(Message):
    error: str = field(default="", metadata=wire_key("Error"))


# --- edge → agent commands (types 4, 5, 6, 9) ---------------------------------------------


@wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class Restart(Message):
    """Edge → agent, type 4: restart yourself. `message` (a Burrow extension, absent from the
    wire when None; ngrok's agents ignore it) says who asked, for the agent to show."""

    message: str | None = field(default=None, metadata=wire_key("Message", omit_none=True))


@wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class RestartResp(Message):
    error: str = field(default="", metadata=wire_key("Error"))


@wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class Stop(Message):
    """Edge → agent, type 5: stop yourself. `message` (a Burrow extension, absent from the
    wire when None; ngrok's agents ignore it) says who asked, for the agent to show."""

    message: str | None = field(default=None, metadata=wire_key("Message", omit_none=True))


@wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class StopResp(Message):
    error: str = field(default="", metadata=wire_key("Error"))


@wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class Update(Message):
    """Edge → agent, type 6: update to `version` (empty: the latest)."""

    version: str = field(default="", metadata=wire_key("Version"))
    permit_major_version: bool = field(default=False, metadata=wire_key("PermitMajorVersion"))


@wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class UpdateResp(Message):
    error: str = field(default="", metadata=wire_key("Error"))


@wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class StopTunnel(Message):
    """Edge → agent, type 9: close tunnel `id` and show `message` / `error_code` to the user."""

    id: str = field(default="", metadata=wire_key("Id"))
    message: str = field(default="", metadata=wire_key("Message"))
    error_code: str = field(default="", metadata=wire_key("ErrorCode"))


# --- SrvInfo (type 8) ---------------------------------------------------------------------


@wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class SrvInfo(Message):
    """Agent → edge, type 8: which region am I connected to?"""


@wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class SrvInfoResp(Message):
    region: str = field(default="", metadata=wire_key("Region"))


# --- proxy streams (type 3) ---------------------------------------------------------------


@wire_message
@dataclass(frozen=True, kw_only=True, slots=True)
class ProxyHeader(Message):
    """Edge → agent, first on every proxy stream (after an int64 LE length; see codec.py).

    `edge_type` is "0" undefined, "1" TCP, "2" TLS, "3" HTTPS (legacy Edges); "" also means
    undefined. `passthrough_tls` is true when the bytes that follow are still TLS-encrypted.
    """

    id: str = field(default="", metadata=wire_key("Id"))
    client_addr: str = field(default="", metadata=wire_key("ClientAddr"))
    proto: str = field(default="", metadata=wire_key("Proto"))
    edge_type: str = field(default="", metadata=wire_key("EdgeType"))
    passthrough_tls: bool = field(default=False, metadata=wire_key("PassthroughTLS"))


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
