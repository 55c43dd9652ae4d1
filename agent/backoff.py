"""The reconnect schedule: exponential backoff with full jitter, as pure values.

Theory of operation
-------------------
ngrok-go waits 0.5 s before its first reconnect and doubles the wait up to 30 s (reference §7),
with no jitter. An edge restart drops every agent at the same instant; on that schedule they
all come back at the same instants too (0.5 s, 1.5 s, 3.5 s, ...), and each wave is a burst of
TLS handshakes and Auths the restarted edge must absorb at once: a thundering herd.

Burrow uses "full jitter" (Marc Brooker, "Exponential Backoff And Jitter", AWS Architecture
Blog, 2015): the n-th wait (n = 0, 1, ...) is drawn uniformly from
`[0, min(BACKOFF_CAP, BACKOFF_BASE * 2**n))`. The ceiling grows as ngrok-go's schedule does,
but each agent's wait is anywhere below it, so a fleet's attempts spread evenly over the whole
window instead of bunching at its end. Brooker's simulations show it does the least total
work of the jitter variants, at the cost of an occasional very short wait.

The schedule starts over (`backoff_delays` anew) only after a session that stayed up: one that
authenticated, bound every endpoint and then lived at least `BACKOFF_RESET_AFTER` seconds
(`stayed_up`). An edge that accepts sessions and drops them at once keeps the agent backing
off instead of reconnecting in a tight loop.

No clock and no random source of its own: the caller passes `random` (a float in [0, 1)) and
measures how long a session lived.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_CAP",
    "BACKOFF_RESET_AFTER",
    "backoff_ceiling",
    "backoff_delays",
    "stayed_up",
]

#: The first wait's ceiling: ngrok-go's first reconnect delay (reference §7).
BACKOFF_BASE = 0.5
#: No wait is longer than this: ngrok-go's cap (reference §7). An agent whose edge is down for
#: hours still tries about twice a minute (the mean wait is half the cap).
BACKOFF_CAP = 30.0
#: A session that bound every endpoint and lived this long resets the schedule. Longer than the
#: first few ceilings (0.5 + 1 + 2 + 4 s), so an edge that drops each session at once cannot
#: hold an agent on its shortest waits; far shorter than any real outage-free stretch.
BACKOFF_RESET_AFTER = 10.0


def backoff_ceiling(attempt: int, *, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP) -> float:
    """The upper bound of the wait before reconnect `attempt` (0 for the first):
    `min(cap, base * 2**attempt)`. Raises ValueError for a negative attempt."""
    if attempt < 0:
        raise ValueError(f"attempt must be 0 or more, not {attempt}")
    # 2**attempt overflows a float past ~1024; the cap has long been reached by then.
    if attempt >= 64:
        return cap
    return min(cap, base * 2.0**attempt)


def backoff_delays(
    random: Callable[[], float],
    *,
    base: float = BACKOFF_BASE,
    cap: float = BACKOFF_CAP,
) -> Iterator[float]:
    """The waits before each reconnect attempt, forever: the n-th is
    `random() * backoff_ceiling(n)`, so it lies in [0, min(cap, base * 2**n)) when `random()`
    returns a float in [0, 1). Start a new iterator to reset the schedule."""
    attempt = 0
    while True:
        yield random() * backoff_ceiling(attempt, base=base, cap=cap)
        attempt += 1


def stayed_up(established: bool, lived: float, *, reset_after: float = BACKOFF_RESET_AFTER) -> bool:
    """Whether a session that just ended resets the schedule: it bound every endpoint
    (`established`) and lived at least `reset_after` seconds after that (`lived`)."""
    return established and lived >= reset_after
