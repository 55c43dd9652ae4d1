"""The edge's own error pages: codes, headers, HTML and JSON bodies, Accept negotiation."""

from __future__ import annotations

import json

import pytest

from edge.http.error_pages import (
    BURROW_BAD_REQUEST,
    BURROW_GATEWAY_TIMEOUT,
    BURROW_HEAD_TOO_LARGE,
    BURROW_METHOD_NOT_ALLOWED,
    BURROW_NOT_IMPLEMENTED,
    BURROW_REQUEST_TIMEOUT,
    ErrorPage,
    agent_unreachable,
    bad_request,
    endpoint_offline,
    gateway_timeout,
    invalid_response,
    method_not_allowed,
    prefers_json,
    render,
    request_timeout,
    upstream_unreachable,
)


def headers_of(page: ErrorPage, *, as_json: bool) -> tuple[dict[bytes, bytes], bytes]:
    headers, body = render(page, as_json=as_json)
    names = [name.lower() for name, _ in headers]
    assert len(names) == len(set(names))  # each header once
    return {name.lower(): value for name, value in headers}, body


@pytest.mark.parametrize(
    ("page", "status", "code"),
    [
        (endpoint_offline("app.example"), 404, "ERR_NGROK_3200"),
        (agent_unreachable("app.example"), 502, "ERR_NGROK_3200"),
        (upstream_unreachable("http://localhost:8080"), 502, "ERR_NGROK_8012"),
        (invalid_response(), 502, "ERR_NGROK_3004"),
    ],
)
def test_ngrok_codes_carry_both_headers_and_the_docs_link(
    page: ErrorPage, status: int, code: str
) -> None:
    assert (page.status, page.code, page.ngrok_code) == (status, code, code)
    docs = f"docs/errors.md#{code.lower()}"  # Burrow's own page, not ngrok's
    headers, body = headers_of(page, as_json=False)
    assert headers[b"burrow-error-code"] == code.encode()
    assert headers[b"ngrok-error-code"] == code.encode()
    assert headers[b"content-type"] == b"text/html; charset=utf-8"
    assert headers[b"content-length"] == str(len(body)).encode()
    assert headers[b"cache-control"] == b"no-store"
    assert docs.encode() in body and code.encode() in body
    headers, body = headers_of(page, as_json=True)
    assert headers[b"content-type"] == b"application/json"
    document = json.loads(body)
    assert document == {
        "error_code": code,
        "status_code": status,
        "msg": page.message,
        "details": {"docs_url": docs},
    }


@pytest.mark.parametrize(
    ("page", "status", "code"),
    [
        (bad_request(400, "The request is malformed."), 400, BURROW_BAD_REQUEST),
        (bad_request(431, "too large"), 431, BURROW_HEAD_TOO_LARGE),
        (bad_request(501, "chunked only"), 501, BURROW_NOT_IMPLEMENTED),
        (bad_request(418, "odd hint"), 418, BURROW_BAD_REQUEST),
        (request_timeout(10), 408, BURROW_REQUEST_TIMEOUT),
        (method_not_allowed("CONNECT"), 405, BURROW_METHOD_NOT_ALLOWED),
        (gateway_timeout(300), 504, BURROW_GATEWAY_TIMEOUT),
    ],
)
def test_burrow_codes_have_no_ngrok_header(page: ErrorPage, status: int, code: str) -> None:
    assert (page.status, page.code, page.ngrok_code) == (status, code, None)
    headers, body = headers_of(page, as_json=False)
    assert headers[b"burrow-error-code"] == code.encode()
    assert b"ngrok-error-code" not in headers
    assert b"ngrok.com/docs" not in body
    assert f"docs/errors.md#{code.lower()}".encode() in body
    assert json.loads(render(page, as_json=True)[1])["details"] == {
        "docs_url": f"docs/errors.md#{code.lower()}"
    }


def test_messages_name_the_host_the_upstream_and_the_limit() -> None:
    assert "app.example" in endpoint_offline("app.example").message
    assert "offline" in endpoint_offline("app.example").message
    assert "http://localhost:8080" in upstream_unreachable("http://localhost:8080").message
    assert "10 seconds" in request_timeout(10.0).message
    assert "300 seconds" in gateway_timeout(300.0).message
    assert endpoint_offline("a").reason == b"Not Found"
    assert bad_request(431, "x").reason == b"Request Header Fields Too Large"
    assert bad_request(418, "x").reason == b"Error"


def test_user_controlled_text_is_escaped_in_html() -> None:
    page = endpoint_offline("<script>alert(1)</script>")
    _, body = render(page, as_json=False)
    assert b"<script>" not in body
    assert b"&lt;script&gt;" in body
    _, body = render(page, as_json=True)
    assert json.loads(body)["msg"] == "The endpoint <script>alert(1)</script> is offline."


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, False),
        (b"", False),
        (b"*/*", False),
        (b"application/json", True),
        (b"Application/JSON", True),
        (b"application/json, text/plain, */*", True),  # axios
        (b"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", False),  # browser
        (b"text/html;q=0.5, application/json", True),
        (b"application/json;q=0.5, text/html", False),
        (b"application/*", True),  # HTML is not acceptable at all
        (b"application/*, text/*", False),  # equal q and specificity: HTML
        (b"application/json;q=0", False),
        (b"application/json;q=oops", False),
        (b"text/plain", False),
        (b"application/json; charset=utf-8; q=0.9, text/html; q=0.8", True),
    ],
)
def test_prefers_json(accept: bytes | None, expected: bool) -> None:
    assert prefers_json(accept) is expected
