"""The HTTP proxy's header decisions, bytes in and values out (no sockets).

Heads are parsed by a real h11 machine, as the proxy's are, so what these tests feed
`prepare_request` and `response_headers` is exactly what they get in the proxy.
"""

from __future__ import annotations

import h11
import pytest

from edge.http.headers import (
    MAX_CONTENT_LENGTH,
    RefusedError,
    head_error_page,
    prepare_request,
    raw_head,
    request_target,
    response_headers,
    route_host,
    translate_h2_request,
)

CLIENT_IP = b"203.0.113.7"


def parse_request(raw: bytes) -> h11.Request:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(raw)
    event = conn.next_event()
    assert isinstance(event, h11.Request)
    return event


def prepare(
    raw: bytes, scheme: bytes = b"https"
) -> tuple[str, bytes | None, dict[str, list[bytes]], bytes | None]:
    """prepare_request on `raw`, with the headers as lowercased name -> values."""
    prepared = prepare_request(parse_request(raw), [raw], client_ip=CLIENT_IP, scheme=scheme)
    host, accept, headers, upgrade = (
        prepared.host,
        prepared.accept,
        prepared.headers,
        prepared.upgrade,
    )
    by_name: dict[str, list[bytes]] = {}
    for name, value in headers:
        by_name.setdefault(name.decode("ascii").lower(), []).append(value)
    return host, accept, by_name, upgrade


def refusal(raw: bytes) -> RefusedError:
    with pytest.raises(RefusedError) as caught:
        prepare_request(parse_request(raw), [raw], client_ip=CLIENT_IP, scheme=b"http")
    return caught.value


def parse_response(
    raw: bytes, *, upgrade: bool = False
) -> h11.Response | h11.InformationalResponse:
    conn = h11.Connection(h11.CLIENT)
    headers = [("Host", "app.test")]
    if upgrade:
        headers += [("Connection", "upgrade"), ("Upgrade", "websocket")]
    conn.send(h11.Request(method="GET", target="/", headers=headers))
    conn.send(h11.EndOfMessage())
    conn.receive_data(raw)
    event = conn.next_event()
    assert isinstance(event, h11.Response | h11.InformationalResponse)
    return event


# -------------------------------------------------------------------------------- route_host


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"Example.COM", "example.com"),
        (b"example.com.:8080", "example.com"),
        (b"app.test:", "app.test"),
        (b"127.0.0.1:80", "127.0.0.1"),
        (b"[::1]:8080", "::1"),
        (b"under_score.test", "under_score.test"),
        (b"", None),
        (b"bad host", None),
        (b"a.test:80x", None),
        (b"\xc3\xa9.test", None),
        (b".", None),
        (b"[::1", None),
    ],
)
def test_route_host(value: bytes, expected: str | None) -> None:
    assert route_host(value) == expected


# --------------------------------------------------------------------------- prepare_request


def test_request_headers_lose_hop_by_hop_and_gain_forwarded() -> None:
    host, accept, headers, upgrade = prepare(
        b"GET /x HTTP/1.1\r\n"
        b"Host: App.Test:8443\r\n"
        b"Accept: application/json\r\n"
        b"Keep-Alive: timeout=5\r\n"
        b"Proxy-Authorization: Basic Zm9v\r\n"
        b"TE: trailers\r\n"
        b"Connection: keep-alive, X-Secret\r\n"
        b"X-Secret: 1\r\n"
        b"X-Kept: 2\r\n"
        b"\r\n"
    )
    assert (host, accept, upgrade) == ("app.test", b"application/json", None)
    assert set(headers) == {
        "host",
        "accept",
        "x-kept",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
    }
    assert headers["host"] == [b"App.Test:8443"]
    assert headers["x-forwarded-for"] == [CLIENT_IP]
    assert headers["x-forwarded-host"] == [b"App.Test:8443"]
    assert headers["x-forwarded-proto"] == [b"https"]


