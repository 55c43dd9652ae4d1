"""JSON and msgpack codecs, the incremental reader, proxy-header framing (protocol/rpc/codec.py)."""

from __future__ import annotations

import dataclasses
import json
import struct
import typing
from types import NoneType, UnionType
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.rpc import messages
from protocol.rpc.codec import (
    MAX_MESSAGE_SIZE,
    MAX_PROXY_HEADER_SIZE,
    Codec,
    MessageReader,
    decode,
    decode_value,
    detect_codec,
    encode,
    encode_proxy_header,
    encode_value,
    parse_proxy_header,
)
from protocol.rpc.messages import (
    Auth,
    AuthExtra,
    Bind,
    Message,
    ProxyHeader,
    RpcDecodeError,
    SrvInfoResp,
    to_wire,
)

CODECS = [Codec.JSON, Codec.MSGPACK]

# --- strategies derived from the message classes' annotations ---------------------------

INT64 = st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1)
JSON_VALUES: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | INT64
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)
ALL_MESSAGE_CLASSES = sorted(
    (
        obj
        for obj in vars(messages).values()
        if isinstance(obj, type) and issubclass(obj, Message) and obj is not Message
    ),
    key=lambda cls: cls.__name__,
)


def _strategy_for(tp: object) -> st.SearchStrategy[Any]:
    if tp is str:
        return st.text(max_size=30)
    if tp is int:
        return INT64
    if tp is bool:
        return st.booleans()
    if tp is Any:
        return JSON_VALUES
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is UnionType:
        inner = args[0] if args[1] is NoneType else args[1]
        return st.none() | _strategy_for(inner)
    if origin is tuple:
        return st.lists(_strategy_for(args[0]), max_size=3).map(tuple)
    if origin is dict and args == (str, str):
        return st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=3)
    if origin is dict:
        return st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=4)
    assert isinstance(tp, type)
    assert issubclass(tp, Message)
    return message_of(tp)


def message_of(cls: type[Message]) -> st.SearchStrategy[Message]:
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    return st.builds(cls, **{f.name: _strategy_for(hints[f.name]) for f in fields})


ANY_MESSAGE = st.one_of([message_of(cls) for cls in ALL_MESSAGE_CLASSES])


def _encoded_stream(msgs: list[Message], codec: Codec) -> bytes:
    return b"".join(encode(m, codec) for m in msgs)


def _drain(reader: MessageReader) -> list[dict[str, object]]:
    values = []
    while (value := reader.next_value()) is not None:
        values.append(value)
    return values


# --- detect_codec -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "codec"),
    [
        (b"{", Codec.JSON),
        (b" ", Codec.JSON),
        (b"\t", Codec.JSON),
        (b"\r", Codec.JSON),
        (b"\n", Codec.JSON),
        (b"\x80", Codec.MSGPACK),
        (b"\x85", Codec.MSGPACK),
        (b"\x8f", Codec.MSGPACK),
        (b"\xde", Codec.MSGPACK),
        (b"\xdf", Codec.MSGPACK),
    ],
)
def test_detect_codec(first: bytes, codec: Codec) -> None:
    assert detect_codec(first[0]) is codec


@pytest.mark.parametrize("first", [b"[", b'"', b"0", b"\x00", b"\x90", b"\xdc", b"\xc0", b"\xff"])
def test_detect_codec_rejects_non_maps(first: bytes) -> None:
    with pytest.raises(RpcDecodeError, match="cannot start an RPC body"):
        detect_codec(first[0])


def test_detect_codec_agrees_with_every_encoding() -> None:
    for cls in ALL_MESSAGE_CLASSES:
        for codec in CODECS:
            assert detect_codec(encode(cls(), codec)[0]) is codec


# --- encode / decode --------------------------------------------------------------------


def test_json_is_compact_with_go_newline() -> None:
    assert encode(SrvInfoResp(region="eu"), Codec.JSON) == b'{"Region":"eu"}\n'


def test_msgpack_is_a_map_with_the_same_keys() -> None:
    auth = Auth(version=("3", "2"), extra=AuthExtra(authtoken="t"))
    assert msgpack.unpackb(encode(auth, Codec.MSGPACK)) == to_wire(auth)


