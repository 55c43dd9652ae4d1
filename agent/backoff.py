"""The reconnect schedule: exponential backoff with jitter, as a pure generator.

ngrok-go waits 0.5 s before its first reconnect and doubles the wait up to 30 s (reference §7).
Burrow adds jitter: a fleet of agents that lost the same edge at the same moment would
otherwise all come back at the same moments too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

__all__ = ["BACKOFF_CAP", "BACKOFF_FACTOR", "BACKOFF_INITIAL", "BACKOFF_JITTER", "backoff_delays"]

#: ngrok-go's reconnect schedule: 0.5 s, doubling, capped at 30 s (reference §7).
BACKOFF_INITIAL = 0.5
BACKOFF_FACTOR = 2.0
BACKOFF_CAP = 30.0
#: Each delay is shortened by up to this fraction at random, so agents that lost the same edge
#: spread their reconnects out; never lengthened, so the cap holds.
BACKOFF_JITTER = 0.25


def backoff_delays(
    random: Callable[[], float],
    *,
    initial: float = BACKOFF_INITIAL,
    factor: float = BACKOFF_FACTOR,
    cap: float = BACKOFF_CAP,
    jitter: float = BACKOFF_JITTER,
) -> Iterator[float]:
    """The delays before each reconnect attempt, forever.

    The n-th base delay is `initial * factor**n`, at most `cap`; each delay is the base cut by a
    random fraction of up to `jitter` (`random()` returns a float in [0, 1)), so every delay
    lies in [base * (1 - jitter), base]. Start a new iterator to reset the schedule.
    """
    base = min(initial, cap)
    while True:
        yield base * (1.0 - jitter * random())
        base = min(cap, base * factor)
