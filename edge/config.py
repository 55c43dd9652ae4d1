"""The edge's config file: YAML loaded once into frozen dataclasses, validated at load.

Every key is optional; a missing key, a `null` value, an empty file and no file at all mean the
default. Unknown keys and wrong types are errors that name the file, the line, the full key path
(`listen.agents`) and what to write instead. `deploy/edge.example.yml` shows every key with its
default.

The value parsers (`parse_duration`, `parse_size`, `parse_hostport`, `parse_port_range`) are
public: they take the text a person writes and raise `ValueError` with a message fit to show.
Durations and sizes are `protocol.units`' grammar, shared with the agent's file; here a bare
number of seconds is a duration.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import NoReturn, TypeVar

from protocol import units
from protocol.units import KiB, MiB, parse_size
from protocol.yamldoc import (
    DuplicateKeyError,
    NonStringKeyError,
    YAMLDocumentError,
    YAMLSyntaxError,
    format_key_path,
    read_yaml,
)

__all__ = [
    "AdminConfig",
    "ConfigError",
    "EdgeConfig",
    "HeartbeatConfig",
    "LimitsConfig",
    "ListenConfig",
    "TcpConfig",
    "TlsConfig",
    "load_edge_config",
    "parse_duration",
    "parse_host",
    "parse_hostname",
    "parse_hostport",
    "parse_port_range",
    "parse_size",
]

T = TypeVar("T")

# muxado gives every stream an implicit 256 KiB receive window before any WNDINC, so a receiver
# must be able to hold at least that much per stream (reference/ngrok.md §8.3).
MUXADO_INITIAL_WINDOW = 256 * KiB


@dataclass(frozen=True, kw_only=True)
class ListenConfig:
    # The TLS listener agents dial. Loopback by default, so a first run exposes nothing; port 0
    # picks a free port (tests, demos).
    agents: tuple[str, int] = ("127.0.0.1", 8443)


@dataclass(frozen=True, kw_only=True)
class TcpConfig:
    # Where tcp:// endpoint listeners bind: loopback by default, like every other listener.
    bind_host: str = "127.0.0.1"
    # The host named in tcp:// URLs; empty means the edge's domain (filled in at construction).
    public_host: str = ""
    # Ports handed out for tcp:// endpoints: a thousand, clear of the usual service ports and
    # below Linux's ephemeral range (32768+) so outgoing connections never take them.
    port_range: range = range(20000, 21000)


@dataclass(frozen=True, kw_only=True)
class TlsConfig:
    # A static certificate chain and key (PEM paths) for the agent listener; None for both means
    # certificates come from the development CA. Relative paths in the file are relative to it.
    cert: Path | None = None
    key: Path | None = None


@dataclass(frozen=True, kw_only=True)
class AdminConfig:
    # The admin REST API (ngrok's /credentials, /service_users, ... shapes). On by default so a
    # first run can be managed with ngrok's API clients; off leaves only the offline CLI.
    enabled: bool = True
    # Loopback by default: the API manages every credential, so exposing it is a deliberate act.
    # 4041 sits next to the ngrok agent's local API port (4040). Port 0 picks a free port.
    listen: tuple[str, int] = ("127.0.0.1", 4041)
    # A certificate chain and key (PEM paths) to serve the API over HTTPS; None for both means
    # plain HTTP, which is what a loopback listener needs.
    tls: TlsConfig = field(default_factory=TlsConfig)


@dataclass(frozen=True, kw_only=True)
class HeartbeatConfig:
    # Seconds between heartbeats on an idle session: ngrok's agent default, so ngrok peers and
    # Burrow agents behave alike.
    interval: float = 10.0
    # Seconds without a heartbeat reply before the session is declared dead: ngrok's default,
    # one and a half intervals, so one late reply is not fatal.
    tolerance: float = 15.0


@dataclass(frozen=True, kw_only=True)
class LimitsConfig:
    # Open streams per agent session: every stream holds buffers, so this bounds one agent's
    # share of memory; 4096 is far above what one agent's public traffic needs at once.
    max_streams_per_session: int = 4096
    # Peer-opened streams queued before the edge accepts them; beyond it new streams are reset
    # instead of queued without bound.
    accept_backlog: int = 256
    # Receive memory one session may hold across all its streams: the bound that keeps a slow
    # reader from growing the edge's memory (64 MiB x 100 sessions fits a small VM).
    session_buffer_bytes: int = 64 * MiB
    # The largest receive window one stream is auto-tuned up to: 16 MiB fills about 1.3 Gbit/s
    # at 100 ms RTT, enough for one stream without letting it take the whole session budget.
    stream_window_max: int = 16 * MiB
    # Endpoints one agent session may bind: ngrok's limit for most plans, and a bound on what one
    # agent can add to the routing table.
    max_endpoints_per_session: int = 100
    # Seconds an agent has to send Auth after its TLS handshake; a connection that never
    # authenticates would otherwise hold a socket and a task for ever.
    auth_timeout: float = 10.0


@dataclass(frozen=True, kw_only=True)
class EdgeConfig:
    # Public names live under this domain; `.localhost` resolves to loopback (RFC 6761), so a
    # first run needs no DNS.
    domain: str = "burrow.localhost"
    # The TLS server name agents dial; empty means connect.<domain> (filled in at construction).
    connect_host: str = ""
    listen: ListenConfig = field(default_factory=ListenConfig)
    tcp: TcpConfig = field(default_factory=TcpConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)
    heartbeat: HeartbeatConfig = field(default_factory=HeartbeatConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)

    def __post_init__(self) -> None:
        # Resolve the names that default to something under `domain`, so every EdgeConfig holds
        # concrete values however it was made.
        if not self.connect_host:
            object.__setattr__(self, "connect_host", f"connect.{self.domain}")
        if not self.tcp.public_host:
            object.__setattr__(self, "tcp", replace(self.tcp, public_host=self.domain))


class ConfigError(Exception):
    """The edge config file is wrong; the message names the file, line and key, and the fix."""

    def __init__(
        self, message: str, *, file: Path | None = None, key: str = "", line: int | None = None
    ) -> None:
        super().__init__(message)
        self.file = file
        self.key = key
        self.line = line


# ---------------------------------------------------------------------------------------------
# Value parsers


_PORT_MAX = 65535
_DNS_NAME_MAX = 253
_LABEL_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


def parse_duration(value: str | float) -> float:
    """Seconds from `250ms`, `10s`, `1m30s`, `2h`, `1.5s`, or a bare number of seconds.

    Raises `ValueError` for anything else, including negative and non-finite numbers, and
    `TypeError` for a bool.
    """
    return units.parse_duration(value, syntax=units.DurationSyntax.SECONDS)


def parse_hostport(value: str) -> tuple[str, int]:
    """`(host, port)` from `127.0.0.1:8443`, `localhost:80` or `[::1]:8443` (port 0..65535).

    The host comes back without brackets. Raises `ValueError` for a missing host or port, an
    IPv6 address without brackets, or a host that is neither an IP address nor a hostname.
    """
    expected = "expected host:port like 127.0.0.1:8443 or [::1]:8443"
    if value.startswith("["):
        end = value.find("]")
        if end == -1 or value[end + 1 : end + 2] != ":":
            raise ValueError(f"{expected}, got {value!r}")
        host, port_text = value[1:end], value[end + 2 :]
        try:
            host = str(ipaddress.IPv6Address(host))
        except ValueError:
            raise ValueError(f"{host!r} in {value!r} is not an IPv6 address") from None
    else:
        host, separator, port_text = value.rpartition(":")
        if not separator:
            raise ValueError(f"{expected}, got {value!r} (no port)")
        if ":" in host:
            raise ValueError(f"write an IPv6 address in brackets, like [::1]:8443, not {value!r}")
        if not host:
            raise ValueError(
                f"{expected}, got {value!r} (no host; use 0.0.0.0 or [::] for all interfaces)"
            )
        host = parse_host(host)
    return host, _parse_port(port_text, value, minimum=0)


def parse_port_range(value: str | int) -> range:
    """The ports from `20000-20999` (both ends included), or one port; all within 1..65535.

    Raises `ValueError` for anything else or for a range whose low end is above its high end,
    and `TypeError` for a bool.
    """
    expected = "expected a port range like 20000-20999"
    if isinstance(value, bool):
        raise TypeError(f"{expected}, got {value!r}")
    low_text, dash, high_text = str(value).partition("-")
    if not dash:
        high_text = low_text
    low = _parse_port(low_text.strip(), str(value), minimum=1)
    high = _parse_port(high_text.strip(), str(value), minimum=1)
    if low > high:
        raise ValueError(f"port range {value!r} runs backwards; write the low port first")
    return range(low, high + 1)


def parse_host(value: str) -> str:
    """An IP address (normalised) or a DNS hostname (lower-cased); `ValueError` otherwise."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    return parse_hostname(value)


