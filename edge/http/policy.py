"""An endpoint's Traffic Policy on HTTP traffic: the facts, the outcomes, the changes applied.

Theory of operation. `edge.http.seam.decide` calls `request_phase` once it knows the endpoint
and only when the endpoint has a policy (`HttpRoute.policy`); the no-policy path never comes
here. It builds the engine's facts from the seam's `HttpRequest` (`edge.http.policy_facts`;
`ConnFacts` from the connection, once per connection, on first use: `ClientConn`), runs
`on_http_request` (`edge.policy.engine.run_http_request`) and turns the outcome into one of:

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
decoded and folded to lower case once per distinct name (`decoded_headers`, a bounded table);
the folded names go to the phase (its header lookups fold none) and back to `apply_headers`.
The request phase's result variables are carried to the response phase only when it can read
them (`CompiledPolicy.response_reads_results`), and the per-request frozen values (the facts,
`ResponsePolicy` and `Policed`: `_new_policed`) are built by their slots (`slot_setters`), at
a third of the cost of their keyword constructors.

A phase that only edits headers, and whose result variables nothing can read, runs light
(`edge.policy.light`: no `PhaseRun`, no result dicts, the response's headers decoded only if
an expression or value reads them; a response phase of the status alone reuses its changes
by status); where the light run gives up (whatever the planned run would leave to
cel-python, or fail), the phase runs in full, from the start.

The engine never logs; its records (`log` actions and runtime failures) are logged here, one
INFO line each (WARNING for a runtime failure, which the operator must fix), naming the
endpoint URL, the phase and rule, and the metadata. Nothing here raises: the engine fails one
request with a coded 500, never the connection.
"""

from __future__ import annotations

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
from edge.http.policy_facts import (
    ClientConn,
    bare_response_facts,
    decoded_headers,
    new_response_facts,
    request_facts_and_names,
    slot_setters,
    unknown_conn,
)
from edge.http.response_body import RewrittenResponse, plan_body
from edge.policy.activation import ConnFacts, EndpointFacts, RequestFacts
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
from edge.policy.light import LightRun, light_plan
from edge.policy.outcomes import NOTHING_CARRIED
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


_new: Final = object.__new__
_SET_ATTACHED, _SET_CONN, _SET_REQUEST, _SET_ENDPOINT, _SET_CARRIED, _SET_OUTER = slot_setters(
    ResponsePolicy, ("attached", "conn", "request", "endpoint", "carried", "outer")
)
_SET_ROUTE, _SET_FORWARDED, _SET_RESPONSE, _SET_NEW_BODY = slot_setters(
    Policed, ("route", "request", "response", "body")
)


def _new_policed(
    route: HttpRoute,
    request: HttpRequest,
    attached: AttachedPolicy,
    conn: ConnFacts,
    facts: RequestFacts,
    endpoint: EndpointFacts,
    carried: Carried,
) -> Policed:
    """`Policed(route, request, ResponsePolicy(attached, conn, facts, endpoint, carried))`,
    the common ending of a request phase, at a third of the cost of the two constructors."""
    response = _new(ResponsePolicy)
    _SET_ATTACHED(response, attached)
    _SET_CONN(response, conn)
    _SET_REQUEST(response, facts)
    _SET_ENDPOINT(response, endpoint)
    _SET_CARRIED(response, carried)
    _SET_OUTER(response, None)
    policed = _new(Policed)
    _SET_ROUTE(policed, route)
    _SET_FORWARDED(policed, request)
    _SET_RESPONSE(policed, response)
    _SET_NEW_BODY(policed, None)
    return policed


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
    conn = request.conn.facts() if request.conn is not None else unknown_conn(request)
    facts, lowered = request_facts_and_names(request)
    if body is not None:
        facts = replace(facts, body=body, content_length=len(body))
    if not attached.compiled.on_http_request and not attached.compiled.response_reads_results:
        # a policy of the response only: nothing to run here, nothing to carry
        return _new_policed(route, request, attached, conn, facts, endpoint, NOTHING_CARRIED)
    light = light_plan(attached.compiled, "on_http_request")
    if light is not None:  # header edits only, nothing to carry (`edge.policy.light`)
        run = LightRun(conn, facts, lowered)
        if light.run(run):
            changed = request
            if run.removed or run.added:
                changed = _changed_request(request, run.removed, run.added, None, lowered)
            return _new_policed(route, changed, attached, conn, facts, endpoint, NOTHING_CARRIED)
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
        compiled = attached.compiled
        if compiled.response_reads_results:
            carried = carried_by(outcome)
        elif outcome.breakers:  # the results could not be seen: the breakers only
            carried = Carried(breakers=tuple(outcome.breakers))
        else:
            carried = NOTHING_CARRIED
        return _new_policed(route, changed, attached, conn, facts, endpoint, carried)
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
    compiled = policy.attached.compiled
    if not compiled.on_http_response:
        return headers  # an empty phase changes nothing: no facts, no run
    light = light_plan(compiled, "on_http_response")
    if light is not None:  # header edits only (`edge.policy.light`): headers decoded if read
        known = light.by_status  # a phase that reads the status alone: its changes, by status
        if known is not None:
            changes = known.get(status)
            if changes is not None:
                return _edited(headers, changes[0], changes[1], None)
        run = LightRun(
            policy.conn,
            policy.request,
            None,
            bare_response_facts(status),
            functools.partial(decoded_headers, headers),
        )
        if light.run(run):
            if known is not None:
                light.remember(status, run)
            return _edited(headers, run.removed, run.added, run.response_lowered)
    decoded, lowered = decoded_headers(headers)
    facts = new_response_facts(status, decoded)
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
    headers = _edited(headers, outcome.removed, outcome.added, lowered)
    if outcome.body_steps:  # compress-response, response-body-find-replace
        return _body_phase(policy, status, headers, tuple(outcome.body_steps))
    return headers


