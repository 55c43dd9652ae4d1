"""The `circuit-breaker` action: a per-action breaker over a bucketed sliding window.

Theory of operation. Each `circuit-breaker` action of a loaded policy has one `Breaker`, kept
in the policy's `PolicyState.breakers` under the action's place (so two breakers in one
policy count separately, and a reloaded policy starts from closed). A breaker is in one of
three states:

    CLOSED     requests pass; each forwarded request's outcome is counted in the bucket of
               the time it ended (`num_buckets` buckets of `window / num_buckets` seconds).
               When the window holds at least `volume_threshold` outcomes and the share of
               errors is at least `error_threshold`, the breaker trips:
    OPEN       every request is answered 503 ERR_NGROK_3202 by the edge, not forwarded, until
               `tripped_duration` has passed since the trip; then
    HALF_OPEN  one request (the probe) is let through; every other one is answered 503. The
               probe's outcome decides: an error trips again (OPEN from now), a success closes
               the breaker with an empty window. A probe whose outcome never comes (the client
               went away, a later action answered it) is replaced after `tripped_duration`.

An error is what ngrok counts as an upstream failure: a 5xx response from the upstream, or no
response at all (the agent or upstream failed). The HTTP shell reports each forwarded request's
outcome (`record_outcomes`) with the breakers its request phase passed (`PhaseRun.breakers`,
carried to the response in `Carried.breakers`). Outcomes that arrive while OPEN (requests let
through before the trip) are ignored. `enforce: false` never trips and counts nothing.

Pure: no clock (`now` is Unix seconds from the caller; a clock that steps back counts into the
newest bucket), no I/O, no locking (the edge runs on one trio thread).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from edge.policy.actions_breaker import CircuitBreakerConfig
from edge.policy.errors import Place
from edge.policy.phase import Answer, PhaseRun

__all__ = [
    "ERR_NGROK_3202",
    "Breaker",
    "BreakerState",
    "is_error",
    "record_outcomes",
    "run_circuit_breaker",
]

#: ngrok's code for "the circuit breaker is open" (reference ngrok.md §4.3).
ERR_NGROK_3202: Final = "ERR_NGROK_3202"
_TRIPPED_STATUS: Final = 503
_TRIPPED_BODY: Final = (
    f"{ERR_NGROK_3202}: this endpoint's circuit breaker is open after too many upstream "
    "errors; try again later.\n"
).encode()
_TRIPPED_HEADERS: Final = (
    ("content-type", "text/plain; charset=utf-8"),
    ("ngrok-error-code", ERR_NGROK_3202),
    ("burrow-error-code", ERR_NGROK_3202),
)


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


@dataclass(slots=True)
class _Bucket:
    index: int  # floor(now / width) of the time slice it counts; stale once out of the window
    requests: int = 0
    errors: int = 0


def is_error(status: int | None) -> bool:
    """An upstream failure as the breaker counts it: no response (None) or a 5xx."""
    return status is None or status >= 500


class Breaker:
    """One circuit-breaker action's state (see the module docstring)."""

    def __init__(self, config: CircuitBreakerConfig) -> None:
        self.config = config
        self.state = BreakerState.CLOSED
        self._width = config.window_seconds / config.num_buckets
        self._buckets: list[_Bucket | None] = [None] * config.num_buckets
        self._latest = -1  # the newest bucket index seen: a clock stepping back counts there
        self._opened_at = 0.0
        self._probe_at: float | None = None

    def counts(self, now: float) -> tuple[int, int]:
        """(requests, errors) in the window that ends at `now`."""
        newest = max(math.floor(now / self._width), self._latest)
        oldest = newest - self.config.num_buckets + 1
        requests = errors = 0
        for bucket in self._buckets:
            if bucket is not None and oldest <= bucket.index <= newest:
                requests += bucket.requests
                errors += bucket.errors
        return requests, errors

    def allow(self, now: float) -> bool:
        """May this request be forwarded? (A half-open breaker lets one probe through.)"""
        tripped = self.config.tripped_seconds
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN:
            if now - self._opened_at < tripped:
                return False
            self.state = BreakerState.HALF_OPEN
            self._probe_at = now
            return True
        if self._probe_at is None or now - self._probe_at >= tripped:  # the probe was lost
            self._probe_at = now
            return True
        return False

    def record(self, now: float, *, failed: bool) -> None:
        """Count one forwarded request's outcome, tripping or closing the breaker."""
        if self.state is BreakerState.OPEN:
            return  # let through before the trip: the window restarts after the probe
        if self.state is BreakerState.HALF_OPEN:
            if failed:
                self._trip(now)
            else:
                self.state = BreakerState.CLOSED
                self._probe_at = None
                self._clear()
            return
        index = max(math.floor(now / self._width), self._latest)
        self._latest = index
        slot = index % self.config.num_buckets
        bucket = self._buckets[slot]
        if bucket is None or bucket.index != index:
            bucket = self._buckets[slot] = _Bucket(index)
        bucket.requests += 1
        bucket.errors += int(failed)
        requests, errors = self.counts(now)
        if requests >= self.config.volume_threshold and (
            errors >= self.config.error_threshold * requests
        ):
            self._trip(now)

    def _trip(self, now: float) -> None:
        self.state = BreakerState.OPEN
        self._opened_at = now
        self._probe_at = None
        self._clear()

    def _clear(self) -> None:
        self._buckets = [None] * self.config.num_buckets


def run_circuit_breaker(run: PhaseRun, config: CircuitBreakerConfig, place: Place) -> Answer | None:
    """Let the request through (remembering the breaker for its outcome) or answer 503."""
    if not config.enforce:
        return None
    key = str(place)
    breaker = run.state.breakers.get(key)
    if breaker is None or breaker.config != config:
        breaker = run.state.breakers[key] = Breaker(config)
    if breaker.allow(run.now):
        run.breakers.append(breaker)
        return None
    return Answer(_TRIPPED_STATUS, _TRIPPED_HEADERS, _TRIPPED_BODY)


def record_outcomes(breakers: Iterable[Breaker], *, status: int | None, now: float) -> None:
    """Report one forwarded request's outcome (`status`, None if none came) to its breakers."""
    failed = is_error(status)
    for breaker in breakers:
        breaker.record(now, failed=failed)