def parse_hostname(value: str) -> str:
    """A DNS hostname, lower-cased, without a trailing dot; `ValueError` otherwise."""
    name = value.lower().removesuffix(".")
    if (
        not value.isascii()
        or not name
        or len(name) > _DNS_NAME_MAX
        or not all(_LABEL_RE.fullmatch(label) for label in name.split("."))
    ):
        raise ValueError(
            f"{value!r} is not a hostname: use letters, digits and hyphens in dot-separated "
            "labels (punycode for international names)"
        )
    return name


def _parse_port(text: str, whole: str, *, minimum: int) -> int:
    if not text.isascii() or not text.isdigit() or not minimum <= int(text) <= _PORT_MAX:
        raise ValueError(f"port {text!r} in {whole!r} must be a number from {minimum} to 65535")
    return int(text)


# ---------------------------------------------------------------------------------------------
# Loading


def load_edge_config(path: Path | None) -> EdgeConfig:
    """Load and validate the edge config file at `path`; None means every default.

    An empty file (or one holding only comments) also means every default. Raises
    `ConfigError` naming the file, line and key path for anything wrong.
    """
    if path is None:
        return EdgeConfig()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such file; create it (deploy/edge.example.yml shows every key) or run "
            "without a config file to use the defaults",
            file=path,
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc}", file=path) from exc
    try:
        document = read_yaml(text)
    except YAMLDocumentError as exc:
        raise _yaml_error(path, exc) from None
    if document is None or document.value is None:
        return EdgeConfig()
    lines = {format_key_path(key_path): line for key_path, line in document.lines.items()}
    return _Loader(path, lines).edge(document.value)


