"""Loading the agent's configuration: ngrok's v3 files, merged, validated once into
`agent.config`'s frozen dataclasses.

Theory of operation: `agent.config_source` reads the files, merges them left to right as ngrok
does and puts the `BURROW_*` environment overrides on top, remembering where every key path came
from; only then is the result validated, here and in `agent.config_endpoints`, so an error can
say

    /etc/burrow/burrow.yml:7: endpoints[1].upstream.urll: unknown key; did you mean url?

The typed readers that produce those messages are `agent.config_values`. This module checks the
file's `version` and top-level keys and reads the `agent:` section; `agent.config_endpoints`
reads `endpoints:` (and `agent.legacy_tunnels` the deprecated `tunnels:`).

Unknown keys are errors, as in ngrok 3.x. `agent:` keys that ngrok documents but Burrow does not
act on (`update_check`, `dns_resolver_ips`, ...) are type-checked and kept in
`AgentSettings.ngrok_options`, so ngrok users' files load unchanged. Relative paths in a file
are relative to that file's directory (the agent often runs as a service whose working
directory is `/`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from agent.config import (
    DEFAULT_CONNECT_URL,
    DEFAULT_WEB_ADDR,
    MAX_METADATA_LENGTH,
    AgentConfig,
    AgentSettings,
    Secret,
    validate_connect_url,
)
from agent.config_endpoints import read_endpoint, read_endpoints
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
)
from agent.legacy_tunnels import with_legacy_tunnels
from agent.proxy_url import ProxyURL, ProxyURLError, parse_proxy_url
from protocol.formats.yamldoc import KeyPath

__all__ = ["NOT_SUPPORTED_YET", "load_config"]


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
    endpoints = read_endpoints(ctx, merged.get("endpoints"))
    # ngrok's deprecated tunnels: map, read as more endpoints (agent.legacy_tunnels), noted.
    endpoints, tunnel_notes = with_legacy_tunnels(
        ctx, merged.get("tunnels"), endpoints, read_endpoint
    )
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
