"""edge/policy/plan.py: the edge's untraced run gives what the engine's traced loop gives.

Differential: each policy runs on each request twice through the engine's entry points, traced
(the rule loop `burrow-edge policy test` uses) and untraced (the planned run the edge uses),
each on a fresh `PolicyState`. The outcomes must be equal in every field but the trace: the
ending, the header changes, the URL rewrite, the result variables carried, the log records
(runtime failures' codes, messages and places included). Then the planned run must really be
the fast one for the benchmark policy: its expressions and actions planned, no views built.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from edge.policy.activation import ConnFacts, RequestFacts, ResponseFacts
from edge.policy.engine import (
    Forward,
    HeaderChanges,
    RequestChanges,
    ResponseChanges,
    Trace,
    carried_by,
    run_http_request,
    run_http_request_edits,
    run_http_response,
    run_http_response_edits,
)
from edge.policy.phase import PhaseRun
from edge.policy.plan import plan_phase, run_planned
from edge.policy.ratelimit import PolicyState
from tests.edge.policy.engine_helpers import CONN, ENDPOINT, NOW, policy, request

_BENCH = Path(__file__).resolve().parents[3] / "benchmarks" / "policies"

# Policies exercising every planned path and its fallbacks (see each comment).
POLICIES = {
    "bench10": (_BENCH / "rules10.yml").read_text(),
    "bench3": (_BENCH / "rules3.yml").read_text(),
    # header getters and views after deferred changes; a view built, then changes
    "headers": """
on_http_request:
  - actions:
      - type: add-headers
        config: {headers: {x-a: "1", x-b: "${req.method}"}}
  - expressions: ["hasReqHeader('x-a') && getReqHeader('x-b')[0] == req.method"]
    actions:
      - type: remove-headers
        config: {headers: [x-a, x-keep, x-never]}
  - expressions: ["!hasReqHeader('x-a') && !('x-keep' in req.headers)"]
    actions:
      - type: add-headers
        config: {headers: {x-a: "2", x-c: "${size(req.headers)}"}}
  - expressions: ["req.headers['x-a'] == ['2']"]
    actions:
      - type: add-headers
        config: {headers: {x-d: "${actions.ngrok.remove_headers.headers_removed}"}}
on_http_response:
  - actions:
      - type: remove-headers
        config: {headers: [server]}
      - type: add-headers
        config: {headers: {server: burrow, x-status: "${res.status_code}"}}
  - expressions: ["getResHeader('server') == ['burrow'] && hasReqHeader('x-keep')"]
    actions:
      - type: add-headers
        config: {headers: {x-saw: "${getResHeader('server')[0]}"}}
""",
    # a Host added in the request replaces the host; a slow action after deferred changes
    "host and rewrite": """
on_http_request:
  - actions:
      - type: add-headers
        config: {headers: {x-before: "yes"}}
      - type: url-rewrite
        config: {from: "/old", to: "/new"}
      - type: add-headers
        config: {headers: {host: internal.example, x-after: "${req.url.path}"}}
  - expressions: ["req.host == 'internal.example'", "getReqHeader('x-before')[0] == 'yes'"]
    actions:
      - type: custom-response
        config: {status_code: 299, body: "${req.url.path} ${getReqHeader('host')}"}
""",
    # set-vars of every shape; vars read back by expressions and templates
    "vars": """
on_http_request:
  - actions:
      - type: set-vars
        config:
          vars:
            - plain: text
            - number: 7
            - flag: true
            - method: "${req.method}"
            - mixed: "m=${req.method}, p=${conn.client_port}"
            - listed: ["${req.method}", 1]
            - mapped: {k: "${req.url.path}"}
            - headers: "${req.headers}"
  - expressions: ["vars.number == 7 && vars.flag && vars.method == 'GET'"]
    actions:
      - type: add-headers
        config:
          headers:
            x-vars: "${vars.plain}-${vars.mixed}-${vars.listed}-${vars.mapped}"
            x-flag: "${vars.flag}"
""",
    # runtime failures: an expression (2254), a template (2238), CR/LF in a header value
    "failing expression": """
