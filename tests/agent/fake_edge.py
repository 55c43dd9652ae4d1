"""A scripted edge over in-memory streams, for testing the agent's session lifecycle.

`FakeEdge.dial` is passed to `Agent(dial=...)`: each call makes a memory stream pair, starts a
server-side mux session on one end in the test's nursery, and returns the other end. The edge
answers Auth and Bind as scripted (`auth_errors`, `bind_errors`: popped per request, "" = ok;
each bound endpoint gets a URL per proto, see `_url`), records every request, echoes heartbeats
(unless `answer_heartbeats` is False), and exposes each session's `MuxSession` so a test can
open proxy or command streams or drop the session.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import trio
import trio.testing

from protocol.adapters.heartbeat import answer_heartbeats
from protocol.adapters.mux import MuxSession, MuxStream, open_mux_session, read_stream_type
from protocol.adapters.rpc import read_message, respond
from protocol.rpc.codec import Codec
from protocol.rpc.messages import (
    Auth,
    AuthResp,
    AuthRespExtra,
    Bind,
    BindResp,
    BindRespExtra,
    StreamType,
)
from protocol.wire.session import Role


@dataclass
class EdgeSession:
    mux: MuxSession
    done: trio.Event = field(default_factory=trio.Event)
    bound: trio.Event = field(default_factory=trio.Event)
    heartbeat_streams: list[MuxStream] = field(default_factory=list)
    bind_count: int = 0

    def close(self) -> None:
        """End this session from the edge's side (GOAWAY, then the transport closes)."""
        self.done.set()


class FakeEdge:
    def __init__(self, nursery: trio.Nursery, *, endpoints: int = 1) -> None:
        self.nursery = nursery
        self.endpoints = endpoints
        self.auths: list[Auth] = []
        self.binds: list[Bind] = []
        self.auth_errors: list[str] = []
        self.bind_errors: list[str] = []
        self.answer_heartbeats = True
        self.sessions: list[EdgeSession] = []
        self.session_started = trio.Event()
        self._next_bind = 0

    async def dial(self) -> trio.abc.Stream:
        agent_side, edge_side = trio.testing.memory_stream_pair()
        ready = trio.Event()
        self.nursery.start_soon(self._serve, edge_side, ready)
        await ready.wait()
        return agent_side

    async def wait_session(self, count: int) -> EdgeSession:
        """Wait until `count` sessions have bound all their endpoints; return the last."""
        while len(self.sessions) < count or not self.sessions[count - 1].bound.is_set():
            await trio.sleep(0.01)
        return self.sessions[count - 1]

    @staticmethod
    def _url(bind: Bind, bind_id: str) -> str:
        """The URL the edge chose: tcp gets a port from the bind id (bind_1 -> 20001); http,
        https and tls get the requested URL, or a random-looking name when it was empty."""
        number = int(bind_id.rsplit("_", 1)[1])
        if bind.proto == "tcp":
            return f"tcp://edge.localhost:{20000 + number}"
        return str(bind.opts.get("URL") or f"{bind.proto}://3f9a-{number}.edge.localhost")

    async def _serve(self, transport: trio.abc.Stream, ready: trio.Event) -> None:
        async with open_mux_session(transport, Role.SERVER) as mux:
            session = EdgeSession(mux)
            self.sessions.append(session)
            ready.set()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._accept, session, nursery)
                await session.done.wait()
                nursery.cancel_scope.cancel()

    async def _accept(self, session: EdgeSession, nursery: trio.Nursery) -> None:
        while True:
            try:
                stream = await session.mux.accept_stream()
            except trio.BrokenResourceError:
                session.done.set()
                return
            nursery.start_soon(self._handle, session, stream)

    async def _handle(self, session: EdgeSession, stream: MuxStream) -> None:
        kind = await read_stream_type(stream)
        if kind == StreamType.HEARTBEAT:
            session.heartbeat_streams.append(stream)
            if self.answer_heartbeats:
                await answer_heartbeats(stream)
            else:
                await trio.sleep_forever()
        elif kind == StreamType.AUTH:
            auth, codec = await read_message(stream, Auth, None)
            assert codec is Codec.MSGPACK
            self.auths.append(auth)
            error = self.auth_errors.pop(0) if self.auth_errors else ""
            response = AuthResp(
                version="3",
                client_id=auth.client_id or "cl_1",
                error=error,
                extra=AuthRespExtra(cookie=f"cookie-{len(self.auths)}"),
            )
            await respond(stream, response, codec)
        elif kind == StreamType.BIND:
            bind, codec = await read_message(stream, Bind, None)
            self.binds.append(bind)
            error = self.bind_errors.pop(0) if self.bind_errors else ""
            if error:
                await respond(stream, BindResp(error=error), codec)
                return
            self._next_bind += 1
            bind_id = bind.id or f"bind_{self._next_bind}"
            token = bind.extra.token or f"token_{self._next_bind}"
            response = BindResp(
                id=bind_id,
                url=self._url(bind, bind_id),
                proto=bind.proto,
                opts=bind.opts,
                extra=BindRespExtra(token=token),
            )
            await respond(stream, response, codec)
            session.bind_count += 1
            if session.bind_count == self.endpoints:
                session.bound.set()
