"""The facts a Traffic Policy sees of HTTP traffic, made from the seam's values.

`edge.http.policy` runs the phases; this module makes what they read: the connection's
`conn.*` (`ClientConn`, once per connection, on first use), the request's `req.*`
(`request_facts_and_names`) and the response's `res.*` (`new_response_facts` of its
`decoded_headers`). These are made once per request and response, so they are built lean:
header names are decoded and folded to lower case once per distinct name (`NAMES`, a bounded
table), and the frozen facts are built by their slots (`slot_setters`), at a third of the cost
of their keyword constructors.

Pure but for `ClientConn`, which asks the connection's stream for its addresses and TLS
parameters once; nothing here raises for what a client sends.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from edge.http.headers import Headers
from edge.policy.activation import ConnFacts, RequestFacts, ResponseFacts

if TYPE_CHECKING:
    from edge.http.seam import HttpRequest

__all__ = [
    "KNOWN_NAMES",
    "NAMES",
    "ClientConn",
    "bare_response_facts",
    "decoded_headers",
    "new_response_facts",
    "request_facts",
    "request_facts_and_names",
    "slot_setters",
    "unknown_conn",
]


class ClientConn:
    """What a client connection knows about itself, as the policy's `conn.*` facts: built on
    the first request that needs them (a request to an endpoint with a policy), then kept.

    `server` and the TLS fields are read from the stream the shell serves (a `TLSStream` the
    edge terminated, over a socket): nothing is looked up for an endpoint without a policy."""

    __slots__ = ("_client", "_facts", "_sni", "_stream")

    def __init__(self, stream: object, client: tuple[str, int], sni: str | None) -> None:
        self._stream = stream
        self._client = client
        self._sni = sni
        self._facts: ConnFacts | None = None

    def facts(self) -> ConnFacts:
        facts = self._facts
        if facts is None:
            facts = self._facts = self._build()
            self._stream = None  # not needed again
        return facts

    def _build(self) -> ConnFacts:
        stream = self._stream
        tls_version = tls_cipher = None
        version = getattr(stream, "version", None)
        if callable(version):
            text = version()  # "TLSv1.3"
            if isinstance(text, str):
                tls_version = text.removeprefix("TLSv")
            cipher = getattr(stream, "cipher", None)
            described = cipher() if callable(cipher) else None
            if isinstance(described, tuple) and described:
                tls_cipher = str(described[0])
            stream = getattr(stream, "transport_stream", None)
        server_ip, server_port = "", 0
        sock = getattr(stream, "socket", None)
        if sock is not None:
            try:
                name = sock.getsockname()
                server_ip, server_port = str(name[0]), int(name[1])
            except (OSError, IndexError, TypeError, ValueError):
                pass
        return ConnFacts(
            client_ip=self._client[0],
            client_port=self._client[1],
            server_ip=server_ip,
            server_port=server_port,
            sni=self._sni,
            tls_version=tls_version,
            tls_cipher=tls_cipher,
        )


_Setter = Callable[[object, object], None]


def slot_setters(cls: type, names: tuple[str, ...]) -> tuple[_Setter, ...]:
    """The setters of the slots `names` of the frozen dataclass `cls`, for a builder that sets
    them all (`request_facts_and_names`, ...): a third of the cost of the keyword `__init__` of a
    frozen class, made once per request or response. `names` must be every field of `cls`, in
    order: checked here, at import, so a field added to the class fails loudly until its
    builder sets it too."""
    fields = tuple(item.name for item in dataclasses.fields(cls))
    if fields != names:
        raise TypeError(f"{cls.__name__} has the fields {fields}; its builder sets {names}")
    return tuple(cls.__dict__[name].__set__ for name in names)


_new: Final = object.__new__

(
    _SET_METHOD,
    _SET_SCHEME,
    _SET_HOST,
    _SET_PATH,
    _SET_QUERY,
    _SET_HEADERS,
    _SET_LENGTH,
    _SET_VERSION,
    _SET_BODY,
) = slot_setters(
    RequestFacts,
    (
        "method",
        "scheme",
        "host",
        "path",
        "query",
        "headers",
        "content_length",
        "version",
        "body",
    ),
)
_SET_STATUS, _SET_RES_HEADERS, _SET_RES_LENGTH = slot_setters(
    ResponseFacts, ("status", "headers", "content_length")
)


def new_response_facts(status: int, headers: tuple[tuple[str, str], ...]) -> ResponseFacts:
    """`ResponseFacts(status=status, headers=headers)`, at a third of its cost."""
    facts = _new(ResponseFacts)
    _SET_STATUS(facts, status)
    _SET_RES_HEADERS(facts, headers)
    _SET_RES_LENGTH(facts, None)
    return facts


#: `ResponseFacts` with no headers, by status (`bare_response_facts`).
_BARE_RESPONSES: dict[int, ResponseFacts] = {}


def bare_response_facts(status: int) -> ResponseFacts:
    """`ResponseFacts(status=status, headers=())`: a light run's response facts (it reads the
    headers through a function). Frozen, so one per status (100-999, all a codec passes)
    serves every response."""
    facts = _BARE_RESPONSES.get(status)
    if facts is None:
        facts = new_response_facts(status, ())
        if 100 <= status <= 999:
            _BARE_RESPONSES[status] = facts
    return facts


#: How many distinct header names `decoded_headers` keeps decoded and folded: clients and
#: origins send the same few dozen names request after request; past the bound a new name is
#: decoded anew and not kept, so a client sending ever new names cannot grow the table.
KNOWN_NAMES: Final = 512
#: Header names as the facts show them (Latin-1) and folded to lower case, by their bytes.
NAMES: dict[bytes, tuple[str, str]] = {}


def decoded_headers(headers: Headers) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    """`headers` as the facts hold them (names and values decoded as Latin-1, in order), and
    their names folded to lower case (`str.lower()` of each decoded name), in the same order."""
    names = NAMES
    pairs: list[tuple[str, str]] = []
    lowered: list[str] = []
    for name, value in headers:
        known = names.get(name)
        if known is None:
            text = name.decode("latin-1")
            known = (text, text.lower())
            if len(names) < KNOWN_NAMES:
                names[bytes(name)] = known
        pairs.append((known[0], value.decode("latin-1")))
        lowered.append(known[1])
    return tuple(pairs), tuple(lowered)


def request_facts(request: HttpRequest) -> RequestFacts:
    """`req.*` from the seam's request (the headers as they will be forwarded)."""
    return request_facts_and_names(request)[0]


