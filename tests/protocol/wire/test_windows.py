"""Receive-window policy: when updates go out, when the window grows, and what bounds it."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.wire.windows import (
    DEFAULT_MAX_STREAM_WINDOW,
    DEFAULT_SESSION_BUDGET,
    INITIAL_WINDOW,
    ReceiveWindow,
    SessionBudget,
)

KiB = 1024
MiB = 1024 * KiB


def window(
    budget: int = DEFAULT_SESSION_BUDGET, max_size: int = DEFAULT_MAX_STREAM_WINDOW
) -> ReceiveWindow:
    return ReceiveWindow(SessionBudget(budget), max_size)


def test_defaults() -> None:
    assert INITIAL_WINDOW == 256 * KiB == 0x40000  # ngrok.md §8.3
    w = window()
    assert (w.size, w.credit, w.unread, w.unacked) == (INITIAL_WINDOW, INITIAL_WINDOW, 0, 0)


def test_update_only_after_half_the_window_is_consumed() -> None:
    w = window()
    assert w.accept(INITIAL_WINDOW)
    half = INITIAL_WINDOW // 2
    assert w.consume(half - 1) == 0
    assert w.unacked == half - 1
    increment = w.consume(1)
    assert increment > 0
    assert w.unacked == 0


def test_small_reads_are_coalesced() -> None:
    w = window()
    w.accept(100 * KiB)
    assert [w.consume(10 * KiB) for _ in range(10)] == [0] * 10
    assert w.unacked == 100 * KiB


def test_growth_when_the_reader_keeps_up() -> None:
    w = window()
    assert w.accept(INITIAL_WINDOW // 2)
    # everything received has been read: unread 0 <= size / 4
    increment = w.consume(INITIAL_WINDOW // 2)
    assert w.size == 2 * INITIAL_WINDOW
    # the update returns what was read plus the growth
    assert increment == INITIAL_WINDOW // 2 + INITIAL_WINDOW
    assert w.credit == 2 * INITIAL_WINDOW


def test_growth_doubles_each_time_until_max_size() -> None:
    w = window(max_size=2 * MiB)
    sizes = [w.size]
    for _ in range(10):
        chunk = w.size // 2
        assert w.accept(chunk)
        assert w.consume(chunk) > 0
        sizes.append(w.size)
    assert sizes[:5] == [256 * KiB, 512 * KiB, 1 * MiB, 2 * MiB, 2 * MiB]
    assert max(sizes) == 2 * MiB


def test_growth_stops_exactly_at_a_max_size_that_is_not_a_doubling() -> None:
    w = window(max_size=700 * KiB)
    for _ in range(5):
        chunk = w.size // 2
        w.accept(chunk)
        w.consume(chunk)
    assert w.size == 700 * KiB


def test_no_growth_for_a_slow_reader() -> None:
    w = window()
    for _ in range(20):
        assert w.accept(w.credit)  # the sender fills every byte of credit
        # the reader consumes only half: unread stays above size / 4
        increment = w.consume(w.size // 2)
        assert increment == INITIAL_WINDOW // 2
        assert w.size == INITIAL_WINDOW
    assert w.unread == INITIAL_WINDOW // 2


def test_growth_limited_by_the_session_budget() -> None:
    budget = SessionBudget(256 * KiB)
    a = ReceiveWindow(budget)
    b = ReceiveWindow(budget)
    a.accept(128 * KiB)
    a.consume(128 * KiB)
    assert a.size == 512 * KiB
    assert budget.available == 0
    # b would grow too but the budget is spent: it still gets its update, without growth
    b.accept(128 * KiB)
    assert b.consume(128 * KiB) == 128 * KiB
    assert b.size == INITIAL_WINDOW
    # and a cannot grow further either
    a.accept(256 * KiB)
    assert a.consume(256 * KiB) == 256 * KiB
    assert a.size == 512 * KiB


def test_partial_budget_gives_partial_growth() -> None:
    budget = SessionBudget(100 * KiB)
    w = ReceiveWindow(budget)
    w.accept(128 * KiB)
    assert w.consume(128 * KiB) == 228 * KiB
    assert w.size == 356 * KiB
    assert budget.available == 0


def test_release_gives_growth_back() -> None:
    budget = SessionBudget(256 * KiB)
    a = ReceiveWindow(budget)
    a.accept(128 * KiB)
    a.consume(128 * KiB)
    assert budget.available == 0
    a.release()
    assert budget.available == 256 * KiB
    assert a.size == INITIAL_WINDOW
    b = ReceiveWindow(budget)
    b.accept(128 * KiB)
    b.consume(128 * KiB)
    assert b.size == 512 * KiB


def test_release_without_growth_changes_nothing() -> None:
    budget = SessionBudget(1 * MiB)
    ReceiveWindow(budget).release()
    assert budget.available == 1 * MiB


def test_budget_give_back_never_exceeds_limit() -> None:
    budget = SessionBudget(10)
    assert budget.take(4) == 4
    budget.give_back(100)
    assert budget.available == 10
    assert budget.take(25) == 10
    assert budget.take(1) == 0


def test_accept_refuses_past_credit() -> None:
    w = window()
    assert w.accept(INITIAL_WINDOW - 1)
    assert not w.accept(2)
    assert (w.credit, w.unread) == (1, INITIAL_WINDOW - 1)  # a refused frame changes nothing
    assert w.accept(1)
    assert w.credit == 0
    assert not w.accept(1)
    assert w.accept(0)


def test_consume_more_than_unread_is_clamped() -> None:
    w = window()
    w.accept(10)
    w.consume(1000)
    assert (w.unread, w.unacked) == (0, 10)


def test_discard_forgets_unread() -> None:
    w = window()
    w.accept(1000)
    w.discard()
    assert w.unread == 0
    assert w.consume(1000) == 0


def test_discard_of_a_small_amount_grants_nothing_yet() -> None:
    w = window()
    w.accept(1000)
    assert w.discard() == 0  # the writer still holds credit: it can send and draw the RST
    assert (w.credit, w.unread, w.unacked) == (INITIAL_WINDOW - 1000, 0, 1000)


def test_discard_with_no_credit_left_grants_the_whole_window() -> None:
    # Regression: discarding used to forget the bytes, so a writer with no credit left was
    # never granted any again and waited forever.
    w = window()
    assert w.accept(INITIAL_WINDOW)
    w.consume(1000)  # read a little, not enough for an update
    assert w.credit == 0
    assert w.discard() == INITIAL_WINDOW
    assert (w.credit, w.unread, w.unacked, w.size) == (INITIAL_WINDOW, 0, 0, INITIAL_WINDOW)


def test_discard_never_grows_the_window() -> None:
    budget = SessionBudget(DEFAULT_SESSION_BUDGET)
    w = ReceiveWindow(budget, DEFAULT_MAX_STREAM_WINDOW)
    w.accept(INITIAL_WINDOW)
    assert w.discard() == INITIAL_WINDOW
    assert w.size == INITIAL_WINDOW
    assert budget.available == DEFAULT_SESSION_BUDGET


@settings(max_examples=300, deadline=None)
@given(
    budget_limit=st.integers(0, 4 * MiB),
    max_size=st.integers(INITIAL_WINDOW, 4 * MiB),
    ops=st.lists(
        st.tuples(st.sampled_from(["accept", "consume", "discard"]), st.integers(0, 2 * MiB)),
        max_size=60,
    ),
)
def test_invariants_hold_under_any_sequence(
    budget_limit: int, max_size: int, ops: list[tuple[str, int]]
) -> None:
    budget = SessionBudget(budget_limit)
    w = ReceiveWindow(budget, max_size)
    granted_total = 0
    received_total = 0
    for op, n in ops:
        before = w.credit
        if op == "accept":
            ok = w.accept(n)
            assert ok == (n <= before)
            if ok:
                received_total += n
        else:
            increment = w.consume(n) if op == "consume" else w.discard()
            assert increment >= 0
            assert w.credit == before + increment
            granted_total += increment
        assert w.credit >= 0
        assert w.unread >= 0
        assert w.unacked >= 0
        assert INITIAL_WINDOW <= w.size <= max(max_size, INITIAL_WINDOW)
        assert 0 <= budget.available <= budget.limit
        assert w.size - INITIAL_WINDOW == budget.limit - budget.available
        # what the peer was ever allowed to send = what it sent + what it may still send
        assert INITIAL_WINDOW + granted_total == received_total + w.credit
        # discarded bytes count as read, so nothing the peer was granted is ever lost
        assert w.credit + w.unread + w.unacked == w.size
    w.release()
    assert budget.available == budget.limit
