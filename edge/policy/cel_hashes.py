"""Checksums Go's standard library and ngrok's macros have and Python's lacks: CRC-64 (ISO
polynomial, as Go's `hash/crc64.ISO`) and XXH64 (seed 0, as `github.com/cespare/xxhash`).

Both are used by the `hash.crc64`/`hash.xxhash64` CEL macros (`edge.policy.cel_macros`) on
request data, so they are plain loops over the bytes: linear in the input, no state kept.

Pure: no I/O.
"""

from __future__ import annotations

from typing import Final

__all__ = ["crc64_iso", "xxhash64"]

_MASK: Final = (1 << 64) - 1
_CRC64_ISO_POLY: Final = 0xD800000000000000  # x^64 + x^4 + x^3 + x + 1, reflected


def _crc64_table(poly: int) -> tuple[int, ...]:
    table: list[int] = []
    for index in range(256):
        crc = index
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC64_ISO_TABLE: Final = _crc64_table(_CRC64_ISO_POLY)


def crc64_iso(data: bytes) -> int:
    """Go's `crc64.Checksum(data, crc64.MakeTable(crc64.ISO))`."""
    crc = _MASK
    table = _CRC64_ISO_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ _MASK


_P1: Final = 11400714785074694791
_P2: Final = 14029467366897019727
_P3: Final = 1609587929392839161
_P4: Final = 9650029242287828579
_P5: Final = 2870177450012600261


def _rotl(value: int, bits: int) -> int:
    return ((value << bits) | (value >> (64 - bits))) & _MASK


def _round(accumulator: int, lane: int) -> int:
    accumulator = (accumulator + lane * _P2) & _MASK
    return (_rotl(accumulator, 31) * _P1) & _MASK


def _merge(hash_: int, accumulator: int) -> int:
    hash_ ^= _round(0, accumulator)
    return (hash_ * _P1 + _P4) & _MASK


def _u64(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 8], "little")


def xxhash64(data: bytes) -> int:
    """XXH64 of `data` with seed 0 (the reference algorithm, xxhash.h)."""
    length, at = len(data), 0
    if length >= 32:
        v1, v2, v3, v4 = (_P1 + _P2) & _MASK, _P2, 0, (-_P1) & _MASK
        while at + 32 <= length:
            v1 = _round(v1, _u64(data, at))
            v2 = _round(v2, _u64(data, at + 8))
            v3 = _round(v3, _u64(data, at + 16))
            v4 = _round(v4, _u64(data, at + 24))
            at += 32
        hash_ = (_rotl(v1, 1) + _rotl(v2, 7) + _rotl(v3, 12) + _rotl(v4, 18)) & _MASK
        for accumulator in (v1, v2, v3, v4):
            hash_ = _merge(hash_, accumulator)
    else:
        hash_ = _P5
    hash_ = (hash_ + length) & _MASK
    while at + 8 <= length:
        hash_ ^= _round(0, _u64(data, at))
        hash_ = (_rotl(hash_, 27) * _P1 + _P4) & _MASK
        at += 8
    if at + 4 <= length:
        hash_ ^= (int.from_bytes(data[at : at + 4], "little") * _P1) & _MASK
        hash_ = (_rotl(hash_, 23) * _P2 + _P3) & _MASK
        at += 4
    while at < length:
        hash_ ^= (data[at] * _P5) & _MASK
        hash_ = (_rotl(hash_, 11) * _P1) & _MASK
        at += 1
    hash_ ^= hash_ >> 33
    hash_ = (hash_ * _P2) & _MASK
    hash_ ^= hash_ >> 29
    hash_ = (hash_ * _P3) & _MASK
    hash_ ^= hash_ >> 32
    return hash_
