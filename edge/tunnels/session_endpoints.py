"""The endpoints one agent session serves: its Binds and Unbinds, the proxy streams to their
agent, and their release.

Theory of operation
-------------------
`AgentSession` (`edge/tunnels/session.py`) owns the agent's connection: Auth, heartbeats, the
typed streams; once Auth succeeded it hands each Bind and Unbind stream to its
`SessionEndpoints`. A Bind is vetted by the pure checks of `edge.tunnels.decisions` (the
session's and credential's endpoint caps, options, ACL, Traffic Policy, conflicts with an online
URL), then its member joins the registry (`edge.endpoints.registry`), alone or in the URL's
pool; a public tcp pool's port belongs to the URL (`hub.tcp_ports`), opened by its first
member's Bind and closed with its last member, and is served from the hub's nursery when the
server gave one (its connections outlive this session: the pool's other members carry them).

Each bound endpoint has a cancel scope inside the session's nursery (`nursery`, set by the
session while it runs) for its tasks. `release` forgets an endpoint in the same step in which
its listeners close and its tasks are cancelled, so its URL can be bound again at once;
`release_all` does that for every endpoint when the session ends or drains. Every member's
proxy streams are opened here (`open_proxy`), capped at the endpoint's share of the session's
streams (`edge.tunnels.stream_shares`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

import trio

from edge.endpoints.cloud import agent_bind_conflict
from edge.endpoints.registry import AttachedPolicy, Endpoint, Member, StreamLimitError
from edge.front_door.forwarding import InternalTargets
from edge.front_door.tcp_ports import (
    SharedPort,
    open_tcp_endpoint_listeners,
    serve_shared_port,
)
from edge.policy.jwks_fetch import jwks_urls, keep_jwks_fresh
from edge.tunnels import audit, decisions
from edge.tunnels.binding import BindRefused
from edge.tunnels.decisions import Refused
from edge.tunnels.stream_shares import SharedStream, StreamShares
from protocol.adapters.mux import MuxStream, reset_code
from protocol.adapters.rpc import read_message, respond
from protocol.rpc import errcodes
from protocol.rpc.codec import Codec, encode_proxy_header
from protocol.rpc.messages import (
    Bind,
    BindResp,
    BindRespExtra,
    ProxyHeader,
    StreamType,
    Unbind,
    UnbindResp,
    agent_writes_proxy_headers,
)
from protocol.wire.errors import ErrorCode

if TYPE_CHECKING:
    from edge.tunnels.session import AgentSession

log = logging.getLogger(__name__)

#: ProxyHeader.EdgeType by endpoint protocol: ngrok's legacy enum (1 TCP, 2 TLS, 3 HTTPS) as
#: a decimal string; ngrok-rust reads http endpoints' streams the same way as https ones.
EDGE_TYPES = {"tcp": "1", "tls": "2", "https": "3", "http": "3"}
#: An RPC request body must arrive this quickly once its stream is open.
RPC_TIMEOUT = 10.0


@dataclass(slots=True)
class BoundEndpoint:
    """One endpoint this session serves: the registry's endpoint, this session's member of it,
    and the tcp listeners it holds (public tcp only)."""

    endpoint: Endpoint
    member: Member
    listeners: list[trio.SocketListener]
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    # The background refresh of its policy's JWKS keys (jwt-validation), if it has any.
    keys_scope: trio.CancelScope = field(default_factory=trio.CancelScope)


def _raise_if_refused(decision: decisions.Accepted | Refused) -> None:
    """Turn a Bind check's refusal into the `BindRefused` that `serve_bind` answers with."""
    if isinstance(decision, Refused):
        raise BindRefused(decision.message, decision.code)


