"""Running a compiled policy: one phase, for one connection, request or response.

Theory of operation. The shell calls one entry point per phase with the facts it has
(`edge.policy.activation`), the time and the policy's `PolicyState`:

    run_tcp_connect(policy, conn, ...)                        -> Continue | Close
    run_http_request(policy, conn, request, ...)              -> Forward | Respond | Close
                                                                 | ForwardInternal
    run_http_response(policy, conn, request, response, ...)   -> ResponseChanges | Respond

Rules run in order. A rule applies when all its expressions are true (evaluated in order, the
first false one stops it; no expressions means always); its actions then run in order, and an
action that answers or closes ends the phase (deny, custom-response, close-connection; a
redirect that changes the URL; restrict-ips, basic-auth, rate-limit and verify-webhook when
they refuse and enforce; circuit-breaker while open). Everything else changes the
request/response or the variables and falls through (request-body-find-replace's new body:
`RequestChanges.body`). The circuit breakers a forwarded request passed ride in
`Carried.breakers`: the shell reports the upstream's outcome to them (`edge.policy.breaker`).

Every outcome carries `logs` (what `log` actions recorded, and any runtime failure, for the
shell to emit: this module never logs) and `trace` (each rule reached, each expression's value,
each action and what it did: what `burrow-edge policy test` prints). The edge runs with
`trace=False`: its outcomes carry an empty trace, and building none is a good part of a rule's
cost; `Respond.action` still names the action that answered. An untraced phase runs planned
(`edge.policy.plan`: each phase compiled once into closures over the running phase, kept in
`CompiledPolicy.plans`), with the same outcome as the traced loop here. The outcomes are
`edge.policy.outcomes`' frozen values (re-exported here); an untraced one shares its parts
where it can (one empty `Trace` per phase, one `HeaderChanges()` for no change, one `Carried`
for nothing carried, the run's result variables shown rather than copied).

The edge's own entry points. The HTTP shell (`edge.http.policy`) calls

    run_http_request_edits(...)    -> PhaseRun | Forward | Respond | Close | ForwardInternal
    run_http_response_edits(...)   -> PhaseRun | Respond

which run the planned phase and, in the common case (the request forwarded with its body as
it came; the response kept), return the finished `PhaseRun` instead of building the outcome:
its `removed`, `added`, `target`, `logs`, `body_steps` and `carried_by(run)` are the fields of
the `Forward` or `ResponseChanges` it stands for (`tests/edge/policy/test_plan.py` holds the two
to the traced run). Any other ending is the outcome `trace=False` gives.

Variables. `vars.*` belong to the phase that set them (DOCS set-vars: "Variables defined in each
of the three phases are scoped to that phase"). Action result variables (`actions.ngrok.*`) of
the request phase are carried to the response phase in `Forward.carried` (and in a `Respond`,
whose synthetic response the shell may run the response phase on, as ngrok does after a
request-phase custom-response).

Failures. A CEL expression or `${...}` that fails at run time (ERR_NGROK_2254 for a rule
expression, 2238 for interpolation, 2253 for an action field) fails this one request with a
coded 500 (`Respond.error_code`) and a log record; on `on_tcp_connect` the connection is
closed. Nothing raises out of an entry point; the policy stays loaded for the next request.

Pure: no I/O, no clock (`now` is Unix seconds from the caller), no logging.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from edge.policy.actions import (
    AddHeadersConfig,
    BasicAuthConfig,
    CloseConnectionConfig,
    CompressResponseConfig,
    CustomResponseConfig,
    DenyConfig,
    LogConfig,
    RateLimitConfig,
    RedirectConfig,
    RemoveHeadersConfig,
    RequestBodyFindReplaceConfig,
    ResponseBodyFindReplaceConfig,
    RestrictIpsConfig,
    SetVarsConfig,
    UrlRewriteConfig,
    VerifyWebhookConfig,
)
from edge.policy.actions_breaker import CircuitBreakerConfig
from edge.policy.actions_jwt import JwtValidationConfig
from edge.policy.actions_tls import TerminateTlsConfig, run_terminate_tls
from edge.policy.activation import ConnFacts, EndpointFacts, RequestFacts, ResponseFacts
from edge.policy.breaker import run_circuit_breaker
from edge.policy.errors import Place, PolicyRuntimeError
from edge.policy.forward_internal import (
    ForwardCheck,
    ForwardInternalConfig,
    Handoff,
    run_forward_internal,
)
from edge.policy.outcomes import (
    ActionTrace,
    Carried,
    Close,
    Continue,
    ExpressionTrace,
    Forward,
    ForwardInternal,
    HeaderChanges,
    RequestChanges,
    Respond,
    ResponseChanges,
    RuleTrace,
    Trace,
    carried_by,
)
from edge.policy.phase import Answer, Hangup, LogRecord, PhaseRun, plain
from edge.policy.plan import (
    ERR_NGROK_2300,
    Ending,
    PlannedRule,
    Runner,
    evaluate_rule_expression,
    plan_phase,
    run_planned,
)
from edge.policy.plan import (
    Failed as _Failed,
)
from edge.policy.plan import (
    fail as _fail,
)
from edge.policy.ratelimit import PolicyState
from edge.policy.run_access import run_basic_auth, run_rate_limit, run_restrict_ips
from edge.policy.run_body import run_request_body_find_replace, run_verify_webhook
from edge.policy.run_http import (
    run_add_headers,
    run_custom_response,
    run_deny,
    run_redirect,
    run_remove_headers,
    run_url_rewrite,
)
from edge.policy.run_jwt import run_jwt_validation
from edge.policy.run_response_body import (
    run_compress_response,
    run_response_body_find_replace,
)
from edge.policy.validate import CompiledAction, CompiledPolicy, CompiledRule

__all__ = [
    "ERR_NGROK_2300",
    "ActionTrace",
    "Carried",
    "Close",
    "Continue",
    "ExpressionTrace",
    "Forward",
    "ForwardInternal",
    "HeaderChanges",
    "LogRecord",
    "RequestChanges",
    "Respond",
    "ResponseChanges",
    "RuleTrace",
    "Trace",
    "carried_by",
    "run_http_request",
    "run_http_request_edits",
    "run_http_response",
    "run_http_response_edits",
    "run_tcp_connect",
]


#: The trace of every untraced run (frozen, so one per phase serves them all), and the
#: outcomes' parts for a phase that changed nothing: made once, not per request.
_UNTRACED: Final[Mapping[str, Trace]] = {
    phase: Trace(phase, ()) for phase in ("on_tcp_connect", "on_http_request", "on_http_response")
}
_NO_HEADER_CHANGES: Final = HeaderChanges()


# --- actions that need only the phase --------------------------------------------------------
def _run_set_vars(run: PhaseRun, config: SetVarsConfig, place: Place) -> None:
    for name, value in config.vars:
        run.set_var(name, run.typed(value, place.at_field(f"config.vars.{name}")))


def _run_log(run: PhaseRun, config: LogConfig, place: Place) -> None:
    metadata = {
        name: plain(run.typed(value, place.at_field(f"config.metadata.{name}")))
        for name, value in config.metadata
    }
    run.logs.append(LogRecord(run.phase, str(place), MappingProxyType(metadata)))
    run.set_result("log", {"metadata": metadata})


def _run_close(run: PhaseRun, config: CloseConnectionConfig, place: Place) -> Hangup:
    return Hangup("close-connection")


_RUNNERS: Final[Mapping[type, Runner]] = {
    RestrictIpsConfig: run_restrict_ips,
    DenyConfig: run_deny,
    CloseConnectionConfig: _run_close,
    CustomResponseConfig: run_custom_response,
    AddHeadersConfig: run_add_headers,
    RemoveHeadersConfig: run_remove_headers,
    RedirectConfig: run_redirect,
    UrlRewriteConfig: run_url_rewrite,
    SetVarsConfig: _run_set_vars,
    LogConfig: _run_log,
    BasicAuthConfig: run_basic_auth,
    RateLimitConfig: run_rate_limit,
    ForwardInternalConfig: run_forward_internal,
    VerifyWebhookConfig: run_verify_webhook,
    RequestBodyFindReplaceConfig: run_request_body_find_replace,
    CompressResponseConfig: run_compress_response,
    ResponseBodyFindReplaceConfig: run_response_body_find_replace,
    TerminateTlsConfig: run_terminate_tls,
    JwtValidationConfig: run_jwt_validation,
    CircuitBreakerConfig: run_circuit_breaker,
}


# --- the rule loop ---------------------------------------------------------------------------
def _action(run: PhaseRun, action: CompiledAction) -> tuple[Ending | None, ActionTrace | None]:
    """Run one action; its trace only when the run is traced (`PhaseRun.tracing`)."""
    index = action.place.action_index or 0
    try:
        runner = _RUNNERS[type(action.config)]
        ending = runner(run, action.config, action.place)
    except PolicyRuntimeError as error:
        failed = _fail(run, error)
        return failed, ActionTrace(index, action.type, f"failed {error.code}: {error.problem}")
    except Exception as exc:  # an engine bug must fail one request, not the edge
        internal = PolicyRuntimeError(ERR_NGROK_2300, f"internal error: {exc!r}", action.place)
        return _fail(run, internal), ActionTrace(index, action.type, f"failed {ERR_NGROK_2300}")
    if ending is None:
        return None, (ActionTrace(index, action.type, "continued") if run.tracing else None)
    run.ended_by = action.type
    if not run.tracing:
        return ending, None
    if isinstance(ending, Hangup):
        return ending, ActionTrace(index, action.type, "closed the connection")
    if isinstance(ending, Handoff):
        done = f"failed {ending.error[0]}: " if ending.error is not None else "forwarded to "
        return ending, ActionTrace(index, action.type, done + ending.url)
    return ending, ActionTrace(index, action.type, f"responded {ending.status}")


def _rule(run: PhaseRun, rule: CompiledRule) -> tuple[Ending | None, RuleTrace | None]:
    """Run one rule: its expressions in order (the first false one stops it), then its
    actions until one ends the phase. Its trace only when the run is traced (`policy test`);
    the edge's untraced runs build no trace objects at all."""
    tracing = run.tracing
    expressions: list[ExpressionTrace] = []
    for number, expression in enumerate(rule.expressions):
        try:
            value = evaluate_rule_expression(run, rule, number, expression)
        except PolicyRuntimeError as error:
            if tracing:
                expressions.append(ExpressionTrace(expression.text, None, error.problem))
            return _fail(run, error), _rule_trace(run, rule, expressions, False, [])
        if tracing:
            expressions.append(ExpressionTrace(expression.text, value))
        if not value:
            return None, _rule_trace(run, rule, expressions, False, [])
    actions: list[ActionTrace] = []
    for action in rule.actions:
        ending, trace = _action(run, action)
        if trace is not None:
            actions.append(trace)
        if ending is not None:
            return ending, _rule_trace(run, rule, expressions, True, actions)
    return None, _rule_trace(run, rule, expressions, True, actions)


