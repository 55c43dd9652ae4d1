"""What the sans-IO session reports from `receive_data`: frozen, keyword-only, past tense."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamOpened(Event):
    """The peer opened a stream (its first DATA frame carried SYN)."""

    stream_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DataReceived(Event):
    """Payload for a stream. The reader must call `acknowledge_received` as it consumes it."""

    stream_id: int
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamEnded(Event):
    """The peer half-closed the stream (FIN): no more data will arrive on it."""

    stream_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamReset(Event):
    """The stream is gone. `remote` is True for the peer's RST; False when this session reset it
    because the peer broke the rules on it (the RST is already queued for sending)."""

    stream_id: int
    error_code: int
    remote: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowUpdated(Event):
    """The peer granted `delta` more bytes of send credit on a stream."""

    stream_id: int
    delta: int


@dataclass(frozen=True, slots=True, kw_only=True)
class GoAwayReceived(Event):
    """The peer will accept no new streams; those we opened above `last_stream_id` were dropped."""

    last_stream_id: int
    error_code: int
    debug: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionTerminated(Event):
    """The transport ended (EOF): every stream is gone."""

    error_code: int
    message: str
