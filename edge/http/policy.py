"""An endpoint's Traffic Policy on HTTP traffic: the facts, the outcomes, the changes applied.

Theory of operation. `edge.http.seam.decide` calls `request_phase` once it knows the endpoint
and only when the endpoint has a policy (`HttpRoute.policy`); the no-policy path never comes
here. It builds the engine's facts from the seam's `HttpRequest` (`ConnFacts` from the
connection, once per connection, on first use: `ClientConn`), runs `on_http_request`
(`edge.policy.engine.run_http_request`) and turns the outcome into one of:

* `Policed`: forward the request with the policy's header changes and URL rewrite applied,
  and run `on_http_response` on the upstream's final response head (`response_phase`, from
  `edge.http.seam.client_response_headers`), with the request phase's result variables;
* `PolicyAnswer`: answer the client with this response (deny, custom-response, redirect,
  basic-auth's 401, rate-limit's 429, or a runtime failure's coded 500). A policy's answer is
  not an edge error page: it carries no `Burrow-Error-Code` unless a runtime failure made it;
* `PolicyClose`: close the client's connection (HTTP/1.1) or reset the stream (HTTP/2).

Both phases run through the engine's untraced entry points for the edge
(`run_http_request_edits`, `run_http_response_edits`): in the common case they hand back the
finished phase run itself, and its header edits, URL rewrite and result variables are applied
from it directly, with no outcome object in between. The request is copied only when the
policy changed it, the response phase is skipped when the policy has none, and the endpoint's
facts come made from the route (`edge.http.routing`), once per endpoint. Header names are
decoded and folded to lower case once per distinct name (`_decoded`, a bounded table); the
folded names go to the phase (its header lookups fold none) and back to `apply_headers`.

The engine never logs; its records (`log` actions and runtime failures) are logged here, one
INFO line each (WARNING for a runtime failure, which the operator must fix), naming the
endpoint URL, the phase and rule, and the metadata. Nothing here raises: the engine fails one
request with a coded 500, never the connection.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from http import HTTPStatus
from typing import TYPE_CHECKING, Final

from edge.endpoints.registry import AttachedPolicy
from edge.events import EventLog
from edge.http.headers import Headers
from edge.http.response_body import RewrittenResponse, plan_body
from edge.policy.activation import ConnFacts, EndpointFacts, RequestFacts, ResponseFacts
from edge.policy.breaker import record_outcomes
from edge.policy.engine import (
    Carried,
    Close,
    ForwardInternal,
    LogRecord,
    Respond,
    carried_by,
    run_http_request_edits,
    run_http_response_edits,
)
from edge.policy.forward_internal import ForwardCheck
from edge.policy.phase import PhaseRun

if TYPE_CHECKING:
    from edge.http.routing import HttpRoute
    from edge.http.seam import HttpRequest
    from edge.policy.run_response_body import BodyStep

__all__ = [
    "ClientConn",
    "Policed",
    "PolicyAnswer",
    "PolicyClose",
    "PolicyForward",
    "ResponsePolicy",
    "answer_phase",
    "request_phase",
    "response_phase",
    "upstream_failed",
]

log = logging.getLogger(__name__)

#: Framing and connection headers a policy's answer may not set: the shells frame the body
#: themselves (Content-Length is added from the body), and HTTP/2 forbids connection headers.
_FRAMING: Final = frozenset(
    {"content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te"}
)

#: Statuses whose responses have no body (RFC 9110 §15.3.5, §15.4.5).
_NO_BODY: Final = frozenset({204, 304})


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


@dataclass(frozen=True, slots=True)
class PolicyAnswer:
    """Answer the client with this response (HTTP/1.1 header spelling, framing included)."""

    status: int
    headers: Headers
    body: bytes
    reason: str  # for the log: which policy action answered

    def body_for(self, method: bytes) -> bytes:
        """The body to send: none to a HEAD request, nor with a status that has none."""
        if method == b"HEAD" or self.status in _NO_BODY or self.status < 200:
            return b""
        return self.body

    @property
    def phrase(self) -> bytes:
        try:
            return HTTPStatus(self.status).phrase.encode("ascii")
        except ValueError:
            return b""


@dataclass(frozen=True, slots=True)
class PolicyClose:
    """Close the client's connection (HTTP/1.1) or reset its stream (HTTP/2), answering nothing."""

    reason: str


@dataclass(frozen=True, slots=True)
class ResponsePolicy:
    """What the response phase of one request needs: its policy, facts and carried results."""

    attached: AttachedPolicy
    conn: ConnFacts
    request: RequestFacts
    endpoint: EndpointFacts
    carried: Carried
    #: The response phase to run after this one: the policy of the endpoint that forwarded the
    #: request here with forward-internal (`edge.http.forwarding`), None for the first endpoint.
    outer: ResponsePolicy | None = None