def test_forwarded_headers_extend_a_chain() -> None:
    _, _, headers, _ = prepare(
        b"GET / HTTP/1.1\r\n"
        b"Host: app.test\r\n"
        b"X-Forwarded-For: 198.51.100.1\r\n"
        b"X-Forwarded-For: 198.51.100.2\r\n"
        b"X-Forwarded-Proto: http\r\n"
        b"X-Forwarded-Host: first.test\r\n"
        b"X-Forwarded-Host: second.test\r\n"
        b"\r\n",
        scheme=b"http",
    )
    assert headers["x-forwarded-for"] == [b"198.51.100.1, 198.51.100.2, " + CLIENT_IP]
    assert headers["x-forwarded-proto"] == [b"http, http"]
    assert headers["x-forwarded-host"] == [b"first.test"]


def test_connection_may_drop_forwarded_headers_but_not_framing_or_host() -> None:
    _, _, headers, _ = prepare(
        b"POST / HTTP/1.1\r\n"
        b"Host: app.test\r\n"
        b"Content-Length: 2\r\n"
        b"X-Forwarded-For: 198.51.100.1\r\n"
        b"X-Forwarded-Host: spoofed.test\r\n"
        b"Connection: content-length, host, x-forwarded-for, x-forwarded-host\r\n"
        b"\r\nok"
    )
    assert headers["content-length"] == [b"2"]
    assert headers["host"] == [b"app.test"]
    assert headers["x-forwarded-for"] == [CLIENT_IP]
    assert headers["x-forwarded-host"] == [b"app.test"]


@pytest.mark.parametrize(
    ("connection", "expected"),
    [(b"Connection: Upgrade\r\n", b"websocket"), (b"", None), (b"Connection: close\r\n", None)],
)
def test_upgrade_is_returned_only_when_connection_names_it(
    connection: bytes, expected: bytes | None
) -> None:
    _, _, headers, upgrade = prepare(
        b"GET /ws HTTP/1.1\r\nHost: app.test\r\nUpgrade: websocket\r\n" + connection + b"\r\n"
    )
    assert upgrade == expected
    assert "upgrade" not in headers
    assert "connection" not in headers


@pytest.mark.parametrize(
    ("raw", "status", "reason"),
    [
        (b"CONNECT app.test:443 HTTP/1.1\r\nHost: app.test:443\r\n\r\n", 405, "CONNECT request"),
        (
            b"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            400,
            "Content-Length with Transfer-Encoding",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\n",
            400,
            "repeated Content-Length",
        ),
        (b"GET / HTTP/1.0\r\n\r\n", 400, "bad Host"),
        (b"GET / HTTP/1.1\r\nHost: bad host\r\n\r\n", 400, "bad Host"),
    ],
)
def test_requests_the_edge_will_not_forward(raw: bytes, status: int, reason: str) -> None:
    refused = refusal(raw)
    assert refused.page.status == status
    assert refused.reason == reason


def test_a_refusal_carries_accept_for_the_page_format() -> None:
    refused = refusal(b"GET / HTTP/1.1\r\nHost: bad host\r\nAccept: application/json\r\n\r\n")
    assert refused.accept == b"application/json"


def test_repeated_content_length_is_seen_across_chunks_and_not_in_the_body() -> None:
    head = b"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 19\r\n\r\n"
    body = b"\ncontent-length: 19"  # looks like a header line, but it is body
    request = parse_request(head + body)
    chunks = [head[:20], head[20:] + body]
    prepared = prepare_request(request, chunks, client_ip=CLIENT_IP, scheme=b"http")
    assert prepared.host == "app.test"


# ------------------------------------------------- request line, targets, counts and lengths

TOO_LONG = str(2**64 + 5).encode()  # an upstream keeping 64 bits reads 5


