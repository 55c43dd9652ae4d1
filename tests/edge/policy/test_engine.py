"""edge/policy/engine.py: phases run in order, every action's semantics, traces, failures.

Most documents are ngrok's own doc examples (DOCS `snippets/traffic-policy/actions/*/examples`).
The access actions (restrict-ips, basic-auth, rate-limit) are in test_run_access.py; the shared
builders are in engine_helpers.py.
"""

from __future__ import annotations

import pytest

from edge.policy.activation import RequestFacts, ResponseFacts
from edge.policy.engine import (
    Close,
    Continue,
    Forward,
    HeaderChanges,
    ResponseChanges,
    run_http_request,
    run_http_response,
    run_tcp_connect,
)
from edge.policy.errors import ERR_NGROK_2238, ERR_NGROK_2253, ERR_NGROK_2254
from edge.policy.ratelimit import PolicyState
from tests.edge.policy.engine_helpers import (
    CONN,
    ENDPOINT,
    NOW,
    forward,
    on_request,
    policy,
    request,
    respond,
)


# --- rule evaluation -------------------------------------------------------------------------
def test_an_empty_policy_forwards_unchanged() -> None:
    result = forward(on_request("{}"))
    assert result.changes.headers == HeaderChanges()
    assert result.changes.target is None
    assert result.trace.rules == ()
    assert result.logs == ()


def test_rules_run_in_order_and_a_terminating_action_ends_the_phase() -> None:
    text = """
on_http_request:
  - name: tag
    actions:
      - type: add-headers
        config: {headers: {x-first: one}}
  - name: block admin
    expressions: ["req.url.path.startsWith('/admin')", "req.method == 'GET'"]
    actions:
      - type: deny
        config: {status_code: 404}
  - name: never reached
    actions:
      - type: add-headers
        config: {headers: {x-late: two}}
"""
    blocked = respond(on_request(text, request("/admin/users")))
    assert blocked.status == 404
    assert blocked.body == b""
    assert [rule.name for rule in blocked.trace.rules] == ["tag", "block admin"]
    second = blocked.trace.rules[1]
    assert second.matched
    assert [(e.text, e.value) for e in second.expressions] == [
        ("req.url.path.startsWith('/admin')", True),
        ("req.method == 'GET'", True),
    ]
    assert [(a.type, a.result) for a in second.actions] == [("deny", "responded 404")]

    passed = forward(on_request(text, request("/public")))
    assert passed.changes.headers.added == (("x-first", "one"), ("x-late", "two"))
    skipped = passed.trace.rules[1]
    assert not skipped.matched
    assert [(e.value) for e in skipped.expressions] == [False]  # the first false one stops
    assert skipped.actions == ()


def test_laziness_an_unread_variable_is_never_computed() -> None:
    class CountingHeaders(tuple[tuple[str, str], ...]):
        reads = 0

        def __iter__(self):  # type: ignore[no-untyped-def]
            CountingHeaders.reads += 1
            return super().__iter__()

    headers = CountingHeaders((("x-a", "1"),))
    req = RequestFacts(method="GET", scheme="https", host="h", path="/", headers=headers)
    text = "on_http_request: [{expressions: [\"req.method == 'GET'\"], actions: [{type: deny}]}]"
    assert respond(on_request(text, req)).status == 403
    assert CountingHeaders.reads == 0
    text = (
        "on_http_request: [{expressions: [\"'1' in req.headers['x-a']\"], actions: [{type: deny}]}]"
    )
    assert respond(on_request(text, req)).status == 403
    assert CountingHeaders.reads == 1


def test_a_runtime_cel_error_is_a_coded_500_and_a_log_record() -> None:
    text = """
on_http_request:
  - name: reads a missing header
    expressions: ["req.headers['x-missing'][0] == 'a'"]
    actions: [{type: deny}]
"""
    failed = respond(on_request(text))
    assert failed.status == 500
    assert failed.error_code == ERR_NGROK_2254
    assert ERR_NGROK_2254.encode() in failed.body
    assert b"x-missing" not in failed.body  # the expression stays in the log, not the page
    (record,) = failed.logs
    assert record.error_code == ERR_NGROK_2254
    assert "x-missing" in str(record.metadata["message"])
    (expression,) = failed.trace.rules[0].expressions
    assert expression.value is None and expression.error is not None


