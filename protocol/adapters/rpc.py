"""Request/response over typed streams (ngrok's RPC pattern), for both sides.

A request opens a typed stream, writes one encoded message and half-closes; the responder writes
one encoded message and half-closes (ngrok-rust reads an RPC stream to its end before decoding,
so the FIN is required). Readers decode one value as soon as it is complete and do not wait for
the FIN, which is what Go peers expect.
"""

from __future__ import annotations

from typing import TypeVar

import trio

from protocol.adapters.mux import MuxSession
from protocol.rpc.codec import MAX_MESSAGE_SIZE, Codec, MessageReader, detect_codec, encode
from protocol.rpc.messages import Message, RpcDecodeError, from_wire

M = TypeVar("M", bound=Message)


class RpcError(Exception):
    """An RPC could not complete: the stream ended early or the body did not decode."""


async def read_value(
    stream: trio.abc.ReceiveStream, codec: Codec | None, *, max_size: int = MAX_MESSAGE_SIZE
) -> tuple[dict[str, object], Codec]:
    """Read one message value; with `codec=None` the codec is detected from its first byte.

    Raises `RpcError` on EOF before a whole value, and on a body that does not decode.
    """
    reader: MessageReader | None = MessageReader(codec, max_size=max_size) if codec else None
    try:
        while True:
            if reader is not None:
                value = reader.next_value()
                if value is not None:
                    return value, reader.codec
            chunk = await stream.receive_some()
            if not chunk:
                raise RpcError("the stream ended before a complete message arrived")
            if reader is None:
                stripped = bytes(chunk).lstrip()
                if not stripped:
                    continue
                reader = MessageReader(detect_codec(stripped[0]), max_size=max_size)
                chunk = stripped
            reader.feed(bytes(chunk))
    except RpcDecodeError as exc:
        raise RpcError(f"malformed message: {exc}") from exc


async def read_message(
    stream: trio.abc.ReceiveStream,
    cls: type[M],
    codec: Codec | None,
    *,
    max_size: int = MAX_MESSAGE_SIZE,
) -> tuple[M, Codec]:
    value, codec = await read_value(stream, codec, max_size=max_size)
    try:
        return from_wire(cls, value), codec
    except RpcDecodeError as exc:
        raise RpcError(f"malformed {cls.__name__}: {exc}") from exc


async def respond(stream: trio.abc.HalfCloseableStream, message: Message, codec: Codec) -> None:
    """Write the response and half-close (required by ngrok-rust clients)."""
    await stream.send_all(encode(message, codec))
    await stream.send_eof()


async def call(
    session: MuxSession, stream_type: int, request: Message, response: type[M], codec: Codec
) -> M:
    """Send one request on a new typed stream and return the decoded response."""
    stream = await session.open_typed_stream(stream_type)
    try:
        await stream.send_all(encode(request, codec))
        await stream.send_eof()
        message, _ = await read_message(stream, response, codec)
        return message
    finally:
        await stream.aclose()
