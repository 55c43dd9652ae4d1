"""edge/http/policy.py: the HTTP phases of Traffic Policy at the seam (decide and
client_response_headers run them for HTTP/1.1 and HTTP/2 alike)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import h11
import pytest

from edge.endpoints.registry import AttachedPolicy
from edge.events import POLICY_LOG_EVENT, EventLog
from edge.http.headers import Headers, response_headers
from edge.http.policy import (
    ResponsePolicy,
    _changed_request,
    _new_policed,
    apply_headers,
    request_phase,
    response_phase,
    upstream_failed,
)
from edge.http.seam import (
    HttpRequest,
    Policed,
    PolicyAnswer,
    PolicyClose,
    Refusal,
    client_response_headers,
    decide,
)
from edge.policy.activation import ConnFacts, EndpointFacts, RequestFacts, ResponseFacts
from edge.policy.document import load_policy
from edge.policy.engine import (
    Carried,
    Forward,
    HeaderChanges,
    Respond,
    run_http_request,
    run_http_response,
)
from edge.policy.ratelimit import PolicyState
from edge.policy.validate import validate
from edge.store import SQLiteStore
from tests.edge.http.test_policy_facts import reference_facts
from tests.edge.http.test_seam import NOW, Route, Router, on_connection, request
from tests.edge.policy.test_plan import POLICIES


class PolicyRoute(Route):
    """An endpoint with a Traffic Policy attached."""

    def __init__(self, text: str) -> None:
        self.key = "policed"
        self.policy = attached(text)


def attached(text: str) -> AttachedPolicy:
    return AttachedPolicy(validate(load_policy(text), protocol="https"), text)


def policed(text: str, req: HttpRequest | None = None) -> Policed | PolicyAnswer | PolicyClose:
    route = PolicyRoute(text)
    decision = decide(req or request(), Router({("app.test", "https"): route}), now=NOW)
    assert isinstance(decision, Policed | PolicyAnswer | PolicyClose), decision
    if isinstance(decision, Policed):
        assert decision.route is route
    return decision


def test_decide_with_a_policy_forwards_the_request_with_its_changes() -> None:
    text = """
on_http_request:
  - actions:
      - type: add-headers
        config: {headers: {x-added: "${conn.client_ip}", host: other.test}}
      - type: remove-headers
        config: {headers: [x-secret]}
      - type: url-rewrite
        config: {from: /old, to: /new}
"""
    base = request()
    req = dataclasses.replace(
        base, target=b"/old?q=1", headers=[*base.headers, (b"X-Secret", b"s")]
    )
    decision = policed(text, req)
    assert isinstance(decision, Policed)
    assert decision.request.target == b"/new?q=1"
    assert decision.request.headers == [(b"x-added", b"203.0.113.9"), (b"host", b"other.test")]
    assert decision.request.host == "app.test"  # routing is done; only the forwarded head changes


def test_the_changed_request_keeps_every_other_field_as_it_came() -> None:
    text = """
on_http_request:
  - actions:
      - type: add-headers
        config: {headers: {x-added: "1"}}
      - type: url-rewrite
        config: {from: /old, to: /new}
