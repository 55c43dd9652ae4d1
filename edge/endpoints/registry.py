"""Which endpoints are online, who serves them, and which tcp ports are free. Pure bookkeeping.

Theory of operation. An endpoint is a URL and its binding (public, or internal: reachable only
through forward-internal); its members are the agent sessions' bound endpoints (and cloud
endpoints) that serve it. Each member knows how to open a proxy stream to its agent
(`Member.opener`), so a caller that found an endpoint opens a stream with `Endpoint.open_proxy`
and never sees a session. The registry is the single place that decides whether a URL may be
bound: a URL already online is refused (ERR_NGROK_334) unless every member, old and new, has
pooling enabled, in which case the new member joins the endpoint's *pool* (ngrok.md §5). A
pool appears with its second member and dissolves with its last: nothing is registered ahead.

Choosing a member. `Endpoint.pick` asks `edge.endpoints.health.choose` (power of two choices
over the streams each member holds, healthy members first; a tie goes to the member whose
stream the client connection already holds, and `Endpoint.keeps` says whether that stream may
carry the request: `edge.http.routing`); `Endpoint.open_proxy` opens a
stream to the chosen member and, when that fails (its session is gone or refuses streams), marks
the member unhealthy and tries once more on another member, before the caller sees the error.
Every stream it returns is a `PoolStream`, which counts the member's open streams and reports
its health: bytes back from the agent make it healthy, a STREAM_REFUSED reset before any
(ERR_NGROK_8012: the agent could not reach its upstream) puts it in back-off.

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

from edge.endpoints import health
from edge.endpoints.health import Candidate, HealthPolicy, MemberHealth
from edge.events import EventLog
from edge.policy.ratelimit import PolicyState
from edge.policy.validate import CompiledPolicy
from protocol.adapters.mux import reset_code
from protocol.adapters.mux_stream import Sink
from protocol.wire.errors import ErrorCode

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
    # where `log` actions' records go as events besides the log (None: the log only)
    events: EventLog | None = field(default=None, compare=False, repr=False)


class MemberLoad:
    """A member's live numbers, changed as streams open and close: the streams it holds open,
    and its health (`edge.endpoints.health`). Mutable, and shared by every copy of the member."""

    __slots__ = ("health", "opened", "outstanding")

    def __init__(self) -> None:
        self.outstanding = 0
        self.opened = 0  # streams opened to it in all (the admin API shows it)
        self.health: MemberHealth = health.HEALTHY


@dataclass(frozen=True, slots=True, kw_only=True)
class Member:
    """One agent session's bound endpoint (or a cloud endpoint): what it bound with, and how to
    reach its agent."""

    bind_id: str
    token: str  # the bind token a resuming agent presents to get its URL back
    session_id: str
    client_id: str
    forwards_to: str = ""  # the agent's upstream as it described it (Bind.ForwardsTo)
    opener: OpenProxy = field(compare=False, repr=False)
    policy: AttachedPolicy | None = field(default=None, compare=False, repr=False)
    pooling: bool = False  # the Bind's PoolingEnabled (a cloud endpoint's pooling_enabled)
    agent_addr: str = ""  # the agent's address as the edge sees it ("ip:port"), for the API
    load: MemberLoad = field(default_factory=MemberLoad, compare=False, repr=False)

    async def open_proxy(self, client_addr: str) -> trio.abc.HalfCloseableStream:
        """A new proxy stream to this member's agent; `trio.BrokenResourceError` if its session
        is gone, `StreamLimitError` if it holds all the streams it may. Cancellation leaves no
        stream behind."""
        return await self.opener(client_addr)

    @property
    def gone(self) -> bool:
        return self.load.health.is_gone

    def same_connect_policy(self, other: Member) -> bool:
        """True when `other` runs the same `on_tcp_connect` rules (or neither runs any): a
        connection this member's `on_tcp_connect` let in may go to `other` instead. (The other
        phases run per request on whichever member takes it, so only this one matters; for a
        tcp:// or tls:// endpoint it is the whole policy.)"""
        mine, theirs = self.policy, other.policy
        if mine is theirs:
            return True
        rules = mine.compiled.source.on_tcp_connect if mine is not None else ()
        others = theirs.compiled.source.on_tcp_connect if theirs is not None else ()
        return rules == others


