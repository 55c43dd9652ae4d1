"""The hub's resumption rules, with the real SQLite store in a temporary directory.

An agent that reconnects names its previous session (ClientId) and proves it owns it (Cookie):
only the right cookie of the same credential takes the old session over (stopping it), and only
such a resumption is exempt from the credential's `max_sessions`. The first tests call
`EdgeHub.resume` directly; the last ones run real `AgentSession`s over in-memory mux pairs, so
the `max_sessions` refusal is the one `_serve_auth` really makes.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio
import trio.testing

from edge.config import EdgeConfig
from edge.store import Credential, SQLiteStore
from edge.tunnels.hub import EdgeHub
from edge.tunnels.session import AgentSession
from protocol.adapters.mux import MuxSession, open_mux_session
from protocol.adapters.rpc import call
from protocol.rpc.codec import Codec
from protocol.rpc.messages import Auth, AuthExtra, AuthResp, StreamType
from protocol.wire.session import Role

TIMEOUT = 20  # seconds: only to turn a hang into a failure


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    with SQLiteStore.open(tmp_path / "burrow.db") as opened:
        yield opened


@dataclass
class FakeSession:
    """A live session as the hub sees it: it records every stop instead of ending."""

    id: str
    client_id: str
    credential_id: str | None
    stops: list[str] = field(default_factory=list)

    def stop(self, reason: str) -> None:
        self.stops.append(reason)


def counting_tokens() -> Iterator[str]:
    return (f"token{n}" for n in itertools.count(1))


def live(hub: EdgeHub, credential: Credential, client_id: str) -> tuple[FakeSession, str]:
    """Register a live session of `credential`; returns it and its resumption cookie."""
    session = FakeSession(f"ts_{client_id}", client_id, credential.id)
    return session, hub.register(session, credential_id=credential.id)


# ------------------------------------------------------------------------ EdgeHub.resume


def test_the_right_cookie_of_the_same_credential_resumes_and_stops_the_old_session(
    store: SQLiteStore,
) -> None:
    credential, _ = store.create_credential()
    hub = EdgeHub(EdgeConfig(), store)
    old, cookie = live(hub, credential, "cl_a")
    assert cookie
    assert hub.resume("cl_a", cookie, credential.id) is True
    assert old.stops == ["replaced by a reconnecting session of the same agent"]


@pytest.mark.parametrize("cookie", ["wrong", "", "token"], ids=["wrong", "empty", "prefix"])
def test_a_wrong_or_empty_cookie_neither_resumes_nor_stops_the_session(
    store: SQLiteStore, cookie: str
) -> None:
    credential, _ = store.create_credential()
    tokens = counting_tokens()
    hub = EdgeHub(EdgeConfig(), store, token_source=lambda _: next(tokens))
    other, right = live(hub, credential, "cl_a")
    assert right == "token1" != cookie
    assert hub.resume("cl_a", cookie, credential.id) is False
    assert other.stops == []
    assert hub.sessions == {other.id: other}
    # Nothing was used up: the owner's own cookie still resumes.
    assert hub.resume("cl_a", right, credential.id) is True
    assert len(other.stops) == 1


def test_an_empty_cookie_never_matches_even_an_empty_stored_one(store: SQLiteStore) -> None:
    """A token source that (wrongly) gave out an empty cookie must not make "no cookie" a key:
    an agent that sends none is never resuming."""
    credential, _ = store.create_credential()
    hub = EdgeHub(EdgeConfig(), store, token_source=lambda _: "")
    other, cookie = live(hub, credential, "cl_a")
    assert cookie == ""
    assert hub.resume("cl_a", "", credential.id) is False
    assert other.stops == []


def test_the_right_cookie_with_another_credential_does_not_resume(store: SQLiteStore) -> None:
    owner, _ = store.create_credential(description="owner")
    stranger, _ = store.create_credential(description="stranger")
    hub = EdgeHub(EdgeConfig(), store)
    other, cookie = live(hub, owner, "cl_a")
    assert hub.resume("cl_a", cookie, stranger.id) is False
    assert other.stops == []
    assert hub.resume("cl_a", cookie, owner.id) is True


def test_an_unknown_client_id_does_not_resume(store: SQLiteStore) -> None:
    credential, _ = store.create_credential()
    hub = EdgeHub(EdgeConfig(), store)
    other, cookie = live(hub, credential, "cl_a")
    assert hub.resume("cl_b", cookie, credential.id) is False
    assert other.stops == []


def test_a_wrong_cookie_leaves_the_session_counted_against_max_sessions(
    store: SQLiteStore,
) -> None:
    """What `AgentSession._serve_auth` relies on: a refused resumption is not exempt from
    max_sessions, and the session it failed to take over still counts."""
    credential, _ = store.create_credential(max_sessions=1)
    hub = EdgeHub(EdgeConfig(), store)
    other, _ = live(hub, credential, "cl_a")
    for wrong in ("wrong", ""):
        assert hub.resume("cl_a", wrong, credential.id) is False
        assert hub.sessions_of(credential.id) == 1
        assert credential.max_sessions is not None
        assert hub.sessions_of(credential.id) >= credential.max_sessions
    assert other.stops == []


def test_a_resumed_session_is_remembered_after_it_ended(store: SQLiteStore) -> None:
    credential, _ = store.create_credential()
    hub = EdgeHub(EdgeConfig(), store)
    old, cookie = live(hub, credential, "cl_a")
    hub.unregister(old)
    assert hub.sessions_of(credential.id) == 0
    assert hub.resume("cl_a", "wrong", credential.id) is False
    assert hub.resume("cl_a", cookie, credential.id) is True
    assert old.stops == []  # it had already ended: nothing to stop


# ------------------------------------------------------------- through real AgentSessions


@dataclass
class Connected:
    """One agent connection to the edge's hub: the agent's mux end and the edge's session."""

    agent: MuxSession
    session: AgentSession
    ended: trio.Event


