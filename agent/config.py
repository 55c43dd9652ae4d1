"""The agent's configuration: ngrok's v3 file format, validated once into frozen dataclasses.

Theory of operation: `agent.config_source` reads the files, merges them left to right as ngrok
does and puts the `BURROW_*` environment overrides on top, remembering where every key path came
from; only then is the result validated, here, so an error can say

    /etc/burrow/burrow.yml:7: endpoints[1].upstream.urll: unknown key; did you mean url?

The typed readers that produce those messages are `agent.config_values`. TLS material
(`agent_tls_termination`, `upstream.tls_verify_cas`) is loaded here too, through
`agent.tls_contexts`, so a bad PEM fails `burrow config check` with the key path that names it.

Unknown keys are errors, as in ngrok 3.x. `agent:` keys that ngrok documents but Burrow does not
act on (`update_check`, `dns_resolver_ips`, ...) are type-checked and kept in
`AgentSettings.ngrok_options`, so ngrok users' files load unchanged. Relative paths in a file
are relative to that file's directory (the agent often runs as a service whose working
directory is `/`).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agent.config_source import (
    ConfigError,
    SourceMap,
    Where,
    apply_env_overrides,
    merge_into,
    read_config_file,
)
from agent.config_values import (
    check_keys,
    check_length,
    describe,
    read_bool,
    read_choice,
    read_duration,
    read_mapping,
    read_str,
    read_str_list,
)
from agent.legacy_tunnels import with_legacy_tunnels
from agent.proxy_url import ProxyURL, ProxyURLError, parse_proxy_url
from agent.tls_contexts import TLSMaterialError, termination_context, upstream_context
from protocol.formats import units
from protocol.formats.urls import (
    EndpointURL,
    UpstreamURL,
    URLError,
    infer_binding,
    parse_endpoint_url,
    parse_upstream_url,
    validate_endpoint_url,
)
from protocol.formats.yamldoc import KeyPath, YAMLDocumentError, read_yaml

__all__ = [
    "DEFAULT_CONNECT_URL",
    "AgentConfig",
    "AgentSettings",
    "AgentTLSTermination",
    "ConfigError",
    "EndpointSettings",
    "Secret",
    "UpstreamSettings",
    "default_config_path",
    "load_config",
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


def load_config(paths: Sequence[Path], env: Mapping[str, str]) -> AgentConfig:
    """Load, merge (left to right) and validate config files, then apply `BURROW_*` overrides.

    With no paths, the result is the defaults plus the environment. Raises `ConfigError` for
    unreadable files, YAML errors and every invalid value; nothing is half-loaded.
    """
    merged: dict[str, object] = {}
    origins: dict[KeyPath, Where] = {}
    for path in paths:
        data, file_origins = read_config_file(path)
        if not isinstance(data, dict):
            raise ConfigError(
                f"the file holds {describe(data)}, not a mapping; start it with `version: 3`",
                source=str(path),
                line=1,
            )
        _check_version(SourceMap(file_origins, [path]), data)
        merge_into(merged, data, origins)
        origins.update(file_origins)
    apply_env_overrides(merged, origins, env)
    ctx = SourceMap(origins, paths)
    if paths:
        check_keys(ctx, merged, (), _TOP_KEYS, _TOP_HINTS)
        if "version" not in merged:
            raise ctx.error(("version",), "missing; add `version: 3` at the top of the file")
    agent = _agent_settings(ctx, read_mapping(ctx, merged.get("agent"), ("agent",)))
    endpoints = _endpoints(ctx, merged.get("endpoints"))
    # ngrok's deprecated tunnels: map, read as more endpoints (agent.legacy_tunnels), noted.
    endpoints, tunnel_notes = with_legacy_tunnels(ctx, merged.get("tunnels"), endpoints, _endpoint)
    return AgentConfig(
        agent=agent,
        endpoints=endpoints,
        sources=tuple(paths),
        not_supported=(*_not_supported(ctx, merged), *tunnel_notes),
    )


def _not_supported(ctx: SourceMap, merged: Mapping[str, object]) -> tuple[str, ...]:
    """What the file sets that Burrow keeps but ignores: ngrok-only `agent:` keys. `false`
    turns off something Burrow does not have, which is honoured, so it is not reported."""
    found = []
    agent = merged.get("agent")
    if isinstance(agent, Mapping):
        for key in _NGROK_ONLY_AGENT_KEYS:
            if agent.get(key) not in (None, False):
                found.append(ctx.error(("agent", key), NOT_SUPPORTED_YET))
    found.sort(key=lambda error: (error.source or "", error.line or 0))
    return tuple(str(error) for error in found)


def _check_version(ctx: SourceMap, data: Mapping[str, object]) -> None:
    if "version" not in data:
        return
    version = data["version"]
    if version in (3, "3"):
        return
    if version in (2, "2", 1, "1"):
        raise ctx.error(
            ("version",),
            f"version {version} files are not supported; Burrow reads the v3 format (agent "
            "options under `agent:`, an `endpoints:` list): run `ngrok config upgrade` on the "
            "file or see deploy/agent.example.yml",
        )
    raise ctx.error(("version",), f"must be 3, found {version!r}; write `version: 3`")


_TOP_KEYS = ("version", "agent", "endpoints", "tunnels")
_V2_TOP_HINTS = {
    "server_addr": "v3 files spell it agent.connect_url",
    "root_cas": "v3 files spell it agent.connect_cas",
}
_USED_AGENT_KEYS = (
    "authtoken",
    "connect_url",
    "connect_cas",
    "connect_timeout",
    "heartbeat_interval",
    "heartbeat_tolerance",
    "metadata",
    "log",
    "log_level",
    "log_format",
    "web_addr",
    "inspect_db_size",
    "proxy_url",
    "drain_timeout",
    "console_ui",
    "remote_management",
)
_LOG_LEVELS = ("crit", "error", "warn", "info", "debug", "warning")  # warning means warn
_LOG_FORMATS = ("term", "logfmt", "json")


def _is_str(value: object) -> bool:
    return isinstance(value, str)


def _is_bool(value: object) -> bool:
    return isinstance(value, bool)


def _is_str_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def policy_problem(text: str) -> str | None:
    """What is wrong with a Traffic Policy document `text` as the agent checks it, or None.

    The agent checks only that it is JSON or YAML holding one mapping (or nothing: the empty
    policy); the edge validates the policy itself when the endpoint is bound (and refuses a bad
    one with ngrok's ERR_NGROK_22xx code), so the two cannot disagree about what is valid."""
    value: object
    try:
        value = json.loads(text)
    except ValueError:
        try:
            document = read_yaml(text)
        except YAMLDocumentError as exc:
            where = f" (line {exc.line})" if exc.line is not None else ""
            return f"is not YAML or JSON{where}: {exc.problem}"
        value = None if document is None else document.value
    if value is not None and not isinstance(value, dict):
        return (
            f"must be a mapping of phases (on_tcp_connect, on_http_request, on_http_response), "
            f"found {describe(value)}"
        )
    return None


def read_policy_file(path: str) -> str | None:
    """What is wrong with the Traffic Policy file at `path` (unreadable, or `policy_problem`),
    or None."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return f"cannot be read: {exc}"
    return policy_problem(text)


def _traffic_policy(ctx: SourceMap, value: object, p: KeyPath) -> dict[str, object] | str:
    """`traffic_policy` as written: a mapping, or (as ngrok allows) the document as a string."""
    if isinstance(value, str):
        problem = policy_problem(value)
        if problem is not None:
            raise ctx.error(p, problem)
        return value
    return dict(read_mapping(ctx, value, p))


#: How `config check` reports a setting that is accepted but has no effect.
NOT_SUPPORTED_YET = "not supported by Burrow yet; accepted and ignored"

# ngrok keys Burrow keeps but ignores: what each must look like, and a check for it.
_NGROK_ONLY_AGENT_KEYS: dict[str, tuple[str, Callable[[object], bool]]] = {
    "api_key": ("a string", _is_str),
    "connect_interface": ("an interface name", _is_str),
    "console_ui_color": ("transparent or black", lambda v: v in ("transparent", "black")),
    "crl_noverify": ("true or false", _is_bool),
    "crl_url": ("a URL", _is_str),
    "dns_resolver_ips": ("a list of IP addresses", _is_str_list),
    "local_storage": ("anything", lambda v: True),  # shape undocumented (reference §1.3)
    "update_channel": ("stable, beta or unstable", lambda v: v in ("stable", "beta", "unstable")),
    "update_check": ("true or false", _is_bool),
    "web_allow_hosts": ("a list of hosts, IPs or CIDRs", _is_str_list),
}


# Unknown top-level keys: v2 names, and agent options written at the top level as v2 did.
_TOP_HINTS = {
    **{
        key: f"v3 files put it under agent:, as agent.{key}"
        for key in (*_USED_AGENT_KEYS, *_NGROK_ONLY_AGENT_KEYS)
    },
    **_V2_TOP_HINTS,
}


def _agent_settings(ctx: SourceMap, data: Mapping[str, object]) -> AgentSettings:
    p: KeyPath = ("agent",)
    check_keys(ctx, data, p, _USED_AGENT_KEYS + tuple(_NGROK_ONLY_AGENT_KEYS))
    kept: dict[str, object] = {}
    for key, (wanted, check) in _NGROK_ONLY_AGENT_KEYS.items():
        if key in data and data[key] is not None:
            if not check(data[key]):
                raise ctx.error((*p, key), f"expected {wanted}, found {describe(data[key])}")
            kept[key] = Secret(str(data[key])) if key == "api_key" else data[key]
    token = read_str(ctx, data, p, "authtoken", "")
    connect_url = read_str(ctx, data, p, "connect_url", DEFAULT_CONNECT_URL)
    try:
        host, port = validate_connect_url(connect_url)
    except ConfigError as exc:
        raise ctx.error((*p, "connect_url"), exc.reason) from None
    cas = read_str(ctx, data, p, "connect_cas", "trusted")
    if cas not in ("trusted", "host"):
        cas = ctx.resolve_file((*p, "connect_cas"), cas)
    log = data.get("log", "stderr")
    if log is False:  # YAML reads `log: false` as a boolean
        log = "false"
    if not isinstance(log, str) or log == "":
        raise ctx.error(
            (*p, "log"), f"expected stdout, stderr, false or a file path, found {describe(log)}"
        )
    if log not in ("stdout", "stderr", "false"):
        where = ctx.where((*p, "log"))
        base = where.directory if where and where.directory else Path.cwd()
        log = str(base / Path(log).expanduser())
    console_ui = data.get("console_ui", "iftty")
    if console_ui is None:
        console_ui = "iftty"
    if not (_is_bool(console_ui) or console_ui == "iftty"):
        raise ctx.error(
            (*p, "console_ui"), f"expected true, false or iftty, found {describe(console_ui)}"
        )
    assert isinstance(console_ui, bool | str)
    metadata = read_str(ctx, data, p, "metadata", "")
    check_length(ctx, (*p, "metadata"), metadata, MAX_METADATA_LENGTH)
    return AgentSettings(
        authtoken=Secret(token) if token else None,
        connect_url=f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        connect_cas=cas,
        heartbeat_interval=read_duration(ctx, data, p, "heartbeat_interval", 10.0),
        heartbeat_tolerance=read_duration(ctx, data, p, "heartbeat_tolerance", 15.0),
        connect_timeout=read_duration(ctx, data, p, "connect_timeout", 10.0),
        metadata=metadata,
        log=log,
        log_level=read_choice(ctx, data, p, "log_level", _LOG_LEVELS, "info"),
        log_format=read_choice(ctx, data, p, "log_format", _LOG_FORMATS, "term"),
        console_ui=console_ui,
        web_addr=_web_addr(ctx, data.get("web_addr", None), (*p, "web_addr")),
        inspect_db_size=_inspect_db_size(ctx, data.get("inspect_db_size", 0), p),
        proxy=_proxy_url(ctx, data.get("proxy_url"), (*p, "proxy_url")),
        ngrok_options=kept,
        drain_timeout=read_duration(ctx, data, p, "drain_timeout", 10.0),
        remote_management=read_bool(ctx, data, p, "remote_management", True),
    )


def _web_addr(ctx: SourceMap, value: object, p: KeyPath) -> tuple[str, int] | None:
    """`host:port` (`[::1]:4040` for IPv6), or false to turn the listener off."""
    if value is None:
        return DEFAULT_WEB_ADDR
    if value is False:
        return None
    example = "write host:port, e.g. 127.0.0.1:4040, or false"
    if not isinstance(value, str):
        raise ctx.error(p, f"expected host:port or false, found {describe(value)}; {example}")
    host, sep, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ctx.error(p, f"{value!r} is not host:port; {example}")
    return host, int(port)


def _proxy_url(ctx: SourceMap, value: object, p: KeyPath) -> ProxyURL | None:
    """ngrok's `proxy_url` (http://, https:// or socks5://, optional user:password@)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ctx.error(
            p, f"expected a proxy URL such as http://host:3128, found {describe(value)}"
        )
    try:
        return parse_proxy_url(value)
    except ProxyURLError as exc:
        raise ctx.error(p, str(exc)) from None