"""
    req = dataclasses.replace(request(), target=b"/old", sni="app.test", version="HTTP/1.0")
    decision = policed(text, req)
    assert isinstance(decision, Policed)
    expected = dataclasses.replace(req, target=b"/new", headers=[*req.headers, (b"x-added", b"1")])
    assert decision.request == expected
    assert req.target == b"/old"  # the seam's request itself is left as it was


def test_the_changed_request_is_what_replace_gives_for_every_kind_of_change() -> None:
    req = dataclasses.replace(request(), sni="app.test", version="HTTP/1.0")
    lowered = tuple(name.decode("latin-1").lower() for name, _ in req.headers)
    changed = _changed_request(req, ["host"], [("x-a", "1")], "/new?q", lowered)
    assert changed == dataclasses.replace(
        req, target=b"/new?q", headers=[(b"x-a", b"1")]  # Host was the only header
    )
    kept_target = _changed_request(req, [], [("x-b", "2")], None)
    assert kept_target == dataclasses.replace(req, headers=[*req.headers, (b"x-b", b"2")])
    assert type(kept_target) is HttpRequest
    with pytest.raises(dataclasses.FrozenInstanceError):
        kept_target.target = b"/"  # type: ignore[misc]


def test_the_response_state_is_built_as_its_constructors_build_it() -> None:
    facts = RequestFacts(method="GET", scheme="https", host="app.test", path="/")
    policy = attached("on_http_request: []")
    conn = ConnFacts(client_ip="1.2.3.4", client_port=5, server_ip="", server_port=0)
    endpoint = EndpointFacts(url="https://app.test", host="app.test", port=443, protocol="https")
    route, req, carried = Route(), request(), Carried()
    made = _new_policed(route, req, policy, conn, facts, endpoint, carried)
    assert made == Policed(route, req, ResponsePolicy(policy, conn, facts, endpoint, carried))
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.body = b""  # type: ignore[misc]


def test_decide_with_a_policy_answers_a_deny_without_an_error_code() -> None:
    decision = policed("on_http_request: [{actions: [{type: deny, config: {status_code: 403}}]}]")
    assert isinstance(decision, PolicyAnswer)
    assert decision.status == 403
    names = [name.lower() for name, _ in decision.headers]
    assert b"burrow-error-code" not in names
    assert (b"Content-Length", b"%d" % len(decision.body)) in decision.headers
    assert decision.phrase == b"Forbidden"


def test_decide_with_a_policy_answers_a_custom_response() -> None:
    text = """
on_http_request:
  - actions:
      - type: custom-response
        config: {status_code: 418, headers: {content-type: text/plain, content-length: "1"},
                 body: "teapot ${req.url.path}"}
"""
    decision = policed(text)
    assert isinstance(decision, PolicyAnswer)
    assert (decision.status, decision.body) == (418, b"teapot /")
    # A policy cannot set the framing: the length is the body's.
    assert decision.headers == [(b"content-type", b"text/plain"), (b"Content-Length", b"8")]
    assert decision.body_for(b"HEAD") == b""


def test_decide_with_a_failing_policy_answers_the_coded_500() -> None:
    text = """
on_http_request:
  - expressions: ["req.headers['x-missing'][0] == 'a'"]
    actions: [{type: deny}]
"""
    decision = policed(text)
    assert isinstance(decision, PolicyAnswer)
    assert decision.status == 500
    assert (b"Burrow-Error-Code", b"ERR_NGROK_2254") in decision.headers
    assert (b"ngrok-error-code", b"ERR_NGROK_2254") in decision.headers


def test_decide_with_a_policy_closes_on_close_connection() -> None:
    decision = policed("on_http_request: [{actions: [{type: close-connection}]}]")
    assert decision == PolicyClose("close-connection")


def test_decide_without_a_matching_rule_forwards_the_request_unchanged() -> None:
    req = request()
    decision = policed("on_http_request: [{expressions: ['false'], actions: [{type: deny}]}]", req)
    assert isinstance(decision, Policed)
    assert decision.request == req


def test_decide_runs_no_policy_for_a_misdirected_request() -> None:
    route = PolicyRoute("on_http_request: [{actions: [{type: deny}]}]")
    router = Router({("a.test", "https"): route, ("b.test", "https"): Route()})
    decision = decide(on_connection("b.test", sni="a.test"), router, now=NOW)
    assert isinstance(decision, Refusal)
    assert decision.page.status == 421


def test_policy_logs_name_the_endpoint_the_rule_and_the_metadata(
    caplog: pytest.LogCaptureFixture,
) -> None:
    text = """
on_http_request:
  - name: audit
    actions: [{type: log, config: {metadata: {who: "${conn.client_ip}"}}}]
