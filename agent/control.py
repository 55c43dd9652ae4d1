"""What the agent does when the edge asks it to stop, restart or update (ngrok.md §7 "Remote
management", §8.6 types 4-6): the answer to send and how the session then ends. Pure: the
session (`agent.session_tasks`) reads the request, sends `Decision.response`, then acts.

* Stop: answered "" (done); the agent then closes its session and exits with status 0, after
  a notice naming who stopped it (the edge's Burrow-only `Message`, e.g. "the admin API, key
  ak_..."). Status 0 is what keeps a system service stopped: the unit restarts only on failure
  (`agent.service_unit`), so a remotely stopped agent stays stopped until started again.
* Restart: answered "" (done); the agent closes its session and connects again at once, as a
  new session (ngrok's agent re-executes itself instead; Burrow keeps its process, its
  configuration as loaded, and the ClientId and endpoint URLs it can resume).
* Update: refused with `UPDATE_UNSUPPORTED`, the Error string ngrok's SDKs also send for an
  operation they do not handle; the agent carries on. (Auth already says update is
  unsupported, so an edge that honours that never asks.)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from agent.requests import UPDATE_UNSUPPORTED
from protocol.rpc.messages import (
    Restart,
    RestartResp,
    Stop,
    StopResp,
    StreamType,
    Update,
    UpdateResp,
)

__all__ = ["COMMAND_REQUESTS", "Decision", "Next", "decide"]

#: The request message read from each edge-initiated command stream.
COMMAND_REQUESTS: dict[StreamType, type[Stop | Restart | Update]] = {
    StreamType.STOP: Stop,
    StreamType.RESTART: Restart,
    StreamType.UPDATE: Update,
}


class Next(enum.Enum):
    """What the agent does once it has answered."""

    CARRY_ON = "carry on"
    EXIT = "exit"  # close the session, do not reconnect, exit 0
    RECONNECT = "reconnect"  # close the session and connect again at once


@dataclass(frozen=True, kw_only=True, slots=True)
class Decision:
    response: StopResp | RestartResp | UpdateResp
    next: Next
    #: What the person at the terminal is told (one line, no "burrow:" prefix).
    notice: str


def decide(request: Stop | Restart | Update) -> Decision:
    """The answer to one edge-initiated command, and what to do after sending it."""
    if isinstance(request, Stop):
        return Decision(
            response=StopResp(error=""),
            next=Next.EXIT,
            notice=f"stopped by the edge{_for(request.message)}; exiting",
        )
    if isinstance(request, Restart):
        return Decision(
            response=RestartResp(error=""),
            next=Next.RECONNECT,
            notice=f"restart requested by the edge{_for(request.message)}; reconnecting now",
        )
    version = request.version or "the latest version"
    return Decision(
        response=UpdateResp(error=UPDATE_UNSUPPORTED),
        next=Next.CARRY_ON,
        notice=f"refused the edge's request to update to {version}: {UPDATE_UNSUPPORTED}",
    )


#: Characters of the edge's word on who asked that are shown: a key's id and description fit.
WHO_MAX = 200


def _for(message: str | None) -> str:
    """" on behalf of WHO" from the edge's word on who asked, made safe to print on one line;
    "" when it named nobody."""
    text = "".join(c for c in (message or "") if c.isprintable()).strip()[:WHO_MAX]
    return f" on behalf of {text}" if text else ""
