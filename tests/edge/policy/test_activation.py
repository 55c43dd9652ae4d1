"""edge/policy/activation.py: ngrok's variable names over the facts, computed lazily."""

from __future__ import annotations

import pytest

from edge.policy.activation import (
    ConnFacts,
    EndpointFacts,
    RequestFacts,
    ResponseFacts,
    conn_view,
    endpoint_view,
    request_view,
    response_view,
    time_view,
)
from edge.policy.cel import compile_expression
from edge.policy.errors import PolicyRuntimeError

REQUEST = RequestFacts(
    method="POST",
    scheme="https",
    host="api.example.com:8443",
    path="/v1/items",
    query="a=1&a=2&b=&c=x%20y",
    headers=(
        ("Host", "api.example.com:8443"),
        ("User-Agent", "curl/8.5"),
        ("X-Multi", "one"),
        ("x-multi", "two"),
        ("Cookie", "sid=abc; theme=dark"),
        ("Content-Type", "application/json; charset=UTF-8"),
        ("Content-Encoding", "gzip, br"),
    ),
    content_length=12,
    version="HTTP/2.0",
)
ACTIVATION = {
    "req": request_view(REQUEST),
    "res": response_view(
        ResponseFacts(status=404, headers=(("Location", "/x"),), content_length=0)
    ),
    "conn": conn_view(
        ConnFacts(
            client_ip="203.0.113.9",
            client_port=4242,
            server_ip="192.0.2.1",
            server_port=443,
            sni="api.example.com",
            tls_version="1.3",
            tls_cipher="TLS_AES_128_GCM_SHA256",
            started_at=0,
            bytes_in=10,
        )
    ),
    "endpoint": endpoint_view(
        EndpointFacts(
            url="https://api.example.com",
            host="api.example.com",
            port=443,
            protocol="https",
            id="ep_1",
        )
    ),
    "time": time_view(86400.0),
}


@pytest.mark.parametrize(
    "expression",
    [
        "req.method == 'POST'",
        "req.host == 'api.example.com:8443'",
        "req.url == 'https://api.example.com:8443/v1/items?a=1&a=2&b=&c=x%20y'",
        "req.url.contains('/v1/')",
        "req.url.scheme == 'https'",
        "req.url.host == 'api.example.com'",
        "req.url.port == 8443",
        "req.url.authority == 'api.example.com:8443'",
        "req.url.path == '/v1/items'",
        "req.url.uri == '/v1/items?a=1&a=2&b=&c=x%20y'",
        "req.url.query == 'a=1&a=2&b=&c=x%20y'",
        "req.url.query_params['a'] == ['1', '2']",
        "req.url.query_params['b'] == ['']",
        "req.url.query_params['c'] == ['x y']",
        "getQueryParam('a') == ['1', '2']",
        "req.headers['x-multi'] == ['one', 'two']",
        "getReqHeader('X-MULTI')[1] == 'two'",
        "req.cookies['theme'][0].value == 'dark'",
        "req.content_type == 'application/json'",
        "req.content_type.raw == 'application/json; charset=UTF-8'",
        "req.content_type.parameters['charset'] == 'UTF-8'",
        "req.content_encoding == ['gzip', 'br']",
        "req.content_length == 12",
        "req.user_agent == 'curl/8.5'",
        "req.version == 'HTTP/2.0'",
        "req.location == ''",
        "res.status_code == 404",
        "res.location == '/x'",
        "res.content_length == 0",
        "conn.client_ip == '203.0.113.9' && conn.client_port == 4242",
        "conn.server_ip == '192.0.2.1' && conn.server_port == 443",
        "conn.tls.version == '1.3' && conn.tls.sni == 'api.example.com'",
        "conn.tls.cipher_suite == 'TLS_AES_128_GCM_SHA256'",
        "conn.ts.start == timestamp('1970-01-01T00:00:00Z')",
        "conn.bytes_in == 10",
        "endpoint.id == 'ep_1' && endpoint.addr == 'api.example.com:443'",
        "endpoint.protocol == 'https' && endpoint.port == 443",
        "time.now == '1970-01-02T00:00:00Z'",
        "timestamp(time.now) > conn.ts.start",
    ],
)
def test_variables_have_ngroks_names_and_values(expression: str) -> None:
    assert compile_expression(expression).evaluate(ACTIVATION) is True


@pytest.mark.parametrize(
    "expression",
    ["req.user_agent.is_bot", "conn.bytes_out == 0", "req.url.user == ''"],
)
def test_fields_this_edge_does_not_know_are_runtime_errors(expression: str) -> None:
    with pytest.raises(PolicyRuntimeError):
        compile_expression(expression).value(ACTIVATION)


def test_plain_http_has_empty_tls_fields_and_no_port() -> None:
    view = {
        "conn": conn_view(
            ConnFacts(client_ip="::1", client_port=1, server_ip="::1", server_port=80)
        ),
        "req": request_view(RequestFacts(method="GET", scheme="http", host="[::1]", path="/")),
    }
    assert compile_expression("conn.tls.version == ''").evaluate(view)
    assert compile_expression("req.url.host == '::1'").evaluate(view)
    assert compile_expression("has(req.url.port) == false").evaluate(view)
    with pytest.raises(PolicyRuntimeError):
        compile_expression("req.url.port == 80").value(view)


def test_evolve_is_replace_for_the_facts_classes() -> None:
    import dataclasses

    from edge.policy.activation import evolve

    request = RequestFacts(
        method="GET", scheme="https", host="a.example", path="/x", headers=(("A", "1"),)
    )
    changed = evolve(request, headers=(("B", "2"),), host="b.example")
    assert changed == dataclasses.replace(request, headers=(("B", "2"),), host="b.example")
    assert request.headers == (("A", "1"),)  # the original is untouched
    response = ResponseFacts(status=200, headers=(("A", "1"),))
    assert evolve(response, status=404) == dataclasses.replace(response, status=404)
    with pytest.raises(TypeError, match="no field"):
        evolve(request, header=())  # a typo is an error, not a silent no-op
