"""The agent's session lifecycle against a scripted in-memory edge (tests/agent/fake_edge.py)."""

from __future__ import annotations

import dataclasses
import io
import itertools
import json
import re
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from random import Random

import pytest
import trio

from agent.backoff import BACKOFF_RESET_AFTER
from agent.cli_endpoints import tcp_endpoint
from agent.errors import AgentError
from agent.session import Agent, Reporter, _policy_text
from protocol.rpc.errcodes import format_wire_error
from tests.agent.session_harness import HOST, Harness, endpoint, settings


@pytest.fixture
async def nursery() -> AsyncIterator[trio.Nursery]:
    async with trio.open_nursery() as nursery:
        yield nursery
        nursery.cancel_scope.cancel()


async def test_first_session_authenticates_binds_and_prints_forwarding(
    nursery: trio.Nursery,
) -> None:
    h = Harness(nursery, [endpoint("127.0.0.1:5432", "tcp://db.example.com:5432")])
    with trio.fail_after(5):
        await nursery.start(h.agent.run)
    assert h.out.getvalue() == "Forwarding tcp://edge.localhost:20001 -> 127.0.0.1:5432\n"
    (auth,) = h.edge.auths
    assert auth.client_id == ""
    assert auth.extra.authtoken == "tok_secret_1234567890"
    assert auth.extra.client_type == "burrow"
    assert auth.extra.heartbeat_interval == 1_000_000_000
    (bind,) = h.edge.binds
    assert bind.id == ""
    assert bind.proto == "tcp"
    assert bind.opts == {
        "URL": "tcp://db.example.com:5432",
        "Addr": "db.example.com:5432",
        "ProxyProto": 0,
    }
    assert h.agent.resume.client_id == "cl_1"
    assert h.agent.resume.cookie == "cookie-1"


async def test_auth_refusal_is_fatal_with_its_code(nursery: trio.Nursery) -> None:
    h = Harness(nursery, [endpoint()])
    h.edge.auth_errors.append(format_wire_error("The authtoken you specified is invalid.", 107))
    with trio.fail_after(5), pytest.raises(AgentError) as caught:
        await h.agent.run()
    assert caught.value.code == "ERR_NGROK_107"
    assert "authtoken you specified is invalid" in str(caught.value)
    assert len(h.edge.auths) == 1


async def test_an_edge_side_failure_at_auth_is_retried_with_backoff(
    nursery: trio.Nursery, autojump_clock: trio.abc.Clock
) -> None:
    """ERR_NGROK_10000 says the edge failed (its store, say), not the token: even on the first
    connect the agent backs off and tries again instead of giving up."""
    h = Harness(nursery, [endpoint()])
    h.edge.auth_errors.extend([format_wire_error("The edge's store failed.", 10000)] * 2)
    with trio.fail_after(10):
        await nursery.start(h.agent.run)
    assert len(h.edge.auths) == 3
    assert h.err.getvalue().count("ERR_NGROK_10000") == 2
    assert "reconnecting in" in h.err.getvalue()


async def test_bind_refusal_on_the_first_connect_is_fatal(nursery: trio.Nursery) -> None:
    h = Harness(nursery, [endpoint(url="tcp://db.example.com:5432")])
    h.edge.bind_errors.append(format_wire_error("The endpoint is already online.", 334))
    with trio.fail_after(5), pytest.raises(AgentError) as caught:
        await h.agent.run()
    assert caught.value.code == "ERR_NGROK_334"
    assert "'db' (tcp://db.example.com:5432)" in str(caught.value)
    assert h.out.getvalue() == ""


async def test_reconnect_resumes_client_id_cookie_bind_ids_and_tokens(
    nursery: trio.Nursery, autojump_clock: trio.abc.Clock
) -> None:
    h = Harness(nursery, [endpoint(name="a"), endpoint(name="b", addr="127.0.0.1:6000")])
    with trio.fail_after(10):
        await nursery.start(h.agent.run)
        h.edge.sessions[0].close()
        await h.edge.wait_session(2)
    _, second = h.edge.auths
    assert (second.client_id, second.extra.cookie) == ("cl_1", "cookie-1")
    assert [(b.id, b.extra.token) for b in h.edge.binds[2:]] == [
        ("bind_1", "token_1"),
        ("bind_2", "token_2"),
    ]
    lines = h.out.getvalue().splitlines()
    assert lines[2:] == lines[:2]  # the same URLs again
    assert "reconnecting in" in h.err.getvalue()


async def test_already_bound_on_reconnect_backs_off_and_retries(
    nursery: trio.Nursery, autojump_clock: trio.abc.Clock
) -> None:
    h = Harness(nursery, [endpoint()])
    with trio.fail_after(10):
        await nursery.start(h.agent.run)
        h.edge.bind_errors.extend([format_wire_error("already bound", 334)] * 2)
        h.edge.sessions[0].close()
        await h.edge.wait_session(4)
    assert len(h.edge.auths) == 4
    assert h.err.getvalue().count("ERR_NGROK_334") == 2