def _yaml_error(path: Path, exc: YAMLDocumentError) -> ConfigError:
    where = str(path) if exc.line is None else f"{path}:{exc.line}"
    if isinstance(exc, DuplicateKeyError):
        key = format_key_path(exc.path)
        return ConfigError(
            f"{where}: {key}: duplicate key (first set on line {exc.first_line}); keep one of them",
            file=path,
            key=key,
            line=exc.line,
        )
    if isinstance(exc, NonStringKeyError):
        key = format_key_path(exc.path)
        subject = f"{where}: {key}" if key else where
        problem = f"keys must be strings, got {_describe(exc.key)}"
        return ConfigError(f"{subject}: {problem}", file=path, key=key, line=exc.line)
    fix = "; fix the syntax at that line" if isinstance(exc, YAMLSyntaxError) and exc.line else ""
    return ConfigError(
        f"{where}: the file is not valid YAML: {exc.problem}{fix}", file=path, line=exc.line
    )


_TYPE_NAMES: dict[type, str] = {
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    list: "a list",
    dict: "a mapping",
    type(None): "null",
}


def _describe(value: object) -> str:
    name = _TYPE_NAMES.get(type(value), type(value).__name__)
    if isinstance(value, dict | list):
        return name
    return f"{name} ({value!r})"