@pytest.mark.parametrize(
    ("raw", "status", "code", "reason"),
    [
        (
            b"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: " + TOO_LONG + b"\r\n\r\n",
            400,
            "BURROW_BAD_REQUEST",
            "Content-Length 18446744073709551621 beyond 2^63-1",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 9223372036854775808\r\n\r\n",
            400,
            "BURROW_BAD_REQUEST",
            "Content-Length 9223372036854775808 beyond 2^63-1",
        ),
        (b"GET * HTTP/1.1\r\nHost: app.test\r\n\r\n", 400, "BURROW_BAD_REQUEST", "GET * request"),
        (
            b"GET app.test:80 HTTP/1.1\r\nHost: app.test\r\n\r\n",
            400,
            "BURROW_BAD_REQUEST",
            "bad request target",
        ),
        (
            b"GET ftp://app.test/ HTTP/1.1\r\nHost: app.test\r\n\r\n",
            400,
            "BURROW_BAD_REQUEST",
            "bad request target",
        ),
        (
            b"GET http://user@app.test/ HTTP/1.1\r\nHost: app.test\r\n\r\n",
            400,
            "BURROW_BAD_REQUEST",
            "bad authority in an absolute-form target",
        ),
        (
            b"GET http:///x HTTP/1.1\r\nHost: app.test\r\n\r\n",
            400,
            "BURROW_BAD_REQUEST",
            "bad authority in an absolute-form target",
        ),
        (
            b"GET http://app.test#top HTTP/1.1\r\nHost: app.test\r\n\r\n",
            400,
            "BURROW_BAD_REQUEST",
            "fragment in the request target",
        ),
        (
            b"GET / HTTP/2.0\r\nHost: app.test\r\n\r\n",
            505,
            "BURROW_VERSION_NOT_SUPPORTED",
            "HTTP/2.0 request line",
        ),
        (
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",  # the HTTP/2 preface on an HTTP/1.1 port
            505,
            "BURROW_VERSION_NOT_SUPPORTED",
            "HTTP/2.0 request line",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: app.test\r\n" + b"X-N: 1\r\n" * 100 + b"\r\n",
            431,
            "BURROW_HEAD_TOO_LARGE",
            "101 header fields (http.max_headers is 100)",
        ),
    ],
)
def test_request_lines_and_heads_http_1_1_does_not_allow_are_refused(
    raw: bytes, status: int, code: str, reason: str
) -> None:
    refused = refusal(raw)
    assert (refused.page.status, refused.page.code, refused.reason) == (status, code, reason)


def test_the_limits_themselves_are_allowed() -> None:
    longest = str(MAX_CONTENT_LENGTH).encode()
    _, _, headers, _ = prepare(
        b"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: " + longest + b"\r\n\r\n"
    )
    assert headers["content-length"] == [longest]
    host, _, headers, _ = prepare(
        b"GET / HTTP/1.1\r\nHost: app.test\r\n" + b"X-N: 1\r\n" * 99 + b"\r\n"
    )
    assert host == "app.test" and len(headers["x-n"]) == 99  # 100 fields with Host
    host, _, _, _ = prepare(b"GET / HTTP/1.0\r\nHost: app.test\r\n\r\n")
    assert host == "app.test"


def test_max_headers_is_the_setting_passed_in() -> None:
    raw = b"GET / HTTP/1.1\r\nHost: app.test\r\nA: 1\r\nB: 2\r\n\r\n"
    with pytest.raises(RefusedError) as caught:
        prepare_request(
            parse_request(raw), [raw], client_ip=CLIENT_IP, scheme=b"http", max_headers=2
        )
    assert caught.value.page.status == 431
    prepared = prepare_request(
        parse_request(raw), [raw], client_ip=CLIENT_IP, scheme=b"http", max_headers=3
    )
    assert prepared.host == "app.test"


@pytest.mark.parametrize(
    ("method", "target", "forwarded", "authority"),
    [
        (b"GET", b"http://Other.Test:8080/p?q=1", b"/p?q=1", b"Other.Test:8080"),
        (b"GET", b"HTTPS://other.test", b"/", b"other.test"),
        (b"GET", b"http://other.test?q", b"/?q", b"other.test"),
        (b"OPTIONS", b"http://other.test:80", b"*", b"other.test:80"),  # RFC 9112 §3.2.4
        (b"OPTIONS", b"*", b"*", None),
        (b"GET", b"/plain", b"/plain", None),
    ],
)
def test_request_target_forms(
    method: bytes, target: bytes, forwarded: bytes, authority: bytes | None
) -> None:
    assert request_target(method, target, absolute=True) == (forwarded, authority)


