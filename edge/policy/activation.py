"""What a policy can see: the facts of a connection, request and response, as CEL variables.

The shell describes traffic with frozen values (`ConnFacts`, `RequestFacts`, `ResponseFacts`,
`EndpointFacts`); `conn_view`, `request_view`, `response_view`, `endpoint_view` and `time_view`
turn them into `LazyMap`s with ngrok's variable names (reference/ngrok.md §4.4, DOCS
`traffic-policy/variables/*`): nothing is parsed (headers into a map, the query into
parameters, cookies) until an expression reads that field, and then only once.

`req.url`, `req.user_agent` and `req.content_type` are strings in ngrok's catalogue *and* have
fields (`req.url.path`, `req.content_type.raw`); `FieldString` is a CEL string whose `.field`
access reads a map, which is how cel-python's compiled runner selects members
(`value.get('field')`). A field this edge does not know (`req.user_agent.is_bot`, which needs a
user-agent database) is missing, so reading it is that request's coded runtime error, never a
made-up value.

Pure: no I/O, no clock (`time.now` is built from the `now` the caller passes).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, TypeVar, cast

from celpy import celtypes

from edge.policy.cel import LazyMap
from edge.policy.cookies import response_cookies

__all__ = [
    "NOT_FROM_HEADERS",
    "ConnFacts",
    "EndpointFacts",
    "FieldString",
    "RequestFacts",
    "ResponseFacts",
    "conn_view",
    "endpoint_view",
    "evolve",
    "header_map",
    "request_view",
    "response_view",
    "rfc3339",
    "time_view",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnFacts:
    """One client connection as the edge saw it (`conn.*`)."""

    client_ip: str
    client_port: int
    server_ip: str
    server_port: int
    sni: str | None = None  # None: no TLS, or no SNI
    tls_version: str | None = None  # e.g. "1.3"; None: the edge did not terminate TLS
    tls_cipher: str | None = None
    started_at: float | None = None  # Unix seconds (`conn.ts.start`)
    bytes_in: int | None = None  # None: not counted (the field is then absent)
    bytes_out: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestFacts:
    """One HTTP request head (`req.*`). `path` starts with `/`; `query` has no leading `?`."""

    method: str
    scheme: str  # "http" | "https"
    host: str  # the Host header / :authority as sent (may carry a port)
    path: str
    query: str = ""
    headers: tuple[tuple[str, str], ...] = ()  # in order, names as sent
    content_length: int | None = None  # None: unknown (chunked, or no body)
    version: str = "HTTP/1.1"
    #: The whole body, read only for a policy with a body action (`ActionSpec.request_body`);
    #: None otherwise (the body then streams to the upstream unread).
    body: bytes | None = None

    @property
    def target(self) -> str:
        """The request target: path, and `?query` if there is one."""
        return f"{self.path}?{self.query}" if self.query else self.path


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseFacts:
    """One HTTP response head (`res.*`)."""

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    content_length: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointFacts:
    """The endpoint that took the traffic (`endpoint.*`)."""

    url: str
    host: str
    port: int
    protocol: str  # "http" | "https" | "tcp" | "tls"
    id: str = ""


class FieldString(celtypes.StringType):
    """A CEL string that also has fields: `req.url == '...'` and `req.url.path` both work."""

    _fields: LazyMap

    def __new__(cls, text: str, fields: Mapping[str, Callable[[], object]]) -> FieldString:
        self = cast(FieldString, super().__new__(cls, text))
        self._fields = LazyMap(fields)
        return self

    def get(self, key: object, default: object = None) -> Any:
        # celpy compiles `x.f` to `x.get('f')`; a missing field raises KeyError ("no such key").
        return self._fields[key]


def rfc3339(seconds: float) -> str:
    """Unix seconds as Go's RFC 3339 (UTC, whole seconds): `2024-05-01T12:00:00Z`."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _timestamp(seconds: float) -> celtypes.TimestampType:
    return celtypes.TimestampType(datetime.fromtimestamp(seconds, UTC))


