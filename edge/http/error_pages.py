"""The small pages the edge's HTTP proxy answers with when it, not the upstream, has the answer.

Pure values in, bytes out: no I/O, no clock. Every page carries the header `Burrow-Error-Code`
and, where ngrok documents a code for the condition, `ngrok-error-code` with the same value, so
clients that know ngrok's codes keep working. Upstream responses never carry either header (the
proxy strips them), so a client can trust them to come from the edge.

| status | Burrow-Error-Code         | ngrok code? | when                                        |
| ------ | ------------------------- | ----------- | ------------------------------------------- |
| 404    | ERR_NGROK_3200            | yes         | no endpoint is online for the Host          |
| 502    | ERR_NGROK_3200            | yes         | the endpoint's agent could not be reached   |
| 502    | ERR_NGROK_8012            | yes         | the agent could not dial its upstream       |
| 502    | ERR_NGROK_3004            | yes         | invalid or incomplete response from it      |
| 503    | BURROW_ENDPOINT_AT_CAPACITY | no        | the agent holds all the streams it may      |
| 504    | BURROW_GATEWAY_TIMEOUT    | no          | no response within http.idle_timeout        |
| 400    | BURROW_BAD_REQUEST        | no          | unparseable request, bad Host, bad framing  |
| 405    | BURROW_METHOD_NOT_ALLOWED | no          | CONNECT (this is not a forward proxy)       |
| 421    | BURROW_MISDIRECTED_REQUEST | no         | Host is another endpoint than the TLS SNI   |
| 408    | BURROW_REQUEST_TIMEOUT    | no          | the request head did not arrive in time     |
| 431    | BURROW_HEAD_TOO_LARGE     | no          | the request head exceeds http.max_head_size |
|        |                           |             | or has more than http.max_headers fields    |
| 501    | BURROW_NOT_IMPLEMENTED    | no          | a Transfer-Encoding other than chunked      |
| 505    | BURROW_VERSION_NOT_SUPPORTED | no       | a request line for HTTP/2.0 or another major |

The body is HTML unless the request's `Accept` prefers `application/json` over `text/html`
(see `prefers_json`); the JSON shape follows ngrok's REST error body: `{"error_code",
"status_code", "msg", "details": {"docs_url"}}`. Every page points to Burrow's own explanation
of its code (`docs/errors.md#<code>`), not to ngrok's documentation, whose advice (plans,
dashboards) does not apply to a self-hosted edge.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass

from protocol.rpc.errcodes import ERR_NGROK_3004, ERR_NGROK_3200, ERR_NGROK_8012

#: Burrow's page that explains every error code, one `#### CODE` section each
#: (tests/test_errors_doc.py keeps it complete).
ERRORS_DOC = "docs/errors.md"


def docs_reference(code: str) -> str:
    """Where Burrow's documentation explains `code`: `docs/errors.md#err_ngrok_3200`."""
    return f"{ERRORS_DOC}#{code.lower()}"

__all__ = [
    "BURROW_BAD_REQUEST",
    "BURROW_ENDPOINT_AT_CAPACITY",
    "BURROW_GATEWAY_TIMEOUT",
    "BURROW_HEAD_TOO_LARGE",
    "BURROW_METHOD_NOT_ALLOWED",
    "BURROW_MISDIRECTED_REQUEST",
    "BURROW_NOT_IMPLEMENTED",
    "BURROW_REQUEST_BODY_TOO_LARGE",
    "BURROW_REQUEST_TIMEOUT",
    "BURROW_VERSION_NOT_SUPPORTED",
    "ERRORS_DOC",
    "ErrorPage",
    "agent_unreachable",
    "at_capacity",
    "bad_request",
    "endpoint_offline",
    "gateway_timeout",
    "invalid_response",
    "method_not_allowed",
    "misdirected_request",
    "prefers_json",
    "render",
    "request_timeout",
    "upstream_unreachable",
]