@dataclass(frozen=True, slots=True)
class PoolRuntime:
    """What choosing a member needs besides the members: randomness, a clock (trio's, in
    seconds) and the back-off policy. The code that creates an endpoint gives it the
    registry's (`EndpointRegistry.runtime`); a pool keeps its first member's endpoint's."""

    rng: random.Random = field(default_factory=random.Random)
    clock: Callable[[], float] = trio.current_time
    policy: HealthPolicy = field(default_factory=HealthPolicy)


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    """An online URL and the members serving it (more than one: a pool)."""

    url: str  # canonical (edge/tunnels/binding.py): the registry key
    proto: str  # http, https, tcp or tls
    binding: str = "public"  # or "internal": reachable only through forward-internal
    host: str = ""  # the URL's host, for routing by SNI and Host
    port: int | None = None  # the public tcp port it holds, if any
    members: tuple[Member, ...] = ()
    runtime: PoolRuntime = field(default_factory=PoolRuntime, compare=False, repr=False)

    @property
    def pooling(self) -> bool:
        """True when every member has pooling enabled (so another may join)."""
        return all(m.pooling for m in self.members)

    @property
    def forwards_to(self) -> str:
        """The upstream the agents described, for error pages (the first member's)."""
        return self.members[0].forwards_to if self.members else ""

    @property
    def policy(self) -> AttachedPolicy | None:
        """The Traffic Policy of the first live member that has one (HTTP routes pin the
        member they picked and run its policy instead: `edge.http.routing`)."""
        for member in self.members:
            if member.policy is not None and not member.gone:
                return member.policy
        return None

    def pick(
        self,
        exclude: tuple[Member, ...] = (),
        *,
        keep: Member | None = None,
        like: Member | None = None,
    ) -> Member | None:
        """The member a new connection or request goes to (`edge.endpoints.health.choose`),
        never one in `exclude` or one that is gone; None if there is none. `keep` is the member
        whose agent stream the client connection holds, if any: it wins a tie. With `like`,
        only a member with the same `on_tcp_connect` rules as `like`
        (`Member.same_connect_policy`): a connection `like`'s `on_tcp_connect` let in goes to
        no member whose own rules would not have."""
        members = self.members
        if not members:
            return None
        if like is not None:
            unlike = tuple(m for m in members if not like.same_connect_policy(m))
            if unlike:
                exclude = (*exclude, *unlike)
        if len(members) == 1 and not exclude:  # the common case: no pool
            only = members[0]
            return None if only.gone else only
        runtime = self.runtime
        index = health.choose(
            [Candidate(m.load.health, m.load.outstanding) for m in members],
            now=runtime.clock(),
            draw=runtime.rng.randrange,
            exclude=frozenset(i for i, m in enumerate(members) if any(m is x for x in exclude)),
            keep=next((i for i, m in enumerate(members) if m is keep), None),
        )
        return None if index is None else members[index]

    def keeps(self, held: Member, chosen: Member) -> bool:
        """Whether an agent stream to `held` may carry a request this endpoint chose `chosen`
        for: the same member, still one of this endpoint's, and healthy (not gone, not in a
        back-off, not probing: a probe gets a fresh stream)."""
        return (
            held is chosen
            and any(m is held for m in self.members)
            and health.state(held.load.health, now=self.runtime.clock()) is health.State.HEALTHY
        )

    def alternative(self, member: Member) -> bool:
        """True when a member other than `member` could take a retry now."""
        return self.pick(exclude=(member,)) is not None

    async def open_proxy(
        self, client_addr: str, *, first: Member | None = None, like: Member | None = None
    ) -> trio.abc.HalfCloseableStream:
        """A new proxy stream to a member's agent (`first`, when the caller already picked
        one), its ProxyHeader written, as a `PoolStream`. If opening it fails, the member is
        marked unhealthy and one other member is tried (with `like`, only one with the same
        Traffic Policy as `like`: see `pick`). `trio.BrokenResourceError` if the endpoint has no
        member left or both attempts failed (the last failure); `StreamLimitError` if the member
        is at its stream limit. Cancellation leaves no stream behind."""
        eligible = first is not None and self._eligible(first)
        member = first if eligible else self.pick(like=like)
        if member is None:
            raise trio.BrokenResourceError(f"{self.url} has no agent session")
        try:
            stream = await member.open_proxy(client_addr)
        except trio.BrokenResourceError as exc:
            self.refused(member, f"could not open a stream: {exc}")
            other = self.pick(exclude=(member,), like=like)
            if other is None:
                raise
            try:
                stream = await other.open_proxy(client_addr)
            except trio.BrokenResourceError as again:
                self.refused(other, f"could not open a stream: {again}")
                raise
            member = other
        return PoolStream(stream, member, self)

    def _eligible(self, member: Member) -> bool:
        """Not gone, and not in a back-off (`edge.endpoints.health.state`)."""
        state = health.state(member.load.health, now=self.runtime.clock())
        return state is health.State.HEALTHY or state is health.State.PROBING

    def refused(self, member: Member, reason: str) -> None:
        """`member` failed a stream: into back-off (`edge.endpoints.health.refused`)."""
        load = member.load
        runtime = self.runtime
        load.health = health.refused(
            load.health, now=runtime.clock(), policy=runtime.policy, reason=reason
        )


