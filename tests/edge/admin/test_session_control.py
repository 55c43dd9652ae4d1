"""Remote management through a real `EdgeHub` and `AgentSession`: Stop, Restart and Update sent
over muxado to an in-memory agent that answers as told (trio.testing memory streams)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
import trio.testing

from edge.admin.session_control import SESSION_GONE, HubSessionControl
from edge.config import EdgeConfig
from edge.store import SQLiteStore
from edge.tunnels.hub import EdgeHub
from edge.tunnels.remote_ops import OpAnswer, RemoteOp
from edge.tunnels.session import AgentSession
from protocol.adapters.heartbeat import answer_heartbeats
from protocol.adapters.mux import MuxSession, MuxStream, open_mux_session, read_stream_type
from protocol.adapters.rpc import call, read_value, respond
from protocol.rpc.codec import Codec
from protocol.rpc.messages import (
    Auth,
    AuthExtra,
    AuthResp,
    StopResp,
    StreamType,
)
from protocol.wire.errors import ErrorCode
from protocol.wire.session import Role
from tests.edge.tunnels.memory_agent import serve_edge

TIMEOUT = 10
WHO = "the admin API, key ak_1 (ops)"


@dataclass
class Agent:
    """The agent's side: what it was asked, and how it answers (None: it never does; "close":
    it closes the whole session instead)."""

    mux: MuxSession
    answer: str | None = ""
    asked: list[tuple[int, dict[str, object]]] | None = None


async def _agent_accepts(agent: Agent) -> None:
    async with trio.open_nursery() as nursery:
        while True:
            try:
                stream = await agent.mux.accept_stream()
                kind = await read_stream_type(stream)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if kind == StreamType.HEARTBEAT:
                nursery.start_soon(answer_heartbeats, stream)
            elif kind in (StreamType.STOP, StreamType.RESTART, StreamType.UPDATE):
                nursery.start_soon(_answer, agent, kind, stream)


async def _answer(agent: Agent, kind: int, stream: MuxStream) -> None:
    value, codec = await read_value(stream, None)
    assert agent.asked is not None
    agent.asked.append((kind, value))
    if agent.answer is None:
        await trio.sleep_forever()
    if agent.answer == "close":
        await agent.mux.aclose(ErrorCode.NO_ERROR, "agent exiting")
        return
    await respond(stream, StopResp(error=agent.answer), codec)


@asynccontextmanager
async def connect(
    hub: EdgeHub, token: str, extra: AuthExtra
) -> AsyncIterator[tuple[AgentSession, Agent, trio.Event]]:
    edge_side, agent_side = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        session, ended = await nursery.start(serve_edge, hub, edge_side)
        async with open_mux_session(agent_side, Role.CLIENT) as mux:
            agent = Agent(mux, asked=[])
            nursery.start_soon(_agent_accepts, agent)
            extra = AuthExtra(
                authtoken=token,
                version="3.0.0",
                os="linux",
                stop_unsupported_error=extra.stop_unsupported_error,
                restart_unsupported_error=extra.restart_unsupported_error,
                update_unsupported_error=extra.update_unsupported_error,
            )
            auth = Auth(version=("2",), extra=extra)
            response = await call(mux, StreamType.AUTH, auth, AuthResp, Codec.JSON)
            assert response.error == ""
            yield session, agent, ended
        nursery.cancel_scope.cancel()


SUPPORTS_ALL = AuthExtra(
    stop_unsupported_error="", restart_unsupported_error="", update_unsupported_error=""
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    with SQLiteStore.open(tmp_path / "burrow.db") as opened:
        yield opened


@pytest.fixture
def hub(store: SQLiteStore) -> EdgeHub:
    return EdgeHub(EdgeConfig(), store)


@pytest.fixture
def token(store: SQLiteStore) -> str:
    return store.create_credential(description="agent")[1]


async def test_capabilities_are_what_the_agent_said_in_auth(hub: EdgeHub, token: str) -> None:
    control = HubSessionControl(hub)
    said = AuthExtra(
        stop_unsupported_error="", restart_unsupported_error="no", update_unsupported_error=None
    )
    with trio.fail_after(TIMEOUT):
        async with connect(hub, token, said) as (session, _, _):
            extra = control.capabilities(session.id)
            assert extra is not None
            assert (extra.stop_unsupported_error, extra.restart_unsupported_error) == ("", "no")
            assert extra.update_unsupported_error is None
    assert control.capabilities(session.id) is None, "the session has ended"
    assert control.capabilities("ts_NONE") is None


async def test_stop_reaches_the_agent_with_who_asked_and_names_them_when_it_leaves(
    hub: EdgeHub, store: SQLiteStore, token: str
) -> None:
    control = HubSessionControl(hub)
    with trio.fail_after(TIMEOUT):
        async with connect(hub, token, SUPPORTS_ALL) as (session, agent, ended):
            answer = await control.remote_op(session.id, RemoteOp.STOP, WHO)
            assert answer == OpAnswer()
            assert agent.asked == [(StreamType.STOP, {"Message": WHO})]
            await agent.mux.aclose(ErrorCode.NO_ERROR, "stopped")  # as burrow does next
            await ended.wait()
    assert session.stop_reason == f"stop requested by {WHO}"
    stop_event = next(e for e in store.list_events() if e.event_type == "agent_session_stop.v0")
    assert stop_event.object["error"] == f"stop requested by {WHO}"


async def test_restart_is_sent_in_the_sessions_codec(hub: EdgeHub, token: str) -> None:
    control = HubSessionControl(hub)
    with trio.fail_after(TIMEOUT):
        async with connect(hub, token, SUPPORTS_ALL) as (session, agent, _):
            assert await control.remote_op(session.id, RemoteOp.RESTART, WHO) == OpAnswer()
            assert await control.remote_op(session.id, RemoteOp.UPDATE, WHO) == OpAnswer()
    assert agent.asked == [
        (StreamType.RESTART, {"Message": WHO}),
        (StreamType.UPDATE, {"Version": "", "PermitMajorVersion": False}),
    ]


async def test_an_agents_error_comes_back_and_clears_the_stop_reason(
    hub: EdgeHub, token: str
) -> None:
    control = HubSessionControl(hub)
    with trio.fail_after(TIMEOUT):
        async with connect(hub, token, SUPPORTS_ALL) as (session, agent, _):
            agent.answer = "Callback error: busy"
            answer = await control.remote_op(session.id, RemoteOp.STOP, WHO)
            assert answer == OpAnswer(error="Callback error: busy")
            assert session.stop_reason == ""


async def test_an_agent_that_never_answers_is_undelivered_after_the_timeout(
    hub: EdgeHub, token: str, autojump_clock: trio.abc.Clock
) -> None:
    control = HubSessionControl(hub)
    with trio.fail_after(TIMEOUT * 10):
        async with connect(hub, token, SUPPORTS_ALL) as (session, agent, _):
            agent.answer = None
            answer = await control.remote_op(session.id, RemoteOp.RESTART, WHO)
            assert answer == OpAnswer(undelivered="no answer in time", session_ended=False)
            assert session.stop_reason == ""


async def test_an_agent_that_leaves_without_a_word_has_ended_its_session(
    hub: EdgeHub, token: str
) -> None:
    control = HubSessionControl(hub)
    with trio.fail_after(TIMEOUT):
        async with connect(hub, token, SUPPORTS_ALL) as (session, agent, ended):
            agent.answer = "close"
            answer = await control.remote_op(session.id, RemoteOp.STOP, WHO)
            assert answer.undelivered is not None and answer.session_ended
            await ended.wait()
    assert session.stop_reason == f"stop requested by {WHO}"


async def test_a_session_that_is_gone_is_undelivered(hub: EdgeHub) -> None:
    answer = await HubSessionControl(hub).remote_op("ts_NONE", RemoteOp.STOP, WHO)
    assert answer == OpAnswer(undelivered=SESSION_GONE, session_ended=True)