def _rule_trace(
    run: PhaseRun,
    rule: CompiledRule,
    expressions: list[ExpressionTrace],
    matched: bool,
    actions: list[ActionTrace],
) -> RuleTrace | None:
    if not run.tracing:
        return None
    index = rule.place.rule_index or 0
    return RuleTrace(index, rule.name, tuple(expressions), matched, tuple(actions))


def _phase(
    run: PhaseRun, policy: CompiledPolicy, rules: tuple[CompiledRule, ...]
) -> tuple[Ending | None, Trace]:
    if not run.tracing:  # the edge: the planned run (`edge.policy.plan`), no trace
        return run_planned(run, _planned(policy, run.phase, rules)), _UNTRACED[run.phase]
    traces: list[RuleTrace] = []
    for rule in rules:
        ending, trace = _rule(run, rule)
        if trace is not None:
            traces.append(trace)
        if ending is not None:
            return ending, Trace(run.phase, tuple(traces))
    return None, Trace(run.phase, tuple(traces))


def _planned(
    policy: CompiledPolicy, phase: str, rules: tuple[CompiledRule, ...]
) -> tuple[PlannedRule, ...]:
    planned = policy.plans.get(phase)
    if planned is None:
        planned = policy.plans[phase] = plan_phase(rules, phase, _RUNNERS)
    return planned


