"""The reconnect schedule: full jitter under a ceiling of 0.5 s doubling to 30 s, and when it
starts over."""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Callable
from random import Random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.backoff import (
    BACKOFF_BASE,
    BACKOFF_CAP,
    BACKOFF_RESET_AFTER,
    backoff_ceiling,
    backoff_delays,
    stayed_up,
)

ALMOST_ONE = 1.0 - 2**-53


def take(random: Callable[[], float], count: int, **kwargs: float) -> list[float]:
    return list(itertools.islice(backoff_delays(random, **kwargs), count))


def test_the_ceilings_are_ngrok_gos_schedule() -> None:
    ceilings = [backoff_ceiling(n) for n in range(9)]
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert backoff_ceiling(10_000) == BACKOFF_CAP  # no float overflow far past the cap
    with pytest.raises(ValueError, match="attempt must be 0 or more"):
        backoff_ceiling(-1)


def test_each_wait_is_random_times_its_ceiling() -> None:
    assert take(lambda: 0.0, 4) == [0.0, 0.0, 0.0, 0.0]  # full jitter may not wait at all
    assert take(lambda: 0.5, 8) == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0]
    highest = take(lambda: ALMOST_ONE, 8)
    for delay, ceiling in zip(highest, [0.5, 1, 2, 4, 8, 16, 30, 30], strict=True):
        assert ceiling * 0.999 < delay < ceiling


@given(st.integers(min_value=0, max_value=2**32))
def test_every_wait_lies_below_its_ceiling_and_the_cap(seed: int) -> None:
    for index, delay in enumerate(take(Random(seed).random, 20)):
        assert 0.0 <= delay < min(BACKOFF_CAP, BACKOFF_BASE * 2**index) <= BACKOFF_CAP


def test_named_base_and_cap_are_honoured() -> None:
    assert take(lambda: 0.5, 4, base=2.0, cap=5.0) == [1.0, 2.0, 2.5, 2.5]
    assert take(lambda: 0.5, 2, cap=0.2) == [0.1, 0.1]  # a cap below the base caps the first


def test_a_fleet_spreads_its_first_reconnects_over_the_whole_window() -> None:
    """1,000 agents drop at once: their first waits (seeded) fill [0, 0.5 s) evenly, with no
    100 ms slice holding much more than its fair fifth, unlike a 25%-jitter schedule whose
    waits all fall in the last 125 ms."""
    firsts = [next(backoff_delays(Random(seed).random)) for seed in range(1000)]
    assert all(0.0 <= delay < BACKOFF_BASE for delay in firsts)
    slices = [sum(1 for d in firsts if k * 0.1 <= d < (k + 1) * 0.1) for k in range(5)]
    assert min(slices) >= 150 and max(slices) <= 250, slices
    assert 0.22 < statistics.mean(firsts) < 0.28  # uniform: mean is half the ceiling
    assert statistics.pstdev(firsts) > 0.12  # uniform on [0, 0.5): 0.144


def test_later_waits_spread_over_their_larger_windows() -> None:
    """The 7th wait (ceiling 30 s) of 1,000 seeded agents covers the whole [0, 30 s)."""
    sevenths = [take(Random(seed).random, 7)[6] for seed in range(1000)]
    assert max(sevenths) < BACKOFF_CAP
    deciles = [sum(1 for d in sevenths if k * 3 <= d < (k + 1) * 3) for k in range(10)]
    assert min(deciles) >= 70 and max(deciles) <= 130, deciles


def test_a_new_iterator_starts_over() -> None:
    random = Random(3).random
    take(random, 6)
    assert all(next(backoff_delays(random)) < BACKOFF_BASE for _ in range(50))


def test_only_a_session_that_stayed_up_resets_the_schedule() -> None:
    assert stayed_up(True, BACKOFF_RESET_AFTER)
    assert stayed_up(True, 3600.0)
    assert not stayed_up(True, BACKOFF_RESET_AFTER - 0.001)  # dropped soon after binding
    assert not stayed_up(False, 3600.0)  # never bound every endpoint
    assert stayed_up(True, 1.0, reset_after=1.0)
