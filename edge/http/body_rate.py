"""How fast a public client must send a request body: a minimum data rate with a grace allowance,
and a total time, as pure arithmetic (time comes in as a value; no clock, no I/O).

Theory of operation
-------------------
A request body holds an agent stream, and so one of the upstream's connections, for as long as
it takes to arrive. The connection's idle timeout (`http.idle_timeout`) is no bound on that: each
byte resets it, so a client sending a byte every few seconds holds the upstream connection for
ever. `BodyRate` is the bound, modelled on Apache's mod_reqtimeout (`body=20,MinRate=500`: 20
seconds to start, one more second for every 500 bytes received) and nginx's
`client_body_timeout`:

* A body starts with `window` seconds of *credit*. Time spent waiting for the client's bytes
  spends it; every byte that arrives earns `1 / min_rate` seconds, but never more than `window`
  seconds are held, so a fast start cannot buy a long trickle later (Apache's credit has no
  cap). Credit running out while waiting means the body is too slow: over any stretch of time,
  the client sent less than `min_rate` bytes a second, `window` seconds' worth of slack aside.
* Time the relay spends *not* waiting for the client (writing to an agent stream whose upstream
  reads slowly, or while the client waits for a `100 Continue`: `hold`) spends no credit; that
  slowness is not the client's.
* However fast it comes, the whole body must have arrived `total` seconds after it started.

The relay asks `wait(now)` before each wait for the client's bytes and gets the time by which
some must arrive; it reports what arrived with `received(size, now)`. If the deadline passes
first, `verdict(now)` says which limit it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from edge.config import HttpConfig

__all__ = ["BodyLimits", "BodyRate", "SlowBody"]


@dataclass(frozen=True, slots=True, kw_only=True)
class BodyLimits:
    """The limits a request body is held to (`edge.config.HttpConfig`'s `body_*` keys)."""

    #: Bytes per second the body must average, `window` seconds of slack aside.
    min_rate: int
    #: Seconds of credit at the start (the grace allowance) and the most ever held.
    window: float
    #: Seconds from the body's start to its end, however fast it comes.
    total: float

    @classmethod
    def of(cls, http: HttpConfig) -> BodyLimits:
        """The limits the edge's `http` config section sets."""
        return cls(
            min_rate=http.body_min_rate, window=http.body_rate_window, total=http.body_timeout
        )


class SlowBody(Enum):
    """Which limit a body broke."""

    TOO_SLOW = "slower than the minimum rate"
    TOO_LONG = "longer than the total time"


class BodyRate:
    """The rate account of one request body that started at `now`. Not waiting at first."""

    __slots__ = ("_credit", "_due", "_ends", "_limits", "_ran_out")

    def __init__(self, limits: BodyLimits, *, now: float) -> None:
        self._limits = limits
        self._ends = now + limits.total
        self._credit = limits.window  # seconds of waiting left (while not waiting)
        self._due: float | None = None  # when the credit runs out (while waiting)
        self._ran_out = False  # a wait outlasted the credit (bytes after it do not undo that)

    @property
    def limits(self) -> BodyLimits:
        return self._limits

    def wait(self, now: float) -> float:
        """A wait for the client's bytes starts at `now` (or goes on, if one already runs):
        the time by which some must arrive."""
        if self._due is None:
            self._due = now + self._credit
        return min(self._due, self._ends)

    def hold(self, now: float) -> float:
        """The client is not expected to send from `now` on (it waits for a `100 Continue`):
        stop spending credit until the next `wait`. The time by which the body must end."""
        self._stop(now)
        return self._ends

    def received(self, size: int, now: float) -> None:
        """`size` bytes of the body arrived at `now`: the wait (if any) ends, and they earn
        credit."""
        self._stop(now)
        limits = self._limits
        self._credit = min(self._credit + size / limits.min_rate, limits.window)

    def verdict(self, now: float) -> SlowBody | None:
        """The limit the body has broken by `now`, if any (the total time first)."""
        if now >= self._ends:
            return SlowBody.TOO_LONG
        due = self._due
        if self._ran_out or (due is not None and now >= due):
            return SlowBody.TOO_SLOW
        return None

    def describe(self, verdict: SlowBody) -> str:
        """Why the body was cut, for the log."""
        limits = self._limits
        if verdict is SlowBody.TOO_LONG:
            return f"the request body took longer than {limits.total:g}s"
        return (
            f"the request body came slower than {limits.min_rate} bytes/s "
            f"(over a {limits.window:g}s window)"
        )

    def _stop(self, now: float) -> None:
        due = self._due
        if due is not None:
            self._ran_out = self._ran_out or now >= due
            self._credit = due - now
            self._due = None
