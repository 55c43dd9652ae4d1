"""edge/policy/phase.py: a phase's working state (headers, target, vars, results) as the CEL
activation shows it, rendering, and the pure value helpers `plain` and `text_of`.

Each `PhaseRun` here is built as `edge.policy.engine` builds one: phase name, facts, `now` and a
`PolicyState`, plus the request (and the response, on `on_http_response`).
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType

import pytest
from celpy import celtypes

from edge.policy.activation import ConnFacts, EndpointFacts, RequestFacts, ResponseFacts
from edge.policy.cel import compile_expression
from edge.policy.errors import ERR_NGROK_2238, Place, PolicyRuntimeError
from edge.policy.interpolation import compile_template
from edge.policy.phase import PhaseRun, plain, text_of
from edge.policy.ratelimit import PolicyState

NOW = 1_714_564_800.0  # 2024-05-01T12:00:00Z
ENDPOINT = EndpointFacts(
    url="https://api.example.com", host="api.example.com", port=443, protocol="https", id="ep_1"
)
CONN = ConnFacts(client_ip="203.0.113.9", client_port=50123, server_ip="192.0.2.1", server_port=443)
PLACE = Place(phase="on_http_request", rule_index=0, action_index=0, action_type="log")
REQUEST = RequestFacts(
    method="GET",
    scheme="https",
    host="api.example.com",
    path="/items",
    query="page=2",
    headers=(("Host", "api.example.com"), ("X-Trace-Id", "abc"), ("Accept", "*/*")),
)


def request_run(request: RequestFacts = REQUEST) -> PhaseRun:
    return PhaseRun("on_http_request", CONN, ENDPOINT, NOW, PolicyState(), request=request)


def response_run(response: ResponseFacts) -> PhaseRun:
    return PhaseRun(
        "on_http_response",
        CONN,
        ENDPOINT,
        NOW,
        PolicyState(),
        request=REQUEST,
        response=response,
    )


def evaluate(run: PhaseRun, expression: str) -> object:
    """`expression`'s value, as plain Python, against the run's activation."""
    return plain(compile_expression(expression).value(run.activation))


# --- headers ---------------------------------------------------------------------------------
def test_add_header_appends_in_order_and_the_activation_sees_it() -> None:
    run = request_run()
    assert evaluate(run, "'x-a' in req.headers") is False  # `req` built before the change
    run.add_header("x-a", "1")
    run.add_header("x-b", "2")
    run.add_header("x-a", "3")
    assert run.added == [("x-a", "1"), ("x-b", "2"), ("x-a", "3")]
    assert run.request is not None
    assert run.request.headers == (*REQUEST.headers, ("x-a", "1"), ("x-b", "2"), ("x-a", "3"))
    assert run.headers() == run.request.headers
    assert evaluate(run, "req.headers['x-a']") == ["1", "3"]
    assert run.removed == []


def test_remove_header_matches_any_case_and_reports_whether_there_was_one() -> None:
    run = request_run()
    assert evaluate(run, "req.headers['x-trace-id']") == ["abc"]
    assert run.remove_header("x-trace-id") is True  # sent as X-Trace-Id
    assert run.headers() == (("Host", "api.example.com"), ("Accept", "*/*"))
    assert evaluate(run, "'x-trace-id' in req.headers") is False
    assert run.remove_header("x-trace-id") is False  # nothing left to remove
    assert run.remove_header("x-absent") is False
    assert run.removed == ["x-trace-id", "x-absent"]  # each name once, in order


def test_remove_after_add_drops_the_addition_and_a_later_add_is_kept() -> None:
    run = request_run()
    run.add_header("x-tier", "gold")
    run.add_header("x-keep", "yes")
    assert run.remove_header("x-tier") is True
    assert run.added == [("x-keep", "yes")]
    run.add_header("x-tier", "silver")
    assert run.added == [("x-keep", "yes"), ("x-tier", "silver")]
    assert run.removed == ["x-tier"]
    assert evaluate(run, "req.headers['x-tier']") == ["silver"]


def test_add_host_in_the_request_replaces_the_host() -> None:
    run = request_run()
    assert evaluate(run, "req.host") == "api.example.com"
    run.add_header("host", "internal.example")
    assert run.request is not None
    assert run.request.host == "internal.example"
    hosts = [value for name, value in run.headers() if name.lower() == "host"]
    assert hosts == ["internal.example"]
    assert run.removed == ["host"]
    assert run.added == [("host", "internal.example")]
    assert evaluate(run, "req.host") == "internal.example"


def test_response_phase_changes_the_response_headers_only() -> None:
    run = response_run(ResponseFacts(status=200, headers=(("Server", "nginx"), ("Host", "h"))))
    assert evaluate(run, "res.headers['server']") == ["nginx"]
    assert run.remove_header("server") is True
    run.add_header("host", "not-a-request-host")  # in a response, just another header
    assert run.response is not None
    assert run.response.headers == (("Host", "h"), ("host", "not-a-request-host"))
    assert run.request == REQUEST  # untouched
    assert evaluate(run, "'server' in res.headers") is False
    assert evaluate(run, "res.headers['host']") == ["h", "not-a-request-host"]
    assert evaluate(run, "req.host") == "api.example.com"


# --- url rewrite -----------------------------------------------------------------------------
def test_rewrite_target_sets_path_query_and_target() -> None:
    run = request_run()
    assert run.target is None
    assert evaluate(run, "req.url.path") == "/items"
    run.rewrite_target("/v2/items", "page=3&x=1")
    assert run.target == "/v2/items?page=3&x=1"
    assert run.request is not None
    assert (run.request.path, run.request.query) == ("/v2/items", "page=3&x=1")
    assert evaluate(run, "req.url.path") == "/v2/items"
    assert evaluate(run, "req.url.query_params['x']") == ["1"]


def test_rewrite_target_without_a_query_has_no_question_mark() -> None:
    run = request_run()
    run.rewrite_target("/only-path", "")
    assert run.target == "/only-path"


# --- vars and results ------------------------------------------------------------------------
def test_set_var_is_visible_through_the_activation_and_the_last_set_wins() -> None:
    run = request_run()
    assert evaluate(run, "has(vars.tier)") is False  # `vars` built before the change
    run.set_var("tier", "gold")
    run.set_var("limits", {"rps": 5, "paths": ["/a", "/b"]})
    assert evaluate(run, "vars.tier") == "gold"
    assert evaluate(run, "vars.limits.rps + 1") == 6
    assert evaluate(run, "vars.limits.paths[1]") == "/b"
    run.set_var("tier", "silver")
    assert evaluate(run, "vars.tier") == "silver"
    assert isinstance(run.vars["tier"], celtypes.StringType)  # kept as a CEL value


def test_set_result_is_visible_under_actions_ngrok_and_is_copied() -> None:
    run = request_run()
    assert evaluate(run, "has(actions.ngrok.rate_limit)") is False
    values: dict[str, object] = {"limited": False, "bucket_key": "k1"}
    run.set_result("rate_limit", values)
    values["limited"] = True  # the caller's mapping is not kept
    assert evaluate(run, "actions.ngrok.rate_limit.limited") is False
    assert evaluate(run, "actions.ngrok.rate_limit.bucket_key") == "k1"
    run.set_result("rate_limit", {"limited": True, "bucket_key": "k2"})
    assert evaluate(run, "actions.ngrok.rate_limit") == {"limited": True, "bucket_key": "k2"}
    assert run.results == {"rate_limit": {"limited": True, "bucket_key": "k2"}}


def test_activation_names_follow_the_phase() -> None:
    tcp = PhaseRun("on_tcp_connect", CONN, ENDPOINT, NOW, PolicyState())
    assert sorted(tcp.activation) == ["actions", "conn", "endpoint", "time", "vars"]
    assert len(tcp.activation) == 5
    with pytest.raises(KeyError):
        tcp.activation["req"]
    assert "req" in request_run().activation and "res" not in request_run().activation
    both = response_run(ResponseFacts(status=204))
    assert sorted(both.activation) == ["actions", "conn", "endpoint", "req", "res", "time", "vars"]
    assert evaluate(both, "res.status_code") == 204
    assert evaluate(tcp, "time.now") == "2024-05-01T12:00:00Z"
    assert evaluate(tcp, "endpoint.id + ' ' + conn.client_ip") == "ep_1 203.0.113.9"


# --- rendering -------------------------------------------------------------------------------
def test_render_writes_values_from_the_activation() -> None:
    run = request_run()
    run.set_var("n", 7)
    template = compile_template("${req.method} ${req.url.path} n=${vars.n} ip=${conn.client_ip}")
    assert run.render(template, PLACE) == "GET /items n=7 ip=203.0.113.9"
    assert run.render(template, PLACE, header_value=True) == "GET /items n=7 ip=203.0.113.9"


@pytest.mark.parametrize("hostile", ["a\r\nset-cookie: admin=1", "a\rb", "a\nb", "a\x00b"])
def test_render_as_a_header_value_refuses_cr_lf_and_nul(hostile: str) -> None:
    run = request_run()
    run.add_header("x-in", hostile)
    template = compile_template("v=${req.headers['x-in'][0]}")
    assert run.render(template, PLACE) == "v=" + hostile  # fine where it is not a header
    with pytest.raises(PolicyRuntimeError) as caught:
        run.render(template, PLACE, header_value=True)
    assert caught.value.code == ERR_NGROK_2238
    assert caught.value.place == PLACE


def test_render_of_a_failing_expression_is_2238() -> None:
    with pytest.raises(PolicyRuntimeError) as caught:
        request_run().render(compile_template("${req.headers['x-missing'][0]}"), PLACE)
    assert caught.value.code == ERR_NGROK_2238


def test_typed_keeps_a_lone_expressions_type_and_renders_mixed_text() -> None:
    run = request_run()
    assert plain(run.typed(compile_template("${conn.client_port}"), PLACE)) == 50123
    assert isinstance(run.typed(compile_template("${conn.client_port}"), PLACE), int)
    assert run.typed(compile_template("port ${conn.client_port}"), PLACE) == "port 50123"
    frozen = MappingProxyType({"key": ("value1", MappingProxyType({"n": 1}))})
    assert run.typed(frozen, PLACE) == {"key": ["value1", {"n": 1}]}
    assert run.typed(1.5, PLACE) == 1.5


# --- plain and text_of -----------------------------------------------------------------------
def test_plain_turns_cel_values_into_plain_python() -> None:
    nested = celtypes.MapType(
        {
            celtypes.StringType("a"): celtypes.ListType(
                [celtypes.IntType(1), celtypes.BoolType(True), celtypes.StringType("x")]
            )
        }
    )
    assert plain(nested) == {"a": [1, True, "x"]}
    converted = plain(nested)
    assert isinstance(converted, dict)
    assert [type(item) for item in converted["a"]] == [int, bool, str]
    assert plain(celtypes.BoolType(False)) is False
    assert plain(None) is None
    assert type(plain(celtypes.DoubleType(1.5))) is float
    assert type(plain(celtypes.BytesType(b"\xff"))) is bytes
    assert plain((celtypes.IntType(1), celtypes.IntType(2))) == [1, 2]
    assert plain(celtypes.TimestampType("2024-05-01T12:00:00Z")) == "2024-05-01T12:00:00Z"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, ""),
        (celtypes.BoolType(True), "true"),
        (False, "false"),
        (celtypes.IntType(42), "42"),
        (celtypes.DoubleType(1.5), "1.5"),
        (celtypes.StringType("k1"), "k1"),
        (b"caf\xc3\xa9", "café"),
        (b"\xff", "\ufffd"),  # not UTF-8: replaced, never an exception
        (celtypes.TimestampType("2024-05-01T12:00:00Z"), "2024-05-01T12:00:00Z"),
        (celtypes.DurationType("90s"), "90s"),
        (
            celtypes.MapType(
                {celtypes.StringType("a"): celtypes.ListType([celtypes.IntType(1), None])}
            ),
            '{"a":[1,null]}',
        ),
    ],
)
def test_text_of_writes_values_as_interpolation_does(value: object, text: str) -> None:
    assert text_of(value) == text


def test_a_new_run_sets_every_field_to_its_declared_default() -> None:
    # `PhaseRun.__init__` is written out by hand: a field added later must be set there too.
    run = request_run()
    given = {"phase", "conn", "endpoint", "now", "state", "request"}
    for item in dataclasses.fields(PhaseRun):
        value = getattr(run, item.name)  # AttributeError: a slot __init__ left unset
        if item.name in given:
            continue
        if item.default_factory is not dataclasses.MISSING:
            expected = item.default_factory()
            assert value == expected and type(value) is type(expected), item.name
        else:
            assert value == item.default, item.name
    other = request_run()
    assert run.results is not other.results and run.added is not other.added  # fresh, unshared


def test_the_activation_is_made_only_when_asked_and_header_names_follow_changes() -> None:
    run = request_run()
    assert run.header_values("req", "x-trace-id") == ("abc",)
    assert run.built_activation is None  # a lookup makes no activation
    run.add_header("x-trace-id", "def")  # a new header tuple: the names are folded anew
    assert list(run.header_values("req", "x-trace-id")) == ["abc", "def"]
    assert run.header_values("req", "x-absent") == ()
    assert run.activation["req"] is run.activation["req"]  # made once asked, then kept
    assert run.built_activation is not None