def _inspect_db_size(ctx: SourceMap, value: object, p: KeyPath) -> int:
    if type(value) is not int or value < -1:
        raise ctx.error(
            (*p, "inspect_db_size"),
            f"expected a whole number of bytes (0 for the default, -1 for off), found "
            f"{describe(value)}",
        )
    return value


_ENDPOINT_KEYS = (
    "name",
    "url",
    "upstream",
    "traffic_policy",
    "traffic_policy_file",
    "pooling_enabled",
    "bindings",
    "description",
    "metadata",
    "agent_tls_termination",
    "inspect",
)
_ENDPOINT_HINTS = {
    "addr": "v3 endpoints spell it upstream.url",
    "proto": "v3 endpoints put the scheme in url, e.g. url: tcp://",
    "domain": "v3 endpoints put the host in url, e.g. url: https://app.example.com",
    "hostname": "v3 endpoints put the host in url, e.g. url: https://app.example.com",
    "subdomain": "v3 endpoints put the host in url, e.g. url: https://app.example.com",
    "remote_addr": "v3 endpoints put the address in url, e.g. url: tcp://host:12345",
    "policy": "v3 endpoints spell it traffic_policy",
}
_UPSTREAM_KEYS = ("url", "protocol", "proxy_protocol", "tls_verify", "tls_verify_cas")
_TLS_KEYS = (
    "server_certificate",
    "server_private_key",
    "mutual_tls_certificate_authorities",
    "alpn_protocols",
)