class SessionEndpoints:
    """The endpoints bound through one `AgentSession`, by bind id."""

    def __init__(self, session: AgentSession) -> None:
        self._session = session
        self.hub = session.hub
        self._endpoints: dict[str, BoundEndpoint] = {}
        limits = self.hub.config.limits
        #: Each endpoint's proxy streams, capped at its share of the session's streams.
        self.shares = StreamShares(
            session_limit=limits.max_streams_per_session, percent=limits.endpoint_stream_percent
        )
        #: The session's nursery while it runs: bound endpoints' tasks start there.
        self.nursery: trio.Nursery | None = None

    def __len__(self) -> int:
        return len(self._endpoints)

    async def serve_bind(self, stream: MuxStream) -> None:
        assert self._session.codec is not None
        with trio.fail_after(RPC_TIMEOUT):
            bind, _ = await read_message(stream, Bind, self._session.codec)
        try:
            response = await self._bind(bind)
        except BindRefused as exc:
            log.warning(
                "session %s: bind refused: %s (%s)",
                self._session.id,
                exc.message,
                exc.code,
                extra={"session": self._session.id, "code": exc.code},
            )
            self.hub.metrics.refused("bind", exc.code or "")
            response = BindResp(id=bind.id, proto=bind.proto, opts=bind.opts, error=exc.wire())
        await respond(stream, response, self._session.codec)

    async def _bind(self, bind: Bind) -> BindResp:
        credential, auth = self._session.credential, self._session.auth
        assert credential is not None and auth is not None
        _raise_if_refused(
            decisions.check_endpoint_cap(
                bound=len(self._endpoints),
                session_limit=self.hub.config.limits.max_endpoints_per_session,
                credential_limit=credential.max_endpoints,
            )
        )
        _raise_if_refused(
            decisions.check_options(
                bind, agent_writes_proxy_headers=agent_writes_proxy_headers(auth)
            )
        )
        target = self.hub.binder.resolve(bind)
        _raise_if_refused(decisions.check_acl(credential.acl, url=target.url, host=target.host))
        policy = decisions.decide_policy(bind, target.scheme, binding=target.binding)
        if isinstance(policy, Refused):
            raise BindRefused(policy.message, policy.code)
        previous = self._endpoints.get(bind.id) if bind.id else None
        if previous is not None and previous.endpoint.url == target.url:
            # The same bind id asking for its own URL again: replace, don't refuse.
            self.release(self._endpoints.pop(bind.id))
        existing = self.hub.registry.lookup(target.url)
        pooling = bind.extra.pooling_enabled
        if existing is not None:  # a cloud endpoint's URL: ERR_NGROK_334 naming it and the fix
            conflict = agent_bind_conflict(existing, url=target.url, pooling_enabled=pooling)
            if conflict is not None:
                _raise_if_refused(conflict)
        _raise_if_refused(
            decisions.check_not_bound(
                target.url,
                online=existing is not None,
                pooling_enabled=pooling,
                pool_open=existing is not None and existing.pooling,
            )
        )
        listeners: list[trio.SocketListener] = []
        if target.scheme == "tcp" and target.binding == "public" and existing is None:
            assert target.port is not None
            try:
                listeners = await open_tcp_endpoint_listeners(
                    self.hub.config.tcp.bind_host, target.port
                )
            except OSError as exc:
                refused = decisions.port_in_use(target.port, str(exc.strerror))
                raise BindRefused(refused.message, refused.code) from exc
        bind_id = bind.id or self.hub.new_id("tun")
        token = bind.extra.token or self.hub.new_token(24)
        proto = target.scheme

        async def opener(client_addr: str) -> trio.abc.HalfCloseableStream:
            return await self.open_proxy(bind_id, proto, client_addr)

        member = Member(
            bind_id=bind_id,
            token=token,
            session_id=self._session.id,
            client_id=self._session.client_id,
            forwards_to=bind.forwards_to,
            opener=opener,
            pooling=pooling,
            agent_addr=self._session.peer,
            policy=(
                AttachedPolicy(policy.compiled, policy.text, events=self.hub.events)
                if policy is not None
                else None
            ),
        )
        endpoint = Endpoint(
            url=target.url,
            proto=proto,
            binding=target.binding,
            host=target.host,
            port=target.port if target.binding == "public" else None,
            members=(member,),
            runtime=self.hub.registry.runtime,
        )
        old = self._endpoints.pop(bind_id, None)
        if old is not None:
            self.release(old)
        try:
            endpoint = self.hub.registry.add(endpoint)
        except KeyError:  # joined a pool that a concurrent Bind closed: defensive
            for listener in listeners:
                listener.socket.close()
            raise BindRefused(
                f"The endpoint '{target.url}' changed while it was being bound; try again.",
                errcodes.ERR_NGROK_334,
            ) from None
        bound = BoundEndpoint(endpoint, member, [])
        self._endpoints[bind_id] = bound
        if listeners:
            port = SharedPort(target.url, listeners)
            self.hub.tcp_ports[target.url] = port
            assert self.nursery is not None
            self.nursery.start_soon(self._serve_tcp, port)
        if member.policy is not None and jwks_urls(member.policy.compiled):
            assert self.nursery is not None
            self.nursery.start_soon(self._keep_jwks, bound, member.policy)
        # http, https and tls endpoints are served by the front door, which finds them in the
        # registry by Host or SNI. Internal endpoints get no public route at all: only
        # forward-internal (a Traffic Policy action, `edge.policy.forward_internal`) reaches them.
        log.info(
            "session %s bound %s (%s, id %s%s)",
            self._session.id,
            target.url,
            target.binding,
            bind_id,
            ", with a traffic policy" if policy is not None else "",
            extra={"session": self._session.id, "endpoint": target.url},
        )
        self._session.write_event(
            audit.endpoint_bound(
                credential,
                session_id=self._session.id,
                url=endpoint.url,
                proto=endpoint.proto,
                binding=endpoint.binding,
            )
        )
        url = self.hub.public_url(endpoint)
        opts = dict(bind.opts)
        if target.scheme == "tcp":
            opts["Addr"] = url.removeprefix("tcp://")
        opts["URL"] = url
        opts.setdefault("ProxyProto", 0)
        return BindResp(
            id=bind_id,
            url=url,
            proto=target.scheme,
            opts=opts,
            extra=BindRespExtra(token=token),
        )

    async def _serve_tcp(self, port: SharedPort) -> None:
        """Serve a public tcp port this session's Bind opened, for as long as the endpoint (its
        pool) is online. Its connections run in the hub's nursery when the server gave one, so
        they outlive this session (the pool's other members carry them); else in this
        session's."""
        limits = self.hub.config.limits
        internal = InternalTargets(self.hub.registry, limits.forward_internal_max_hops)
        if self.hub.nursery is None:
            assert self.nursery is not None
            await serve_shared_port(
                port,
                self.hub.registry,
                connections=self.nursery,
                internal=internal,
                metrics=self.hub.metrics,
            )
            return
        # The accepting itself moves to the hub's nursery too: this session may end first.
        self.hub.nursery.start_soon(
            partial(
                serve_shared_port,
                port,
                self.hub.registry,
                connections=self.hub.nursery,
                internal=internal,
                metrics=self.hub.metrics,
            )
        )

    async def _keep_jwks(self, bound: BoundEndpoint, policy: AttachedPolicy) -> None:
        """Fetch and refresh the policy's JWKS keys in the background until the endpoint is
        released (`edge.policy.jwks_fetch`); requests never wait for it."""
        with bound.keys_scope:
            urls = jwks_urls(policy.compiled)
            await keep_jwks_fresh(urls, policy.state.jwks, config=self.hub.config.jwks)

    async def open_proxy(
        self, bind_id: str, proto: str, client_addr: str
    ) -> trio.abc.HalfCloseableStream:
        """A proxy stream (type 3) to the agent for one public connection or HTTP exchange to
        the endpoint bound as `bind_id`, its ProxyHeader written (§8.8); closing it gives its
        endpoint's share back (`edge.tunnels.stream_shares`).
        `StreamLimitError` if the endpoint holds its share of the session's streams or the
        session holds `limits.max_streams_per_session`; `trio.BrokenResourceError` if the
        session is gone. On cancellation or any error the stream is closed before this raises."""
        shares = self.shares
        if not shares.take(bind_id):
            raise StreamLimitError(
                f"endpoint {bind_id} holds {shares.per_endpoint} streams, its share of "
                "limits.max_streams_per_session (limits.endpoint_stream_percent)"
            )
        try:
            stream = await self._session.mux.open_typed_stream(StreamType.PROXY)
        except trio.BrokenResourceError as exc:
            shares.give_back(bind_id)
            if reset_code(exc) == ErrorCode.STREAMS_EXHAUSTED:
                raise StreamLimitError(f"the agent session is at its stream limit: {exc}") from exc
            raise
        except BaseException:
            shares.give_back(bind_id)
            raise
        shared = SharedStream(stream, shares, bind_id, metrics=self.hub.metrics, proto=proto)
        header = ProxyHeader(
            id=bind_id,
            client_addr=client_addr,
            proto=proto,
            edge_type=EDGE_TYPES[proto],
            passthrough_tls=proto == "tls",
        )
        try:
            await stream.send_all(encode_proxy_header(header, self._session.codec or Codec.JSON))
        except BaseException:
            stream.close_now()
            await trio.aclose_forcefully(shared)
            raise
        return shared

    async def serve_unbind(self, stream: MuxStream) -> None:
        assert self._session.codec is not None
        with trio.fail_after(RPC_TIMEOUT):
            unbind, _ = await read_message(stream, Unbind, self._session.codec)
        endpoint = self._endpoints.pop(unbind.id, None)
        if endpoint is None:
            error = errcodes.format_wire_error(
                f"No endpoint with id '{unbind.id}' in this session.", errcodes.ERR_NGROK_3209
            )
            await respond(stream, UnbindResp(error=error), self._session.codec)
            return
        self.release(endpoint)
        log.info(
            "session %s unbound %s",
            self._session.id,
            endpoint.endpoint.url,
            extra={"session": self._session.id, "endpoint": endpoint.endpoint.url},
        )
        await respond(stream, UnbindResp(), self._session.codec)

    def release(self, endpoint: BoundEndpoint) -> None:
        """Forget the endpoint and free its port now: the listening sockets close in this step
        (not when its tasks finish unwinding), so the URL can be bound again at once."""
        url = endpoint.endpoint.url
        reason = self._session.stop_reason or "unbound"
        removed = self.hub.registry.remove(url, endpoint.member, reason=reason)
        port = self.hub.tcp_ports.get(url)
        if port is not None and self.hub.registry.lookup(url) is None:  # the pool's last member
            del self.hub.tcp_ports[url]
            port.close()
        if removed:
            assert self._session.credential is not None  # nothing is bound before Auth
            self._session.write_event(
                audit.endpoint_unbound(
                    self._session.credential,
                    session_id=self._session.id,
                    url=endpoint.endpoint.url,
                    proto=endpoint.endpoint.proto,
                    binding=endpoint.endpoint.binding,
                    reason=self._session.stop_reason or "unbound",
                )
            )
        endpoint.scope.cancel()
        endpoint.keys_scope.cancel()
        for listener in endpoint.listeners:
            listener.socket.close()

    def release_all(self) -> None:
        for endpoint in self._endpoints.values():
            self.release(endpoint)
