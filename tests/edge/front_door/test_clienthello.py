"""The ClientHello parser: real hellos from `ssl` and `openssl s_client`, crafted bad ones, fuzzing.

Real hellos are made at test time by the stdlib `ssl` module over memory BIOs (and by the
`openssl` binary when present), never pasted in as blobs. Crafted hellos come from the small
builder below, which writes the RFC 8446 structures field by field.
"""

from __future__ import annotations

import dataclasses
import shutil
import socket
import ssl
import subprocess
import threading
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.front_door.clienthello import (
    MAX_CLIENT_HELLO,
    MAX_HELLO_BYTES,
    MAX_HELLO_RECORDS,
    MAX_RECORD_PAYLOAD,
    Alert,
    ClientHello,
    ClientHelloError,
    alert_record,
    parse_client_hello,
)

TIMEOUT = 10.0  # seconds: openssl's handshake on loopback takes milliseconds; a hang fails fast
ALPN = ["h2", "http/1.1"]

Outcome = ClientHello | tuple[str, Alert] | None


def outcome(data: bytes) -> Outcome:
    """The parser's answer as a comparable value; any exception but ClientHelloError escapes."""
    try:
        return parse_client_hello(data)
    except ClientHelloError as exc:
        return (str(exc), exc.alert)


# ------------------------------------------------------------------------ real hellos from ssl


