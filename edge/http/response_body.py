"""Applying a Traffic Policy's body actions (compress-response, response-body-find-replace) to
an upstream's response: what the head becomes, and the body as it streams.

Theory of operation. The response phase runs on the response head and records `BodyStep`s
(`edge.policy.run_response_body`). `plan_body` decides, on the final head the client will get,
what is done:

* Nothing, for a response that has no body to change: an answer to HEAD, a 1xx, 204 or 304, a
  206 (its Content-Range counts bytes of the unchanged body), or `Content-Length: 0`.
* find-replace (every `FindReplaceStep`, in order) unless the body is already Content-Encoded
  (gzip, ...): its bytes are not text the patterns could match, and rewriting them would
  corrupt it. The step is then skipped and the reason logged.
* compression with the coding `negotiate`d from the client's Accept-Encoding, by the last
  compress-response that ran, unless the response is already Content-Encoded (ngrok: "no
  additional compression"), says `Cache-Control: no-transform` (RFC 9110 §7.7), is of a type
  that is compressed already (images but SVG, audio, video, archives, woff fonts), or declares
  fewer than `MIN_COMPRESS_LENGTH` bytes. An eligible response gets `Vary: Accept-Encoding`
  whether or not this client's header allowed a coding, so a cache keeps the two apart.
  find-replace runs first, compression last: the client decodes what the replacements made.

A changed body drops Content-Length: the shells then frame it themselves (HTTP/1.1 chunked, or
to the connection's close for an HTTP/1.0 client; HTTP/2 needs no length), so nothing waits for
the whole body to learn its size. (ngrok's find-replace sets the new Content-Length after
buffering; a client sees the same body either way.) A strong ETag becomes weak (the bytes
changed, the resource did not) and Accept-Ranges goes (ranges of the new bytes are not served).

`BodyRewrite` then carries one body: `feed` each piece, `finish` at its end. Compression
streams (bounded memory: `edge.http.content_coding`). find-replace holds the body until its end,
up to `limit` bytes (`http.max_buffered_response_body`): a body that grows past it is sent on
unchanged from then on (the held bytes first), and so is one that is not UTF-8 text; either is
reported (`report`) for the log, and the response still reaches the client whole. Regexes are
RE2, linear in the body's length.

Pure but for `report`, the caller's callback: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from edge.http.content_coding import Encoder, negotiate
from edge.http.headers import Headers
from edge.policy.run_http import replace_every
from edge.policy.run_response_body import BodyStep, CompressStep, FindReplaceStep

__all__ = [
    "MIN_COMPRESS_LENGTH",
    "BodyPlan",
    "BodyRewrite",
    "BodyStream",
    "RewrittenResponse",
    "plan_body",
    "replace_all",
]

#: A body declared shorter than this is not compressed: gzip's own framing is 18 bytes, so it
#: could only grow. nginx's `gzip_min_length` default.
MIN_COMPRESS_LENGTH: Final = 20

#: Statuses whose body is not the representation to rewrite (RFC 9110 §15.3.5, §15.3.7,
#: §15.4.5): no body, or a byte range of it.
_UNTOUCHED: Final = frozenset({204, 206, 304})

#: Media types that are compressed already: compressing them again costs CPU and saves nothing.
_COMPRESSED_TYPES: Final = frozenset(
    {
        "application/zip",
        "application/gzip",
        "application/x-gzip",
        "application/x-bzip2",
        "application/x-xz",
        "application/zstd",
        "application/x-7z-compressed",
        "application/vnd.rar",
        "application/x-rar-compressed",
        "font/woff",
        "font/woff2",
    }
)
_COMPRESSED_FAMILIES: Final = ("image/", "audio/", "video/")
_STILL_TEXT: Final = frozenset({"image/svg+xml", "image/x-icon", "image/bmp"})


@dataclass(frozen=True, slots=True)
class BodyPlan:
    """What happens to one response's body: `headers` is the head to send."""

    headers: Headers
    replacements: tuple[tuple[Any, str], ...] = ()
    coding: str | None = None  # the Content-Encoding the edge adds
    notes: tuple[str, ...] = ()  # steps skipped, and why (for the log)

    @property
    def rewrites(self) -> bool:
        return bool(self.replacements) or self.coding is not None


def _values(headers: Headers, name: bytes) -> list[str]:
    return [value.decode("latin-1") for key, value in headers if key.lower() == name]


def _content_length(headers: Headers) -> int | None:
    values = _values(headers, b"content-length")
    if not values or not values[0].strip().isdigit():
        return None
    return int(values[0].strip())


def _tokens(values: list[str]) -> set[str]:
    return {part.strip().lower() for value in values for part in value.split(",") if part.strip()}


def _compressible(headers: Headers) -> bool:
    if "no-transform" in _tokens(_values(headers, b"cache-control")):
        return False
    types = _values(headers, b"content-type")
    media = types[0].partition(";")[0].strip().lower() if types else ""
    if media in _STILL_TEXT:
        return True
    return media not in _COMPRESSED_TYPES and not media.startswith(_COMPRESSED_FAMILIES)