async def test_unreachable_edge_is_retried_with_backoff(autojump_clock: trio.abc.Clock) -> None:
    attempts: list[float] = []

    async def refuse() -> trio.abc.Stream:
        attempts.append(trio.current_time())
        raise OSError(111, "Connection refused")

    err = io.StringIO()
    agent = Agent(
        settings(),
        [endpoint()],
        reporter=Reporter(io.StringIO(), err),
        random=Random(1),
        host=HOST,
        dial=refuse,
    )
    with trio.move_on_after(20):
        await agent.run()
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert len(gaps) >= 5
    for index, gap in enumerate(gaps[:5]):
        ceiling = 0.5 * 2**index  # full jitter: anywhere below the doubling ceiling
        assert 0.0 <= gap < ceiling
    assert len(set(gaps)) == len(gaps)  # jittered, not a fixed ladder
    assert "cannot connect to the edge at connect.burrow.localhost:8443" in err.getvalue()
    assert "Connection refused" in err.getvalue()


class _HighRandom(Random):
    """Always draws just under 1, so each wait is (almost) its ceiling and the notices show
    where the schedule stands."""

    def random(self) -> float:
        return 1.0 - 2**-53


async def test_backoff_resets_only_after_a_session_that_stayed_up(
    nursery: trio.Nursery, autojump_clock: trio.abc.Clock
) -> None:
    h = Harness(nursery, [endpoint()])
    h.agent = Agent(
        settings(),
        [endpoint()],
        reporter=Reporter(h.out, h.err),
        random=_HighRandom(),
        host=HOST,
        dial=h.edge.dial,
    )
    with trio.fail_after(60):
        await nursery.start(h.agent.run)
        h.edge.sessions[0].close()  # dropped at once: the schedule goes on
        await h.edge.wait_session(2)
        h.edge.sessions[1].close()
        await h.edge.wait_session(3)
        await trio.sleep(BACKOFF_RESET_AFTER + 1)  # this one stays up
        h.edge.sessions[2].close()
        await h.edge.wait_session(4)
    waits = re.findall(r"reconnecting in ([0-9.]+)s", h.err.getvalue())
    assert waits == ["0.5", "1.0", "0.5"]


async def test_stop_closes_the_session_with_goaway_and_run_returns(nursery: trio.Nursery) -> None:
    h = Harness(nursery, [endpoint()])
    done = trio.Event()

    async def run() -> None:
        await h.agent.run()
        done.set()

    with trio.fail_after(5):
        nursery.start_soon(run)
        session = await h.edge.wait_session(1)
        h.agent.stop()
        await done.wait()
        await session.mux.closed.wait()
    assert session.mux.goaway is not None
    assert session.mux.goaway.error_code == 0
    assert h.err.getvalue().endswith("burrow: stopped\n")


async def test_stop_during_a_backoff_wait_returns_at_once(autojump_clock: trio.abc.Clock) -> None:
    async def refuse() -> trio.abc.Stream:
        raise OSError(111, "Connection refused")

    err = io.StringIO()
    agent = Agent(
        settings(),
        [endpoint()],
        reporter=Reporter(io.StringIO(), err),
        random=Random(1),
        host=HOST,
        dial=refuse,
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(agent.run)
        await trio.sleep(40)  # the backoff is at its 30 s cap by now
        started = trio.current_time()
        agent.stop()
    assert trio.current_time() - started < 0.01
    assert err.getvalue().endswith("burrow: stopped\n")


def test_policy_text_is_what_the_bind_carries(tmp_path: Path) -> None:
    """Bind.Opts.TrafficPolicy: an inline string as written, a mapping as JSON (a YAML date as
    its text), a file's text as read when the agent starts."""
    base = tcp_endpoint("5432", url="tcp://", name="db", pooling=False)
    as_string = dataclasses.replace(base, traffic_policy="on_tcp_connect: []\n")
    assert _policy_text(as_string) == "on_tcp_connect: []\n"
    mapping = {
        "on_tcp_connect": [{"name": "x", "expressions": [], "actions": []}],
        "d": date(2025, 1, 2),
    }
    as_mapping = dataclasses.replace(base, traffic_policy=mapping)
    assert json.loads(_policy_text(as_mapping) or "") == {**mapping, "d": "2025-01-02"}
    policy = tmp_path / "policy.yml"
    policy.write_text("on_tcp_connect: []\n")
    as_file = dataclasses.replace(base, traffic_policy_file=str(policy))
    assert _policy_text(as_file) == "on_tcp_connect: []\n"
    assert _policy_text(base) is None
    policy.unlink()
    with pytest.raises(AgentError, match="cannot read traffic_policy_file"):
        _policy_text(as_file)