def _error_response(code: str) -> tuple[int, tuple[tuple[str, str], ...], bytes]:
    # The client sees the code only; the expression and its error go to the log record.
    body = f"{code}: this endpoint's Traffic Policy failed on the request.\n".encode()
    return 500, (("content-type", "text/plain; charset=utf-8"),), body


def _respond(ending: Answer | _Failed, run: PhaseRun, trace: Trace, carried: Carried) -> Respond:
    logs = tuple(run.logs)
    if isinstance(ending, _Failed):
        status, headers, body = _error_response(ending.code)
        return Respond(
            status=status,
            headers=headers,
            body=body,
            logs=logs,
            trace=trace,
            carried=carried,
            error_code=ending.code,
        )
    return Respond(
        status=ending.status,
        headers=ending.headers,
        body=ending.body,
        logs=logs,
        trace=trace,
        carried=carried,
        action=run.ended_by,
    )


def _changes(run: PhaseRun) -> HeaderChanges:
    if not run.removed and not run.added:
        return _NO_HEADER_CHANGES
    return HeaderChanges(tuple(run.removed), tuple(run.added))


def _handoff(ending: Handoff, forward: Forward) -> ForwardInternal:
    """The request phase's forward-internal, with what the phase changed before it."""
    return ForwardInternal(
        url=ending.url,
        error=ending.error,
        changes=forward.changes,
        carried=forward.carried,
        logs=forward.logs,
        trace=forward.trace,
    )


