"""PROXY protocol v1/v2: byte-exact vectors from the HAProxy spec, round trips, and a parser
that returns a header, None (need more) or ProxyProtocolError for anything else."""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.formats.proxy_protocol import (
    V1_MAX_LENGTH,
    V2_SIGNATURE,
    Command,
    Family,
    ProxyProtocolError,
    ProxyProtocolHeader,
    SocketAddress,
    encode_v1,
    encode_v2,
    parse,
)


def addr(text: str) -> SocketAddress:
    return SocketAddress.parse(text)


# --- known vectors -------------------------------------------------------------------------

V1_VECTORS = [
    # the spec's own example
    ("192.168.0.1:56324", "192.168.0.11:443", b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"),
    ("[2001:db8::1]:443", "[2001:db8::2]:8443", b"PROXY TCP6 2001:db8::1 2001:db8::2 443 8443\r\n"),
    # mixed families: the IPv4 side is IPv4-mapped (203.0.113.5 = cb00:7105)
    (
        "203.0.113.5:51234",
        "[2001:db8::1]:443",
        b"PROXY TCP6 ::ffff:cb00:7105 2001:db8::1 51234 443\r\n",
    ),
    # IPv4-mapped on both sides is plain IPv4
    ("[::ffff:10.0.0.1]:1", "[::ffff:10.0.0.2]:0", b"PROXY TCP4 10.0.0.1 10.0.0.2 1 0\r\n"),
]


@pytest.mark.parametrize(("src", "dst", "wire"), V1_VECTORS)
def test_v1_vectors(src: str, dst: str, wire: bytes) -> None:
    assert encode_v1(addr(src), addr(dst)) == wire


V2_TCP4 = bytes.fromhex(
    "0d0a0d0a000d0a515549540a"  # signature
    "21"  # version 2, PROXY
    "11"  # TCP over IPv4
    "000c"  # 12 bytes follow
    "c0a80001"  # 192.168.0.1
    "c0a8000b"  # 192.168.0.11
    "dc04"  # 56324
    "01bb"  # 443
)
V2_TCP6_MIXED = bytes.fromhex(
    "0d0a0d0a000d0a515549540a"
    "21"
    "21"  # TCP over IPv6
    "0024"  # 36 bytes follow
    "00000000000000000000ffffcb007105"  # ::ffff:203.0.113.5
    "20010db8000000000000000000000001"  # 2001:db8::1
    "c822"  # 51234
    "01bb"
)


def test_v2_vectors() -> None:
    assert encode_v2(addr("192.168.0.1:56324"), addr("192.168.0.11:443")) == V2_TCP4
    assert encode_v2(addr("203.0.113.5:51234"), addr("[2001:db8::1]:443")) == V2_TCP6_MIXED


def test_parse_v1_and_leave_the_payload() -> None:
    data = V1_VECTORS[0][2] + b"GET / HTTP/1.1\r\n"
    header, consumed = parse(data) or pytest.fail("need more?")
    assert consumed == len(V1_VECTORS[0][2])
    assert header == ProxyProtocolHeader(
        version=1,
        command=Command.PROXY,
        family=Family.TCP4,
        source=addr("192.168.0.1:56324"),
        destination=addr("192.168.0.11:443"),
    )


def test_parse_v2_mixed_families() -> None:
    header, consumed = parse(V2_TCP6_MIXED + b"\x16\x03\x01") or pytest.fail("need more?")
    assert consumed == len(V2_TCP6_MIXED)
    assert header.family is Family.TCP6
    assert header.source == addr("[::ffff:203.0.113.5]:51234")
    assert header.destination == addr("[2001:db8::1]:443")


def test_parse_v1_unknown_ignores_the_rest_of_the_line() -> None:
    for line in (b"PROXY UNKNOWN\r\n", b"PROXY UNKNOWN ffff:: ffff:: 1 2\r\n"):
        header, consumed = parse(line + b"x") or pytest.fail("need more?")
        assert consumed == len(line)
        assert (header.family, header.source, header.destination) == (Family.UNSPEC, None, None)


def test_parse_v2_local_carries_no_addresses() -> None:
    local = V2_SIGNATURE + bytes([0x20, 0x00, 0x00, 0x00])
    header, consumed = parse(local) or pytest.fail("need more?")
    assert (header.command, header.family, header.source, consumed) == (
        Command.LOCAL,
        Family.UNSPEC,
        None,
        16,
    )
    # LOCAL with an address block: the block is skipped, the addresses ignored
    header, consumed = parse(V2_TCP4[:12] + b"\x20" + V2_TCP4[13:]) or pytest.fail()
    assert (header.command, header.source, consumed) == (Command.LOCAL, None, len(V2_TCP4))


def test_parse_v2_keeps_tlvs_undecoded() -> None:
    tlv = b"\x04\x00\x02ok"  # PP2_TYPE_NOOP, 2 bytes
    data = V2_TCP4[:14] + struct.pack("!H", 12 + len(tlv)) + V2_TCP4[16:] + tlv
    header, consumed = parse(data) or pytest.fail("need more?")
    assert (header.tlvs, consumed) == (tlv, len(data))
    assert header.source == addr("192.168.0.1:56324")


def test_parse_v2_udp_and_unix() -> None:
    udp = V2_TCP4[:13] + b"\x12" + V2_TCP4[14:]
    header, _ = parse(udp) or pytest.fail()
    assert (header.family, header.destination) == (Family.UDP4, addr("192.168.0.11:443"))
    unix = V2_SIGNATURE + b"\x21\x31" + struct.pack("!H", 216) + b"/tmp/a".ljust(216, b"\0")
    header, consumed = parse(unix) or pytest.fail()
    assert (header.family, header.source, consumed) == (Family.UNIX_STREAM, None, 232)


@pytest.mark.parametrize("wire", [V1_VECTORS[0][2], V1_VECTORS[2][2], V2_TCP4, V2_TCP6_MIXED])
def test_every_strict_prefix_needs_more(wire: bytes) -> None:
    for end in range(len(wire)):
        assert parse(wire[:end]) is None, end


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", "not a PROXY protocol header"),
        (b"\x16\x03\x01\x02\x00", "not a PROXY protocol header"),
        (b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "not a PROXY protocol header"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "bare LF"),
        (b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "single spaces"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "single spaces"),
        (b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", "not TCP4, TCP6 or UNKNOWN"),
        (b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n", "is not an IPv4 address"),
        (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "is not an IPv6 address"),
        (b"PROXY TCP4 192.168.000.1 5.6.7.8 1 2\r\n", "is not an IPv4 address"),
        (b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "is not an IPv6 address"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 0443 2\r\n", "without leading 0s"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "without leading 0s"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", "without leading 0s"),
        (b"PROXY " + b"x" * 200, "no CRLF within 107 bytes"),
        (V2_SIGNATURE[:5] + b"X", "not a PROXY protocol header"),
        (V2_SIGNATURE + b"\x11\x11\x00\x0c", "version nibble is 1"),
        (V2_SIGNATURE + b"\x22\x11\x00\x0c", "neither LOCAL (0) nor PROXY (1)"),
        (V2_SIGNATURE + b"\x21\x13\x00\x0c", "family byte 0x13 is unknown"),
        (V2_SIGNATURE + b"\x21\x11\x00\x08" + bytes(8), "shorter than the 12-byte TCP4"),
        (V2_SIGNATURE + b"\x21\x21\x00\x0c" + bytes(12), "shorter than the 36-byte TCP6"),
    ],
)
def test_garbage_is_refused_with_a_reason(data: bytes, message: str) -> None:
    with pytest.raises(ProxyProtocolError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse(data)


def test_the_longest_v1_line_fits_the_limit() -> None:
    widest = addr("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe]:65535")
    line = encode_v1(widest, widest)
    assert len(line) == 104  # the spec's TCP6 maximum; UNKNOWN may use up to 107
    assert len(line) <= V1_MAX_LENGTH
    assert parse(line) is not None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("203.0.113.5:51234", SocketAddress(ipaddress.IPv4Address("203.0.113.5"), 51234)),
        ("[2001:db8::1]:443", SocketAddress(ipaddress.IPv6Address("2001:db8::1"), 443)),
    ],
)
def test_socket_address_parse_and_str(text: str, expected: SocketAddress) -> None:
    assert SocketAddress.parse(text) == expected
    assert str(expected) == text


