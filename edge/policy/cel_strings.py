"""CEL's string and list extensions as ngrok documents them (DOCS `traffic-policy/macros`):
`s.lower()`, `s.split(',')`, `s.substring(1, 3)`, `l.join('/')`, `l.sort()`, `lists.range(n)`...

cel-python 0.5 has none of them; `edge.policy.cel` calls these with the receiver as the first
argument (`METHODS`) or by namespace (`FUNCTIONS`). Positions count Unicode code points, as
CEL's do. Where ngrok's docs and cel-go differ, the docs win: `split(sep, n)` returns at most
`n` pieces and drops the rest (`'a,b,c'.split(',', 2)` is `['a', 'b']`), `split()` with no
separator splits on whitespace, and `flatten()` flattens one level.

Unusable input (a position out of range, a list that does not sort) raises exactly
`ValueError` or `TypeError`, which cel-python reports as a CEL runtime error.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from celpy import celtypes

__all__ = ["FUNCTIONS", "MAX_RANGE", "METHODS"]

#: The longest list `lists.range(n)` builds: its argument may come from request data
#: (`int(getQueryParam('n')[0])`), and a rule needs indices, not memory, so 10,000 is plenty.
MAX_RANGE: Final = 10_000


def _text(value: object, macro: str) -> str:
    if isinstance(value, str):
        return value
    raise TypeError(f"{macro}: expected a string, got {type(value).__name__}")


def _int(value: object, macro: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool | celtypes.BoolType):
        return int(value)
    raise TypeError(f"{macro}: expected an int, got {type(value).__name__}")


def _list(value: object, macro: str) -> list[Any]:
    if isinstance(value, list):
        return value
    raise TypeError(f"{macro}: expected a list, got {type(value).__name__}")


def _position(value: object, limit: int, macro: str) -> int:
    position = _int(value, macro)
    if not 0 <= position <= limit:
        raise ValueError(f"{macro}: position {position} is outside 0..{limit}")
    return position


def _str(value: str) -> celtypes.StringType:
    return celtypes.StringType(value)


# --- strings ---------------------------------------------------------------------------------
def char_at(text: object, index: object) -> celtypes.StringType:
    """`s.charAt(i)`: the character at `i`; '' at the end; an error past it or below 0."""
    value = _text(text, "charAt")
    position = _position(index, len(value), "charAt")
    return _str(value[position : position + 1])


def index_of(text: object, search: object, start: object = 0) -> celtypes.IntType:
    """`s.indexOf(t[, from])`: the first position of `t` at or after `from`, or -1."""
    value = _text(text, "indexOf")
    begin = _position(start, len(value), "indexOf")
    return celtypes.IntType(value.find(_text(search, "indexOf"), begin))


def last_index_of(text: object, search: object, end: object | None = None) -> celtypes.IntType:
    """`s.lastIndexOf(t[, pos])`: the last position of `t` starting at or before `pos`."""
    value = _text(text, "lastIndexOf")
    needle = _text(search, "lastIndexOf")
    last = len(value) if end is None else _position(end, len(value), "lastIndexOf")
    return celtypes.IntType(value.rfind(needle, 0, last + len(needle)))


def lower(text: object) -> celtypes.StringType:
    """`s.lower()`: Unicode lower case."""
    return _str(_text(text, "lower").lower())


def upper(text: object) -> celtypes.StringType:
    """`s.upper()`: Unicode upper case."""
    return _str(_text(text, "upper").upper())


_ASCII_LOWER: Final = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_ASCII_UPPER: Final = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def lower_ascii(text: object) -> celtypes.StringType:
    """`s.lowerAscii()`: only A-Z lower-cased."""
    return _str(_text(text, "lowerAscii").translate(_ASCII_LOWER))


def upper_ascii(text: object) -> celtypes.StringType:
    """`s.upperAscii()`: only a-z upper-cased."""
    return _str(_text(text, "upperAscii").translate(_ASCII_UPPER))


def replace(text: object, old: object, new: object, count: object = -1) -> celtypes.StringType:
    """`s.replace(old, new[, n])`: the first `n` occurrences replaced (all when n < 0)."""
    limit = _int(count, "replace")
    return _str(
        _text(text, "replace").replace(
            _text(old, "replace"), _text(new, "replace"), limit if limit >= 0 else -1
        )
    )


def split(text: object, separator: object | None = None, count: object = -1) -> celtypes.ListType:
    """`s.split([sep[, n]])`: the pieces (at most `n` of them when n >= 0)."""
    value = _text(text, "split")
    limit = _int(count, "split")
    if separator is None:
        pieces = value.split()
    else:
        sep = _text(separator, "split")
        pieces = list(value) if sep == "" else value.split(sep)
    if limit >= 0:
        pieces = pieces[:limit]
    return celtypes.ListType([_str(piece) for piece in pieces])


def substring(text: object, start: object, end: object | None = None) -> celtypes.StringType:
    """`s.substring(from[, to])`: characters `from` (inclusive) to `to` (exclusive)."""
    value = _text(text, "substring")
    begin = _position(start, len(value), "substring")
    stop = len(value) if end is None else _position(end, len(value), "substring")
    if stop < begin:
        raise ValueError(f"substring: end {stop} is before start {begin}")
    return _str(value[begin:stop])


def trim(text: object) -> celtypes.StringType:
    """`s.trim()`: leading and trailing Unicode white space removed."""
    return _str(_text(text, "trim").strip())


def reverse(value: object) -> object:
    """`s.reverse()` / `l.reverse()`: the characters (or elements) in reverse order."""
    if isinstance(value, str):
        return _str(value[::-1])
    return celtypes.ListType(list(reversed(_list(value, "reverse"))))


def _format_one(verb: str, value: object) -> str:
    if verb == "s":
        if isinstance(value, celtypes.BoolType | bool):
            return "true" if value else "false"
        return str(value)
    if verb == "b" and isinstance(value, celtypes.BoolType | bool):
        return "1" if value else "0"
    if verb in "fe":
        if not isinstance(value, int | float) or isinstance(value, bool | celtypes.BoolType):
            raise TypeError(f"format: %{verb} needs a number")
        return f"{float(value):f}" if verb == "f" else f"{float(value):e}"
    number = _int(value, "format")
    spec = {"d": "d", "b": "b", "x": "x", "X": "X", "o": "o"}.get(verb)
    if spec is None:
        raise ValueError(f"format: unknown clause %{verb}")
    return format(number, spec)


def format_string(template: object, arguments: object) -> celtypes.StringType:
    """`s.format([args])`: printf-style `%s %d %f %e %b %x %X %o` and `%%`."""
    text = _text(template, "format")
    values = _list(arguments, "format")
    out: list[str] = []
    index = used = 0
    while index < len(text):
        char = text[index]
        if char != "%":
            out.append(char)
            index += 1
            continue
        if index + 1 >= len(text):
            raise ValueError("format: the template ends in a lone %")
        verb = text[index + 1]
        index += 2
        if verb == "%":
            out.append("%")
            continue
        if used >= len(values):
            raise ValueError("format: more clauses than arguments")
        out.append(_format_one(verb, values[used]))
        used += 1
    return _str("".join(out))


# --- lists -----------------------------------------------------------------------------------
def join(items: object, separator: object = "") -> celtypes.StringType:
    """`l.join([sep])`: the strings of the list joined with `sep`."""
    values = _list(items, "join")
    sep = _text(separator, "join")
    return _str(sep.join(_text(item, "join") for item in values))


def _kind(value: object) -> str:
    # CEL's bool is not an int (Python's is): keep them apart for sorting and equality.
    if isinstance(value, celtypes.BoolType | bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def sort(items: object) -> celtypes.ListType:
    """`l.sort()`: the elements in order; an error unless all are of one comparable type."""
    values = _list(items, "sort")
    kinds = {_kind(value) for value in values}
    if len(kinds) > 1 or kinds & {"ListType", "MapType", "list", "dict"}:
        raise TypeError("sort: the elements must all be of one comparable type")
    try:
        return celtypes.ListType(sorted(values))
    except TypeError as exc:
        raise TypeError(f"sort: {exc}") from None


def distinct(items: object) -> celtypes.ListType:
    """`l.distinct()`: the first of each equal element, in order."""
    result: list[Any] = []
    for value in _list(items, "distinct"):
        if not any(_kind(value) == _kind(seen) and value == seen for seen in result):
            result.append(value)
    return celtypes.ListType(result)


def flatten(items: object, depth: object = 1) -> celtypes.ListType:
    """`l.flatten([depth])`: nested lists spliced in, `depth` levels deep (default one)."""
    levels = _int(depth, "flatten")
    if levels < 0:
        raise ValueError("flatten: the depth must not be negative")
    result: list[Any] = []
    for value in _list(items, "flatten"):
        if isinstance(value, list) and levels > 0:
            result.extend(flatten(value, levels - 1))
        else:
            result.append(value)
    return celtypes.ListType(result)


def slice_(items: object, start: object, end: object) -> celtypes.ListType:
    """`l.slice(from, to)`: elements `from` (inclusive) to `to` (exclusive)."""
    values = _list(items, "slice")
    begin = _position(start, len(values), "slice")
    stop = _position(end, len(values), "slice")
    if stop < begin:
        raise ValueError(f"slice: end {stop} is before start {begin}")
    return celtypes.ListType(values[begin:stop])


def lists_range(count: object) -> celtypes.ListType:
    """`lists.range(n)`: `[0, 1, ..., n-1]`, at most MAX_RANGE elements."""
    size = _int(count, "lists.range")
    if not 0 <= size <= MAX_RANGE:
        raise ValueError(f"lists.range: n must be from 0 to {MAX_RANGE}, not {size}")
    return celtypes.ListType([celtypes.IntType(index) for index in range(size)])


#: Method forms, by method name: called with the receiver as the first argument.
METHODS: Final[Mapping[str, Callable[..., object]]] = {
    "charAt": char_at,
    "indexOf": index_of,
    "lastIndexOf": last_index_of,
    "lower": lower,
    "upper": upper,
    "lowerAscii": lower_ascii,
    "upperAscii": upper_ascii,
    "replace": replace,
    "split": split,
    "substring": substring,
    "trim": trim,
    "reverse": reverse,
    "format": format_string,
    "join": join,
    "sort": sort,
    "distinct": distinct,
    "flatten": flatten,
    "slice": slice_,
}

#: Namespaced forms.
FUNCTIONS: Final[Mapping[str, Callable[..., object]]] = {"lists.range": lists_range}
