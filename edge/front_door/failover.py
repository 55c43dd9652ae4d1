"""A new tcp:// or tls:// connection to a pool: moved to another member when the first one's
agent refuses it before anything came back.

Theory of operation. Opening a proxy stream can fail outright (the member's session is gone):
`Endpoint.open_proxy` already retries that on another member. But an agent that cannot reach
its upstream (ERR_NGROK_8012) learns so only after the stream is open, and answers by resetting
the stream STREAM_REFUSED (and an agent that said GOAWAY before it saw the stream never serves
it: REMOTE_GONE_AWAY). By then the client may have sent its first bytes (a ClientHello, a
database startup message), and they went to that agent, which dropped them: no byte reached an
upstream. So until the agent sends its first byte, `first_answer` keeps a copy of what the
client sent (at most `REPLAY_LIMIT`); if the stream is refused in that window and another
member can take the connection, a stream is opened to it and the copy is replayed there, once.
The client sees nothing but a slightly later first answer.

Once the agent sends a byte, the client closes its side, the copy would exceed `REPLAY_LIMIT`,
or the connection was retried once already, the connection is spliced as usual; a failure from
then on ends it (a raw TCP client has no other way to be told). Only a plain socket client is
watched this way: cancelling a receive on a TLS stream the edge terminated would break it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import trio

from edge.endpoints.registry import PoolStream
from protocol.adapters.mux import reset_code
from protocol.formats.units import KiB
from protocol.wire.errors import ErrorCode

__all__ = ["REPLAY_LIMIT", "Answered", "first_answer"]

log = logging.getLogger(__name__)

#: Client bytes kept for a replay while the agent has not answered: a first flight (a TLS
#: ClientHello, a database startup message, an HTTP request head) fits many times over; a
#: client that sends more before any answer is streaming, and is not retried.
REPLAY_LIMIT = 64 * KiB
#: Resets that mean no byte reached an upstream: the agent refused the stream (it could not
#: reach its upstream), or said GOAWAY before it saw the stream.
_NEVER_SERVED = frozenset({ErrorCode.STREAM_REFUSED, ErrorCode.REMOTE_GONE_AWAY})
#: Client bytes read at a time while waiting for the agent's first answer.
_READ_SIZE = 16 * KiB


@dataclass(frozen=True, slots=True)
class Answered:
    """Where the connection goes on from: the stream (perhaps to another member than the one
    first opened) and the agent's first bytes, already read (to send to the client first;
    b"" when the agent closed its side, or when watching stopped before any answer)."""

    stream: trio.abc.HalfCloseableStream
    first: bytes | bytearray


async def first_answer(
    client: trio.abc.Stream,
    stream: PoolStream,
    *,
    sent: bytes | bytearray,
    client_addr: str,
) -> Answered | None:
    """Watch the connection until the agent's first answer (see the module docstring); `sent`
    is what was already written to `stream` (the peeked ClientHello, say). Returns where to
    splice from, or None after closing both when the stream failed and no retry was possible.
    Cancellation propagates, after closing the stream it holds."""
    copy = bytearray(sent)
    retried = False
    current: trio.abc.HalfCloseableStream = stream
    try:
        while True:
            outcome = await _watch(client, current, copy)
            if isinstance(outcome, bytes | bytearray):
                return Answered(current, outcome)
            if outcome is None:  # stopped watching: the client's side will be spliced on
                return Answered(current, b"")
            refused = reset_code(outcome) in _NEVER_SERVED
            endpoint, member = stream.endpoint, stream.member
            # Only to a member with the same policy: the connection's on_tcp_connect ran for
            # this one (`edge.front_door.forwarding.admit_to`), never for the others.
            other = (
                endpoint.pick(exclude=(member,), like=member) if refused and not retried else None
            )
            if other is None:
                log.info(
                    "endpoint %s: connection from %s failed: %s", endpoint.url, client_addr, outcome
                )
                await trio.aclose_forcefully(current)
                await trio.aclose_forcefully(client)
                return None
            log.info(
                "endpoint %s: member %s refused the connection from %s; retrying on %s",
                endpoint.url,
                member.session_id or member.bind_id,
                client_addr,
                other.session_id or other.bind_id,
            )
            await trio.aclose_forcefully(current)
            retried = True
            try:
                current = await endpoint.open_proxy(client_addr, first=other)
                if copy:
                    await current.send_all(copy)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                log.info("endpoint %s: retry for %s failed: %s", endpoint.url, client_addr, exc)
                await trio.aclose_forcefully(current)
                await trio.aclose_forcefully(client)
                return None
            if not isinstance(current, PoolStream):  # defensive: nothing to watch
                return Answered(current, b"")
            stream = current
    except BaseException:
        await trio.aclose_forcefully(current)
        raise


async def _watch(
    client: trio.abc.Stream, stream: trio.abc.HalfCloseableStream, copy: bytearray
) -> bytes | bytearray | trio.BrokenResourceError | None:
    """Forward the client's bytes to `stream` (appending them to `copy`) while waiting for the
    agent's first bytes: those bytes (b"" for the agent's EOF), the stream's failure, or None
    when watching stopped first (the client's EOF, `copy` past `REPLAY_LIMIT`, or the client's
    connection failed: the splice then sees it for itself)."""
    answer: bytes | bytearray | trio.BrokenResourceError | None = None
    answered = False

    async def agent_side() -> None:
        nonlocal answer, answered
        try:
            answer = await stream.receive_some(_READ_SIZE)
        except trio.BrokenResourceError as exc:
            answer = exc
        except trio.ClosedResourceError:
            answer = None
        answered = True

    async def client_side(cancel: trio.CancelScope) -> None:
        while not answered:
            with trio.CancelScope() as reading:
                receiving[0] = reading
                try:
                    data = await client.receive_some(_READ_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
            receiving[0] = None
            if reading.cancelled_caught:
                return
            if not data:  # the client's EOF stays unread: the splice reads it again
                cancel.cancel()
                return
            # A read can complete just as the agent's answer arrives (a socket read returns
            # what it took even if its scope was cancelled meanwhile): those bytes left the
            # client's socket, so they are kept for a replay and, unless the stream failed,
            # sent on it; dropping them would leave the client waiting for an answer to them.
            copy.extend(data)
            if isinstance(answer, trio.BrokenResourceError):
                return  # the stream failed: a retry replays `copy`
            try:
                await stream.send_all(data)  # never cancelled midway: no byte half-sent
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return  # the agent side sees the same failure and reports it
            if answered:
                return
            if len(copy) > REPLAY_LIMIT:
                cancel.cancel()
                return

    receiving: list[trio.CancelScope | None] = [None]
    async with trio.open_nursery() as nursery:
        agent_scope = trio.CancelScope()

        async def run_agent_side() -> None:
            with agent_scope:
                await agent_side()
            reading = receiving[0]
            if reading is not None:
                reading.cancel()

        nursery.start_soon(run_agent_side)
        nursery.start_soon(client_side, agent_scope)
    return answer if answered else None
