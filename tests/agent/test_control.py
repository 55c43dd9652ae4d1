"""What the agent answers to the edge's Stop, Restart and Update, and what it does next."""

from __future__ import annotations

from agent.control import COMMAND_REQUESTS, Decision, Next, decide
from agent.requests import UPDATE_UNSUPPORTED
from protocol.rpc.messages import (
    Restart,
    RestartResp,
    Stop,
    StopResp,
    StreamType,
    Update,
    UpdateResp,
)


def test_each_command_stream_reads_its_request() -> None:
    expected = {StreamType.STOP: Stop, StreamType.RESTART: Restart, StreamType.UPDATE: Update}
    assert expected == COMMAND_REQUESTS


def test_stop_is_done_and_the_agent_exits_naming_who_asked() -> None:
    assert decide(Stop(message="the admin API, key ak_1 (ops)")) == Decision(
        response=StopResp(error=""),
        next=Next.EXIT,
        notice="stopped by the edge on behalf of the admin API, key ak_1 (ops); exiting",
    )


def test_stop_from_an_edge_that_names_nobody() -> None:
    assert decide(Stop()).notice == "stopped by the edge; exiting"


def test_restart_is_done_and_the_agent_reconnects() -> None:
    decision = decide(Restart(message="the admin API, key ak_1"))
    assert decision.response == RestartResp(error="")
    assert decision.next is Next.RECONNECT
    assert decision.notice == (
        "restart requested by the edge on behalf of the admin API, key ak_1; reconnecting now"
    )


def test_update_is_refused_and_the_agent_carries_on() -> None:
    decision = decide(Update(version="9.9.9"))
    assert decision.response == UpdateResp(error=UPDATE_UNSUPPORTED)
    assert decision.next is Next.CARRY_ON
    assert "9.9.9" in decision.notice and UPDATE_UNSUPPORTED in decision.notice


def test_who_asked_is_printed_on_one_line_and_bounded() -> None:
    notice = decide(Stop(message="evil\nline\x1b[2J" + "x" * 1000)).notice
    assert "\n" not in notice and "\x1b" not in notice
    assert notice.startswith("stopped by the edge on behalf of evilline[2J")
    assert len(notice) < 300
