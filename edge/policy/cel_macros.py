"""ngrok's CEL macros beyond CIDRs, header getters, base64 and URL escaping: cookies, JSON,
query strings, URL parsing, hashes, basic-auth, private IPs, and their string-method forms.

DOCS `traffic-policy/macros/index.mdx` names them; `edge.policy.cel` wires them into the
compiled runner. `FUNCTIONS` holds the namespaced and global forms (`json.decode(s)`,
`getReqCookie(n)`); `METHODS` the method forms (`s.decodeJson()`, `s.sha256('base64')`), which
the checker rewrites into calls with the receiver as first argument.

Every macro takes CEL values and returns CEL values. Unusable input raises exactly `ValueError`
or `TypeError` (cel-python turns those, not their subclasses, into a CEL runtime error, which
the engine reports as the request's coded error).

Choices where ngrok's docs say nothing precise (each noted where it is made): a missing cookie
is an error, `queryString.decode` maps each name to its first value, `url.parse` returns Go's
`net/url.URL` fields in snake case.

Pure: no I/O, no clock, no randomness.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import json
import re
import urllib.parse
import zlib
from collections.abc import Callable, Mapping
from typing import Final

from celpy import celtypes
from celpy.adapter import CELJSONEncoder, json_to_cel

from edge.policy.cel_hashes import crc64_iso, xxhash64

__all__ = ["FUNCTIONS", "GETTERS", "METHODS"]

#: How deep `json.decode` may nest: Go's encoding/json allows 10,000; Python's json module
#: recurses, so a hostile header of `[[[[...` is refused long before the interpreter's limit.
MAX_JSON_DEPTH: Final = 100


def _text(value: object, macro: str) -> str:
    if isinstance(value, str):
        return value
    raise TypeError(f"{macro}: expected a string, got {type(value).__name__}")


def _data(value: object, macro: str) -> bytes:
    if isinstance(value, bytes):
        return bytes(value)
    return _text(value, macro).encode("utf-8")


# --- cookies ---------------------------------------------------------------------------------
def _cookie_list(cookies: object, name: object, macro: str) -> list[object]:
    if not isinstance(cookies, Mapping):
        raise TypeError(f"{macro}: expected a map of cookies")
    found = cookies.get(_text(name, macro), [])
    if not isinstance(found, list):
        raise TypeError(f"{macro}: expected a list of cookies")
    return found


def get_req_cookie(cookies: object, name: object) -> object:
    """`getReqCookie(name)`: the first cookie of that name in the Cookie header's order.

    A missing cookie is an error (as reading a missing map key is); test with `hasReqCookie`.
    """
    found = _cookie_list(cookies, name, "getReqCookie")
    if not found:
        raise ValueError(f"getReqCookie: no cookie named {name!s}")
    return found[0]


def get_res_cookie(cookies: object, name: object) -> object:
    """`getResCookie(name)`: the cookie of that name with the longest path (ngrok's rule)."""
    found = _cookie_list(cookies, name, "getResCookie")
    if not found:
        raise ValueError(f"getResCookie: no cookie named {name!s}")

    def path_length(cookie: object) -> int:
        path = cookie.get("path", "") if isinstance(cookie, Mapping) else ""
        return len(path) if isinstance(path, str) else 0

    return max(found, key=path_length)  # max keeps the first of equal paths


def has_cookie(cookies: object, name: object) -> celtypes.BoolType:
    """`hasReqCookie(name)` / `hasResCookie(name)`: true if such a cookie is present."""
    return celtypes.BoolType(bool(_cookie_list(cookies, name, "hasReqCookie")))


# --- JSON ------------------------------------------------------------------------------------
def json_encode(value: object) -> celtypes.StringType:
    """`json.encode(v)` / `v.encodeJson()`: compact JSON, map keys sorted (as Go's encoder)."""
    try:
        text = json.dumps(
            value, cls=CELJSONEncoder, separators=(",", ":"), sort_keys=True, ensure_ascii=False
        )
    except (TypeError, ValueError) as exc:
        raise TypeError(f"json.encode: cannot encode: {exc}") from None
    return celtypes.StringType(text)


def _depth_ok(text: str) -> bool:
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest <= MAX_JSON_DEPTH


def json_decode(text: object) -> object:
    """`json.decode(s)` / `s.decodeJson()`: the list, map or scalar the JSON text holds."""
    value = _text(text, "json.decode")
    if not _depth_ok(value):
        raise ValueError(f"json.decode: nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json_to_cel(json.loads(value))
    except json.JSONDecodeError as exc:
        raise ValueError(f"json.decode: not JSON: {exc.msg} at {exc.pos}") from None


def is_json(text: object) -> celtypes.BoolType:
    """`s.isJson()`: true if `s` is valid JSON."""
    try:
        json_decode(text)
    except ValueError:
        return celtypes.BoolType(False)
    return celtypes.BoolType(True)


# --- query strings and URLs ------------------------------------------------------------------
_BAD_ESCAPE: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _query_pairs(text: str, macro: str) -> list[tuple[str, str]]:
    if _BAD_ESCAPE.search(text):
        raise ValueError(f"{macro}: invalid escape in {text!r}")
    return urllib.parse.parse_qsl(text, keep_blank_values=True, separator="&")


def query_decode(text: object) -> celtypes.MapType:
    """`queryString.decode(s)` / `s.decodeQueryString()`: name -> its first value.

    ngrok's example reads `queryString.decode(q)["q"] == "hello"`, a string: so each name maps
    to its first value (the full lists are `req.url.query_params`).
    """
    result: dict[str, str] = {}
    for name, value in _query_pairs(_text(text, "queryString.decode"), "queryString.decode"):
        result.setdefault(name, value)
    return celtypes.MapType(
        {celtypes.StringType(k): celtypes.StringType(v) for k, v in result.items()}
    )


def query_encode(values: object) -> celtypes.StringType:
    """`queryString.encode(m)` / `m.encodeQueryString()`: Go's `url.Values.Encode` (names
    sorted); a value may be a string or a list of strings."""
    if not isinstance(values, Mapping):
        raise TypeError("queryString.encode: expected a map")
    pairs: list[tuple[str, str]] = []
    for name in sorted(str(key) for key in values):
        value = values[name]
        items = value if isinstance(value, list) else [value]
        for item in items:
            if not isinstance(item, str | int | float) or isinstance(item, bool):
                raise TypeError(f"queryString.encode: value of {name!r} is not a string")
            pairs.append((name, str(item)))
    return celtypes.StringType(urllib.parse.urlencode(pairs))


def is_query_string(text: object) -> celtypes.BoolType:
    """`s.isQueryString()`: every `&`-part is `name=value`, no spaces, valid escapes."""
    value = _text(text, "isQueryString")
    if not value or any(char.isspace() for char in value) or _BAD_ESCAPE.search(value):
        return celtypes.BoolType(False)
    return celtypes.BoolType(
        all(name and sep for name, sep, _ in (part.partition("=") for part in value.split("&")))
    )


def url_parse(text: object) -> celtypes.MapType:
    """`url.parse(s)` / `s.parseUrl()`: Go's `net/url.URL` fields, snake case: scheme, opaque,
    user, host, path, raw_path, raw_query, fragment."""
    value = _text(text, "url.parse")
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        raise ValueError("url.parse: invalid control character in URL")
    try:
        parts = urllib.parse.urlsplit(value)
        parts.port  # noqa: B018  # raises ValueError for a bad port, as Go's Parse does
    except ValueError as exc:
        raise ValueError(f"url.parse: {exc}") from None
    host = parts.netloc.rpartition("@")[2]
    user = parts.netloc.rpartition("@")[0]
    opaque = (
        parts.path
        if parts.scheme and not parts.netloc and not value.startswith(f"{parts.scheme}:/")
        else ""
    )
    fields = {
        "scheme": parts.scheme,
        "opaque": opaque,
        "user": user,
        "host": host,
        "path": "" if opaque else urllib.parse.unquote(parts.path),
        "raw_path": "" if opaque else parts.path,
        "raw_query": parts.query,
        "fragment": urllib.parse.unquote(parts.fragment),
    }
    return celtypes.MapType(
        {celtypes.StringType(k): celtypes.StringType(v) for k, v in fields.items()}
    )


def is_url(text: object) -> celtypes.BoolType:
    """`s.isURL()`: true for an absolute URL with a scheme and a host."""
    try:
        parsed = url_parse(text)
    except ValueError:
        return celtypes.BoolType(False)
    return celtypes.BoolType(bool(parsed["scheme"]) and bool(parsed["host"]))


# --- base64 and basic auth -------------------------------------------------------------------
def encode_base64(text: object) -> celtypes.StringType:
    """`s.encodeBase64()`: the string's UTF-8 bytes in padded standard base64."""
    return celtypes.StringType(base64.b64encode(_data(text, "encodeBase64")).decode("ascii"))


def decode_base64(text: object) -> celtypes.StringType:
    """`s.decodeBase64()`: the decoded bytes as a string (they must be UTF-8)."""
    try:
        raw = base64.b64decode(_text(text, "decodeBase64"), validate=True)
        return celtypes.StringType(raw.decode("utf-8"))
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError(f"decodeBase64: {exc}") from None


def basic_auth_encode(username: object, password: object) -> celtypes.StringType:
    """`basic_auth.encode(u, p)`: `Basic ` and base64 of `u:p` (RFC 7617)."""
    pair = f"{_text(username, 'basic_auth.encode')}:{_text(password, 'basic_auth.encode')}"
    return celtypes.StringType("Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii"))


# --- hashes ----------------------------------------------------------------------------------
def _digest(name: str, compute: Callable[[bytes], bytes]) -> Callable[..., celtypes.StringType]:
    macro = f"hash.{name}"

    def digest(data: object, form: object = "hex") -> celtypes.StringType:
        raw = compute(_data(data, macro))
        kind = _text(form, macro)
        if kind == "hex":
            return celtypes.StringType(raw.hex())
        if kind == "base64":
            return celtypes.StringType(base64.b64encode(raw).decode("ascii"))
        raise ValueError(f"{macro}: format must be 'hex' or 'base64', not {kind!r}")

    digest.__name__ = name
    digest.__doc__ = f"`{macro}(s[, 'hex'|'base64'])`: the {name} of the string's UTF-8 bytes."
    return digest


_HASHES: Final[Mapping[str, Callable[[bytes], bytes]]] = {
    "crc32": lambda data: zlib.crc32(data).to_bytes(4, "big"),
    "crc64": lambda data: crc64_iso(data).to_bytes(8, "big"),
    "md5": lambda data: hashlib.md5(data, usedforsecurity=False).digest(),
    "sha1": lambda data: hashlib.sha1(data, usedforsecurity=False).digest(),
    "sha256": lambda data: hashlib.sha256(data).digest(),
    "sha512": lambda data: hashlib.sha512(data).digest(),
    "xxhash64": lambda data: xxhash64(data).to_bytes(8, "big"),
}
_DIGESTS: Final = {name: _digest(name, compute) for name, compute in _HASHES.items()}


# --- IP addresses ----------------------------------------------------------------------------
def is_private_ip(text: object) -> celtypes.BoolType:
    """`s.isPrivateIp()`: RFC 1918 (10/8, 172.16/12, 192.168/16), and fc00::/7 as Go's
    `net.IP.IsPrivate` also counts; false for anything that is not an IP."""
    try:
        address = ipaddress.ip_address(_text(text, "isPrivateIp"))
    except ValueError:
        return celtypes.BoolType(False)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    private = (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("172.16.0.0/12"),
        ipaddress.ip_network("192.168.0.0/16"),
        ipaddress.ip_network("fc00::/7"),
    )
    return celtypes.BoolType(
        any(address.version == net.version and address in net for net in private)
    )


#: Getters that read a map of the request or response, given that map as a first argument
#: (`getReqCookie(n)` becomes `getReqCookie(req.cookies, n)`).
GETTERS: Final[Mapping[str, str]] = {
    "getReqCookie": "req.cookies",
    "hasReqCookie": "req.cookies",
    "getResCookie": "res.cookies",
    "hasResCookie": "res.cookies",
}

#: Global and namespaced forms, by the name written in the expression.
FUNCTIONS: Final[Mapping[str, Callable[..., object]]] = {
    "getReqCookie": get_req_cookie,
    "hasReqCookie": has_cookie,
    "getResCookie": get_res_cookie,
    "hasResCookie": has_cookie,
    "json.encode": json_encode,
    "json.decode": json_decode,
    "queryString.encode": query_encode,
    "queryString.decode": query_decode,
    "url.parse": url_parse,
    "basic_auth.encode": basic_auth_encode,
    **{f"hash.{name}": digest for name, digest in _DIGESTS.items()},
}

#: Method forms, by method name: called with the receiver as the first argument.
METHODS: Final[Mapping[str, Callable[..., object]]] = {
    "decodeJson": json_decode,
    "encodeJson": json_encode,
    "isJson": is_json,
    "decodeQueryString": query_decode,
    "encodeQueryString": query_encode,
    "isQueryString": is_query_string,
    "parseUrl": url_parse,
    "isURL": is_url,
    "encodeBase64": encode_base64,
    "decodeBase64": decode_base64,
    "isPrivateIp": is_private_ip,
    **_DIGESTS,
}
