"""`res.cookies`: a response's Set-Cookie headers as ngrok's cookie structs (RFC 6265 §5.2).

ngrok's `res.cookies[k][i]` has `name`, `value`, `domain`, `path`, `expires`, `max_age`,
`secure`, `http_only`, `same_site` and `unparsed_attributes` (reference ngrok.md §4.4). Each
Set-Cookie header is one cookie; a header without `name=` is skipped (RFC 6265 §5.2 step 2).
`expires` is kept as the text the upstream sent (Go's parse of the date is lenient and
`raw_expires`-like); `max_age` is an int (0 when absent or not a number).

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable

from celpy import celtypes

__all__ = ["response_cookies"]

_FLAGS = {"secure": "secure", "httponly": "http_only"}
_TEXT = {"domain": "domain", "path": "path", "expires": "expires", "samesite": "same_site"}


def _cookie(header: str) -> tuple[str, celtypes.MapType] | None:
    pair, *attributes = header.split(";")
    name, equals, value = pair.partition("=")
    name = name.strip()
    if not equals or not name:
        return None
    fields: dict[str, object] = {
        "name": name,
        "value": value.strip().strip('"'),
        "domain": "",
        "path": "",
        "expires": "",
        "max_age": 0,
        "secure": False,
        "http_only": False,
        "same_site": "",
    }
    unparsed: list[str] = []
    for attribute in attributes:
        key, _, text = attribute.strip().partition("=")
        lowered = key.strip().lower()
        if lowered in _FLAGS:
            fields[_FLAGS[lowered]] = True
        elif lowered in _TEXT:
            fields[_TEXT[lowered]] = text.strip()
        elif lowered == "max-age" and text.strip().lstrip("-").isdigit():
            fields["max_age"] = int(text.strip())
        elif attribute.strip():
            unparsed.append(attribute.strip())
    cel: dict[celtypes.StringType, celtypes.Value] = {}
    for key, item in fields.items():
        if isinstance(item, bool):
            cel[celtypes.StringType(key)] = celtypes.BoolType(item)
        elif isinstance(item, int):
            cel[celtypes.StringType(key)] = celtypes.IntType(item)
        else:
            cel[celtypes.StringType(key)] = celtypes.StringType(str(item))
    cel[celtypes.StringType("unparsed_attributes")] = celtypes.ListType(
        [celtypes.StringType(text) for text in unparsed]
    )
    return name, celtypes.MapType(cel)


def response_cookies(headers: Iterable[tuple[str, str]]) -> celtypes.MapType:
    """Set-Cookie headers as `name -> [cookie, ...]` in arrival order."""
    grouped: dict[str, list[celtypes.MapType]] = {}
    for key, value in headers:
        if key.lower() != "set-cookie":
            continue
        parsed = _cookie(value)
        if parsed is not None:
            grouped.setdefault(parsed[0], []).append(parsed[1])
    return celtypes.MapType(
        {celtypes.StringType(k): celtypes.ListType(v) for k, v in grouped.items()}
    )
