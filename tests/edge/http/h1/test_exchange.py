"""Tests for edge/http/h1/exchange.py: one request/response relay between a client's h11 SERVER
machine and an agent stream, on trio.testing memory streams (the client connection and the
agent stream are in-memory pairs; the "upstream" is an h11 server on the agent stream's far
end)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import h11
import trio
import trio.testing

from edge.http.h1.exchange import AgentStream, Exchange, Forward, Relay, both_done, take_body
from edge.http.seam import AgentStreamError, HttpRequest

TIMEOUT = 10  # seconds: only to turn a hang into a failure
MAX_HEAD = 16 * 1024

Upstream = Callable[[trio.abc.HalfCloseableStream], Awaitable[None]]


class World:
    """A client connection and an agent stream, each an in-memory pair, and a Relay between."""

    def __init__(self) -> None:
        self.client, proxy_side = trio.testing.memory_stream_pair()
        agent_side, self.upstream = trio.testing.memory_stream_pair()
        self.cc = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self.touched = 0
        self.relay = Relay(cc=self.cc, client=proxy_side, touch=self._touch, peer="client:1")
        self.agent = AgentStream("app", agent_side, MAX_HEAD)

    def _touch(self) -> None:
        self.touched += 1

    def forward(self, raw: bytes) -> Forward:
        """What the connection would hand the relay for the request in `raw`."""
        self.cc.receive_data(raw)
        event = self.cc.next_event()
        assert isinstance(event, h11.Request)
        datas, complete = take_body(self.cc)
        headers = [(bytes(name), bytes(value)) for name, value in event.headers.raw_items()]
        request = HttpRequest(
            method=event.method,
            target=event.target,
            host="app.test",
            scheme="http",
            headers=headers,
            accept=None,
            client_addr="client:1",
        )
        head = h11.Request(method=event.method, target=event.target, headers=headers)
        return Forward(request=request, head=head, datas=datas, complete=complete, started=0.0)

    async def run(self, forward: Forward, upstream: Upstream) -> Exchange:
        exchange = Exchange(forward, self.agent)
        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(upstream, self.upstream)
                await self.relay.run(exchange)
        return exchange

    async def response(self) -> tuple[h11.Response, bytes]:
        """The response the client got (it must be whole)."""
        conn = h11.Connection(h11.CLIENT)
        conn.send(h11.Request(method="GET", target="/", headers=[("Host", "app.test")]))
        conn.send(h11.EndOfMessage())
        head: h11.Response | None = None
        body = b""
        with trio.fail_after(TIMEOUT):
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(bytes(await self.client.receive_some(65536)))
                elif isinstance(event, h11.Response):
                    head = event
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    assert head is not None
                    return head, body


async def read_request(
    stream: trio.abc.Stream, conn: h11.Connection, *, head_only: bool = False
) -> tuple[h11.Request, bytes]:
    """A request as an upstream reads it: the head and its whole body, or only the head."""
    request: h11.Request | None = None
    body = b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(bytes(await stream.receive_some(65536)))
        elif isinstance(event, h11.Request):
            request = event
            if head_only:
                return request, body
        elif isinstance(event, h11.Data):
            body += event.data
        else:
            assert isinstance(event, h11.EndOfMessage)
            assert request is not None
            return request, body


async def test_a_whole_request_is_relayed_and_the_response_head_is_cleaned() -> None:
    world = World()
    forward = world.forward(b"GET /path?q=1 HTTP/1.1\r\nHost: app.test\r\nX-Mine: 1\r\n\r\n")
    assert forward.complete and not forward.datas
    seen: list[h11.Request] = []

    async def upstream(stream: trio.abc.HalfCloseableStream) -> None:
        conn = h11.Connection(h11.SERVER)
        request, _ = await read_request(stream, conn)
        seen.append(request)
        headers = [
            ("Content-Length", "2"),
            ("Connection", "keep-alive, X-Private"),
            ("Keep-Alive", "timeout=5"),
            ("X-Private", "hop"),
            ("ngrok-error-code", "forged"),
            ("X-App", "kept"),
        ]
        out = conn.send(h11.Response(status_code=200, headers=headers))
        out += conn.send(h11.Data(data=b"hi")) + conn.send(h11.EndOfMessage())
        await stream.send_all(out)

    exchange = await world.run(forward, upstream)
    assert exchange.failure is None
    assert exchange.request_sent and exchange.received and exchange.response_done
    assert (exchange.status, exchange.body_bytes) == (200, 2)
    assert both_done(world.agent.h11)  # the agent stream may carry the next request
    assert world.touched > 0
    [request] = seen
    assert (request.method, request.target) == (b"GET", b"/path?q=1")
    assert (b"x-mine", b"1") in request.headers
    head, body = await world.response()
    assert (head.status_code, body) == (200, b"hi")
    assert [name for name, _ in head.headers] == [b"content-length", b"x-app"]


async def test_an_agent_stream_that_ends_before_a_response_head_is_an_agent_stream_error() -> None:
    world = World()
    forward = world.forward(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")

    async def upstream(stream: trio.abc.HalfCloseableStream) -> None:
        await read_request(stream, h11.Connection(h11.SERVER))
        await stream.send_eof()

    exchange = await world.run(forward, upstream)
    assert isinstance(exchange.failure, AgentStreamError)
    assert str(exchange.failure) == "the agent stream ended before a complete response head"
    assert exchange.request_sent and not exchange.received
    assert not exchange.response_started and not exchange.response_done
    # Nothing went to the client: the connection may still answer with a page.
    assert world.cc.our_state is h11.SEND_RESPONSE


async def test_an_early_answer_ends_the_exchange_before_the_request_body() -> None:
    world = World()
    forward = world.forward(
        b"POST /up HTTP/1.1\r\nHost: app.test\r\nContent-Length: 100000\r\n\r\n" + b"x" * 10
    )
    assert not forward.complete

    async def upstream(stream: trio.abc.HalfCloseableStream) -> None:
        conn = h11.Connection(h11.SERVER)
        request, _ = await read_request(stream, conn, head_only=True)
        assert request.method == b"POST" and conn.their_state is h11.SEND_BODY
        out = conn.send(h11.Response(status_code=413, headers=[("Content-Length", "0")]))
        await stream.send_all(out + conn.send(h11.EndOfMessage()))

    exchange = await world.run(forward, upstream)
    assert exchange.failure is None
    assert exchange.response_done and exchange.status == 413
    assert not exchange.request_done and not exchange.request_sent
    head, body = await world.response()
    assert head.status_code == 413 and body == b""
    assert (b"connection", b"close") in head.headers  # the rest of the body is not read


def test_take_body_returns_what_h11_holds_and_whether_the_body_ended() -> None:
    cc = h11.Connection(h11.SERVER)
    cc.receive_data(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nabc")
    assert isinstance(cc.next_event(), h11.Request)
    datas, ended = take_body(cc)
    assert [bytes(d.data) for d in datas] == [b"abc"] and not ended
    cc.receive_data(b"de")
    datas, ended = take_body(cc)
    assert [bytes(d.data) for d in datas] == [b"de"] and ended
    assert cc.their_state is h11.DONE and not both_done(cc)  # no response sent yet