@dataclass(frozen=True, slots=True)
class PolicyForward:
    """forward-internal: hand `request` (the policy's changes applied) to the internal endpoint
    `url`, whose policy runs next (`edge.http.forwarding.follow`); `response` runs after the
    target's response phase. `error` is set when the forward failed with `on_error: halt`."""

    url: str
    error: tuple[str, str] | None
    request: HttpRequest
    response: ResponsePolicy


@dataclass(frozen=True, slots=True)
class Policed:
    """Forward `request` (the policy's changes applied) to `route`; run `response` on the
    response head."""

    route: HttpRoute
    request: HttpRequest
    response: ResponsePolicy
    #: The body to forward when the policy read it whole (`edge.http.body_buffer`); None: the
    #: body streams from the client as it comes.
    body: bytes | None = None


#: How many distinct header names `_decoded` keeps decoded and folded: clients and origins send
#: the same few dozen names request after request; past the bound a new name is decoded anew
#: and not kept, so a client sending ever new names cannot grow the table.
_KNOWN_NAMES: Final = 512
#: Header names as the facts show them (Latin-1) and folded to lower case, by their bytes.
_NAMES: dict[bytes, tuple[str, str]] = {}


def _decoded(headers: Headers) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    """`headers` as the facts hold them (names and values decoded as Latin-1, in order), and
    their names folded to lower case (`str.lower()` of each decoded name), in the same order."""
    names = _NAMES
    pairs: list[tuple[str, str]] = []
    lowered: list[str] = []
    for name, value in headers:
        known = names.get(name)
        if known is None:
            text = name.decode("latin-1")
            known = (text, text.lower())
            if len(names) < _KNOWN_NAMES:
                names[bytes(name)] = known
        pairs.append((known[0], value.decode("latin-1")))
        lowered.append(known[1])
    return tuple(pairs), tuple(lowered)


def request_facts(request: HttpRequest) -> RequestFacts:
    """`req.*` from the seam's request (the headers as they will be forwarded)."""
    return _request_facts(request)[0]


def _request_facts(request: HttpRequest) -> tuple[RequestFacts, tuple[str, ...]]:
    """`request_facts`, and the request's header names folded to lower case, in order."""
    target = request.target.decode("latin-1")
    path, _, query = target.partition("?")
    headers, lowered = _decoded(request.headers)
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
    facts = RequestFacts(
        method=request.method.decode("latin-1"),
        scheme=request.scheme,
        host=host,
        path=path if path.startswith("/") else "/" + path,
        query=query,
        headers=headers,
        content_length=length,
        version=request.version,
    )
    return facts, lowered


def request_phase(
    request: HttpRequest,
    route: HttpRoute,
    attached: AttachedPolicy,
    *,
    now: float,
    forward_check: ForwardCheck | None = None,
    body: bytes | None = None,
) -> Policed | PolicyAnswer | PolicyClose | PolicyForward:
    """Run `on_http_request` of `route`'s policy `attached` on `request`: forward it changed,
    answer it, close, or hand it to an internal endpoint (`forward_check` checks the target:
    `edge.http.forwarding`). `body` is the whole request body when the shell read it for a
    policy that reads bodies (`edge.http.body_buffer`); a body the policy rewrote comes back in
    `Policed.body`."""
    endpoint = route.endpoint_facts()
    conn = request.conn.facts() if request.conn is not None else _unknown_conn(request)
    facts, lowered = _request_facts(request)
    if body is not None:
        facts = replace(facts, body=body, content_length=len(body))
    outcome = run_http_request_edits(  # untraced: the edge needs no `policy test` account
        attached.compiled,
        conn,
        facts,
        endpoint=endpoint,
        now=now,
        state=attached.state,
        forward_check=forward_check,
        lowered=lowered,
    )
    if isinstance(outcome, PhaseRun):  # forward, the body as it came (the common case)
        if outcome.logs:
            _log_records(tuple(outcome.logs), endpoint.url, attached.events)
        changed = request
        if outcome.removed or outcome.added or outcome.target is not None:
            changed = _changed_request(
                request, outcome.removed, outcome.added, outcome.target, lowered
            )
        response = ResponsePolicy(attached, conn, facts, endpoint, carried_by(outcome))
        return Policed(route, changed, response)
    _log_records(outcome.logs, endpoint.url, attached.events)
    if isinstance(outcome, Close):
        return PolicyClose(outcome.reason)
    if isinstance(outcome, Respond):
        answer = _answer(outcome)
        if outcome.error_code is not None or not attached.compiled.on_http_response:
            return answer
        # The policy's own answer goes through its response phase, as the upstream's would
        # (ngrok runs on_http_response after a request-phase custom-response too).
        policy = ResponsePolicy(attached, conn, facts, endpoint, outcome.carried)
        return answer_phase(policy, answer, now=now)
    changes = outcome.changes
    changed = request
    if changes.headers.removed or changes.headers.added or changes.target is not None:
        headers = changes.headers
        changed = _changed_request(
            request, headers.removed, headers.added, changes.target, lowered
        )
    response = ResponsePolicy(attached, conn, facts, endpoint, outcome.carried)
    if isinstance(outcome, ForwardInternal):
        return PolicyForward(outcome.url, outcome.error, changed, response)
    return Policed(route, changed, response, changes.body)


