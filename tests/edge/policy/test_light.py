"""edge/policy/light.py: the light run of a header-edit phase gives the planned run's changes.

Differential: every policy of `tests.edge.policy.test_plan` (and a few light-only ones here) on
each request and response, as far as its phases are planned light: the light run either gives
the same header changes (`removed`, `added`) and variables as the edge's planned run
(`run_http_request_edits`/`run_http_response_edits`), or gives up, and it gives up exactly
where the planned run leaves something to cel-python or fails (then the shell runs the phase
in full). Planning: which phases run light, and which must not (their results can be read,
an action does more than edit headers, a direct closure is missing).
"""

from __future__ import annotations

import pytest

from edge.policy.activation import ConnFacts, RequestFacts, ResponseFacts
from edge.policy.engine import run_http_request_edits, run_http_response_edits
from edge.policy.light import GIVE_UP_LIMIT, LightRun, light_plan
from edge.policy.outcomes import carried_by
from edge.policy.phase import PhaseRun
from edge.policy.ratelimit import PolicyState
from tests.edge.policy.engine_helpers import CONN, ENDPOINT, NOW, policy, request
from tests.edge.policy.test_plan import LOOPBACK, POLICIES, REQUESTS, RESPONSES

# Light-eligible phases that give up, and ones reading the response's headers.
LIGHT = {
    "light non-boolean": """
on_http_request:
  - expressions: ["req.method"]
    actions:
      - type: add-headers
        config: {headers: {x-never: "1"}}
""",
    "light missing var": """
on_http_request:
  - actions:
      - type: set-vars
        config: {vars: [{a: "1"}]}
  - expressions: ["vars.a == '1'", "vars.missing == 'x'"]
    actions:
      - type: add-headers
        config: {headers: {x-never: "1"}}
""",
    "light response headers": """
on_http_request:
  - expressions: ["hasReqHeader('x-keep')"]
    actions:
      - type: remove-headers
        config: {headers: [x-keep, x-api-key]}
      - type: add-headers
        config: {headers: {x-keep: "again", x-ua: "${getReqHeader('x-api-key')}"}}
  - expressions: ["getReqHeader('x-keep')[0] == 'again' && !hasReqHeader('x-api-key')"]
    actions:
      - type: add-headers
        config: {headers: {x-seen: "${getReqHeader('x-keep')[0]}"}}
on_http_response:
  - expressions: ["hasResHeader('server')"]
    actions:
      - type: add-headers
        config: {headers: {x-server: "${getResHeader('server')[0]}", x-m: "${req.method}"}}
      - type: remove-headers
        config: {headers: [server, x-server]}
      - type: add-headers
        config: {headers: {server: burrow, x-path: "${req.url.path}"}}
  - expressions: ["getResHeader('server')[0] == 'burrow' && !hasResHeader('x-server')"]
    actions:
      - type: add-headers
        config: {headers: {x-done: "${res.status_code}", x-ua: "${getReqHeader('user-agent')[0]}"}}
""",
    # A NUL copied into a header: the engine's rendering refuses it, so the light run gives up.
    "light nul value": """
on_http_request:
  - expressions: ["hasReqHeader('x-nul')"]
    actions:
      - type: add-headers
        config: {headers: {x-copied: "${getReqHeader('x-nul')[0]}"}}
""",
    # Booleans that are CEL values but not the closures' TRUE and FALSE (set-vars keeps them).
    "light boolean vars": """
on_http_request:
  - actions:
      - type: set-vars
        config: {vars: [{yes_flag: true}, {no_flag: false}]}
  - expressions: ["vars.yes_flag"]
    actions:
      - type: add-headers
        config: {headers: {x-yes: "1"}}
  - expressions: ["vars.no_flag"]
    actions:
      - type: add-headers
        config: {headers: {x-no: "1"}}
""",
    # Each comparison and string test the light run writes out in line, true and false
    # across the requests and responses of the differential.
    "light comparisons": """
on_http_request:
  - expressions: ["req.url.path < '/small'"]
    actions:
      - type: add-headers
        config: {headers: {x-lt: "1"}}
  - expressions: ["req.url.path <= '/small'"]
    actions:
      - type: add-headers
        config: {headers: {x-le: "1"}}
  - expressions: ["req.url.path > '/small'"]
    actions:
      - type: add-headers
        config: {headers: {x-gt: "1"}}
  - expressions: ["req.url.path >= '/small'"]
    actions:
      - type: add-headers
        config: {headers: {x-ge: "1"}}
  - expressions: ["req.method != 'GET'"]
    actions:
      - type: add-headers
        config: {headers: {x-ne: "1"}}
  - expressions: ["req.url.path.endsWith('/old')"]
    actions:
      - type: add-headers
        config: {headers: {x-ends: "1"}}
  - expressions: ["req.url.path.contains('mal')"]
    actions:
      - type: add-headers
        config: {headers: {x-contains: "1"}}
  - expressions: ["!req.url.path.startsWith('/abc')"]
    actions:
      - type: add-headers
        config: {headers: {x-not-starts: "1"}}
  - expressions: ["conn.client_port >= 1024 && req.method == 'GET'"]
    actions:
      - type: add-headers
        config: {headers: {x-port: "1"}}
on_http_response:
  - expressions: ["res.status_code < 200"]
    actions:
      - type: add-headers
        config: {headers: {x-lt: "1"}}
  - expressions: ["res.status_code <= 200"]
    actions:
      - type: add-headers
        config: {headers: {x-le: "1"}}
  - expressions: ["res.status_code > 200"]
    actions:
      - type: add-headers
        config: {headers: {x-gt: "1"}}
  - expressions: ["res.status_code >= 502"]
    actions:
      - type: add-headers
        config: {headers: {x-ge: "1"}}
  - expressions: ["res.status_code != 502"]
    actions:
      - type: add-headers
        config: {headers: {x-ne: "1"}}
  - expressions: ["!(res.status_code == 200)"]
    actions:
      - type: add-headers
        config: {headers: {x-not: "1"}}
  - expressions: ["hasReqHeader('x-keep')"]
    actions:
      - type: add-headers
        config: {headers: {x-req-keep: "1"}}
""",
}
ALL = {**POLICIES, **LIGHT}
# A request with a NUL in a header value (the policies above copy it into another header).
NUL_REQUEST = request("/", headers=(("X-Nul", "a\x00b"),))


