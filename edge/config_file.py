"""The edge's config file: YAML loaded once into `edge.config`'s frozen dataclasses, validated.

Every key is optional; a missing key, a `null` value, an empty file and no file at all mean the
default. Unknown keys and wrong types are errors that name the file, the line, the full key path
(`listen.tls`) and what to write instead. `deploy/edge.example.yml` shows every key with its
default.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import NoReturn, TypeVar

from edge.config import (
    MIN_HTTP_HEAD,
    MUXADO_INITIAL_WINDOW,
    AdminConfig,
    CertificateFiles,
    CertificatesConfig,
    EdgeConfig,
    HeartbeatConfig,
    HttpConfig,
    JwksConfig,
    LimitsConfig,
    ListenConfig,
    TcpConfig,
    TlsConfig,
)
from edge.config_values import (
    parse_duration,
    parse_host,
    parse_hostname,
    parse_hostport,
    parse_port_range,
    parse_size,
)
from protocol.formats.yamldoc import (
    DuplicateKeyError,
    NonStringKeyError,
    YAMLDocumentError,
    YAMLSyntaxError,
    format_key_path,
    read_yaml,
)

__all__ = ["ConfigError", "load_edge_config"]

T = TypeVar("T")


class ConfigError(Exception):
    """The edge config file is wrong; the message names the file, line and key, and the fix."""

    def __init__(
        self, message: str, *, file: Path | None = None, key: str = "", line: int | None = None
    ) -> None:
        super().__init__(message)
        self.file = file
        self.key = key
        self.line = line


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
            certificates=self._certificates(top.get("certificates")),
            http=self._http(top.get("http")),
            heartbeat=self._heartbeat(top.get("heartbeat")),
            limits=self._limits(top.get("limits")),
            admin=self._admin(top.get("admin")),
            jwks=self._jwks(top.get("jwks")),
        )

    def _listen(self, data: object) -> ListenConfig:
        section = self._mapping("listen", data, ListenConfig)
        default = ListenConfig()
        tls = self._text(
            section,
            "listen.tls",
            parse_hostport,
            'host:port like 127.0.0.1:8443 (quote IPv6 addresses: "[::1]:8443")',
        )
        http: tuple[str, int] | None = default.http
        if section.get("http") is False or section.get("http") == "":
            http = None  # `http: false` or `http: ""` turns the port off
        else:
            http = (
                self._text(
                    section,
                    "listen.http",
                    parse_hostport,
                    "host:port like 127.0.0.1:8080, or false to serve no plain HTTP",
                )
                or default.http
            )
        return ListenConfig(tls=tls or default.tls, http=http)

    def _certificates(self, data: object) -> CertificatesConfig:
        section = self._mapping("certificates", data, CertificatesConfig)
        default = CertificatesConfig()
        files_value = section.get("files")
        files: list[CertificateFiles] = []
        if files_value is not None:
            if not isinstance(files_value, list):
                self._fail(
                    "certificates.files",
                    f"expected a list of {{cert: PATH, key: PATH}}, got {_describe(files_value)}",
                )
            for index, item in enumerate(files_value):
                where = f"certificates.files[{index}]"
                entry = self._mapping(where, item, CertificateFiles)
                cert = self._file(entry, f"{where}.cert")
                key = self._file(entry, f"{where}.key")
                if cert is None or key is None:
                    self._fail(where, "needs both cert and key (PEM file paths)")
                files.append(CertificateFiles(cert=cert, key=key))
        return CertificatesConfig(
            files=tuple(files),
            development_ca=self._flag(
                section, "certificates.development_ca", default.development_ca
            ),
            cache_size=self._count(section, "certificates.cache_size", default.cache_size),
            reload_interval=self._duration(
                section, "certificates.reload_interval", default.reload_interval
            ),
        )

    def _http(self, data: object) -> HttpConfig:
        section = self._mapping("http", data, HttpConfig)
        default = HttpConfig()
        limits = HttpConfig(
            max_head_size=self._size(section, "http.max_head_size", default.max_head_size),
            head_timeout=self._duration(section, "http.head_timeout", default.head_timeout),
            idle_timeout=self._duration(section, "http.idle_timeout", default.idle_timeout),
            keepalive_timeout=self._duration(
                section, "http.keepalive_timeout", default.keepalive_timeout
            ),
            http2=self._flag(section, "http.http2", default.http2),
            body_min_rate=self._size(section, "http.body_min_rate", default.body_min_rate),
            body_rate_window=self._duration(
                section, "http.body_rate_window", default.body_rate_window
            ),
            body_timeout=self._duration(section, "http.body_timeout", default.body_timeout),
            max_headers=self._count(section, "http.max_headers", default.max_headers),
            replace_x_forwarded_host=self._flag(
                section, "http.replace_x_forwarded_host", default.replace_x_forwarded_host
            ),
            h2_flood_window=self._duration(
                section, "http.h2_flood_window", default.h2_flood_window
            ),
            h2_max_resets_per_window=self._count(
                section, "http.h2_max_resets_per_window", default.h2_max_resets_per_window
            ),
            h2_max_control_frames_per_window=self._count(
                section,
                "http.h2_max_control_frames_per_window",
                default.h2_max_control_frames_per_window,
            ),
            max_buffered_body=self._size(
                section, "http.max_buffered_body", default.max_buffered_body
            ),
            max_buffered_response_body=self._size(
                section, "http.max_buffered_response_body", default.max_buffered_response_body
            ),
        )
        if limits.max_head_size < MIN_HTTP_HEAD:
            self._fail(
                "http.max_head_size",
                f"{limits.max_head_size} bytes cannot hold an ordinary request head; set at "
                "least 1KiB",
            )
        return limits

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
        listen = self._text(
            section,
            "admin.listen",
            parse_hostport,
            'host:port like 127.0.0.1:4041 (quote IPv6 addresses: "[::1]:4041")',
        )
        return AdminConfig(
            enabled=self._flag(section, "admin.enabled", default.enabled),
            listen=listen or default.listen,
            tls=self._tls(section.get("tls"), "admin.tls", "to serve plain HTTP"),
            metrics_require_api_key=self._flag(
                section, "admin.metrics_require_api_key", default.metrics_require_api_key
            ),
            metrics_max_endpoint_labels=self._count(
                section, "admin.metrics_max_endpoint_labels", default.metrics_max_endpoint_labels
            ),
        )

    def _jwks(self, data: object) -> JwksConfig:
        section = self._mapping("jwks", data, JwksConfig)
        default = JwksConfig()
        jwks = JwksConfig(
            fetch_timeout=self._duration(section, "jwks.fetch_timeout", default.fetch_timeout),
            max_bytes=self._size(section, "jwks.max_bytes", default.max_bytes),
            refresh_interval=self._duration(
                section, "jwks.refresh_interval", default.refresh_interval
            ),
            min_refresh=self._duration(section, "jwks.min_refresh", default.min_refresh),
            max_refresh=self._duration(section, "jwks.max_refresh", default.max_refresh),
            retry_interval=self._duration(section, "jwks.retry_interval", default.retry_interval),
            max_stale=self._duration(section, "jwks.max_stale", default.max_stale),
            ca_file=self._file(section, "jwks.ca_file"),
        )
        if not jwks.min_refresh <= jwks.refresh_interval <= jwks.max_refresh:
            self._fail(
                "jwks.refresh_interval",
                f"{jwks.refresh_interval}s is outside jwks.min_refresh ({jwks.min_refresh}s) "
                f"to jwks.max_refresh ({jwks.max_refresh}s); set it between them",
            )
        return jwks

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
            hello_timeout=self._duration(section, "limits.hello_timeout", default.hello_timeout),
            max_public_connections=self._count(
                section, "limits.max_public_connections", default.max_public_connections
            ),
            max_connections_per_address=self._count(
                section,
                "limits.max_connections_per_address",
                default.max_connections_per_address,
            ),
            endpoint_stream_percent=self._count(
                section, "limits.endpoint_stream_percent", default.endpoint_stream_percent
            ),
            auth_failures_per_address=self._count(
                section, "limits.auth_failures_per_address", default.auth_failures_per_address
            ),
            auth_failure_window=self._duration(
                section, "limits.auth_failure_window", default.auth_failure_window
            ),
            auth_failure_addresses=self._count(
                section, "limits.auth_failure_addresses", default.auth_failure_addresses
            ),
            forward_internal_max_hops=self._count(
                section, "limits.forward_internal_max_hops", default.forward_internal_max_hops
            ),
            pool_member_backoff=self._duration(
                section, "limits.pool_member_backoff", default.pool_member_backoff
            ),
            pool_member_backoff_max=self._duration(
                section, "limits.pool_member_backoff_max", default.pool_member_backoff_max
            ),
            drain_timeout=self._duration(section, "limits.drain_timeout", default.drain_timeout),
        )
        if limits.pool_member_backoff > limits.pool_member_backoff_max:
            self._fail(
                "limits.pool_member_backoff",
                f"{limits.pool_member_backoff}s is more than limits.pool_member_backoff_max "
                f"({limits.pool_member_backoff_max}s); lower it or raise the maximum",
            )
        if limits.endpoint_stream_percent > 100:
            self._fail(
                "limits.endpoint_stream_percent",
                f"{limits.endpoint_stream_percent} is more than 100 (percent of "
                "limits.max_streams_per_session); set 1 to 100",
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

    def _flag(self, section: dict[str, object], key: str, default: bool) -> bool:
        value = section.get(key.rpartition(".")[2])
        if value is None:
            return default
        if not isinstance(value, bool):
            self._fail(key, f"expected true or false, got {_describe(value)}")
        return value

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