def test_a_non_boolean_expression_is_a_runtime_error() -> None:
    text = "on_http_request: [{expressions: ['req.method'], actions: [{type: deny}]}]"
    assert respond(on_request(text)).error_code == ERR_NGROK_2254


def test_a_failing_template_is_2238_and_other_requests_still_work() -> None:
    text = """
on_http_request:
  - actions:
      - type: add-headers
        config: {headers: {x-token: "${req.headers['x-token'][0]}"}}
"""
    compiled = policy(text)
    state = PolicyState()
    bad = run_http_request(compiled, CONN, request(), endpoint=ENDPOINT, now=NOW, state=state)
    assert respond(bad).error_code == ERR_NGROK_2238
    good = run_http_request(
        compiled,
        CONN,
        request(headers=(("X-Token", "abc"),)),
        endpoint=ENDPOINT,
        now=NOW,
        state=state,
    )
    assert forward(good).changes.headers.added == (("x-token", "abc"),)


# --- headers ---------------------------------------------------------------------------------
def test_add_headers_with_interpolation_doc_example() -> None:
    text = """
on_http_request:
  - actions:
      - type: add-headers
        config:
          headers:
            x-client-ip: ${conn.client_ip}
"""
    result = forward(on_request(text))
    assert result.changes.headers.added == (("x-client-ip", "203.0.113.9"),)
    assert result.carried.results["add_headers"] == {
        "headers_added": {"x-client-ip": "203.0.113.9"}
    }


@pytest.mark.parametrize("hostile", ["a\r\nset-cookie: admin=1", "a\nb", "a\x00b"])
def test_hostile_header_values_never_inject_a_header(hostile: str) -> None:
    text = """
on_http_request:
  - actions:
      - type: add-headers
        config: {headers: {x-echo: "v=${req.headers['x-in'][0]}"}}
"""
    failed = respond(on_request(text, request(headers=(("x-in", hostile),))))
    assert failed.status == 500
    assert failed.error_code == ERR_NGROK_2238
    assert all("\n" not in value and "\r" not in value for _, value in failed.headers)


def test_interpolated_text_is_not_evaluated_again() -> None:
    text = """
on_http_request:
  - actions:
      - type: add-headers
        config: {headers: {x-echo: "${req.headers['x-in'][0]}"}}
"""
    result = forward(on_request(text, request(headers=(("x-in", "${conn.client_ip}"),))))
    assert result.changes.headers.added == (("x-echo", "${conn.client_ip}"),)


def test_remove_then_add_replaces_and_later_rules_see_the_change() -> None:
    text = """
on_http_request:
  - actions:
      - type: add-headers
        config: {headers: {x-trace-id: from-policy}}
      - type: remove-headers
        config: {headers: [x-client-version, x-trace-id]}
      - type: add-headers
        config: {headers: {x-trace-id: replaced}}
  - expressions: ["req.headers['x-trace-id'] == ['replaced']"]
    actions:
      - type: add-headers
        config: {headers: {x-seen: "yes"}}
"""
    req = request(headers=(("X-Client-Version", "1.2"), ("X-Trace-Id", "abc")))
    result = forward(on_request(text, req))
    assert result.changes.headers == HeaderChanges(
        removed=("x-client-version", "x-trace-id"),
        added=(("x-trace-id", "replaced"), ("x-seen", "yes")),
    )
    assert result.carried.results["remove_headers"] == {
        "headers_removed": ["x-client-version", "x-trace-id"]
    }


def test_add_headers_host_replaces_the_host() -> None:
    text = """
on_http_request:
  - actions:
      - type: add-headers
        config: {headers: {host: internal.example}}
  - expressions: ["req.host == 'internal.example'"]
    actions: [{type: deny, config: {status_code: 418}}]
"""
    assert respond(on_request(text)).status == 418


