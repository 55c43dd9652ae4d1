"""The agent's exception tree.

AgentError              a refusal or misconfiguration that retrying cannot fix
├── UsageError          a mistake on the command line (agent.cli, agent.cli_endpoints)
└── TLSMaterialError    a certificate, key or CA that cannot be used (agent.tls_contexts)
"""

from __future__ import annotations

__all__ = ["AgentError", "UsageError"]


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


class UsageError(AgentError):
    """A mistake on the command line or in what it names; printed as one line, exit 1."""
