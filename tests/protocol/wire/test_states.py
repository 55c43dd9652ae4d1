"""The stream state machine: the table, and that every other (state, input) pair is an error."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.wire.errors import ErrorCode, LocalProtocolError, MuxError, StreamProtocolError
from protocol.wire.states import TRANSITIONS, StreamInput, StreamState, transition

S = StreamState
I = StreamInput  # noqa: E741

EXPECTED = {
    (S.IDLE, I.SEND_SYN): S.OPEN,
    (S.IDLE, I.RECV_SYN): S.OPEN,
    (S.OPEN, I.SEND_DATA): S.OPEN,
    (S.OPEN, I.RECV_DATA): S.OPEN,
    (S.OPEN, I.SEND_WNDINC): S.OPEN,
    (S.OPEN, I.RECV_WNDINC): S.OPEN,
    (S.OPEN, I.SEND_FIN): S.HALF_CLOSED_LOCAL,
    (S.OPEN, I.RECV_FIN): S.HALF_CLOSED_REMOTE,
    (S.OPEN, I.SEND_RST): S.CLOSED,
    (S.OPEN, I.RECV_RST): S.CLOSED,
    (S.HALF_CLOSED_LOCAL, I.RECV_DATA): S.HALF_CLOSED_LOCAL,
    (S.HALF_CLOSED_LOCAL, I.SEND_WNDINC): S.HALF_CLOSED_LOCAL,
    (S.HALF_CLOSED_LOCAL, I.RECV_WNDINC): S.HALF_CLOSED_LOCAL,
    (S.HALF_CLOSED_LOCAL, I.RECV_FIN): S.CLOSED,
    (S.HALF_CLOSED_LOCAL, I.SEND_RST): S.CLOSED,
    (S.HALF_CLOSED_LOCAL, I.RECV_RST): S.CLOSED,
    (S.HALF_CLOSED_REMOTE, I.SEND_DATA): S.HALF_CLOSED_REMOTE,
    (S.HALF_CLOSED_REMOTE, I.RECV_WNDINC): S.HALF_CLOSED_REMOTE,
    (S.HALF_CLOSED_REMOTE, I.SEND_FIN): S.CLOSED,
    (S.HALF_CLOSED_REMOTE, I.SEND_RST): S.CLOSED,
    (S.HALF_CLOSED_REMOTE, I.RECV_RST): S.CLOSED,
    (S.CLOSED, I.RECV_RST): S.CLOSED,
    (S.CLOSED, I.RECV_WNDINC): S.CLOSED,
}


def test_table_is_exactly_the_documented_one() -> None:
    assert TRANSITIONS == EXPECTED


@pytest.mark.parametrize(("key", "after"), sorted(EXPECTED.items(), key=str))
def test_allowed_transitions(key: tuple[StreamState, StreamInput], after: StreamState) -> None:
    state, event = key
    assert transition(state, event, stream_id=7) is after


@pytest.mark.parametrize(
    ("state", "event"),
    [
        (S.IDLE, I.SEND_DATA),  # a local stream always goes through SEND_SYN first
        (S.IDLE, I.RECV_DATA),
        (S.OPEN, I.SEND_SYN),
        (S.OPEN, I.RECV_SYN),
        (S.HALF_CLOSED_LOCAL, I.SEND_DATA),  # data after our FIN
        (S.HALF_CLOSED_LOCAL, I.SEND_FIN),
        (S.HALF_CLOSED_REMOTE, I.RECV_DATA),  # data after the peer's FIN
        (S.HALF_CLOSED_REMOTE, I.RECV_FIN),
        (S.CLOSED, I.SEND_DATA),
        (S.CLOSED, I.SEND_RST),
        (S.CLOSED, I.RECV_DATA),
    ],
)
def test_notable_refusals(state: StreamState, event: StreamInput) -> None:
    expected = LocalProtocolError if event.name.startswith("SEND_") else StreamProtocolError
    message = f"stream 7: {event.name} is not allowed in state {state.name}"
    with pytest.raises(expected, match=message) as info:
        transition(state, event, stream_id=7)
    assert isinstance(info.value, MuxError)


def test_peer_errors_carry_stream_id_and_stream_closed_code() -> None:
    with pytest.raises(StreamProtocolError) as info:
        transition(S.HALF_CLOSED_REMOTE, I.RECV_DATA, stream_id=41)
    assert info.value.stream_id == 41
    assert info.value.code == ErrorCode.STREAM_CLOSED


def test_every_pair_is_covered() -> None:
    """Exhaustively, not by sampling: allowed pairs match the table, the rest raise by side."""
    for state, event in itertools.product(StreamState, StreamInput):
        check_pair(state, event)


def check_pair(state: StreamState, event: StreamInput) -> None:
    try:
        after = transition(state, event, stream_id=3)
    except LocalProtocolError:
        assert event.name.startswith("SEND_")
        assert (state, event) not in TRANSITIONS
    except StreamProtocolError as exc:
        assert event.name.startswith("RECV_")
        assert (state, event) not in TRANSITIONS
        assert exc.stream_id == 3
    else:
        assert isinstance(after, StreamState)
        assert TRANSITIONS[state, event] is after


@settings(max_examples=100, deadline=None)
@given(state=st.sampled_from(StreamState), event=st.sampled_from(StreamInput))
def test_transition_returns_a_state_or_raises_the_matching_error(
    state: StreamState, event: StreamInput
) -> None:
    check_pair(state, event)


@settings(max_examples=200, deadline=None)
@given(
    start=st.sampled_from(StreamState),
    events=st.lists(st.sampled_from(StreamInput), max_size=20),
)
def test_sequences_never_leave_closed_or_raise_anything_else(
    start: StreamState, events: list[StreamInput]
) -> None:
    state = start
    for event in events:
        try:
            after = transition(state, event, stream_id=1)
        except (LocalProtocolError, StreamProtocolError):
            continue  # the session resets or refuses; the state is unchanged here
        if state is S.CLOSED:
            assert after is S.CLOSED  # nothing reopens a closed stream
        if after is not state:
            assert state is not S.CLOSED
        state = after


def test_only_syn_leaves_idle() -> None:
    leaving = {event for (state, event) in TRANSITIONS if state is S.IDLE}
    assert leaving == {I.SEND_SYN, I.RECV_SYN}
