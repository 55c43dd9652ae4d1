"""Tests for edge/http/body_rate.py: the request body's rate account, with time passed in; and
the 408 the seam answers a slow body with."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.config import HttpConfig
from edge.http.body_rate import BodyLimits, BodyRate, SlowBody
from edge.http.seam import ClientTooSlowError, Failure, failure_kind, failure_response

LIMITS = BodyLimits(min_rate=500, window=20.0, total=3600.0)
START = 1000.0


def test_limits_come_from_the_http_config_and_default_to_apaches() -> None:
    assert BodyLimits.of(HttpConfig()) == LIMITS  # mod_reqtimeout's body=20,MinRate=500
    custom = HttpConfig(body_min_rate=10, body_rate_window=2.0, body_timeout=30.0)
    assert BodyLimits.of(custom) == BodyLimits(min_rate=10, window=2.0, total=30.0)


def test_a_silent_body_gets_the_window_as_grace() -> None:
    rate = BodyRate(LIMITS, now=START)
    assert rate.wait(START) == START + 20.0
    assert rate.wait(START + 5.0) == START + 20.0  # a wait that goes on keeps its deadline
    assert rate.verdict(START + 19.9) is None
    assert rate.verdict(START + 20.0) is SlowBody.TOO_SLOW


def test_a_byte_every_three_seconds_is_cut_within_the_window() -> None:
    """The probe of the hardening issue: 500 clients, a byte every 3 s, held for a minute."""
    rate = BodyRate(LIMITS, now=START)
    now = START
    deadline = rate.wait(now)
    while now + 3.0 < deadline:
        now += 3.0
        rate.received(1, now)
        deadline = rate.wait(now)
    assert START + 20.0 <= deadline < START + 20.1  # each byte earned 2 ms
    assert rate.verdict(deadline) is SlowBody.TOO_SLOW


def test_bytes_earn_credit_up_to_the_window() -> None:
    rate = BodyRate(LIMITS, now=START)
    rate.wait(START)
    rate.received(2500, START + 10.0)  # 10 s spent, 5 s earned: 15 s left
    assert rate.wait(START + 10.0) == START + 25.0
    rate.received(10_000_000, START + 11.0)  # 20,000 s earned, but at most the window is held
    assert rate.wait(START + 11.0) == START + 31.0


def test_a_fast_start_cannot_buy_a_long_trickle() -> None:
    rate = BodyRate(LIMITS, now=START)
    rate.wait(START)
    rate.received(100 * 1024 * 1024, START + 1.0)  # 100 MiB in a second
    deadline = rate.wait(START + 1.0)
    assert deadline == START + 21.0  # no more than the window in hand
    assert rate.verdict(deadline) is SlowBody.TOO_SLOW


def test_a_steady_body_at_the_minimum_rate_never_runs_out() -> None:
    rate = BodyRate(LIMITS, now=START)
    for second in range(1000):
        now = START + second
        assert rate.verdict(now) is None
        assert rate.wait(now) >= now + 19.0
        rate.received(500, now + 1.0)


def test_time_not_spent_waiting_for_the_client_costs_nothing() -> None:
    """Writes to a slow upstream (between `received` and the next `wait`) are not the client's."""
    rate = BodyRate(LIMITS, now=START)
    rate.wait(START)
    rate.received(0, START + 15.0)  # 15 s of credit spent waiting: 5 s left
    assert rate.verdict(START + 100.0) is None  # 85 s writing to the agent stream
    assert rate.wait(START + 100.0) == START + 105.0


def test_hold_stops_the_rate_while_the_client_waits_for_100_continue() -> None:
    rate = BodyRate(LIMITS, now=START)
    rate.wait(START)
    assert rate.hold(START + 5.0) == START + 3600.0  # only the total time counts now
    assert rate.verdict(START + 500.0) is None
    assert rate.wait(START + 500.0) == START + 515.0  # the 15 s left before the hold


def test_the_total_time_bounds_even_a_fast_body() -> None:
    limits = BodyLimits(min_rate=500, window=20.0, total=60.0)
    rate = BodyRate(limits, now=START)
    now = START
    while now < START + 50.0:
        assert rate.wait(now) == min(now + 20.0, START + 60.0)
        now += 1.0
        rate.received(1_000_000, now)
    assert rate.wait(now) == START + 60.0
    assert rate.verdict(START + 59.9) is None
    assert rate.verdict(START + 60.0) is SlowBody.TOO_LONG
    assert rate.hold(now) == START + 60.0


def test_descriptions_name_the_limits() -> None:
    rate = BodyRate(LIMITS, now=START)
    assert rate.describe(SlowBody.TOO_SLOW) == (
        "the request body came slower than 500 bytes/s (over a 20s window)"
    )
    assert rate.describe(SlowBody.TOO_LONG) == "the request body took longer than 3600s"


@pytest.mark.parametrize("late", [0.0, 0.5])
def test_bytes_after_the_deadline_do_not_undo_it(late: float) -> None:
    rate = BodyRate(LIMITS, now=START)
    deadline = rate.wait(START)
    rate.received(1, deadline + late)
    assert rate.verdict(deadline + late) is SlowBody.TOO_SLOW


@given(
    steps=st.lists(st.tuples(st.integers(0, 120), st.integers(0, 400), st.booleans()), max_size=60)
)
def test_a_body_is_cut_exactly_when_it_falls_a_window_behind(
    steps: list[tuple[int, int, bool]],
) -> None:
    """Against a direct model: credit = window, minus waits, plus bytes / rate, capped. (Gaps
    in quarter seconds and sizes in 125-byte steps keep the arithmetic exact.)"""
    limits = BodyLimits(min_rate=500, window=20.0, total=1e9)
    rate = BodyRate(limits, now=0.0)
    credit = limits.window
    now = 0.0
    for quarters, pieces, waited in steps:
        gap, size = quarters / 4, pieces * 125
        if waited:
            assert rate.wait(now) == now + credit
            credit -= gap
        now += gap
        rate.received(size, now)
        if credit <= 0:
            assert rate.verdict(now) is SlowBody.TOO_SLOW
            return
        credit = min(credit + size / limits.min_rate, limits.window)
        assert rate.verdict(now) is None


# ------------------------------------------------------------------------ the seam's answer


def test_a_slow_body_is_a_408_through_the_seams_failure_table() -> None:
    limits = HttpConfig(body_min_rate=123, body_timeout=456.0)
    assert failure_kind(ClientTooSlowError("why")) is Failure.BODY_TIMEOUT
    answer = failure_response(Failure.BODY_TIMEOUT, limits=limits, detail="the body was slow")
    assert (answer.page.status, answer.page.code) == (408, "BURROW_REQUEST_TIMEOUT")
    assert answer.page.reason == b"Request Timeout"
    assert answer.reason == "the body was slow"
    assert "123 bytes a second" in answer.page.message and "456 seconds" in answer.page.message