def capture(ctx: ssl.SSLContext, server_hostname: str | None) -> bytes:
    """The first flight of a client handshake: the ClientHello records, exactly."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    conn = ctx.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    with pytest.raises(ssl.SSLWantReadError):
        conn.do_handshake()
    return outgoing.read()


def client_context(
    minimum: ssl.TLSVersion | None = None, maximum: ssl.TLSVersion | None = None
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if minimum is not None:
        ctx.minimum_version = minimum
    if maximum is not None:
        ctx.maximum_version = maximum
    ctx.set_alpn_protocols(ALPN)
    return ctx


def _real_hellos() -> dict[str, bytes]:
    return {
        "tls12": capture(client_context(maximum=ssl.TLSVersion.TLSv1_2), "app.burrow.test"),
        "tls13": capture(client_context(minimum=ssl.TLSVersion.TLSv1_3), "app.burrow.test"),
        "both": capture(client_context(), "db.clinic.burrow.test"),
    }


REAL = _real_hellos()
REAL_NAMES = sorted(REAL)


def test_tls13_hello_from_ssl() -> None:
    data = REAL["tls13"]
    hello = parse_client_hello(data)
    assert hello is not None
    assert hello.sni == "app.burrow.test"
    assert hello.alpn == ("h2", "http/1.1")
    assert hello.legacy_version == 0x0303
    assert hello.supported_versions == (0x0304,)
    assert hello.offers_tls13
    assert 0x1301 in hello.cipher_suites
    assert hello.extensions[:1] == (0,)
    assert {0, 16, 43}.issubset(hello.extensions)
    assert hello.record_bytes == len(data)


def test_tls12_hello_from_ssl() -> None:
    data = REAL["tls12"]
    hello = parse_client_hello(data)
    assert hello is not None
    assert hello.sni == "app.burrow.test"
    assert hello.alpn == ("h2", "http/1.1")
    assert hello.legacy_version == 0x0303
    assert 0x0304 not in hello.supported_versions
    assert not hello.offers_tls13
    assert 0x1301 not in hello.cipher_suites
    assert hello.record_bytes == len(data)


def test_tls12_and_13_hello_from_ssl() -> None:
    hello = parse_client_hello(REAL["both"])
    assert hello is not None
    assert hello.sni == "db.clinic.burrow.test"
    assert hello.supported_versions[:2] == (0x0304, 0x0303)
    assert hello.record_bytes == len(REAL["both"])


@pytest.mark.parametrize("server_hostname", [None, "127.0.0.1", "::1"])
def test_no_sni_from_ssl(server_hostname: str | None) -> None:
    # Python sends no server_name for an IP address, as RFC 6066 asks.
    hello = parse_client_hello(capture(client_context(), server_hostname))
    assert hello is not None
    assert hello.sni is None
    assert 0 not in hello.extensions
    assert hello.alpn == ("h2", "http/1.1")


def test_accepts_bytearray_and_memoryview() -> None:
    data = REAL["both"]
    expected = parse_client_hello(data)
    assert parse_client_hello(bytearray(data)) == expected
    assert parse_client_hello(memoryview(data)) == expected
    assert parse_client_hello(memoryview(b"junk" + data)[4:]) == expected


# ----------------------------------------------------------------------- openssl s_client


def capture_s_client(args: list[str]) -> bytes:
    """Run `openssl s_client` against a loopback socket that keeps its first flight and closes."""
    openssl = shutil.which("openssl")
    assert openssl is not None
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(TIMEOUT)
        port = server.getsockname()[1]
        received = bytearray()

        def serve() -> None:
            conn, _ = server.accept()
            with conn:
                conn.settimeout(TIMEOUT)
                deadline = time.monotonic() + TIMEOUT
                while outcome(bytes(received)) is None and time.monotonic() < deadline:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    received.extend(chunk)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        subprocess.run(
            [openssl, "s_client", "-connect", f"127.0.0.1:{port}", *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=TIMEOUT,
            check=False,  # it fails: the "server" hangs up instead of answering
        )
        thread.join(TIMEOUT)
    return bytes(received)


# `./dev test` installs openssl (Debian) before the suite runs.
@pytest.mark.parametrize(
    ("extra", "tls13"), [([], True), (["-tls1_2"], False)], ids=["default", "tls1_2"]
)
def test_openssl_s_client_hello(extra: list[str], tls13: bool) -> None:
    data = capture_s_client(["-servername", "Tunnel.Burrow.TEST", "-alpn", "h2,http/1.1", *extra])
    hello = parse_client_hello(data)
    assert hello is not None
    assert hello.sni == "tunnel.burrow.test"  # sent as typed; the parser lower-cases
    assert hello.alpn == ("h2", "http/1.1")
    assert hello.offers_tls13 is tls13
    assert hello.record_bytes == len(data)


def test_caller_buffer_is_not_pinned() -> None:
    # The caller grows one bytearray; neither a result nor a kept error may hold a view of it.
    buffer = bytearray(REAL["both"][:100])
    assert parse_client_hello(buffer) is None
    buffer.extend(REAL["both"][100:])
    assert parse_client_hello(buffer) is not None
    buffer.extend(b"more")
    bad = bytearray(b"\x16\x03\x01\x00\x05\x02")
    with pytest.raises(ClientHelloError) as exc:
        parse_client_hello(bad)
    assert exc.value.alert == Alert.UNEXPECTED_MESSAGE
    bad.extend(b"more")  # would raise BufferError if the traceback still held a view


# --------------------------------------------------------------------------- splits and records


@pytest.mark.parametrize("name", REAL_NAMES)
def test_every_prefix_needs_more_and_trailing_bytes_do_not_matter(name: str) -> None:
    data = REAL[name]
    for n in range(len(data)):
        assert parse_client_hello(data[:n]) is None, n
    hello = parse_client_hello(data)
    assert hello is not None
    assert parse_client_hello(data + b"\x17\x03\x03\x00\x05hello" + bytes(range(256))) == hello
    assert parse_client_hello(data + b"\xff" * 100) == hello


def handshake_message(data: bytes) -> bytes:
    """The concatenated payloads of the records in `data`."""
    payload = bytearray()
    offset = 0
    while offset < len(data):
        length = int.from_bytes(data[offset + 3 : offset + 5], "big")
        payload += data[offset + 5 : offset + 5 + length]
        offset += 5 + length
    return bytes(payload)


def records(
    message: bytes, sizes: list[int] | None = None, content_type: int = 22, version: int = 0x0301
) -> bytes:
    """`message` as records; `sizes` are the first records' payload sizes, the rest in one."""
    out = bytearray()
    offset = 0
    for size in [*(sizes or []), len(message)]:
        chunk = message[offset : offset + size]
        if not chunk:
            break
        out += bytes([content_type]) + version.to_bytes(2, "big") + u16(len(chunk)) + chunk
        offset += len(chunk)
    return bytes(out)


@settings(max_examples=50, deadline=None)
@given(name=st.sampled_from(REAL_NAMES), sizes=st.lists(st.integers(1, 300), max_size=20))
def test_refragmented_hello_parses_the_same(name: str, sizes: list[int]) -> None:
    original = parse_client_hello(REAL[name])
    assert original is not None
    data = records(handshake_message(REAL[name]), sizes)
    hello = parse_client_hello(data)
    assert hello == dataclasses.replace(original, record_bytes=len(data))
    for n in range(len(data)):  # every prefix of the fragmented form still needs more
        assert parse_client_hello(data[:n]) is None


