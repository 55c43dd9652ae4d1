"""Content codings for compress-response: choosing one from the client's Accept-Encoding, and
compressing a body as it streams.

`negotiate` follows RFC 9110 §12.5.3: each coding the client lists has a weight (`q`, 1 when
absent, 0 meaning "not acceptable"); `*` gives its weight to every coding not listed; `x-gzip`
is `gzip` (§8.4.1.3). Of the codings offered, the one with the highest weight above 0 wins, ties
going to the earlier offered (the operator's order in `algorithms`). A request with no
Accept-Encoding gets no coding: ngrok compresses only "when an HTTP request includes an
Accept-Encoding header", and an empty one asks for the body as it is.

`Encoder` compresses a body piece by piece: each `feed` returns everything compressed so far,
flushed (a sync flush), so a streamed response (server-sent events, a long download) reaches the
client as it comes rather than when the compressor's buffer fills; the compressor's history
carries across pieces, so the ratio stays close to compressing the whole. Memory per encoder is
fixed by the window sizes below, whatever the body's length. `gzip` is RFC 1952, `deflate` the
zlib format (RFC 1950, as RFC 9110 §8.4.1.2 defines it), `br` Brotli (RFC 7932) through Google's
`brotli` package.

Pure: no I/O.
"""

from __future__ import annotations

import zlib
from typing import Final, Protocol, cast

import brotli

__all__ = ["CODINGS", "Encoder", "negotiate", "weights"]

#: The codings this edge writes.
CODINGS: Final = ("gzip", "deflate", "br")

#: zlib level 6 is zlib's (and nginx's `gzip_comp_level` 1..9 middle) balance of ratio and CPU.
_ZLIB_LEVEL: Final = 6
#: zlib's default window (32 KiB) and memLevel 8: about 256 KiB per stream.
_ZLIB_WBITS: Final = 15
_ZLIB_MEM_LEVEL: Final = 8
#: Brotli quality 4 (of 0..11) streams at zlib-like speed with a better ratio; 11, the library's
#: default, costs ~50x the CPU, meant for static files compressed once (Cloudflare uses 4 on
#: the fly).
_BROTLI_QUALITY: Final = 4
#: A 256 KiB window (2^18) bounds a stream's memory as zlib's does; the default 4 MiB would
#: hold 16 times that per response.
_BROTLI_LGWIN: Final = 18
#: More elements than any client sends (browsers send 3 to 5); the rest are not read.
_MAX_ELEMENTS: Final = 32


def weights(header: str) -> dict[str, float]:
    """Accept-Encoding's codings (lower-case, `x-gzip` as `gzip`) and their weights; an element
    whose `q` is not a number from 0 to 1 is left out (the client's intent is unknown)."""
    result: dict[str, float] = {}
    for element in header.split(",")[:_MAX_ELEMENTS]:
        coding, *params = (part.strip() for part in element.split(";"))
        coding = coding.lower()
        if not coding:
            continue
        if coding == "x-gzip":
            coding = "gzip"
        weight: float | None = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() != "q":
                continue
            try:
                weight = float(value.strip())
            except ValueError:
                weight = None
            if weight is not None and not 0.0 <= weight <= 1.0:
                weight = None
        if weight is not None and coding not in result:
            result[coding] = weight
    return result


def negotiate(accept_encoding: str | None, offered: tuple[str, ...]) -> str | None:
    """The coding of `offered` the client prefers (see the module's doc), or None: no header,
    or none of them acceptable."""
    if accept_encoding is None:
        return None
    listed = weights(accept_encoding)
    anything = listed.get("*", 0.0)
    best: str | None = None
    best_weight = 0.0
    for coding in offered:
        weight = listed.get(coding, anything)
        if weight > best_weight:
            best, best_weight = coding, weight
    return best


class _Streaming(Protocol):
    """Brotli's compressor as used here (brotli-stubs leaves out `flush`)."""

    def process(self, data: bytes) -> bytes: ...
    def flush(self) -> bytes: ...
    def finish(self) -> bytes: ...


class Encoder:
    """Compresses one body with `coding` (one of `CODINGS`). Not reusable after `finish`."""

    __slots__ = ("_brotli", "_zlib", "coding")

    def __init__(self, coding: str) -> None:
        self.coding = coding
        self._zlib: zlib._Compress | None = None
        self._brotli: _Streaming | None = None
        if coding == "gzip":
            wbits = _ZLIB_WBITS + 16  # the gzip wrapper
        elif coding == "deflate":
            wbits = _ZLIB_WBITS  # the zlib wrapper
        elif coding == "br":
            self._brotli = cast(
                _Streaming, brotli.Compressor(quality=_BROTLI_QUALITY, lgwin=_BROTLI_LGWIN)
            )
            return
        else:
            raise ValueError(f"unknown content coding {coding!r}")
        self._zlib = zlib.compressobj(_ZLIB_LEVEL, zlib.DEFLATED, wbits, _ZLIB_MEM_LEVEL)

    def feed(self, data: bytes) -> bytes:
        """`data` compressed and flushed: the client can decode everything fed so far."""
        if self._zlib is not None:
            return self._zlib.compress(data) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
        assert self._brotli is not None
        return self._brotli.process(data) + self._brotli.flush()

    def finish(self, data: bytes = b"") -> bytes:
        """The last of the body: `data` compressed and the stream's end (trailer, checksum)."""
        if self._zlib is not None:
            return self._zlib.compress(data) + self._zlib.flush(zlib.Z_FINISH)
        assert self._brotli is not None
        return self._brotli.process(data) + self._brotli.finish()