def header_map(headers: tuple[tuple[str, str], ...]) -> celtypes.MapType:
    """Headers as ngrok shows them: lower-case name -> list of values, in arrival order."""
    grouped: dict[str, list[str]] = {}
    for name, value in headers:
        grouped.setdefault(name.lower(), []).append(value)
    return celtypes.MapType(
        {
            celtypes.StringType(name): celtypes.ListType([celtypes.StringType(v) for v in values])
            for name, values in grouped.items()
        }
    )


def _first(headers: tuple[tuple[str, str], ...], name: str) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def _all(headers: tuple[tuple[str, str], ...], name: str) -> list[str]:
    return [value for key, value in headers if key.lower() == name]


def conn_view(conn: ConnFacts) -> LazyMap:
    """`conn.*`: addresses, ports, `tls.{version,cipher_suite,sni}` ("" where not TLS)."""
    fields: dict[str, Callable[[], object]] = {
        "client_ip": lambda: conn.client_ip,
        "client_port": lambda: conn.client_port,
        "server_ip": lambda: conn.server_ip,
        "server_port": lambda: conn.server_port,
        "tls": lambda: LazyMap(
            {
                "version": lambda: conn.tls_version or "",
                "cipher_suite": lambda: conn.tls_cipher or "",
                "sni": lambda: conn.sni or "",
            }
        ),
    }
    started = conn.started_at
    if started is not None:
        fields["ts"] = lambda: LazyMap({"start": lambda: _timestamp(started)})
    if conn.bytes_in is not None:
        fields["bytes_in"] = lambda: conn.bytes_in
    if conn.bytes_out is not None:
        fields["bytes_out"] = lambda: conn.bytes_out
    return LazyMap(fields)


def _split_host(authority: str) -> tuple[str, int | None]:
    """`host[:port]` (IPv6 in brackets) as hostname and explicit port (None if absent/bad)."""
    if authority.startswith("["):
        end = authority.find("]")
        host, rest = (authority[1:end], authority[end + 1 :]) if end > 0 else (authority, "")
    else:
        host, _, port_text = authority.rpartition(":")
        if not host:
            return authority, None
        rest = ":" + port_text
    if rest.startswith(":") and rest[1:].isdigit() and int(rest[1:]) <= 65535:
        return host, int(rest[1:])
    return host, None


def query_params(query: str) -> celtypes.MapType:
    """`a=1&a=2&b` as `{a: [1, 2], b: [""]}` (Go's url.ParseQuery; names case-sensitive)."""
    grouped: dict[str, list[str]] = {}
    for name, value in urllib.parse.parse_qsl(query, keep_blank_values=True, separator="&"):
        grouped.setdefault(name, []).append(value)
    return celtypes.MapType(
        {
            celtypes.StringType(name): celtypes.ListType([celtypes.StringType(v) for v in values])
            for name, values in grouped.items()
        }
    )


def full_url(request: RequestFacts) -> str:
    """The request's URL as ngrok's `req.url` gives it: scheme, authority, path, query."""
    return f"{request.scheme}://{request.host}{request.target}"


def _url_view(request: RequestFacts) -> FieldString:
    hostname, port = _split_host(request.host)
    fields: dict[str, Callable[[], object]] = {
        "scheme": lambda: request.scheme,
        "host": lambda: hostname,
        "authority": lambda: request.host,
        "path": lambda: request.path,
        "raw_path": lambda: request.path,
        "query": lambda: request.query,
        "query_params": lambda: query_params(request.query),
        "uri": lambda: request.target,
        "raw": lambda: full_url(request),
        "user_password": lambda: "",
    }
    if port is not None:
        fields["port"] = lambda: port
    return FieldString(full_url(request), fields)


def _content_type(raw: str) -> FieldString:
    media, _, rest = raw.partition(";")
    parameters: dict[str, str] = {}
    for item in rest.split(";"):
        key, equals, value = item.strip().partition("=")
        if equals and key:
            parameters[key.lower()] = value.strip().strip('"')
    return FieldString(
        media.strip().lower(), {"raw": lambda: raw, "parameters": lambda: parameters}
    )


