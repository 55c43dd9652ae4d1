"""Which endpoints are online, who holds them, and which tcp ports are free. Pure bookkeeping.

The registry is the single place that decides whether a URL may be bound: a URL held by another
session is refused (ERR_NGROK_334) unless the binder is that same agent resuming (same client id
and cookie, checked by the session code before it asks here). Ports are handed out from the
configured range, randomly so that a restarted agent rarely lands on a port someone just left.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Protocol

import trio

#: How many released endpoints remember their URL for a resuming agent (by bind token).
RECENT_BINDINGS = 10_000


class ProxyOpener(Protocol):
    """The agent session that serves an endpoint: it opens proxy streams to its agent."""

    async def open_proxy(
        self, record: EndpointRecord, client_addr: str
    ) -> trio.abc.HalfCloseableStream:
        """A new proxy stream with its ProxyHeader written; `trio.BrokenResourceError` if the
        session is gone."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointRecord:
    url: str  # canonical (edge/tunnels/binding.py): the registry key
    proto: str  # http, https, tcp or tls
    bind_id: str
    token: str
    session_id: str
    client_id: str
    port: int | None = None
    binding: str = "public"  # or "internal": reachable only through forward-internal
    host: str = ""  # the URL's host, for routing by SNI and Host
    forwards_to: str = ""  # the agent's upstream as it described it (Bind.ForwardsTo)
    owner: ProxyOpener | None = field(default=None, compare=False, repr=False)


class EndpointRegistry:
    def __init__(self, *, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self._by_url: dict[str, EndpointRecord] = {}
        self._ports: set[int] = set()
        self._recent: OrderedDict[str, str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._by_url)

    def lookup(self, url: str) -> EndpointRecord | None:
        return self._by_url.get(url)

    def lookup_public(self, scheme: str, host: str) -> EndpointRecord | None:
        """The public endpoint serving `host` for `scheme` (http, https or tls): an exact name
        first, then the closest wildcard (`a.b.example.com` tries `*.b.example.com`, then
        `*.example.com`), as ngrok picks the most specific online endpoint. Internal endpoints
        are never returned: no public port may reach them."""
        by_url = self._by_url
        record = by_url.get(f"{scheme}://{host}")
        if record is None:
            rest = host
            while record is None and "." in rest:
                rest = rest.split(".", 1)[1]
                record = by_url.get(f"{scheme}://*.{rest}")
        if record is None or record.binding != "public":
            return None
        return record

    def add(self, record: EndpointRecord) -> None:
        if record.url in self._by_url:
            raise KeyError(f"{record.url} is already registered")
        self._by_url[record.url] = record
        if record.port is not None:
            self._ports.add(record.port)

    def remove(self, record: EndpointRecord) -> bool:
        """Forget `record` (only that record: its URL may already belong to a newer session)."""
        if self._by_url.get(record.url) is not record:
            return False
        del self._by_url[record.url]
        if record.port is not None:
            self._ports.discard(record.port)
        if record.token:
            self._recent[record.token] = record.url
            self._recent.move_to_end(record.token)
            while len(self._recent) > RECENT_BINDINGS:
                self._recent.popitem(last=False)
        return True

    def held_by(self, session_id: str) -> list[EndpointRecord]:
        return [r for r in self._by_url.values() if r.session_id == session_id]

    def recent_url(self, token: str) -> str | None:
        """The URL last bound with this bind token, so a resuming agent gets its URL back."""
        return self._recent.get(token) if token else None

    def port_in_use(self, port: int) -> bool:
        return port in self._ports

    def allocate_port(self, ports: range, unusable: set[int] | None = None) -> int | None:
        """A random free port from `ports`, or None when every one is taken."""
        taken = self._ports | (unusable or set())
        if len(taken) >= len(ports) and all(p in taken for p in ports):
            return None
        for _ in range(64):
            port = self._rng.choice(ports)
            if port not in taken:
                return port
        free = [p for p in ports if p not in taken]
        return self._rng.choice(free) if free else None