def test_response_phase_headers_doc_example() -> None:
    text = """
on_http_response:
  - expressions:
      - req.method == "GET" && req.url.path.startsWith("/status/200")
    actions:
      - type: add-headers
        config:
          headers:
            x-custom-header: my-custom-value
            x-string-interpolation-example: started at ${conn.ts.start}
      - type: remove-headers
        config: {headers: [server]}
"""
    result = run_http_response(
        policy(text),
        CONN,
        request("/status/200"),
        ResponseFacts(status=200, headers=(("Server", "nginx"),)),
        endpoint=ENDPOINT,
        now=NOW,
        state=PolicyState(),
    )
    assert isinstance(result, ResponseChanges)
    assert result.headers == HeaderChanges(
        removed=("server",),
        added=(
            ("x-custom-header", "my-custom-value"),
            ("x-string-interpolation-example", "started at 2024-05-01T11:59:55Z"),
        ),
    )


def test_response_phase_custom_response_replaces_the_response() -> None:
    text = """
on_http_response:
  - expressions: ["res.status_code >= 500"]
    actions:
      - type: custom-response
        config: {status_code: 503, body: "down (${string(res.status_code)})"}
"""
    result = run_http_response(
        policy(text),
        CONN,
        request(),
        ResponseFacts(status=502),
        endpoint=ENDPOINT,
        now=NOW,
        state=PolicyState(),
    )
    result = respond(result)
    assert (result.status, result.body) == (503, b"down (502)")
    assert ("content-type", "text/plain; charset=utf-8") in result.headers


# --- deny, close, custom-response ------------------------------------------------------------
def test_deny_on_tcp_connect_closes() -> None:
    compiled = policy("on_tcp_connect: [{actions: [{type: deny}]}]", "tcp")
    result = run_tcp_connect(compiled, CONN, endpoint=ENDPOINT, now=NOW, state=PolicyState())
    assert isinstance(result, Close)
    assert result.reason == "deny"


def test_tcp_connect_without_match_continues() -> None:
    text = """
on_tcp_connect:
  - expressions: ["conn.client_ip == '10.0.0.1'"]
    actions: [{type: close-connection}]
"""
    result = run_tcp_connect(
        policy(text, "tls"), CONN, endpoint=ENDPOINT, now=NOW, state=PolicyState()
    )
    assert isinstance(result, Continue)
    assert result.trace.rules[0].expressions[0].value is False


def test_close_connection_on_request() -> None:
    result = on_request("on_http_request: [{actions: [{type: close-connection}]}]")
    assert isinstance(result, Close)
    assert result.trace.rules[0].actions[0].result == "closed the connection"


def test_custom_response_doc_examples() -> None:
    html = """
on_http_request:
  - actions:
      - type: custom-response
        config:
          status_code: 503
          body: <html><body><h1>Service Unavailable</h1></body></html>
          headers:
            content-type: text/html
"""
    page = respond(on_request(html))
    assert page.status == 503
    assert page.headers == (("content-type", "text/html"),)
    assert page.body.startswith(b"<html>")

    interpolated = """
on_http_request:
  - expressions:
      - req.url.path == '/api/example'
    actions:
      - type: custom-response
        config:
          status_code: 418
          body: connection began at ${conn.ts.start}, now ${timestamp(time.now)}
"""
    page = respond(on_request(interpolated, request("/api/example")))
    assert page.status == 418
    assert page.body == b"connection began at 2024-05-01T11:59:55Z, now 2024-05-01T12:00:00Z"
    assert page.headers == (("content-type", "text/plain; charset=utf-8"),)

    json_body = """
on_http_request:
  - actions:
      - type: custom-response
        config: {body: '{"ip":"${conn.client_ip}"}'}
"""
    page = respond(on_request(json_body))
    assert (page.status, page.body) == (200, b'{"ip":"203.0.113.9"}')
    assert page.headers == (("content-type", "application/json"),)


