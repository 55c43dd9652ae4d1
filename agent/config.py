"""The agent's settings: ngrok's v3 file format as frozen dataclasses, and the values they hold.

`AgentConfig` is what `agent.config_load.load_config` returns: the `agent:` section
(`AgentSettings`) and the endpoints (`EndpointSettings`, each with its `UpstreamSettings` and
optional `AgentTLSTermination`). `Secret` keeps an authtoken out of reprs and logs. The few
value rules that code outside the loader needs too live here: where the default file is
(`default_config_path`), what a connect URL is (`validate_connect_url`), and a Go-style
duration (`parse_duration`).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from agent.config_source import ConfigError
from agent.proxy_url import ProxyURL
from protocol.formats import units
from protocol.formats.urls import EndpointURL, UpstreamURL, URLError, parse_endpoint_url

__all__ = [
    "DEFAULT_CONNECT_URL",
    "DEFAULT_WEB_ADDR",
    "MAX_METADATA_LENGTH",
    "AgentConfig",
    "AgentSettings",
    "AgentTLSTermination",
    "ConfigError",
    "EndpointSettings",
    "Secret",
    "UpstreamSettings",
    "default_config_path",
    "parse_duration",
    "validate_connect_url",
]

# Burrow's development edge (`./dev demo`): `.localhost` names resolve to loopback (RFC 6761)
# and 8443 needs no root. A deployment sets `connect_url` to its own edge (`edge.acme.com:443`).
DEFAULT_CONNECT_URL = "connect.burrow.localhost:8443"
DEFAULT_CONNECT_PORT = 443  # ngrok agents always dial 443 (reference §7)
DEFAULT_WEB_ADDR = ("127.0.0.1", 4040)  # ngrok's web_addr default (reference §1.3)
MAX_METADATA_LENGTH = 4096  # ngrok's documented limit for session and endpoint metadata
SECRET_VISIBLE_CHARS = 4
SECRET_MIN_LENGTH_TO_SHOW = 12  # below this, 4 visible characters would give too much away


class Secret:
    """A string that prints masked (`***` plus its last 4 characters); `.reveal()` gives it back.

    Deliberately not a dataclass, so `dataclasses.asdict()` of a config cannot unwrap it.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __str__(self) -> str:
        if len(self._value) < SECRET_MIN_LENGTH_TO_SHOW:
            return "***"
        return "***" + self._value[-SECRET_VISIBLE_CHARS:]

    def __repr__(self) -> str:
        return f"Secret({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class AgentSettings:
    """The `agent:` section. Durations are seconds."""

    authtoken: Secret | None = None
    connect_url: str = DEFAULT_CONNECT_URL  # host:port, port always present
    connect_cas: str = "trusted"  # "trusted" | "host" | an absolute path to a PEM file
    heartbeat_interval: float = 10.0  # ngrok's default
    heartbeat_tolerance: float = 15.0  # ngrok's default
    connect_timeout: float = 10.0  # ngrok's default
    metadata: str = ""
    # "stdout" | "stderr" | "false" | an absolute path. Burrow logs to stderr unless the file
    # says otherwise (ngrok's default is false); an explicit `log: false` means no log lines.
    log: str = "stderr"
    log_level: str = "info"
    log_format: str = "term"  # "term" | "logfmt" | "json"
    # ngrok's console_ui: True, False or "iftty" (the live status view when stdout is a
    # terminal; agent.console decides).
    console_ui: bool | str = "iftty"
    # The inspector, local API, /metrics and probes (ngrok's default address); None = off.
    web_addr: tuple[str, int] | None = DEFAULT_WEB_ADDR
    # Bytes of captured traffic kept for the inspector: 0 = ngrok's default (50 MB), -1 = off.
    inspect_db_size: int = 0
    # ngrok's proxy_url: dial the edge through this HTTP CONNECT or SOCKS5 proxy; None = the
    # environment's (HTTPS_PROXY, ALL_PROXY, minus NO_PROXY), else direct (agent.proxy_dial).
    proxy: ProxyURL | None = None
    # Documented ngrok keys Burrow accepts, type-checks and keeps, but does not act on.
    ngrok_options: Mapping[str, object] = field(default_factory=dict)
    # Burrow extension: on SIGTERM/SIGINT the agent says GOAWAY (the edge sends new traffic to
    # the endpoint's other pool members at once), takes no new streams, and gives the streams
    # it serves this long to finish before it exits. 10 s lets ordinary requests end and fits
    # well within a service manager's stop timeout (systemd's default is 90 s).
    drain_timeout: float = 10.0
    # ngrok's remote_management: whether the edge may stop or restart this agent (the admin
    # API's tunnel_sessions stop/restart). False: the Auth says both are unsupported, so the
    # edge refuses them (ERR_NGROK_805/804) and never sends them.
    remote_management: bool = True

    @property
    def connect_address(self) -> tuple[str, int]:
        return validate_connect_url(self.connect_url)


