"""The reconnect schedule: 0.5 s doubling to a 30 s cap, each delay cut by up to 25%."""

from __future__ import annotations

import itertools
from random import Random

from hypothesis import given
from hypothesis import strategies as st

from agent.backoff import BACKOFF_CAP, BACKOFF_JITTER, backoff_delays


def take(random: object, count: int) -> list[float]:
    return list(itertools.islice(backoff_delays(random), count))  # type: ignore[arg-type]


def test_without_jitter_the_schedule_is_ngrok_gos() -> None:
    assert take(lambda: 0.0, 9) == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_the_most_jitter_cuts_a_quarter() -> None:
    almost_one = 1.0 - 2**-53
    delays = take(lambda: almost_one, 7)
    bases = [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0]
    for delay, base in zip(delays, bases, strict=True):
        assert base * (1 - BACKOFF_JITTER) <= delay < base


@given(st.integers(min_value=0, max_value=2**32))
def test_every_delay_lies_within_its_bounds_and_under_the_cap(seed: int) -> None:
    delays = take(Random(seed).random, 20)
    for index, delay in enumerate(delays):
        base = min(BACKOFF_CAP, 0.5 * 2**index)
        assert base * (1 - BACKOFF_JITTER) <= delay <= base <= BACKOFF_CAP


def test_jitter_spreads_agents_out() -> None:
    firsts = {round(take(Random(seed).random, 4)[3], 6) for seed in range(20)}
    assert len(firsts) > 15


def test_a_new_iterator_starts_over() -> None:
    random = Random(3).random
    take(random, 6)
    assert next(backoff_delays(random)) <= 0.5


def test_a_small_cap_caps_the_first_delay_too() -> None:
    assert take(lambda: 0.0, 3) == [0.5, 1.0, 2.0]
    assert list(itertools.islice(backoff_delays(lambda: 0.0, cap=0.2), 2)) == [0.2, 0.2]