def test_one_byte_records_up_to_the_limit() -> None:
    message = handshake_message(REAL["tls13"])
    # One byte per record until the limit's last record, which carries the rest.
    data = records(message, [1] * (MAX_HELLO_RECORDS - 1))
    hello = parse_client_hello(data)
    assert hello is not None
    assert hello.sni == "app.burrow.test"
    assert hello.record_bytes == len(data)


def test_too_many_records_rejected_when_the_limit_is_reached() -> None:
    message = handshake_message(REAL["tls13"])
    data = records(message, [1] * MAX_HELLO_RECORDS)
    cut = MAX_HELLO_RECORDS * 6  # exactly the limit's records, none of the next one
    assert parse_client_hello(data[: cut - 1]) is None
    with pytest.raises(ClientHelloError, match="more than 64 records") as exc:
        parse_client_hello(data[:cut])
    assert exc.value.alert == Alert.HANDSHAKE_FAILURE


# ------------------------------------------------------------------------------ crafted hellos


def u16(n: int) -> bytes:
    return n.to_bytes(2, "big")


def ext(ext_type: int, body: bytes) -> bytes:
    return u16(ext_type) + u16(len(body)) + body


def sni_ext(*names: bytes, name_type: int = 0) -> bytes:
    entries = b"".join(bytes([name_type]) + u16(len(name)) + name for name in names)
    return ext(0, u16(len(entries)) + entries)


def alpn_ext(*names: bytes) -> bytes:
    entries = b"".join(bytes([len(name)]) + name for name in names)
    return ext(16, u16(len(entries)) + entries)


def versions_ext(*versions: int) -> bytes:
    body = b"".join(u16(v) for v in versions)
    return ext(43, bytes([len(body)]) + body)


def body(
    *,
    version: int = 0x0303,
    session_id: bytes = b"",
    suites: bytes = u16(0x1301),
    compression: bytes = b"\x00",
    extensions: bytes | None = b"",
) -> bytes:
    """A ClientHello body; `extensions=None` leaves the extensions block out entirely."""
    out = u16(version) + bytes(32) + bytes([len(session_id)]) + session_id
    out += u16(len(suites)) + suites + bytes([len(compression)]) + compression
    if extensions is not None:
        out += u16(len(extensions)) + extensions
    return out


def message(body_bytes: bytes, msg_type: int = 1) -> bytes:
    return bytes([msg_type]) + len(body_bytes).to_bytes(3, "big") + body_bytes


def hello(**kwargs: Any) -> bytes:
    return records(message(body(**kwargs)))


def sni_hello(name: bytes) -> bytes:
    return hello(extensions=sni_ext(name))


def test_minimal_hello_without_extensions() -> None:
    result = parse_client_hello(hello(version=0x0301, extensions=None))
    assert result == ClientHello(
        sni=None,
        alpn=(),
        legacy_version=0x0301,
        supported_versions=(),
        cipher_suites=(0x1301,),
        extensions=(),
        record_bytes=5 + 4 + 41,
    )


def test_unknown_and_grease_extensions_are_skipped() -> None:
    extensions = (
        ext(0x0A0A, b"")
        + ext(0xFFFF, b"\x00\x01\x02")
        + sni_ext(b"Mixed.Case-Host.burrow.test")
        + alpn_ext(b"\x00\xff", b"h2")
        + versions_ext(0x7A7A, 0x0304, 0x0303)
        + ext(21, bytes(100))
    )
    result = parse_client_hello(hello(extensions=extensions, session_id=bytes(32)))
    assert result is not None
    assert result.sni == "mixed.case-host.burrow.test"
    assert result.alpn == ("\x00\xff", "h2")  # Latin-1: any octets round-trip
    assert result.supported_versions == (0x7A7A, 0x0304, 0x0303)
    assert result.offers_tls13
    assert result.extensions == (0x0A0A, 0xFFFF, 0, 16, 43, 21)


@pytest.mark.parametrize(
    "name",
    [
        b"a",
        b"x" * 63 + b".test",
        b".".join([b"a" * 63] * 3) + b"." + b"b" * 61,  # 253 characters
        b"1.2.3.example",
        b"xn--bcher-kva.example",
    ],
)
def test_valid_host_names(name: bytes) -> None:
    result = parse_client_hello(sni_hello(name))
    assert result is not None
    assert result.sni == name.decode().lower()


