"""Replaying a captured request: the agent sends it to the endpoint's upstream again.

The request goes the way the original's bytes went (`agent.upstream.open_upstream` with the
endpoint's route: TCP, the PROXY header with the original client's address if the endpoint
writes one, TLS for an https upstream), straight from the agent, as ngrok's replay does: the
edge and its Traffic Policy are not involved. The head is sent as captured (the edge's
`X-Forwarded-*` headers included) with its framing rewritten: the kept body with a
`Content-Length`, and `Connection: close` so that the upstream's answer ends with the
connection. The replay is captured like any request, so it shows in the inspector with its
response; the answer itself goes nowhere else.

`replay` raises ReplayError (the message says why) if the head cannot be re-sent or the
upstream cannot be reached; cancellation propagates; the upstream connection is always closed.
"""

from __future__ import annotations

import h11
import trio

from agent.forward import UPSTREAM_CONNECT_TIMEOUT, Route
from agent.inspector.capture import CaptureStore, ConnectionCapture, Exchange
from agent.inspector.render import parse_request_head
from agent.inspector.tap import TapStream, wall_and_monotonic
from agent.upstream import UpstreamError, open_upstream
from protocol.formats.proxy_protocol import SocketAddress

__all__ = ["REPLAY_TIMEOUT", "ReplayError", "replay", "replay_bytes"]

#: A replay gets this long, dial to the end of the answer; a healthy local service answers in
#: milliseconds, and the API caller waits for the replay to finish.
REPLAY_TIMEOUT = 30.0
#: Read size while draining the upstream's answer.
_READ = 64 * 1024
#: Framing headers the replay rewrites.
_FRAMING = (b"content-length", b"transfer-encoding", b"connection", b"keep-alive")


class ReplayError(Exception):
    """The request could not be replayed; the message says why."""


def replay_bytes(exchange: Exchange) -> bytes:
    """The request of `exchange` as it will be sent again. Raises ReplayError."""
    request = parse_request_head(exchange.request.head)
    if request is None:
        raise ReplayError("the captured request head is not valid HTTP/1.1")
    body = exchange.request.body
    headers = [(n, v) for n, v in request.headers.raw_items() if n.lower() not in _FRAMING]
    if body or request.method in (b"POST", b"PUT", b"PATCH"):
        headers.append((b"Content-Length", str(len(body)).encode()))
    headers.append((b"Connection", b"close"))
    client = h11.Connection(h11.CLIENT)
    try:
        head = h11.Request(method=request.method, target=request.target, headers=headers)
        data = client.send(head) or b""
        if body:
            data += client.send(h11.Data(data=body)) or b""
        data += client.send(h11.EndOfMessage()) or b""
    except h11.LocalProtocolError as exc:
        raise ReplayError(f"the captured request cannot be sent again: {exc}") from None
    return data


async def replay(
    exchange: Exchange,
    route: Route,
    store: CaptureStore,
    *,
    connect_timeout: float = UPSTREAM_CONNECT_TIMEOUT,
    deadline: float = REPLAY_TIMEOUT,
) -> Exchange:
    """Send `exchange`'s request to `route`'s upstream and read the answer; returns the new
    exchange the replay was captured as. Raises ReplayError."""
    data = replay_bytes(exchange)
    proxy = None
    if route.proxy_protocol is not None:
        try:
            proxy = (route.proxy_protocol, SocketAddress.parse(exchange.remote_addr))
        except ValueError:
            raise ReplayError(
                f"endpoint {route.name} writes a PROXY header, and the original client address "
                f"{exchange.remote_addr!r} is not ip:port"
            ) from None
    capture = ConnectionCapture(
        store, tunnel_name=route.name, remote_addr=exchange.remote_addr, clock=wall_and_monotonic
    )
    try:
        with trio.fail_after(deadline):
            upstream = await open_upstream(
                route.upstream, connect_timeout=connect_timeout, tls=route.upstream_tls, proxy=proxy
            )
            tapped = TapStream(upstream, capture, capture.response_bytes)
            try:
                capture.request_bytes(data)
                await tapped.send_all(data)
                while await tapped.receive_some(_READ):
                    pass
            finally:
                await trio.aclose_forcefully(upstream)
    except UpstreamError as exc:
        raise ReplayError(f"cannot reach the upstream of {route.name}: {exc}") from None
    except trio.TooSlowError:
        raise ReplayError(f"the upstream did not answer within {deadline:g}s") from None
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        raise ReplayError(f"the upstream connection failed: {exc}") from None
    if not capture.exchanges:
        raise ReplayError("the replayed request was not captured")
    replayed = capture.exchanges[0]
    replayed.replay_of = exchange.id
    return replayed