@asynccontextmanager
async def connect(hub: EdgeHub, nursery: trio.Nursery) -> AsyncIterator[Connected]:
    """An AgentSession serving one end of an in-memory mux pair; the agent gets the other."""
    agent_side, edge_side = trio.testing.memory_stream_pair()
    async with (
        open_mux_session(agent_side, Role.CLIENT) as agent,
        open_mux_session(edge_side, Role.SERVER) as edge,
    ):
        session = AgentSession(hub, edge, ("127.0.0.1", 40000))
        ended = trio.Event()

        async def serve() -> None:
            try:
                await session.run()
            finally:
                ended.set()

        nursery.start_soon(serve)
        yield Connected(agent, session, ended)
        session.stop("test over")
        await ended.wait()


async def authenticate(
    connected: Connected, token: str, client_id: str = "", cookie: str = ""
) -> AuthResp:
    auth = Auth(
        version=("3", "2"),
        client_id=client_id,
        extra=AuthExtra(authtoken=token, cookie=cookie, client_type="test"),
    )
    return await call(connected.agent, StreamType.AUTH, auth, AuthResp, Codec.MSGPACK)


@pytest.mark.parametrize("cookie", ["wrong", ""], ids=["wrong", "empty"])
async def test_a_wrong_or_empty_cookie_cannot_get_around_max_sessions(
    store: SQLiteStore, cookie: str
) -> None:
    credential, token = store.create_credential(max_sessions=1)
    hub = EdgeHub(EdgeConfig(), store)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery, connect(hub, nursery) as first:
            accepted = await authenticate(first, token)
            assert accepted.error == "" and accepted.client_id and accepted.extra.cookie
            async with connect(hub, nursery) as second:
                refused = await authenticate(second, token, accepted.client_id, cookie)
                assert "ERR_NGROK_108" in refused.error
                assert refused.client_id == ""
                await second.ended.wait()
            assert hub.sessions_of(credential.id) == 1
            assert not first.ended.is_set()
            assert first.session.stop_reason == ""
            assert hub.sessions == {first.session.id: first.session}


async def test_the_right_cookie_takes_the_session_over_within_max_sessions(
    store: SQLiteStore,
) -> None:
    credential, token = store.create_credential(max_sessions=1)
    hub = EdgeHub(EdgeConfig(), store)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery, connect(hub, nursery) as first:
            accepted = await authenticate(first, token)
            async with connect(hub, nursery) as second:
                resumed = await authenticate(
                    second, token, accepted.client_id, accepted.extra.cookie
                )
                assert resumed.error == ""
                assert resumed.client_id == accepted.client_id
                await first.ended.wait()
                assert "replaced by a reconnecting session" in first.session.stop_reason
                assert hub.sessions == {second.session.id: second.session}
                assert hub.sessions_of(credential.id) == 1


async def test_the_right_cookie_of_another_credential_starts_a_new_client(
    store: SQLiteStore,
) -> None:
    _, owner_token = store.create_credential(description="owner")
    _, stranger_token = store.create_credential(description="stranger")
    hub = EdgeHub(EdgeConfig(), store)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery, connect(hub, nursery) as first:
            accepted = await authenticate(first, owner_token)
            async with connect(hub, nursery) as second:
                other = await authenticate(
                    second, stranger_token, accepted.client_id, accepted.extra.cookie
                )
                assert other.error == ""
                assert other.client_id not in ("", accepted.client_id)
                await trio.testing.wait_all_tasks_blocked()
                assert not first.ended.is_set()
                assert first.session.stop_reason == ""
                assert len(hub.sessions) == 2
