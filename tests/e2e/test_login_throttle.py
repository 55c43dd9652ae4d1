"""Failed agent logins against a real edge over real TLS (issue 9.6): a guessing loop from one
address is throttled and audited within bounds, while valid logins, from that address and from
another, stay fast.

The client is Burrow's own wire code (TLS, muxado, the Auth RPC) in this process; the "other
address" is 127.0.0.2, which Linux routes over loopback like 127.0.0.1. Both sizes run the same
probe: a few concurrent guessers send wrong authtokens as fast as the edge answers, while one
client logs in with a valid authtoken over and over and times each login (TCP connect to
AuthResp).
"""

from __future__ import annotations

import json
import ssl
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.request import Request, urlopen

import pytest
import trio

from protocol.adapters.mux import open_mux_session
from protocol.adapters.rpc import call
from protocol.rpc import errcodes
from protocol.rpc.codec import Codec
from protocol.rpc.messages import Auth, AuthExtra, AuthResp, StreamType
from protocol.wire.session import Role
from tests.e2e.harness import Edge, make_edge

#: Failures an address may make per window on the probed edge (the default, 10, too).
BUDGET = 10
GUESSERS = 8
OTHER_ADDRESS = "127.0.0.2"
WRONG_TOKEN = "cr_2bW5q1NotARealIdAtAll_" + "x" * 43


@pytest.fixture
def throttled_edge(tmp_path: Path) -> Iterator[Edge]:
    edge = make_edge(
        tmp_path,
        extra_config=f"limits: {{auth_failures_per_address: {BUDGET}, auth_failure_window: 60s}}\n",
    ).start()
    try:
        yield edge
    finally:
        edge.stop()


async def login(edge: Edge, token: str, *, source: str = "127.0.0.1") -> tuple[AuthResp, float]:
    """One agent login over TLS: the AuthResp and the seconds from TCP connect to it."""
    context = ssl.create_default_context(cafile=str(edge.ca_path))
    started = time.perf_counter()
    tcp = await trio.open_tcp_stream("127.0.0.1", edge.agents_port, local_address=source)
    stream = trio.SSLStream(tcp, context, server_hostname="connect.burrow.localhost")
    try:
        async with open_mux_session(stream, Role.CLIENT) as mux:
            request = Auth(
                version=("2",), extra=AuthExtra(authtoken=token, version="3.0.0", os="linux")
            )
            response = await call(mux, StreamType.AUTH, request, AuthResp, Codec.MSGPACK)
            return response, time.perf_counter() - started
    finally:
        await trio.aclose_forcefully(stream)


async def probe(edge: Edge, token: str, wrong: int) -> tuple[Counter[str], list[float]]:
    """`wrong` failed logins from GUESSERS concurrent clients, while valid logins are timed
    until the guessing is done: the refusal codes, and the valid logins' seconds."""
    codes: Counter[str] = Counter()
    latencies: list[float] = []
    remaining = wrong

    async def guesser() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            response, _ = await login(edge, WRONG_TOKEN)
            codes[errcodes.parse_wire_error(response.error).code or "none"] += 1

    async def valid_logins(done: trio.Event) -> None:
        while not done.is_set():
            response, seconds = await login(edge, token)
            assert response.error == "", response.error
            latencies.append(seconds)
            await trio.sleep(0.02)

    done = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(valid_logins, done)
        async with trio.open_nursery() as guessers:
            for _ in range(GUESSERS):
                guessers.start_soon(guesser)
        done.set()
    return codes, latencies


def _failed_login_events(edge: Edge, key: str) -> list[dict[str, object]]:
    """The edge's agent_login_failed.v0 events, through its admin API (fewer than a page)."""
    request = Request(
        f"{edge.admin_url}/events?limit=100&type=agent_login_failed.v0",
        headers={"Authorization": f"Bearer {key}", "Ngrok-Version": "2"},
    )
    with urlopen(request, timeout=30) as response:
        events: list[dict[str, object]] = json.load(response)["events"]
    return events


async def _baseline(edge: Edge, token: str, count: int = 20) -> list[float]:
    return [(await login(edge, token))[1] for _ in range(count)]


async def _check(edge: Edge, wrong: int, bound: float) -> None:
    token = edge.credential()
    key = edge.api_key()
    with trio.fail_after(bound):
        before = await _baseline(edge, token)
        started = time.perf_counter()
        codes, during = await probe(edge, token, wrong)
        guessing = time.perf_counter() - started
        # The guesser's own address is throttled; another address still gets the real reason
        # and still logs in.
        other, _ = await login(edge, WRONG_TOKEN, source=OTHER_ADDRESS)
        accepted, other_seconds = await login(edge, token, source=OTHER_ADDRESS)
    print(
        f"\n{wrong} wrong tokens in {guessing:.1f}s ({wrong / guessing:.0f}/s): {dict(codes)}; "
        f"valid logins p50 {statistics.median(before) * 1000:.1f} ms before, during "
        f"p50 {statistics.median(during) * 1000:.1f} ms, max {max(during) * 1000:.1f} ms "
        f"({len(during)} logins); other address {other_seconds * 1000:.1f} ms"
    )
    assert codes == {errcodes.ERR_NGROK_107: BUDGET, errcodes.ERR_NGROK_5001: wrong - BUDGET}
    assert errcodes.parse_wire_error(other.error).code == errcodes.ERR_NGROK_107
    assert accepted.error == ""
    assert len(during) >= 3, "valid logins kept going during the guessing"
    # Valid logins stay fast: under the 83 ms p50 the issue measured during a guessing loop
    # (20-33 ms here), or 5 times this machine's own quiet p50 if that is slower.
    assert statistics.median(during) < max(0.075, 5 * statistics.median(before))
    # Failures are audited within their budget: one per answered failure, one for the
    # throttling, none for the rest.
    events = _failed_login_events(edge, key)
    assert {e["event_type"] for e in events} == {"agent_login_failed.v0"}
    by_address = Counter(str(e["object"]["agent_ip"]) for e in events)  # type: ignore[index]
    assert by_address == {"127.0.0.1": BUDGET + 1, OTHER_ADDRESS: 1}
    assert WRONG_TOKEN not in json.dumps(events)


async def test_wrong_tokens_are_throttled_and_valid_logins_stay_fast(
    throttled_edge: Edge,
) -> None:
    await _check(throttled_edge, wrong=300, bound=120)


@pytest.mark.slow
async def test_a_thousand_wrong_tokens(throttled_edge: Edge) -> None:
    await _check(throttled_edge, wrong=1000, bound=300)