def test_a_socket_address_is_an_ip_port_pair() -> None:
    ip, port = SocketAddress.parse("[::1]:80")
    assert (ip, port) == (ipaddress.IPv6Address("::1"), 80)


@pytest.mark.parametrize("encode", [encode_v1, encode_v2])
def test_encoders_refuse_a_port_out_of_range(
    encode: Callable[[SocketAddress, SocketAddress], bytes],
) -> None:
    good = addr("10.0.0.1:1")
    bad = SocketAddress(ipaddress.IPv4Address("10.0.0.2"), 65536)
    with pytest.raises(ValueError, match="port 65536 is outside 0-65535"):
        encode(good, bad)


@pytest.mark.parametrize(
    "text", ["example.com:80", "1.2.3.4", "::1:80", "1.2.3.4:65536", "1.2.3.4:-1", "[1.2.3.4]:5"]
)
def test_socket_address_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError):  # several messages, one type
        SocketAddress.parse(text)


# --- properties ------------------------------------------------------------------------------

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
Encoder = tuple[int, Callable[[SocketAddress, SocketAddress], bytes]]

ipv4 = st.builds(ipaddress.IPv4Address, st.integers(0, 2**32 - 1))
ipv6 = st.builds(ipaddress.IPv6Address, st.integers(0, 2**128 - 1))
addresses = st.builds(SocketAddress, st.one_of(ipv4, ipv6), st.integers(0, 65535))
encoders: st.SearchStrategy[Encoder] = st.sampled_from([(1, encode_v1), (2, encode_v2)])


