"""The state a policy keeps between requests: `rate-limit` buckets, bounded, clock passed in.

Theory of operation. ngrok's `rate-limit` has one algorithm, `sliding_window`: at most
`capacity` requests per `rate` seconds and bucket. Keeping every request's time would cost
memory per request (capacity may be two billion), so each bucket keeps two counters, the
sliding-window-counter approximation (as Cloudflare and nginx-style limiters do): the window
`[k*rate, (k+1)*rate)` that `now` falls in, its count, and the previous window's count. A
request at fraction `f` of the current window sees

    estimate = previous * (1 - f) + current

and is allowed while `estimate + 1 <= capacity` (then counted); a refused request is not
counted, so a client that keeps retrying does not push its own wait further out. `Retry-After`
is the first whole second at which the estimate leaves room again, solved from the same line.

Buckets live in one `PolicyState` per policy (per ingress server, as ngrok counts capacity),
at most `PolicyStateLimits.max_buckets` of them; past that, the least recently used bucket is
dropped (that client's count restarts from zero, which errs towards letting traffic through,
never towards refusing it). A clock that steps back is treated as "no time passed".

Pure: no clock (`now` is passed in, Unix seconds), no I/O, no locking (the edge runs on one
trio thread).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from edge.policy.jwk import JwksCache

if TYPE_CHECKING:  # breaker.py imports the phase, which imports this module
    from edge.policy.breaker import Breaker

__all__ = ["Decision", "PolicyState", "PolicyStateLimits"]

BucketId = tuple[object, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyStateLimits:
    """Bounds on the memory one policy's state may use."""

    # One bucket is ~200 bytes (key tuple, three numbers, the LRU link). 100,000 buckets is
    # ~20 MB per policy: room for every client address of a busy endpoint's rate window, while a
    # flood of spoofed keys (a header the client chooses) only evicts the oldest buckets.
    max_buckets: int = 100_000

    def __post_init__(self) -> None:
        if isinstance(self.max_buckets, bool) or self.max_buckets < 1:
            raise ValueError(f"max_buckets must be a positive integer, got {self.max_buckets!r}")


@dataclass(frozen=True, slots=True)
class Decision:
    """One rate-limit check: allowed or not, and when to retry (whole seconds, >= 1)."""

    allowed: bool
    retry_after: int  # 0 when allowed


@dataclass(slots=True)
class _Bucket:
    window: int  # index of the current window: floor(now / rate)
    current: int
    previous: int


_NO_RETRY: Final = 0


class PolicyState:
    """Mutable per-policy state; create one per loaded policy and pass it to every run."""

    def __init__(self, limits: PolicyStateLimits | None = None) -> None:
        self.limits = limits if limits is not None else PolicyStateLimits()
        self._buckets: OrderedDict[BucketId, _Bucket] = OrderedDict()
        # circuit-breaker state, one per action of the policy (keyed by its place): bounded by
        # the policy's action count (edge.policy.breaker)
        self.breakers: dict[str, Breaker] = {}
        # jwt-validation's signing keys, by JWKS URL: filled by edge.policy.jwks_fetch while
        # the policy is attached, read by the engine (edge.policy.run_jwt).
        self.jwks = JwksCache()

    def __len__(self) -> int:
        """How many buckets are held now."""
        return len(self._buckets)

    def hit(self, bucket: BucketId, *, capacity: int, rate: int, now: float) -> Decision:
        """Count one request in `bucket` if the sliding window has room; say when to retry."""
        window = math.floor(now / rate)
        state = self._buckets.get(bucket)
        if state is None:
            state = _Bucket(window, 0, 0)
            self._buckets[bucket] = state
            while len(self._buckets) > self.limits.max_buckets:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(bucket)
            if window > state.window:
                state.previous = state.current if window == state.window + 1 else 0
                state.current = 0
                state.window = window
        # A clock that stepped back (window < state.window) counts into the newest window.
        start = state.window * rate
        fraction = min(max((now - start) / rate, 0.0), 1.0)
        estimate = state.previous * (1.0 - fraction) + state.current
        if estimate + 1 <= capacity:
            state.current += 1
            return Decision(True, _NO_RETRY)
        return Decision(False, _retry_after(state, capacity=capacity, rate=rate, now=now))


def _retry_after(state: _Bucket, *, capacity: int, rate: int, now: float) -> int:
    """Seconds until `estimate + 1 <= capacity` holds again (at least 1)."""
    room = capacity - 1
    start = state.window * rate
    at: float
    if state.current <= room and state.previous > 0:
        # Still in this window: previous * (1 - f) <= room - current.
        fraction = 1.0 - (room - state.current) / state.previous
        at = start + fraction * rate
    else:
        # In the next window, the current count becomes the decaying one: current*(1-f) <= room.
        fraction = 1.0 - room / state.current if state.current else 0.0
        at = start + rate + max(fraction, 0.0) * rate
    return max(1, math.ceil(at - now))