BAD_NAMES = {
    "trailing dot": b"burrow.test.",
    "empty label": b"burrow..test",
    "leading dot": b".burrow.test",
    "label of 64": b"x" * 64 + b".test",
    "254 characters": b".".join([b"a" * 63] * 3) + b"." + b"b" * 62,
    "space": b"burrow test",
    "nul": b"burrow.test\x00.evil",
    "colon and port": b"burrow.test:443",
    "slash": b"burrow.test/x",
    "non-ascii": "bücher.example".encode(),
    "ipv4": b"127.0.0.1",
    "short ipv4": b"127.1",
    "ipv6": b"::1",
    "bracketed ipv6": b"[::1]",
    "numeric tld": b"burrow.123",
    # Underscores: no endpoint can be bound and no certificate issued for such a name (the one
    # host-name rule, protocol/formats/hostnames.py), so the SNI check refuses it too. Was valid.
    "underscore": b"_acme-challenge.burrow.test",
    "leading hyphen": b"-x.burrow.test",
    "trailing hyphen": b"x-.burrow.test",
}


@pytest.mark.parametrize("name", BAD_NAMES.values(), ids=BAD_NAMES.keys())
def test_invalid_host_names_are_unrecognized(name: bytes) -> None:
    with pytest.raises(ClientHelloError, match="server name") as exc:
        parse_client_hello(sni_hello(name))
    assert exc.value.alert == Alert.UNRECOGNIZED_NAME


def _bad_record_length() -> bytes:
    return b"\x16\x03\x01" + u16(MAX_RECORD_PAYLOAD + 1)


