"""edge/http/retry.py: when a request whose agent stream failed may go to another pool member
(the rule HTTP/1.1 and HTTP/2 share), and the reset code read off a real muxado stream."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from edge.http.retry import REPLAYABLE_METHODS, agent_reset, may_move
from edge.http.seam import AgentStreamError
from protocol.adapters.mux import open_mux_session
from protocol.wire.errors import ErrorCode
from protocol.wire.session import Role

TIMEOUT = 10


@pytest.mark.parametrize("method", sorted(REPLAYABLE_METHODS))
def test_an_idempotent_bodiless_request_moves_after_stream_refused(method: bytes) -> None:
    assert may_move(
        ErrorCode.STREAM_REFUSED, method=method, bodiless=True, answered=False, moved=False
    )


@pytest.mark.parametrize("method", [b"POST", b"PUT", b"PATCH", b"DELETE", b"CONNECT"])
def test_stream_refused_does_not_move_a_non_idempotent_request(method: bytes) -> None:
    # The upstream may have taken it before it went away: sending it twice is not ours to do.
    assert not may_move(
        ErrorCode.STREAM_REFUSED, method=method, bodiless=True, answered=False, moved=False
    )


@pytest.mark.parametrize("method", [b"GET", b"POST", b"DELETE"])
def test_remote_gone_away_moves_any_bodiless_request(method: bytes) -> None:
    assert may_move(
        ErrorCode.REMOTE_GONE_AWAY, method=method, bodiless=True, answered=False, moved=False
    )


@pytest.mark.parametrize("reset", [ErrorCode.STREAM_REFUSED, ErrorCode.REMOTE_GONE_AWAY])
def test_a_request_with_a_body_an_answer_or_a_retry_behind_it_never_moves(reset: int) -> None:
    assert not may_move(reset, method=b"GET", bodiless=False, answered=False, moved=False)
    assert not may_move(reset, method=b"GET", bodiless=True, answered=True, moved=False)
    assert not may_move(reset, method=b"GET", bodiless=True, answered=False, moved=True)


@pytest.mark.parametrize(
    "reset",
    [None, ErrorCode.NO_ERROR, ErrorCode.PROTOCOL_ERROR, ErrorCode.INTERNAL_ERROR],
)
def test_other_endings_never_move(reset: int | None) -> None:
    # No reset (EOF, a bad response) or another code: an upstream may have seen the request.
    assert not may_move(reset, method=b"GET", bodiless=True, answered=False, moved=False)


@pytest.mark.parametrize("code", [ErrorCode.STREAM_REFUSED, ErrorCode.REMOTE_GONE_AWAY])
async def test_agent_reset_reads_the_code_off_a_real_mux_stream_reset(code: ErrorCode) -> None:
    left, right = trio.testing.memory_stream_pair()
    with trio.fail_after(TIMEOUT):
        async with (
            open_mux_session(left, Role.CLIENT) as agent,
            open_mux_session(right, Role.SERVER) as edge,
        ):
            stream = await edge.open_stream()
            await stream.send_all(b"proxy-header")  # muxado's SYN rides on data
            accepted = await agent.accept_stream()
            await accepted.receive_some(64)
            accepted.reset(code)
            with pytest.raises(trio.BrokenResourceError) as raised:
                await stream.receive_some(64)
            try:
                raise AgentStreamError(f"the agent stream failed: {raised.value}") from raised.value
            except AgentStreamError as failure:
                assert agent_reset(failure) == code  # the shells' wrapped error
            assert agent_reset(AgentStreamError("the agent stream ended early")) is None
