"""How many public connections each source address holds, and when refusing more is logged.

Theory of operation. The front door asks `AddressLimits.admit` for every accepted public
connection (TLS and HTTP ports together) and calls `release` when it ends. An address may hold
`limits.max_connections_per_address` at once; one more is refused, and the front door closes
it at once. IPv4 addresses count one by one; IPv6 addresses count by their /64, because one
host is usually handed a whole /64 and could otherwise take a fresh address per connection.

Refusals are logged at most once per `LOG_INTERVAL`, as a summary (how many, from how many
addresses, the busiest one), not once per connection: a refused flood must not become a log
flood. `report(now)` returns that summary when one is due.

Pure bookkeeping: values in, values out, the time passed in.
"""

from __future__ import annotations

import ipaddress
from collections import Counter

__all__ = ["LOG_INTERVAL", "AddressLimits", "address_key"]

#: Refused connections are summarised in one log line at most this often.
LOG_INTERVAL = 10.0
#: Distinct refused addresses remembered for one summary; beyond it only the count grows.
MAX_REPORTED_ADDRESSES = 1024


def address_key(host: str) -> str:
    """What one source counts as: the IPv4 address itself, or an IPv6 address's /64 (an
    IPv4-mapped IPv6 address counts as its IPv4 address). Anything unparseable is itself."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class AddressLimits:
    """Connections held per source address, against one limit for every address."""

    __slots__ = ("_held", "_next_report", "_refused", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held: dict[str, int] = {}
        self._refused: Counter[str] = Counter()
        self._next_report = 0.0

    def held(self, key: str) -> int:
        return self._held.get(key, 0)

    def admit(self, key: str) -> bool:
        """Count one more connection from `key` (see `address_key`); False, and the refusal
        remembered for the next report, when it already holds `limit`."""
        held = self._held.get(key, 0)
        if held >= self.limit:
            if key in self._refused or len(self._refused) < MAX_REPORTED_ADDRESSES:
                self._refused[key] += 1
            else:
                self._refused[""] += 1  # counted, without its address
            return False
        self._held[key] = held + 1
        return True

    def release(self, key: str) -> None:
        """A connection `admit` let in has ended."""
        held = self._held.get(key, 0) - 1
        if held > 0:
            self._held[key] = held
        else:
            self._held.pop(key, None)

    def report(self, now: float) -> str | None:
        """A one-line summary of the refusals since the last one, if there were any and the
        last summary is `LOG_INTERVAL` old; None otherwise. Resets the tally it reports."""
        if not self._refused or now < self._next_report:
            return None
        refused = self._refused
        self._refused = Counter()
        self._next_report = now + LOG_INTERVAL
        total = sum(refused.values())
        named = [(key, count) for key, count in refused.most_common() if key]
        busiest = f"; most from {named[0][0]} ({named[0][1]})" if named else ""
        return (
            f"refused {total} connections from {len(named)} addresses already holding "
            f"limits.max_connections_per_address ({self.limit}){busiest}"
        )
