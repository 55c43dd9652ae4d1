"""agent.proxy_handshake: HTTP CONNECT and SOCKS5 as bytes in, bytes out (no sockets)."""

from __future__ import annotations

import base64
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.proxy_handshake import (
    MAX_RESPONSE_HEAD_SIZE,
    ConnectHandshake,
    ProxyError,
    ProxyHandshake,
    Socks5Handshake,
    handshake_for,
)
from agent.proxy_url import parse_proxy_url

HTTP = parse_proxy_url("http://127.0.0.1:3128")
HTTP_AUTH = parse_proxy_url("http://alice:s3cret@127.0.0.1:3128")
SOCKS = parse_proxy_url("socks5://127.0.0.1:1080")
SOCKS_AUTH = parse_proxy_url("socks5://alice:s3cret@127.0.0.1:1080")
EDGE = ("connect.acme.example", 443)

SOCKS_OK_IPV4 = b"\x05\x00\x00\x01\x7f\x00\x00\x01\x01\xbb"


def feed(handshake: ProxyHandshake, data: bytes, *, bytewise: bool = False) -> bytes | None:
    """Feed `data` whole, or one byte at a time; the first non-None answer."""
    chunks = [data[i : i + 1] for i in range(len(data))] if bytewise else [data]
    for chunk in chunks:
        result = handshake.receive_data(chunk)
        if result is not None:
            return result
    return None


# --- HTTP CONNECT -----------------------------------------------------------------------------


def test_connect_request_names_the_host_for_the_proxy_to_resolve() -> None:
    shake = ConnectHandshake(HTTP, *EDGE)
    request = shake.data_to_send()
    head, _, rest = request.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"CONNECT connect.acme.example:443 HTTP/1.1"
    assert b"host: connect.acme.example:443" in [line.lower() for line in lines]
    assert not any(line.lower().startswith(b"proxy-authorization") for line in lines)
    assert rest == b""
    assert shake.data_to_send() == b""  # drained


def test_connect_request_brackets_an_ipv6_target() -> None:
    request = ConnectHandshake(HTTP, "::1", 8443).data_to_send()
    assert request.startswith(b"CONNECT [::1]:8443 HTTP/1.1\r\n")


def test_connect_request_carries_basic_credentials() -> None:
    request = ConnectHandshake(HTTP_AUTH, *EDGE).data_to_send()
    expected = b"Basic " + base64.b64encode(b"alice:s3cret")
    assert b"Proxy-Authorization: " + expected + b"\r\n" in request


@pytest.mark.parametrize("bytewise", [False, True])
def test_connect_2xx_opens_the_tunnel(bytewise: bool) -> None:
    shake = ConnectHandshake(HTTP, *EDGE)
    answer = b"HTTP/1.0 200 Connection established\r\nProxy-agent: tinyproxy/1.11.1\r\n\r\n"
    assert feed(shake, answer[:-1], bytewise=bytewise) is None
    assert shake.receive_data(answer[-1:]) == b""


def test_connect_hands_back_bytes_past_the_head() -> None:
    shake = ConnectHandshake(HTTP, *EDGE)
    assert shake.receive_data(b"HTTP/1.1 200 OK\r\n\r\n\x16\x03\x01") == b"\x16\x03\x01"