@pytest.mark.parametrize("codec", CODECS)
@given(msg=ANY_MESSAGE)
def test_round_trip_every_message(codec: Codec, msg: Message) -> None:
    assert decode(type(msg), encode(msg, codec), codec) == msg


@pytest.mark.parametrize("cls", ALL_MESSAGE_CLASSES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("codec", CODECS)
def test_round_trip_defaults(cls: type[Message], codec: Codec) -> None:
    assert decode(cls, encode(cls(), codec), codec) == cls()


def test_decode_accepts_rust_spelling_and_whitespace() -> None:
    body = b' \n{"Version":["2"],"Extra":{"AuthToken":"t","Unknown":[1]}} \n'
    assert decode(Auth, body, Codec.JSON) == Auth(version=("2",), extra=AuthExtra(authtoken="t"))


@pytest.mark.parametrize(
    ("data", "codec"),
    [
        (b"", Codec.JSON),
        (b"[1]", Codec.JSON),
        (b'"x"', Codec.JSON),
        (b'{"Region":"eu"} {}', Codec.JSON),
        (b'{"Region":"eu"', Codec.JSON),
        (b'{"Region":"\xff"}', Codec.JSON),
        (b'{"Region":NaN}', Codec.JSON),
        (b'{"a":' * 100_000, Codec.JSON),
        (b"", Codec.MSGPACK),
        (msgpack.packb([1]), Codec.MSGPACK),
        (msgpack.packb({"Region": "eu"}) + b"\x00", Codec.MSGPACK),
        (b"\x81\xa6Region", Codec.MSGPACK),
        (b"\x81\xa2R\xff\xa0", Codec.MSGPACK),  # invalid UTF-8 in a key
        (msgpack.packb({"Region": msgpack.ExtType(5, b"x")}), Codec.MSGPACK),
        (b"\x81\x91\x01\x01", Codec.MSGPACK),  # an array as a map key
    ],
)
def test_decode_rejects_malformed_bodies(data: bytes, codec: Codec) -> None:
    with pytest.raises(RpcDecodeError):
        decode(SrvInfoResp, data, codec)


@pytest.mark.parametrize("codec", CODECS)
def test_decode_reports_field_errors(codec: Codec) -> None:
    body = encode_value({"Extra": {"OS": 7}}, codec)
    with pytest.raises(RpcDecodeError, match=r"^Auth\.Extra\.OS: expected a string"):
        decode(Auth, body, codec)


def test_decode_value_takes_memoryview() -> None:
    data = memoryview(bytearray(b'{"Region":"eu"}'))
    assert decode_value(data, Codec.JSON) == {"Region": "eu"}


# --- MessageReader ----------------------------------------------------------------------


@pytest.mark.parametrize("codec", CODECS)
@given(msgs=st.lists(ANY_MESSAGE, max_size=4), data=st.data())
def test_reader_whole_and_split_agree(
    codec: Codec, msgs: list[Message], data: st.DataObject
) -> None:
    stream = _encoded_stream(msgs, codec)
    expected = [to_wire(m) for m in msgs]

    whole = MessageReader(codec)
    whole.feed(stream)
    whole_values = _drain(whole)

    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    split = MessageReader(codec)
    split_values: list[dict[str, object]] = []
    for lo, hi in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        split.feed(stream[lo:hi])
        split_values.extend(_drain(split))

    assert [json.dumps(v) for v in whole_values] == [json.dumps(v) for v in expected]
    assert split_values == whole_values
    assert (
        whole.unconsumed() == split.unconsumed() == (b"\n" if msgs and codec is Codec.JSON else b"")
    )


@pytest.mark.parametrize("codec", CODECS)
def test_reader_byte_by_byte(codec: Codec) -> None:
    msgs: list[Message] = [
        Auth(version=("3", "2"), extra=AuthExtra(os='tricky "}{\\', authtoken="\\")),
        Bind(opts={"URL": "x", "TrafficPolicy": '{"on_http_request": [{"}": "\\""}]}'}),
        SrvInfoResp(region="eu"),
    ]
    reader = MessageReader(codec)
    values = []
    for byte in _encoded_stream(msgs, codec):
        reader.feed(bytes([byte]))
        values.extend(_drain(reader))
    assert values == [to_wire(m) for m in msgs]


@pytest.mark.parametrize("codec", CODECS)
def test_two_values_in_one_feed(codec: Codec) -> None:
    reader = MessageReader(codec)
    reader.feed(encode(SrvInfoResp(region="a"), codec) + encode(SrvInfoResp(region="b"), codec))
    assert reader.next_value() == {"Region": "a"}
    assert reader.next_value() == {"Region": "b"}
    assert reader.next_value() is None


@pytest.mark.parametrize("codec", CODECS)
def test_partial_value_consumes_nothing_and_leftovers_are_handed_on(codec: Codec) -> None:
    reader = MessageReader(codec)
    first = encode_value({"Region": "a"}, codec, newline=False)
    reader.feed(first[:-1])
    assert reader.next_value() is None
    assert reader.unconsumed() == first[:-1]
    reader.feed(first[-1:] + b"raw bytes")
    assert reader.next_value() == {"Region": "a"}
    assert reader.unconsumed() == b"raw bytes"


def test_json_reader_skips_go_newlines_and_whitespace() -> None:
    reader = MessageReader(Codec.JSON)
    reader.feed(b'\n\n  {"Region":"a"}\n\t{"Region":"b"}\n')
    assert _drain(reader) == [{"Region": "a"}, {"Region": "b"}]
    assert reader.unconsumed() == b"\n"


@pytest.mark.parametrize("codec", CODECS)
def test_oversized_value_is_an_error(codec: Codec) -> None:
    big = encode_value({"Region": "x" * 200}, codec)
    reader = MessageReader(codec, max_size=100)
    reader.feed(big[:150])  # incomplete, but already over the limit
    with pytest.raises(RpcDecodeError, match="100-byte limit"):
        reader.next_value()

    whole = MessageReader(codec, max_size=100)
    whole.feed(big)
    with pytest.raises(RpcDecodeError, match="100-byte limit"):
        whole.next_value()


@pytest.mark.parametrize("codec", CODECS)
def test_value_of_exactly_max_size_is_accepted(codec: Codec) -> None:
    body = encode_value({"Region": "x" * 50}, codec, newline=False)
    reader = MessageReader(codec, max_size=len(body))
    reader.feed(body + body)
    assert _drain(reader) == [{"Region": "x" * 50}] * 2


def test_default_limit_is_one_mebibyte() -> None:
    assert MessageReader(Codec.JSON).max_size == MAX_MESSAGE_SIZE == 1 << 20


@pytest.mark.parametrize(
    ("codec", "data"),
    [
        (Codec.JSON, b"[1]"),
        (Codec.JSON, b'"str"'),
        (Codec.JSON, b'{"a":]}'),
        (Codec.JSON, b'{"a":"\xff"}'),
        (Codec.MSGPACK, msgpack.packb([1])),
        (Codec.MSGPACK, msgpack.packb("str")),
        (Codec.MSGPACK, b"\x81\xc1\x00"),  # 0xC1 is never used
    ],
)
def test_reader_rejects_malformed_and_stays_broken(codec: Codec, data: bytes) -> None:
    reader = MessageReader(codec)
    reader.feed(data)
    with pytest.raises(RpcDecodeError):
        reader.next_value()
    with pytest.raises(RpcDecodeError):
        reader.next_value()


def test_msgpack_reader_checks_each_value_start() -> None:
    reader = MessageReader(Codec.MSGPACK)
    reader.feed(msgpack.packb({"a": 1}) + msgpack.packb([1, 2]))
    assert reader.next_value() == {"a": 1}
    with pytest.raises(RpcDecodeError, match="cannot start a msgpack map"):
        reader.next_value()


@pytest.mark.parametrize("codec", CODECS)
@given(chunks=st.lists(st.binary(max_size=64), max_size=8))
def test_garbage_gives_values_or_rpc_decode_error(codec: Codec, chunks: list[bytes]) -> None:
    reader = MessageReader(codec, max_size=256)
    try:
        for chunk in chunks:
            reader.feed(chunk)
            for value in _drain(reader):
                assert isinstance(value, dict)
    except RpcDecodeError:
        pass


@pytest.mark.parametrize("codec", CODECS)
@given(msgs=st.lists(ANY_MESSAGE, min_size=1, max_size=3), data=st.data())
def test_mutated_streams_give_values_or_rpc_decode_error(
    codec: Codec, msgs: list[Message], data: st.DataObject
) -> None:
    stream = bytearray(_encoded_stream(msgs, codec))
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(stream) - 1))
        stream[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(stream)))
    reader = MessageReader(codec)
    try:
        for part in (stream[:cut], stream[cut:]):
            reader.feed(part)
            for value in _drain(reader):
                assert isinstance(value, dict)
    except RpcDecodeError:
        pass