class PoolStream(trio.abc.HalfCloseableStream):
    """A proxy stream to one member: counts the member's open streams (for `Endpoint.pick`)
    and reports what the stream shows of its health. The first bytes back from the agent mark
    the member healthy; a STREAM_REFUSED reset before any (the agent could not reach its
    upstream, ERR_NGROK_8012) puts it in back-off. Errors are the wrapped stream's own."""

    __slots__ = ("_closed", "_confirmed", "_stream", "endpoint", "member")

    def __init__(
        self, stream: trio.abc.HalfCloseableStream, member: Member, endpoint: Endpoint
    ) -> None:
        self._stream = stream
        self.member = member
        self.endpoint = endpoint
        self._confirmed = False
        self._closed = False
        load = member.load
        load.outstanding += 1
        load.opened += 1

    @property
    def reusable(self) -> bool:
        """May carry another HTTP request wherever it is routed: only on an endpoint that
        is no pool and while its member is not gone. (A pool balances every request: its
        stream is kept only for a request routed to the same member, `Endpoint.keeps`.)"""
        return len(self.endpoint.members) == 1 and not self.member.gone

    @property
    def refused_early(self) -> bool:
        """True when the agent refused the stream before sending anything."""
        return not self._confirmed

    def _failed(self, exc: BaseException) -> None:
        if self._confirmed:
            return
        code = reset_code(exc)
        if code == ErrorCode.STREAM_REFUSED:
            self.endpoint.refused(self.member, "the agent could not reach its upstream (8012)")
        elif code == ErrorCode.REMOTE_GONE_AWAY:
            self.endpoint.refused(self.member, "the agent sent GOAWAY")

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        try:
            await self._stream.send_all(data)
        except trio.BrokenResourceError as exc:
            self._failed(exc)
            raise

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        try:
            data = await self._stream.receive_some(max_bytes)
        except trio.BrokenResourceError as exc:
            self._failed(exc)
            raise
        if not self._confirmed and data:
            self._confirm()
        return data

    def _confirm(self) -> None:
        self._confirmed = True
        load = self.member.load
        load.health = health.succeeded(load.health)

    def deliver_to(self, sink: Sink | None) -> None:
        """Let the wrapped stream's producer hand arriving data straight to `sink` (see
        `protocol.adapters.mux.MuxStream.deliver_to`; splice's direct path, which a tcp:// or
        tls:// connection uses), the first bytes it takes marking the member healthy as
        `receive_some`'s do; does nothing if the wrapped stream cannot."""
        deliver = getattr(self._stream, "deliver_to", None)
        if deliver is None:
            return
        if sink is None or self._confirmed or len(self.endpoint.members) == 1:
            # (No pool: nothing chooses by this member's health, so no wrapper per stream.)
            deliver(sink)
            return
        inner = sink

        def confirming(data: bytes) -> int:
            taken = inner(data)
            if taken and not self._confirmed:
                self._confirm()
            return taken

        deliver(confirming)

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        """Count the stream closed at once, then close it (even when cancelled)."""
        if not self._closed:
            self._closed = True
            self.member.load.outstanding -= 1
        await self._stream.aclose()


class EndpointRegistry:
    def __init__(
        self,
        *,
        rng: random.Random | None = None,
        health_policy: HealthPolicy | None = None,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self._rng = rng or random.Random()
        #: What new endpoints choose members with (give it to `Endpoint(runtime=...)`).
        self.runtime = PoolRuntime(
            rng=self._rng, clock=clock, policy=health_policy or HealthPolicy()
        )
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

    def add(self, endpoint: Endpoint) -> Endpoint:
        """Put `endpoint` online with its members, or, when its URL is online already and
        every member of both has pooling enabled, add its members to that endpoint's pool.
        Returns the endpoint as now registered. KeyError if the URL is online and cannot pool
        (one side without pooling, another protocol or binding), or it has no member."""
        if not endpoint.members:
            raise KeyError(f"{endpoint.url} has no member to serve it")
        existing = self._by_url.get(endpoint.url)
        if existing is not None:
            if not (
                existing.pooling
                and endpoint.pooling
                and existing.proto == endpoint.proto
                and existing.binding == endpoint.binding
            ):
                raise KeyError(f"{endpoint.url} is already registered")
            joined = replace(existing, members=existing.members + endpoint.members)
            self._by_url[endpoint.url] = joined
            return joined
        self._by_url[endpoint.url] = endpoint
        if endpoint.port is not None:
            self._ports.add(endpoint.port)
        return endpoint

    def remove(self, url: str, member: Member, *, reason: str = "unbound") -> bool:
        """Forget `member` (that very object: the URL may already belong to a newer session's
        member) from the endpoint at `url`, and mark it gone so that no new connection picks
        it from an endpoint value someone still holds; the endpoint goes offline, and its port
        is freed, with its last member. False if `member` does not serve `url`."""
        endpoint = self._by_url.get(url)
        if endpoint is None or not any(m is member for m in endpoint.members):
            return False
        member.load.health = health.gone(member.load.health, reason)
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

    def endpoints(self) -> list[Endpoint]:
        """Every endpoint online now (a pool is one endpoint with several members)."""
        return list(self._by_url.values())

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
