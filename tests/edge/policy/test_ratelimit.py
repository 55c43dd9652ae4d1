"""edge/policy/ratelimit.py: sliding-window counters, bounded buckets, the clock passed in."""

from __future__ import annotations

import pytest

from edge.policy.ratelimit import Decision, PolicyState, PolicyStateLimits

START = 6000.0  # a multiple of 60: the start of a window


def test_capacity_per_window_then_retry_after() -> None:
    state = PolicyState()
    assert [state.hit(("k",), capacity=2, rate=60, now=START).allowed for _ in range(2)] == [
        True,
        True,
    ]
    # Next window: the 2 weigh 2 * (1 - f) and must come down to 1, at f = 1/2 (second 90).
    assert state.hit(("k",), capacity=2, rate=60, now=START + 10) == Decision(False, 80)
    assert not state.hit(("k",), capacity=2, rate=60, now=START + 89).allowed
    assert state.hit(("k",), capacity=2, rate=60, now=START + 90).allowed


def test_refused_requests_are_not_counted() -> None:
    state = PolicyState()
    state.hit(("k",), capacity=1, rate=60, now=START)
    for second in range(1, 50):
        assert not state.hit(("k",), capacity=1, rate=60, now=START + second).allowed
    # Only the one allowed request weighs on the next windows: gone after 120s.
    assert state.hit(("k",), capacity=1, rate=60, now=START + 120).allowed


def test_buckets_are_independent() -> None:
    state = PolicyState()
    assert state.hit(("a",), capacity=1, rate=60, now=START).allowed
    assert state.hit(("b",), capacity=1, rate=60, now=START).allowed
    assert not state.hit(("a",), capacity=1, rate=60, now=START).allowed


def test_least_recently_used_bucket_is_evicted_at_the_limit() -> None:
    state = PolicyState(PolicyStateLimits(max_buckets=2))
    state.hit(("a",), capacity=1, rate=60, now=START)
    state.hit(("b",), capacity=1, rate=60, now=START)
    assert not state.hit(("a",), capacity=1, rate=60, now=START).allowed  # `a` is now newest
    state.hit(("c",), capacity=1, rate=60, now=START)  # evicts `b`
    assert len(state) == 2
    assert state.hit(("b",), capacity=1, rate=60, now=START).allowed  # `b` starts afresh
    assert len(state) == 2


def test_a_clock_that_steps_back_counts_as_no_time_passed() -> None:
    state = PolicyState()
    assert state.hit(("k",), capacity=1, rate=60, now=START + 100).allowed
    refused = state.hit(("k",), capacity=1, rate=60, now=START - 500)
    assert not refused.allowed
    assert refused.retry_after >= 1


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="max_buckets"):
        PolicyStateLimits(max_buckets=0)
