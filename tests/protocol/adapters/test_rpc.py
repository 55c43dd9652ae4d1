"""RPC over typed streams: one encoded message each way, FIN after each, for JSON and msgpack."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgpack
import pytest
import trio
import trio.testing

from protocol.adapters.mux import MuxSession, open_mux_session, read_stream_type
from protocol.adapters.rpc import RpcError, call, read_message, read_value, respond
from protocol.rpc.codec import MAX_MESSAGE_SIZE, Codec, encode, encode_value
from protocol.rpc.messages import Bind, BindResp, BindRespExtra, StreamType
from protocol.wire.session import Role

CODECS = pytest.mark.parametrize("codec", list(Codec), ids=[c.value for c in Codec])

REQUEST = Bind(id="bind_7", proto="https", opts={"URL": "https://app.example.com"})
RESPONSE = BindResp(
    id="bind_7", url="https://app.example.com", proto="https", extra=BindRespExtra(token="tok")
)


@asynccontextmanager
async def mux_pair() -> AsyncIterator[tuple[MuxSession, MuxSession]]:
    left, right = trio.testing.memory_stream_pair()
    async with (
        open_mux_session(left, Role.CLIENT) as client,
        open_mux_session(right, Role.SERVER) as server,
    ):
        yield client, server


async def receive_all(stream: trio.abc.ReceiveStream) -> bytes:
    parts = []
    while chunk := await stream.receive_some():
        parts.append(bytes(chunk))
    return b"".join(parts)


def one_way(*chunks: bytes, eof: bool) -> trio.testing.MemoryReceiveStream:
    """A receive stream that already holds `chunks` (each one `receive_some`), then EOF or not."""
    stream = trio.testing.MemoryReceiveStream()
    for chunk in chunks:
        stream.put_data(chunk)
    if eof:
        stream.put_eof()
    return stream


@CODECS
async def test_call_and_respond_round_trip(codec: Codec) -> None:
    seen: list[tuple[Bind, Codec, bytes]] = []

    async def edge(server: MuxSession) -> None:
        stream = await server.accept_stream()
        assert await read_stream_type(stream) == StreamType.BIND
        request, detected = await read_message(stream, Bind, None)  # codec from the first byte
        leftover = await receive_all(stream)  # the caller half-closed after its one message
        seen.append((request, detected, leftover))
        await respond(stream, RESPONSE, detected)

    with trio.fail_after(10):
        async with mux_pair() as (client, server), trio.open_nursery() as nursery:
            nursery.start_soon(edge, server)
            response = await call(client, StreamType.BIND, REQUEST, BindResp, codec)
    assert response == RESPONSE
    assert seen == [(REQUEST, codec, b"")]


@CODECS
async def test_respond_writes_exactly_one_message_then_fin(codec: Codec) -> None:
    """ngrok-rust reads an RPC stream to its end before decoding: the FIN must follow."""
    with trio.fail_after(10):
        async with mux_pair() as (client, server):
            mine = await client.open_typed_stream(StreamType.BIND)
            await mine.send_all(encode(REQUEST, codec))
            await mine.send_eof()
            theirs = await server.accept_stream()
            await read_stream_type(theirs)
            await read_message(theirs, Bind, codec)
            await respond(theirs, RESPONSE, codec)
            assert await receive_all(mine) == encode(RESPONSE, codec)


@CODECS
async def test_a_value_is_returned_without_waiting_for_fin(codec: Codec) -> None:
    """Go peers keep the stream open after their message: decoding must not wait for EOF."""
    body = encode(REQUEST, codec)
    with trio.fail_after(10):
        value, found = await read_value(one_way(body, eof=False), codec)
    assert found is codec
    assert value["Id"] == "bind_7"


async def test_the_codec_is_detected_after_leading_whitespace_and_across_chunks() -> None:
    body = encode(REQUEST, Codec.JSON)
    chunks = [b" \n", b"\t", *(body[i : i + 3] for i in range(0, len(body), 3))]
    with trio.fail_after(10):
        message, codec = await read_message(one_way(*chunks, eof=True), Bind, None)
    assert (message, codec) == (REQUEST, Codec.JSON)


async def test_msgpack_is_detected_and_read_byte_by_byte() -> None:
    body = encode(REQUEST, Codec.MSGPACK)
    chunks = [body[i : i + 1] for i in range(len(body))]
    with trio.fail_after(10):
        message, codec = await read_message(one_way(*chunks, eof=True), Bind, None)
    assert (message, codec) == (REQUEST, Codec.MSGPACK)


@CODECS
async def test_an_oversize_body_is_refused_before_it_is_complete(codec: Codec) -> None:
    """The limit caps what one stream can make us buffer: no need to wait for the end."""
    value: dict[str, object] = {"Id": "x" * 200}
    body = encode_value(value, codec)
    with trio.fail_after(10), pytest.raises(RpcError, match="larger than the 64-byte limit"):
        await read_value(one_way(body[:100], eof=False), codec, max_size=64)


async def test_the_default_limit_is_max_message_size() -> None:
    body = b'{"Id": "' + b"x" * MAX_MESSAGE_SIZE + b'"}'
    with trio.fail_after(10), pytest.raises(RpcError, match=f"{MAX_MESSAGE_SIZE}-byte limit"):
        await read_value(one_way(body, eof=True), None)
    fits = b'{"Id": "' + b"x" * (MAX_MESSAGE_SIZE - 20) + b'"}'
    with trio.fail_after(10):
        value, _ = await read_value(one_way(fits, eof=True), None)
    assert value["Id"] == "x" * (MAX_MESSAGE_SIZE - 20)


@CODECS
@pytest.mark.parametrize("detect", [True, False], ids=["detected", "given"])
async def test_a_truncated_body_is_an_rpc_error(codec: Codec, detect: bool) -> None:
    body = encode(REQUEST, codec)
    stream = one_way(body[: len(body) // 2], eof=True)
    with trio.fail_after(10), pytest.raises(RpcError, match="ended before a complete message"):
        await read_value(stream, None if detect else codec)


@pytest.mark.parametrize("chunks", [[], [b"  \n"]], ids=["empty", "whitespace"])
async def test_a_stream_with_no_message_is_an_rpc_error(chunks: list[bytes]) -> None:
    with trio.fail_after(10), pytest.raises(RpcError, match="ended before a complete message"):
        await read_value(one_way(*chunks, eof=True), None)


@pytest.mark.parametrize(
    ("body", "codec"),
    [
        (b"[1, 2]", None),  # not a map: no codec starts with "["
        (b'{"Id": ]}', Codec.JSON),
        (b'"just a string"', Codec.JSON),
        (msgpack.packb([1, 2]), Codec.MSGPACK),
    ],
)
async def test_a_malformed_body_is_an_rpc_error(body: bytes, codec: Codec | None) -> None:
    with trio.fail_after(10), pytest.raises(RpcError, match="malformed message"):
        await read_value(one_way(body, eof=True), codec)


@CODECS
async def test_a_body_of_the_wrong_shape_names_the_message(codec: Codec) -> None:
    body = encode_value({"Id": 5}, codec)
    with trio.fail_after(10), pytest.raises(RpcError, match="malformed Bind"):
        await read_message(one_way(body, eof=True), Bind, codec)


async def test_call_raises_rpc_error_when_the_responder_hangs_up_early() -> None:
    async def edge(server: MuxSession) -> None:
        stream = await server.accept_stream()
        await read_stream_type(stream)
        await read_message(stream, Bind, None)
        await stream.send_all(encode(RESPONSE, Codec.JSON)[:10])
        await stream.send_eof()

    with trio.fail_after(10):
        async with mux_pair() as (client, server), trio.open_nursery() as nursery:
            nursery.start_soon(edge, server)
            with pytest.raises(RpcError, match="ended before a complete message"):
                await call(client, StreamType.BIND, REQUEST, BindResp, Codec.JSON)