def _cookies(headers: tuple[tuple[str, str], ...]) -> celtypes.MapType:
    grouped: dict[str, list[celtypes.MapType]] = {}
    for header in _all(headers, "cookie"):
        for pair in header.split(";"):
            name, equals, value = pair.strip().partition("=")
            if not equals or not name:
                continue
            cookie = {"name": name, "value": value.strip('"')}
            grouped.setdefault(name, []).append(
                celtypes.MapType(
                    {celtypes.StringType(k): celtypes.StringType(v) for k, v in cookie.items()}
                )
            )
    return celtypes.MapType(
        {celtypes.StringType(k): celtypes.ListType(v) for k, v in grouped.items()}
    )


def _encodings(headers: tuple[tuple[str, str], ...]) -> list[str]:
    return [
        item.strip().lower()
        for header in _all(headers, "content-encoding")
        for item in header.split(",")
        if item.strip()
    ]


def _message_fields(
    headers: tuple[tuple[str, str], ...], content_length: int | None
) -> dict[str, Callable[[], object]]:
    """The fields requests and responses share: headers, length, type, encoding, location."""
    fields: dict[str, Callable[[], object]] = {
        "headers": lambda: header_map(headers),
        "content_encoding": lambda: _encodings(headers),
    }
    if content_length is not None:
        fields["content_length"] = lambda: content_length
    # A missing Content-Type or Location reads as "" (Go's zero value), so the headers are
    # only scanned when an expression asks.
    fields["content_type"] = lambda: _content_type(_first(headers, "content-type") or "")
    fields["location"] = lambda: _first(headers, "location") or ""
    return fields


_Facts = TypeVar("_Facts", RequestFacts, ResponseFacts)


def evolve(facts: _Facts, **changes: Any) -> _Facts:
    """`dataclasses.replace` for the facts classes, at half its cost (actions change a
    request's headers several times a request): a copy with `changes` set."""
    slots = type(facts).__slots__
    if not changes.keys() <= set(slots):
        raise TypeError(
            f"{type(facts).__name__} has no field {sorted(changes.keys() - set(slots))}"
        )
    new = object.__new__(type(facts))
    for name in slots:
        object.__setattr__(new, name, changes[name] if name in changes else getattr(facts, name))
    return new


#: The fields of `req.*` and `res.*` that do not come from the headers (nor from the Host,
#: which changes only with a full rebuild): a view rebuilt after a header change keeps them.
NOT_FROM_HEADERS: Final = frozenset(
    {"method", "host", "url", "version", "status_code", "content_length"}
)


def request_view(request: RequestFacts) -> LazyMap:
    """`req.*`: method, host, url (+ fields), headers, cookies, user_agent, version, ..."""
    fields = _message_fields(request.headers, request.content_length)
    fields.update(
        {
            "method": lambda: request.method,
            "host": lambda: request.host,
            "url": lambda: _url_view(request),
            "cookies": lambda: _cookies(request.headers),
            "version": lambda: request.version,
            "user_agent": lambda: FieldString(_first(request.headers, "user-agent") or "", {}),
        }
    )
    return LazyMap(fields)


def response_view(response: ResponseFacts) -> LazyMap:
    """`res.*`: status_code, headers, content_length, content_type, location, ..."""
    fields = _message_fields(response.headers, response.content_length)
    fields["status_code"] = lambda: response.status
    fields["cookies"] = lambda: response_cookies(response.headers)
    return LazyMap(fields)


def endpoint_view(endpoint: EndpointFacts) -> LazyMap:
    """`endpoint.*`: id, url, host, port, addr, protocol."""
    return LazyMap(
        {
            "id": lambda: endpoint.id,
            "url": lambda: endpoint.url,
            "host": lambda: endpoint.host,
            "port": lambda: endpoint.port,
            "addr": lambda: f"{endpoint.host}:{endpoint.port}",
            "protocol": lambda: endpoint.protocol,
        }
    )


def time_view(now: float) -> LazyMap:
    """`time.now`: the caller's `now` (Unix seconds) as an RFC 3339 string, as ngrok gives it."""
    return LazyMap({"now": lambda: rfc3339(now)})
