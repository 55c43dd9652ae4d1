"""The admin API's refusals: an HTTP status, an `ERR_NGROK_*` code and a message, rendered as
ngrok's error body `{error_code, status_code, msg, details: {operation_id}}` (ngrok.md §6.3).

Codes whose meaning ngrok documents are used for that meaning:

| code | status | when |
| --- | --- | --- |
| ERR_NGROK_200 | 401 | no `Authorization` header |
| ERR_NGROK_201 | 401 | an `Authorization` header that is not `Bearer <key>` |
| ERR_NGROK_202 | 401 | a key that does not look like an API key |
| ERR_NGROK_203 | 401 | a well-formed key that is unknown or whose owner is inactive |
| ERR_NGROK_207 | 401 | an authtoken (tunnel credential) sent where an API key belongs |
| ERR_NGROK_213 | 400 | a body that is not a JSON object of the expected fields and types |
| ERR_NGROK_217 | 400 | an `Ngrok-Version` other than 2 (a missing one is accepted) |
| ERR_NGROK_226 | 429 | too many failed authentications from one address |
| ERR_NGROK_230 | 400 | a query string that is malformed, unknown, or out of range |
| ERR_NGROK_380 | 400 | an `owner_id` that names no service user |
| ERR_NGROK_804/805/806 | 400 | restart/stop/update of an agent that says it cannot (its reason) |
| ERR_NGROK_807/808/809 | 400 | the agent tried to stop/restart/update and answered an error |
| ERR_NGROK_810 | 502 | the request could not reach the agent, or no answer came back |
| ERR_NGROK_10007 | 400 | an ACL rule that does not parse |

Where ngrok documents no code for a condition, Burrow uses `ERR_NGROK_<status>` (404 unknown
resource or path, 405 wrong method, 408/413/431 from the HTTP shell's limits, 409 a name that is
taken, 500 a fault of the edge, 400 a call or a request framing this edge does not offer).
Nothing that is merely not offered is a 5xx: ngrok's API client turns any 5xx into a bare
`RuntimeError` without the code, while it raises a 4xx as an ordinary `ngrok.Error`.
"""

from __future__ import annotations

import json

from protocol.rpc.errcodes import NgrokError

__all__ = [
    "ApiError",
    "error_body",
]

ERR_MISSING_AUTH = "ERR_NGROK_200"
ERR_BAD_AUTH_HEADER = "ERR_NGROK_201"
ERR_MALFORMED_KEY = "ERR_NGROK_202"
ERR_INVALID_KEY = "ERR_NGROK_203"
ERR_TUNNEL_CREDENTIAL_AS_KEY = "ERR_NGROK_207"
ERR_BAD_BODY = "ERR_NGROK_213"
ERR_BAD_VERSION = "ERR_NGROK_217"
ERR_RATE_LIMITED = "ERR_NGROK_226"
ERR_BAD_QUERY = "ERR_NGROK_230"
ERR_UNKNOWN_REFERENCE = "ERR_NGROK_380"
ERR_BAD_ACL = "ERR_NGROK_10007"


def status_code(status: int) -> str:
    """Burrow's code for a condition ngrok documents no code for: `ERR_NGROK_<status>`."""
    return f"ERR_NGROK_{status}"


class ApiError(NgrokError):
    """A request refused with `status`, ngrok-style `code` and a message saying what to fix.

    `msg` is `message` under the name ngrok's error body gives it; `str()` is the message alone
    (the code and status travel in the body, see `error_body`).
    """

    def __init__(self, status: int, code: str, msg: str) -> None:
        super().__init__(msg, code)
        self.status = status

    @property
    def msg(self) -> str:
        return self.message

    def __str__(self) -> str:
        return self.message

    @classmethod
    def not_found(cls, what: str) -> ApiError:
        return cls(404, status_code(404), what)


def error_body(error: ApiError, operation_id: str) -> bytes:
    """ngrok's error body for `error`, as JSON bytes."""
    return json.dumps(
        {
            "error_code": error.code,
            "status_code": error.status,
            "msg": error.msg,
            "details": {"operation_id": operation_id},
        },
        separators=(",", ":"),
    ).encode()
