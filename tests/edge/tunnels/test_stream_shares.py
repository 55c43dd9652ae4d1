"""Each endpoint's share of its session's streams, and the stream that gives its share back."""

from __future__ import annotations

import trio
import trio.testing

from edge.admin.metrics import EdgeMetrics
from edge.tunnels.stream_shares import SharedStream, StreamShares
from protocol.adapters.mux import open_mux_session
from protocol.wire.session import Role


def test_an_endpoint_takes_at_most_its_share_and_others_keep_theirs() -> None:
    shares = StreamShares(session_limit=8, percent=50)
    assert shares.per_endpoint == 4
    assert all(shares.take("a") for _ in range(4))
    assert not shares.take("a")  # its share is taken, though the session has room
    assert shares.held("a") == 4
    assert all(shares.take("b") for _ in range(4))  # another endpoint still gets its own
    shares.give_back("a")
    assert shares.take("a")
    for _ in range(4):
        shares.give_back("a")
    assert shares.held("a") == 0


def test_a_share_is_at_least_one_stream() -> None:
    assert StreamShares(session_limit=1, percent=1).per_endpoint == 1
    assert StreamShares(session_limit=4096, percent=50).per_endpoint == 2048
    assert StreamShares(session_limit=4096, percent=100).per_endpoint == 4096


async def test_closing_the_stream_gives_its_share_back_once() -> None:
    shares = StreamShares(session_limit=2, percent=50)
    assert shares.take("a")
    left, right = trio.testing.memory_stream_pair()
    stream = SharedStream(left, shares, "a")
    with trio.fail_after(5):
        await stream.send_all(b"ping")
        assert await right.receive_some() == b"ping"
        await right.send_all(b"pong")
        assert await stream.receive_some() == b"pong"
        assert not shares.take("a")  # still held
        await stream.aclose()
        assert shares.held("a") == 0
        await stream.aclose()  # closing twice gives back once
        assert shares.held("a") == 0
        assert await right.receive_some() == b""  # the wrapped stream was closed too


async def test_a_forceful_close_under_cancellation_gives_the_share_back() -> None:
    shares = StreamShares(session_limit=2, percent=100)
    assert shares.take("a")
    left, _right = trio.testing.memory_stream_pair()
    stream = SharedStream(left, shares, "a")
    with trio.fail_after(5):
        await trio.aclose_forcefully(stream)
    assert shares.held("a") == 0


async def test_the_stream_is_counted_in_the_edges_metrics() -> None:
    """Opened and open streams, and the bytes each way, as /metrics shows them."""
    metrics = EdgeMetrics()
    shares = StreamShares(session_limit=4, percent=50)
    assert shares.take("a")
    left, right = trio.testing.memory_stream_pair()
    stream = SharedStream(left, shares, "a", metrics=metrics, proto="https")
    sample = metrics.registry.get_sample_value
    assert sample("burrow_edge_streams_opened_total", {"proto": "https"}) == 1
    assert sample("burrow_edge_streams_open") == 1
    with trio.fail_after(5):
        await stream.send_all(b"request")
        assert await right.receive_some() == b"request"
        await right.send_all(b"response!")
        assert await stream.receive_some() == b"response!"
        await stream.aclose()
        await stream.aclose()  # a second close is not a second stream closed
    assert sample("burrow_edge_bytes_total", {"direction": "to_agent"}) == len(b"request")
    assert sample("burrow_edge_bytes_total", {"direction": "from_agent"}) == len(b"response!")
    assert sample("burrow_edge_streams_open") == 0
    assert sample("burrow_edge_streams_opened_total", {"proto": "https"}) == 1


async def test_data_handed_straight_to_a_sink_is_counted_from_the_agent() -> None:
    """`deliver_to` reaches the wrapped mux stream (the mux reader then writes to the sink
    while a receiver waits), and what the sink takes counts as bytes from the agent."""
    metrics = EdgeMetrics()
    shares = StreamShares(session_limit=4, percent=50)
    assert shares.take("a")
    left, right = trio.testing.memory_stream_pair()
    sunk: list[bytes] = []

    def sink(data: bytes) -> int:
        sunk.append(bytes(data))
        return len(data)

    with trio.fail_after(10):
        async with (
            open_mux_session(left, Role.SERVER) as edge_side,
            open_mux_session(right, Role.CLIENT) as agent_side,
        ):
            agent = await agent_side.open_stream()
            await agent.send_all(b"!")
            stream = SharedStream(await edge_side.accept_stream(), shares, "a", metrics=metrics)
            assert await stream.receive_some(1) == b"!"
            async with trio.open_nursery() as nursery:
                nursery.start_soon(stream.receive_some)
                await trio.testing.wait_all_tasks_blocked()
                stream.deliver_to(sink)
                await agent.send_all(b"straight through")
                await trio.testing.wait_all_tasks_blocked()
                assert sunk == [b"straight through"]
                stream.deliver_to(None)
                await agent.send_all(b"read")
            await stream.aclose()
    sample = metrics.registry.get_sample_value
    assert sample("burrow_edge_bytes_total", {"direction": "from_agent"}) == len(
        b"!straight throughread"
    )
