"""edge/policy/cel.py: compile once, declared names only, macros, laziness, runtime errors."""

from __future__ import annotations

import pytest

from edge.policy.cel import LazyMap, compile_expression, in_cidr_range
from edge.policy.errors import (
    ERR_NGROK_2200,
    ERR_NGROK_2238,
    ERR_NGROK_2254,
    Place,
    PolicyError,
    PolicyRuntimeError,
)


def request(**fields: object) -> dict[str, object]:
    """An activation with `req` and `conn` maps built from plain values."""
    req = {"method": "GET", "url": {"path": "/api/users"}, "headers": {"x-a": ["1"]}}
    conn = {"client_ip": "10.1.2.3"}
    req.update(fields)
    return {"req": req, "conn": conn}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("req.method == 'GET' && req.url.path.startsWith('/api')", True),
        ("req.method == 'POST'", False),
        ("conn.client_ip in ['10.1.2.3', '10.1.2.4']", True),
        ("size(req.headers) == 1 && size('abc') == 3 && [1, 2].size() == 2", True),
        ("'x-a' in req.headers && has(req.headers.x_b) == false", True),
        ("req.headers['x-a'].exists(v, v == '1')", True),
        ("[1, 2, 3].all(n, n > 0) && [1, 2, 3].filter(n, n > 1).size() == 2", True),
        # a macro body reads root variables and functions through the nested activation
        ("['PUT', 'GET'].exists(m, m == req.method)", True),
        ("['10.0.0.0/8', '192.168.0.0/16'].exists(c, inCidrRange(conn.client_ip, c))", True),
        ("[1, 2].all(n, [n].exists(k, k == n && req.method == 'GET'))", True),
        ("['POST'].exists(m, m == req.method)", False),
        ("1 < 2 && 2 <= 2 && 3 > 2 && 3 >= 3 && 1 != 2 && 'a' == 'a'", True),
        ("2 < 1 || 3 <= 2 || 2 > 3 || 2 >= 3 || 1 != 1 || 'a' == 'b'", False),
    ],
)
def test_standard_cel_evaluates_against_plain_values(text: str, expected: bool) -> None:
    assert compile_expression(text).evaluate(request()) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("inCidrRange('192.168.1.100', '192.168.1.0/24')", True),
        ("inCidrRange('192.168.2.1', '192.168.1.0/24')", False),
        ("inCidrRange('::ffff:10.0.0.1', '10.0.0.0/8')", True),  # v4-mapped, as Go matches
        ("inCidrRange('2001:db8::1', '2001:db8::/32')", True),
        ("inCidrRange('10.0.0.1', '2001:db8::/32')", False),
        ("inCidrRange('10.0.0.1', 'not-a-cidr')", False),  # invalid CIDR: false (ngrok docs)
        ("inCidrRange('10.0.0.1', '10.0.0.1')", False),  # no prefix length: not a CIDR
        ("inCidrRange('bogus', '10.0.0.0/8')", False),
        ("inCidrRanges('192.168.1.100', ['192.168.1.0/24', '10.0.0.0/8'])", True),
        ("inCidrRanges('172.16.0.1', ['192.168.1.0/24', 'junk', '10.0.0.0/8'])", False),
        ("inCidrRanges('10.9.9.9', ['junk', '10.0.0.0/8'])", True),  # invalid entries ignored
        ("inCidrRanges(conn.client_ip, ['10.1.0.0/16'])", True),
    ],
)
def test_cidr_macros(text: str, expected: bool) -> None:
    assert compile_expression(text).evaluate(request()) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("base64.encode(b'hello') == 'aGVsbG8='", True),
        ("base64.encode('hello') == 'aGVsbG8='", True),
        ("base64.decode('aGVsbG8=') == b'hello'", True),
        ("url.escape('i;md/r/$y') == 'i%3Bmd%2Fr%2F%24y'", True),  # ngrok's doc example
        ("url.escape('a b') == 'a+b'", True),  # Go's QueryEscape
        ("url.unescape('i%3Bmd%2Fr%2F%24y') == 'i;md/r/$y'", True),
        ("url.unescape('a+b%20c') == 'a b c'", True),
    ],
)
def test_encoding_macros(text: str, expected: bool) -> None:
    assert compile_expression(text).evaluate({}) is expected


