"""`edge.http.h1.received.append`: what a codec holds after each read."""

from __future__ import annotations

from edge.http.h1 import client, upstream
from edge.http.h1.received import NEED_DATA, append


def test_a_read_after_everything_was_parsed_is_held_as_it_came() -> None:
    data = b"GET / HTTP/1.1\r\n\r\n"
    buf, pos = append(b"old", 3, data)
    assert buf is data and pos == 0
    held, pos = append(b"", 0, bytearray(b"xy"))
    assert held == b"xy" and type(held) is bytes and pos == 0


def test_unparsed_bytes_are_kept_before_the_new_read_and_the_parsed_prefix_dropped() -> None:
    buf, pos = append(b"parsedREST", 6, b"+more")
    assert (bytes(buf), pos) == (b"REST+more", 0)
    assert type(buf) is bytearray
    again, pos = append(buf, 4, b"!")
    assert again is buf  # a bytearray grows in place
    assert (bytes(again), pos) == (b"+more!", 0)


def test_a_trickled_message_is_not_copied_whole_per_read() -> None:
    buf: bytes | bytearray = b""
    pos = 0
    first = None
    for byte in b"GET /long-target HTTP/1.1\r\n":
        buf, pos = append(buf, pos, bytes([byte]))
        if type(buf) is bytearray:
            first = first or buf
            assert buf is first  # the same object all along: appended to, never rebuilt
    assert bytes(buf) == b"GET /long-target HTTP/1.1\r\n"


def test_both_codecs_say_need_data_with_the_one_marker() -> None:
    assert client.NEED_DATA is NEED_DATA is upstream.NEED_DATA
    assert repr(NEED_DATA) == "NEED_DATA"