# --- redirect and url-rewrite ----------------------------------------------------------------
def test_redirect_basic_doc_example() -> None:
    text = """
on_http_request:
  - actions:
      - type: redirect
        config:
          from: /products
          to: /store/products
"""
    result = respond(on_request(text, request("/products")))
    assert result.status == 302
    assert result.headers == (("location", "https://api.example.com/store/products"),)
    assert isinstance(on_request(text, request("/other")), Forward)  # no match: nothing


def test_redirect_capture_groups_status_and_headers() -> None:
    text = r"""
on_http_request:
  - expressions:
      - req.url.path.startsWith('/api/')
    actions:
      - type: redirect
        config:
          from: /api/v1/users\?id=([0-9]+)
          to: /api/v2/users/$1/
          status_code: 301
          headers:
            x-redirected: 'true'
"""
    result = respond(on_request(text, request("/api/v1/users", query="id=42")))
    assert result.status == 301
    assert result.headers == (
        ("location", "https://api.example.com/api/v2/users/42/"),
        ("x-redirected", "true"),
    )
    assert result.carried.results["redirect"]["matches"] == ["/api/v1/users?id=42", "42"]


def test_redirect_to_the_same_url_does_nothing() -> None:
    text = "on_http_request: [{actions: [{type: redirect, config: {from: '/same', to: '/same'}}]}]"
    assert isinstance(on_request(text, request("/same")), Forward)


def test_redirect_escapes_what_a_url_may_not_hold() -> None:
    text = """
on_http_request:
  - actions:
      - type: redirect
        config:
          to: "https://other.example/geo?city=${req.headers['x-city'][0]}"
"""
    result = respond(on_request(text, request(headers=(("x-city", "São Paulo\r\nx: y"),))))
    assert result.headers == (
        ("location", "https://other.example/geo?city=S%C3%A3o%20Paulo%0D%0Ax:%20y"),
    )


def test_url_rewrite_doc_examples() -> None:
    basic = """
on_http_request:
  - expressions:
      - req.url.path == '/products'
    actions:
      - type: url-rewrite
        config:
          from: /products
          to: /products.php
  - expressions: ["req.url.path == '/products.php'"]
    actions:
      - type: add-headers
        config: {headers: {x-rewritten: "${actions.ngrok.url_rewrite.url}"}}
"""
    result = forward(on_request(basic, request("/products")))
    assert result.changes.target == "/products.php"
    assert result.changes.headers.added == (
        ("x-rewritten", "https://api.example.com/products.php"),
    )

    interpolated = """
on_http_request:
  - actions:
      - type: url-rewrite
        config:
          from: ${req.url.authority}/products/?([a-z]+)?
          to: /products.php?query=$1
"""
    result = forward(on_request(interpolated, request("/products/shoes")))
    assert result.changes.target == "/products.php?query=shoes"


def test_url_rewrite_keeps_the_query_and_replaces_every_match() -> None:
    text = "on_http_request: [{actions: [{type: url-rewrite, config: {from: 'v1', to: 'v2'}}]}]"
    result = forward(on_request(text, request("/v1/a/v1", query="x=v1")))
    assert result.changes.target == "/v2/a/v2?x=v2"


def test_url_rewrite_with_a_bad_templated_regex_is_2253() -> None:
    text = """
on_http_request:
  - actions:
      - type: url-rewrite
        config: {from: "${req.headers['x-re'][0]}", to: /x}
"""
    assert respond(on_request(text, request(headers=(("x-re", "(unclosed"),)))).error_code == (
        ERR_NGROK_2253
    )


# --- set-vars and log ------------------------------------------------------------------------
def test_set_vars_doc_example_keeps_types() -> None:
    text = """
on_http_request:
  - actions:
      - type: set-vars
        config:
          vars:
            - sample_string: bar
            - sample_double: 1.5
            - sample_bool: true
            - sample_null: null
            - sample_list: [1, 2, 3]
            - sample_map:
                key: value
            - sample_nested_map:
                key: [value1, value2]
            - port: ${conn.client_port}
  - expressions:
      - vars.sample_bool == true
      - vars.port == 50123
    actions:
      - type: custom-response
        config:
          status_code: 200
          headers:
            content-type: text/plain
          body: ${vars.sample_string} ${vars.sample_double} ${vars.sample_list[0]}
            ${vars.sample_map.key} ${vars.sample_nested_map.key[1]}
"""
    result = respond(on_request(text))
    assert result.body == b"bar 1.5 1 value value2"