@pytest.mark.parametrize(
    "text",
    [
        "base64.decode('aGVsbG8') == b'hello'",  # unpadded: an error, as ngrok's docs say
        "url.unescape('%zz') == ''",
        "inCidrRange(1, '10.0.0.0/8')",
        "req.missing == 'x'",  # a missing key is an error in CEL, never null
        "1 / 0 == 1",
        "req.method < 1",  # comparing a string with an int: no overload
        "req.missing != 'x'",
    ],
)
def test_runtime_errors_are_typed_and_coded(text: str) -> None:
    compiled = compile_expression(text)
    place = Place(phase="on_http_request", rule_index=3)
    with pytest.raises(PolicyRuntimeError) as caught:
        compiled.evaluate(request(), place=place)
    assert caught.value.code == ERR_NGROK_2254
    assert text in caught.value.message
    assert caught.value.message.startswith("on_http_request rule 3: ")


def test_runtime_error_code_is_the_callers() -> None:
    with pytest.raises(PolicyRuntimeError) as caught:
        compile_expression("req.missing").value(request(), code=ERR_NGROK_2238)
    assert caught.value.code == ERR_NGROK_2238


def test_a_non_boolean_result_is_a_runtime_error() -> None:
    with pytest.raises(PolicyRuntimeError, match="expected a boolean result"):
        compile_expression("req.method").evaluate(request())


def test_a_variable_absent_from_the_phase_is_a_runtime_error() -> None:
    with pytest.raises(PolicyRuntimeError, match="no variable 'res'"):
        compile_expression("res.status_code == 200").evaluate(request())


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("reqs.method == 'GET'", "undeclared reference to 'reqs'"),
        ("foo(1)", "undeclared reference to function 'foo'"),
        ("req.method.frob()", "undeclared reference to method 'frob'"),
        ("base64.zap('x')", "undeclared reference to function 'base64.zap'"),
        ("req.method ==", "syntax error at line 1 column"),
        ("[1].exists(1, true)", "exists() takes a variable name and an expression"),
        ("[1].exists(x, y > 0)", "undeclared reference to 'y'"),
        ("google.protobuf.Int32Value{value: 1}", "message literals are not supported"),
    ],
)
def test_invalid_expressions_fail_compile_with_2200_naming_them(text: str, why: str) -> None:
    place = Place(phase="on_http_request", rule_index=0, rule_name="r", field="expressions[0]")
    with pytest.raises(PolicyError) as caught:
        compile_expression(text, place=place)
    assert caught.value.code == ERR_NGROK_2200
    assert repr(text) in caught.value.message
    assert why in caught.value.message
    assert caught.value.message.startswith('on_http_request rule 0 ("r") expressions[0]: ')


def test_compiled_variables_are_only_the_roots_it_names() -> None:
    compiled = compile_expression("req.method == 'GET' && [1].exists(conn, conn > 0)")
    assert compiled.variables == frozenset({"req"})  # `conn` here is the macro's own binder


def test_evaluations_of_one_expression_do_not_share_variables() -> None:
    compiled = compile_expression("req.headers['x-a'].exists(v, v == req.method)")
    assert compiled.evaluate(request(method="1")) is True
    assert compiled.evaluate(request(method="2")) is False  # not the previous call's `req`
    with pytest.raises(PolicyRuntimeError):
        compiled.evaluate({"conn": {}})  # no `req` in this one: nothing left from the last


def test_one_compiled_expression_serves_many_activations() -> None:
    compiled = compile_expression("req.method == 'GET'")
    assert compiled.evaluate(request(method="GET")) is True
    assert compiled.evaluate(request(method="PUT")) is False
    assert compiled.evaluate(request(method="GET")) is True


