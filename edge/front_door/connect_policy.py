"""Traffic Policy's `on_tcp_connect` phase, run when a public connection reaches an endpoint.

The front door runs the phase (`edge.front_door.forwarding.admit_to`, and `admit` for https://
endpoints, where no internal tls/tcp target can be reached) once it knows the connection's
endpoint and before anything is forwarded or answered: at accept for a tcp:// endpoint (its port
names it), after the SNI decision for a tls:// endpoint (passthrough), and before the TLS
handshake for an https:// endpoint (its SNI names it). A `Close` outcome closes the connection
at once, without a TLS alert or handshake. This module holds what that shell builds on: the
engine's facts (`conn_facts`, `endpoint_facts`, pure), the connection's local address, and
`emit_record`, which writes the policy's log records (and any runtime failure) to the edge's log
at INFO with the phase, the rule's place and the metadata, and to the event stream.
"""

from __future__ import annotations

import json
import logging

import trio

from edge.endpoints.registry import AttachedPolicy, Endpoint
from edge.policy.activation import ConnFacts, EndpointFacts
from edge.policy.phase import LogRecord

log = logging.getLogger(__name__)

__all__ = ["conn_facts", "emit_record", "endpoint_facts", "local_address"]


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


def local_address(conn: trio.SocketStream) -> tuple[str, int] | None:
    """The connection's own (server-side) address, or None if the socket was already reset."""
    try:
        local = conn.socket.getsockname()
    except OSError:
        return None
    return str(local[0]), int(local[1])


def emit_record(endpoint: Endpoint, attached: AttachedPolicy, record: LogRecord) -> None:
    """One record of `attached` (the policy that ran: in a pool, the chosen member's) as one
    INFO line: its place (which names the phase, rule and action) and its metadata as JSON; a
    runtime failure's record also names its code. A `log` action's record is also recorded as
    an event when the policy has an event log."""
    metadata = json.dumps(dict(record.metadata), default=str, sort_keys=True)
    failed = f" failed ({record.error_code})" if record.error_code is not None else ""
    log.info("endpoint %s: policy %s%s: %s", endpoint.url, record.place, failed, metadata)
    if record.error_code is None and attached is not None and attached.events is not None:
        attached.events.record_policy_log(
            endpoint_url=endpoint.url,
            phase=record.phase,
            place=record.place,
            metadata=dict(record.metadata),
        )
