"""edge/policy/light_source.py: a light phase written out as one Python function.

What the function does is held to the planned run by the differential tests of
`tests/edge/policy/test_light.py`. Here: the source never holds a policy's own text (a policy
written to break out of a string literal runs as data), the function is made once per phase,
and the in-line forms are what the benchmark policy's request phase is written with.
"""

from __future__ import annotations

import re

import pytest

from edge.policy.light import LightRun, light_plan
from edge.policy.light_source import reads_only_status, source
from tests.edge.policy.engine_helpers import CONN, policy, request
from tests.edge.policy.test_plan import LOOPBACK, POLICIES, REQUESTS

# Literals, names and values written to end a Python string or statement if pasted into code.
HOSTILE = r"""
on_http_request:
  - expressions:
      - >-
        req.url.path != "'); __import__('os')._exit(3) #"
      - >-
        req.method == 'GET'
      - >-
        !hasReqHeader("x-a'); _exit(5) #")
    actions:
      - type: add-headers
        config:
          headers:
            x-breakout: >-
              '''); __import__('os')._exit(6) #
  - actions:
      - type: set-vars
        config:
          vars:
            - escape: '"; _exit(7) #'
on_http_response:
  - expressions: ["res.status_code != 599"]
    actions:
      - type: add-headers
        config:
          headers:
            x-breakout-too: \x27); _exit(8)
"""
# Every policy string above that code could be made of.
FRAGMENTS = ("__import__", "_exit(", "x-breakout", "escape", "599", "x-a")


def test_no_policy_text_is_written_into_the_source() -> None:
    compiled = policy(HOSTILE)
    for phase in ("on_http_request", "on_http_response"):
        plan = light_plan(compiled, phase)
        assert plan is not None, phase  # planned light: written out
        text, bound = source(plan.rules, plan, in_request=phase == "on_http_request")
        for fragment in FRAGMENTS:
            assert fragment not in text, (phase, fragment)
        # names in the text are the skeleton's and the bound globals, nothing else
        assert set(re.findall(r"\b_\d+\b", text)) <= set(bound)
    run = LightRun(CONN, REQUESTS[0], tuple(key.lower() for key, _ in REQUESTS[0].headers))
    plan = light_plan(compiled, "on_http_request")
    assert plan is not None
    assert plan.run(run) is True  # ran as data: every check true, every value as written
    assert run.added == [("x-breakout", "'''); __import__('os')._exit(6) #")]
    assert str(run.vars["escape"]) == '"; _exit(7) #'


def test_each_phase_is_written_out_once_and_kept() -> None:
    compiled = policy(POLICIES["bench10"])
    first = light_plan(compiled, "on_http_request")
    assert first is not None
    assert light_plan(compiled, "on_http_request") is first
    assert first.run is light_plan(compiled, "on_http_request").run  # type: ignore[union-attr]


def test_the_benchmark_policys_request_phase_calls_no_closure() -> None:
    # Its checks and values are all of in-line recipes: the only closure calls left are the
    # CIDR checks' for an address not yet remembered, and the header values come from the
    # request's names.
    compiled = policy(POLICIES["bench10"])
    plan = light_plan(compiled, "on_http_request")
    assert plan is not None
    text, _ = source(plan.rules, plan, in_request=True)
    lines = text.splitlines()
    calls = [at for at, line in enumerate(lines) if re.search(r"_\d+\(run\)", line)]
    assert len(calls) == 2, text  # the two inCidrRange checks
    assert all(lines[at - 1].strip() == "if value is None:" for at in calls), text
    assert "in run.request_lowered" in text
    run = LightRun(LOOPBACK, REQUESTS[2], tuple(key.lower() for key, _ in REQUESTS[2].headers))
    assert plan.run(run) is True
    assert ("x-bench-client-name", "wrk") in run.added


def test_a_request_without_its_folded_names_gives_up_rather_than_guess() -> None:
    # The in-line header presence reads `request_lowered`; a run made without it gives up
    # (the full run then answers), it never reads a header as absent.
    compiled = policy(POLICIES["bench10"])
    plan = light_plan(compiled, "on_http_request")
    assert plan is not None
    req = request("/small", headers=(("X-Bench-Client", "wrk"),))
    assert plan.run(LightRun(LOOPBACK, req)) is False
    assert plan.misses == 1


@pytest.mark.parametrize(
    ("rule", "only"),
    [
        ('{expressions: ["res.status_code == 200"], actions: [{type: remove-headers, '
         "config: {headers: [server]}}]}", True),
        ("{actions: [{type: set-vars, config: {vars: [{a: '1'}]}}, "
         '{type: add-headers, config: {headers: {x-a: "1"}}}]}', True),
        ('{expressions: ["res.status_code == 200 && req.method == \'GET\'"], actions: '
         '[{type: add-headers, config: {headers: {x-a: "1"}}}]}', False),
        ('{actions: [{type: add-headers, config: {headers: {x-m: "${req.method}"}}}]}', False),
        ('{expressions: ["inCidrRange(conn.client_ip, \'10.0.0.0/8\')"], actions: '
         '[{type: add-headers, config: {headers: {x-a: "1"}}}]}', False),
        ('{expressions: ["hasResHeader(\'server\')"], actions: '
         '[{type: add-headers, config: {headers: {x-a: "1"}}}]}', False),
        ("{actions: [{type: set-vars, config: {vars: [{a: '1'}]}}]}, "
         '{expressions: ["vars.a == \'1\'"], actions: '
         '[{type: add-headers, config: {headers: {x-a: "1"}}}]}', False),
    ],
)
def test_a_response_phase_reads_only_the_status_when_its_text_says_so(
    rule: str, only: bool
) -> None:
    compiled = policy(f"on_http_response: [{rule}]")
    plan = light_plan(compiled, "on_http_response")
    assert plan is not None
    text, _ = source(plan.rules, plan, in_request=False)
    assert reads_only_status(text) is only, text
    assert (plan.by_status is not None) is only