def _endpoints(ctx: SourceMap, value: object) -> tuple[EndpointSettings, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ctx.error(("endpoints",), f"expected a list of endpoints, found {describe(value)}")
    endpoints = [_endpoint(ctx, item, ("endpoints", index)) for index, item in enumerate(value)]
    first_by_name: dict[str, int] = {}
    for index, endpoint in enumerate(endpoints):
        if endpoint.name in first_by_name:
            raise ctx.error(
                ("endpoints", index, "name"),
                f"{endpoint.name!r} is already the name of "
                f"endpoints[{first_by_name[endpoint.name]}]; endpoint names must be unique",
            )
        first_by_name[endpoint.name] = index
    return tuple(endpoints)


def _endpoint(ctx: SourceMap, value: object, p: KeyPath) -> EndpointSettings:
    data = read_mapping(ctx, value, p)
    check_keys(ctx, data, p, _ENDPOINT_KEYS, _ENDPOINT_HINTS)
    name = read_str(ctx, data, p, "name", "")
    if not name.strip():
        raise ctx.error((*p, "name"), "missing or empty; every endpoint needs a unique name")
    try:
        url = parse_endpoint_url(read_str(ctx, data, p, "url", ""))
    except URLError as exc:
        raise ctx.error((*p, "url"), str(exc), exc.code) from None
    bindings = read_str_list(ctx, data, p, "bindings")
    if bindings is not None and len(bindings) != 1:
        raise ctx.error((*p, "bindings"), "must list exactly one of public, internal or kubernetes")
    binding = bindings[0] if bindings else infer_binding(url)
    try:
        validate_endpoint_url(url, binding=binding)
    except URLError as exc:
        key = "bindings" if exc.code == "ERR_NGROK_15005" else "url"
        raise ctx.error((*p, key), str(exc), exc.code) from None
    upstream = _upstream(ctx, data.get("upstream"), (*p, "upstream"), url)
    raw_policy = data.get("traffic_policy")
    policy = None
    if raw_policy is not None:
        policy = _traffic_policy(ctx, raw_policy, (*p, "traffic_policy"))
    policy_file = read_str(ctx, data, p, "traffic_policy_file", "") or None
    if policy_file is not None:
        if policy is not None:
            raise ctx.error(
                (*p, "traffic_policy_file"),
                "conflicts with traffic_policy; give the policy inline or in a file, not both",
            )
        policy_file = ctx.resolve_file((*p, "traffic_policy_file"), policy_file)
        problem = read_policy_file(policy_file)
        if problem is not None:
            raise ctx.error((*p, "traffic_policy_file"), f"{policy_file}: {problem}")
    termination = None
    if data.get("agent_tls_termination") is not None:
        if url.scheme != "tls":
            raise ctx.error(
                (*p, "agent_tls_termination"),
                f"only tls:// endpoints can terminate TLS at the agent, and url is {url}; "
                "change url to tls://... or remove this section",
            )
        termination = _tls_termination(ctx, data["agent_tls_termination"], p)
        if upstream.target.scheme == "tls":
            raise ctx.error(
                (*p, "upstream", "url"),
                f"{upstream.target} asks for TLS to the upstream, but agent_tls_termination "
                "sends it the decrypted bytes; write the upstream as host:port or tcp://",
            )
    for key in ("description", "metadata"):
        check_length(ctx, (*p, key), read_str(ctx, data, p, key, ""), MAX_METADATA_LENGTH)
    return EndpointSettings(
        name=name,
        url=str(url),
        upstream=upstream,
        pooling_enabled=read_bool(ctx, data, p, "pooling_enabled", False),
        description=read_str(ctx, data, p, "description", ""),
        metadata=read_str(ctx, data, p, "metadata", ""),
        bindings=(binding,),
        traffic_policy=policy,
        traffic_policy_file=policy_file,
        agent_tls_termination=termination,
        inspect=read_bool(ctx, data, p, "inspect", True),
        endpoint_url=url,
    )


def _upstream(ctx: SourceMap, value: object, p: KeyPath, url: EndpointURL) -> UpstreamSettings:
    if value is None:
        raise ctx.error(p, "missing; add `upstream: {url: 8080}` (where to forward traffic)")
    data = read_mapping(ctx, value, p)
    check_keys(ctx, data, p, _UPSTREAM_KEYS)
    raw = data.get("url")
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)  # `url: 8080` is a YAML number
    if raw is None:
        raise ctx.error((*p, "url"), "missing; give a port (8080), host:port or a URL")
    if not isinstance(raw, str):
        raise ctx.error((*p, "url"), f"expected a port, host:port or URL, found {describe(raw)}")
    try:
        target = parse_upstream_url(raw, endpoint_scheme=url.scheme)
    except URLError as exc:
        raise ctx.error((*p, "url"), str(exc), exc.code) from None
    protocol = read_str(ctx, data, p, "protocol", "") or None
    if protocol is not None:
        if protocol not in ("http1", "http2"):
            raise ctx.error((*p, "protocol"), f"{protocol!r} is not http1 or http2")
        if url.scheme not in ("http", "https"):
            raise ctx.error(
                (*p, "protocol"),
                f"only http and https endpoints have an upstream protocol, and url is {url}; "
                "remove it",
            )
        if protocol == "http2":
            raise ctx.error(
                (*p, "protocol"),
                "http2 to the upstream is not supported yet by the Burrow agent; use http1 "
                "(or leave protocol out)",
            )
    proxy = data.get("proxy_protocol")
    if proxy in ("", None):
        proxy_protocol = None
    elif proxy in (1, 2, "1", "2") and not isinstance(proxy, bool):
        proxy_protocol = int(str(proxy))
    else:
        raise ctx.error((*p, "proxy_protocol"), f"expected 1 or 2, found {describe(proxy)}")
    tls_verify, tls_verify_cas = _upstream_tls(ctx, data, p, url, target)
    return UpstreamSettings(
        url=str(target),
        protocol=protocol,
        proxy_protocol=proxy_protocol,
        target=target,
        tls_verify=tls_verify,
        tls_verify_cas=tls_verify_cas,
    )


