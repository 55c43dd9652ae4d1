"""Which endpoints are online, who serves them, and which tcp ports are free. Pure bookkeeping.

Theory of operation. An endpoint is a URL and its binding (public, or internal: reachable only
through forward-internal); its members are the agent sessions' bound endpoints that serve it.
Each member knows how to open a proxy stream to its agent (`Member.opener`), so a caller that
found an endpoint opens a stream with `Endpoint.open_proxy` and never sees a session. Today an
endpoint has exactly one member: the registry is the single place that decides whether a URL
may be bound, and a URL already online is refused (ERR_NGROK_334) unless the binder is that
same agent resuming (same client id and cookie, checked by the session code before it asks
here, which stops the old session and so removes its members first). The shape already holds
a pool: `members` is a tuple and `open_proxy` picks one.

Ports are handed out from the configured range, randomly so that a restarted agent rarely lands
on a port someone just left. Removing a member remembers its bind token, so a resuming agent
gets its URL back (`recent_url`).
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

import trio

from edge.policy.ratelimit import PolicyState
from edge.policy.validate import CompiledPolicy

#: How many released endpoints remember their URL for a resuming agent (by bind token).
RECENT_BINDINGS = 10_000

#: Opens a new proxy stream (its ProxyHeader written) to a member's agent for the client at the
#: given address ("host:port"); raises `trio.BrokenResourceError` if the session is gone, and
#: `StreamLimitError` (a kind of it) if the session or this member holds all it may.
OpenProxy = Callable[[str], Awaitable[trio.abc.HalfCloseableStream]]


class StreamLimitError(trio.BrokenResourceError):
    """The agent is online but no proxy stream may be opened now: its session holds
    `limits.max_streams_per_session` streams, or this endpoint holds its share of them
    (`limits.endpoint_stream_percent`). A client gets 503, not "agent unreachable"."""


@dataclass(frozen=True, slots=True)
class AttachedPolicy:
    """A member's Traffic Policy, validated for its protocol, and the state its actions keep
    between runs (rate-limit windows). One per member: ngrok picks the member first, then runs
    *its* policy (traffic-policy.md §2)."""

    compiled: CompiledPolicy
    text: str  # the document as the agent sent it, for the admin API
    state: PolicyState = field(default_factory=PolicyState, compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Member:
    """One agent session's bound endpoint: what it bound with, and how to reach its agent."""

    bind_id: str
    token: str  # the bind token a resuming agent presents to get its URL back
    session_id: str
    client_id: str
    forwards_to: str = ""  # the agent's upstream as it described it (Bind.ForwardsTo)
    opener: OpenProxy = field(compare=False, repr=False)
    policy: AttachedPolicy | None = field(default=None, compare=False, repr=False)

    async def open_proxy(self, client_addr: str) -> trio.abc.HalfCloseableStream:
        """A new proxy stream to this member's agent; `trio.BrokenResourceError` if its session
        is gone, `StreamLimitError` if it holds all the streams it may. Cancellation leaves no
        stream behind."""
        return await self.opener(client_addr)


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    """An online URL and the members serving it (exactly one today)."""

    url: str  # canonical (edge/tunnels/binding.py): the registry key
    proto: str  # http, https, tcp or tls
    binding: str = "public"  # or "internal": reachable only through forward-internal
    host: str = ""  # the URL's host, for routing by SNI and Host
    port: int | None = None  # the public tcp port it holds, if any
    members: tuple[Member, ...] = ()

    @property
    def forwards_to(self) -> str:
        """The upstream the agents described, for error pages (the chosen member's)."""
        return self.members[0].forwards_to if self.members else ""

    @property
    def policy(self) -> AttachedPolicy | None:
        """The policy of the member traffic goes to (the only member today), if it has one."""
        member = self.pick()
        return member.policy if member is not None else None

    def pick(self) -> Member | None:
        """The member a new connection goes to: the only one today; None if there is none."""
        return self.members[0] if self.members else None

    async def open_proxy(self, client_addr: str) -> trio.abc.HalfCloseableStream:
        """A new proxy stream to a member's agent, its ProxyHeader written.
        `trio.BrokenResourceError` if the endpoint has no member or the member's session is
        gone; `StreamLimitError` if the member is at its stream limit."""
        member = self.pick()
        if member is None:
            raise trio.BrokenResourceError(f"{self.url} has no agent session")
        return await member.open_proxy(client_addr)


class EndpointRegistry:
    def __init__(self, *, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self._by_url: dict[str, Endpoint] = {}
        self._ports: set[int] = set()
        self._recent: OrderedDict[str, str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._by_url)

    def lookup(self, url: str) -> Endpoint | None:
        return self._by_url.get(url)

    def lookup_public(self, scheme: str, host: str) -> Endpoint | None:
        """The public endpoint serving `host` for `scheme` (http, https or tls): an exact name
        first, then the closest wildcard (`a.b.example.com` tries `*.b.example.com`, then
        `*.example.com`), as ngrok picks the most specific online endpoint. Internal endpoints
        are never returned: no public port may reach them."""
        by_url = self._by_url
        endpoint = by_url.get(f"{scheme}://{host}")
        if endpoint is None:
            rest = host
            while endpoint is None and "." in rest:
                rest = rest.split(".", 1)[1]
                endpoint = by_url.get(f"{scheme}://*.{rest}")
        if endpoint is None or endpoint.binding != "public":
            return None
        return endpoint

    def add(self, endpoint: Endpoint) -> None:
        """Put `endpoint` online with its members. KeyError if its URL is already online (one
        agent session per URL) or it has no member."""
        if endpoint.url in self._by_url:
            raise KeyError(f"{endpoint.url} is already registered")
        if not endpoint.members:
            raise KeyError(f"{endpoint.url} has no member to serve it")
        self._by_url[endpoint.url] = endpoint
        if endpoint.port is not None:
            self._ports.add(endpoint.port)

    def remove(self, url: str, member: Member) -> bool:
        """Forget `member` (that very object: the URL may already belong to a newer session's
        member) from the endpoint at `url`; the endpoint goes offline, and its port is freed,
        with its last member. False if `member` does not serve `url`."""
        endpoint = self._by_url.get(url)
        if endpoint is None or not any(m is member for m in endpoint.members):
            return False
        rest = tuple(m for m in endpoint.members if m is not member)
        if rest:
            self._by_url[url] = replace(endpoint, members=rest)
        else:
            del self._by_url[url]
            if endpoint.port is not None:
                self._ports.discard(endpoint.port)
        if member.token:
            self._recent[member.token] = url
            self._recent.move_to_end(member.token)
            while len(self._recent) > RECENT_BINDINGS:
                self._recent.popitem(last=False)
        return True

    def held_by(self, session_id: str) -> list[tuple[Endpoint, Member]]:
        """The endpoints one session serves, each with that session's member."""
        return [
            (endpoint, member)
            for endpoint in self._by_url.values()
            for member in endpoint.members
            if member.session_id == session_id
        ]

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
