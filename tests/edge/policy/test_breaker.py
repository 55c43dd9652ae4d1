"""edge/policy/breaker.py: the breaker's states over an injected clock, and the action run
through the engine (503 ERR_NGROK_3202 while open, outcomes carried to the shell)."""

from __future__ import annotations

import pytest

from edge.policy.actions_breaker import CircuitBreakerConfig
from edge.policy.breaker import (
    ERR_NGROK_3202,
    Breaker,
    BreakerState,
    is_error,
    record_outcomes,
)
from edge.policy.engine import Forward, Respond, run_http_request
from edge.policy.ratelimit import PolicyState
from tests.edge.policy.engine_helpers import CONN, ENDPOINT, NOW, policy, request

# window 10s in 10 buckets of 1s; trips at >= 50% errors over >= 4 requests; open for 5s
CONFIG = CircuitBreakerConfig(
    error_threshold=0.5,
    volume_threshold=4,
    window_seconds=10.0,
    tripped_seconds=5.0,
    num_buckets=10,
    enforce=True,
)


def state_of(breaker: Breaker) -> BreakerState:
    return breaker.state  # (read through a call: mypy would keep the narrowed state)


def feed(breaker: Breaker, now: float, outcomes: str) -> None:
    """Forward one request per character at `now`: 'e' fails, 'o' succeeds."""
    for outcome in outcomes:
        assert breaker.allow(now)
        breaker.record(now, failed=outcome == "e")


def test_below_the_volume_threshold_it_never_trips() -> None:
    breaker = Breaker(CONFIG)
    feed(breaker, 100.0, "eee")
    assert state_of(breaker) is BreakerState.CLOSED
    assert breaker.counts(100.0) == (3, 3)


def test_it_trips_at_the_volume_once_the_error_share_reaches_the_threshold() -> None:
    breaker = Breaker(CONFIG)
    feed(breaker, 100.0, "ooe")
    feed(breaker, 100.5, "e")  # 4 requests, 2 errors: 50% >= 0.5
    assert state_of(breaker) is BreakerState.OPEN
    assert not breaker.allow(100.6)
    assert not breaker.allow(104.9)


def test_a_low_error_share_keeps_it_closed() -> None:
    breaker = Breaker(CONFIG)
    feed(breaker, 100.0, "oooeooo")
    assert state_of(breaker) is BreakerState.CLOSED


def test_outcomes_older_than_the_window_no_longer_count() -> None:
    breaker = Breaker(CONFIG)
    feed(breaker, 100.0, "eee")
    assert breaker.counts(109.9) == (3, 3)  # bucket 100 is still in the window ending at 109
    assert breaker.counts(110.0) == (0, 0)  # and out of the one ending at 110
    feed(breaker, 110.0, "e")  # only 1 request in the window: under the volume
    assert state_of(breaker) is BreakerState.CLOSED


def test_buckets_slide_one_at_a_time() -> None:
    breaker = Breaker(CONFIG)
    feed(breaker, 100.0, "e")
    feed(breaker, 105.0, "ee")
    assert breaker.counts(109.0) == (3, 3)
    assert breaker.counts(110.0) == (2, 2)  # the 100s bucket left, the 105s one stays
    feed(breaker, 110.0, "o")
    assert state_of(breaker) is BreakerState.CLOSED  # 3 in the window, under the volume of 4
    feed(breaker, 110.5, "e")  # 4 in the window, 3 errors
    assert state_of(breaker) is BreakerState.OPEN


def test_after_the_tripped_duration_one_probe_goes_through() -> None:
    breaker = Breaker(CONFIG)
    feed(breaker, 100.0, "eeee")
    assert state_of(breaker) is BreakerState.OPEN
    assert breaker.allow(105.0)  # the probe
    assert state_of(breaker) is BreakerState.HALF_OPEN
    assert not breaker.allow(105.1)  # everyone else still waits for its outcome


def test_a_successful_probe_closes_it_with_an_empty_window() -> None:
    breaker = Breaker(CONFIG)
    feed(breaker, 100.0, "eeee")
    assert breaker.allow(105.0)
    breaker.record(105.2, failed=False)
    assert state_of(breaker) is BreakerState.CLOSED
    assert breaker.counts(105.2) == (0, 0)
    assert breaker.allow(105.3) and breaker.allow(105.3)


def test_a_failed_probe_trips_it_again_from_then() -> None:
    breaker = Breaker(CONFIG)
    feed(breaker, 100.0, "eeee")
    assert breaker.allow(105.0)
    breaker.record(106.0, failed=True)
    assert state_of(breaker) is BreakerState.OPEN
    assert not breaker.allow(110.9)  # open for 5s from 106
    assert breaker.allow(111.0)


