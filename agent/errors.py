"""The agent's exception tree."""

from __future__ import annotations

__all__ = ["AgentError"]


class AgentError(Exception):
    """A refusal or misconfiguration that retrying cannot fix; the agent exits non-zero.

    `code` is the ERR_NGROK_* code when the edge sent one.
    """

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def __str__(self) -> str:
        return f"{self.message} ({self.code})" if self.code else self.message