on_http_request:
  - actions:
      - type: add-headers
        config: {headers: {x-first: one}}
  - expressions: ["req.method == 'GET'", "vars.missing == 'x'"]
    actions:
      - type: deny
""",
    "failing template": """
on_http_request:
  - actions:
      - type: add-headers
        config: {headers: {x-first: one, x-second: "${getReqHeader('x-absent')[0]}"}}
""",
    "failing set-vars": """
on_http_request:
  - actions:
      - type: set-vars
        config: {vars: [{ok: "yes"}, {bad: "${vars.nothing}"}]}
""",
    "header injection": """
on_http_request:
  - actions:
      - type: add-headers
        config: {headers: {x-echo: "${getReqHeader('x-evil')[0]}"}}
""",
    "non-boolean": """
on_http_request:
  - expressions: ["req.method"]
    actions:
      - type: deny
""",
    # expressions the direct closures leave to cel-python, and ones that must not run early
    "fallbacks": """
on_http_request:
  - expressions: ["req.url.path.matches('^/a')", "'host' in req.headers"]
    actions:
      - type: add-headers
        config: {headers: {x-regex: "${req.url.path.matches('^/a')}"}}
  - expressions: ["inCidrRange(conn.client_ip, '203.0.113.0/24')", "req.method != 'POST'"]
    actions:
      - type: log
        config: {metadata: {ip: "${conn.client_ip}", ua: "${req.user_agent}"}}
  - expressions: ["conn.client_port >= 50000 && req.url.query.contains('a=1')"]
    actions:
      - type: deny
        config: {status_code: 418}
on_http_response:
  - expressions: ["res.status_code >= 500 || hasResHeader('x-fail')"]
    actions:
      - type: custom-response
        config: {status_code: 503, body: "${res.status_code}"}
""",
    # endpoint.* (read through the views: the activation made on demand), and header values
    # interpolated into add-headers in both phases; the response phase reads res.* and req.*
    "endpoint and interpolation": """
on_http_request:
  - expressions: ["endpoint.host.endsWith('.example.com')", "endpoint.port == 443"]
    actions:
      - type: add-headers
        config:
          headers:
            x-endpoint: "${endpoint.url} (${endpoint.protocol})"
            x-ua: "${getReqHeader('user-agent')[0]}"
            x-all-ua: "${getReqHeader('user-agent')}"
            x-fixed: fixed
  - expressions: ["getReqHeader('x-ua')[0] == getReqHeader('user-agent')[0]"]
    actions:
      - type: set-vars
        config: {vars: [{ua: "${getReqHeader('x-ua')[0]}"}]}
on_http_response:
  - expressions: ["res.status_code < 500 && hasResHeader('content-type')"]
    actions:
      - type: add-headers
        config:
          headers:
            x-type: "${getResHeader('content-type')[0]}"
            x-status: "${res.status_code}"
            x-path: "${req.url.path}"
            x-added: "${actions.ngrok.add_headers.headers_added['x-ua']}"
      - type: remove-headers
        config: {headers: [content-type, x-absent]}
      - type: add-headers
        config: {headers: {x-after: "${hasResHeader('content-type')}-${size(res.headers)}"}}
  - expressions: ["res.status_code >= 500"]
    actions:
      - type: add-headers
        config: {headers: {x-error: "${res.status_code} on ${endpoint.host}"}}
""",
}

# add-headers with fixed values only (recorded in one go), before and after the message's
# view is built (then one by one, as the view must show them), in both phases
POLICIES["fixed headers"] = """
on_http_request:
  - actions:
      - type: add-headers
        config: {headers: {x-zero: "0", x-zero-b: "b"}}
  - expressions:
      - "size(actions.ngrok.add_headers.headers_added) == 2 && hasReqHeader('x-zero-b')"
      - "size(req.headers) > 0 && hasReqHeader('x-zero')"
    actions:
      - type: add-headers
        config: {headers: {x-one: "1", x-two: "2", x-one-more: "1"}}
  - expressions: ["req.headers['x-one'] == ['1'] && hasReqHeader('x-two')"]
    actions:
      - type: add-headers
        config: {headers: {x-three: "${size(req.headers)}"}}