#: The request could not be parsed or is refused for its framing or Host (status 400).
BURROW_BAD_REQUEST = "BURROW_BAD_REQUEST"
#: The request head did not complete within http.head_timeout (status 408).
BURROW_REQUEST_TIMEOUT = "BURROW_REQUEST_TIMEOUT"
#: The request head is larger than http.max_head_size (status 431).
BURROW_HEAD_TOO_LARGE = "BURROW_HEAD_TOO_LARGE"
#: The request uses a transfer coding the edge does not implement (status 501).
BURROW_NOT_IMPLEMENTED = "BURROW_NOT_IMPLEMENTED"
#: The method makes no sense for a reverse proxy: CONNECT (status 405).
BURROW_METHOD_NOT_ALLOWED = "BURROW_METHOD_NOT_ALLOWED"
#: The upstream sent nothing for http.idle_timeout after the request (status 504).
BURROW_GATEWAY_TIMEOUT = "BURROW_GATEWAY_TIMEOUT"
#: The request's Host is served by another endpoint than the TLS server name (SNI) the
#: connection was made for (status 421, RFC 9110 §15.5.20). ngrok documents no code for this.
BURROW_MISDIRECTED_REQUEST = "BURROW_MISDIRECTED_REQUEST"
#: The request line names an HTTP major version other than 1 (status 505, RFC 9112 §2.3).
BURROW_VERSION_NOT_SUPPORTED = "BURROW_VERSION_NOT_SUPPORTED"
#: The endpoint's agent is online but holds all the streams it may: its session's
#: limits.max_streams_per_session, or this endpoint's share of them (status 503). ngrok has no
#: code for this (ERR_NGROK_3200 says the agent is offline, which it is not).
BURROW_ENDPOINT_AT_CAPACITY = "BURROW_ENDPOINT_AT_CAPACITY"
#: The request body is longer than http.max_buffered_body, and the endpoint's Traffic Policy
#: reads bodies whole (verify-webhook, request-body-find-replace) (status 413).
BURROW_REQUEST_BODY_TOO_LARGE = "BURROW_REQUEST_BODY_TOO_LARGE"

