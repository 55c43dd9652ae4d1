"""Idle keep-alive clients cannot take an agent offline (issue 9, finding 1), end to end.

A real edge and a real agent on loopback, real TLS clients (trio's SSLStream trusting the
edge's development CA) and an upstream in this process that counts the connections the agent
holds to it. Clients come from several loopback addresses (127.0.0.0/8 is all loopback on
Linux), as a crowd behind several addresses would, so the per-address limit is exercised
separately from the rest.

* An idle client holds no agent stream: about a second after its exchange the edge closes the
  stream, and the agent its upstream connection, while the client's connection stays open.
* So more idle clients than the session has streams leave a normal client served.
* A session (or an endpoint's share of it) at its stream limit answers 503
  BURROW_ENDPOINT_AT_CAPACITY, not 502 ERR_NGROK_3200 ("agent unreachable").
* One source address may hold `limits.max_connections_per_address` connections; more are
  closed at once, and the refusals are logged once, not once each.
"""

from __future__ import annotations

import resource
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import h11
import pytest
import trio

from tests.e2e.harness import Agent, Edge, make_agent, make_edge

TIMEOUT = 30.0
#: A released agent stream closes the agent's upstream connection within this long of the
#: client going idle (the edge holds it `AGENT_STREAM_HOLD`, 1 s).
RELEASE_WITHIN = 10.0


# ------------------------------------------------------------------------------ upstream


@dataclass
class Upstream:
    """An HTTP/1.1 keep-alive upstream: `/hang` never answers, anything else gets "ok"."""

    port: int = 0
    open: int = 0  # connections the agent holds to it now
    hanging: int = 0  # requests to /hang waiting now
    served: int = 0
    release: trio.Event = field(default_factory=trio.Event)

    async def handle(self, stream: trio.SocketStream) -> None:
        self.open += 1
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(65536)
                    conn.receive_data(data)
                    if not data:
                        return
                    continue
                if isinstance(event, h11.Request):
                    if event.target == b"/hang":
                        self.hanging += 1
                        try:
                            await self.release.wait()
                        finally:
                            self.hanging -= 1
                        return
                    continue
                if isinstance(event, h11.EndOfMessage):
                    self.served += 1
                    body = b"ok"
                    await stream.send_all(
                        conn.send(
                            h11.Response(
                                status_code=200, headers=[("Content-Length", str(len(body)))]
                            )
                        )
                        + conn.send(h11.Data(data=body))
                        + conn.send(h11.EndOfMessage())
                    )
                    if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                        return
                    conn.start_next_cycle()
                    continue
                if isinstance(event, h11.ConnectionClosed):
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            pass
        finally:
            self.open -= 1
            await trio.aclose_forcefully(stream)


@asynccontextmanager
async def running_upstream() -> AsyncIterator[Upstream]:
    upstream = Upstream()
    async with trio.open_nursery() as nursery:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1", backlog=4096)
        nursery.start_soon(trio.serve_listeners, upstream.handle, listeners)
        upstream.port = listeners[0].socket.getsockname()[1]
        yield upstream
        upstream.release.set()
        nursery.cancel_scope.cancel()


async def wait_for(predicate: object, what: str, within: float = RELEASE_WITHIN) -> float:
    """Poll `predicate()` until true; the seconds it took. Fails after `within`."""
    assert callable(predicate)
    began = trio.current_time()
    with trio.move_on_after(within):
        while not predicate():
            await trio.sleep(0.05)
        return trio.current_time() - began
    raise AssertionError(f"{what}: not within {within}s")


# ------------------------------------------------------------------------------- clients


@dataclass
class Response:
    status: int
    headers: dict[bytes, bytes]
    body: bytes


class Client:
    """One keep-alive HTTPS client connection to an endpoint, from a chosen loopback address."""

    def __init__(self, stream: trio.SSLStream[trio.SocketStream], host: str) -> None:
        self.stream = stream
        self.host = host
        self.conn = h11.Connection(h11.CLIENT)

    @classmethod
    async def connect(cls, edge: Edge, host: str, source: str) -> Client:
        tcp = await trio.open_tcp_stream("127.0.0.1", edge.agents_port, local_address=source)
        context = ssl.create_default_context(cafile=str(edge.ca_path))
        stream = trio.SSLStream(tcp, context, server_hostname=host)
        await stream.do_handshake()
        return cls(stream, host)

    async def get(self, path: str = "/") -> Response:
        conn = self.conn
        if conn.our_state is h11.DONE:
            conn.start_next_cycle()
        await self.stream.send_all(
            conn.send(h11.Request(method="GET", target=path, headers=[("Host", self.host)]))
            + conn.send(h11.EndOfMessage())
        )
        head: h11.Response | None = None
        body = b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(bytes(await self.stream.receive_some(65536)))
            elif isinstance(event, h11.Response):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                return Response(head.status_code, dict(head.headers), body)
            else:
                raise AssertionError(f"unexpected {event!r}")

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)