def response_phase(
    policy: ResponsePolicy, status: int, headers: Headers, *, now: float, upstream: bool = True
) -> Headers | PolicyAnswer | RewrittenResponse:
    """Run `on_http_response` on the final response head `status`/`headers` (as the client
    would get them): those headers with the policy's changes (but for the framing headers,
    which stay as they are), or the answer replacing it. Then `policy.outer`'s, if any, on
    the result (the forwarding endpoint's, after a forward-internal).

    `upstream`: the head is the upstream's (not a policy's answer), so its status is reported
    to the circuit breakers the request passed (`edge.policy.breaker`)."""
    if policy.outer is not None:
        inner = response_phase(
            replace(policy, outer=None), status, headers, now=now, upstream=upstream
        )
        if isinstance(inner, PolicyAnswer):
            return answer_phase(policy.outer, inner, now=now)
        if isinstance(inner, RewrittenResponse):
            after = response_phase(
                policy.outer, status, inner.headers, now=now, upstream=upstream
            )
            return after if isinstance(after, PolicyAnswer) else inner.then(after)
        return response_phase(policy.outer, status, inner, now=now, upstream=upstream)
    if upstream and policy.carried.breakers:
        record_outcomes(policy.carried.breakers, status=status, now=now)
    if not policy.attached.compiled.on_http_response:
        return headers  # an empty phase changes nothing: no facts, no run
    decoded, lowered = _decoded(headers)
    facts = ResponseFacts(status=status, headers=decoded)
    outcome = run_http_response_edits(  # untraced, as the request phase
        policy.attached.compiled,
        policy.conn,
        policy.request,
        facts,
        endpoint=policy.endpoint,
        now=now,
        state=policy.attached.state,
        carried=policy.carried,
        lowered=lowered,
    )
    if outcome.logs:
        _log_records(tuple(outcome.logs), policy.endpoint.url, policy.attached.events)
    if isinstance(outcome, Respond):
        return _answer(outcome)
    removed, added = outcome.removed, outcome.added
    if removed or added:
        # The body is framed by the upstream's head (or the answer's length): a policy does not
        # change the framing headers, which would make the response unsendable.
        if not _FRAMING.isdisjoint(removed) or not _FRAMING.isdisjoint(
            [name for name, _ in added]
        ):
            removed = [name for name in removed if name not in _FRAMING]
            added = [(name, value) for name, value in added if name not in _FRAMING]
        headers = apply_headers(headers, removed, added, lowered)
    if outcome.body_steps:  # compress-response, response-body-find-replace
        return _body_phase(policy, status, headers, tuple(outcome.body_steps))
    return headers


def _body_phase(
    policy: ResponsePolicy, status: int, headers: Headers, steps: tuple[BodyStep, ...]
) -> Headers | RewrittenResponse:
    """The head after the body actions (`edge.http.response_body`), and the rewrite to run the
    body through when they change it."""
    plan = plan_body(
        steps,
        method=policy.request.method,
        status=status,
        request_headers=policy.request.headers,
        headers=headers,
    )
    url = policy.endpoint.url
    for note in plan.notes:
        log.info("policy %s: %s", url, note)
    if not plan.rewrites:
        return plan.headers
    return RewrittenResponse(plan.headers, (plan,), functools.partial(_report, url))


def _report(url: str, line: str) -> None:
    log.warning("policy %s: %s", url, line)


def answer_phase(policy: ResponsePolicy, answer: PolicyAnswer, *, now: float) -> PolicyAnswer:
    """`answer` after the response phase: its headers changed, or another answer."""
    decided = response_phase(policy, answer.status, answer.headers, now=now, upstream=False)
    if isinstance(decided, PolicyAnswer):
        return decided
    if isinstance(decided, RewrittenResponse):  # the answer's body is here whole: rewrite it
        body = decided.whole(answer.body)
        headers = [*decided.headers, (b"Content-Length", b"%d" % len(body))]
        return replace(answer, headers=headers, body=body)
    return replace(answer, headers=decided)


#: The field names of the seam's request class, looked up on first use (`_field_names`).
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    """The fields of the dataclass `cls` (the seam's `HttpRequest`), looked up once."""
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(item.name for item in dataclasses.fields(cls))
    return names


