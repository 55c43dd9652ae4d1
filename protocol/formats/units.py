"""Durations and sizes as people write them in config files: `250ms`, `1m30s`, `64MiB`.

One grammar for the agent's and the edge's files. Where the two files differ on purpose, the
caller says which behaviour it wants (`DurationSyntax`); everything else is shared. Parsers take
the value a YAML document holds and raise `ValueError` with a message fit to show a person
(`TypeError` for a boolean, which YAML makes of `yes`/`no` and is never a quantity).
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from enum import Enum

__all__ = ["DurationSyntax", "GiB", "KiB", "MiB", "parse_duration", "parse_size"]

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

# Go's time.ParseDuration units; both files accept all of them.
_DURATION_UNITS = {
    "ns": Decimal("1e-9"),
    "us": Decimal("1e-6"),
    "µs": Decimal("1e-6"),  # U+00B5 MICRO SIGN
    "μs": Decimal("1e-6"),  # U+03BC GREEK SMALL LETTER MU
    "ms": Decimal("0.001"),
    "s": Decimal(1),
    "m": Decimal(60),
    "h": Decimal(3600),
}
_UNIT = "(ns|us|µs|μs|ms|s|m|h)"
# `[0-9]`, not `\d`: `\d` also matches other scripts' digits ('\u0661'), which Decimal would read.
_GO_PART = re.compile(r"([0-9]*\.?[0-9]+|[0-9]+\.)" + _UNIT)  # Go allows `.5s` and `1.s`
_PLAIN_NUMBER = r"[0-9]+(?:\.[0-9]+)?"
_PLAIN_PART = re.compile(f"({_PLAIN_NUMBER}){_UNIT}")
_PLAIN_NUMBER_RE = re.compile(_PLAIN_NUMBER)

_SIZE_UNITS = {
    "B": 1,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "KiB": KiB,
    "MiB": MiB,
    "GiB": GiB,
}
_SIZE_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?) ?([A-Za-z]*)")


class DurationSyntax(Enum):
    """What a duration may look like, for the two kinds of file Burrow reads.

    Both take a sum of number-and-unit parts (`1h2m3.5s`), units ns, us (or µs), ms, s, m, h,
    no sign, and come back as seconds.
    """

    # Go's `time.ParseDuration`, as ngrok's own agent reads its file. A number without a unit is
    # refused, because Go would read `10` as ten nanoseconds and a user who wrote it surely
    # meant seconds; only `0` may stand alone. `.5s` and `1.s` are accepted, as Go accepts them.
    GO = "go"
    # Burrow's own files: a number without a unit (`45`, or a YAML int or float) is seconds.
    # A fraction needs digits on both sides of its point (`1.5s`, not `1.s` or `.5s`).
    SECONDS = "seconds"


def parse_duration(value: str | float, *, syntax: DurationSyntax) -> float:
    """Seconds from a duration such as `250ms`, `10s`, `1m30s` or `2h`, written in `syntax`.

    Raises `ValueError` for anything else, including negative, non-finite and too-large
    values, and `TypeError` for a bool.
    """
    if syntax is DurationSyntax.GO:
        expected = f"{value!r} is not a duration; write e.g. 10s, 1m30s or 250ms"
        empty = "empty duration; write e.g. 10s, 1m30s or 250ms"
    else:
        expected = (
            f"expected a duration like 250ms, 10s, 1m30s or 2h, or a number of seconds, "
            f"got {value!r}"
        )
        empty = "expected a duration like 250ms, 10s, 1m30s or 2h, got an empty string"
    if isinstance(value, bool):
        raise TypeError(expected)
    if isinstance(value, int | float):
        if syntax is DurationSyntax.GO:
            raise ValueError(f"{value} has no unit; write e.g. {value}s or {value}ms")
        if not math.isfinite(value) or value < 0:
            raise ValueError(expected)
        return float(value)
    text = value.strip()
    if not text:
        raise ValueError(empty)
    if syntax is DurationSyntax.GO and text == "0":
        return 0.0
    if syntax is DurationSyntax.SECONDS and _PLAIN_NUMBER_RE.fullmatch(text):
        total = Decimal(text)
    else:
        part = _GO_PART if syntax is DurationSyntax.GO else _PLAIN_PART
        total = Decimal(0)
        position = 0
        while position < len(text):
            match = part.match(text, position)
            if match is None:
                raise ValueError(expected)
            total += Decimal(match[1]) * _DURATION_UNITS[match[2]]
            position = match.end()
    seconds = float(total)
    if not math.isfinite(seconds):
        raise ValueError(f"{value!r} is too long a duration")
    return seconds


def parse_size(value: str | int) -> int:
    """Bytes from `64MiB`, `512 KiB`, `1.5GB`, a bare number of bytes, or an int.

    Units: B, KB, MB, GB (powers of 1000) and KiB, MiB, GiB (powers of 1024), case as written:
    `Mb` would be megabits, so it is refused rather than guessed. Raises `ValueError` for
    anything else and for a size that is not a whole number of bytes, and `TypeError` for a bool.
    """
    units = ", ".join(_SIZE_UNITS)
    expected = f"expected a size like 64MiB or a number of bytes (units: {units})"
    if isinstance(value, bool):
        raise TypeError(f"{expected}, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{expected}, got {value!r}")
        return value
    match = _SIZE_RE.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"{expected}, got {value!r}")
    number, unit = Decimal(match[1]), match[2] or "B"
    if unit not in _SIZE_UNITS:
        raise ValueError(f"unknown size unit {unit!r} in {value!r}; use one of {units}")
    size = number * _SIZE_UNITS[unit]
    if size != size.to_integral_value():
        raise ValueError(f"{value!r} is not a whole number of bytes")
    return int(size)