def request_facts_and_names(request: HttpRequest) -> tuple[RequestFacts, tuple[str, ...]]:
    """`request_facts`, and the request's header names folded to lower case, in order."""
    target = request.target.decode("latin-1")
    path, _, query = target.partition("?")
    headers, lowered = decoded_headers(request.headers)
    host = request.host
    length: int | None = None
    if "content-length" in lowered or lowered.count("host") > 1:
        for name, (_, value) in zip(lowered, headers, strict=True):  # the last one wins
            if name == "host":
                host = value
            elif name == "content-length" and value.isdigit():
                length = int(value)
    elif "host" in lowered:  # the commonest case: one Host, no length
        host = headers[lowered.index("host")][1]
    facts = _new(RequestFacts)  # by its slots: a third of the keyword constructor's cost
    _SET_METHOD(facts, request.method.decode("latin-1"))
    _SET_SCHEME(facts, request.scheme)
    _SET_HOST(facts, host)
    _SET_PATH(facts, path if path.startswith("/") else "/" + path)
    _SET_QUERY(facts, query)
    _SET_HEADERS(facts, headers)
    _SET_LENGTH(facts, length)
    _SET_VERSION(facts, request.version)
    _SET_BODY(facts, None)
    return facts, lowered


def unknown_conn(request: HttpRequest) -> ConnFacts:
    """Facts from the request alone, for a shell that passed no `ClientConn`."""
    host, _, port = request.client_addr.rpartition(":")
    return ConnFacts(
        client_ip=host.strip("[]"),
        client_port=int(port) if port.isdigit() else 0,
        server_ip="",
        server_port=0,
        sni=request.sni,
    )
