"""forward-internal on `on_tcp_connect`: which endpoint a public tcp:// or tls:// connection is
finally handed to.

Theory of operation. `admit_to` runs the `on_tcp_connect` policy of the endpoint a connection
reached (`admit` for an https:// endpoint). When that policy runs forward-internal,
the connection goes to the internal tls/tcp endpoint it names instead (`InternalTargets.lookup`),
and *that* endpoint's `on_tcp_connect` runs in turn, and so on: the endpoint whose policy lets
the connection through (or that has none) is the one the caller splices the client to. Nothing
is read from or written to the connection here, so the bytes the caller already peeked (a
ClientHello) and everything after them reach the target's agent untouched: the edge never
terminates a forwarded tls:// connection and never sees its plaintext.

A forward the check refuses (`edge.policy.forward_internal.chain_check`: the target offline,
ERR_NGROK_3200; a loop or a chain past `limits.forward_internal_max_hops`, ERR_NGROK_3501) closes
the connection (TCP and TLS have no error page; ngrok closes too) unless the policy said
`on_error: continue`, and is logged at INFO with its code. Never raises for a policy outcome.

Pools. ngrok picks a pool's member first and then runs *its* policy (traffic-policy.md §2), so
`admit_to` picks the member of each endpoint on the way (`Endpoint.pick`) and runs that
member's `on_tcp_connect`; the caller opens the stream to that member, or to one with the same
policy (`Endpoint.open_proxy(like=...)`), never to a member whose own policy did not run.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import trio

from edge.admin.metrics import EdgeMetrics, tcp_close_code
from edge.endpoints.registry import Endpoint, EndpointRegistry, Member
from edge.front_door.connect_policy import conn_facts, emit_record, endpoint_facts, local_address
from edge.policy.actions_tls import TerminateTlsConfig
from edge.policy.engine import Close, Continue, run_tcp_connect
from edge.policy.forward_internal import TCP_TARGETS, ForwardCheck, candidate_urls, chain_check
from protocol.formats.urls import format_host_port

log = logging.getLogger(__name__)

__all__ = ["InternalTargets", "admit", "admit_to"]


@dataclass(frozen=True, slots=True)
class InternalTargets:
    """The internal tls/tcp endpoints a connection may be forwarded to, and the chain limit."""

    registry: EndpointRegistry
    max_hops: int

    def lookup(self, url: str) -> Endpoint | None:
        """The online internal tls/tcp endpoint serving the canonical URL `url` (the exact one
        first, then the closest wildcard), or None."""
        for candidate in candidate_urls(url):
            endpoint = self.registry.lookup(candidate)
            if (
                endpoint is not None
                and endpoint.binding == "internal"
                and endpoint.proto in TCP_TARGETS
                and endpoint.pick() is not None
            ):
                return endpoint
        return None

    def check(self, chain: tuple[str, ...]) -> ForwardCheck:
        """forward-internal's check for the policy of the last endpoint of `chain`."""
        return chain_check(
            chain, max_hops=self.max_hops, online=lambda url: self.lookup(url) is not None
        )


async def admit_to(
    conn: trio.SocketStream,
    endpoint: Endpoint,
    peer: tuple[str, int],
    *,
    sni: str | None = None,
    internal: InternalTargets | None = None,
    metrics: EdgeMetrics | None = None,
) -> tuple[Endpoint, Member | None, bool | TerminateTlsConfig]:
    """Run `on_tcp_connect` of `endpoint` (and of every internal endpoint a forward-internal
    hands the connection to) for `conn` from `peer`: the endpoint to splice the connection to,
    the member of it whose policy ran (None when it has no live member: opening a stream then
    fails as usual), and what `connect_policy.admit` would say of it: True (go on), a
    `TerminateTlsConfig` (go on, terminating TLS first: the last endpoint's policy ran
    terminate-tls) or False (the connection was closed: a policy closed it, a forward failed, or
    its local address could not be read because it was already reset; the caller must not use
    it). Without `internal`, every forward fails (ERR_NGROK_3200). Each closed connection is
    counted in `metrics` as a `policy` refusal (`edge.admin.metrics.tcp_close_code`)."""
    chain: tuple[str, ...] = ()
    local: tuple[str, int] | None = None
    current = endpoint
    while True:
        member = current.pick()
        attached = member.policy if member is not None else None
        if attached is None or not attached.compiled.on_tcp_connect:
            return current, member, True
        if local is None:
            local = local_address(conn)
            if local is None:
                await trio.aclose_forcefully(conn)
                return current, member, False
        chain = (*chain, current.url)
        now = time.time()
        check = internal.check(chain) if internal is not None else _unavailable
        outcome = run_tcp_connect(
            attached.compiled,
            conn_facts(peer, local, sni=sni, started_at=now),
            endpoint=endpoint_facts(current, local[1]),
            now=now,
            state=attached.state,
            forward_check=check,
        )
        for record in outcome.logs:
            emit_record(current, attached, record)
        if isinstance(outcome, Close):
            log.info(
                "endpoint %s: connection from %s closed by its traffic policy (%s)",
                current.url,
                format_host_port(*peer),
                outcome.reason,
            )
            if metrics is not None:
                metrics.refused("policy", tcp_close_code(outcome.reason))
            await trio.aclose_forcefully(conn)
            return current, member, False
        if isinstance(outcome, Continue):
            return current, member, outcome.terminate_tls or True
        target = None
        if outcome.error is None and internal is not None:
            target = internal.lookup(outcome.url)
        if target is None:
            if outcome.error is not None:
                code, message = outcome.error
            elif internal is None:
                code, message = _unavailable(outcome.url)
            else:  # the check saw it online in this same step: defensive
                code, message = "ERR_NGROK_3200", f"The internal endpoint {outcome.url} is offline."
            log.info(
                "endpoint %s: forward-internal of the connection from %s failed (%s): %s",
                current.url,
                format_host_port(*peer),
                code,
                message,
            )
            if metrics is not None:
                metrics.refused("policy", tcp_close_code(code))
            await trio.aclose_forcefully(conn)
            return current, member, False
        log.debug("endpoint %s: connection forwarded to %s", current.url, target.url)
        current = target


async def admit(
    conn: trio.SocketStream,
    endpoint: Endpoint,
    peer: tuple[str, int],
    *,
    sni: str | None = None,
    metrics: EdgeMetrics | None = None,
) -> tuple[bool | TerminateTlsConfig, Member | None]:
    """`on_tcp_connect` for an https:// endpoint's connection, before its TLS handshake: True
    (go on) or False (closed; the caller must not use it), and the member whose rules decided
    (None if the endpoint has no live member): the connection's requests must go only to
    members with the same rules (`edge.http.routing.EndpointRouter.admitted`), also when it had
    none (a member that joins with restrict-ips must not serve a connection nobody checked).
    No internal tls/tcp endpoint can take an https:// connection, so a forward-internal fails
    (`on_error: continue` goes on to the next rule, as anywhere else)."""
    _, member, admitted = await admit_to(conn, endpoint, peer, sni=sni, metrics=metrics)
    return admitted, member


def _unavailable(url: str) -> tuple[str, str]:
    """The check where no internal endpoint can be reached (an https endpoint's connection)."""
    return (
        "ERR_NGROK_3200",
        f"{url}: forward-internal on on_tcp_connect reaches internal endpoints only from tls:// "
        "and tcp:// endpoints",
    )