on_http_response:
  - actions:
      - type: add-headers
        config: {headers: {x-r: "1"}}
  - expressions: ["res.headers['x-r'] == ['1']"]
    actions:
      - type: add-headers
        config: {headers: {x-r2: "2", x-r3: "3"}}
      - type: add-headers
        config: {headers: {x-r4: "${size(res.headers)}-${actions.ngrok.add_headers}"}}
"""

REQUESTS = (
    request(),
    request(
        "/abc/old",
        query="a=1&b=2",
        method="POST",
        headers=(("X-Keep", "1"), ("X-Evil", "a\r\nx: y"), ("X-API-Key", "k")),
    ),
    request("/small", headers=(("X-Bench-Client", "wrk"),)),
)
LOOPBACK = dataclasses.replace(CONN, client_ip="127.0.0.1")
RESPONSES = (
    ResponseFacts(status=200, headers=(("Server", "nginx"), ("Content-Type", "text/plain"))),
    ResponseFacts(status=502, headers=(("X-Fail", "1"),)),
)


def _untraced(outcome: Any) -> Any:
    """The outcome with its trace emptied (the traced run's is what `policy test` prints)."""
    return dataclasses.replace(outcome, trace=Trace(outcome.trace.phase, ()))


def _from_edits(edits: Any, response: bool) -> Any:
    """The outcome an `*_edits` entry point stands for: a finished run as the `Forward` or
    `ResponseChanges` it leaves unbuilt (any other outcome as it is)."""
    if not isinstance(edits, PhaseRun):
        return _untraced(edits)
    changes = HeaderChanges(tuple(edits.removed), tuple(edits.added))
    trace = Trace(edits.phase, ())
    if response:
        return ResponseChanges(
            headers=changes, logs=tuple(edits.logs), trace=trace, body=tuple(edits.body_steps)
        )
    return Forward(
        changes=RequestChanges(changes, edits.target),
        carried=carried_by(edits),
        logs=tuple(edits.logs),
        trace=trace,
    )


def _both_ways(text: str, conn: ConnFacts, req: RequestFacts, res: ResponseFacts) -> None:
    compiled = policy(text)
    results = []
    for trace in (True, False):
        state = PolicyState()
        first = run_http_request(
            compiled, conn, req, endpoint=ENDPOINT, now=NOW, state=state, trace=trace
        )
        carried = getattr(first, "carried", None)
        second = run_http_response(
            compiled,
            conn,
            req,
            res,
            endpoint=ENDPOINT,
            now=NOW,
            state=state,
            carried=carried,
            trace=trace,
        )
        results.append((_untraced(first), _untraced(second)))
    traced, planned = results
    assert planned[0] == traced[0]
    assert planned[1] == traced[1]
    # the edge's entry points (`edge.http.policy` runs these), on a fresh state too
    state = PolicyState()
    first = run_http_request_edits(compiled, conn, req, endpoint=ENDPOINT, now=NOW, state=state)
    carried = carried_by(first) if isinstance(first, PhaseRun) else getattr(first, "carried", None)
    second = run_http_response_edits(
        compiled, conn, req, res, endpoint=ENDPOINT, now=NOW, state=state, carried=carried
    )
    assert _from_edits(first, response=False) == traced[0]
    assert _from_edits(second, response=True) == traced[1]


@pytest.mark.parametrize("name", sorted(POLICIES))
@pytest.mark.parametrize("req", REQUESTS, ids=["get", "post", "bench"])
@pytest.mark.parametrize("res", RESPONSES, ids=["200", "502"])
@pytest.mark.parametrize("conn", [CONN, LOOPBACK], ids=["remote", "loopback"])
def test_the_planned_run_gives_the_traced_runs_outcome(
    name: str, conn: ConnFacts, req: RequestFacts, res: ResponseFacts
) -> None:
    _both_ways(POLICIES[name], conn, req, res)


def test_the_differential_sees_failures_and_changes() -> None:
    # The cases above must really differ between requests, or equality proves little.
    compiled = policy(POLICIES["header injection"])
    clean = run_http_request(
        compiled, CONN, REQUESTS[0], endpoint=ENDPOINT, now=NOW, state=PolicyState(), trace=False
    )
    evil = run_http_request(
        compiled, CONN, REQUESTS[1], endpoint=ENDPOINT, now=NOW, state=PolicyState(), trace=False
    )
    assert getattr(clean, "error_code", None) == "ERR_NGROK_2238"  # no x-evil header at all
    assert getattr(evil, "error_code", None) == "ERR_NGROK_2238"
    assert evil.logs[0].place.endswith("action 0 (add-headers) config.headers.x-echo")


def test_an_expression_naming_a_variable_the_phase_lacks_is_left_to_cel_python() -> None:
    # cel-python fails on a missing root variable even behind a short circuit: no direct
    # closure may answer `false` for it, so the planned run fails the request as the traced does.
    text = """
on_http_request:
  - expressions: ["false && res.status_code == 1"]
    actions:
      - type: add-headers
        config: {headers: {x-never: "1"}}
"""
    compiled = policy(text)
    (planned,) = plan_phase(compiled.on_http_request, "on_http_request", {})
    assert planned.tests[0][0] is None
    outcome = run_http_request(
        compiled, CONN, REQUESTS[0], endpoint=ENDPOINT, now=NOW, state=PolicyState(), trace=False
    )
    assert getattr(outcome, "error_code", None) == "ERR_NGROK_2254"
    assert "on_http_request" in compiled.plans  # the edge's run is the planned one


def test_the_benchmark_policy_runs_without_views_or_fallbacks() -> None:
    compiled = policy(POLICIES["bench10"])
    for phase in ("on_http_request", "on_http_response"):
        planned = plan_phase(getattr(compiled, phase), phase, {})
        assert all(direct is not None for rule in planned for direct, _ in rule.tests)
        assert all(step.planned for rule in planned for step in rule.actions)
    req = REQUESTS[2]
    run = PhaseRun("on_http_request", LOOPBACK, ENDPOINT, NOW, PolicyState(), request=req)
    planned = plan_phase(compiled.on_http_request, "on_http_request", {})
    assert run_planned(run, planned) is None
    assert run.built_activation is None  # no activation, so no view of req, conn, vars...
    assert run.added == [
        ("x-bench-route", "small"),
        ("x-bench-client-name", "wrk"),
        ("x-bench-network", "loopback"),
    ]
    assert run.request is req  # the request's headers were never copied


def test_the_edges_entry_points_leave_the_changes_in_the_finished_run() -> None:
    # Not vacuous: the policy above really changes both messages on the edge's path, reading
    # endpoint.*, req.*, res.* and the request phase's result variables on the way.
    compiled = policy(POLICIES["endpoint and interpolation"])
    state = PolicyState()
    first = run_http_request_edits(
        compiled, LOOPBACK, REQUESTS[0], endpoint=ENDPOINT, now=NOW, state=state
    )
    assert isinstance(first, PhaseRun)
    assert first.added == [
        ("x-endpoint", "https://api.example.com (https)"),
        ("x-ua", "curl/8.5"),
        ("x-all-ua", '["curl/8.5"]'),
        ("x-fixed", "fixed"),
    ]
    assert first.vars == {"ua": "curl/8.5"}
    assert first.target is None and first.removed == [] and first.logs == []
    second = run_http_response_edits(
        compiled,
        LOOPBACK,
        REQUESTS[0],
        RESPONSES[0],
        endpoint=ENDPOINT,
        now=NOW,
        state=state,
        carried=carried_by(first),
    )
    assert isinstance(second, PhaseRun)
    assert second.removed == ["content-type", "x-absent"]
    assert second.added == [
        ("x-type", "text/plain"),
        ("x-status", "200"),
        ("x-path", "/"),
        ("x-added", "curl/8.5"),
        ("x-after", "false-5"),
    ]
    # an ending is still the outcome the untraced engine gives
    failed = run_http_request_edits(
        policy(POLICIES["non-boolean"]),
        CONN,
        REQUESTS[0],
        endpoint=ENDPOINT,
        now=NOW,
        state=PolicyState(),
    )
    assert getattr(failed, "error_code", None) == "ERR_NGROK_2254"
