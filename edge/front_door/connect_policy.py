"""Traffic Policy's `on_tcp_connect` phase, run when a public connection reaches an endpoint.

The front door calls `admit` once it knows the connection's endpoint and before anything is
forwarded or answered: at accept for a tcp:// endpoint (its port names it), after the SNI
decision for a tls:// endpoint (passthrough), and before the TLS handshake for an https://
endpoint (its SNI names it). A `Close` outcome closes the connection at once, without a TLS
alert or handshake; the policy's log records (and any runtime failure) go to the edge's log at
INFO, with the phase, the rule's place and the metadata. For tcp:// and tls:// endpoints the
phase runs in `edge.front_door.forwarding.admit_to` (the same, and it follows forward-internal to
an internal endpoint); `admit` serves https:// endpoints, where a forward-internal closes.

`conn_facts` and `endpoint_facts` are pure; `admit` is the I/O shell (it reads the socket's
addresses and the wall clock, logs, and closes).
"""

from __future__ import annotations

import json
import logging
import time

import trio

from edge.endpoints.registry import Endpoint
from edge.policy.actions_tls import TerminateTlsConfig
from edge.policy.activation import ConnFacts, EndpointFacts
from edge.policy.engine import Close, Continue, ForwardInternal, run_tcp_connect
from edge.policy.phase import LogRecord
from protocol.formats.urls import format_host_port

log = logging.getLogger(__name__)

__all__ = ["admit", "conn_facts", "emit_record", "endpoint_facts"]


def conn_facts(
    peer: tuple[str, int], local: tuple[str, int], *, sni: str | None, started_at: float
) -> ConnFacts:
    """`conn.*` for a connection from `peer` to the edge's `local` address (no TLS terminated
    yet, so no version or cipher)."""
    return ConnFacts(
        client_ip=peer[0],
        client_port=peer[1],
        server_ip=local[0],
        server_port=local[1],
        sni=sni,
        started_at=started_at,
    )


def endpoint_facts(endpoint: Endpoint, local_port: int) -> EndpointFacts:
    """`endpoint.*` for `endpoint`, reached on the edge's `local_port`."""
    member = endpoint.pick()
    return EndpointFacts(
        url=endpoint.url,
        host=endpoint.host,
        port=endpoint.port if endpoint.port is not None else local_port,
        protocol=endpoint.proto,
        id=member.bind_id if member is not None else "",
    )


def _local_address(conn: trio.SocketStream) -> tuple[str, int] | None:
    try:
        local = conn.socket.getsockname()
    except OSError:
        return None
    return str(local[0]), int(local[1])


def emit_record(endpoint: Endpoint, record: LogRecord) -> None:
    """One policy log record as one INFO line: its place (which names the phase, rule and
    action) and its metadata as JSON; a runtime failure's record also names its code. A `log`
    action's record is also recorded as an event when the policy has an event log."""
    metadata = json.dumps(dict(record.metadata), default=str, sort_keys=True)
    failed = f" failed ({record.error_code})" if record.error_code is not None else ""
    log.info("endpoint %s: policy %s%s: %s", endpoint.url, record.place, failed, metadata)
    attached = endpoint.policy  # a `log` action's record is also an event (edge.events)
    if record.error_code is None and attached is not None and attached.events is not None:
        attached.events.record_policy_log(
            endpoint_url=endpoint.url,
            phase=record.phase,
            place=record.place,
            metadata=dict(record.metadata),
        )


async def admit(
    conn: trio.SocketStream,
    endpoint: Endpoint,
    peer: tuple[str, int],
    *,
    sni: str | None = None,
) -> bool | TerminateTlsConfig:
    """Run the endpoint's `on_tcp_connect` rules (if its member has a policy) for `conn` from
    `peer`. True: go on. False: the connection was closed (the policy closed it, or its local
    address could not be read because it was already reset); the caller must not use it.
    A `TerminateTlsConfig` (truthy): go on, and terminate the client's TLS with it first
    (`edge.front_door.tls_termination`; a terminate-tls action ran).
    Never raises for a policy outcome: the engine reports failures as a `Close`."""
    attached = endpoint.policy
    if attached is None or not attached.compiled.on_tcp_connect:
        return True
    local = _local_address(conn)
    if local is None:
        await trio.aclose_forcefully(conn)
        return False
    now = time.time()
    outcome = run_tcp_connect(
        attached.compiled,
        conn_facts(peer, local, sni=sni, started_at=now),
        endpoint=endpoint_facts(endpoint, local[1]),
        now=now,
        state=attached.state,
    )
    for record in outcome.logs:
        emit_record(endpoint, record)
    if isinstance(outcome, Close):
        log.info(
            "endpoint %s: connection from %s closed by its traffic policy (%s)",
            endpoint.url,
            format_host_port(*peer),
            outcome.reason,
        )
        await trio.aclose_forcefully(conn)
        return False
    if isinstance(outcome, ForwardInternal):
        # tcp:// and tls:// connections are forwarded by `edge.front_door.forwarding.admit_to`;
        # an https:// endpoint's connection has no internal tls/tcp target to go to.
        log.info(
            "endpoint %s: connection from %s closed: forward-internal to %s from on_tcp_connect "
            "works only on tls:// and tcp:// endpoints",
            endpoint.url,
            format_host_port(*peer),
            outcome.url,
        )
        await trio.aclose_forcefully(conn)
        return False
    if isinstance(outcome, Continue) and outcome.terminate_tls is not None:
        return outcome.terminate_tls
    return True
