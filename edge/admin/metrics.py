"""The edge's Prometheus metrics: one `CollectorRegistry` per edge (never the process-wide
default, so two edges in one process, as in the tests, count apart), the counters the rest of
the edge bumps, and the text `GET /metrics` answers with.

Who counts what:

* sessions and endpoints online are read from the hub when scraped (`watch`);
* proxy streams (open now, opened in all) and the bytes they carry each way are counted by
  `edge.tunnels.stream_shares.SharedStream`, the one wrapper every proxy stream passes through;
* agent bind and auth refusals by error code by `edge.tunnels.session`;
* TLS handshakes that fail on the public port (`https`) and from agents (`agent`) by
  `edge.front_door.listeners` and `edge.server`;
* store latency by `edge.store.sqlite.SQLiteStore` (each call, lock wait included);
* HTTP requests by endpoint and status class by the HTTP servers (`http_response`).

Label values are bounded: endpoint URLs beyond `MAX_ENDPOINT_LABELS` distinct ones are counted
under `other`, and error codes are the edge's own (`ERR_NGROK_...`, `BURROW_...`), so a hostile
peer cannot grow the registry without bound.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from edge.config import AdminConfig

__all__ = [
    "CONTENT_TYPE",
    "EdgeMetrics",
    "answer_code",
    "endpoint_label",
    "tcp_close_code",
]

#: Prometheus's text exposition format 0.0.4, which every scraper reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Distinct endpoint URLs that get a label of their own unless told otherwise: the default of
#: `admin.metrics_max_endpoint_labels` (its reason is in edge/config.py); later ones share `other`.
MAX_ENDPOINT_LABELS = AdminConfig.metrics_max_endpoint_labels
#: Store calls are local SQLite: microseconds when idle, up to the busy timeout under a
#: competing writer. Buckets from 100 µs to 5 s cover both ends.
STORE_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0)


def status_class(status: int) -> str:
    """`2xx`, `4xx`, ...: the label HTTP requests are counted under."""
    return f"{status // 100}xx" if 100 <= status <= 599 else "other"


def endpoint_label(scheme: str, host: str | None) -> str:
    """The endpoint label of an HTTP request: `https://name`, the Host without its port (as
    endpoint URLs are written); "" when there is no host."""
    if not host:
        return ""
    try:
        name = urlsplit(f"//{host}").hostname or host
    except ValueError:  # unparseable (an unclosed IPv6 bracket): keep the Host as it came
        name = host
    return f"{scheme}://{name}"


def answer_code(status: int, headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The error code an edge-made answer carries (`Burrow-Error-Code` or `ngrok-error-code`),
    else `http_<status>`: what policy refusals are counted under."""
    for name, value in headers:
        if name.lower() in (b"burrow-error-code", b"ngrok-error-code"):
            return value.decode("ascii", "replace")[:64]
    return f"http_{status}"


def tcp_close_code(reason: str) -> str:
    """What an on_tcp_connect refusal is counted under: its error code (a runtime failure, a
    failed forward-internal), else `tcp_<action>` (`tcp_deny`, `tcp_restrict-ips`,
    `tcp_close-connection`), else `tcp_closed`."""
    if reason.startswith("ERR_NGROK_"):
        return reason[:64]
    if reason and " " not in reason:
        return f"tcp_{reason[:60]}"
    return "tcp_closed"


class _Bytes(Collector):
    """`burrow_edge_bytes_total`, counted in two plain integers and read when scraped: it is
    bumped once per message relayed, where a `Counter`'s lock and label lookup would be a
    measurable share of a small request's cost (and the edge is one thread)."""

    def __init__(self) -> None:
        self.to_agent = 0
        self.from_agent = 0

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "burrow_edge_bytes",
            "Bytes carried by proxy streams: to_agent (from clients) and from_agent",
            labels=["direction"],
        )
        family.add_metric(["to_agent"], self.to_agent)
        family.add_metric(["from_agent"], self.from_agent)
        yield family


