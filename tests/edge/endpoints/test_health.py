"""Pool members' health and the power-of-two-choices pick (edge/endpoints/health.py)."""

from __future__ import annotations

import random
from collections import Counter

from edge.endpoints.health import (
    HEALTHY,
    Candidate,
    HealthPolicy,
    State,
    choose,
    gone,
    refused,
    state,
    succeeded,
)

POLICY = HealthPolicy(backoff=1.0, backoff_max=8.0)


def test_a_refusal_backs_off_doubling_up_to_the_maximum() -> None:
    health = HEALTHY
    ends = []
    for _ in range(6):
        health = refused(health, now=100.0, policy=POLICY, reason="8012")
        ends.append(health.down_until - 100.0)
    assert ends == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert health.failures == 6 and health.reason == "8012"


def test_state_goes_unhealthy_then_probing_then_healthy_on_success() -> None:
    health = refused(HEALTHY, now=10.0, policy=POLICY, reason="refused")
    assert state(HEALTHY, now=0.0) is State.HEALTHY
    assert state(health, now=10.5) is State.UNHEALTHY
    assert state(health, now=11.0) is State.PROBING  # back-off over: the next pick probes it
    assert state(succeeded(health), now=11.0) is State.HEALTHY
    assert succeeded(health) == HEALTHY


def test_a_failed_probe_backs_off_longer() -> None:
    first = refused(HEALTHY, now=10.0, policy=POLICY, reason="r")
    second = refused(first, now=11.0, policy=POLICY, reason="r")  # the probe failed
    assert second.down_until == 13.0


def test_gone_is_final() -> None:
    left = gone(HEALTHY, "session ended")
    assert state(left, now=0.0) is State.GONE
    assert succeeded(left) is left
    assert refused(left, now=0.0, policy=POLICY, reason="r") is left


def first_draw(n: int) -> int:
    return 0


def test_choose_never_picks_gone_or_excluded_members() -> None:
    members = [
        Candidate(gone(HEALTHY, "x"), 0),
        Candidate(HEALTHY, 5),
        Candidate(HEALTHY, 9),
    ]
    assert choose(members, now=0.0, draw=first_draw) == 1  # 1 vs 2: fewer streams wins
    assert choose(members, now=0.0, draw=first_draw, exclude=frozenset({1})) == 2
    assert choose(members, now=0.0, draw=first_draw, exclude=frozenset({1, 2})) is None
    assert choose([], now=0.0, draw=first_draw) is None


def test_choose_prefers_eligible_members_and_probes_when_back_off_ends() -> None:
    down = refused(HEALTHY, now=0.0, policy=POLICY, reason="8012")  # down until 1.0
    members = [Candidate(down, 0), Candidate(HEALTHY, 100)]
    rng = random.Random(1)
    picks = {choose(members, now=0.5, draw=rng.randrange) for _ in range(50)}
    assert picks == {1}  # the unhealthy member is left out, however loaded the other is
    assert choose(members, now=1.0, draw=first_draw) == 0  # probing: fewer streams, chosen


def test_with_no_eligible_member_the_soonest_back_off_end_is_chosen() -> None:
    later = refused(
        refused(HEALTHY, now=0.0, policy=POLICY, reason="r"), now=0.0, policy=POLICY, reason="r"
    )
    sooner = refused(HEALTHY, now=0.0, policy=POLICY, reason="r")
    assert choose([Candidate(later, 0), Candidate(sooner, 0)], now=0.1, draw=first_draw) == 1


def test_power_of_two_choices_spreads_evenly_and_avoids_the_loaded_member() -> None:
    rng = random.Random(7)
    even = [Candidate(HEALTHY, 0), Candidate(HEALTHY, 0), Candidate(HEALTHY, 0)]
    counts = Counter(choose(even, now=0.0, draw=rng.randrange) for _ in range(3000))
    assert set(counts) == {0, 1, 2}
    assert all(900 <= n <= 1100 for n in counts.values())  # ~1000 each
    skewed = [Candidate(HEALTHY, 50), Candidate(HEALTHY, 0)]
    assert {choose(skewed, now=0.0, draw=rng.randrange) for _ in range(100)} == {1}


def test_a_tie_goes_to_the_kept_member_and_fewer_streams_still_win() -> None:
    rng = random.Random(3)
    tied = [Candidate(HEALTHY, 8), Candidate(HEALTHY, 8)]
    assert {choose(tied, now=0.0, draw=rng.randrange) for _ in range(100)} == {0, 1}
    for keep in (0, 1):  # whichever of the two is drawn first
        assert {choose(tied, now=0.0, draw=rng.randrange, keep=keep) for _ in range(100)} == {keep}
    uneven = [Candidate(HEALTHY, 9), Candidate(HEALTHY, 8)]
    assert {choose(uneven, now=0.0, draw=rng.randrange, keep=0) for _ in range(100)} == {1}
    down = refused(HEALTHY, now=0.0, policy=POLICY, reason="8012")
    backed_off = [Candidate(down, 0), Candidate(HEALTHY, 5)]
    assert choose(backed_off, now=0.5, draw=rng.randrange, keep=0) == 1  # no tie to win
