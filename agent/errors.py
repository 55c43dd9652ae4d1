"""The agent's exception tree, under the message-plus-code base both programs share.

NgrokError                  (protocol.rpc.errcodes) a message and an optional ERR_NGROK_* code
└── AgentError              a refusal or misconfiguration that retrying cannot fix
    ├── UsageError          a mistake on the command line (agent.cli, agent.cli_endpoints)
    └── TLSMaterialError    a certificate, key or CA that cannot be used (agent.tls_contexts)
"""

from __future__ import annotations

from protocol.rpc.errcodes import NgrokError

__all__ = ["AgentError", "UsageError"]


class AgentError(NgrokError):
    """A refusal or misconfiguration that retrying cannot fix; the agent exits non-zero.

    `code` is the ERR_NGROK_* code when the edge sent one (an empty code is none); `str()` is
    the message, then the code in parentheses, as NgrokError prints it.
    """

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message, code or None)


class UsageError(AgentError):
    """A mistake on the command line or in what it names; printed as one line, exit 1."""
