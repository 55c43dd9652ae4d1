"""When an HTTP request whose agent stream failed may go to another member of its pool: the one
rule both shells (`edge/http/h1/proxy.py`, `edge/http/h2/stream.py`) follow.

A request is sent again, once, to another member only when no byte of it can have reached an
upstream and no byte of a response came back, which the way the agent ended the stream tells:

- REMOTE_GONE_AWAY: the agent was going away and never handled the stream. Any request whose
  whole head is in hand and that has no body may go elsewhere.
- STREAM_REFUSED: the agent could not reach its upstream (ERR_NGROK_8012). The agent dialled
  and failed before it sent anything, but an upstream that took the connection and then went
  away looks the same to the edge, so only an idempotent request without a body
  (`REPLAYABLE_METHODS`) goes elsewhere.

Anything else (an upstream that reset or closed mid-request, a bad response, a request with a
body that was already streamed) is answered with its error page. Whether another member is
there to take it is the pool's question (`edge.http.routing.retry_elsewhere`).
"""

from __future__ import annotations

from protocol.adapters.mux import reset_code
from protocol.wire.errors import ErrorCode

__all__ = ["REPLAYABLE_METHODS", "agent_reset", "may_move"]

#: Methods that may be sent twice (RFC 9110 §9.2.2, as Go's transport counts them); only these,
#: without a body, are retried on a fresh stream when a reused one turns out to be dead, or on
#: another pool member after the agent could not reach its upstream (8012).
REPLAYABLE_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE"})


def agent_reset(failure: BaseException) -> int | None:
    """The muxado code the agent ended the stream with, behind a relay failure (an
    `AgentStreamError` raised from the agent stream's `BrokenResourceError`); None when the
    failure was no reset from the agent (an EOF, a bad response, anything else)."""
    cause = failure.__cause__
    return None if cause is None else reset_code(cause)


def may_move(
    reset: int | None, *, method: bytes, bodiless: bool, answered: bool, moved: bool
) -> bool:
    """Whether a request whose agent stream ended with the code `reset` may be sent to another
    pool member: not once it `moved` already (one retry per request), not when any byte of a
    response came back (`answered`); after REMOTE_GONE_AWAY when it is `bodiless` (the whole
    request is in hand and has no body); after STREAM_REFUSED only when it is also idempotent
    (`method` in `REPLAYABLE_METHODS`)."""
    if moved or answered or not bodiless:
        return False
    if reset == ErrorCode.REMOTE_GONE_AWAY:
        return True
    return reset == ErrorCode.STREAM_REFUSED and method in REPLAYABLE_METHODS