def test_a_lost_probe_is_replaced_after_the_tripped_duration() -> None:
    breaker = Breaker(CONFIG)
    feed(breaker, 100.0, "eeee")
    assert breaker.allow(105.0)  # its outcome never comes
    assert not breaker.allow(109.9)
    assert breaker.allow(110.0)


def test_outcomes_arriving_while_open_are_ignored() -> None:
    breaker = Breaker(CONFIG)
    feed(breaker, 100.0, "eeee")
    breaker.record(101.0, failed=False)  # a request let through before the trip
    assert state_of(breaker) is BreakerState.OPEN
    assert not breaker.allow(101.0)


def test_a_clock_stepping_back_counts_into_the_newest_bucket() -> None:
    breaker = Breaker(CONFIG)
    feed(breaker, 100.0, "o")
    feed(breaker, 50.0, "ee")
    assert breaker.counts(100.0) == (3, 2)


def test_error_threshold_zero_trips_on_volume_alone() -> None:
    # ngrok's example: volume 1, threshold 0.0: the first request trips it
    breaker = Breaker(CircuitBreakerConfig(0.0, 1, 60.0, 120.0, 10, True))
    feed(breaker, 100.0, "o")
    assert state_of(breaker) is BreakerState.OPEN


@pytest.mark.parametrize(
    ("status", "expected"), [(None, True), (500, True), (503, True), (499, False), (200, False)]
)
def test_errors_are_5xx_or_no_response(status: int | None, expected: bool) -> None:
    assert is_error(status) is expected


def on_request(text: str, *, state: PolicyState, now: float = NOW) -> object:
    # (engine_helpers.on_request replaces an empty state, which is falsy: it has no buckets)
    return run_http_request(policy(text), CONN, request(), endpoint=ENDPOINT, now=now, state=state)


POLICY = """
on_http_request:
  - actions:
      - type: circuit-breaker
        config:
          error_threshold: 0.5
          volume_threshold: 2
          window_duration: 10s
          tripped_duration: 5s
"""


def test_the_action_passes_requests_and_carries_its_breaker_to_the_shell() -> None:
    state = PolicyState()
    outcome = on_request(POLICY, state=state)
    assert isinstance(outcome, Forward)
    assert len(outcome.carried.breakers) == 1
    assert "circuit_breaker" not in outcome.carried.results  # ngrok sets no variables
    (breaker,) = outcome.carried.breakers
    assert list(state.breakers.values()) == [breaker]
    record_outcomes(outcome.carried.breakers, status=502, now=NOW)
    second = on_request(POLICY, state=state, now=NOW + 1)
    assert isinstance(second, Forward)
    assert second.carried.breakers == (breaker,)  # the same breaker across requests
    record_outcomes(second.carried.breakers, status=None, now=NOW + 1)  # no response at all
    assert state_of(breaker) is BreakerState.OPEN


def test_an_open_breaker_answers_503_with_ngroks_code() -> None:
    state = PolicyState()
    for _ in range(2):
        outcome = on_request(POLICY, state=state)
        assert isinstance(outcome, Forward)
        record_outcomes(outcome.carried.breakers, status=500, now=NOW)
    refused = on_request(POLICY, state=state, now=NOW + 1)
    assert isinstance(refused, Respond)
    assert refused.status == 503
    assert ("ngrok-error-code", ERR_NGROK_3202) in refused.headers
    assert refused.body.startswith(ERR_NGROK_3202.encode())
    assert refused.error_code is None  # an action's answer, not a runtime failure
    after = on_request(POLICY, state=state, now=NOW + 5)  # half-open: the probe passes
    assert isinstance(after, Forward)


def test_enforce_false_never_refuses_and_counts_nothing() -> None:
    relaxed = POLICY + "          enforce: false\n"
    state = PolicyState()
    for second in range(5):
        outcome = on_request(relaxed, state=state, now=NOW + second)
        assert isinstance(outcome, Forward)
        assert outcome.carried.breakers == ()
    assert state.breakers == {}


def test_two_breakers_in_one_policy_count_separately() -> None:
    two = POLICY + POLICY.replace("on_http_request:\n", "")
    state = PolicyState()
    outcome = on_request(two, state=state)
    assert isinstance(outcome, Forward)
    first, second = outcome.carried.breakers
    assert first is not second
    assert len(state.breakers) == 2
