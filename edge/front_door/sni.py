"""The front door's decision for a TLS connection, from its ClientHello's SNI alone.

Pure: a name and what is online in, one of four routes out. `listeners.FrontDoor` acts on it
(the I/O shell): the connect host goes to an agent session, a `tls://` endpoint gets the raw
bytes, an `https://` endpoint has TLS terminated at the edge, and anything else is refused
with `unrecognized_name`. The `on_tcp_connect` Traffic Policy phase runs on this decision's
result (`edge.front_door.connect_policy`).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from edge.endpoints.registry import Endpoint, EndpointRegistry


@dataclass(frozen=True, slots=True)
class ToAgent:
    """The connect host (or `localhost`): an agent's session; the edge terminates TLS."""


@dataclass(frozen=True, slots=True)
class Passthrough:
    """A public `tls://` endpoint: its agent gets every byte, the ClientHello included."""

    endpoint: Endpoint


@dataclass(frozen=True, slots=True)
class Terminate:
    """A public `https://` endpoint: the edge terminates TLS for `host`, then speaks HTTP.
    `endpoint` is the endpoint the name found (its `on_tcp_connect` runs before the handshake)."""

    host: str
    endpoint: Endpoint | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Refuse:
    """No SNI, or a name nothing public serves: a fatal `unrecognized_name` alert."""


SniRoute = ToAgent | Passthrough | Terminate | Refuse


def route_sni(
    sni: str | None, *, agent_names: Collection[str], registry: EndpointRegistry
) -> SniRoute:
    """Where a TLS connection for `sni` goes. A `tls://` endpoint wins over an `https://` one
    of the same name; internal endpoints are never found (the registry's public lookup)."""
    if sni is None:
        return Refuse()
    if sni in agent_names:
        return ToAgent()
    endpoint = registry.lookup_public("tls", sni)
    if endpoint is not None:
        return Passthrough(endpoint)
    endpoint = registry.lookup_public("https", sni)
    if endpoint is not None:
        return Terminate(sni, endpoint)
    return Refuse()