# --- proxy header -----------------------------------------------------------------------

HEADER = ProxyHeader(
    id="b1", client_addr="203.0.113.5:51234", proto="https", edge_type="3", passthrough_tls=True
)


def test_proxy_header_json_bytes() -> None:
    body = (
        b'{"Id":"b1","ClientAddr":"203.0.113.5:51234","Proto":"https",'
        b'"EdgeType":"3","PassthroughTLS":true}'
    )
    assert encode_proxy_header(HEADER, Codec.JSON) == struct.pack("<q", len(body)) + body


@pytest.mark.parametrize("codec", CODECS)
def test_proxy_header_split_at_every_point(codec: Codec) -> None:
    framed = encode_proxy_header(HEADER, codec)
    stream = framed + b"GET / HTTP/1.1\r\n\r\n"
    for cut in range(len(framed)):
        assert parse_proxy_header(stream[:cut], codec) is None
    for cut in range(len(framed), len(stream) + 1):
        assert parse_proxy_header(stream[:cut], codec) == (HEADER, len(framed))


@pytest.mark.parametrize("codec", CODECS)
@given(header=message_of(ProxyHeader))
def test_proxy_header_round_trip(codec: Codec, header: Message) -> None:
    framed = encode_proxy_header(header, codec)  # type: ignore[arg-type]
    assert parse_proxy_header(memoryview(framed), codec) == (header, len(framed))
    assert parse_proxy_header(bytearray(framed + b"\x00\x01"), codec) == (header, len(framed))