"""
    with caplog.at_level(logging.INFO, logger="edge.http.policy"):
        assert isinstance(policed(text), Policed)
    [record] = [r for r in caplog.records if r.name == "edge.http.policy"]
    assert record.levelno == logging.INFO
    message = record.getMessage()
    assert message.startswith('policy https://app.test: on_http_request rule 0 ("audit")')
    assert '{"who": "203.0.113.9"}' in message


def test_client_response_headers_run_the_response_phase_with_carried_results() -> None:
    text = """
on_http_request:
  - actions:
      - type: url-rewrite
        config: {from: /old, to: /new}
on_http_response:
  - expressions: [res.status_code == 200]
    actions:
      - type: add-headers
        config: {headers: {x-rewritten: "${actions.ngrok.url_rewrite.url}"}}
      - type: remove-headers
        config: {headers: [server]}
"""
    decision = policed(text, dataclasses.replace(request(), target=b"/old"))
    assert isinstance(decision, Policed)
    raw = h11.Response(
        status_code=200,
        headers=[("Server", "nginx"), ("Content-Type", "text/plain"), ("Connection", "close")],
    ).headers
    headers = client_response_headers(raw, policy=decision.response, status=200, now=NOW)
    assert headers == [
        (b"Content-Type", b"text/plain"),
        (b"x-rewritten", b"https://app.test/new"),
    ]
    # Another status: the rule does not apply; only the hop-by-hop headers go.
    other = client_response_headers(raw, policy=decision.response, status=404, now=NOW)
    assert other == [(b"Server", b"nginx"), (b"Content-Type", b"text/plain")]


def test_client_response_headers_answer_when_the_response_phase_replaces_the_response() -> None:
    text = """
on_http_response:
  - expressions: [res.status_code >= 500]
    actions:
      - type: custom-response
        config: {status_code: 503, body: maintenance}
"""
    decision = policed(text)
    assert isinstance(decision, Policed)
    raw = h11.Response(status_code=502, headers=[("Content-Length", "0")]).headers
    answer = client_response_headers(raw, policy=decision.response, status=502, now=NOW)
    assert isinstance(answer, PolicyAnswer)
    assert (answer.status, answer.body) == (503, b"maintenance")


def test_a_request_phase_answer_goes_through_the_response_phase() -> None:
    text = """
on_http_request:
  - actions:
      - type: custom-response
        config: {status_code: 200, headers: {x-drop: "1"}, body: hi}
on_http_response:
  - actions:
      - type: add-headers
        config: {headers: {x-seen: "${string(res.status_code)}"}}
      - type: remove-headers
        config: {headers: [x-drop]}
"""
    decision = policed(text)
    assert isinstance(decision, PolicyAnswer)
    assert decision.headers == [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"Content-Length", b"2"),
        (b"x-seen", b"200"),
    ]
    assert decision.body == b"hi"


def test_the_response_phase_does_not_change_the_framing_headers() -> None:
    text = """
on_http_response:
  - actions:
      - type: remove-headers
        config: {headers: [content-length, x-gone]}
      - type: add-headers
        config: {headers: {content-length: "999", transfer-encoding: chunked, x-new: "1"}}
"""
    decision = policed(text)
    assert isinstance(decision, Policed)
    raw = h11.Response(status_code=200, headers=[("Content-Length", "5"), ("X-Gone", "1")]).headers
    headers = client_response_headers(raw, policy=decision.response, status=200, now=NOW)
    assert headers == [(b"Content-Length", b"5"), (b"x-new", b"1")]


CARRY = """
on_http_request:
  - actions:
      - type: circuit-breaker
        config: {error_threshold: 0.5, volume_threshold: 2, window_duration: 10s,
                 tripped_duration: 5s}
      - type: add-headers
        config: {headers: {x-a: "1"}}
on_http_response:
  - actions:
      - type: add-headers
        config: {headers: {x-b: "%s"}}
      - type: remove-headers
        config: {headers: [server]}
