"""Pool members' health and the choice of a member for a new connection or request. Pure.

Theory of operation. A pool (ngrok.md §5) is the set of members serving one URL and binding.
Each member carries a `MemberHealth` value, changed only by the functions here:

* `refused` when its agent refused a stream (STREAM_REFUSED: the agent could not reach its
  upstream, ERR_NGROK_8012) or a proxy stream to it could not be opened: the member is left out
  for a back-off (`HealthPolicy.backoff`, doubled per consecutive failure up to
  `backoff_max`);
* `succeeded` when a stream to it carried bytes back from the upstream: healthy again, the
  failure count reset;
* `gone` when its session ended, sent GOAWAY, or missed its heartbeats: it is never chosen
  again (the session code also takes it out of the registry in the same step).

When a member's back-off has run out it is *probing*: it may be chosen again, and the next
connection is the probe. Its success makes the member healthy; its failure doubles the back-off
(and the connection is retried on another member, so the probe costs the client nothing).

Choosing (`choose`): members that are gone or excluded (the one a retry is moving away from)
are never chosen. Of the rest, the eligible ones (healthy, or probing) are preferred; among
them the choice is the power of two choices over outstanding streams: two distinct members
drawn at random, the one holding fewer open streams wins (ties go to the first drawn, or to
the member whose agent stream the client connection already holds: `keep`, so that an HTTP
connection balanced evenly stays where it is instead of moving for nothing). This
spreads load evenly like least-outstanding, reacts to a slow member (its streams stay open
longer, so it holds more and wins less), and never sends a burst of new connections to the one
member that looked least loaded a moment ago, as strict least-outstanding would
(Mitzenmacher, "The Power of Two Choices in Randomized Load Balancing"). When no member is
eligible, the one whose back-off ends first is chosen: an error is certain without it, and its
agent may well have recovered.

No clock, no randomness of its own: `now` and a `draw(n) -> index` function come in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import Enum

__all__ = [
    "HEALTHY",
    "Candidate",
    "HealthPolicy",
    "MemberHealth",
    "State",
    "choose",
    "gone",
    "refused",
    "state",
    "succeeded",
]


class State(Enum):
    """What the admin API shows for a member."""

    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"  # in its back-off: chosen only when no member is eligible
    PROBING = "probing"  # its back-off ran out: the next connection tests it
    GONE = "gone"  # its session ended or said GOAWAY: never chosen


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    """How long a member that failed is left out (`limits.pool_member_backoff*`)."""

    backoff: float = 1.0
    backoff_max: float = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberHealth:
    """A member's health: consecutive failures, until when it is left out, and why."""

    failures: int = 0
    down_until: float = 0.0
    reason: str = ""
    is_gone: bool = False


#: A member with no failure on record.
HEALTHY = MemberHealth()


def refused(health: MemberHealth, *, now: float, policy: HealthPolicy, reason: str) -> MemberHealth:
    """The member failed a stream at `now`: left out for `policy.backoff` doubled per earlier
    consecutive failure, at most `policy.backoff_max`."""
    if health.is_gone:
        return health
    failures = health.failures + 1
    delay = min(policy.backoff_max, policy.backoff * (2 ** min(failures - 1, 32)))
    return replace(health, failures=failures, down_until=now + delay, reason=reason)


def succeeded(health: MemberHealth) -> MemberHealth:
    """A stream to the member reached its upstream: healthy (unless it is gone)."""
    if health.is_gone or (health.failures == 0 and not health.reason):
        return health
    return HEALTHY


def gone(health: MemberHealth, reason: str) -> MemberHealth:
    """The member's session ended (or said GOAWAY): never chosen again."""
    return replace(health, is_gone=True, reason=reason)


def state(health: MemberHealth, *, now: float) -> State:
    """The member's state at `now`."""
    if health.is_gone:
        return State.GONE
    if health.failures == 0:
        return State.HEALTHY
    return State.UNHEALTHY if now < health.down_until else State.PROBING


@dataclass(frozen=True, slots=True)
class Candidate:
    """What `choose` needs to know about one member."""

    health: MemberHealth
    outstanding: int  # proxy streams it holds open now


def choose(
    candidates: Sequence[Candidate],
    *,
    now: float,
    draw: Callable[[int], int],
    exclude: frozenset[int] = frozenset(),
    keep: int | None = None,
) -> int | None:
    """The index of the member a new connection or request goes to, or None when every
    member is gone or excluded. `draw(n)` returns a random index below `n`; `keep` is the
    member whose agent stream the client connection already holds, if any: it wins a tie.
    See the module docstring for the rule."""
    eligible: list[int] = []
    waiting: list[int] = []
    for index, candidate in enumerate(candidates):
        health = candidate.health
        if health.is_gone or index in exclude:
            continue
        if health.failures == 0 or now >= health.down_until:
            eligible.append(index)
        else:
            waiting.append(index)
    if not eligible:
        if not waiting:
            return None
        return min(waiting, key=lambda i: candidates[i].health.down_until)
    if len(eligible) == 1:
        return eligible[0]
    first = draw(len(eligible))
    second = draw(len(eligible) - 1)
    if second >= first:
        second += 1  # two distinct members
    a, b = eligible[first], eligible[second]
    if b == keep and candidates[b].outstanding == candidates[a].outstanding:
        return b  # a tie: stay on the kept stream's member rather than move
    return b if candidates[b].outstanding < candidates[a].outstanding else a
