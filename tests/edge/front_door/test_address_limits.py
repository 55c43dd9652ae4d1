"""Per-source-address connection counting and its once-per-interval refusal summary."""

from __future__ import annotations

from edge.front_door.address_limits import (
    LOG_INTERVAL,
    MAX_REPORTED_ADDRESSES,
    AddressLimits,
    address_key,
)


def test_an_address_gets_its_limit_and_no_more_until_one_ends() -> None:
    limits = AddressLimits(2)
    assert limits.admit("192.0.2.1")
    assert limits.admit("192.0.2.1")
    assert not limits.admit("192.0.2.1")
    assert limits.admit("192.0.2.2")  # another address is not affected
    assert limits.held("192.0.2.1") == 2
    limits.release("192.0.2.1")
    assert limits.admit("192.0.2.1")
    for _ in range(2):
        limits.release("192.0.2.1")
    limits.release("192.0.2.2")
    assert limits.held("192.0.2.1") == limits.held("192.0.2.2") == 0


def test_ipv6_counts_by_slash_64_and_mapped_ipv4_as_ipv4() -> None:
    assert (
        address_key("2001:db8:1:2::5")
        == address_key("2001:db8:1:2:ffff::9")
        == ("2001:db8:1:2::/64")
    )
    assert address_key("2001:db8:1:3::5") != address_key("2001:db8:1:2::5")
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert address_key("192.0.2.7") == "192.0.2.7"
    assert address_key("fe80::1%eth0") == "fe80::/64"
    assert address_key("not-an-address") == "not-an-address"


def test_refusals_are_reported_once_per_interval_as_a_summary() -> None:
    limits = AddressLimits(1)
    assert limits.report(0.0) is None  # nothing refused: nothing to say
    assert limits.admit("192.0.2.1")
    assert not limits.admit("192.0.2.1")
    first = limits.report(100.0)
    assert first is not None
    assert "refused 1 connections from 1 addresses" in first
    assert "limits.max_connections_per_address (1)" in first
    assert "192.0.2.1" in first
    for _ in range(50):
        assert not limits.admit("192.0.2.1")
        assert limits.report(100.0 + LOG_INTERVAL / 2) is None  # not due yet
    assert limits.admit("192.0.2.9")  # another address holds nothing yet: admitted
    assert not limits.admit("192.0.2.9")
    later = limits.report(100.0 + LOG_INTERVAL)
    assert later is not None
    assert "refused 51 connections from 2 addresses" in later
    assert "most from 192.0.2.1 (50)" in later
    assert limits.report(100.0 + 3 * LOG_INTERVAL) is None  # the tally was reset


def test_the_summary_remembers_a_bounded_number_of_addresses() -> None:
    limits = AddressLimits(1)
    count = MAX_REPORTED_ADDRESSES + 10
    for index in range(count):
        key = f"10.{index // 65536}.{index // 256 % 256}.{index % 256}"
        assert limits.admit(key)
        assert not limits.admit(key)
    summary = limits.report(0.0)
    assert summary is not None
    assert f"refused {count} connections from {MAX_REPORTED_ADDRESSES} addresses" in summary