# --- entry points ----------------------------------------------------------------------------
def run_tcp_connect(
    policy: CompiledPolicy,
    conn: ConnFacts,
    *,
    endpoint: EndpointFacts,
    now: float,
    state: PolicyState,
    forward_check: ForwardCheck | None = None,
) -> Continue | Close | ForwardInternal:
    """Run `on_tcp_connect`; a refusal or a runtime failure closes the connection, a
    forward-internal hands it on (`forward_check` is its check of the target, see
    `edge.policy.forward_internal`)."""
    run = PhaseRun("on_tcp_connect", conn, endpoint, now, state, forward_check=forward_check)
    ending, trace = _phase(run, policy, policy.on_tcp_connect)
    logs = tuple(run.logs)
    if ending is None:
        return Continue(logs=logs, trace=trace, terminate_tls=run.terminate_tls)
    if isinstance(ending, Handoff) and run.terminate_tls is not None:
        # Handing the connection on would drop the termination (and its client-certificate
        # check) on the way: fail closed until the two are served together.
        return Close(
            reason="terminate-tls before forward-internal is not supported by this Burrow edge",
            logs=logs,
            trace=trace,
        )
    if isinstance(ending, Handoff):
        return ForwardInternal(url=ending.url, error=ending.error, logs=logs, trace=trace)
    if isinstance(ending, Hangup):
        reason = ending.reason
    elif isinstance(ending, _Failed):
        reason = ending.code
    else:  # no tcp action answers with a status (validation keeps them out)
        reason = f"status {ending.status}"
    return Close(reason=reason, logs=logs, trace=trace)


def run_http_request(
    policy: CompiledPolicy,
    conn: ConnFacts,
    request: RequestFacts,
    *,
    endpoint: EndpointFacts,
    now: float,
    state: PolicyState,
    forward_check: ForwardCheck | None = None,
    trace: bool = True,
) -> Forward | Respond | Close | ForwardInternal:
    """Run `on_http_request` for one request head (`forward_check`: forward-internal's check
    of its target, see `edge.policy.forward_internal`)."""
    run = PhaseRun(
        "on_http_request",
        conn,
        endpoint,
        now,
        state,
        request=request,
        forward_check=forward_check,
        tracing=trace,
    )
    ending, account = _phase(run, policy, policy.on_http_request)
    return _request_outcome(run, ending, account, request)


def run_http_request_edits(
    policy: CompiledPolicy,
    conn: ConnFacts,
    request: RequestFacts,
    *,
    endpoint: EndpointFacts,
    now: float,
    state: PolicyState,
    forward_check: ForwardCheck | None = None,
    lowered: tuple[str, ...] | None = None,
) -> PhaseRun | Forward | Respond | Close | ForwardInternal:
    """The edge's `run_http_request(trace=False)`, with its commonest outcome left unbuilt:
    when the phase lets the request through with its body unchanged, the finished `PhaseRun`
    itself, whose `removed`, `added` and `target` are `Forward.changes`, `logs` its log
    records, and `carried_by(run)` its `Forward.carried`. Otherwise (a new body, an answer, a
    close, a forward-internal): the outcome `run_http_request(trace=False)` gives.

    `lowered`: the request's header names folded to lower case, in order, if the caller has
    them (`PhaseRun.known_names`: the header getters then fold none)."""
    run = PhaseRun(
        "on_http_request",
        conn,
        endpoint,
        now,
        state,
        request=request,
        forward_check=forward_check,
        tracing=False,
    )
    if lowered is not None:
        run.known_names("req", request.headers, lowered)
    ending = run_planned(run, _planned(policy, "on_http_request", policy.on_http_request))
    if ending is None and (run.request is None or run.request.body is request.body):
        return run
    return _request_outcome(run, ending, _UNTRACED["on_http_request"], request)