def _changed_request(
    request: HttpRequest,
    removed: Sequence[str],
    added: Sequence[tuple[str, str]],
    new_target: str | None,
    lowered: tuple[str, ...] | None = None,
) -> HttpRequest:
    """`request` with the policy's header changes and URL rewrite: `dataclasses.replace` at a
    third of its cost (every field copied as it is, then the two set), once per request.
    `lowered`: its header names folded to lower case, if known (`apply_headers`)."""
    headers = request.headers
    if removed or added:
        headers = apply_headers(headers, removed, added, lowered)
    target = request.target if new_target is None else new_target.encode("utf-8")
    cls = type(request)
    new = object.__new__(cls)
    for name in _field_names(cls):
        object.__setattr__(new, name, getattr(request, name))
    object.__setattr__(new, "headers", headers)
    object.__setattr__(new, "target", target)
    return new


def apply_headers(
    headers: Headers,
    removals: Sequence[str],
    added: Sequence[tuple[str, str]],
    lowered: Sequence[str] | None = None,
) -> Headers:
    """`headers` with a phase's changes (`HeaderChanges`) applied: the `removals` dropped (by
    lower-case name), the `added` ones appended; an added Host replaces the request's Host
    (one Host only, RFC 9110 §7.2). `lowered`, if given, is each header's name decoded as
    Latin-1 and folded to lower case, in order (`_decoded`): the names are then not folded
    again."""
    appended = [(name.encode("latin-1"), value.encode("utf-8")) for name, value in added]
    removed: set[str] | None = set(removals) if removals else None
    for name, _ in added:
        if name == "host":
            removed = {*removed, "host"} if removed else {"host"}
            break
    if removed is None:
        return [*headers, *appended]
    if lowered is not None:
        kept = [pair for pair, name in zip(headers, lowered, strict=True) if name not in removed]
    elif "".join(removed).isascii():  # every name ASCII: one test of them all
        # ASCII names (tokens, as validation makes them): bytes.lower() folds the same ASCII
        # letters, and no other Latin-1 byte lowers to ASCII, so nothing needs decoding
        wanted = {name.encode("ascii") for name in removed}
        kept = [(n, v) for n, v in headers if n.lower() not in wanted]
    else:
        kept = [(n, v) for n, v in headers if n.decode("latin-1").lower() not in removed]
    kept += appended
    return kept


def _answer(outcome: Respond) -> PolicyAnswer:
    headers: Headers = [
        (name.encode("latin-1"), value.encode("utf-8"))
        for name, value in outcome.headers
        if name.lower() not in _FRAMING
    ]
    if outcome.status not in _NO_BODY and outcome.status >= 200:
        headers.append((b"Content-Length", b"%d" % len(outcome.body)))
    code = outcome.error_code
    if code is not None:  # a runtime failure: the coded 500, as the edge's own errors are
        headers.append((b"Burrow-Error-Code", code.encode("ascii")))
        if code.startswith("ERR_NGROK_"):
            headers.append((b"ngrok-error-code", code.encode("ascii")))
    if code is not None:
        reason = f"policy runtime error {code}"
    else:
        reason = f"policy {outcome.action or 'action'}"
    return PolicyAnswer(outcome.status, headers, outcome.body, reason)


def upstream_failed(policy: ResponsePolicy, *, now: float) -> None:
    """Report a forwarded request that got no response head (the agent or the upstream
    failed) to the circuit breakers it passed, as an upstream error (`edge.policy.breaker`)."""
    current: ResponsePolicy | None = policy
    while current is not None:
        record_outcomes(current.carried.breakers, status=None, now=now)
        current = current.outer


def _unknown_conn(request: HttpRequest) -> ConnFacts:
    """Facts from the request alone, for a shell that passed no `ClientConn`."""
    host, _, port = request.client_addr.rpartition(":")
    return ConnFacts(
        client_ip=host.strip("[]"),
        client_port=int(port) if port.isdigit() else 0,
        server_ip="",
        server_port=0,
        sni=request.sni,
    )


def _log_records(
    records: tuple[LogRecord, ...], url: str, events: EventLog | None = None
) -> None:
    # A record's place names its phase, rule and action: `on_http_request rule 0 ("audit")
    # action 0 (log)`. A `log` action's record is also an event (`edge.events`), when the
    # policy has an event log; runtime failures are the operator's, in the log only.
    for record in records:
        metadata = json.dumps(dict(record.metadata), default=str, sort_keys=True)
        if record.error_code is not None:
            log.warning("policy %s: %s: %s %s", url, record.place, record.error_code, metadata)
            continue
        log.info("policy %s: %s: %s", url, record.place, metadata)
        if events is not None:
            events.record_policy_log(
                endpoint_url=url,
                phase=record.phase,
                place=record.place,
                metadata=dict(record.metadata),
            )