def _edited(
    headers: Headers,
    removed: Sequence[str],
    added: Sequence[tuple[str, str]],
    lowered: Sequence[str] | None,
) -> Headers:
    """The response head `headers` with a response phase's header changes, but for the
    framing headers. `lowered`: its names folded to lower case, if known (`apply_headers`)."""
    if removed or added:
        # The body is framed by the upstream's head (or the answer's length): a policy does not
        # change the framing headers, which would make the response unsendable.
        framing = not _FRAMING.isdisjoint(removed)
        for name, _ in added:  # a loop, not a comprehension: no frame for a name or two
            if name in _FRAMING:
                framing = True
                break
        if framing:
            removed = [name for name in removed if name not in _FRAMING]
            added = [(name, value) for name, value in added if name not in _FRAMING]
        headers = apply_headers(headers, removed, added, lowered)
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


def _changed_request(
    request: HttpRequest,
    removed: Sequence[str],
    added: Sequence[tuple[str, str]],
    new_target: str | None,
    lowered: tuple[str, ...] | None = None,
) -> HttpRequest:
    """`request` with the policy's header changes and URL rewrite (`HttpRequest.with_head`),
    once per request the policy changes.
    `lowered`: its header names folded to lower case, if known (`apply_headers`)."""
    headers = request.headers
    if removed or added:
        headers = apply_headers(headers, removed, added, lowered)
    target = request.target if new_target is None else new_target.encode("utf-8")
    return request.with_head(headers, target)


def apply_headers(
    headers: Headers,
    removals: Sequence[str],
    added: Sequence[tuple[str, str]],
    lowered: Sequence[str] | None = None,
) -> Headers:
    """`headers` with a phase's changes (`HeaderChanges`) applied: the `removals` dropped (by
    lower-case name), the `added` ones appended; an added Host replaces the request's Host
    (one Host only, RFC 9110 §7.2). `lowered`, if given, is each header's name decoded as
    Latin-1 and folded to lower case, in order (`decoded_headers`): the names are then not folded
    again.

    Loops rather than comprehensions where a phase's changes are a name or two: in Python
    3.11 each comprehension is a call, and on the edge, run once per request between others,
    every call's code is likely out of the CPU's caches."""
    if not removals:  # only additions (the commonest request edit): one copy, appended to
        result = list(headers)
        for name, value in added:
            if name == "host":
                break
            result.append((name.encode("latin-1"), value.encode("utf-8")))
        else:
            return result
    appended: Headers = []
    removed: set[str] | None = set(removals) if removals else None
    for name, value in added:
        appended.append((name.encode("latin-1"), value.encode("utf-8")))
        if name == "host":
            removed = {*removed, "host"} if removed else {"host"}
    if removed is None:
        return [*headers, *appended]
    if lowered is not None and len(removed) == 1 and lowered.count(only := next(iter(removed))) < 2:
        kept = list(headers)  # one name to drop, there once or not at all (the commonest case)
        if only in lowered:
            del kept[lowered.index(only)]
    elif lowered is not None:
        kept = [pair for pair, name in zip(headers, lowered, strict=True) if name not in removed]
    elif len(removed) == 1 and (only := next(iter(removed))).isascii():
        # one ASCII name (a token, as validation makes them) to drop from names not folded: a
        # name of another length cannot be it; bytes.lower() folds the same ASCII letters as
        # str.lower(), and no other Latin-1 byte lowers to ASCII, so nothing needs decoding
        one = only.encode("ascii")
        size = len(one)
        kept = []
        for pair in headers:
            key = pair[0]
            if len(key) != size or key.lower() != one:
                kept.append(pair)
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