def test_lazy_values_are_computed_only_when_asked_and_once() -> None:
    calls: list[str] = []

    def field(name: str, value: object) -> object:
        def compute() -> object:
            calls.append(name)
            return value

        return compute

    def boom() -> object:
        raise AssertionError("cookies must not be computed")

    req = LazyMap(
        {
            "method": field("method", "GET"),
            "url": field("url", LazyMap({"path": field("path", "/api/x")})),
            "cookies": boom,
        }
    )
    conn_calls: list[str] = []

    def conn() -> object:
        conn_calls.append("conn")
        return {"client_ip": "10.0.0.1"}

    activation = LazyMap({"req": lambda: req, "conn": conn})
    compiled = compile_expression("req.method == 'GET' && req.url.path.startsWith('/api')")
    assert compiled.evaluate(activation) is True
    assert compiled.evaluate(activation) is True
    assert calls == ["method", "url", "path"]  # each once; cookies and conn never
    assert conn_calls == []


def test_a_lazy_value_that_raises_fails_only_that_evaluation() -> None:
    def broken() -> object:
        raise OSError("peer went away")

    activation = {"req": LazyMap({"method": broken})}
    with pytest.raises(PolicyRuntimeError, match="peer went away"):
        compile_expression("req.method == 'GET'").evaluate(activation)


def test_lazy_map_behaves_as_a_map_for_membership_and_size() -> None:
    lazy = LazyMap({"a": lambda: 1, "b": lambda: 2})
    compiled = compile_expression("'a' in req && size(req) == 2 && !('c' in req)")
    assert compiled.evaluate({"req": lazy}) is True


def test_macro_functions_directly() -> None:
    assert in_cidr_range("10.0.0.1", "10.0.0.0/8")
    assert not in_cidr_range("11.0.0.1", "10.0.0.0/8")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hasReqHeader('X-A') && getReqHeader('x-a') == ['1']", True),  # names fold case
        ("hasReqHeader('x-missing')", False),
        ("getReqHeader('x-missing') == []", True),
        ("hasQueryParam('page') && getQueryParam('page')[0] == '2'", True),
        ("hasQueryParam('PAGE')", False),  # query names are case-sensitive
        ("hasResHeader('server') && getResHeader('Server')[0] == 'nginx'", True),
    ],
)
def test_header_and_query_getters(text: str, expected: bool) -> None:
    activation = {
        "req": {"headers": {"x-a": ["1"]}, "url": {"query_params": {"page": ["2"]}}},
        "res": {"headers": {"server": ["nginx"]}},
    }
    compiled = compile_expression(text)
    assert compiled.evaluate(activation) is expected


def test_getters_name_the_variable_they_read() -> None:
    assert compile_expression("hasReqHeader('a')").variables == frozenset({"req"})
    assert compile_expression("hasResHeader('a')").variables == frozenset({"res"})
    with pytest.raises(PolicyError, match=r"getReqHeader\(\) takes one argument"):
        compile_expression("getReqHeader()")


def test_deep_nesting_is_refused_at_compile_not_a_crash() -> None:
    assert compile_expression("(" * 30 + "true" + ")" * 30).evaluate({}) is True
    with pytest.raises(PolicyError) as caught:
        compile_expression("(" * 500 + "true" + ")" * 500)
    assert caught.value.code == ERR_NGROK_2200
    assert "nested too deeply" in caught.value.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # cel-python's has() gives a plain bool, which `!`, `&&`, `||` and `?:` refused
        ("!has(req.headers.x_b)", True),
        ("!has(req.headers['x-a'])", False),
        ("!(has(req.url.port))", True),
        ("req.method == 'GET' && !has(req.headers.x_b)", True),
        ("!has(req.headers.x_b) || false", True),
        ("has(req.headers.x_b) ? 'yes' : 'no'", "no"),
        ("[has(req.url.path)] == [true]", True),
        ("!has(req.nothing.deeper)", True),  # a missing parent is "not there" too
        ("has(req.url.path) && !has(req.url.port)", True),
    ],
)
def test_negated_and_combined_has_works(text: str, expected: object) -> None:
    assert compile_expression(text).value(request()) == expected
