"""ngrok's `ERR_NGROK_*` codes that Burrow uses, and the way they travel inside error strings.

An RPC response carries errors as one plain string in its `Error` field (ngrok.md §8.9): the
message first, then the code on a line of its own,

    "The tunnel 'tcp://0.tcp.ngrok.io:18899' is already bound to another tunnel session"
    "\\r\\n\\r\\nERR_NGROK_334\\r\\n"

and clients find the code with the regex `ERR_NGROK_\\d+`, keeping the remaining non-empty
lines (each trimmed) as the message; that is ngrok-go's reading, which ngrok-rust matches for
strings that put the code on its own line. Codes are kept as strings ("ERR_NGROK_334") because
that is how every peer (RPC errors, `StopTunnel.ErrorCode`, the REST API's `error_code`, the
`ngrok-error-code` HTTP header) carries them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = [
    "ERR_NGROK_105",
    "ERR_NGROK_107",
    "ERR_NGROK_108",
    "ERR_NGROK_300",
    "ERR_NGROK_308",
    "ERR_NGROK_324",
    "ERR_NGROK_334",
    "ERR_NGROK_2201",
    "ERR_NGROK_3004",
    "ERR_NGROK_3200",
    "ERR_NGROK_3209",
    "ERR_NGROK_3210",
    "ERR_NGROK_3501",
    "ERR_NGROK_4018",
    "ERR_NGROK_5001",
    "ERR_NGROK_8012",
    "ERR_NGROK_9029",
    "ERR_NGROK_9030",
    "ERR_NGROK_9031",
    "ERR_NGROK_10000",
    "NgrokError",
    "WireError",
    "docs_url",
    "format_wire_error",
    "normalize_code",
    "parse_wire_error",
]

# --- session authentication ---------------------------------------------------------------
#: The authtoken is malformed (does not look like an authtoken at all).
ERR_NGROK_105: Final = "ERR_NGROK_105"
#: The authtoken is well formed but not valid (reset, removed from the team, or unknown).
ERR_NGROK_107: Final = "ERR_NGROK_107"
#: The account has reached its limit of simultaneous agent sessions.
ERR_NGROK_108: Final = "ERR_NGROK_108"
#: The authtoken credential has been revoked.
ERR_NGROK_300: Final = "ERR_NGROK_300"
#: No authtoken was given but the edge requires one.
ERR_NGROK_4018: Final = "ERR_NGROK_4018"
#: Rate limited: too many of something (here: failed agent logins from one address) per interval.
ERR_NGROK_5001: Final = "ERR_NGROK_5001"

# --- binding endpoints ----------------------------------------------------------------------
#: The credential's ACL does not allow binding this address.
ERR_NGROK_308: Final = "ERR_NGROK_308"
#: The session has reached its limit of endpoints.
ERR_NGROK_324: Final = "ERR_NGROK_324"
#: The endpoint URL is already online (and pooling is off on one side).
ERR_NGROK_334: Final = "ERR_NGROK_334"
#: The endpoint binding does not fit the URL (an internal binding on a non-`.internal` host).
ERR_NGROK_9029: Final = "ERR_NGROK_9029"
#: The endpoint port is outside 1-65535.
ERR_NGROK_9030: Final = "ERR_NGROK_9030"
#: The endpoint URL is invalid (bad scheme or host); Burrow's reading, not confirmed by ngrok.
ERR_NGROK_9031: Final = "ERR_NGROK_9031"
#: A traffic policy names an unknown action type.
ERR_NGROK_2201: Final = "ERR_NGROK_2201"

# --- serving traffic ------------------------------------------------------------------------
#: No endpoint is online for this URL.
ERR_NGROK_3200: Final = "ERR_NGROK_3200"
#: The tunnel was not found.
ERR_NGROK_3209: Final = "ERR_NGROK_3209"
#: The edge could not forward the connection to the agent.
ERR_NGROK_3210: Final = "ERR_NGROK_3210"
#: A forward-internal chain is too long.
ERR_NGROK_3501: Final = "ERR_NGROK_3501"
#: The upstream answered with invalid or incomplete HTTP.
ERR_NGROK_3004: Final = "ERR_NGROK_3004"
#: The agent was reached but could not dial its upstream.
ERR_NGROK_8012: Final = "ERR_NGROK_8012"

# --- the edge itself ------------------------------------------------------------------------
#: Internal server error (ngrok: "Internal Server Error"); Burrow: the edge's store failed.
ERR_NGROK_10000: Final = "ERR_NGROK_10000"

_CODE = re.compile(r"ERR_NGROK_\d+", re.ASCII)  # ASCII digits only, as in Go
_EXACT_CODE = re.compile(r"ERR_NGROK_\d+\Z", re.ASCII)
_DOCS = "https://ngrok.com/docs/errors/"


def normalize_code(code: str | int) -> str:
    """`334` or `"ERR_NGROK_334"` as `"ERR_NGROK_334"`; raises ValueError for anything else."""
    if isinstance(code, int) and not isinstance(code, bool) and code >= 0:
        return f"ERR_NGROK_{code}"
    if isinstance(code, str) and _EXACT_CODE.match(code):
        return code
    raise ValueError(f"not an ngrok error code: {code!r} (expected e.g. 334 or 'ERR_NGROK_334')")


def docs_url(code: str | int) -> str:
    """ngrok's documentation page for a code, as ngrok-rust links it."""
    return _DOCS + normalize_code(code).lower()


