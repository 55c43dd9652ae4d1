"""Remote management of an agent (ngrok.md §6.4, §7, §8.6): what the edge may ask of an agent
session (Stop, Restart, Update), whether the agent said it can do it, and what the admin API
answers once the agent has replied. Pure decisions; `edge.tunnels.session` sends the request.

An agent says in Auth, for each operation, whether it supports it: `StopUnsupportedError`
(likewise Restart, Update) is "" when it does, a sentence saying why not when it does not, and
null when the agent is too old to say (ngrok then refuses the operation, and so does Burrow).
A request is sent only to an agent that said "", and the admin API answers one that did not
with ngrok's code for it (ERR_NGROK_804/805/806) and the agent's own reason.

The agent answers with `{"Error": ""}` (done) or an error string (it tried and failed, or it
has no handler for the operation: ngrok's SDKs answer "the agent has not defined a callback
for this operation"); the admin API turns a failure into ERR_NGROK_807/808/809 carrying that
string. Both are the caller's business, not a fault of the edge, so they are 4xx answers with a
code (ngrok's API client turns any 5xx into a bare RuntimeError). A request that could not be
delivered or was not answered in time is ERR_NGROK_810, a 502: the edge could not reach the
agent. A Stop whose session ends before the answer arrives has done what was asked.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from protocol.rpc.messages import (
    AuthExtra,
    Restart,
    RestartResp,
    Stop,
    StopResp,
    StreamType,
    Update,
    UpdateResp,
)

__all__ = [
    "OpAnswer",
    "OpRefused",
    "RemoteOp",
    "answer_refusal",
    "op_request",
    "support_refusal",
]


class RemoteOp(enum.Enum):
    """One edge-initiated operation; the value is its admin API path segment."""

    STOP = "stop"
    RESTART = "restart"
    UPDATE = "update"

    @property
    def stream_type(self) -> StreamType:
        return _STREAM_TYPES[self]

    @property
    def response(self) -> type[StopResp | RestartResp | UpdateResp]:
        return _RESPONSES[self]

    @property
    def gerund(self) -> str:
        """As ngrok's messages say it: "remote stopping"."""
        return {"stop": "stopping", "restart": "restarting", "update": "updating"}[self.value]


_STREAM_TYPES = {
    RemoteOp.STOP: StreamType.STOP,
    RemoteOp.RESTART: StreamType.RESTART,
    RemoteOp.UPDATE: StreamType.UPDATE,
}
_RESPONSES: dict[RemoteOp, type[StopResp | RestartResp | UpdateResp]] = {
    RemoteOp.STOP: StopResp,
    RemoteOp.RESTART: RestartResp,
    RemoteOp.UPDATE: UpdateResp,
}
#: ngrok's codes: the agent does not support the operation (it said so in Auth).
UNSUPPORTED_CODES = {
    RemoteOp.RESTART: "ERR_NGROK_804",
    RemoteOp.STOP: "ERR_NGROK_805",
    RemoteOp.UPDATE: "ERR_NGROK_806",
}
#: ngrok's codes: the agent tried and answered with an error.
FAILED_CODES = {
    RemoteOp.STOP: "ERR_NGROK_807",
    RemoteOp.RESTART: "ERR_NGROK_808",
    RemoteOp.UPDATE: "ERR_NGROK_809",
}
#: ngrok's code: the request could not be delivered, or no answer came back.
ERR_NOT_DELIVERED = "ERR_NGROK_810"
#: The reason shown for an agent that sent null (too old to say whether it supports it).
TOO_OLD = "the agent does not say that it supports it (an older agent)"


@dataclass(frozen=True, kw_only=True, slots=True)
class OpRefused:
    """What the admin API answers instead of 204: an HTTP status, a code and a message."""

    status: int
    code: str
    message: str


@dataclass(frozen=True, kw_only=True, slots=True)
class OpAnswer:
    """How one request went: `error` is the agent's Error string ("" = done); `undelivered`
    is why no answer came back (None: one did); `session_ended` is True when the session was
    gone by the time the edge gave up on the answer."""

    error: str = ""
    undelivered: str | None = None
    session_ended: bool = False


def support_refusal(extra: AuthExtra, op: RemoteOp) -> OpRefused | None:
    """None if the agent said in Auth that it supports `op`; else the 400 to answer with."""
    said = {
        RemoteOp.STOP: extra.stop_unsupported_error,
        RemoteOp.RESTART: extra.restart_unsupported_error,
        RemoteOp.UPDATE: extra.update_unsupported_error,
    }[op]
    if said == "":
        return None
    reason = (said or TOO_OLD).rstrip(".")
    return OpRefused(
        status=400,
        code=UNSUPPORTED_CODES[op],
        message=f"This agent does not support remote {op.gerund}: {reason}.",
    )


def op_request(op: RemoteOp, who: str) -> Stop | Restart | Update:
    """The request to send; Stop and Restart say `who` asked (empty: nobody named)."""
    if op is RemoteOp.STOP:
        return Stop(message=who or None)
    if op is RemoteOp.RESTART:
        return Restart(message=who or None)
    return Update()  # version "" = the latest, as ngrok's API asks for it


def answer_refusal(op: RemoteOp, answer: OpAnswer) -> OpRefused | None:
    """None when the operation was done (the admin API answers 204); else its error."""
    if answer.undelivered is not None:
        if op is RemoteOp.STOP and answer.session_ended:
            return None  # the agent went away without a word: stopped all the same
        return OpRefused(
            status=502,
            code=ERR_NOT_DELIVERED,
            message=(
                f"The {op.value} request could not be sent to the agent or it did not answer "
                f"({answer.undelivered}). The agent may have been shutting down or "
                "reconnecting; list the tunnel sessions to see whether it is still there."
            ),
        )
    if answer.error:
        return OpRefused(
            status=400,
            code=FAILED_CODES[op],
            message=f"The agent failed to {op.value}: {answer.error}",
        )
    return None