"""


def test_the_response_phase_gets_the_result_variables_only_if_it_can_read_them() -> None:
    raw = h11.Response(status_code=200, headers=[("Server", "x"), ("Content-Length", "0")]).headers
    blind = policed(CARRY % "${req.method}")
    assert isinstance(blind, Policed)
    assert dict(blind.response.carried.results) == {}  # nothing there could see them
    assert len(blind.response.carried.breakers) == 1  # the breaker still hears the outcome
    headers = client_response_headers(raw, policy=blind.response, status=200, now=NOW)
    assert headers == [(b"Content-Length", b"0"), (b"x-b", b"GET")]
    reading = policed(CARRY % "${actions.ngrok.add_headers.headers_added['x-a']}")
    assert isinstance(reading, Policed)
    assert reading.response.carried.results["add_headers"] == {"headers_added": {"x-a": "1"}}
    assert len(reading.response.carried.breakers) == 1
    headers = client_response_headers(raw, policy=reading.response, status=200, now=NOW)
    assert headers == [(b"Content-Length", b"0"), (b"x-b", b"1")]


BREAKER = """
on_http_request:
  - actions:
      - type: circuit-breaker
        config: {error_threshold: 0.5, volume_threshold: 2, window_duration: 10s,
                 tripped_duration: 5s}
on_http_response:
  - expressions: [res.status_code == 404]
    actions:
      - type: custom-response
        config: {status_code: 500, body: replaced}
"""


def _breaker_decide(router: Router, now: float) -> Policed | PolicyAnswer | PolicyClose:
    decision = decide(request(), router, now=now)
    assert isinstance(decision, Policed | PolicyAnswer | PolicyClose), decision
    return decision


def test_upstream_5xx_responses_trip_the_breaker_and_the_edge_answers_503() -> None:
    router = Router({("app.test", "https"): PolicyRoute(BREAKER)})
    raw = h11.Response(status_code=500, headers=[("Content-Length", "0")]).headers
    for offset in (0.0, 0.1):
        decision = _breaker_decide(router, NOW + offset)
        assert isinstance(decision, Policed)
        client_response_headers(raw, policy=decision.response, status=500, now=NOW + offset)
    refused = _breaker_decide(router, NOW + 1)
    assert isinstance(refused, PolicyAnswer)
    assert refused.status == 503
    assert (b"ngrok-error-code", b"ERR_NGROK_3202") in refused.headers
    assert isinstance(_breaker_decide(router, NOW + 5.1), Policed)  # half-open: one probe


def test_successes_and_policy_answers_do_not_count_as_upstream_errors() -> None:
    router = Router({("app.test", "https"): PolicyRoute(BREAKER)})
    ok = h11.Response(status_code=404, headers=[("Content-Length", "0")]).headers
    for offset in range(4):
        decision = _breaker_decide(router, NOW + offset)
        assert isinstance(decision, Policed)
        # the upstream said 404 (not an error); the policy's 500 answer replacing it is not
        # the upstream's outcome
        answer = client_response_headers(ok, policy=decision.response, status=404, now=NOW)
        assert isinstance(answer, PolicyAnswer) and answer.status == 500
    assert isinstance(_breaker_decide(router, NOW + 4), Policed)


def test_a_forward_that_got_no_response_counts_as_an_upstream_error() -> None:
    router = Router({("app.test", "https"): PolicyRoute(BREAKER)})
    for offset in (0.0, 0.1):
        decision = _breaker_decide(router, NOW + offset)
        assert isinstance(decision, Policed)
        upstream_failed(decision.response, now=NOW + offset)
    assert isinstance(_breaker_decide(router, NOW + 1), PolicyAnswer)


def test_log_records_become_events_with_their_metadata(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text = """
on_http_request:
  - name: audit
    actions: [{type: log, config: {metadata: {who: "${conn.client_ip}", n: 3}}}]
on_http_response:
  - actions: [{type: log, config: {metadata: {status: "${res.status_code}"}}}]