class _Loader:
    """Turns the parsed document into an `EdgeConfig`, raising `ConfigError` at the first fault.

    Key paths are written out in full (`limits.auth_timeout`); a section is read by the last
    part of the path. Absent and null values mean the default.
    """

    def __init__(self, path: Path, lines: dict[str, int]) -> None:
        self._path = path
        self._lines = lines

    def edge(self, data: object) -> EdgeConfig:
        top = self._mapping("", data, EdgeConfig)
        domain = self._text(top, "domain", parse_hostname, "a hostname like burrow.localhost")
        connect_host = self._text(
            top, "connect_host", parse_hostname, "a hostname", empty_is_default=True
        )
        return EdgeConfig(
            domain=domain or EdgeConfig.domain,
            connect_host=connect_host or "",
            listen=self._listen(top.get("listen")),
            tcp=self._tcp(top.get("tcp")),
            tls=self._tls(top.get("tls")),
            heartbeat=self._heartbeat(top.get("heartbeat")),
            limits=self._limits(top.get("limits")),
            admin=self._admin(top.get("admin")),
        )

    def _listen(self, data: object) -> ListenConfig:
        section = self._mapping("listen", data, ListenConfig)
        agents = self._text(
            section,
            "listen.agents",
            parse_hostport,
            'host:port like 127.0.0.1:8443 (quote IPv6 addresses: "[::1]:8443")',
        )
        return ListenConfig() if agents is None else ListenConfig(agents=agents)

    def _tcp(self, data: object) -> TcpConfig:
        section = self._mapping("tcp", data, TcpConfig)
        default = TcpConfig()
        host = "an IP address or hostname"
        bind_host = self._text(section, "tcp.bind_host", parse_host, host)
        public_host = self._text(
            section, "tcp.public_host", parse_host, host, empty_is_default=True
        )
        port_range = section.get("port_range")
        if port_range is not None:
            if not isinstance(port_range, str | int) or isinstance(port_range, bool):
                self._fail(
                    "tcp.port_range",
                    f"expected a port range like 20000-20999, got {_describe(port_range)}",
                )
            try:
                ports = parse_port_range(port_range)
            except ValueError as exc:
                self._fail("tcp.port_range", str(exc))
        return TcpConfig(
            bind_host=bind_host or default.bind_host,
            public_host=public_host or "",
            port_range=default.port_range if port_range is None else ports,
        )

    def _tls(
        self, data: object, key_path: str = "tls", neither: str = "to use the development CA"
    ) -> TlsConfig:
        section = self._mapping(key_path, data, TlsConfig)
        cert = self._file(section, f"{key_path}.cert")
        key = self._file(section, f"{key_path}.key")
        if (cert is None) != (key is None):
            given, missing = (f"{key_path}.cert", f"{key_path}.key")
            if key is not None:
                given, missing = missing, given
            self._fail(
                given,
                f"{given} is set but {missing} is not; set both (a PEM certificate chain and "
                f"its key), or neither {neither}",
            )
        return TlsConfig(cert=cert, key=key)

    def _admin(self, data: object) -> AdminConfig:
        section = self._mapping("admin", data, AdminConfig)
        default = AdminConfig()
        enabled = section.get("enabled")
        if enabled is not None and not isinstance(enabled, bool):
            self._fail("admin.enabled", f"expected true or false, got {_describe(enabled)}")
        listen = self._text(
            section,
            "admin.listen",
            parse_hostport,
            'host:port like 127.0.0.1:4041 (quote IPv6 addresses: "[::1]:4041")',
        )
        return AdminConfig(
            enabled=default.enabled if enabled is None else enabled,
            listen=listen or default.listen,
            tls=self._tls(section.get("tls"), "admin.tls", "to serve plain HTTP"),
        )

    def _heartbeat(self, data: object) -> HeartbeatConfig:
        section = self._mapping("heartbeat", data, HeartbeatConfig)
        default = HeartbeatConfig()
        return HeartbeatConfig(
            interval=self._duration(section, "heartbeat.interval", default.interval),
            tolerance=self._duration(section, "heartbeat.tolerance", default.tolerance),
        )

    def _limits(self, data: object) -> LimitsConfig:
        section = self._mapping("limits", data, LimitsConfig)
        default = LimitsConfig()
        limits = LimitsConfig(
            max_streams_per_session=self._count(
                section, "limits.max_streams_per_session", default.max_streams_per_session
            ),
            accept_backlog=self._count(section, "limits.accept_backlog", default.accept_backlog),
            session_buffer_bytes=self._size(
                section, "limits.session_buffer_bytes", default.session_buffer_bytes
            ),
            stream_window_max=self._size(
                section, "limits.stream_window_max", default.stream_window_max
            ),
            max_endpoints_per_session=self._count(
                section, "limits.max_endpoints_per_session", default.max_endpoints_per_session
            ),
            auth_timeout=self._duration(section, "limits.auth_timeout", default.auth_timeout),
        )
        if limits.stream_window_max < MUXADO_INITIAL_WINDOW:
            self._fail(
                "limits.stream_window_max",
                f"{limits.stream_window_max} bytes is below muxado's initial stream window of "
                "256KiB; set it to at least 256KiB",
            )
        if limits.stream_window_max > limits.session_buffer_bytes:
            self._fail(
                "limits.stream_window_max",
                f"{limits.stream_window_max} bytes is more than limits.session_buffer_bytes "
                f"({limits.session_buffer_bytes} bytes); lower it or raise "
                "limits.session_buffer_bytes",
            )
        return limits

    def _mapping(self, key: str, data: object, schema: type) -> dict[str, object]:
        """The keys of one section, after checking that each is known to `schema`."""
        if data is None:
            return {}
        if not isinstance(data, dict):
            if not key:
                self._fail("", f"the file must hold a mapping of keys, not {_describe(data)}")
            self._fail(key, f"expected a mapping of keys, got {_describe(data)}")
        known = [f.name for f in fields(schema)]
        prefix = f"{key}." if key else ""
        for name in data:  # read_yaml has checked that every key is a string
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f"did you mean {prefix}{close[0]}?" if close else "remove it"
                self._fail(
                    prefix + name,
                    f"unknown key; {hint} (keys here: {', '.join(prefix + k for k in known)})",
                )
        return data

    def _text(
        self,
        section: dict[str, object],
        key: str,
        parse: Callable[[str], T],
        expected: str,
        *,
        empty_is_default: bool = False,
    ) -> T | None:
        value = section.get(key.rpartition(".")[2])
        if value is None or (empty_is_default and value == ""):
            return None
        if not isinstance(value, str):
            self._fail(key, f"expected {expected}, got {_describe(value)}")
        try:
            return parse(value)
        except ValueError as exc:
            self._fail(key, str(exc))

    def _file(self, section: dict[str, object], key: str) -> Path | None:
        value = section.get(key.rpartition(".")[2])
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            self._fail(key, f"expected a file path, got {_describe(value)}")
        path = (self._path.parent / value).absolute()
        if not path.is_file():
            self._fail(
                key,
                f"{path} does not exist or is not a file; fix the path (relative paths start "
                "from the config file's directory) or remove the key",
            )
        return path

    def _duration(self, section: dict[str, object], key: str, default: float) -> float:
        value = section.get(key.rpartition(".")[2])
        if value is None:
            return default
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            self._fail(key, f"expected a duration like 10s, got {_describe(value)}")
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            self._fail(key, str(exc))
        if seconds <= 0:
            self._fail(key, f"must be longer than zero, got {value!r}")
        return seconds

    def _count(self, section: dict[str, object], key: str, default: int) -> int:
        value = section.get(key.rpartition(".")[2])
        if value is None:
            return default
        if not isinstance(value, int) or isinstance(value, bool):
            self._fail(key, f"expected an integer, got {_describe(value)}")
        if value < 1:
            self._fail(key, f"must be at least 1, got {value}")
        return value

    def _size(self, section: dict[str, object], key: str, default: int) -> int:
        value = section.get(key.rpartition(".")[2])
        if value is None:
            return default
        if not isinstance(value, str | int) or isinstance(value, bool):
            self._fail(
                key, f"expected a size like 64MiB or a number of bytes, got {_describe(value)}"
            )
        try:
            size = parse_size(value)
        except ValueError as exc:
            self._fail(key, str(exc))
        if size < 1:
            self._fail(key, f"must be at least 1 byte, got {value!r}")
        return size

    def _fail(self, key: str, problem: str) -> NoReturn:
        line = self._lines.get(key)
        where = str(self._path) if line is None else f"{self._path}:{line}"
        subject = f"{where}: {key}" if key else where
        raise ConfigError(f"{subject}: {problem}", file=self._path, key=key, line=line)