def test_absolute_form_is_refused_where_it_is_not_allowed() -> None:
    with pytest.raises(RefusedError) as caught:
        request_target(b"GET", b"http://other.test/", absolute=False)
    assert caught.value.page.status == 400


def test_an_absolute_form_target_is_routed_by_its_authority_which_replaces_host() -> None:
    raw = b"GET http://Other.Test:8080/p?q=1 HTTP/1.1\r\nHost: app.test\r\n\r\n"
    prepared = prepare_request(parse_request(raw), [raw], client_ip=CLIENT_IP, scheme=b"http")
    assert prepared.host == "other.test"
    assert prepared.target == b"/p?q=1"
    assert [v for n, v in prepared.headers if n.lower() == b"host"] == [b"Other.Test:8080"]
    assert [v for n, v in prepared.headers if n.lower() == b"x-forwarded-host"] == [
        b"Other.Test:8080"
    ]
    # HTTP/1.0 may leave Host out; the authority then becomes it.
    raw = b"GET http://other.test/ HTTP/1.0\r\n\r\n"
    prepared = prepare_request(parse_request(raw), [raw], client_ip=CLIENT_IP, scheme=b"http")
    assert prepared.host == "other.test"
    assert [v for n, v in prepared.headers if n.lower() == b"host"] == [b"other.test"]


def test_origin_form_and_asterisk_targets_are_forwarded_as_sent() -> None:
    raw = b"OPTIONS * HTTP/1.1\r\nHost: app.test\r\n\r\n"
    prepared = prepare_request(parse_request(raw), [raw], client_ip=CLIENT_IP, scheme=b"http")
    assert prepared.target == b"*"
    raw = b"GET /a/b?c HTTP/1.1\r\nHost: app.test\r\n\r\n"
    prepared = prepare_request(parse_request(raw), [raw], client_ip=CLIENT_IP, scheme=b"http")
    assert prepared.target == b"/a/b?c"


def test_a_clients_x_forwarded_host_passes_unless_replace_is_set() -> None:
    raw = b"GET / HTTP/1.1\r\nHost: app.test\r\nX-Forwarded-Host: spoofed.test\r\n\r\n"

    def forwarded_host(replace: bool) -> list[bytes]:
        prepared = prepare_request(
            parse_request(raw),
            [raw],
            client_ip=CLIENT_IP,
            scheme=b"http",
            replace_forwarded_host=replace,
        )
        return [v for n, v in prepared.headers if n.lower() == b"x-forwarded-host"]

    assert forwarded_host(False) == [b"spoofed.test"]  # as ngrok
    assert forwarded_host(True) == [b"app.test"]


H2_HEAD = [
    (b":method", b"GET"),
    (b":scheme", b"https"),
    (b":authority", b"app.test"),
    (b":path", b"/"),
]


def h2_refusal(fields: list[tuple[bytes, bytes]], **kwargs: object) -> RefusedError:
    with pytest.raises(RefusedError) as caught:
        translate_h2_request(fields, body=False, client_ip=CLIENT_IP, scheme=b"https", **kwargs)  # type: ignore[arg-type]
    return caught.value


def with_pseudo(name: bytes, value: bytes) -> list[tuple[bytes, bytes]]:
    return [(n, value if n == name else v) for n, v in H2_HEAD]


def test_h2_requests_with_bad_paths_lengths_or_too_many_fields_are_refused() -> None:
    assert h2_refusal(with_pseudo(b":path", b"*")).page.status == 400
    assert h2_refusal(with_pseudo(b":path", b"http://other.test/")).page.status == 400
    assert h2_refusal(with_pseudo(b":path", b"other.test:443")).page.status == 400
    refused = h2_refusal([*H2_HEAD, (b"content-length", TOO_LONG)])
    assert (refused.page.status, refused.reason) == (
        400,
        "Content-Length 18446744073709551621 beyond 2^63-1",
    )
    refused = h2_refusal([*H2_HEAD, *[(b"x-n", b"1")] * 101])
    assert (refused.page.status, refused.page.code) == (431, "BURROW_HEAD_TOO_LARGE")
    assert h2_refusal([*H2_HEAD, (b"a", b"1"), (b"b", b"2")], max_headers=1).page.status == 431


