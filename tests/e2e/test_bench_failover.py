"""The failover benchmark (`./dev bench --only failover`, benchmarks/failover.py) on real pools.

`summarize` is checked on made-up request records; the scenarios run for real: a
`burrow-edge serve` and two pooled `burrow http` agents in front of the bare trio + h11 server
of the benchmarks (`benchmarks.h11_origin`, which answers the origin's small body, so no nginx
is needed), under the measure's own steady load. The kill and drain scenarios run in the
normal suite (a few seconds each); all three with the rate columns and the rendered tables in
the slow one.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from benchmarks import failover, httpload, origin
from benchmarks.failover import Outcome, PoolTunnel
from benchmarks.tunnels import H11Server, Tunnel


def _plain_probe(tunnel: Tunnel) -> None:
    target = httpload.Target(port=tunnel.local_port)
    httpload.probe(target, origin.SMALL_PATH, origin.SMALL_BODY)


@pytest.fixture(scope="module")
def small_origin() -> Iterator[int]:
    """The port of a bare trio + h11 server answering GET /small with the origin's body."""
    with H11Server(0, probe=_plain_probe) as server:
        yield server.local_port


def test_summarize_counts_lost_slow_and_recovery_from_the_signal() -> None:
    signal_at = 10.0
    outcomes = [
        Outcome(started=9.0, ended=9.01, ok=True),  # before the signal: healthy
        Outcome(started=9.99, ended=10.02, ok=False, error="reset"),  # in flight: lost
        Outcome(started=10.1, ended=10.6, ok=True),  # slow (0.5 s > SLOW_REQUEST)
        Outcome(started=10.7, ended=10.71, ok=True),
        Outcome(started=11.0, ended=11.01, ok=True),
    ]
    record = failover.summarize(outcomes, signal_at)
    assert record["requests"] == 5
    assert record["lost"] == 1 and record["lost_before"] == 0
    assert record["slow"] == 1
    assert record["recovery_ms"] == pytest.approx(600.0)  # the slow one ended at 10.6
    assert record["slowest_ms"] == pytest.approx(500.0)
    assert record["errors"] == ["reset"]
    calm = failover.summarize([Outcome(started=10.1, ended=10.11, ok=True)], signal_at)
    assert calm["lost"] == 0 and calm["recovery_ms"] == 0.0
    early = failover.summarize([Outcome(started=9.0, ended=9.5, ok=False)], signal_at)
    assert early["lost_before"] == 1 and early["recovery_ms"] == 0.0


def test_a_killed_member_loses_only_its_in_flight_requests(small_origin: int) -> None:
    with PoolTunnel(small_origin, failover.MEMBERS) as pool:
        record = failover.scenario(pool, "kill")
        assert pool.agents[0].poll() is not None  # the victim is gone
    print(f"\n[bench failover] kill: {record}")
    assert record["requests"] > 200  # the load ran: 400 req/s for 4 s, less on a busy machine
    assert record["lost_before"] == 0
    assert record["lost"] <= failover.WORKERS  # at most one request in flight per client
    assert record["recovery_ms"] < 1000 * failover.AFTER


def test_a_drained_member_loses_no_request_and_exits_cleanly(small_origin: int) -> None:
    with PoolTunnel(small_origin, failover.MEMBERS) as pool:
        record = failover.scenario(pool, "drain")
    print(f"\n[bench failover] drain: {record}")
    assert record["requests"] > 200
    assert record["lost"] == 0, record["errors"]
    assert record["drained_exit"] == 0


@pytest.mark.slow
def test_every_scenario_runs_and_the_table_shows_each(small_origin: int) -> None:
    """All three scenarios, each on a fresh pool, as `run_all` records them, then the table.
    (The rate columns drive wrk, which `./dev bench` installs and the test setup does not.)"""
    records = []
    for how in failover.SCENARIOS:
        with PoolTunnel(small_origin, failover.MEMBERS) as pool:
            record = failover.scenario(pool, how)
        records.append({"tunnel": how, "measure": failover.NAME, "row": failover.NAME, "run": 1,
                        **record})  # fmt: skip
    paused = next(r for r in records if r["scenario"] == "pause")
    # The paused member's requests hang until the heartbeat drops it: at most 2 x interval +
    # tolerance after the signal (plus the machine's slack), and not before the tolerance.
    bound = 2 * failover.HEARTBEAT_INTERVAL + failover.HEARTBEAT_TOLERANCE
    assert 1000 * failover.HEARTBEAT_TOLERANCE <= paused["recovery_ms"] <= 1000 * (bound + 1.0)
    # At most what was in flight to it (one per worker) fails when it leaves the pool; since
    # pooled keep-alive connections reuse their agent stream, a GET found on a dead one is
    # retried on the other member, so none may fail at all (the recovery bound above holds).
    assert paused["lost"] <= failover.WORKERS
    table = failover.render(records, runs=1)
    print(table)
    for _signal, label in failover.SCENARIOS.values():
        assert label in table
    assert set(failover.summary(records)) == set(failover.SCENARIOS)