class EdgeMetrics:
    """Every metric of one edge, in its own registry. Counting never raises and never blocks."""

    def __init__(self, *, max_endpoint_labels: int = MAX_ENDPOINT_LABELS) -> None:
        self.max_endpoint_labels = max_endpoint_labels
        registry = self.registry = CollectorRegistry(auto_describe=True)
        self.sessions = Gauge(
            "burrow_edge_sessions", "Agent sessions online (authenticated)", registry=registry
        )
        self.endpoints = Gauge(
            "burrow_edge_endpoints", "Endpoints online (agent and cloud)", registry=registry
        )
        self.streams_open = Gauge(
            "burrow_edge_streams_open", "Proxy streams to agents open now", registry=registry
        )
        self.streams_opened = Counter(
            "burrow_edge_streams_opened",
            "Proxy streams opened to agents, by endpoint protocol",
            ["proto"],
            registry=registry,
        )
        self._bytes = _Bytes()
        registry.register(self._bytes)
        self.http_requests = Counter(
            "burrow_edge_http_requests",
            "HTTP requests answered, by endpoint URL and status class",
            ["endpoint", "status"],
            registry=registry,
        )
        self.refusals = Counter(
            "burrow_edge_refusals",
            "Requests refused, by kind (auth, bind, policy, http) and error code",
            ["kind", "code"],
            registry=registry,
        )
        self.tls_handshake_failures = Counter(
            "burrow_edge_tls_handshake_failures",
            "TLS handshakes that failed, by listener role (https, agent)",
            ["role"],
            registry=registry,
        )
        self.store_seconds = Histogram(
            "burrow_edge_store_seconds",
            "Seconds one store call took, waiting for the store's lock included",
            buckets=STORE_BUCKETS,
            registry=registry,
        )
        self._endpoint_labels: set[str] = set()
        # Each (endpoint, status class) counter and proto counter, found once: `labels()` costs
        # a lock and a lookup per call, and these are bumped per request and per stream.
        self._http_children: dict[tuple[str, int], Counter] = {}
        self._opened_children: dict[str, Counter] = {}

    def watch(self, *, sessions: Callable[[], int], endpoints: Callable[[], int]) -> None:
        """Read the sessions and endpoints online from these callables at each scrape."""
        self.sessions.set_function(lambda: float(sessions()))
        self.endpoints.set_function(lambda: float(endpoints()))

    # ------------------------------------------------------------------------ counting

    def stream_opened(self, proto: str) -> None:
        child = self._opened_children.get(proto)
        if child is None:
            child = self._opened_children[proto] = self.streams_opened.labels(proto=proto)
        child.inc()
        self.streams_open.inc()

    def stream_closed(self) -> None:
        self.streams_open.dec()

    def to_agent(self, count: int) -> None:
        self._bytes.to_agent += count

    def from_agent(self, count: int) -> None:
        self._bytes.from_agent += count

    def refused(self, kind: str, code: str) -> None:
        self.refusals.labels(kind=kind, code=code or "none").inc()

    def handshake_failed(self, role: str) -> None:
        self.tls_handshake_failures.labels(role=role).inc()

    def store_call(self, seconds: float) -> None:
        self.store_seconds.observe(seconds)

    def http_response(self, endpoint: str, status: int) -> None:
        """One HTTP response sent (by the upstream or by the edge) for `endpoint`'s URL, or ""
        when the request matched no endpoint."""
        label = endpoint or "none"
        if label not in self._endpoint_labels:
            if len(self._endpoint_labels) >= self.max_endpoint_labels:
                label = "other"
            else:
                self._endpoint_labels.add(label)
        key = (label, status // 100 if 100 <= status <= 599 else 0)
        child = self._http_children.get(key)
        if child is None:
            child = self.http_requests.labels(endpoint=label, status=status_class(status))
            self._http_children[key] = child
        child.inc()

    # ------------------------------------------------------------------------ exposing

    def exposition(self) -> bytes:
        """The registry in Prometheus's text format."""
        return generate_latest(self.registry)
