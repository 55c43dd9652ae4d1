"""One call to the admin API, parsed: the request and response shapes (`Request`, `Response`),
what a resource handler works from (`Call`), and what every handler parses from a call the
same way (a header, the query, paging, the JSON body against its fields) and answers with (a
JSON body, a page of a list).

Every refusal is an `ApiError` with ngrok's code (400 with ERR_NGROK_ for a bad query or
body); nothing here touches the store or does I/O.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from edge.admin import body_fields
from edge.admin.errors import ERR_BAD_BODY, ERR_BAD_QUERY, ApiError, status_code
from edge.admin.resources import MAX_PAGE, Json, next_page_uri, page
from edge.store import ApiKey

__all__ = [
    "MAX_QUERY_FIELDS",
    "NO_CONTENT",
    "Call",
    "Field",
    "Handler",
    "Request",
    "Response",
    "header",
    "json_response",
    "list_response",
    "no_query",
    "paging",
    "parse_body",
    "single",
    "split_target",
]

#: Query parameters parsed at most: lists take three or four; this bounds a hostile query.
MAX_QUERY_FIELDS = 32


@dataclass(frozen=True, kw_only=True)
class Request:
    method: str
    target: str  # the request target as sent: path and query
    headers: tuple[tuple[str, str], ...]  # names lower-case, in order
    body: bytes
    remote: str  # the source address, for the failed-authentication budget
    base_url: str  # scheme://host:port that this request reached, for `uri` fields


@dataclass(frozen=True, kw_only=True)
class Response:
    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    # An answer that needs the agent's reply (remote stop, restart, update): the HTTP shell
    # sends what this returns instead of the rest; it never raises.
    deferred: Callable[[], Awaitable[Response]] | None = None


@dataclass(frozen=True, kw_only=True)
class Call:
    """One authenticated request, parsed: what a resource handler works from."""

    request: Request
    key: ApiKey
    path: str
    ids: tuple[str, ...]  # the ids in the path, in order
    query: dict[str, list[str]]

    @property
    def base(self) -> str:
        return self.request.base_url


Handler = Callable[["Call"], Response]


def json_response(status: int, value: Json) -> Response:
    body = json.dumps(value, separators=(",", ":")).encode()
    return Response(status=status, headers=(("content-type", "application/json"),), body=body)


NO_CONTENT = Response(status=204)


def header(request: Request, name: str) -> str | None:
    """The one value of header `name`; `ApiError` if it is sent more than once."""
    values = [v for k, v in request.headers if k == name]
    if len(values) > 1:
        raise ApiError(400, status_code(400), f"The {name} header was sent more than once.")
    return values[0] if values else None


def split_target(target: str) -> tuple[str, dict[str, list[str]]]:
    if not target.startswith("/"):
        raise ApiError(400, status_code(400), "The request target must be a path like /credentials")
    parts = urlsplit(target)
    try:
        pairs = parse_qsl(
            parts.query,
            keep_blank_values=True,
            strict_parsing=bool(parts.query),
            max_num_fields=MAX_QUERY_FIELDS,
        )
    except ValueError as exc:
        raise ApiError(400, ERR_BAD_QUERY, f"The query string could not be parsed: {exc}") from exc
    query: dict[str, list[str]] = {}
    for name, value in pairs:
        query.setdefault(name, []).append(value)
    return parts.path, query


def single(call: Call, name: str) -> str | None:
    values = call.query.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise ApiError(
            400, ERR_BAD_QUERY, f"The query parameter {name!r} was given more than once."
        )
    return values[0] or None


def paging(call: Call, extra: Sequence[str] = ()) -> tuple[int, str | None]:
    """`limit` (1..100, default 100) and `before_id`; `ApiError` for any other parameter."""
    for name in call.query:
        if name == "filter":
            raise ApiError(
                400, ERR_BAD_QUERY, "CEL list filters ('filter') are not supported by this edge."
            )
        if name not in ("limit", "before_id", *extra):
            known = ", ".join(("limit", "before_id", *extra))
            raise ApiError(
                400, ERR_BAD_QUERY, f"Unknown query parameter {name[:64]!r}; known: {known}."
            )
    limit_text = single(call, "limit")
    limit = MAX_PAGE
    if limit_text is not None:
        if not (limit_text.isascii() and limit_text.isdigit() and 1 <= int(limit_text) <= MAX_PAGE):
            raise ApiError(
                400,
                ERR_BAD_QUERY,
                f"limit must be a whole number from 1 to {MAX_PAGE}, not {limit_text[:32]!r}.",
            )
        limit = int(limit_text)
    return limit, single(call, "before_id")


def no_query(call: Call) -> None:
    if call.query:
        name = next(iter(call.query))
        raise ApiError(400, ERR_BAD_QUERY, f"Unknown query parameter {name[:64]!r}.")


def list_response(
    call: Call,
    prop: str,
    items: Sequence[Any],
    id_of: Callable[[Any], str],
    render: Callable[[str, Any], Json],
    extra: Sequence[str] = (),
    filters: Sequence[tuple[str, str]] = (),
) -> Response:
    limit, before_id = paging(call, extra)
    chunk, cursor = page(items, id_of, limit=limit, before_id=before_id)
    return json_response(
        200,
        {
            prop: [render(call.base, item) for item in chunk],
            "uri": f"{call.base}{call.path}",
            "next_page_uri": next_page_uri(call.base, call.path, cursor, limit, filters),
        },
    )


# A body field's parser: (field name, JSON value) -> the value to use, or `ApiError`.
Field = Callable[[str, object], object]


def parse_body(
    call: Call, fields: Mapping[str, Field], *, nullable: Collection[str] = ()
) -> dict[str, object]:
    """The JSON object in the body, each field checked by its parser; an empty body is `{}`.
    `null` means "not given", as ngrok's clients send it, except for the fields in `nullable`,
    which keep it (as None): for those, null is a value ("no limit")."""
    no_query(call)
    raw = call.request.body
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, ERR_BAD_BODY, f"The request body is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ApiError(
            400,
            ERR_BAD_BODY,
            f"The request body must be a JSON object, not {body_fields.json_type(value)}.",
        )
    parsed: dict[str, object] = {}
    for name, field_value in value.items():
        parse = fields.get(name)
        if parse is None:
            known = ", ".join(fields) or "none"
            raise ApiError(
                400,
                ERR_BAD_BODY,
                f"Unknown field {name[:64]!r} in the request body; fields here: {known}.",
            )
        if field_value is not None:
            parsed[name] = parse(name, field_value)
        elif name in nullable:
            parsed[name] = None
    return parsed
