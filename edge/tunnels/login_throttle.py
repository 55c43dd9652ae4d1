"""Failed agent logins per source address: throttle the failures, never the right authtoken.

Theory of operation. Each source address that fails an Auth gets a fixed window of
`window` seconds, starting at its first failure; within it, `failures_per_window` failures are
answered with their real reason (no token, unknown token, revoked credential). The next ones,
until the window ends, are answered with a throttled refusal that says when to retry. A valid
authtoken is never looked at here: the session checks the token first and only a failure
consults or charges this table, so a working agent behind a guessing neighbour still logs in,
and it logs in as fast as ever because a throttled guess costs one dictionary lookup.

Audit budget. Every failure is worth an audit event, but a flood of them must not become a
flood of rows. Per address and window, the answered failures are audited one by one and the
first throttled one is audited once more (so the store says "this address is now throttled");
later throttled failures in that window are only counted, and the count rides along on the
next audited failure of that address (`unaudited`). So an address costs at most
`failures_per_window + 1` events per window however fast it guesses. A count still pending
when the address is forgotten (evicted, or it never fails again) is lost; the throttled event
already recorded says the flood happened.

Addresses. IPv4 addresses count one by one; IPv6 addresses count by /64, the smallest block a
site is normally given, so an attacker cannot reset their budget by walking their own prefix.
The table is bounded (`max_addresses`, least recently failing forgotten first): forgetting an
address only ever gives it a fresh budget, never blocks anyone.

Pure: time comes in as `now` (seconds on any monotonic clock); no clock, I/O or logging here.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["FailureCharged", "LoginThrottle", "source_key"]

#: IPv6 sources are counted per this prefix length (a site's usual allocation).
IPV6_PREFIX = 64


def source_key(address: str) -> str:
    """The key failures of `address` are counted under: the IPv4 address itself, the /64 of an
    IPv6 address (an IPv4-mapped IPv6 address counts as its IPv4 address), or the text as given
    when it is not an IP address at all."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_PREFIX), strict=False))
    return str(ip)


@dataclass(frozen=True, slots=True, kw_only=True)
class FailureCharged:
    """What one failure did to its address's budget.

    `failures` counts this window's failures of the address, this one included; `throttled` is
    whether this one came after the budget was spent (so it was refused as throttled); `audit`
    whether to record an audit event for it; `unaudited` how many earlier failures of the
    address went unrecorded since its last recorded one (put it in that event)."""

    failures: int
    throttled: bool
    audit: bool
    unaudited: int


@dataclass(slots=True)
class _Window:
    started: float
    failures: int
    unaudited: int


class LoginThrottle:
    """Failed logins per source address over a fixed window (see the module docstring)."""

    def __init__(self, *, failures_per_window: int, window: float, max_addresses: int) -> None:
        if failures_per_window < 1 or window <= 0 or max_addresses < 1:
            raise ValueError("failures_per_window, window and max_addresses must be positive")
        self.failures_per_window = failures_per_window
        self.window = window
        self.max_addresses = max_addresses
        self._windows: OrderedDict[str, _Window] = OrderedDict()

    def __len__(self) -> int:
        return len(self._windows)

    def retry_after(self, address: str, now: float) -> float:
        """Seconds until a failure from `address` is answered with its reason again; 0.0 when
        it is not throttled now."""
        entry = self._windows.get(source_key(address))
        if entry is None or now >= entry.started + self.window:
            return 0.0
        if entry.failures < self.failures_per_window:
            return 0.0
        return entry.started + self.window - now

    def charge_failure(self, address: str, now: float) -> FailureCharged:
        """Count one failed login from `address` at `now`; what it did (see `FailureCharged`).
        Call `retry_after` first, with the same `now`, to decide how to answer it."""
        key = source_key(address)
        entry = self._windows.pop(key, None)
        if entry is None:
            entry = _Window(started=now, failures=0, unaudited=0)
        elif now >= entry.started + self.window:
            entry = _Window(started=now, failures=0, unaudited=entry.unaudited)
        throttled = entry.failures >= self.failures_per_window
        entry.failures += 1
        # Audit the answered failures and the first throttled one; count the rest.
        audit = entry.failures <= self.failures_per_window + 1
        unaudited = entry.unaudited
        if audit:
            entry.unaudited = 0
        else:
            entry.unaudited += 1
        self._windows[key] = entry  # most recently failing last
        while len(self._windows) > self.max_addresses:
            self._windows.popitem(last=False)
        return FailureCharged(
            failures=entry.failures,
            throttled=throttled,
            audit=audit,
            unaudited=unaudited if audit else 0,
        )