def _upstream_tls(
    ctx: SourceMap, data: Mapping[str, object], p: KeyPath, url: EndpointURL, target: UpstreamURL
) -> tuple[bool, str | None]:
    """`tls_verify` and `tls_verify_cas` (Burrow extensions): only for an https:// upstream of
    an http(s) endpoint; the CA file is loaded here so a bad one fails `config check`."""
    for key in ("tls_verify", "tls_verify_cas"):
        if data.get(key) is not None and (
            url.scheme not in ("http", "https") or target.scheme != "https"
        ):
            raise ctx.error(
                (*p, key),
                f"applies only to an https:// upstream of an http or https endpoint, and this "
                f"is {target} for {url}; remove it",
            )
    verify = read_bool(ctx, data, p, "tls_verify", True)
    cas = read_str(ctx, data, p, "tls_verify_cas", "") or None
    if cas is None:
        return verify, None
    if not verify:
        raise ctx.error(
            (*p, "tls_verify_cas"),
            "has no effect with tls_verify: false (nothing is verified); remove one of them",
        )
    cas = ctx.resolve_file((*p, "tls_verify_cas"), cas)
    try:
        upstream_context(verify=verify, cas=cas)
    except TLSMaterialError as exc:
        raise ctx.error((*p, "tls_verify_cas"), str(exc)) from None
    return verify, cas