def test_proxy_header_accepts_trailing_newline_inside_length() -> None:
    body = encode_value(to_wire(HEADER), Codec.JSON)  # with Go's newline
    assert parse_proxy_header(struct.pack("<q", len(body)) + body, Codec.JSON) == (
        HEADER,
        8 + len(body),
    )


@pytest.mark.parametrize("length", [-1, -(1 << 63), MAX_PROXY_HEADER_SIZE + 1, (1 << 63) - 1])
def test_proxy_header_length_out_of_range(length: int) -> None:
    with pytest.raises(RpcDecodeError, match="proxy header length"):
        parse_proxy_header(struct.pack("<q", length), Codec.JSON)


def test_proxy_header_max_size_is_configurable() -> None:
    framed = encode_proxy_header(HEADER, Codec.JSON)
    with pytest.raises(RpcDecodeError):
        parse_proxy_header(framed, Codec.JSON, max_size=len(framed) - 9)
    assert parse_proxy_header(framed, Codec.JSON, max_size=len(framed) - 8) is not None


@pytest.mark.parametrize(
    ("codec", "body"),
    [
        (Codec.JSON, b"not json"),
        (Codec.JSON, b"[]"),
        (Codec.JSON, b'{"Id":1}'),
        (Codec.MSGPACK, b"\xc1"),
        (Codec.MSGPACK, msgpack.packb({"PassthroughTLS": "yes"})),
    ],
)
def test_proxy_header_bad_body(codec: Codec, body: bytes) -> None:
    with pytest.raises(RpcDecodeError):
        parse_proxy_header(struct.pack("<q", len(body)) + body, codec)


def test_json_whitespace_between_values_is_dropped_not_buffered() -> None:
    """A peer streaming whitespace costs neither memory nor rescans (found in review)."""
    reader = MessageReader(Codec.JSON, max_size=1024)
    for _ in range(200):
        reader.feed(b" \r\n\t" * 4096)
        assert reader.next_value() is None
        assert len(reader._buffer) <= 2 * 1024 + 16 * 1024
    reader.feed(b'  {"Id": "x"}  ')
    assert reader.next_value() == {"Id": "x"}