BAD: dict[str, tuple[bytes, Alert, str]] = {
    # record layer
    "sslv2": (b"\x80\x2e\x01\x03\x01", Alert.PROTOCOL_VERSION, "SSLv2"),
    "http": (b"GET / HTTP/1.1\r\n", Alert.UNEXPECTED_MESSAGE, "content type 71"),
    "alert record": (b"\x15\x03\x03\x00\x02\x02\x28", Alert.UNEXPECTED_MESSAGE, "type 21"),
    "record major": (b"\x16\x02\x01", Alert.DECODE_ERROR, "major 2"),
    "ssl3 record": (b"\x16\x03\x00", Alert.PROTOCOL_VERSION, "0x0300"),
    "record 0x0305": (b"\x16\x03\x05", Alert.PROTOCOL_VERSION, "0x0305"),
    "empty record": (b"\x16\x03\x01\x00\x00", Alert.DECODE_ERROR, "empty"),
    "record over 2^14": (_bad_record_length(), Alert.RECORD_OVERFLOW, "2^14"),
    "second record not handshake": (
        records(message(body()), [10])[:15] + b"\x17",
        Alert.UNEXPECTED_MESSAGE,
        "inside the ClientHello",
    ),
    "second record sslv2-ish": (
        records(message(body()), [10])[:15] + b"\x80",
        Alert.UNEXPECTED_MESSAGE,
        "inside the ClientHello",
    ),
    # handshake header
    "server hello": (records(message(body(), msg_type=2)), Alert.UNEXPECTED_MESSAGE, "type 2"),
    "handshake too short": (b"\x16\x03\x01\x00\x04\x01\x00\x00\x28", Alert.DECODE_ERROR, "short"),
    "too long": (
        b"\x16\x03\x01\x00\x04\x01" + (MAX_CLIENT_HELLO + 1).to_bytes(3, "big"),
        Alert.HANDSHAKE_FAILURE,
        "limit",
    ),
    "data after hello": (
        records(message(body()) + b"\x01"),
        Alert.UNEXPECTED_MESSAGE,
        "after the ClientHello",
    ),
    # body
    "legacy ssl3": (hello(version=0x0300), Alert.PROTOCOL_VERSION, "0x0300"),
    "legacy 0x0203": (hello(version=0x0203), Alert.PROTOCOL_VERSION, "0x0203"),
    "session id 33": (hello(session_id=bytes(33)), Alert.DECODE_ERROR, "session id"),
    "odd cipher suites": (hello(suites=b"\x13\x01\x13"), Alert.DECODE_ERROR, "cipher_suites"),
    "no cipher suites": (
        hello(suites=b"", extensions=bytes(6)),
        Alert.DECODE_ERROR,
        "cipher_suites",
    ),
    "no compression": (
        hello(compression=b"", extensions=bytes(4)),
        Alert.DECODE_ERROR,
        "compression",
    ),
    "session id overruns": (
        records(message(u16(0x0303) + bytes(32) + b"\xff" + bytes(40))),
        Alert.DECODE_ERROR,
        "legacy_session_id needs 255",
    ),
    "extensions block overruns": (
        records(message(body(extensions=None) + b"\x00\x10" + bytes(8))),
        Alert.DECODE_ERROR,
        "extensions needs 16",
    ),
    "bytes after extensions": (
        records(message(body(extensions=ext(5, b"")) + b"\x00")),
        Alert.DECODE_ERROR,
        "stray bytes after ClientHello",
    ),
    "extension overruns block": (
        hello(extensions=u16(0xFFFF) + u16(9) + bytes(4)),
        Alert.DECODE_ERROR,
        "extension 65535 needs 9",
    ),
    "truncated extension header": (
        hello(extensions=b"\x00"),
        Alert.DECODE_ERROR,
        "extension header needs 4",
    ),
    "duplicate unknown extension": (
        hello(extensions=ext(0xFFFF, b"") + ext(0xFFFF, b"")),
        Alert.DECODE_ERROR,
        "twice",
    ),
    "duplicate server_name": (
        hello(extensions=sni_ext(b"a.test") + sni_ext(b"a.test")),
        Alert.DECODE_ERROR,
        "twice",
    ),
    # server_name
    "empty server_name": (hello(extensions=ext(0, b"")), Alert.DECODE_ERROR, "server_name_list"),
    "server_name list short": (
        hello(extensions=ext(0, u16(5) + b"\x00" + u16(6) + b"a.test")),
        Alert.DECODE_ERROR,
        "4 stray bytes after extension 0",
    ),
    "server_name list long": (
        hello(extensions=ext(0, u16(10) + b"\x00" + u16(6) + b"a.test")),
        Alert.DECODE_ERROR,
        "server_name_list needs 10",
    ),
    "two host names": (
        hello(extensions=sni_ext(b"a.test", b"b.test")),
        Alert.DECODE_ERROR,
        "stray bytes after server_name_list",
    ),
    "name type 1": (hello(extensions=sni_ext(b"a.test", name_type=1)), Alert.DECODE_ERROR, "type"),
    "empty host name": (hello(extensions=sni_ext(b"")), Alert.DECODE_ERROR, "empty host_name"),
    "stray bytes in server_name": (
        hello(extensions=ext(0, sni_ext(b"a.test")[4:] + b"\x00")),
        Alert.DECODE_ERROR,
        "after extension 0",
    ),
    # ALPN
    "empty alpn list": (hello(extensions=ext(16, u16(0))), Alert.DECODE_ERROR, "empty ALPN"),
    "empty alpn name": (hello(extensions=alpn_ext(b"h2", b"")), Alert.DECODE_ERROR, "empty ALPN"),
    "alpn name overruns": (
        hello(extensions=ext(16, u16(3) + b"\x05h2")),
        Alert.DECODE_ERROR,
        "ALPN protocol name needs 5",
    ),
    # supported_versions
    "odd supported_versions": (
        hello(extensions=ext(43, b"\x03\x03\x04\x03")),
        Alert.DECODE_ERROR,
        "supported_versions of 3",
    ),
    "empty supported_versions": (
        hello(extensions=versions_ext()),
        Alert.DECODE_ERROR,
        "supported_versions of 0",
    ),
    "only ssl3 and grease": (
        hello(extensions=versions_ext(0x0300, 0x0A0A)),
        Alert.PROTOCOL_VERSION,
        "nothing from TLS 1.0",
    ),
}


@pytest.mark.parametrize(("data", "alert", "reason"), BAD.values(), ids=BAD.keys())
def test_rejected(data: bytes, alert: Alert, reason: str) -> None:
    with pytest.raises(ClientHelloError, match=reason.replace("^", r"\^")) as exc:
        parse_client_hello(data)
    assert exc.value.alert == alert
    assert isinstance(exc.value, ValueError)
    assert exc.value.reason == str(exc.value)
    # The same error with any bytes after it: errors, like results, never wait for more.
    with pytest.raises(ClientHelloError) as again:
        parse_client_hello(data + bytes(64))
    assert (str(again.value), again.value.alert) == (str(exc.value), alert)


# --------------------------------------------------------------- limits, rejected on sight


def test_record_length_checked_as_soon_as_readable() -> None:
    assert parse_client_hello(b"\x16\x03\x01" + u16(MAX_RECORD_PAYLOAD)) is None
    assert parse_client_hello(_bad_record_length()[:4]) is None
    with pytest.raises(ClientHelloError):
        parse_client_hello(_bad_record_length())