"""
    with SQLiteStore.open(tmp_path / "burrow.db") as store:
        route = PolicyRoute(text)
        route.policy = dataclasses.replace(route.policy, events=EventLog(store, None))
        with caplog.at_level(logging.INFO, logger="edge.http.policy"):
            decision = decide(request(), Router({("app.test", "https"): route}), now=NOW)
            assert isinstance(decision, Policed)
            raw = h11.Response(status_code=201, headers=[("Content-Length", "0")]).headers
            client_response_headers(raw, policy=decision.response, status=201, now=NOW)
        events = list(reversed(store.list_events(event_type=POLICY_LOG_EVENT, limit=10)))
    assert len([r for r in caplog.records if r.name == "edge.http.policy"]) == 2  # still logged
    assert [event.object for event in events] == [
        {
            "endpoint": {"url": "https://app.test"},
            "traffic_policy": {
                "logs": [
                    {
                        "phase": "on_http_request",
                        "place": 'on_http_request rule 0 ("audit") action 0 (log)',
                        "metadata": {"who": "203.0.113.9", "n": 3},
                    }
                ]
            },
        },
        {
            "endpoint": {"url": "https://app.test"},
            "traffic_policy": {
                "logs": [
                    {
                        "phase": "on_http_response",
                        "place": "on_http_response rule 0 action 0 (log)",
                        "metadata": {"status": 201},
                    }
                ]
            },
        },
    ]
    assert all(event.principal is None for event in events)


# ------------------------------------------------------------------ the edge's fast path, checked
# The seam runs the engine's untraced entry points and applies what the finished phase leaves
# (`run_http_request_edits`, `run_http_response_edits`). Each policy here runs through the seam
# and, beside it, through the traced engine (`burrow-edge policy test`'s run) with its outcome
# applied by the plain rules written out below: the forwarded request and the client's response
# headers must be the same.
_SHELL_POLICIES = {
    name: POLICIES[name]
    for name in (
        "bench10",
        "bench3",
        "endpoint and interpolation",
        "headers",
        "vars",
        "fallbacks",
        "fixed headers",
    )
}
# a URL rewrite and a Host replaced on the forwarded request, framing headers in the response
_SHELL_POLICIES["rewrite"] = """
on_http_request:
  - actions:
      - type: url-rewrite
        config: {from: "/small", to: "/big"}
      - type: add-headers
        config: {headers: {host: other.test, x-path: "${req.url.path}"}}
on_http_response:
  - actions:
      - type: remove-headers
        config: {headers: [content-length, server]}
      - type: add-headers
        config: {headers: {content-length: "9", x-url: "${actions.ngrok.url_rewrite.url}"}}
"""


# the request's own facts read back (Host, length, a header's first value), request headers
# removed whatever their case, and response headers removed by a name that is there twice
_SHELL_POLICIES["facts"] = """
on_http_request:
  - actions:
      - type: add-headers
        config:
          headers:
            x-facts: "${req.host} ${req.content_length} ${getReqHeader('x-keep')[0]}"
            x-ua: "${getReqHeader('user-agent')[0]}"
      - type: remove-headers
        config: {headers: [x-bench-client, x-keep]}
on_http_response:
  - actions:
      - type: remove-headers
        config: {headers: [content-type, x-twice]}
      - type: add-headers
        config: {headers: {x-seen: "${getReqHeader('x-keep')[0]}"}}
