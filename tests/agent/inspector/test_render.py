"""Captured exchanges rendered in ngrok's API shape, heads parsed with h11 only now."""

from __future__ import annotations

import base64

from agent.inspector.capture import CaptureStore, ConnectionCapture
from agent.inspector.render import canonical_header, exchange_json


def captured(request: bytes, response: bytes | None) -> dict[str, object]:
    store = CaptureStore(10**6)
    capture = ConnectionCapture(
        store, tunnel_name="web", remote_addr="198.51.100.7:5555", clock=lambda: (1.5e9, 10.0)
    )
    capture.request_bytes(request)
    if response is not None:
        capture.response_bytes(response)
    (exchange,) = store
    return exchange_json(exchange)


def test_canonical_header_names_follow_go() -> None:
    assert canonical_header("content-TYPE") == "Content-Type"
    assert canonical_header("x-forwarded-for") == "X-Forwarded-For"


def test_an_exchange_in_ngroks_shape() -> None:
    body = b'{"a": 1}'
    rendered = captured(
        b"POST /items?x=1 HTTP/1.1\r\nHost: app\r\ncontent-type: application/json\r\n"
        b"X-Multi: 1\r\nx-multi: 2\r\nContent-Length: 8\r\n\r\n" + body,
        b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
    )
    assert rendered["uri"] == f"/api/requests/http/{rendered['id']}"
    assert rendered["tunnel_name"] == "web"
    assert rendered["remote_addr"] == "198.51.100.7:5555"
    assert rendered["start"] == "2017-07-14T02:40:00Z"
    assert rendered["duration"] == 0
    request = rendered["request"]
    assert isinstance(request, dict)
    assert (request["method"], request["uri"], request["proto"]) == (
        "POST",
        "/items?x=1",
        "HTTP/1.1",
    )
    assert request["headers"] == {
        "Host": ["app"],
        "Content-Type": ["application/json"],
        "X-Multi": ["1", "2"],
        "Content-Length": ["8"],
    }
    assert base64.b64decode(str(request["raw"])).endswith(b"\r\n\r\n" + body)
    assert request["body"] == {
        "size": 8,
        "captured": 8,
        "truncated": False,
        "data": base64.b64encode(body).decode(),
    }
    response = rendered["response"]
    assert isinstance(response, dict)
    assert (response["status"], response["status_code"], response["proto"]) == (
        "201 Created",
        201,
        "HTTP/1.1",
    )
    assert response["headers"] == {"Content-Length": ["2"]}


def test_no_response_yet_is_null_and_a_bad_head_still_renders() -> None:
    pending = captured(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", None)
    assert pending["response"] is None and pending["duration"] is None
    broken = captured(b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", None)
    request = broken["request"]
    assert isinstance(request, dict)
    assert request["method"] == "(unparsable)" and request["headers"] == {}
