"""Agent streams an HTTP/2 connection keeps between requests: HTTP/1.1's agent stream reuse,
for a connection that runs many requests at once.

Theory of operation. Over HTTP/1.1 the edge keeps the agent stream of a finished exchange for
the client's next request to the same endpoint (`edge.http.h1.proxy`). An HTTP/2 connection
runs its requests side by side, each in its own task, so it keeps a small set instead: after an
exchange its `UpstreamCodec` calls `reusable` (both messages whole, the connection kept, nothing
left over), `keep` files the stream under its route's key; `take` hands a kept stream to a
request routed to the same endpoint (and, for a pool, to the same member while it is healthy:
`edge.http.routing.reusable`), newest first. Without this every HTTP/2 request opened a new
agent stream, and the agent a new upstream connection.

Bounds. At most `MAX_KEPT` streams are kept (a browser's burst of 30 requests leaves 8; the rest
close), and each for at most `hold` seconds (`edge.http.h1.proxy.AGENT_STREAM_HOLD`): `sweep`,
run in the connection's nursery, closes those that waited longer, so an idle HTTP/2 client
holds no agent stream and no upstream connection (the reason HTTP/1.1 releases its own). A
kept stream may have been closed meanwhile (the upstream's keep-alive ran out): the exchanger
retries a request that failed on one before any response byte, as HTTP/1.1 does.

`close_all` closes what is left when the connection ends; cancellation closes the rest at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import trio

from edge.endpoints.registry import PoolStream
from edge.http.routing import HttpRoute, reusable
from edge.http.seam import close_agent_stream

__all__ = ["MAX_KEPT", "KeptStreams"]

#: Agent streams one HTTP/2 connection keeps idle at most. Enough for the requests a page
#: issues together to find one on their next round; few enough that a client's connections,
#: whatever it does, hold a small share of its agent's `max_streams_per_session`.
MAX_KEPT = 8


@dataclass(frozen=True, slots=True)
class _Kept:
    key: object  # the route's key (`HttpRoute.key`): the endpoint the stream reaches
    stream: trio.abc.HalfCloseableStream
    until: float  # trio time after which `sweep` closes it


class KeptStreams:
    """The idle agent streams of one HTTP/2 connection (see the module docstring)."""

    def __init__(self, *, hold: float, limit: int = MAX_KEPT) -> None:
        self.hold = hold
        self.limit = limit
        self._idle: list[_Kept] = []  # oldest first
        self._changed = trio.Event()

    def __len__(self) -> int:
        return len(self._idle)

    async def take(self, route: HttpRoute) -> trio.abc.HalfCloseableStream | None:
        """A kept stream that may carry a request routed to `route`, the newest first; None
        if there is none. Kept streams to a pool member that has left are closed on the way."""
        found: trio.abc.HalfCloseableStream | None = None
        gone: list[_Kept] = []
        for index in range(len(self._idle) - 1, -1, -1):
            kept = self._idle[index]
            if isinstance(kept.stream, PoolStream) and kept.stream.member.gone:
                gone.append(self._idle.pop(index))
            elif kept.key == route.key and reusable(kept.stream, route):
                found = self._idle.pop(index).stream
                break
        for kept in gone:
            await close_agent_stream(kept.stream, clean=True)
        return found

    def keep(self, key: object, stream: trio.abc.HalfCloseableStream) -> bool:
        """File `stream` (its exchange finished cleanly) for a later request routed to `key`;
        False when `limit` streams are kept already (the caller closes it)."""
        if len(self._idle) >= self.limit:
            return False
        self._idle.append(_Kept(key, stream, trio.current_time() + self.hold))
        if len(self._idle) == 1:
            self._changed.set()  # the sweeper was waiting with nothing to wait for
        return True

    async def sweep(self) -> None:
        """Close each kept stream once it has waited `hold`; runs until cancelled."""
        while True:
            self._changed = trio.Event()
            deadline = self._idle[0].until if self._idle else math.inf
            with trio.move_on_at(deadline):
                await self._changed.wait()
            now = trio.current_time()
            while self._idle and self._idle[0].until <= now:
                await close_agent_stream(self._idle.pop(0).stream, clean=True)

    async def close_all(self, *, clean: bool) -> None:
        """Close every kept stream: gracefully when `clean`, else (and, if cancelled, the rest)
        at once. Nothing is kept afterwards."""
        idle, self._idle = self._idle, []
        for number, kept in enumerate(idle):
            if not clean:
                await trio.aclose_forcefully(kept.stream)
                continue
            try:
                await close_agent_stream(kept.stream, clean=True)
            except BaseException:
                for rest in idle[number + 1 :]:
                    await trio.aclose_forcefully(rest.stream)
                raise
