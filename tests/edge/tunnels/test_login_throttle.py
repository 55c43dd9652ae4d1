"""The failed-login throttle: budgets per address, windows, the audit budget, the bounded table
(pure: time is a parameter)."""

from __future__ import annotations

import pytest

from edge.tunnels.login_throttle import FailureCharged, LoginThrottle, source_key

A = "203.0.113.1"
B = "198.51.100.2"


def test_an_address_is_throttled_after_its_budget_until_the_window_ends() -> None:
    throttle = LoginThrottle(failures_per_window=3, window=60.0, max_addresses=100)
    charged = [throttle.charge_failure(A, 10.0 + n) for n in range(3)]
    assert [c.throttled for c in charged] == [False, False, False]
    assert [c.failures for c in charged] == [1, 2, 3]
    # The window runs from the first failure (t=10), not the last.
    assert throttle.retry_after(A, 12.0) == pytest.approx(58.0)
    assert throttle.retry_after(A, 69.9) == pytest.approx(0.1)
    assert throttle.charge_failure(A, 30.0).throttled is True
    assert throttle.retry_after(B, 30.0) == 0.0, "other addresses are not affected"
    assert throttle.retry_after(A, 70.0) == 0.0
    fresh = throttle.charge_failure(A, 70.0)
    assert (fresh.failures, fresh.throttled) == (1, False)


def test_a_throttled_failure_does_not_extend_the_window() -> None:
    throttle = LoginThrottle(failures_per_window=1, window=10.0, max_addresses=100)
    throttle.charge_failure(A, 0.0)
    for t in range(1, 10):
        assert throttle.charge_failure(A, float(t)).throttled
    assert throttle.retry_after(A, 10.0) == 0.0


def test_audit_budget_is_the_answered_failures_plus_one() -> None:
    throttle = LoginThrottle(failures_per_window=2, window=60.0, max_addresses=100)
    charged = [throttle.charge_failure(A, 0.0) for _ in range(10)]
    assert [c.audit for c in charged] == [True, True, True] + [False] * 7
    assert [c.unaudited for c in charged if c.audit] == [0, 0, 0]
    assert charged[2] == FailureCharged(failures=3, throttled=True, audit=True, unaudited=0)
    # The next window's first failure carries the 7 unaudited ones, then the count restarts.
    first = throttle.charge_failure(A, 60.0)
    assert first == FailureCharged(failures=1, throttled=False, audit=True, unaudited=7)
    assert throttle.charge_failure(A, 61.0).unaudited == 0


def test_the_table_is_bounded_least_recently_failing_first() -> None:
    throttle = LoginThrottle(failures_per_window=1, window=60.0, max_addresses=100)
    for n in range(1000):
        throttle.charge_failure(f"10.0.{n // 256}.{n % 256}", 0.0)
    assert len(throttle) == 100
    assert throttle.retry_after("10.0.3.231", 0.0) == 60.0, "the latest failures are kept"
    assert throttle.retry_after("10.0.0.0", 0.0) == 0.0, "the oldest were forgotten"
    # A failure refreshes an address: it survives the next eviction.
    throttle.charge_failure("10.0.3.132", 1.0)  # the oldest one left
    throttle.charge_failure("192.0.2.1", 1.0)
    assert throttle.retry_after("10.0.3.132", 1.0) > 0
    assert throttle.retry_after("10.0.3.133", 1.0) == 0.0


def test_ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() -> None:
    assert source_key("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert source_key("::ffff:203.0.113.1") == A
    assert source_key(A) == A
    assert source_key("not-an-ip") == "not-an-ip"
    throttle = LoginThrottle(failures_per_window=2, window=60.0, max_addresses=100)
    throttle.charge_failure("2001:db8:1:2::1", 0.0)
    throttle.charge_failure("2001:db8:1:2::ffff", 0.0)
    assert throttle.retry_after("2001:db8:1:2:1234::9", 0.0) == 60.0
    assert throttle.retry_after("2001:db8:1:3::1", 0.0) == 0.0


def test_nonsense_settings_are_refused() -> None:
    for bad in (
        {"failures_per_window": 0, "window": 60.0, "max_addresses": 1},
        {"failures_per_window": 1, "window": 0.0, "max_addresses": 1},
        {"failures_per_window": 1, "window": 60.0, "max_addresses": 0},
    ):
        with pytest.raises(ValueError):
            LoginThrottle(**bad)  # type: ignore[arg-type]