def _light_request(
    text: str, conn: ConnFacts, req: RequestFacts
) -> tuple[bool | None, LightRun | None]:
    """(None: not planned light | the light run's answer, the run)."""
    compiled = policy(text)
    plan = light_plan(compiled, "on_http_request")
    if plan is None:
        return None, None
    run = LightRun(conn, req, tuple(key.lower() for key, _ in req.headers))
    return plan.run(run), run


def _light_response(
    text: str, conn: ConnFacts, req: RequestFacts, res: ResponseFacts
) -> tuple[bool | None, LightRun | None]:
    compiled = policy(text)
    plan = light_plan(compiled, "on_http_response")
    if plan is None:
        return None, None
    lowered = tuple(key.lower() for key, _ in res.headers)

    def decode() -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
        return res.headers, lowered

    facts = ResponseFacts(status=res.status, headers=())  # light runs read headers by `decode`
    run = LightRun(conn, req, None, facts, decode)
    return plan.run(run), run


@pytest.mark.parametrize("name", sorted(ALL))
@pytest.mark.parametrize("req", [*REQUESTS, NUL_REQUEST], ids=["get", "post", "bench", "nul"])
@pytest.mark.parametrize("res", RESPONSES, ids=["200", "502"])
@pytest.mark.parametrize("conn", [CONN, LOOPBACK], ids=["remote", "loopback"])
def test_a_light_run_gives_the_planned_runs_changes_or_gives_up(
    name: str, conn: ConnFacts, req: RequestFacts, res: ResponseFacts
) -> None:
    text = ALL[name]
    compiled = policy(text)
    state = PolicyState()
    full = run_http_request_edits(compiled, conn, req, endpoint=ENDPOINT, now=NOW, state=state)
    done, light = _light_request(text, conn, req)
    if done is not None:
        assert light is not None
        if done:  # the planned run forwarded the request with these changes, carrying nothing
            assert isinstance(full, PhaseRun)
            assert (light.removed, light.added) == (full.removed, full.added)
            assert light.vars == full.vars
            assert full.target is None and not full.logs and not full.body_steps
            assert not full.breakers
        else:  # the planned run failed the request or asked cel-python: the full run's own
            assert not isinstance(full, PhaseRun) or full.built_activation is not None
    carried = carried_by(full) if isinstance(full, PhaseRun) else getattr(full, "carried", None)
    second = run_http_response_edits(
        compiled, conn, req, res, endpoint=ENDPOINT, now=NOW, state=state, carried=carried
    )
    done, light = _light_response(text, conn, req, res)
    if done is None:
        return
    assert light is not None
    if done:
        assert isinstance(second, PhaseRun)
        assert (light.removed, light.added) == (second.removed, second.added)
        assert light.vars == second.vars
        assert not second.logs and not second.body_steps
    else:
        assert not isinstance(second, PhaseRun) or second.built_activation is not None


