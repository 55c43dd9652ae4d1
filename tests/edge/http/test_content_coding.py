"""Accept-Encoding negotiation (RFC 9110 §12.5.3) and streaming compression for
compress-response (edge/http/content_coding.py)."""

from __future__ import annotations

import gzip
import zlib

import brotli
import pytest

from edge.http.content_coding import CODINGS, Encoder, negotiate, weights

ALL = ("gzip", "deflate", "br")


# --- negotiation -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("accept", "offered", "chosen"),
    [
        ("gzip", ALL, "gzip"),
        ("br", ALL, "br"),
        ("deflate, gzip, br, zstd", ALL, "gzip"),  # curl --compressed: ties go to our order
        ("deflate, gzip, br, zstd", ("br", "gzip"), "br"),  # ... the operator's order
        ("gzip;q=1.0, br; q=0.5, *;q=0", ALL, "gzip"),  # ngrok's documented example
        ("gzip;q=0.2, br;q=0.8", ALL, "br"),  # the highest weight wins
        ("gzip;q=0, deflate", ALL, "deflate"),  # q=0: not acceptable
        ("*", ALL, "gzip"),  # any coding: ours in order
        ("*;q=0.5, gzip;q=0", ALL, "deflate"),  # * covers only codings not listed
        ("x-gzip", ALL, "gzip"),  # RFC 9110 §8.4.1.3
        ("GZIP", ALL, "gzip"),  # codings are case-insensitive
        ("identity", ALL, None),
        ("", ALL, None),  # an empty header: the body as it is
        ("zstd, compress", ALL, None),  # nothing we write
        ("gzip", ("br",), None),  # not offered by the policy
        ("gzip;q=2", ALL, None),  # a weight out of range: the element is not trusted
        ("gzip;q=abc, br", ALL, "br"),
        ("gzip;level=1", ALL, "gzip"),  # other parameters ignored
    ],
)
def test_negotiate(accept: str, offered: tuple[str, ...], chosen: str | None) -> None:
    assert negotiate(accept, offered) == chosen


def test_no_accept_encoding_header_means_no_compression() -> None:
    assert negotiate(None, ALL) is None


def test_weights_keep_the_first_of_repeated_codings() -> None:
    assert weights("gzip;q=0.1, gzip;q=0.9, br") == {"gzip": 0.1, "br": 1.0}


# --- streaming encoders ----------------------------------------------------------------------
BODY = b"".join(b"line %d of a body that compresses well\n" % n for n in range(5000))


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[offset : offset + size] for offset in range(0, len(data), size)]


def decode(coding: str, data: bytes) -> bytes:
    if coding == "gzip":
        return gzip.decompress(data)
    if coding == "deflate":
        return zlib.decompress(data)  # the zlib format, RFC 9110 §8.4.1.2
    return brotli.decompress(data)


@pytest.mark.parametrize("coding", CODINGS)
def test_streamed_pieces_decode_to_the_whole_body(coding: str) -> None:
    encoder = Encoder(coding)
    out = [encoder.feed(piece) for piece in pieces(BODY, 7000)]
    out.append(encoder.finish())
    encoded = b"".join(out)
    assert decode(coding, encoded) == BODY
    assert len(encoded) < len(BODY) // 5  # it did compress


@pytest.mark.parametrize("coding", CODINGS)
def test_each_feed_is_flushed_so_the_client_can_decode_it_at_once(coding: str) -> None:
    """A streamed response (server-sent events) must not wait in the compressor."""
    encoder = Encoder(coding)
    if coding == "br":
        decoder = brotli.Decompressor()
        inflate = decoder.process
    else:
        wbits = 31 if coding == "gzip" else 15
        decompressor = zlib.decompressobj(wbits)
        inflate = decompressor.decompress
    for event in (b"data: one\n\n", b"data: two\n\n", b"data: three\n\n"):
        assert inflate(encoder.feed(event)) == event
    assert inflate(encoder.finish()) == b""


@pytest.mark.parametrize("coding", CODINGS)
def test_an_empty_body_is_a_valid_stream(coding: str) -> None:
    assert decode(coding, Encoder(coding).finish()) == b""


def test_finish_takes_the_last_piece() -> None:
    encoder = Encoder("gzip")
    head = encoder.feed(BODY[:100])
    assert gzip.decompress(head + encoder.finish(BODY[100:])) == BODY


def test_memory_is_bounded_whatever_the_body_size() -> None:
    """Compressing 16 MiB piece by piece never holds more than a piece's output."""
    encoder = Encoder("gzip")
    largest = 0
    total = 0
    block = bytes(range(256)) * 256  # 64 KiB
    decompressor = zlib.decompressobj(31)
    for _ in range(256):
        out = encoder.feed(block)
        largest = max(largest, len(out))
        total += len(decompressor.decompress(out))
    total += len(decompressor.decompress(encoder.finish()))
    assert total == 256 * len(block)
    assert largest < 2 * len(block)


def test_an_unknown_coding_is_refused() -> None:
    with pytest.raises(ValueError, match="compress"):
        Encoder("compress")