def _tls_termination(ctx: SourceMap, value: object, endpoint: KeyPath) -> AgentTLSTermination:
    p = (*endpoint, "agent_tls_termination")
    data = read_mapping(ctx, value, p)
    check_keys(ctx, data, p, _TLS_KEYS)

    def pem(path: KeyPath, text: str) -> str:
        return text if text.lstrip().startswith("-----BEGIN") else ctx.resolve_file(path, text)

    found = {}
    for key in ("server_certificate", "server_private_key"):
        text = read_str(ctx, data, p, key, "")
        if not text:
            raise ctx.error((*p, key), "missing; give a PEM file path or inline PEM")
        found[key] = pem((*p, key), text)
    cas = read_str_list(ctx, data, p, "mutual_tls_certificate_authorities") or ()
    termination = AgentTLSTermination(
        server_certificate=found["server_certificate"],
        server_private_key=found["server_private_key"],
        mutual_tls_certificate_authorities=tuple(
            pem((*p, "mutual_tls_certificate_authorities", i), ca) for i, ca in enumerate(cas)
        ),
        alpn_protocols=tuple(read_str_list(ctx, data, p, "alpn_protocols") or ()),
    )
    try:  # load it now, so that `config check` reports a bad PEM rather than the first client
        termination_context(
            termination.server_certificate,
            termination.server_private_key,
            termination.mutual_tls_certificate_authorities,
            alpn=termination.alpn_protocols,
        )
    except TLSMaterialError as exc:
        where: KeyPath = (*p, exc.field) if exc.index is None else (*p, exc.field, exc.index)
        raise ctx.error(where, str(exc)) from None
    return termination
