"""The edge's config file: YAML loaded once into frozen dataclasses, validated at load.

Every key is optional; a missing key, a `null` value, an empty file and no file at all mean the
default. Unknown keys and wrong types are errors that name the file, the line, the full key path
(`listen.tls`) and what to write instead. `deploy/edge.example.yml` shows every key with its
default.

The value parsers (`parse_duration`, `parse_size`, `parse_hostport`, `parse_port_range`) are
public: they take the text a person writes and raise `ValueError` with a message fit to show.
Durations and sizes are `protocol.formats.units`' grammar, shared with the agent's file; here a bare
number of seconds is a duration.
"""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import NoReturn, TypeVar

from protocol.formats import hostnames, units
from protocol.formats.units import KiB, MiB, parse_size
from protocol.formats.yamldoc import (
    DuplicateKeyError,
    NonStringKeyError,
    YAMLDocumentError,
    YAMLSyntaxError,
    format_key_path,
    read_yaml,
)

__all__ = [
    "AdminConfig",
    "CertificateFiles",
    "CertificatesConfig",
    "ConfigError",
    "EdgeConfig",
    "HeartbeatConfig",
    "HttpConfig",
    "JwksConfig",
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
#: The smallest http.max_head_size accepted: below this an ordinary browser request is refused.
MIN_HTTP_HEAD = 1 * KiB


@dataclass(frozen=True, kw_only=True)
class ListenConfig:
    # The one public TLS port (443 in production): agents (by the connect host's SNI), https://
    # and tls:// endpoints, routed by SNI. Loopback by default, so a first run exposes nothing;
    # port 0 picks a free port (tests, demos).
    tls: tuple[str, int] = ("127.0.0.1", 8443)
    # The plain-HTTP port (80 in production) serving http:// endpoints by Host; None turns it
    # off. 8080 because binding 80 needs privileges a first run should not ask for.
    http: tuple[str, int] | None = ("127.0.0.1", 8080)


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
class CertificateFiles:
    # A PEM certificate chain and its key; the edge serves it for every name in the
    # certificate's subjectAltName, wildcards included.
    cert: Path
    key: Path


@dataclass(frozen=True, kw_only=True)
class CertificatesConfig:
    # Static certificates for https:// endpoint hosts. The most specific match wins: an exact
    # name before a wildcard.
    files: tuple[CertificateFiles, ...] = ()
    # Hosts no file covers get a certificate from the development CA, issued when first
    # served. On by default so a first run needs no setup; turn it off in production so a host
    # without a real certificate fails loudly (unrecognized_name) instead of serving one
    # browsers distrust.
    development_ca: bool = True
    # Issued certificates kept in memory (least recently used go first): issuing one costs
    # about a millisecond of CPU, and every entry holds an SSLContext (~20 KiB).
    cache_size: int = 1024
    # How often the files are checked for changes; a changed file is loaded without a
    # restart (SIGHUP reloads at once).
    reload_interval: float = 5.0


@dataclass(frozen=True, kw_only=True)
class HttpConfig:
    # The most bytes a request or response head (request line or status line plus headers) may
    # take. ngrok allows 1 MB; 64 KiB holds any real browser's cookies while bounding what a
    # slow client can make the edge hold.
    max_head_size: int = 64 * KiB
    # A request head must be complete this soon after its first byte (or after accept, for
    # the first request): slow-loris clients are cut off here. 431/408 pages say why.
    head_timeout: float = 10.0
    # A connection with no bytes moving either way for this long is closed: between
    # keep-alive requests, and inside bodies and upgraded connections. ngrok's value.
    idle_timeout: float = 300.0
    # A keep-alive connection waiting for its next request is closed after this long (within
    # a request or response, and on upgraded connections, `idle_timeout` applies). nginx's
    # keepalive_timeout default: long enough for a reading user's next click to find the
    # connection open, short enough that idle clients do not pile up for `idle_timeout`.
    keepalive_timeout: float = 75.0
    # Offer HTTP/2 (ALPN "h2") on https:// endpoints, as ngrok does; the agent and upstream
    # still get HTTP/1.1. Off until it has soaked: clients then keep HTTP/1.1.
    http2: bool = False
    # A request body must average this many bytes a second, `body_rate_window` seconds of
    # slack aside, or it is cut with a 408 and its agent stream (and upstream connection)
    # released; each byte resetting `idle_timeout` is no bound. Apache's mod_reqtimeout default
    # (body=20,MinRate=500): any real client on any real link is far above it.
    body_min_rate: int = 500
    # The grace a request body gets at its start, and the most slack it can bank by coming
    # fast (so a fast start cannot buy a long trickle): Apache's body=20.
    body_rate_window: float = 20.0
    # A request body must be whole this long after it started, however fast it comes: the
    # longest one upload may hold an upstream connection. An hour carries 1 GiB at 300 KB/s.
    body_timeout: float = 3600.0
    # Header fields one request may carry (HTTP/1.1 lines; HTTP/2 fields, cookie crumbs as one);
    # more get 431. Apache's LimitRequestFields default (HAProxy's tune.http.maxhdr is 101):
    # browsers send 10 to 30, and every field costs a parse and a copy to the upstream.
    max_headers: int = 100
    # Set X-Forwarded-Host to the request's Host, dropping any the client sent. Off by default,
    # as at ngrok: a client's X-Forwarded-Host passes through (so a chain of proxies in front of
    # the edge keeps the original name), which an upstream must then not trust blindly.
    replace_x_forwarded_host: bool = False
    # HTTP/2 flood limits (edge/http/h2/flood.py): frames that cost a client nine bytes and the
    # edge a parse, an answer or a whole exchange are counted per connection in windows of
    # this many seconds; a connection over a limit gets GOAWAY ENHANCE_YOUR_CALM and is closed,
    # as servers patched after CVE-2023-44487 do. 10 s spans a page load and its follow-ups.
    h2_flood_window: float = 10.0
    # Streams a client resets (RST_STREAM) or the edge must refuse (too many open) per window:
    # a browser resets the streams it no longer needs when the user navigates away, at most
    # the 100 a connection may have open each time; 500 is five such navigations in 10 s
    # (Netty allows 200 per 30 s). A rapid-reset flood is cut after costing 500 exchanges.
    h2_max_resets_per_window: int = 500
    # Control frames per window: SETTINGS, PING, PRIORITY, empty DATA, HEADERS that open no
    # stream, unknown frames, and WINDOW_UPDATEs beyond those the edge's DATA frames earn. A
    # browser sends a handful per page (one SETTINGS and its ACK, a few PINGs and PRIORITY
    # frames); 1000 (Jetty allows 128 a second) bounds a flood to a few milliseconds of work.
    h2_max_control_frames_per_window: int = 1000
    # The largest request body the edge reads whole before forwarding it, which it does only
    # for an endpoint whose Traffic Policy has an action that reads the body (verify-webhook,
    # request-body-find-replace); a longer one gets 413 (BURROW_REQUEST_BODY_TOO_LARGE). Each
    # such request holds its body in memory: 10 MiB is far above what Stripe, Slack, Shopify
    # or Twilio send, and above almost every GitHub delivery, while 100 of them at once still
    # fit in 1 GiB. Other endpoints stream bodies of any size and are not affected.
    max_buffered_body: int = 10 * MiB
    # The largest response body response-body-find-replace holds to rewrite it (it needs the
    # whole text: a match may span any two reads); a longer one is sent on unchanged, and the
    # edge logs it (the head has gone out by then, so there is no error to answer with).
    # Same bound and reason as max_buffered_body: an HTML page or a JSON answer fits, 100 at
    # once fit in 1 GiB. compress-response streams and holds no body.
    max_buffered_response_body: int = 10 * MiB


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
    # Whether GET /metrics (Prometheus text) needs an admin API key like the rest of the API.
    # Off by default, as Prometheus scrapers expect: the listener is loopback unless moved, the
    # numbers name no secret, and a scrape config then needs no key that could manage the edge.
    # /healthz and /readyz never need one (probes carry no credentials).
    metrics_require_api_key: bool = False
    # Distinct endpoint URLs that get a label of their own in burrow_edge_http_requests_total;
    # later ones share `other`. Each label value is a series a Prometheus server keeps (a few KB
    # each), and a few thousand endpoints is a large edge.
    metrics_max_endpoint_labels: int = 2000


@dataclass(frozen=True, kw_only=True)
class HeartbeatConfig:
    # Seconds between heartbeats on an idle session: ngrok's agent default, so ngrok peers and
    # Burrow agents behave alike.
    interval: float = 10.0
    # Seconds beyond `interval` that a heartbeat's reply may take: a beat unanswered for
    # interval + tolerance (25 s) ends the session, so a silent peer is dropped 25-35 s after it
    # went silent (protocol.adapters.heartbeat). ngrok's default, one and a half intervals, so
    # one late reply is not fatal.
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
    # Seconds a connection to the public TLS port has to send its ClientHello (the front door
    # must see the SNI before it can route anything); also the bound on a handshake the edge
    # then does itself (https://, and tls:// whose policy runs terminate-tls).
    hello_timeout: float = 10.0
    # Public connections (TLS and HTTP ports together) served at once; the next ones wait in
    # the kernel's backlog, so a flood costs queued sockets rather than tasks and buffers.
    max_public_connections: int = 10_000
    # Public connections one source address (an IPv6 /64) may hold at once; more are closed at
    # accept. A browser opens at most 6 HTTP/1.1 connections per host, so 1000 is over 150
    # browsers busy on one host behind one NAT address, while one attacker who wants to hold a
    # session's 4096 streams needs four times as many.
    max_connections_per_address: int = 1000
    # The share of `max_streams_per_session` (a percentage) one endpoint's public connections
    # may hold: the other endpoints of the same agent keep the rest, so clients of one endpoint
    # cannot take a whole agent offline; beyond it a client gets 503 BURROW_ENDPOINT_AT_CAPACITY.
    endpoint_stream_percent: int = 50
    # Failed agent logins (no, unknown or revoked authtoken) one source address (an IPv6 /64)
    # may make per `auth_failure_window` before further failures are refused as throttled
    # (ERR_NGROK_5001, with when to retry); valid authtokens are never throttled. Enough for an
    # operator fixing a typo or a few agents retrying with a stale token, far too few to guess
    # a 256-bit secret; also each address's audit budget (one event per failure, plus one).
    auth_failures_per_address: int = 10
    # The window those failures are counted over, from an address's first failure; a throttled
    # address is answered with its real reason again when it ends.
    auth_failure_window: float = 60.0
    # Source addresses whose failures are remembered at once (about 200 bytes each, so 10,000
    # is about 2 MB); when full, the least recently failing address is forgotten first.
    auth_failure_addresses: int = 10_000
    # Forwards one request or connection may make with forward-internal (ngrok's
    # ERR_NGROK_3501 "may only forward through MAX endpoints", MAX undocumented); past it the
    # client gets ERR_NGROK_3501. Each forward runs one more policy, so this bounds the work one
    # request can cause; a vendor's public endpoint -> a clinic's internal endpoint is one
    # forward, and 5 leaves room for a few routing layers in between.
    forward_internal_max_hops: int = 5
    # Seconds a pool member is left out after its agent refused a stream or could not reach
    # its upstream (STREAM_REFUSED, ERR_NGROK_8012); each further failure doubles it, up to
    # `pool_member_backoff_max`, and the first connection after it probes the member back in
    # (edge.endpoints.health). One second lets a restarting upstream come back without a pool
    # sending it traffic it would refuse; 30 s bounds how long a recovered member sits idle.
    pool_member_backoff: float = 1.0
    pool_member_backoff_max: float = 30.0
    # Seconds `burrow-edge` gives in-flight connections and streams on SIGTERM before it exits:
    # long enough for ordinary requests to finish, short enough for a service manager's stop
    # timeout (systemd's default is 90 s).
    drain_timeout: float = 10.0


@dataclass(frozen=True, kw_only=True)
class JwksConfig:
    # Fetching the JSON Web Key Sets that Traffic Policy `jwt-validation` actions name
    # (`jws.keys.sources.additional_jkus`), in the background while the policy is attached.
    # Seconds one fetch may take in all (connect, TLS, request, whole body): a JWKS is a few KB
    # that an identity provider serves in well under a second; a URL that hangs costs this
    # once per try, is logged, and never holds up other traffic.
    fetch_timeout: float = 10.0
    # The largest JWKS document read: providers' sets are 1-20 KB (a few RSA keys); 256 KiB
    # leaves room for many keys and bounds what a broken or hostile URL can make the edge hold.
    max_bytes: int = 256 * KiB
    # How long fetched keys are used before they are fetched again when the server sends no
    # Cache-Control max-age: ngrok refreshes "roughly every 15 minutes".
    refresh_interval: float = 900.0
    # Bounds on a server's max-age: at least a minute (a max-age of 0 must not become a fetch
    # loop), at most a day (a key the provider withdrew stops being trusted within a day).
    min_refresh: float = 60.0
    max_refresh: float = 86400.0
    # Seconds between tries after a failed fetch (a URL that is down or not a JWKS).
    retry_interval: float = 30.0
    # How long keys stay usable past their refresh time while refreshing fails: a provider
    # outage shorter than this locks no client out; past it, requests get 503 (fail closed).
    max_stale: float = 3600.0
    # A PEM file of extra CA certificates to trust for JWKS URLs, besides the system's (for
    # a private identity provider); None trusts the system store only.
    ca_file: Path | None = None


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
    certificates: CertificatesConfig = field(default_factory=CertificatesConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    heartbeat: HeartbeatConfig = field(default_factory=HeartbeatConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    jwks: JwksConfig = field(default_factory=JwksConfig)

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
    return _hostname(value, ip=True)


def parse_hostname(value: str) -> str:
    """A DNS hostname, lower-cased, without a trailing dot; `ValueError` otherwise."""
    return _hostname(value, ip=False)


def _hostname(value: str, *, ip: bool) -> str:
    """The one host-name rule (protocol/formats/hostnames.py), in this file's words."""
    try:
        return hostnames.parse_hostname(value, ip=ip)
    except hostnames.HostnameError as exc:
        raise ValueError(f"{value!r} is not a hostname: {exc.problem}") from None


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
            retry_interval=self._duration(
                section, "jwks.retry_interval", default.retry_interval
            ),
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