def test_h2_limits_allow_options_asterisk_cookie_crumbs_and_100_fields() -> None:
    options = [(b":method", b"OPTIONS"), *with_pseudo(b":path", b"*")[1:]]
    request = translate_h2_request(options, body=False, client_ip=CLIENT_IP, scheme=b"https")
    assert request.target == b"*"
    fields = [*H2_HEAD, *[(b"x-n", b"1")] * 99, *[(b"cookie", b"c=%d" % n) for n in range(50)]]
    request = translate_h2_request(fields, body=False, client_ip=CLIENT_IP, scheme=b"https")
    assert sum(1 for n, _ in request.headers if n == b"x-n") == 99


def test_h2_x_forwarded_host_passes_unless_replace_is_set() -> None:
    fields = [*H2_HEAD, (b"x-forwarded-host", b"spoofed.test")]

    def forwarded_host(replace: bool) -> list[bytes]:
        request = translate_h2_request(
            fields,
            body=False,
            client_ip=CLIENT_IP,
            scheme=b"https",
            replace_forwarded_host=replace,
        )
        return [v for n, v in request.headers if n.lower() == b"x-forwarded-host"]

    assert forwarded_host(False) == [b"spoofed.test"]
    assert forwarded_host(True) == [b"app.test"]


# -------------------------------------------------------------------------- response_headers


def test_response_headers_lose_hop_by_hop_and_edge_codes() -> None:
    response = parse_response(
        b"HTTP/1.1 200 OK\r\n"
        b"Content-Length: 0\r\n"
        b"Keep-Alive: timeout=5\r\n"
        b"Burrow-Error-Code: ERR_NGROK_3200\r\n"
        b"ngrok-error-code: ERR_NGROK_3200\r\n"
        b"Connection: keep-alive, X-Internal, content-length\r\n"
        b"X-Internal: 1\r\n"
        b"Upgrade: h2c\r\n"
        b"X-Kept: 2\r\n"
        b"\r\n"
    )
    assert response_headers(response.headers, upgrade=False) == [
        (b"Content-Length", b"0"),
        (b"X-Kept", b"2"),
    ]


def test_a_101_keeps_its_upgrade_pair() -> None:
    response = parse_response(
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Accept: abc\r\n\r\n",
        upgrade=True,
    )
    assert response.status_code == 101
    assert response_headers(response.headers, upgrade=True) == [
        (b"Sec-WebSocket-Accept", b"abc"),
        (b"Connection", b"upgrade"),
        (b"Upgrade", b"websocket"),
    ]


# ------------------------------------------------------------------------ raw head and pages


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        ([b"GET / HTTP/1.1\r\nHost: a\r\n", b"\r\nbody"], b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
        ([b"GET / HTTP/1.1\nHost: a\n\nbody"], b"GET / HTTP/1.1\nHost: a\n\n"),
        ([b"GET / HTTP/1.1\r\n", bytearray(b"Host: a\r\n")], b"GET / HTTP/1.1\r\nHost: a\r\n"),
    ],
)
def test_raw_head_ends_at_the_first_empty_line(
    chunks: list[bytes | bytearray], expected: bytes
) -> None:
    assert raw_head(chunks) == expected


@pytest.mark.parametrize(
    ("hint", "status", "detail"),
    [
        (431, 431, "larger than 1024 bytes"),
        (501, 501, "Transfer-Encoding: chunked"),
        (400, 400, "malformed"),
        (200, 400, "malformed"),
    ],
)
def test_head_error_page(hint: int, status: int, detail: str) -> None:
    page = head_error_page(hint, 1024)
    assert page.status == status
    assert detail in page.message