def test_the_differential_covers_light_runs_that_change_and_that_give_up() -> None:
    # Not vacuous: the cases above run light, change both messages, and give up.
    req = REQUESTS[1]
    done, run = _light_request(LIGHT["light response headers"], CONN, req)
    assert done is True and run is not None
    assert run.removed == ["x-keep", "x-api-key"]
    assert run.added == [("x-keep", "again"), ("x-ua", "[]"), ("x-seen", "again")]
    done, run = _light_response(LIGHT["light response headers"], CONN, req, RESPONSES[0])
    assert done is True and run is not None
    assert run.removed == ["server", "x-server"]
    assert run.added == [
        ("x-m", "POST"),
        ("server", "burrow"),
        ("x-path", "/abc/old"),
        ("x-done", "200"),
        ("x-ua", "curl/8.5"),
    ]
    assert run.response_lowered == ("server", "content-type")  # decoded on the first read
    for name in ("light non-boolean", "light missing var", "header injection"):
        done, _ = _light_request(ALL[name], CONN, req)
        assert done is False, name
    for name in ("failing template", "failing set-vars"):
        done, _ = _light_request(ALL[name], CONN, REQUESTS[0])
        assert done is False, name
    done, run = _light_request(LIGHT["light comparisons"], CONN, REQUESTS[2])  # GET /small
    assert done is True and run is not None
    expected = ["x-le", "x-ge", "x-contains", "x-not-starts", "x-port"]
    assert [name for name, _ in run.added] == expected
    done, _ = _light_request(LIGHT["light nul value"], CONN, NUL_REQUEST)
    assert done is False
    done, run = _light_request(LIGHT["light boolean vars"], CONN, req)
    assert done is True and run is not None
    assert run.added == [("x-yes", "1")]


def test_the_benchmark_policy_runs_light_in_both_phases() -> None:
    req = REQUESTS[2]
    done, run = _light_request(POLICIES["bench10"], LOOPBACK, req)
    assert done is True and run is not None
    assert run.added == [
        ("x-bench-route", "small"),
        ("x-bench-client-name", "wrk"),
        ("x-bench-network", "loopback"),
    ]
    done, run = _light_response(POLICIES["bench10"], LOOPBACK, req, RESPONSES[0])
    assert done is True and run is not None
    assert (run.removed, run.added) == (["server"], [("x-bench-policy", "rules10")])
    assert run.response_lowered is None  # no response header read: none decoded


HEADERS_ONLY = """
on_http_request:
  - expressions: ["req.method == 'GET'"]
    actions:
      - type: add-headers
        config: {headers: {x-a: "1"}}
on_http_response:
  - actions:
      - type: remove-headers
        config: {headers: [server]}
"""


