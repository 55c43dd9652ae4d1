"""An HTTP/1.1 request head as h11 reads it, without state: the grammar, the parse, and what
its fields mean for the body and the connection.

Theory of operation
-------------------
The client's codec (`edge/http/h1/client.py`) replaced h11 on the client side; what the edge
accepts and refuses from a public client must not change, so the grammar here is h11's
(`h11/_abnf.py`) and so are the rules (a differential test in
`tests/edge/http/h1/test_client.py` holds the two together):

* A head ends at its first empty line (`\\n\\r?\\n`: bare LF line ends are accepted). `HEAD`
  checks a whole head in one pass: request line `method SP target SP HTTP/d.d`, then header
  lines `token ":" OWS value OWS`, a value's characters anything but NUL and whitespace, with
  inner runs of spaces and tabs. A head `HEAD` refuses goes to `parse_slow`, which reads it
  line by line as h11 does: obs-fold continuation lines are joined to their field with one
  space (a continuation line first is an error), and the fault is named.
* `normalise` reads the fields that matter (Host, Content-Length, Transfer-Encoding,
  Connection, Expect, Upgrade) as h11's `normalize_and_validate` and `Request` do: every
  Content-Length value (split on commas) must agree and be a decimal of at most 20 digits,
  equal repeats folded into the first; one Transfer-Encoding, `chunked` (else 501); exactly one
  Host for HTTP/1.1, at most one for other versions.

Every error is a `ClientError` carrying the status to answer with (h11's `error_status_hint`).
Nothing here keeps state or does I/O.
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple

__all__ = [
    "CHUNKED",
    "CHUNK_HEADER",
    "DIGITS",
    "FIELD",
    "HEAD",
    "HEAD_END",
    "MAX_LENGTH_DIGITS",
    "REQUEST_SPECIAL",
    "ClientError",
    "Meaning",
    "Request",
    "RequestFields",
    "check_trailers",
    "comma_tokens",
    "normalise",
    "parse_slow",
]

# h11's grammar (h11/_abnf.py): what it accepts for requests is what we accept.
_TOKEN = rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+"
_VCHAR = rb"[^\x00\s]"  # a field value's visible characters: obs-text and controls but NUL
_VALUE = rb"(?:" + _VCHAR + rb"+(?:[ \t]+" + _VCHAR + rb"+)*)?"
_FIELD_LINE = _TOKEN + rb":[ \t]*" + _VALUE + rb"[ \t]*"
_REQUEST_LINE = rb"(" + _TOKEN + rb") ([\x21-\x7e]+) HTTP/([0-9]\.[0-9])"
#: A whole head without obs-fold: request line, field lines, the empty line.
HEAD: Final = re.compile(_REQUEST_LINE + rb"\r?\n((?:" + _FIELD_LINE + rb"\r?\n)*)\r?\n")
#: One field line of a head `HEAD` took: name, value.
FIELD: Final = re.compile(rb"(" + _TOKEN + rb"):[ \t]*(" + _VALUE + rb")[ \t]*\r?\n")
#: The end of a head (or of a trailer section): its first empty line.
HEAD_END: Final = re.compile(rb"\n\r?\n")
#: A chunk-size line: size, extensions (dropped), trailing whitespace h11 tolerates.
CHUNK_HEADER: Final = re.compile(rb"([0-9A-Fa-f]{1,20})(?:;.*)?[ \t]*\r\n")
DIGITS: Final = re.compile(rb"[0-9]+")
#: h11's CONTENT_LENGTH_MAX_DIGITS.
MAX_LENGTH_DIGITS: Final = 20
#: The names `normalise` looks at, found in a head in one pass: a head with one Host and none
#: of the others (the common case) needs no normalising.
REQUEST_SPECIAL: Final = re.compile(
    rb"\n((?i:host|expect|upgrade|connection|content-length|transfer-encoding)):"
)
#: `Meaning.length` of a chunked body.
CHUNKED: Final = -1

_REQUEST_LINE_RE = re.compile(_REQUEST_LINE)
_FIELD_RE = re.compile(rb"(" + _TOKEN + rb"):[ \t]*(" + _VALUE + rb")[ \t]*")
_OBS_FOLD = re.compile(rb"[ \t]+")
#: Lengths of the names `normalise` looks at: other names are not lowercased.
_NAME_LENGTHS = frozenset({4, 6, 7, 10, 14, 17})

Fields = list[tuple[bytes, bytes]]


class ClientError(Exception):
    """What the client sent is not an acceptable request (`status_hint`: the answer's
    status), or what the edge was about to send it cannot be sent (a response that breaks its
    framing, a head with an injected line)."""

    def __init__(self, message: str, status_hint: int = 400) -> None:
        super().__init__(message)
        self.status_hint = status_hint


class RequestFields:
    """A request's header fields as h11 gives them: `(name as sent, value)`, whitespace
    around values removed, equal repeated Content-Lengths folded into the first (its value
    as the single length), a Transfer-Encoding value lowercased."""

    __slots__ = ("items",)

    def __init__(self, items: Fields) -> None:
        self.items = items

    def raw_items(self) -> Fields:
        return self.items

    def __len__(self) -> int:
        return len(self.items)


class Request:
    """A request head as parsed. `raw` is its bytes (through the empty line)."""

    __slots__ = ("headers", "http_version", "method", "raw", "target")

    def __init__(
        self, method: bytes, target: bytes, http_version: bytes, headers: RequestFields, raw: bytes
    ) -> None:
        self.method = method
        self.target = target
        self.http_version = http_version
        self.headers = headers
        self.raw = raw

    def __repr__(self) -> str:
        return f"Request({self.method!r}, {self.target!r})"


class Meaning(NamedTuple):
    """What a request's fields say (`normalise`)."""

    items: Fields  # the fields as h11 gives them
    length: int  # the body's Content-Length (0 for none), or CHUNKED
    close: bool  # Connection names close
    expect_continue: bool  # Expect names 100-continue (HTTP/1.1 and later)
    upgrade: bool  # a non-empty Upgrade field, or CONNECT: a protocol switch is proposed


