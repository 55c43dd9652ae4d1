"""The edge's settings: one frozen dataclass per section of the config file.

Each field is a named setting or limit whose default cites its reason; `EdgeConfig` holds one of
each section and fills in the names that default to something under its domain. These classes
only hold values: `edge.config_file` reads the YAML file into them and validates it at load
(`load_edge_config`), and `edge.config_values` parses the text a person writes for one value.
`deploy/edge.example.yml` shows every key with its default.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from protocol.formats.units import KiB, MiB

__all__ = [
    "MIN_HTTP_HEAD",
    "MUXADO_INITIAL_WINDOW",
    "AdminConfig",
    "CertificateFiles",
    "CertificatesConfig",
    "EdgeConfig",
    "HeartbeatConfig",
    "HttpConfig",
    "JwksConfig",
    "LimitsConfig",
    "ListenConfig",
    "TcpConfig",
    "TlsConfig",
]

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
