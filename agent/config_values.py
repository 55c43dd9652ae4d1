"""Reading typed values out of a merged config, with errors that point at the key.

Each reader takes the `SourceMap` (where every key path came from), the mapping, the key path of
that mapping and the key, and returns the value or a default for a missing (null) one; a value of
the wrong type raises `ConfigError` naming the file, line and key path, and saying what was found
(`describe`). `agent.config_load` and `agent.config_endpoints` build the settings with these.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence

from agent.config_source import SourceMap
from protocol.formats import units
from protocol.formats.yamldoc import KeyPath

__all__ = [
    "check_keys",
    "check_length",
    "describe",
    "read_bool",
    "read_choice",
    "read_duration",
    "read_mapping",
    "read_str",
    "read_str_list",
]


def check_keys(
    ctx: SourceMap,
    data: Mapping[str, object],
    p: KeyPath,
    allowed: Sequence[str],
    hints: Mapping[str, str] | None = None,
) -> None:
    """Raise for the first key of `data` not in `allowed`: with its hint if `hints` has one,
    else the closest known key, else the list of known keys."""
    for key in data:
        if key in allowed:
            continue
        hint = (hints or {}).get(key)
        if hint is None:
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.7) or [
                known for known in allowed if known.startswith(key) or key.startswith(known)
            ]
            hint = f"did you mean {close[0]}?" if close else f"known keys: {', '.join(allowed)}"
        raise ctx.error((*p, key), f"unknown key; {hint}")


def read_mapping(ctx: SourceMap, value: object, p: KeyPath) -> Mapping[str, object]:
    """`value` if it is a mapping, {} if it is null (`agent:` with nothing under it)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ctx.error(p, f"expected a mapping (key: value lines), found {describe(value)}")
    return value


def read_str(ctx: SourceMap, data: Mapping[str, object], p: KeyPath, key: str, default: str) -> str:
    value = data.get(key)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ctx.error((*p, key), f"expected a string, found {describe(value)}; quote it")
    return value


def read_bool(
    ctx: SourceMap, data: Mapping[str, object], p: KeyPath, key: str, default: bool
) -> bool:
    value = data.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ctx.error((*p, key), f"expected true or false, found {describe(value)}")
    return value


def read_choice(
    ctx: SourceMap,
    data: Mapping[str, object],
    p: KeyPath,
    key: str,
    choices: Sequence[str],
    default: str,
) -> str:
    value = read_str(ctx, data, p, key, default)
    if value not in choices:
        raise ctx.error((*p, key), f"{value!r} is not one of {', '.join(choices)}")
    return value


def read_duration(
    ctx: SourceMap, data: Mapping[str, object], p: KeyPath, key: str, default: float
) -> float:
    value = data.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ctx.error((*p, key), f"expected a duration such as 10s, found {describe(value)}")
    try:
        seconds = units.parse_duration(value, syntax=units.DurationSyntax.GO)
    except ValueError as exc:
        raise ctx.error((*p, key), str(exc)) from None
    if seconds <= 0:
        raise ctx.error((*p, key), f"must be longer than zero, found {value!r}")
    return seconds


def read_str_list(
    ctx: SourceMap, data: Mapping[str, object], p: KeyPath, key: str
) -> tuple[str, ...] | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, list):
        raise ctx.error((*p, key), f"expected a list such as [a, b], found {describe(value)}")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise ctx.error((*p, key, index), f"expected a string, found {describe(item)}")
    return tuple(value)


def check_length(ctx: SourceMap, p: KeyPath, text: str, limit: int) -> None:
    if len(text) > limit:
        raise ctx.error(p, f"is {len(text)} characters long; the limit is {limit}; shorten it")


def describe(value: object) -> str:
    """A YAML value as an error message names it: `a number (3)`, `the string 'x'`, ..."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"{type(value).__name__} ({value!r})"