def _request_outcome(
    run: PhaseRun, ending: Ending | None, account: Trace, request: RequestFacts
) -> Forward | Respond | Close | ForwardInternal:
    carried = carried_by(run)
    if ending is None or isinstance(ending, Handoff):
        body = run.request.body if run.request is not None else None
        forward = Forward(
            changes=RequestChanges(
                _changes(run), run.target, body if body is not request.body else None
            ),
            carried=carried,
            logs=tuple(run.logs),
            trace=account,
        )
        return forward if ending is None else _handoff(ending, forward)
    if isinstance(ending, Hangup):
        return Close(reason=ending.reason, logs=tuple(run.logs), trace=account)
    return _respond(ending, run, account, carried)


def run_http_response(
    policy: CompiledPolicy,
    conn: ConnFacts,
    request: RequestFacts,
    response: ResponseFacts,
    *,
    endpoint: EndpointFacts,
    now: float,
    state: PolicyState,
    carried: Carried | None = None,
    trace: bool = True,
) -> ResponseChanges | Respond:
    """Run `on_http_response` on a response head (the upstream's, or a policy's answer).

    `carried` is `Forward.carried` (or `Respond.carried`) of the same request's request phase.
    No response-phase action closes the connection (validation refuses close-connection and
    deny there), so the result is header changes or a replacement response.
    """
    run = _response_run(conn, request, response, endpoint, now, state, carried, trace)
    ending, account = _phase(run, policy, policy.on_http_response)
    if ending is None:
        return ResponseChanges(
            headers=_changes(run),
            logs=tuple(run.logs),
            trace=account,
            body=tuple(run.body_steps),
        )
    return _response_ending(ending, run, account, carried)


def run_http_response_edits(
    policy: CompiledPolicy,
    conn: ConnFacts,
    request: RequestFacts,
    response: ResponseFacts,
    *,
    endpoint: EndpointFacts,
    now: float,
    state: PolicyState,
    carried: Carried | None = None,
    lowered: tuple[str, ...] | None = None,
) -> PhaseRun | Respond:
    """The edge's `run_http_response(trace=False)`, with its commonest outcome left unbuilt:
    when the phase keeps the response, the finished `PhaseRun` itself, whose `removed` and
    `added` are `ResponseChanges.headers`, `logs` its log records and `body_steps` its
    `ResponseChanges.body`. A replacement response: the `Respond`. `lowered`: the response's
    header names folded to lower case, as `run_http_request_edits` takes the request's."""
    run = _response_run(conn, request, response, endpoint, now, state, carried, False)
    if lowered is not None:
        run.known_names("res", response.headers, lowered)
    ending = run_planned(run, _planned(policy, "on_http_response", policy.on_http_response))
    if ending is None:
        return run
    return _response_ending(ending, run, _UNTRACED["on_http_response"], carried)


def _response_run(
    conn: ConnFacts,
    request: RequestFacts,
    response: ResponseFacts,
    endpoint: EndpointFacts,
    now: float,
    state: PolicyState,
    carried: Carried | None,
    trace: bool,
) -> PhaseRun:
    run = PhaseRun(
        "on_http_response",
        conn,
        endpoint,
        now,
        state,
        request=request,
        response=response,
        tracing=trace,
    )
    if carried is not None and carried.results:
        results = carried.results  # a proxy's copy is a new dict of its dict's: the run's own
        run.results = results.copy() if isinstance(results, MappingProxyType) else dict(results)
    return run


def _response_ending(
    ending: Ending, run: PhaseRun, account: Trace, carried: Carried | None
) -> Respond:
    if isinstance(ending, Hangup | Handoff):  # unreachable for a validated policy; fail safe
        ending = _Failed(ERR_NGROK_2300)
    return _respond(ending, run, account, carried or Carried())
