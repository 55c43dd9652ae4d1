"""The agent's session tests' harness: a real `Agent` against the in-memory fake edge
(tests/agent/fake_edge.py), with its terminal output captured, and a TCP echo upstream on
127.0.0.1."""

from __future__ import annotations

import io
from functools import partial
from random import Random

import trio

from agent.cli_endpoints import tcp_endpoint
from agent.config import AgentSettings, EndpointSettings, Secret
from agent.requests import HostInfo
from agent.session import Agent, Reporter
from tests.agent.fake_edge import FakeEdge

HOST = HostInfo(os="linux", arch="x86_64", hostname="clinic-box")


def settings(**overrides: object) -> AgentSettings:
    values: dict[str, object] = {
        "authtoken": Secret("tok_secret_1234567890"),
        "heartbeat_interval": 1.0,
        "heartbeat_tolerance": 1.0,
        "connect_timeout": 5.0,
    }
    values.update(overrides)
    return AgentSettings(**values)  # type: ignore[arg-type]


def endpoint(
    addr: str = "127.0.0.1:5432", url: str | None = None, name: str = "db"
) -> EndpointSettings:
    return tcp_endpoint(addr, url=url, name=name, pooling=False)


class Harness:
    def __init__(self, nursery: trio.Nursery, endpoints: list[EndpointSettings], **kw: object):
        self.out = io.StringIO()
        self.err = io.StringIO()
        self.edge = FakeEdge(nursery, endpoints=len(endpoints))
        self.agent = Agent(
            settings(**kw),
            endpoints,
            reporter=Reporter(self.out, self.err),
            random=Random(7),
            host=HOST,
            dial=self.edge.dial,
        )


async def echo_server(nursery: trio.Nursery) -> int:
    async def echo(stream: trio.SocketStream) -> None:
        async with stream:
            while data := await stream.receive_some():
                await stream.send_all(data)

    listeners = await nursery.start(partial(trio.serve_tcp, echo, 0, host="127.0.0.1"))
    return int(listeners[0].socket.getsockname()[1])
