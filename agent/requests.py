"""The requests the agent sends, built from its settings: Auth, Bind, and the resume state.

Pure functions of their arguments (the host's name and platform come in as `HostInfo`), so the
exact bytes an agent puts on the wire can be tested without a socket. The resume state is what
lets a reconnecting agent take its own endpoints back (reference §7): AuthResp's ClientId and
Cookie, and each BindResp's Id and Token, sent again on the next session.
"""

from __future__ import annotations

import platform
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field

from agent.config import AgentSettings, EndpointSettings
from agent.errors import AgentError
from agent.upstream import display_upstream
from protocol.formats.urls import format_host_port
from protocol.rpc.messages import (
    PROTOCOL_VERSIONS,
    Auth,
    AuthExtra,
    AuthResp,
    Bind,
    BindExtra,
    BindResp,
)

__all__ = [
    "AGENT_VERSION",
    "CLIENT_TYPE",
    "REMOTE_MANAGEMENT_OFF",
    "UPDATE_UNSUPPORTED",
    "USER_AGENT",
    "BoundEndpoint",
    "HostInfo",
    "ResumeState",
    "build_auth",
    "build_bind",
    "check_supported",
    "upstream_display",
]

AGENT_VERSION = "0.1.0"
USER_AGENT = f"burrow/{AGENT_VERSION}"
CLIENT_TYPE = "burrow"
UPDATE_UNSUPPORTED = "Burrow does not support remote update; upgrade the package on the agent host"
REMOTE_MANAGEMENT_OFF = (
    "remote management is turned off in this agent's config (agent.remote_management: false)"
)

_NS_PER_SECOND = 1_000_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class HostInfo:
    """What the agent says about its machine in Auth."""

    os: str
    arch: str
    hostname: str

    @classmethod
    def current(cls) -> HostInfo:
        return cls(
            os=platform.system().lower(),
            arch=platform.machine(),
            hostname=socket.gethostname(),
        )


@dataclass(frozen=True, slots=True)
class BoundEndpoint:
    """What the edge returned for one endpoint: its routing id, URL and resume token."""

    bind_id: str
    url: str
    token: str


@dataclass(slots=True)
class ResumeState:
    """What lets the next session take over this agent's endpoints (reference §7)."""

    client_id: str = ""
    cookie: str = ""
    binds: dict[str, BoundEndpoint] = field(default_factory=dict)  # by endpoint name

    def authenticated(self, response: AuthResp) -> None:
        self.client_id = response.client_id
        if response.extra.cookie:
            self.cookie = response.extra.cookie

    def bound(self, name: str, response: BindResp) -> BoundEndpoint:
        bound = BoundEndpoint(response.id, response.url, response.extra.token)
        self.binds[name] = bound
        return bound


def build_auth(settings: AgentSettings, resume: ResumeState, host: HostInfo) -> Auth:
    """The Auth request for the next session, resuming the previous one if there was one."""
    token = settings.authtoken.reveal() if settings.authtoken is not None else ""
    return Auth(
        version=PROTOCOL_VERSIONS,
        client_id=resume.client_id,
        extra=AuthExtra(
            os=host.os,
            arch=host.arch,
            authtoken=token,
            version=AGENT_VERSION,
            hostname=host.hostname,
            user_agent=USER_AGENT,
            metadata=settings.metadata,
            cookie=resume.cookie,
            heartbeat_interval=round(settings.heartbeat_interval * _NS_PER_SECOND),
            heartbeat_tolerance=round(settings.heartbeat_tolerance * _NS_PER_SECOND),
            # agent.control: Restart reconnects as a new session, Stop exits; neither when the
            # config turns remote management off.
            restart_unsupported_error="" if settings.remote_management else REMOTE_MANAGEMENT_OFF,
            update_unsupported_error=UPDATE_UNSUPPORTED,
            stop_unsupported_error="" if settings.remote_management else REMOTE_MANAGEMENT_OFF,
            custom_cas=settings.connect_cas != "trusted",
            client_type=CLIENT_TYPE,
        ),
    )


def upstream_display(endpoint: EndpointSettings) -> str:
    """How the upstream is shown and sent as ForwardsTo: `host:port` for tcp and tls upstreams,
    the URL for http(s) ones (as ngrok prints them)."""
    return display_upstream(endpoint.upstream.target)


def build_bind(
    endpoint: EndpointSettings,
    previous: BoundEndpoint | None,
    *,
    traffic_policy: str | None = None,
) -> Bind:
    """The Bind request for `endpoint`; `previous` (the last session's BindResp) makes the edge
    give the same endpoint back. `traffic_policy` is the policy document as text, if any.

    Proto is the endpoint URL's scheme (a scheme-less or empty URL was already read as https).
    Opts carry what ngrok-go's modern clients fill in for that proto (reference §8.7): `URL`
    ("" asks for a random name or address) and `ProxyProto` (0, or the PROXY protocol version
    the agent itself writes to the upstream) for all; `Addr` for tcp; `MutualTLSAtAgent` for
    tls (true when the agent checks client certificates itself); `TrafficPolicy` if any.
    """
    url = endpoint.endpoint_url
    opts: dict[str, object] = {
        "URL": "" if url.is_random else str(url),
        "ProxyProto": endpoint.upstream.proxy_protocol or 0,
    }
    if url.scheme == "tcp":
        port = url.effective_port
        opts["Addr"] = "" if url.is_random or port is None else format_host_port(url.host, port)
    elif url.scheme == "tls":
        termination = endpoint.agent_tls_termination
        opts["MutualTLSAtAgent"] = bool(
            termination and termination.mutual_tls_certificate_authorities
        )
    if traffic_policy is not None:
        opts["TrafficPolicy"] = traffic_policy
    return Bind(
        id=previous.bind_id if previous else "",
        proto=url.scheme,
        forwards_to=upstream_display(endpoint),
        forwards_proto=endpoint.upstream.protocol or "",
        opts=opts,
        extra=BindExtra(
            name=endpoint.name,
            token=previous.token if previous else "",
            metadata=endpoint.metadata,
            description=endpoint.description,
            bindings=endpoint.bindings,
            pooling_enabled=endpoint.pooling_enabled,
        ),
    )


def check_supported(endpoints: Sequence[EndpointSettings]) -> None:
    """Raise AgentError for endpoint settings this agent cannot honour yet (the config file
    and the command line refuse them already; this guards endpoints built any other way)."""
    for endpoint in endpoints:
        if endpoint.upstream.protocol == "http2":
            raise AgentError(
                f"endpoint {endpoint.name!r}: upstream protocol http2 is not supported by this "
                "Burrow agent yet; use http1"
            )