def test_hello_length_checked_as_soon_as_readable() -> None:
    header = b"\x16\x03\x01" + u16(MAX_RECORD_PAYLOAD) + b"\x01"
    assert parse_client_hello(header + MAX_CLIENT_HELLO.to_bytes(3, "big")) is None
    # Split across records, the length is still checked the moment its last byte arrives.
    split = b"\x16\x03\x01\x00\x02\x01\x00" + b"\x16\x03\x01\x00\x02"
    assert parse_client_hello(split + b"\x40\x00") is None  # 0x004000 = MAX_CLIENT_HELLO
    assert parse_client_hello(split + b"\x40") is None
    with pytest.raises(ClientHelloError, match="limit"):
        parse_client_hello(split + b"\x40\x01")


def test_data_after_hello_rejected_before_the_record_arrives() -> None:
    data = records(message(body()) + bytes(1000))
    with pytest.raises(ClientHelloError, match="after the ClientHello"):
        parse_client_hello(data[:9])


def test_largest_hello_over_most_records_spans_max_hello_bytes() -> None:
    grown = body(extensions=ext(0xFFFF, b""))
    padding = MAX_CLIENT_HELLO - len(grown)
    largest = message(body(extensions=ext(0xFFFF, bytes(padding))))
    assert len(largest) == 4 + MAX_CLIENT_HELLO
    data = records(largest, [1] * (MAX_HELLO_RECORDS - 1))
    assert len(data) == MAX_HELLO_BYTES
    result = parse_client_hello(data)
    assert result is not None
    assert result.record_bytes == MAX_HELLO_BYTES
    over = message(body(extensions=ext(0xFFFF, bytes(padding + 1))))
    with pytest.raises(ClientHelloError, match="limit"):
        parse_client_hello(records(over, [MAX_RECORD_PAYLOAD])[:9])


def test_alert_records() -> None:
    assert alert_record(Alert.UNRECOGNIZED_NAME) == bytes.fromhex("15030300020270")
    assert alert_record(Alert.DECODE_ERROR)[-1] == 50
    assert alert_record(Alert.PROTOCOL_VERSION)[-1] == 70
    assert alert_record(Alert.HANDSHAKE_FAILURE)[-1] == 40
    assert Alert.UNRECOGNIZED_NAME.value == "unrecognized_name"


# ----------------------------------------------------------------------------------- fuzzing


def check_prefixes_agree(data: bytes, cuts: list[int]) -> Outcome:
    """Parse prefixes of `data` at growing `cuts`: once one answers, every longer one agrees."""
    final = outcome(data)
    answered: Outcome = None
    for cut in sorted({*cuts, len(data)}):
        result = outcome(data[:cut])
        if answered is not None:
            assert result == answered, cut
        elif result is not None:
            assert result == final, cut
            answered = result
    if isinstance(final, ClientHello):
        assert final.record_bytes <= len(data)
        assert outcome(data[: final.record_bytes]) == final
    if len(data) >= MAX_HELLO_BYTES:
        assert final is not None
    return final


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=600),
        st.binary(max_size=600).map(lambda b: b"\x16\x03\x01" + b),
        st.binary(max_size=600).map(lambda b: b"\x16\x03\x03" + u16(len(b) + 1) + b"\x01" + b),
    )
)
def test_random_bytes_give_only_hello_none_or_error(data: bytes) -> None:
    check_prefixes_agree(data, list(range(len(data))))


@st.composite
def mutated_hellos(draw: st.DrawFn) -> bytes:
    name = draw(st.sampled_from(REAL_NAMES))
    sizes = draw(st.lists(st.integers(1, 200), max_size=6))  # often re-fragmented first
    data = bytearray(records(handshake_message(REAL[name]), sizes))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete"]))
        pos = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            data[pos] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        else:
            del data[pos : pos + draw(st.integers(1, 4))]
    return bytes(data)


@settings(max_examples=300, deadline=None)
@given(mutated_hellos(), st.lists(st.integers(0, 600), max_size=12))
def test_mutated_hellos_give_only_hello_none_or_error(data: bytes, cuts: list[int]) -> None:
    check_prefixes_agree(data, cuts)


@settings(max_examples=25, deadline=None)
@given(mutated_hellos())
def test_mutated_hellos_byte_by_byte_agree_with_whole(data: bytes) -> None:
    check_prefixes_agree(data, list(range(len(data))))


@settings(max_examples=50, deadline=None)
@given(st.sampled_from(REAL_NAMES), st.binary(max_size=64))
def test_trailing_bytes_never_change_the_answer(name: str, tail: bytes) -> None:
    assert outcome(REAL[name] + tail) == outcome(REAL[name])