def plan_body(
    steps: tuple[BodyStep, ...],
    *,
    method: str,
    status: int,
    request_headers: tuple[tuple[str, str], ...],
    headers: Headers,
) -> BodyPlan:
    """What `steps` do to the response `status`/`headers` to a `method` request whose headers
    were `request_headers` (see the module's doc)."""
    if method == "HEAD" or status < 200 or status in _UNTOUCHED:
        return BodyPlan(headers)
    length = _content_length(headers)
    if length == 0:
        return BodyPlan(headers)
    replacements = tuple(
        pair for step in steps if isinstance(step, FindReplaceStep) for pair in step.replacements
    )
    compress = [step for step in steps if isinstance(step, CompressStep)]
    notes: list[str] = []
    encodings = _tokens(_values(headers, b"content-encoding")) - {"identity"}
    if encodings and replacements:
        notes.append(
            f"response-body-find-replace skipped: the body is {', '.join(sorted(encodings))}-"
            "encoded by the upstream"
        )
        replacements = ()
    coding: str | None = None
    vary = False
    if (
        compress
        and not encodings
        and _compressible(headers)
        and (length is None or length >= MIN_COMPRESS_LENGTH)
    ):
        vary = True
        accept = [value for name, value in request_headers if name.lower() == "accept-encoding"]
        coding = negotiate(", ".join(accept) if accept else None, compress[-1].algorithms)
    if not replacements and coding is None and not vary:
        return BodyPlan(headers, notes=tuple(notes))
    changed = replacements or coding is not None
    result: Headers = []
    for name, value in headers:
        lowered = name.lower()
        if changed and lowered in (b"content-length", b"accept-ranges"):
            continue
        weakened = changed and lowered == b"etag" and value.startswith(b'"')
        result.append((name, b"W/" + value if weakened else value))
    if coding is not None:
        result.append((b"Content-Encoding", coding.encode("ascii")))
    if vary and not _tokens(_values(headers, b"vary")) & {"accept-encoding", "*"}:
        result.append((b"Vary", b"Accept-Encoding"))
    return BodyPlan(result, replacements, coding, tuple(notes))


def replace_all(text: str, replacements: tuple[tuple[Any, str], ...]) -> str:
    """`text` with every match of each pattern replaced by its `to` (groups expanded as Go's
    `regexp.Expand` does), each pattern applied to the previous result."""
    for pattern, to in replacements:
        text = replace_every(text, pattern, to)
    return text


class BodyRewrite:
    """One response body through a `BodyPlan`: `feed` every piece in order, then `finish`;
    each returns the bytes to send now (often `b""` while find-replace holds the body).
    `limit` bounds the bytes held; `report` gets a line for the log when the body is passed on
    unchanged. Not reusable after `finish`."""

    __slots__ = ("_encoder", "_held", "_held_size", "_passing", "_replacements", "limit", "report")

    def __init__(self, plan: BodyPlan, *, limit: int, report: Callable[[str], None]) -> None:
        self._replacements = plan.replacements
        self._encoder = Encoder(plan.coding) if plan.coding is not None else None
        self._held: list[bytes] = []
        self._held_size = 0
        self._passing = not plan.replacements  # nothing to hold the body for
        self.limit = limit
        self.report = report

    def feed(self, data: bytes) -> bytes:
        if not self._passing:
            self._held.append(data)
            self._held_size += len(data)
            if self._held_size <= self.limit:
                return b""
            self.report(
                f"response-body-find-replace skipped: the body is over "
                f"http.max_buffered_response_body ({self.limit} bytes); sent unchanged"
            )
            self._passing = True
            data = b"".join(self._held)
            self._held = []
        if self._encoder is None or not data:
            return data
        return self._encoder.feed(data)

    def finish(self) -> bytes:
        tail = b""
        if not self._passing:
            tail = b"".join(self._held)
            self._held = []
            try:
                text = tail.decode("utf-8")
            except UnicodeDecodeError:
                self.report("response-body-find-replace skipped: the body is not UTF-8 text")
            else:
                tail = replace_all(text, self._replacements).encode("utf-8")
        if self._encoder is None:
            return tail
        return self._encoder.finish(tail)


def _ignore(line: str) -> None:
    pass


class BodyStream:
    """A body through one or more `BodyRewrite`s in turn (one per policy in a forward-internal
    chain, the target endpoint's first): the same `feed`/`finish` as one."""

    __slots__ = ("_rewrites",)

    def __init__(self, rewrites: list[BodyRewrite]) -> None:
        self._rewrites = rewrites

    def feed(self, data: bytes) -> bytes:
        for rewrite in self._rewrites:
            if not data:
                break
            data = rewrite.feed(data)
        return data

    def finish(self) -> bytes:
        data = b""
        for rewrite in self._rewrites:
            data = (rewrite.feed(data) if data else b"") + rewrite.finish()
        return data


@dataclass(frozen=True, slots=True)
class RewrittenResponse:
    """The response phase's outcome when the body changes: send `headers`, and the body through
    `start(limit)`, which applies `plans` in order. `report` logs what a rewrite skipped."""

    headers: Headers
    plans: tuple[BodyPlan, ...]
    report: Callable[[str], None] = field(default=_ignore, compare=False)

    def start(self, limit: int) -> BodyStream:
        """A new stream for one body; `limit` bounds what find-replace holds."""
        return BodyStream(
            [BodyRewrite(plan, limit=limit, report=self.report) for plan in self.plans]
        )

    def whole(self, body: bytes) -> bytes:
        """A body that is here whole (a policy's own answer) through the plans."""
        stream = self.start(max(len(body), 1))
        return stream.feed(body) + stream.finish()

    def then(self, after: Headers | RewrittenResponse) -> RewrittenResponse:
        """This rewrite followed by the next response phase's outcome on its `headers`."""
        if isinstance(after, RewrittenResponse):
            return RewrittenResponse(after.headers, self.plans + after.plans, self.report)
        return RewrittenResponse(after, self.plans, self.report)
