"""The pure decisions of remote management: support, the request, and the answer's meaning."""

from __future__ import annotations

import pytest

from edge.tunnels.remote_ops import (
    OpAnswer,
    OpRefused,
    RemoteOp,
    answer_refusal,
    op_request,
    support_refusal,
)
from protocol.rpc.messages import (
    AuthExtra,
    Restart,
    RestartResp,
    Stop,
    StopResp,
    StreamType,
    Update,
    UpdateResp,
)

NGROK_SDK_DEFAULT = "the agent has not defined a callback for this operation"


def test_each_op_names_its_stream_and_response() -> None:
    assert [(op.stream_type, op.response) for op in RemoteOp] == [
        (StreamType.STOP, StopResp),
        (StreamType.RESTART, RestartResp),
        (StreamType.UPDATE, UpdateResp),
    ]


def test_an_agent_that_said_empty_supports_the_op() -> None:
    extra = AuthExtra(
        stop_unsupported_error="", restart_unsupported_error="", update_unsupported_error=""
    )
    assert all(support_refusal(extra, op) is None for op in RemoteOp)


@pytest.mark.parametrize(
    ("op", "code", "words"),
    [
        (RemoteOp.RESTART, "ERR_NGROK_804", "remote restarting"),
        (RemoteOp.STOP, "ERR_NGROK_805", "remote stopping"),
        (RemoteOp.UPDATE, "ERR_NGROK_806", "remote updating"),
    ],
)
def test_an_agent_with_a_reason_is_refused_with_ngroks_code_and_that_reason(
    op: RemoteOp, code: str, words: str
) -> None:
    extra = AuthExtra(
        stop_unsupported_error=NGROK_SDK_DEFAULT,
        restart_unsupported_error=NGROK_SDK_DEFAULT,
        update_unsupported_error=NGROK_SDK_DEFAULT,
    )
    refused = support_refusal(extra, op)
    assert refused == OpRefused(
        status=400,
        code=code,
        message=f"This agent does not support {words}: {NGROK_SDK_DEFAULT}.",
    )


def test_an_agent_too_old_to_say_is_refused() -> None:
    refused = support_refusal(AuthExtra(), RemoteOp.STOP)  # null: never set by old agents
    assert refused is not None and refused.code == "ERR_NGROK_805"
    assert "older agent" in refused.message


def test_stop_and_restart_say_who_asked_and_update_asks_for_the_latest() -> None:
    assert op_request(RemoteOp.STOP, "key ak_1") == Stop(message="key ak_1")
    assert op_request(RemoteOp.RESTART, "key ak_1") == Restart(message="key ak_1")
    assert op_request(RemoteOp.STOP, "") == Stop()
    assert op_request(RemoteOp.UPDATE, "key ak_1") == Update()


def test_a_done_answer_is_no_refusal() -> None:
    assert all(answer_refusal(op, OpAnswer()) is None for op in RemoteOp)


@pytest.mark.parametrize(
    ("op", "code"),
    [
        (RemoteOp.STOP, "ERR_NGROK_807"),
        (RemoteOp.RESTART, "ERR_NGROK_808"),
        (RemoteOp.UPDATE, "ERR_NGROK_809"),
    ],
)
def test_an_agents_error_is_a_4xx_with_ngroks_code(op: RemoteOp, code: str) -> None:
    refused = answer_refusal(op, OpAnswer(error="disk full"))
    assert refused is not None
    assert (refused.status, refused.code) == (400, code)
    assert refused.message.endswith(": disk full")


def test_no_answer_is_810_unless_a_stop_ended_the_session() -> None:
    lost = OpAnswer(undelivered="timed out", session_ended=False)
    for op in RemoteOp:
        refused = answer_refusal(op, lost)
        assert refused is not None and (refused.status, refused.code) == (502, "ERR_NGROK_810")
        assert "timed out" in refused.message
    gone = OpAnswer(undelivered="session closed", session_ended=True)
    assert answer_refusal(RemoteOp.STOP, gone) is None
    restart = answer_refusal(RemoteOp.RESTART, gone)
    assert restart is not None and restart.code == "ERR_NGROK_810"