"""


def _applied(headers: Headers, changes: HeaderChanges) -> Headers:
    """The reference: drop every header named in `removed` (and Host if one is added), then
    append `added`, names folded to lower case for the comparison."""
    gone = set(changes.removed) | {name for name, _ in changes.added if name == "host"}
    kept = [(n, v) for n, v in headers if n.decode("latin-1").lower() not in gone]
    return kept + [(n.encode("latin-1"), v.encode("utf-8")) for n, v in changes.added]


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [(b"Server", b"a"), (b"X-A", b"1")],
        [(b"X-A", b"1"), (b"SERVER", b"a"), (b"X-B", b"2")],
        [(b"server", b"a"), (b"X-A", b"1"), (b"Server", b"b")],
        [(b"X-A", b"1"), (b"\xc0-Name", b"x")],
    ],
)
@pytest.mark.parametrize("removed", [(), ("server",), ("server", "x-a"), ("x-none",)])
@pytest.mark.parametrize("added", [(), (("x-new", "1"),), (("host", "h.test"),)])
def test_apply_headers_drops_and_appends_as_the_plain_reading_does(
    headers: Headers, removed: tuple[str, ...], added: tuple[tuple[str, str], ...]
) -> None:
    expected = _applied(headers, HeaderChanges(removed, added))
    before = list(headers)
    lowered = tuple(name.decode("latin-1").lower() for name, _ in headers)
    assert apply_headers(headers, removed, added, lowered) == expected
    assert apply_headers(headers, removed, added) == expected
    assert headers == before  # the headers given are left as they were


@pytest.mark.parametrize("name", _SHELL_POLICIES)
@pytest.mark.parametrize("status", [200, 502])
@pytest.mark.parametrize(
    "extra",
    [
        (),
        ((b"X-Bench-Client", b"wrk"), (b"X-Keep", b"1")),
        ((b"x-keep", b"2"), (b"HOST", b"app.test"), (b"Content-Length", b"0"), (b"X-KEEP", b"3")),
    ],
)
@pytest.mark.parametrize("client", ["127.0.0.1", "203.0.113.9"])
def test_the_seam_applies_the_policy_as_the_traced_engine_decides(
    name: str, status: int, extra: tuple[tuple[bytes, bytes], ...], client: str
) -> None:
    text = _SHELL_POLICIES[name]
    base = request()
    req = dataclasses.replace(
        base,
        target=b"/small?a=1",
        headers=[*base.headers, (b"User-Agent", b"curl/8.5"), *extra],
        client_addr=f"{client}:5000",
    )
    decision = policed(text, req)
    raw = h11.Response(
        status_code=status,
        headers=[
            ("Server", "nginx"),
            ("X-Twice", "1"),
            ("Content-Type", "text/plain"),
            ("x-twice", "2"),
            ("Content-Length", "5"),
        ],
    ).headers
    # the reference: the traced engine on the same facts
    compiled = validate(load_policy(text), protocol="https")
    facts = reference_facts(req)
    conn = ConnFacts(
        client_ip=client, client_port=5000, server_ip="", server_port=0, sni="app.test"
    )
    endpoint = Route().endpoint_facts()
    state = PolicyState()
    first = run_http_request(compiled, conn, facts, endpoint=endpoint, now=NOW, state=state)
    if not isinstance(first, Forward):
        assert isinstance(decision, PolicyAnswer), (first, decision)
        return
    assert isinstance(decision, Policed)
    assert decision.request.headers == _applied(req.headers, first.changes.headers)
    target = first.changes.target
    assert decision.request.target == (req.target if target is None else target.encode())
    cleaned = response_headers(raw, upgrade=False)
    second = run_http_response(
        compiled,
        conn,
        facts,
        ResponseFacts(
            status=status,
            headers=tuple((n.decode("latin-1"), v.decode("latin-1")) for n, v in cleaned),
        ),
        endpoint=endpoint,
        now=NOW,
        state=state,
        carried=first.carried,
    )
    got = client_response_headers(raw, policy=decision.response, status=status, now=NOW)
    if isinstance(second, Respond):
        assert isinstance(got, PolicyAnswer) and got.status == second.status
        return
    framing = {"content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te"}
    kept = HeaderChanges(
        tuple(n for n in second.headers.removed if n not in framing),
        tuple((n, v) for n, v in second.headers.added if n not in framing),
    )
    assert got == _applied(cleaned, kept)


def test_the_seam_differential_sees_the_changes_it_compares() -> None:
    # Not vacuous: the benchmark policy changes both the forwarded request and the response.
    base = request()
    req = dataclasses.replace(
        base,
        target=b"/small",
        headers=[*base.headers, (b"X-Bench-Client", b"wrk")],
        client_addr="127.0.0.1:5000",
    )
    decision = policed(POLICIES["bench10"], req)
    assert isinstance(decision, Policed)
    assert decision.request.headers == [
        (b"Host", b"app.test"),
        (b"X-Bench-Client", b"wrk"),
        (b"x-bench-route", b"small"),
        (b"x-bench-client-name", b"wrk"),
        (b"x-bench-network", b"loopback"),
    ]
    raw = h11.Response(status_code=200, headers=[("Server", "nginx"), ("X-Other", "1")]).headers
    got = client_response_headers(raw, policy=decision.response, status=200, now=NOW)
    assert got == [(b"X-Other", b"1"), (b"x-bench-policy", b"rules10")]


# -------------------------------------------------------------- light runs (edge.policy.light)
_BENCH_POLICIES = Path(__file__).resolve().parents[3] / "benchmarks" / "policies"
_LIGHT_POLICIES = {
    "bench10": (_BENCH_POLICIES / "rules10.yml").read_text(),
    "headers read and edited": """
