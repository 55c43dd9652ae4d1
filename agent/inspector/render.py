"""A captured exchange as the agent API shows it: ngrok's JSON shape, heads parsed with h11 now.

Parsing waits until here (someone asked) so the relay path never pays for it. The shape is
ngrok's `GET /api/requests/http/:id` (reference §2.2):

    {uri, id, tunnel_name, remote_addr, start, duration,
     request: {method, proto, headers, uri, raw},
     response: {status, status_code, proto, headers, raw} | null}

`headers` maps each name, in Go's canonical form (`Content-Type`), to its values; `raw` is the
message, head and (de-chunked, possibly cut) body, in base64; `duration` is in nanoseconds, as
Go's `time.Duration` marshals. Burrow adds `body` to each message: `{size, captured, truncated,
data}` (the kept bytes in base64), which the inspector page renders, and `complete`; and to the
exchange `replay_of`, the id of the request it replayed ("" if none).

A head h11 cannot parse still renders: `method` or `status` say so and `headers` is empty.
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Iterable

import h11

from agent.inspector.capture import Exchange, Message

__all__ = ["API_REQUESTS_PATH", "canonical_header", "exchange_json", "parse_request_head"]

API_REQUESTS_PATH = "/api/requests/http"
_UNPARSED = "(unparsable)"

JSON = dict[str, object]


def canonical_header(name: str) -> str:
    """Go's `CanonicalMIMEHeaderKey`: `content-type` -> `Content-Type`."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def _headers(pairs: Iterable[tuple[bytes, bytes]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for name, value in pairs:
        key = canonical_header(name.decode("latin-1"))
        grouped.setdefault(key, []).append(value.decode("latin-1"))
    return grouped


def parse_request_head(head: bytes) -> h11.Request | None:
    """The request line and headers of a captured head, or None if h11 refuses them."""
    connection = h11.Connection(h11.SERVER)
    try:
        connection.receive_data(head)
        event = connection.next_event()
    except h11.RemoteProtocolError:
        return None
    return event if isinstance(event, h11.Request) else None


def _parse_response_head(head: bytes, method: bytes) -> h11.Response | None:
    connection = h11.Connection(h11.CLIENT)
    try:
        connection.send(h11.Request(method=method, target="/", headers=[("Host", "inspector")]))
        connection.receive_data(head)
        event = connection.next_event()
    except (h11.RemoteProtocolError, h11.LocalProtocolError):
        return None
    return event if isinstance(event, h11.Response) else None


def _body(message: Message) -> JSON:
    return {
        "size": message.body_size,
        "captured": len(message.body),
        "truncated": message.truncated,
        "data": base64.b64encode(message.body).decode("ascii"),
    }


def _raw(message: Message) -> str:
    return base64.b64encode(message.head + message.body).decode("ascii")


def _proto(version: bytes) -> str:
    return "HTTP/" + version.decode("ascii")


def exchange_json(exchange: Exchange) -> JSON:
    """The API object for `exchange`."""
    request = parse_request_head(exchange.request.head)
    request_json: JSON = {
        "method": request.method.decode("ascii") if request else _UNPARSED,
        "proto": _proto(request.http_version) if request else "",
        "headers": _headers(request.headers.raw_items()) if request else {},
        "uri": request.target.decode("latin-1") if request else "",
        "raw": _raw(exchange.request),
        "body": _body(exchange.request),
        "complete": exchange.request.complete,
    }
    response_json: JSON | None = None
    if exchange.response is not None:
        method = request.method if request else b"GET"
        response = _parse_response_head(exchange.response.head, method)
        reason = response.reason.decode("latin-1") if response else ""
        response_json = {
            "status": f"{response.status_code} {reason}".strip() if response else _UNPARSED,
            "status_code": response.status_code if response else 0,
            "proto": _proto(response.http_version) if response else "",
            "headers": _headers(response.headers.raw_items()) if response else {},
            "raw": _raw(exchange.response),
            "body": _body(exchange.response),
            "complete": exchange.response.complete,
        }
    start = datetime.datetime.fromtimestamp(exchange.start, datetime.UTC)
    return {
        "uri": f"{API_REQUESTS_PATH}/{exchange.id}",
        "id": exchange.id,
        "tunnel_name": exchange.tunnel_name,
        "remote_addr": exchange.remote_addr,
        "start": start.isoformat().replace("+00:00", "Z"),
        "duration": None if exchange.duration is None else round(exchange.duration * 1e9),
        "request": request_json,
        "response": response_json,
        "replay_of": exchange.replay_of,
    }
