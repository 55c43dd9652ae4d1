"""The admin API's hold on live agent sessions for remote management: what an agent said it
can do (its Auth), and sending it Stop, Restart or Update (`edge.tunnels.remote_ops`).

`SessionControl` is what the request handlers use; `HubSessionControl` reads the `EdgeHub`.
Call both from the trio thread that runs the hub.
"""

from __future__ import annotations

from typing import Protocol

from edge.tunnels.hub import EdgeHub
from edge.tunnels.remote_ops import OpAnswer, RemoteOp
from edge.tunnels.session import AgentSession
from protocol.rpc.messages import AuthExtra

__all__ = ["HubSessionControl", "SessionControl"]

#: What `remote_op` says of a session that is no longer there.
SESSION_GONE = "the session has ended"


class SessionControl(Protocol):
    def capabilities(self, session_id: str) -> AuthExtra | None:
        """What the session's agent said about itself in Auth; None if there is no such
        authenticated session."""
        ...

    async def remote_op(self, session_id: str, op: RemoteOp, who: str) -> OpAnswer:
        """Ask the session's agent to do `op` on behalf of `who`, and return its answer.
        Never raises for a session that is gone or an agent that does not answer."""
        ...


class HubSessionControl:
    """`SessionControl` over an `EdgeHub`."""

    def __init__(self, hub: EdgeHub) -> None:
        self._hub = hub

    def _session(self, session_id: str) -> AgentSession | None:
        session = self._hub.sessions.get(session_id)
        if isinstance(session, AgentSession) and session.auth is not None:
            return session
        return None

    def capabilities(self, session_id: str) -> AuthExtra | None:
        session = self._session(session_id)
        return session.auth.extra if session is not None and session.auth is not None else None

    async def remote_op(self, session_id: str, op: RemoteOp, who: str) -> OpAnswer:
        session = self._session(session_id)
        if session is None:
            return OpAnswer(undelivered=SESSION_GONE, session_ended=True)
        return await session.remote_op(op, who)