def format_wire_error(message: str, code: str | int) -> str:
    """The `Error` string for `message` with `code` on its own line, as ngrok's edge sends it.

    Raises ValueError if `code` is not an ngrok error code.
    """
    return f"{message}\r\n\r\n{normalize_code(code)}\r\n"


@dataclass(frozen=True, slots=True)
class WireError:
    """An `Error` string taken apart: the message lines and the code, if there was one."""

    message: str
    code: str | None


def parse_wire_error(text: str) -> WireError:
    """Split an `Error` string into message and code, the way ngrok-go does.

    The code is the first `ERR_NGROK_\\d+` anywhere in the text (None if there is none); the
    message is every other non-empty line, trimmed, joined by newlines. Never raises.
    """
    match = _CODE.search(text)
    lines = (line.strip(" \t\r\n") for line in text.split("\n"))
    message = "\n".join(line for line in lines if line and not _CODE.search(line))
    return WireError(message, match.group() if match else None)


class NgrokError(Exception):
    """Burrow's one "message plus ngrok code" error: the base both programs' refusals share.

    `message` is the text for people; `code` is `"ERR_NGROK_334"`-style or None (an int or a
    code string is normalized; anything else raises ValueError at construction, so a bad code
    fails where it is written rather than when it is sent); `wire()` is the string to put in an
    RPC response's `Error` field, which `from_wire` and `parse_wire_error` read back.

    Subclasses: the edge's `BindRefused` (edge.tunnels.binding) and `ApiError` (edge.admin.errors),
    the agent's `AgentError` (agent.errors), the CLI's `ApiClientError` (edge.cli.api_client).
    They keep their own constructors and may print differently (`__str__`); `message`, `code`
    and `wire()` mean the same on all of them.
    """

    def __init__(self, message: str, code: str | int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = None if code is None else normalize_code(code)

    @staticmethod
    def from_wire(text: str) -> NgrokError:
        """The error an `Error` string describes (see `parse_wire_error`); never raises.

        Always a plain NgrokError: subclasses take other constructor arguments.
        """
        parsed = parse_wire_error(text)
        return NgrokError(parsed.message, parsed.code)

    def wire(self) -> str:
        """The `Error` string: the message, then the code on its own line if there is one."""
        if self.code is None:
            return self.message
        return format_wire_error(self.message, self.code)

    def __str__(self) -> str:
        return self.message if self.code is None else f"{self.message} ({self.code})"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, {self.code!r})"