def test_log_records_rendered_metadata_doc_example() -> None:
    text = """
on_http_request:
  - actions:
      - type: log
        config:
          metadata:
            message: Log action executed.
            endpoint_id: ${endpoint.id}
            port: ${conn.client_port}
"""
    result = forward(on_request(text))
    (record,) = result.logs
    assert record.phase == "on_http_request"
    assert record.metadata == {
        "message": "Log action executed.",
        "endpoint_id": "ep_1",
        "port": 50123,
    }
    assert record.error_code is None


def test_vars_are_scoped_to_their_phase_but_action_results_carry_over() -> None:
    text = """
on_http_request:
  - actions:
      - type: set-vars
        config: {vars: [{tier: gold}]}
      - type: add-headers
        config: {headers: {x-tier: "${vars.tier}"}}
on_http_response:
  - expressions: ["has(actions.ngrok.add_headers)", "has(vars.tier) == false"]
    actions:
      - type: add-headers
        config: {headers: {x-saw: "${actions.ngrok.add_headers.headers_added['x-tier']}"}}
"""
    compiled = policy(text)
    state = PolicyState()
    first = forward(
        run_http_request(compiled, CONN, request(), endpoint=ENDPOINT, now=NOW, state=state)
    )
    second = run_http_response(
        compiled,
        CONN,
        request(),
        ResponseFacts(status=200),
        endpoint=ENDPOINT,
        now=NOW,
        state=state,
        carried=first.carried,
    )
    assert isinstance(second, ResponseChanges)
    assert second.headers.added == (("x-saw", "gold"),)


# --- untraced runs (the edge's hot path) -----------------------------------------------------
_UNTRACED_POLICY = """
on_http_request:
  - name: tag
    expressions: ["req.method == 'GET'"]
    actions: [{type: add-headers, config: {headers: {x-a: "1"}}}]
  - name: broken for /fail
    expressions: ["req.url.path == '/fail' && req.headers['x-missing'][0] == 'a'"]
    actions: [{type: deny}]
  - name: admins only
    expressions: ["req.url.path.startsWith('/admin')"]
    actions: [{type: custom-response, config: {status_code: 418, body: "not here"}}]
on_http_response:
  - actions: [{type: remove-headers, config: {headers: [server]}}]
"""


@pytest.mark.parametrize("path", ["/", "/admin", "/fail"])
def test_an_untraced_run_has_the_same_outcome_and_no_trace(path: str) -> None:
    compiled = policy(_UNTRACED_POLICY)

    def run(trace: bool) -> object:
        return run_http_request(
            compiled,
            CONN,
            request(path),
            endpoint=ENDPOINT,
            now=NOW,
            state=PolicyState(),
            trace=trace,
        )

    traced, untraced = run(True), run(False)
    assert type(traced) is type(untraced)
    assert traced.trace.rules and not untraced.trace.rules  # type: ignore[attr-defined]
    if isinstance(traced, Forward):
        assert isinstance(untraced, Forward)
        assert untraced.changes == traced.changes
    else:
        traced, untraced = respond(traced), respond(untraced)
        assert (untraced.status, untraced.body, untraced.error_code) == (
            traced.status,
            traced.body,
            traced.error_code,
        )
        assert [r.metadata for r in untraced.logs] == [r.metadata for r in traced.logs]
        assert [r.place for r in untraced.logs] == [r.place for r in traced.logs]
        assert untraced.action == ("custom-response" if path == "/admin" else None)
    response = run_http_response(
        compiled,
        CONN,
        request(path),
        ResponseFacts(status=200, headers=(("Server", "x"),)),
        endpoint=ENDPOINT,
        now=NOW,
        state=PolicyState(),
        trace=False,
    )
    assert isinstance(response, ResponseChanges)
    assert response.headers == HeaderChanges(removed=("server",))
    assert not response.trace.rules
