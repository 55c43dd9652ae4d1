"""edge.policy.cel_fast: the fast path answers only what cel-python answers.

Differential: every expression is evaluated by cel-python's runner alone and by the fast closure
over the same activation (real request, connection and response views). Wherever the closure
returns (rather than leaving the case to cel-python), its value and type must equal cel-python's,
and cel-python must not have failed. The expressions that make up the benchmark policies must
actually take the fast path, so a change that silently sends everything to cel-python fails too.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping
from typing import Any

import pytest
from celpy import celtypes

from edge.policy.activation import (
    ConnFacts,
    EndpointFacts,
    RequestFacts,
    ResponseFacts,
    conn_view,
    request_view,
    response_view,
)
from edge.policy.cel import Compiled, compile_expression, to_cel
from edge.policy.cel_fast import FastPathError
from edge.policy.cel_run import run
from edge.policy.errors import PolicyRuntimeError
from edge.policy.phase import PhaseRun
from edge.policy.ratelimit import PolicyState


def _facts(
    *, method: str = "GET", path: str = "/small", ip: str = "127.0.0.1", status: int = 200
) -> tuple[RequestFacts, ConnFacts, ResponseFacts]:
    request = RequestFacts(
        method=method,
        scheme="https",
        host="a.example.com",
        path=path,
        query="page=2&tag=a&tag=b",
        headers=(
            ("Host", "a.example.com"),
            ("User-Agent", "wrk"),
            ("X-Bench-Client", "wrk"),
            ("X-Number", "7"),
            ("Cookie", "session=abc"),
        ),
    )
    conn = ConnFacts(
        client_ip=ip, client_port=5555, server_ip="127.0.0.1", server_port=443, sni="a.example.com"
    )
    response = ResponseFacts(status=status, headers=(("Server", "nginx"), ("Content-Length", "5")))
    return request, conn, response


_VARS = {"network": "loopback", "count": 3, "flag": True, "items": ["a", "b"]}


def _activation(**given: Any) -> dict[str, Any]:
    request, conn, response = _facts(**given)
    return {
        "req": request_view(request),
        "conn": conn_view(conn),
        "res": response_view(response),
        "vars": to_cel(_VARS),
    }


def _phase_run(**given: Any) -> PhaseRun:
    """A running response phase (req, res, conn, vars) on the same facts as `_activation`."""
    request, conn, response = _facts(**given)
    endpoint = EndpointFacts(
        url="https://a.example.com", host="a.example.com", port=443, protocol="https"
    )
    run = PhaseRun(
        "on_http_response", conn, endpoint, 1.0, PolicyState(), request=request, response=response
    )
    for name, value in _VARS.items():
        run.set_var(name, value)
    return run


FACTS = (
    {},
    {"method": "POST", "path": "/api/users", "ip": "203.0.113.9", "status": 503},
    {"method": "DELETE", "path": "/", "ip": "::1", "status": 404},
)


ACTIVATIONS = tuple(_activation(**given) for given in FACTS)

# Each construct of the subset, edge cases of CEL's typing, and shapes left to cel-python.
EXPRESSIONS = (
    "req.method == 'GET'",
    "req.method != 'GET'",
    'req.method == "POST"',
    "req.url.path.startsWith('/api')",
    "req.url.path.endsWith('users')",
    "req.url.path.contains('sm')",
    "req.url.path.size() > 3",
    "size(req.url.path) <= 1",
    "size(req.headers) >= 4",
    "res.status_code >= 500",
    "res.status_code < 300 && res.status_code >= 200",
    "res.status_code == 200 || res.status_code == 404",
    "!(res.status_code == 200)",
    "!req.url.path.startsWith('/api') && hasReqHeader('x-bench-client')",
    "hasReqHeader('x-api-key') && !req.url.path.startsWith('/api')",
    "getReqHeader('x-bench-client')[0] == 'wrk'",
    "getReqHeader('x-missing')[0] == 'wrk'",
    "hasResHeader('server')",
    "getResHeader('server')[0] == 'nginx'",
    "hasQueryParam('tag') && getQueryParam('tag')[1] == 'b'",
    "inCidrRange(conn.client_ip, '127.0.0.0/8')",
    "inCidrRange(conn.client_ip, '203.0.113.0/24') || inCidrRange(conn.client_ip, '::1/128')",
    "inCidrRanges(conn.client_ip, ['10.0.0.0/8', '203.0.113.0/24'])",
    "conn.client_ip in ['127.0.0.1', '203.0.113.9']",
    "res.status_code in [200, 204]",
    "'x-number' in req.headers",
    "'nope' in req.headers",
    "vars.network == 'loopback'",
    "vars.count > 2",
    "vars.flag",
    "vars.flag == true",
    "!vars.flag || vars.count == 3",
    "vars.items[1] == 'b'",
    "vars.items[5] == 'b'",
    "vars['network'] == 'loopback'",
    "vars.missing == 'x'",
    "vars.count == 'three'",
    "vars.count == true",
    "vars.flag == 1",
    "vars.network && true",
    "false && vars.missing",
    "vars.missing && false",
    "true || vars.missing",
    "vars.missing || true",
    "vars.flag ? req.method == 'GET' : false",
    "res.status_code > 2.5",
    "res.status_code == 200u",
    "req.method + 'x' == 'GETx'",
    "req.url.path.matches('^/api')",
    "has(req.headers.cookie)",
    "req.url.path.startsWith(1)",
    "size(vars.count) > 0",
    "req.headers.exists(h, h == 'host')",
    "'a\\n' == req.method",
    "vars.count == -3",
    "req.method",
    "res.status_code",
    "getReqHeader('x-bench-client')",
    "[1, 'a'] == [1, 'a']",
    # the shapes the closures over a running phase read from the facts themselves
    "conn.client_port >= 5000 && conn.client_port == 5555",
    "conn.server_port != 443",
    "req.url.path < 'z'",
    "req.url.path >= '/b'",
    "req.method == 1",
    "res.status_code == '200'",
    "res.status_code > 200",
    "req.url.query.contains('tag')",
    "req.url.path.startsWith(req.method)",
    "req.url.uri.endsWith('b')",
    "req.host == 'a.example.com'",
    "getReqHeader('X-BENCH-CLIENT')[0] == 'wrk'",
    "hasReqHeader('X-Number')",
    "hasReqHeader(req.method)",
    "getReqHeader(vars.network)",
    "size(getReqHeader('cookie')) == 1",
    "inCidrRange(conn.client_ip, '::1/128')",
    "inCidrRange(conn.client_ip, 'bogus')",
    "inCidrRange(req.method, '10.0.0.0/8')",
    "inCidrRange(conn.client_ip, vars.network)",
    # `getReqHeader('<literal>')[<n>]` read without the list (`cel_facts.header_value_at`)
    "getReqHeader('x-bench-client')[0]",
    "getReqHeader('x-bench-client')[1]",
    "(getReqHeader('X-Number'))[0]",
    "getResHeader('server')[0]",
    "[getReqHeader('x-bench-client')][0]",
    "[getReqHeader('x-bench-client')][0][0] == 'wrk'",
    # a one-element list is not its element: CEL has no `'GET' == ['GET']`
    "req.method == ['GET']",
    "conn.client_port == [5555]",
    "getReqHeader('x-bench-client')[[0]]",
    "getReqHeader(['x-bench-client'])[0]",
    "hasReqHeader(['x-bench-client'])",
    "inCidrRange(conn.client_ip, ['127.0.0.0/8'])",
    "inCidrRange([conn.client_ip], '127.0.0.0/8')",
    "[req.url.path].startsWith('/')",
    "req.method in [['GET']]",
    "req.method in ['GET', 'POST']",
)

#: The expressions of benchmarks/policies/rules10.yml: these must take the fast path.
BENCH_EXPRESSIONS = (
    "req.method == 'GET'",
    "req.url.path.startsWith('/small')",
    "hasReqHeader('x-bench-client')",
    "inCidrRange(conn.client_ip, '127.0.0.0/8')",
    "vars.network == 'loopback'",
    "inCidrRange(conn.client_ip, '203.0.113.0/24')",
    "req.method == 'POST' && req.url.path.startsWith('/api')",
    "hasReqHeader('x-api-key') && !req.url.path.startsWith('/api')",
    "res.status_code == 200",
    "res.status_code >= 500",
)


def _context(compiled: Compiled, activation: Mapping[str, Any]) -> dict[str, object]:
    return {name: to_cel(activation[name]) for name in compiled.variables}


def _slow(compiled: Compiled, activation: Mapping[str, Any]) -> tuple[str, object]:
    try:
        value = run(compiled._runner, _context(compiled, activation))
    except Exception as exc:
        return "error", type(exc).__name__
    return "value", value


def _fast(compiled: Compiled, activation: Mapping[str, Any]) -> tuple[str, object]:
    assert compiled._fast is not None
    try:
        return "value", compiled._fast(_context(compiled, activation))
    except Exception as exc:
        return "fallback", type(exc).__name__


def _check(text: str) -> int:
    """Compare fast and slow on every activation; the number of fast answers."""
    compiled = compile_expression(text)
    if compiled._fast is None:
        return 0
    answered = 0
    for activation in ACTIVATIONS:
        # Fresh views each time: a lazy field computed by one path must not help the other.
        fresh = {name: value for name, value in activation.items()}
        slow = _slow(compiled, fresh)
        fast = _fast(compiled, fresh)
        if fast[0] == "fallback":
            continue
        answered += 1
        assert slow[0] == "value", f"{text}: fast path answered {fast[1]!r}, cel-python failed"
        assert fast[1] == slow[1], f"{text}: fast {fast[1]!r} != cel-python {slow[1]!r}"
        assert type(fast[1]) is type(slow[1]) or (
            isinstance(fast[1], celtypes.BoolType) and isinstance(slow[1], celtypes.BoolType)
        ), f"{text}: fast {type(fast[1])} vs cel-python {type(slow[1])}"
    return answered


@pytest.mark.parametrize("text", EXPRESSIONS)
def test_fast_path_agrees_with_cel_python(text: str) -> None:
    _check(text)


@pytest.mark.parametrize("text", EXPRESSIONS)
def test_on_a_running_phase_the_facts_give_what_the_views_give(text: str) -> None:
    # The fast path reads a phase's facts directly (`cel_fast.DIRECT`, the header getters);
    # cel-python reads the same phase through its views. Same value and type, or a fallback.
    compiled = compile_expression(text)
    if compiled._fast is None:
        return
    for given in FACTS:
        run = _phase_run(**given)
        try:
            fast: tuple[str, object] = ("value", compiled._fast(run.activation))
        except Exception as exc:
            fast = ("fallback", type(exc).__name__)
        slow = _slow(compiled, _phase_run(**given).activation)
        if fast[0] == "fallback":
            continue
        assert slow[0] == "value", f"{text}: fast path answered {fast[1]!r}, cel-python failed"
        assert fast[1] == slow[1] and type(fast[1]) is type(slow[1]), f"{text}: {fast} {slow}"


def _direct_check(text: str, run: PhaseRun, fresh: PhaseRun) -> int:
    """The direct closure on `run` against cel-python on `fresh`'s views (the same facts and
    changes): 1 if the closure answered (and agreed), 0 if it left the case to cel-python."""
    compiled = compile_expression(text)
    if compiled.direct is None:
        return 0
    try:
        fast: tuple[str, object] = ("value", compiled.direct(run))
    except Exception as exc:
        fast = ("fallback", type(exc).__name__)
    slow = _slow(compiled, fresh.activation)
    if fast[0] == "fallback":
        return 0
    assert slow[0] == "value", f"{text}: direct closure answered {fast[1]!r}, cel-python failed"
    assert fast[1] == slow[1] and type(fast[1]) is type(slow[1]), f"{text}: {fast} {slow}"
    return 1


@pytest.mark.parametrize("text", EXPRESSIONS)
def test_direct_closures_give_what_cel_python_gives(text: str) -> None:
    # `compile_direct`: the closure over the running phase itself (the edge's planned runs,
    # edge.policy.plan), raw facts where it only compares them. Same value and type as
    # cel-python on the views, or a fallback, for every set of facts.
    for given in FACTS:
        _direct_check(text, _phase_run(**given), _phase_run(**given))


def _changed(run: PhaseRun) -> PhaseRun:
    """`run` with header changes deferred (`PhaseRun.defer_header`), not yet applied."""
    run.defer_header("x-number", None)
    run.defer_header("server", None)
    run.defer_header("x-new", "1")
    run.defer_header("x-new", "2")
    return run


@pytest.mark.parametrize(
    "text",
    [
        "hasResHeader('server')",
        "hasResHeader('x-new') && getResHeader('x-new')[0] == '1'"
        " && size(getResHeader('x-new')) == 2",
        "getResHeader('X-New')[1] == '2'",
        "hasReqHeader('x-number')",
        "getReqHeader('x-bench-client')",
    ],
)
def test_direct_header_getters_see_deferred_changes_as_the_views_do(text: str) -> None:
    # The response phase's own message changes (x-new added twice, server removed); the
    # request's headers stay as they came. cel-python sees them through rebuilt views.
    assert _direct_check(text, _changed(_phase_run()), _changed(_phase_run())) == 1


def test_benchmark_expressions_take_the_direct_path() -> None:
    run = _phase_run()
    for text in BENCH_EXPRESSIONS:
        assert _direct_check(text, run, _phase_run()) == 1, f"{text} is left to cel-python"
    assert run.activation._built == {}  # and none of them built a view


@pytest.mark.parametrize(
    "text",
    [
        "req.method == 'GET' && req.url.path.startsWith('/small')",
        "hasReqHeader('x-bench-client') && getReqHeader('x-number')[0] == '7'",
        "inCidrRange(conn.client_ip, '127.0.0.0/8') && res.status_code == 200",
        "vars.network == 'loopback'",
    ],
)
def test_common_fields_are_read_without_building_the_views(text: str) -> None:
    run = _phase_run()
    assert compile_expression(text).evaluate(run.activation) is True
    built = run.activation._built  # the views built so far
    assert "req" not in built and "res" not in built and "conn" not in built


@pytest.mark.parametrize("text", BENCH_EXPRESSIONS)
def test_benchmark_expressions_take_the_fast_path(text: str) -> None:
    compiled = compile_expression(text)
    assert compiled._fast is not None, f"{text} is left to cel-python"
    for activation in ACTIVATIONS:
        kind, _ = _fast(compiled, dict(activation))
        assert kind == "value", f"{text}: the fast path fell back"
    assert _check(text) == len(ACTIVATIONS)


@pytest.mark.parametrize(
    "text",
    [
        "req.method + 'x' == 'GETx'",  # arithmetic
        "req.url.path.matches('^/api')",  # RE2 semantics stay with cel-python
        "has(req.headers.cookie)",
        "req.headers.exists(h, h == 'host')",
        "'a\\n' == req.method",  # an escape in a string literal
        "res.status_code == 200u",
        "[1, 'a'] == [1, 'a']",
    ],
)
def test_shapes_outside_the_subset_are_left_to_cel_python(text: str) -> None:
    assert compile_expression(text)._fast is None


def test_type_mismatches_fall_back_rather_than_answer() -> None:
    compiled = compile_expression("vars.count == 'three'")
    assert compiled._fast is not None
    with pytest.raises(FastPathError):
        compiled._fast(_context(compiled, ACTIVATIONS[0]))
    # ...and the expression as a whole still fails as cel-python makes it fail.
    with pytest.raises(PolicyRuntimeError):
        compiled.evaluate(ACTIVATIONS[0])


def test_random_combinations_agree_with_cel_python() -> None:
    atoms = [
        "req.method == 'GET'",
        "res.status_code >= 500",
        "vars.flag",
        "vars.network",  # a string where a boolean is wanted: CEL fails, the fast path defers
        "vars.missing == 1",
        "hasReqHeader('x-number')",
        "inCidrRange(conn.client_ip, '127.0.0.0/8')",
        "true",
        "false",
    ]
    rng = random.Random(1234)
    answered = 0
    for _ in range(400):
        text = rng.choice(atoms)
        for _depth in range(rng.randint(1, 4)):
            operator = rng.choice(["&&", "||", "?"])
            other = rng.choice(atoms)
            if rng.random() < 0.3:
                text = f"!({text})"
            if operator == "?":
                text = f"({text}) ? ({other}) : ({rng.choice(atoms)})"
            else:
                text = f"({text}) {operator} ({other})"
        answered += _check(text)
    assert answered > 300  # most combinations are answered by the fast path


@pytest.mark.parametrize(("left", "right"), list(itertools.product(["1", "'1'", "true"], repeat=2)))
def test_literal_comparisons_agree(left: str, right: str) -> None:
    for operator in ("==", "!=", "<", ">="):
        _check(f"{left} {operator} {right}")


@pytest.mark.parametrize("text", ["res.status_code == 200", "false && res.status_code == 1"])
def test_a_variable_the_phase_lacks_fails_as_cel_python_fails(text: str) -> None:
    # cel-python loads every named variable first, so even a short-circuited `res` fails in a
    # request phase; the fast path must not answer `false` there.
    request, conn, _ = _facts()
    endpoint = EndpointFacts(
        url="https://a.example.com", host="a.example.com", port=443, protocol="https"
    )
    run = PhaseRun("on_http_request", conn, endpoint, 1.0, PolicyState(), request=request)
    compiled = compile_expression(text)
    assert compiled._fast is not None
    with pytest.raises(FastPathError):
        compiled._fast(run.activation)
    with pytest.raises(PolicyRuntimeError, match="res"):
        compiled.evaluate(run.activation)
