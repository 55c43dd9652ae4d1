"""ConflictDetector: a second simultaneous user of one side of a stream gets BusyResourceError."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from protocol.adapters.conflict import ConflictDetector


def test_a_second_entry_while_held_raises_with_the_message() -> None:
    detector = ConflictDetector("another task is already sending on this stream")
    with detector:
        with (
            pytest.raises(trio.BusyResourceError, match="already sending on this stream"),
            detector,
        ):
            pass  # pragma: no cover - never reached
        # The refused entry did not release the first holder's claim.
        with pytest.raises(trio.BusyResourceError), detector:
            pass  # pragma: no cover - never reached


def test_leaving_releases_it_even_on_an_exception() -> None:
    detector = ConflictDetector("busy")
    with detector:
        pass
    with pytest.raises(ValueError, match="boom"), detector:
        raise ValueError("boom")
    with detector:  # released both times: entering again works
        pass


def test_detectors_are_independent() -> None:
    send, receive = ConflictDetector("send"), ConflictDetector("receive")
    with send, receive:  # one task may send and another receive at once
        pass


async def test_two_tasks_in_one_conflicting_call() -> None:
    """The case it exists for: two tasks inside one await on the same stream side."""
    detector = ConflictDetector("two tasks called receive_some at once")
    release = trio.Event()
    errors: list[trio.BusyResourceError] = []

    async def use() -> None:
        try:
            with detector:
                await release.wait()
        except trio.BusyResourceError as exc:
            errors.append(exc)
            release.set()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(use)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(use)
    assert [str(e) for e in errors] == ["two tasks called receive_some at once"]