def test_connect_skips_informational_responses() -> None:
    shake = ConnectHandshake(HTTP, *EDGE)
    assert shake.receive_data(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n") == b""


def test_connect_407_without_credentials_says_where_to_put_them() -> None:
    shake = ConnectHandshake(HTTP, *EDGE)
    with pytest.raises(ProxyError) as caught:
        shake.receive_data(
            b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n"
        )
    assert str(caught.value) == (
        "proxy 127.0.0.1:3128 requires credentials (407 Proxy Authentication Required); put "
        "them in agent.proxy_url as http://user:password@host:port"
    )


@pytest.mark.parametrize("status", [407, 401])  # tinyproxy answers bad credentials with 401
def test_connect_refused_credentials_are_one_clear_line(status: int) -> None:
    shake = ConnectHandshake(HTTP_AUTH, *EDGE)
    with pytest.raises(ProxyError) as caught:
        shake.receive_data(f"HTTP/1.0 {status} Nope\r\n\r\n".encode())
    assert str(caught.value) == (
        f"proxy 127.0.0.1:3128 refused the credentials ({status}); check the user name and "
        "password in agent.proxy_url"
    )


def test_connect_other_refusals_carry_the_status_line() -> None:
    shake = ConnectHandshake(HTTP, *EDGE)
    with pytest.raises(ProxyError) as caught:
        shake.receive_data(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 5\r\n\r\nnope!")
    assert str(caught.value) == (
        "proxy 127.0.0.1:3128 refused CONNECT connect.acme.example:443: 403 Forbidden"
    )


def test_connect_malformed_answer() -> None:
    shake = ConnectHandshake(HTTP, *EDGE)
    with pytest.raises(ProxyError, match="sent a malformed answer to CONNECT"):
        shake.receive_data(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")


def test_connect_head_is_capped() -> None:
    shake = ConnectHandshake(HTTP, *EDGE)
    assert shake.receive_data(b"HTTP/1.1 200 OK\r\n") is None
    header = b"X-Filler: " + b"a" * 1000 + b"\r\n"
    with pytest.raises(ProxyError, match="malformed answer"):
        for _ in range(MAX_RESPONSE_HEAD_SIZE // len(header) + 2):
            assert shake.receive_data(header) is None


@pytest.mark.parametrize("sent", [b"", b"HTTP/1.1 200 O"])
def test_connect_eof_before_the_answer(sent: bytes) -> None:
    shake = ConnectHandshake(HTTP, *EDGE)
    if sent:
        assert shake.receive_data(sent) is None
    with pytest.raises(ProxyError) as caught:
        shake.receive_data(b"")
    assert str(caught.value) == (
        "proxy 127.0.0.1:3128 closed the connection during the handshake (is it a http:// "
        "proxy? check agent.proxy_url)"
    )


# --- SOCKS5 -----------------------------------------------------------------------------------


def socks_request(host: bytes, port: int) -> bytes:
    return b"\x05\x01\x00\x03" + bytes([len(host)]) + host + struct.pack("!H", port)


@pytest.mark.parametrize("bytewise", [False, True])
def test_socks5_without_auth_sends_the_host_name(bytewise: bool) -> None:
    shake = Socks5Handshake(SOCKS, *EDGE)
    assert shake.data_to_send() == b"\x05\x01\x00"
    assert feed(shake, b"\x05\x00", bytewise=bytewise) is None
    assert shake.data_to_send() == socks_request(b"connect.acme.example", 443)
    assert feed(shake, SOCKS_OK_IPV4, bytewise=bytewise) == b""
    assert shake.state == "open"


@pytest.mark.parametrize("bytewise", [False, True])
def test_socks5_username_password(bytewise: bool) -> None:
    shake = Socks5Handshake(SOCKS_AUTH, *EDGE)
    assert shake.data_to_send() == b"\x05\x02\x00\x02"
    assert feed(shake, b"\x05\x02", bytewise=bytewise) is None
    assert shake.data_to_send() == b"\x01\x05alice\x06s3cret"
    assert feed(shake, b"\x01\x00", bytewise=bytewise) is None
    assert shake.data_to_send() == socks_request(b"connect.acme.example", 443)
    # A bound address given as a name: its length byte decides the reply's size.
    reply = b"\x05\x00\x00\x03\x05proxy\x01\xbb"
    assert feed(shake, reply, bytewise=bytewise) == b""


def test_socks5_server_may_skip_auth_even_when_offered() -> None:
    shake = Socks5Handshake(SOCKS_AUTH, *EDGE)
    shake.data_to_send()
    assert shake.receive_data(b"\x05\x00") is None
    assert shake.data_to_send() == socks_request(b"connect.acme.example", 443)


def test_socks5_replies_in_one_read_are_all_consumed() -> None:
    shake = Socks5Handshake(SOCKS_AUTH, *EDGE)
    shake.data_to_send()
    assert shake.receive_data(b"\x05\x02\x01\x00" + SOCKS_OK_IPV4 + b"extra") == b"extra"
    sent = shake.data_to_send()
    assert sent == b"\x01\x05alice\x06s3cret" + socks_request(b"connect.acme.example", 443)


def test_socks5_ip_targets_use_their_address_types() -> None:
    v4 = Socks5Handshake(SOCKS, "192.0.2.7", 443)
    v4.data_to_send()
    v4.receive_data(b"\x05\x00")
    assert v4.data_to_send() == b"\x05\x01\x00\x01\xc0\x00\x02\x07\x01\xbb"
    v6 = Socks5Handshake(SOCKS, "::1", 8443)
    v6.data_to_send()
    v6.receive_data(b"\x05\x00")
    assert v6.data_to_send() == b"\x05\x01\x00\x04" + b"\x00" * 15 + b"\x01" + b"\x20\xfb"


def test_socks5_ipv6_bound_address_reply() -> None:
    shake = Socks5Handshake(SOCKS, *EDGE)
    shake.receive_data(b"\x05\x00")
    reply = b"\x05\x00\x00\x04" + b"\x00" * 16 + b"\x00\x50"
    assert shake.receive_data(reply[:-1]) is None
    assert shake.receive_data(reply[-1:]) == b""


def test_socks5_authentication_failed() -> None:
    shake = Socks5Handshake(SOCKS_AUTH, *EDGE)
    shake.receive_data(b"\x05\x02")
    with pytest.raises(ProxyError) as caught:
        shake.receive_data(b"\x01\x01")
    assert str(caught.value) == (
        "SOCKS5 proxy 127.0.0.1:1080: authentication failed; check the user name and password "
        "in agent.proxy_url"
    )


def test_socks5_requires_auth_we_do_not_have() -> None:
    shake = Socks5Handshake(SOCKS, *EDGE)
    with pytest.raises(ProxyError, match="requires authentication; put a user name and password"):
        shake.receive_data(b"\x05\xff")


def test_socks5_accepts_none_of_our_methods() -> None:
    shake = Socks5Handshake(SOCKS_AUTH, *EDGE)
    with pytest.raises(ProxyError, match="accepts neither no authentication nor a user name"):
        shake.receive_data(b"\x05\xff")


def test_socks5_method_not_offered() -> None:
    shake = Socks5Handshake(SOCKS, *EDGE)
    with pytest.raises(ProxyError, match="chose authentication method 2, not offered"):
        shake.receive_data(b"\x05\x02")


@pytest.mark.parametrize(
    ("code", "meaning"),
    [(1, "general SOCKS server failure"), (2, "connection not allowed by the proxy's rules"),
     (4, "host unreachable"), (5, "connection refused"), (9, "unknown error")],
)  # fmt: skip
def test_socks5_connect_refusals(code: int, meaning: str) -> None:
    shake = Socks5Handshake(SOCKS, *EDGE)
    shake.receive_data(b"\x05\x00")
    with pytest.raises(ProxyError) as caught:
        shake.receive_data(bytes([5, code, 0, 1]) + b"\x00" * 6)
    assert str(caught.value) == (
        f"SOCKS5 proxy 127.0.0.1:1080 could not connect to connect.acme.example:443: {meaning} "
        f"(reply {code})"
    )


def test_socks5_wrong_version_is_not_a_socks5_proxy() -> None:
    shake = Socks5Handshake(SOCKS, *EDGE)
    with pytest.raises(ProxyError, match="did not answer as SOCKS5 \\(version byte 72\\)"):
        shake.receive_data(b"HTTP/1.1 400 Bad Request\r\n\r\n")


def test_socks5_unknown_address_type() -> None:
    shake = Socks5Handshake(SOCKS, *EDGE)
    shake.receive_data(b"\x05\x00")
    with pytest.raises(ProxyError, match="unknown address type 9"):
        shake.receive_data(b"\x05\x00\x00\x09\x00\x00\x00")


def test_socks5_eof_mid_reply() -> None:
    shake = Socks5Handshake(SOCKS, *EDGE)
    shake.receive_data(b"\x05\x00")
    assert shake.receive_data(SOCKS_OK_IPV4[:4]) is None
    with pytest.raises(ProxyError, match=r"^SOCKS5 proxy 127\.0\.0\.1:1080 closed the connection"):
        shake.receive_data(b"")


def test_socks5_host_name_too_long() -> None:
    with pytest.raises(ProxyError, match="longer than SOCKS5's 255 bytes"):
        Socks5Handshake(SOCKS, "a" * 256, 443)


def test_socks5_no_input_after_open() -> None:
    shake = Socks5Handshake(SOCKS, *EDGE)
    shake.receive_data(b"\x05\x00" + SOCKS_OK_IPV4)
    with pytest.raises(ProxyError, match="already over"):
        shake.receive_data(b"x")


def test_handshake_for_picks_by_scheme() -> None:
    assert isinstance(handshake_for(SOCKS, *EDGE), Socks5Handshake)
    assert isinstance(handshake_for(HTTP, *EDGE), ConnectHandshake)
    assert isinstance(handshake_for(parse_proxy_url("https://p.lan"), *EDGE), ConnectHandshake)


# --- splitting never changes the outcome ------------------------------------------------------

SOCKS_SCRIPT = b"\x05\x02\x01\x00\x05\x00\x00\x03\x05proxy\x01\xbb"
CONNECT_SCRIPT = b"HTTP/1.1 200 Connection established\r\nVia: 1.1 squid\r\n\r\n"


@given(st.data())
def test_any_split_of_the_answers_gives_the_same_result(data: st.DataObject) -> None:
    for make, script in (
        (lambda: Socks5Handshake(SOCKS_AUTH, *EDGE), SOCKS_SCRIPT),
        (lambda: ConnectHandshake(HTTP, *EDGE), CONNECT_SCRIPT),
    ):
        cuts = sorted(data.draw(st.sets(st.integers(1, len(script) - 1), max_size=8)))
        shake = make()
        sent = shake.data_to_send()
        results = []
        for start, end in zip([0, *cuts], [*cuts, len(script)], strict=True):
            results.append(shake.receive_data(script[start:end]))
            sent += shake.data_to_send()
        whole = make()
        whole_sent = whole.data_to_send()
        assert whole.receive_data(script) == b""
        assert results[-1] == b""
        assert all(result is None for result in results[:-1])
        assert sent == whole_sent + whole.data_to_send()