@contextmanager
def edge_and_agent(tmp_path: Path, upstream: Upstream, limits: str) -> Iterator[tuple[Edge, Agent]]:
    edge = make_edge(tmp_path, extra_config=f"limits: {{{limits}}}\n" if limits else "").start()
    try:
        agent = make_agent(
            edge, edge.credential(), f"127.0.0.1:{upstream.port}", tmp_path, command="http"
        ).start()
        try:
            yield edge, agent
        finally:
            agent.kill()
    finally:
        edge.stop()


# --------------------------------------------------------------------------------- tests


async def test_idle_client_holds_no_agent_stream_nor_upstream_connection(tmp_path: Path) -> None:
    async with running_upstream() as upstream:
        with edge_and_agent(tmp_path, upstream, "") as (edge, agent), trio.fail_after(TIMEOUT):
            client = await Client.connect(edge, agent.host, "127.0.0.2")
            first = await client.get()
            second = await client.get()  # back to back: the same agent stream and upstream
            assert (first.status, second.status) == (200, 200)
            assert upstream.open == 1
            took = await wait_for(lambda: upstream.open == 0, "upstream connection released")
            assert took < RELEASE_WITHIN
            # The client's own connection stayed open, and serves its next request.
            third = await client.get()
            assert (third.status, third.body) == (200, b"ok")
            await client.aclose()


async def test_more_idle_clients_than_streams_leave_a_normal_client_served(
    tmp_path: Path,
) -> None:
    streams = 8  # each endpoint may hold half: 4
    async with running_upstream() as upstream:
        limits = f"max_streams_per_session: {streams}"
        with edge_and_agent(tmp_path, upstream, limits) as (edge, agent), trio.fail_after(60):
            idle: list[Client] = []
            for batch in range(3):  # 12 idle clients, in batches an endpoint's share can serve
                sources = [f"127.0.0.{10 + batch}"] * 4
                clients = [await Client.connect(edge, agent.host, s) for s in sources]
                for client in clients:
                    response = await client.get()
                    assert response.status == 200, response
                idle += clients
                await wait_for(lambda: upstream.open == 0, f"batch {batch} released")
            assert len(idle) > streams
            normal = await Client.connect(edge, agent.host, "127.0.0.99")
            response = await normal.get()
            assert (response.status, response.body) == (200, b"ok")
            # ... and every idle client is still connected and can be served again.
            again = await idle[0].get()
            assert again.status == 200
            for client in [normal, *idle]:
                await client.aclose()


async def _hang_until_refused(
    edge: Edge, agent: Agent, upstream: Upstream, most: int
) -> tuple[list[Client], Response]:
    """Open clients whose requests hang at the upstream until one is refused; the hung clients
    and the refusal. At most `most` may hang."""
    hung: list[Client] = []
    refused: Response | None = None
    async with trio.open_nursery() as nursery:
        for _ in range(most + 1):
            client = await Client.connect(edge, agent.host, "127.0.0.2")
            before = upstream.hanging
            got: list[Response] = []

            async def ask(client: Client = client, got: list[Response] = got) -> None:
                got.append(await client.get("/hang"))

            nursery.start_soon(ask)
            await wait_for(
                lambda before=before, got=got: upstream.hanging > before or bool(got),
                "request placed",
            )
            if got:
                refused = got[0]
                await client.aclose()
                break
            hung.append(client)
        nursery.cancel_scope.cancel()
    assert refused is not None, f"{len(hung)} requests hang and none was refused"
    return hung, refused


async def test_endpoint_at_its_share_of_streams_gets_503_not_3200(tmp_path: Path) -> None:
    async with running_upstream() as upstream:
        limits = "max_streams_per_session: 8, endpoint_stream_percent: 50"
        with edge_and_agent(tmp_path, upstream, limits) as (edge, agent), trio.fail_after(TIMEOUT):
            hung, refused = await _hang_until_refused(edge, agent, upstream, most=4)
            assert len(hung) == 4  # half of 8, though the session has streams left
            assert refused.status == 503
            assert refused.headers[b"burrow-error-code"] == b"BURROW_ENDPOINT_AT_CAPACITY"
            assert b"ngrok-error-code" not in refused.headers  # not ngrok's "offline" 3200
            assert b"at capacity" in refused.body
            # The upstream answers the hung requests (by closing): their streams are given
            # back, and the endpoint serves again.
            upstream.release.set()
            await wait_for(lambda: upstream.hanging == 0, "hung requests ended")
            fresh = await Client.connect(edge, agent.host, "127.0.0.3")
            await wait_for_status(fresh, 200)
            for client in [*hung, fresh]:
                await client.aclose()
            assert "BURROW_ENDPOINT_AT_CAPACITY" in edge.log()