on_http_request:
  - expressions: ["hasReqHeader('x-keep') && req.method == 'GET'"]
    actions:
      - type: remove-headers
        config: {headers: [x-keep]}
      - type: add-headers
        config: {headers: {x-keep: "again", x-client: "${conn.client_ip}"}}
on_http_response:
  - expressions: ["hasResHeader('server') && res.status_code == 200"]
    actions:
      - type: add-headers
        config: {headers: {x-server: "${getResHeader('server')[0]}"}}
      - type: remove-headers
        config: {headers: [server, content-length, x-absent]}
      - type: add-headers
        config: {headers: {x-req: "${getReqHeader('x-keep')[0]}"}}
""",
    # gives up: a header value with CR/LF (the full run's 2238), a missing variable (2254)
    "header injection": """
on_http_request:
  - actions:
      - type: add-headers
        config: {headers: {x-echo: "${getReqHeader('x-keep')[0]}"}}
on_http_response:
  - expressions: ["vars.missing == 'x'"]
    actions:
      - type: add-headers
        config: {headers: {x-never: "1"}}
""",
}
_LIGHT_REQUESTS = {
    "plain": request(),
    "kept": dataclasses.replace(
        request(), headers=[(b"Host", b"app.test"), (b"X-Keep", b"1"), (b"X-Bench-Client", b"w")]
    ),
    "evil": dataclasses.replace(
        request(), headers=[(b"Host", b"app.test"), (b"X-Keep", b"a\r\nb: c")]
    ),
}


def _phases(text: str, req: HttpRequest, *, light: bool) -> tuple[object, object]:
    """The request phase's decision and the response phase's head on an upstream response,
    run light where the policy allows (`light`) or only ever in full."""
    policy = attached(text)
    if not light:
        policy.compiled.light.update(on_http_request=None, on_http_response=None)
    route = PolicyRoute(text)
    decided = request_phase(req, route, policy, now=NOW)
    if not isinstance(decided, Policed):
        return decided, None
    head = [(b"Server", b"nginx"), (b"Content-Length", b"5"), (b"X-Other", b"1")]
    return dataclasses.replace(decided, route=None, response=None), response_phase(
        decided.response, 200, head, now=NOW
    )


@pytest.mark.parametrize("name", sorted(_LIGHT_POLICIES))
@pytest.mark.parametrize("req", sorted(_LIGHT_REQUESTS))
def test_a_light_run_changes_the_messages_as_the_full_run_does(name: str, req: str) -> None:
    text, message = _LIGHT_POLICIES[name], _LIGHT_REQUESTS[req]
    assert _phases(text, message, light=True) == _phases(text, message, light=False)


def test_the_light_differential_sees_changes_and_failures() -> None:
    # Not vacuous: the light runs above change both messages, and fail as the full run does.
    text = _LIGHT_POLICIES["headers read and edited"]
    decided, head = _phases(text, _LIGHT_REQUESTS["kept"], light=True)
    assert isinstance(decided, Policed)
    assert decided.request.headers == [
        (b"Host", b"app.test"),
        (b"X-Bench-Client", b"w"),
        (b"x-keep", b"again"),
        (b"x-client", b"203.0.113.9"),
    ]
    assert head == [
        (b"Content-Length", b"5"),
        (b"X-Other", b"1"),
        (b"x-server", b"nginx"),
        (b"x-req", b"1"),  # the request as it came: the phase reads its facts
    ]
    policy = attached(text)
    request_phase(_LIGHT_REQUESTS["kept"], PolicyRoute(text), policy, now=NOW)
    assert policy.compiled.light["on_http_request"] is not None  # it did run light
    failed, _ = _phases(_LIGHT_POLICIES["header injection"], _LIGHT_REQUESTS["evil"], light=True)
    assert isinstance(failed, PolicyAnswer) and failed.status == 500
    assert (b"Burrow-Error-Code", b"ERR_NGROK_2238") in failed.headers
    _, head = _phases(_LIGHT_POLICIES["header injection"], _LIGHT_REQUESTS["kept"], light=True)
    assert isinstance(head, PolicyAnswer) and (b"Burrow-Error-Code", b"ERR_NGROK_2254") in (
        head.headers
    )


_STATUS_ONLY = """
on_http_response:
  - expressions: ["res.status_code == 200"]
    actions:
      - type: add-headers
        config: {headers: {x-ok: "1"}}
  - expressions: ["res.status_code >= 500"]
    actions:
      - type: add-headers
        config: {headers: {x-failed: "1"}}
  - actions:
      - type: remove-headers
        config: {headers: [server, x-ok]}