def _expected(src: SocketAddress, dst: SocketAddress) -> tuple[SocketAddress, SocketAddress]:
    """What a header carries: IPv4 if both addresses are IPv4 (IPv4-mapped counts), else IPv6
    with the IPv4 side mapped. Written independently of the module's own helpers."""

    def unmapped(ip: IP) -> IP:
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        return ip

    def mapped(ip: IP) -> IP:
        return ipaddress.IPv6Address(f"::ffff:{ip}") if ip.version == 4 else ip

    ips = unmapped(src.ip), unmapped(dst.ip)
    if ips[0].version == ips[1].version == 4:
        return SocketAddress(ips[0], src.port), SocketAddress(ips[1], dst.port)
    return SocketAddress(mapped(ips[0]), src.port), SocketAddress(mapped(ips[1]), dst.port)


@given(addresses, addresses, encoders, st.binary(max_size=32))
def test_round_trip(
    src: SocketAddress, dst: SocketAddress, encoder: Encoder, payload: bytes
) -> None:
    version, encode = encoder
    wire = encode(src, dst)
    header, consumed = parse(wire + payload) or pytest.fail("need more?")
    assert consumed == len(wire)
    assert header.version == version
    assert header.command is Command.PROXY
    expected = _expected(src, dst)
    assert (header.source, header.destination) == expected
    assert header.family is (Family.TCP4 if expected[0].ip.version == 4 else Family.TCP6)
    if version == 1:
        assert len(wire) <= V1_MAX_LENGTH


@given(addresses, addresses, encoders, st.data())
def test_split_anywhere_needs_more_then_parses(
    src: SocketAddress, dst: SocketAddress, encoder: Encoder, data: st.DataObject
) -> None:
    wire = encoder[1](src, dst)
    cut = data.draw(st.integers(0, len(wire) - 1))
    assert parse(wire[:cut]) is None
    assert parse(wire) == parse(bytearray(wire)) == parse(memoryview(wire))


@given(addresses, addresses, encoders, st.data())
def test_mutated_headers_parse_need_more_or_raise_our_error(
    src: SocketAddress, dst: SocketAddress, encoder: Encoder, data: st.DataObject
) -> None:
    wire = bytearray(encoder[1](src, dst))
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(wire) - 1))
        wire[index] = data.draw(st.integers(0, 255))
    try:
        result = parse(wire)
    except ProxyProtocolError:
        return
    if result is not None:
        assert 0 < result[1] <= len(wire)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_escape_as_another_error(data: bytes) -> None:
    try:
        result = parse(data)
    except ProxyProtocolError:
        return
    if result is not None:
        assert 0 < result[1] <= len(data)