@dataclass(frozen=True)
class UpstreamSettings:
    url: str  # canonical, e.g. "http://localhost:8080" for `url: 8080`
    protocol: str | None  # "http1" (http2 is refused: not supported yet); None = not given
    proxy_protocol: int | None  # 1 | 2; None = no PROXY header
    target: UpstreamURL
    # Burrow extensions, https:// upstreams only (the CLI's --upstream-tls-verify[-cas]):
    tls_verify: bool = True  # verify the upstream's certificate and host name
    tls_verify_cas: str | None = None  # absolute path of a PEM CA bundle; None = system store


@dataclass(frozen=True)
class AgentTLSTermination:
    """Each PEM value is an absolute path to a PEM file or inline PEM text."""

    server_certificate: str
    server_private_key: str = field(repr=False)  # may be an inline key: never print it
    mutual_tls_certificate_authorities: tuple[str, ...] = ()
    # Burrow extension (ngrok has no such key): the ALPN protocols the agent's TLS server
    # selects from, most preferred first, e.g. ("postgresql",) for PostgreSQL 17+ clients with
    # sslnegotiation=direct. Empty (the default, as ngrok): ALPN is ignored.
    alpn_protocols: tuple[str, ...] = ()


@dataclass(frozen=True)
class EndpointSettings:
    name: str
    url: str  # canonical, e.g. "https://" (random) or "tcp://db.example.internal:5432"
    upstream: UpstreamSettings
    pooling_enabled: bool
    description: str
    metadata: str
    bindings: tuple[str, ...]  # always exactly one; inferred from the URL when not given
    # Inline: a mapping, or the document as a string (sent as is). The edge validates it.
    traffic_policy: dict[str, object] | str | None
    traffic_policy_file: str | None  # an absolute path; read again when the endpoint binds
    agent_tls_termination: AgentTLSTermination | None
    inspect: bool  # capture this http(s) endpoint's requests for the inspector (default)
    endpoint_url: EndpointURL

    @property
    def binding(self) -> str:
        return self.bindings[0]


@dataclass(frozen=True)
class AgentConfig:
    agent: AgentSettings
    endpoints: tuple[EndpointSettings, ...]
    sources: tuple[Path, ...]
    #: Settings the file gives that Burrow accepts (so ngrok's files load) but does not act on
    #: yet, and deprecated forms it reads (`tunnels:`), one `file:line: key: why` line each;
    #: `burrow config check` and `start` print them.
    not_supported: tuple[str, ...] = ()

    def endpoint(self, name: str) -> EndpointSettings | None:
        return next((e for e in self.endpoints if e.name == name), None)


def default_config_path(env: Mapping[str, str]) -> Path:
    """`$XDG_CONFIG_HOME/burrow/burrow.yml`, else `~/.config/burrow/burrow.yml`."""
    xdg = env.get("XDG_CONFIG_HOME", "")
    if xdg and Path(xdg).is_absolute():  # the XDG spec says to ignore relative values
        return Path(xdg) / "burrow" / "burrow.yml"
    home = env.get("HOME")
    return (Path(home) if home else Path.home()) / ".config" / "burrow" / "burrow.yml"


def validate_connect_url(text: str) -> tuple[str, int]:
    """Check a `host:port` connect URL (port defaults to 443); raise `ConfigError` if bad."""
    if "://" in text:
        raise ConfigError(
            f"{text!r} has a scheme; connect_url is host:port, e.g. connect.example.com:443"
        )
    try:
        url = parse_endpoint_url(text, default_scheme="tcp")
    except URLError as exc:
        raise ConfigError(f"{exc}; write host:port, e.g. connect.example.com:443") from None
    if url.is_random or url.is_wildcard:
        raise ConfigError(f"{text!r} needs a host name; write host:port, e.g. edge.example.com:443")
    return url.host, DEFAULT_CONNECT_PORT if url.port is None else url.port


def parse_duration(value: str | float) -> float:
    """Seconds from a Go-style duration (`10s`, `1m30s`, `250ms`, `0`), as ngrok reads one.

    A number without a unit is refused: Go would read it as nanoseconds. `ValueError` if bad.
    """
    return units.parse_duration(value, syntax=units.DurationSyntax.GO)