"""
_READS_THE_HEADERS = """
on_http_response:
  - expressions: ["res.status_code == 200 && hasResHeader('x-mark')"]
    actions:
      - type: add-headers
        config: {headers: {x-marked: "1"}}
"""


def test_a_response_phase_of_the_status_alone_repeats_its_changes_by_status() -> None:
    policy = attached(_STATUS_ONLY)
    decided = request_phase(request(), PolicyRoute(_STATUS_ONLY), policy, now=NOW)
    assert isinstance(decided, Policed)
    head = [(b"Server", b"nginx"), (b"Content-Length", b"5")]
    expected = {
        200: [(b"Content-Length", b"5")],
        502: [(b"Content-Length", b"5"), (b"x-failed", b"1")],
        404: [(b"Content-Length", b"5")],
    }
    for _ in range(2):  # run, then from what the runs left
        for status, want in expected.items():
            assert response_phase(decided.response, status, list(head), now=NOW) == want
    light = policy.compiled.light["on_http_response"]
    assert light is not None and light.by_status is not None
    assert sorted(light.by_status) == [200, 404, 502]
    assert light.by_status[200] == (("server", "x-ok"), ())  # x-ok added, then removed
    # the same as the full run, every time
    full = attached(_STATUS_ONLY)
    full.compiled.light.update(on_http_request=None, on_http_response=None)
    again = request_phase(request(), PolicyRoute(_STATUS_ONLY), full, now=NOW)
    assert isinstance(again, Policed)
    for status, want in expected.items():
        assert response_phase(again.response, status, list(head), now=NOW) == want
    # a status no codec passes is answered, not kept
    assert response_phase(decided.response, 1000, list(head), now=NOW) == expected[502]
    assert 1000 not in light.by_status


def test_a_response_phase_that_reads_more_than_the_status_runs_every_time() -> None:
    policy = attached(_READS_THE_HEADERS)
    decided = request_phase(request(), PolicyRoute(_READS_THE_HEADERS), policy, now=NOW)
    assert isinstance(decided, Policed)
    marked = [(b"X-Mark", b"1")]
    assert response_phase(decided.response, 200, marked, now=NOW) == [
        (b"X-Mark", b"1"),
        (b"x-marked", b"1"),
    ]
    assert response_phase(decided.response, 200, [(b"X-Other", b"1")], now=NOW) == [
        (b"X-Other", b"1")
    ]
    light = policy.compiled.light["on_http_response"]
    assert light is not None and light.by_status is None