def comma_tokens(value: bytes) -> list[bytes]:
    """h11's get_comma_header for one value: the stripped, lowercased, non-empty items."""
    return [item for item in (part.strip().lower() for part in value.split(b",")) if item]


def normalise(method: bytes, version: bytes, items: Fields) -> Meaning:
    """Read and normalise `items` as h11 does (module docstring). Raises ClientError (400,
    or 501 for a Transfer-Encoding other than one `chunked`). `items` may be changed."""
    length: bytes | None = None
    chunked = close = expect = folded = False
    upgrade = method == b"CONNECT"
    hosts = 0
    for index, (name, value) in enumerate(items):
        if len(name) not in _NAME_LENGTHS:
            continue
        lower = name.lower()
        if lower == b"host":
            hosts += 1
        elif lower == b"content-length":
            lengths = {item.strip() for item in value.split(b",")}
            if len(lengths) != 1:
                raise ClientError("conflicting Content-Length headers")
            single = lengths.pop()
            if DIGITS.fullmatch(single) is None or len(single) > MAX_LENGTH_DIGITS:
                raise ClientError("bad Content-Length")
            if length is None:
                length = single
                if single != value:
                    items[index] = (name, single)
            elif length != single:
                raise ClientError("conflicting Content-Length headers")
            else:
                folded = True
        elif lower == b"transfer-encoding":
            if chunked:
                raise ClientError("multiple Transfer-Encoding headers", 501)
            if value.lower() != b"chunked":
                raise ClientError("Only Transfer-Encoding: chunked is supported", 501)
            if value != b"chunked":
                items[index] = (name, b"chunked")
            chunked = True
        elif lower == b"connection":
            close = close or b"close" in comma_tokens(value)
        elif lower == b"expect":
            expect = expect or b"100-continue" in comma_tokens(value)
        elif lower == b"upgrade":
            upgrade = upgrade or bool(comma_tokens(value))
    if folded:  # equal repeats after the first are dropped, as h11 does
        seen = False
        kept: Fields = []
        for name, value in items:
            if len(name) == 14 and name.lower() == b"content-length":
                if seen:
                    continue
                seen = True
            kept.append((name, value))
        items = kept
    if hosts == 0 and version == b"1.1":
        raise ClientError("Missing mandatory Host: header")
    if hosts > 1:
        raise ClientError("Found multiple Host: headers")
    body = CHUNKED if chunked else int(length) if length is not None else 0
    return Meaning(items, body, close, expect and version >= b"1.1", upgrade)


def parse_slow(head: bytes) -> tuple[bytes, bytes, bytes, Fields]:
    """A whole head (through its empty line) that `HEAD` refused: parsed line by line as h11
    does (obs-fold unfolded), or ClientError naming what is wrong."""
    lines = _lines(head)  # never empty: a head has its request line, if an empty one
    match = _REQUEST_LINE_RE.fullmatch(lines[0])
    if match is None:
        raise ClientError(f"illegal request line: {lines[0][:80]!r}")
    method, target, version = match.groups()
    return method, target, version, _unfold(lines[1:])


def check_trailers(block: bytes) -> None:
    """Raise ClientError unless `block` (a trailer section through its empty line) is lines
    h11 would read as fields (they are then dropped)."""
    _unfold(_lines(block))


def _lines(head: bytes) -> list[bytes]:
    """h11's maybe_extract_lines on a block ending in its empty line: the lines, each without
    its line end (CR LF or LF), the empty line left out."""
    lines = [line[:-1] if line.endswith(b"\r") else line for line in head.split(b"\n")]
    return lines[:-2]


def _unfold(lines: list[bytes]) -> Fields:
    """h11's header-line decoding: obs-fold continuation lines joined to their field with one
    space, each field `token ":" OWS value OWS`. Raises ClientError."""
    unfolded: list[bytes | bytearray] = []
    for line in lines:
        fold = _OBS_FOLD.match(line)
        if fold is None:
            unfolded.append(line)
            continue
        if not unfolded:
            raise ClientError("continuation line at start of headers")
        last = unfolded[-1]
        if type(last) is bytes:  # grown in place from now on: linear in the head's size
            last = unfolded[-1] = bytearray(last)
        last += b" "
        last += line[fold.end() :]
    items: Fields = []
    for field in unfolded:
        match = _FIELD_RE.fullmatch(field)
        if match is None:
            raise ClientError(f"illegal header line: {bytes(field[:80])!r}")
        name, value = match.groups()
        items.append((bytes(name), bytes(value)))
    return items