_REASONS = {
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    421: "Misdirected Request",
    431: "Request Header Fields Too Large",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    505: "HTTP Version Not Supported",
}
_BAD_REQUEST_CODES = {
    408: BURROW_REQUEST_TIMEOUT,
    431: BURROW_HEAD_TOO_LARGE,
    501: BURROW_NOT_IMPLEMENTED,
    413: BURROW_REQUEST_BODY_TOO_LARGE,
    405: BURROW_METHOD_NOT_ALLOWED,
    505: BURROW_VERSION_NOT_SUPPORTED,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorPage:
    """One answer the edge produces itself: a status, a code and a sentence for a person."""

    status: int
    #: The `Burrow-Error-Code` value: an `ERR_NGROK_*` code, or a `BURROW_*` one.
    code: str
    message: str

    @property
    def ngrok_code(self) -> str | None:
        """The `ngrok-error-code` value: the code when it is one of ngrok's, else None."""
        return self.code if self.code.startswith("ERR_NGROK_") else None

    @property
    def reason(self) -> bytes:
        """The status line's reason phrase."""
        return _REASONS.get(self.status, "Error").encode("ascii")


def endpoint_offline(host: str) -> ErrorPage:
    """No endpoint is online for `host` (404, ERR_NGROK_3200)."""
    return ErrorPage(status=404, code=ERR_NGROK_3200, message=f"The endpoint {host} is offline.")


def agent_unreachable(host: str) -> ErrorPage:
    """The endpoint is registered but its agent's session is gone (502, ERR_NGROK_3200)."""
    return ErrorPage(
        status=502,
        code=ERR_NGROK_3200,
        message=f"The endpoint {host} is offline: its agent could not be reached.",
    )


def at_capacity(host: str) -> ErrorPage:
    """The endpoint's agent is online but may open no more streams now (503)."""
    return ErrorPage(
        status=503,
        code=BURROW_ENDPOINT_AT_CAPACITY,
        message=(
            f"The endpoint {host} is online but at capacity: its agent is serving as many "
            "connections as it may. Try again shortly."
        ),
    )


def upstream_unreachable(forwards_to: str) -> ErrorPage:
    """The agent was reached but could not dial its upstream (502, ERR_NGROK_8012)."""
    return ErrorPage(
        status=502,
        code=ERR_NGROK_8012,
        message=(
            f"The agent could not reach its upstream {forwards_to}. Check that the service is "
            "running and that the agent's upstream address is right."
        ),
    )


def invalid_response() -> ErrorPage:
    """The upstream's answer was not a complete HTTP response head (502, ERR_NGROK_3004)."""
    return ErrorPage(
        status=502,
        code=ERR_NGROK_3004,
        message=(
            "The upstream sent an invalid or incomplete HTTP response. Check that it speaks "
            "HTTP/1.1 (plain HTTP sent to a TLS upstream looks like this)."
        ),
    )


def gateway_timeout(seconds: float) -> ErrorPage:
    """Nothing came back from the upstream for `seconds` (504)."""
    return ErrorPage(
        status=504,
        code=BURROW_GATEWAY_TIMEOUT,
        message=f"The upstream did not answer within {seconds:g} seconds.",
    )


def request_timeout(seconds: float) -> ErrorPage:
    """The request head took longer than `seconds` (408)."""
    return ErrorPage(
        status=408,
        code=BURROW_REQUEST_TIMEOUT,
        message=f"The request head did not arrive within {seconds:g} seconds.",
    )


def method_not_allowed(method: str) -> ErrorPage:
    """A method a reverse proxy does not serve (405)."""
    return ErrorPage(
        status=405,
        code=BURROW_METHOD_NOT_ALLOWED,
        message=f"{method} is not supported: this is a reverse proxy, not a forward proxy.",
    )


def misdirected_request(host: str, sni: str) -> ErrorPage:
    """The request's `host` is not served by the endpoint the connection's TLS server name
    `sni` names (421): the client should retry on a connection made for `host`."""
    return ErrorPage(
        status=421,
        code=BURROW_MISDIRECTED_REQUEST,
        message=(
            f"This connection was made for {sni}, which does not serve {host}. Connect to "
            f"{host} itself (its name as the TLS server name) and send the request there."
        ),
    )


def bad_request(status: int, message: str) -> ErrorPage:
    """A request refused before it reached an endpoint: `status` is 400, or h11's hint for the
    fault (431 for a head that is too large, 501 for an unsupported transfer coding)."""
    code = _BAD_REQUEST_CODES.get(status, BURROW_BAD_REQUEST)
    return ErrorPage(status=status, code=code, message=message)


def prefers_json(accept: bytes | None) -> bool:
    """True when an `Accept` value ranks `application/json` above `text/html`.

    Each type is ranked by the best-matching media range (exact, then `type/*`, then `*/*`)
    by its q-value, and on equal q by how specific that range is; so a browser
    (`text/html,...,*/*;q=0.8`) gets HTML and an API client (`application/json, */*`) gets
    JSON. A missing or unparseable header means HTML.
    """
    if not accept:
        return False
    json_rank = (0.0, -1)
    html_rank = (0.0, -1)
    for item in accept.split(b","):
        media, _, params = item.partition(b";")
        media = media.strip().lower()
        q = 1.0
        for param in params.split(b";"):
            name, _, value = param.partition(b"=")
            if name.strip().lower() == b"q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
        json_rank = max(json_rank, _rank(media, q, b"application", b"json"))
        html_rank = max(html_rank, _rank(media, q, b"text", b"html"))
    return json_rank[0] > 0 and json_rank > html_rank


def _rank(media: bytes, q: float, kind: bytes, subtype: bytes) -> tuple[float, int]:
    if media == kind + b"/" + subtype:
        return (q, 2)
    if media == kind + b"/*":
        return (q, 1)
    if media == b"*/*":
        return (q, 0)
    return (0.0, -1)


def render(page: ErrorPage, *, as_json: bool) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The page's headers (type, length, no-store, the error-code headers) and body."""
    ngrok_code = page.ngrok_code
    docs = docs_reference(page.code)
    if as_json:
        details = {"docs_url": docs}
        document = {
            "error_code": page.code,
            "status_code": page.status,
            "msg": page.message,
            "details": details,
        }
        body = json.dumps(document, ensure_ascii=True).encode("ascii") + b"\n"
        content_type = b"application/json"
    else:
        body = _html(page, docs).encode("utf-8")
        content_type = b"text/html; charset=utf-8"
    headers = [
        (b"Content-Type", content_type),
        (b"Content-Length", str(len(body)).encode("ascii")),
        # An edge error describes this moment (an agent may be back in a second): never cache it.
        (b"Cache-Control", b"no-store"),
        (b"X-Content-Type-Options", b"nosniff"),
        (b"Burrow-Error-Code", page.code.encode("ascii")),
    ]
    if ngrok_code is not None:
        headers.append((b"ngrok-error-code", ngrok_code.encode("ascii")))
    return headers, body


def _html(page: ErrorPage, docs: str) -> str:
    title = f"{page.status} {page.reason.decode('ascii')}"
    # Named, not linked: a relative link would resolve against the endpoint's own site.
    link = f"<p>What it means and what to do: <code>{html.escape(docs)}</code></p>\n"
    return (
        "<!doctype html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title></head>\n'
        f"<body>\n<h1>{html.escape(title)}</h1>\n<p>{html.escape(page.message)}</p>\n"
        f"<p><code>{html.escape(page.code)}</code></p>\n{link}</body></html>\n"
    )
