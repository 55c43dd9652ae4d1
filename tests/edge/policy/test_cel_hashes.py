"""edge/policy/cel_hashes.py: CRC-64/ISO and XXH64 against published values."""

from __future__ import annotations

import pytest

from edge.policy.cel_hashes import crc64_iso, xxhash64


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"hello", 0x3C3EEEE2D8100000),  # ngrok's macro docs
        (b"", 0),
        (b"123456789", 0xB90956C775A41001),  # the CRC-64/GO-ISO check value
    ],
)
def test_crc64_iso(data: bytes, expected: int) -> None:
    assert crc64_iso(data) == expected


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", 0xEF46DB3751D8E999),  # the reference implementation's empty-input value
        (b"hello", 0x26C7827D889F6DA3),  # ngrok's macro docs
        # 39 bytes: the 32-byte stripe loop, then 8-, 4- and 1-byte tails (python-xxhash docs)
        (b"Nobody inspects the spammish repetition", 0xFBCEA83C8A378BF1),
    ],
)
def test_xxhash64(data: bytes, expected: int) -> None:
    assert xxhash64(data) == expected