async def test_session_at_its_stream_limit_gets_503_not_3200(tmp_path: Path) -> None:
    async with running_upstream() as upstream:
        limits = "max_streams_per_session: 4, endpoint_stream_percent: 100"
        with edge_and_agent(tmp_path, upstream, limits) as (edge, agent), trio.fail_after(TIMEOUT):
            hung, refused = await _hang_until_refused(edge, agent, upstream, most=4)
            assert 1 <= len(hung) < 4  # the agent's heartbeat stream counts too
            assert refused.status == 503
            assert refused.headers[b"burrow-error-code"] == b"BURROW_ENDPOINT_AT_CAPACITY"
            for client in hung:
                await client.aclose()


async def wait_for_status(client: Client, status: int) -> None:
    """Ask until the answer has `status` (the edge closes streams a moment after their
    upstream connections end)."""
    deadline = trio.current_time() + RELEASE_WITHIN
    while (response := await client.get()).status != status:
        assert trio.current_time() < deadline, response
        await trio.sleep(0.05)


async def _refused_at_once(edge: Edge, source: str) -> bool:
    """True if the edge closes a new connection from `source` before any TLS handshake."""
    tcp = await trio.open_tcp_stream("127.0.0.1", edge.agents_port, local_address=source)
    try:
        with trio.fail_after(5):
            return await tcp.receive_some(1024) == b""
    except trio.BrokenResourceError:
        return True  # reset
    except trio.TooSlowError:
        return False  # kept open, waiting for a ClientHello
    finally:
        await trio.aclose_forcefully(tcp)


async def test_one_address_may_hold_only_its_connections(tmp_path: Path) -> None:
    async with running_upstream() as upstream:
        limits = "max_connections_per_address: 3"
        with edge_and_agent(tmp_path, upstream, limits) as (edge, agent), trio.fail_after(60):
            held = [await Client.connect(edge, agent.host, "127.0.0.2") for _ in range(3)]
            for _ in range(5):
                assert await _refused_at_once(edge, "127.0.0.2")
            # Other addresses are served.
            other = await Client.connect(edge, agent.host, "127.0.0.3")
            assert (await other.get()).status == 200
            # One connection ends: its address may connect again.
            await held.pop().aclose()
            again = await wait_for_connect(edge, agent.host, "127.0.0.2")
            assert (await again.get()).status == 200
            for client in [*held, other, again]:
                await client.aclose()
            summaries = [
                line
                for line in edge.log().splitlines()
                if "limits.max_connections_per_address" in line
            ]
            # Five refusals within the log interval: one line, not five.
            assert len(summaries) == 1, summaries
            assert "127.0.0.2" in summaries[0]


async def wait_for_connect(edge: Edge, host: str, source: str) -> Client:
    """A client from `source`, once the edge has noticed a closed one and lets it in."""
    deadline = trio.current_time() + RELEASE_WITHIN
    while True:
        try:
            return await Client.connect(edge, host, source)
        except (trio.BrokenResourceError, ssl.SSLError):
            if trio.current_time() > deadline:
                raise
            await trio.sleep(0.05)


# ------------------------------------------------------------------------- full size


def _raise_open_files(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= needed, "raise ulimit -n"


@pytest.mark.slow
async def test_4200_idle_keep_alive_clients_leave_a_normal_client_served(tmp_path: Path) -> None:
    """The probe from the issue at full size: 4,200 idle keep-alive TLS clients (more than the
    default 4,096 streams per session) and a normal client is still served, quickly."""
    idle_clients = 4200
    addresses = 6  # 700 each: under the default max_connections_per_address
    _raise_open_files(idle_clients * 2 + 1000)  # the clients, the upstream, some slack
    async with running_upstream() as upstream:
        with edge_and_agent(tmp_path, upstream, "") as (edge, agent), trio.fail_after(110):
            began = time.monotonic()
            idle: list[Client] = []
            statuses: dict[int, int] = {}
            gate = trio.Semaphore(64)

            async def one(index: int) -> None:
                async with gate:
                    client = await Client.connect(
                        edge, agent.host, f"127.0.0.{10 + index % addresses}"
                    )
                    response = await client.get()
                    statuses[response.status] = statuses.get(response.status, 0) + 1
                    idle.append(client)

            async with trio.open_nursery() as nursery:
                for index in range(idle_clients):
                    nursery.start_soon(one, index)
            connected = time.monotonic() - began
            assert statuses == {200: idle_clients}, statuses
            released = await wait_for(
                lambda: upstream.open == 0, "idle clients' upstream connections released"
            )
            normal = await Client.connect(edge, agent.host, "127.0.0.99")
            asked = time.monotonic()
            response = await normal.get()
            latency = time.monotonic() - asked
            assert (response.status, response.body) == (200, b"ok")
            assert latency < 2.0
            print(
                f"\n{idle_clients} idle clients connected and served in {connected:.1f}s; "
                f"upstream connections all released {released:.1f}s later; a normal request "
                f"then took {latency * 1000:.1f}ms"
            )
            for client in [normal, *idle]:
                await client.aclose()
