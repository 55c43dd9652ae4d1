"""The agent's Prometheus metrics, in a registry of its own (served on `web_addr` at /metrics).

Each agent gets its own `CollectorRegistry`, not prometheus_client's global one, so two agents
in one process (tests) never collide. What is counted, and where:

* `burrow_agent_session_state`: connecting, established, reconnecting or stopped (`agent.session`);
* `burrow_agent_reconnects_total`: sessions lost that the agent dials again after;
* `burrow_agent_streams_opened_total` / `burrow_agent_streams_open`: proxy streams (public
  connections) per endpoint;
* `burrow_agent_upstream_dial_errors_total` and `burrow_agent_upstream_dial_seconds`: opening
  the upstream (TCP, PROXY header, TLS) per endpoint;
* `burrow_agent_bytes_total{direction="in"|"out"}`: bytes relayed to the upstream (in) and back
  to the edge (out), added when a connection ends.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

__all__ = ["METRICS_CONTENT_TYPE", "SESSION_STATES", "AgentMetrics"]

METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST
SESSION_STATES = ("connecting", "established", "reconnecting", "stopped")
#: Upstream dial time buckets, seconds: a local service answers in well under a millisecond, a
#: TLS upstream across a link in tens of milliseconds, and the connect timeout is 10 s.
_DIAL_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class AgentMetrics:
    """The agent's counters; `exposition()` renders them in Prometheus' text format."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self._state = Enum(
            "burrow_agent_session_state",
            "The state of the agent's session to the edge.",
            states=list(SESSION_STATES),
            registry=registry,
        )
        self._reconnects = Counter(
            "burrow_agent_reconnects",
            "Sessions lost after which the agent dialled the edge again.",
            registry=registry,
        )
        self._opened = Counter(
            "burrow_agent_streams_opened",
            "Proxy streams (public connections) the edge opened, per endpoint.",
            ["endpoint"],
            registry=registry,
        )
        self._open = Gauge(
            "burrow_agent_streams_open",
            "Proxy streams being served now, per endpoint.",
            ["endpoint"],
            registry=registry,
        )
        self._dial_errors = Counter(
            "burrow_agent_upstream_dial_errors",
            "Upstreams that could not be reached (refused, timed out, TLS failed), per endpoint.",
            ["endpoint"],
            registry=registry,
        )
        self._dial_seconds = Histogram(
            "burrow_agent_upstream_dial_seconds",
            "Time to open the upstream connection (TCP, PROXY header, TLS), per endpoint.",
            ["endpoint"],
            buckets=_DIAL_BUCKETS,
            registry=registry,
        )
        self._bytes = Counter(
            "burrow_agent_bytes",
            "Bytes relayed: in = from the edge to the upstream, out = back to the edge.",
            ["endpoint", "direction"],
            registry=registry,
        )
        self._state.state("connecting")

    def session_state(self, state: str) -> None:
        """One of SESSION_STATES."""
        self._state.state(state)

    def reconnecting(self) -> None:
        self._reconnects.inc()
        self._state.state("reconnecting")

    def stream_opened(self, endpoint: str) -> None:
        self._opened.labels(endpoint).inc()
        self._open.labels(endpoint).inc()

    def stream_closed(self, endpoint: str) -> None:
        self._open.labels(endpoint).dec()

    def upstream_dialled(self, endpoint: str, seconds: float) -> None:
        self._dial_seconds.labels(endpoint).observe(seconds)

    def upstream_dial_failed(self, endpoint: str) -> None:
        self._dial_errors.labels(endpoint).inc()

    def relayed(self, endpoint: str, *, inbound: int, outbound: int) -> None:
        self._bytes.labels(endpoint, "in").inc(inbound)
        self._bytes.labels(endpoint, "out").inc(outbound)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