@pytest.mark.parametrize(
    ("text", "phase"),
    [
        # a later expression or string of the phase names `actions`
        (
            "on_http_request:\n  - actions:\n      - {type: add-headers, config: "
            "{headers: {x-a: '1'}}}\n  - expressions: ['size(actions.ngrok) > 0']\n"
            "    actions:\n      - {type: add-headers, config: {headers: {x-b: '1'}}}\n",
            "on_http_request",
        ),
        (
            "on_http_response:\n  - actions:\n      - {type: add-headers, config: "
            "{headers: {x-a: '${actions.ngrok}'}}}\n",
            "on_http_response",
        ),
        # the response phase reads the request phase's results
        (
            "on_http_request:\n  - actions:\n      - {type: add-headers, config: "
            "{headers: {x-a: '1'}}}\non_http_response:\n  - expressions: "
            "['size(actions.ngrok) > 0']\n    actions:\n      - {type: add-headers, "
            "config: {headers: {x-b: '1'}}}\n",
            "on_http_request",
        ),
        # an action that does more than edit headers
        ("on_http_request:\n  - actions:\n      - {type: deny}\n", "on_http_request"),
        # the Host header (an added one also changes req.host)
        (
            "on_http_request:\n  - actions:\n      - {type: add-headers, config: "
            "{headers: {host: a.test}}}\n",
            "on_http_request",
        ),
        (
            "on_http_request:\n  - actions:\n      - {type: remove-headers, config: "
            "{headers: [host]}}\n",
            "on_http_request",
        ),
        # no direct closure: left to cel-python
        (
            "on_http_request:\n  - expressions: [\"req.url.path.matches('^/a')\"]\n"
            "    actions:\n      - {type: add-headers, config: {headers: {x-a: '1'}}}\n",
            "on_http_request",
        ),
        # endpoint.* and time are read through the views: every light run would give up
        (
            'on_http_request:\n  - expressions: ["endpoint.port == 443"]\n'
            "    actions:\n      - {type: add-headers, config: {headers: {x-a: '1'}}}\n",
            "on_http_request",
        ),
        (
            "on_http_response:\n  - actions:\n      - {type: set-vars, config: "
            "{vars: [{a: '${endpoint.url}'}]}}\n",
            "on_http_response",
        ),
        # a set-vars value of a shape only the engine types (a list)
        (
            "on_http_request:\n  - actions:\n      - {type: set-vars, config: "
            "{vars: [{a: [1, 2]}]}}\n",
            "on_http_request",
        ),
    ],
)
def test_a_phase_that_could_be_seen_doing_more_is_not_planned_light(text: str, phase: str) -> None:
    compiled = policy(text)
    assert light_plan(compiled, phase) is None
    assert compiled.light == {phase: None}  # kept: planned once


def test_a_header_edit_phase_is_planned_light_once() -> None:
    compiled = policy(HEADERS_ONLY)
    first = light_plan(compiled, "on_http_request")
    assert first is not None
    assert light_plan(compiled, "on_http_request") is first
    assert light_plan(compiled, "on_http_response") is not None


def test_a_phase_that_keeps_giving_up_runs_in_full_from_then_on() -> None:
    # header injection gives up on the evil request only; the clean one resets the count
    compiled = policy(POLICIES["header injection"])
    plan = light_plan(compiled, "on_http_request")
    assert plan is not None
    evil, clean = REQUESTS[1], request(headers=(("X-Evil", "fine"),))

    def once(req: RequestFacts) -> bool:
        run = LightRun(CONN, req, tuple(key.lower() for key, _ in req.headers))
        return plan.run(run)

    for _ in range(GIVE_UP_LIMIT - 1):
        assert once(evil) is False
    assert plan.misses == GIVE_UP_LIMIT - 1
    assert once(clean) is True and plan.misses == 0
    assert light_plan(compiled, "on_http_request") is plan
    for _ in range(GIVE_UP_LIMIT):
        assert once(evil) is False
    assert light_plan(compiled, "on_http_request") is None
    assert compiled.light["on_http_request"] is None  # for good
