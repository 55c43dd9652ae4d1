"""The agent behind an outbound proxy, end to end: a real agent process reaches a real edge only
through tinyproxy (HTTP CONNECT with BasicAuth) or Dante (SOCKS5 with username auth), named by
`agent.proxy_url` or by HTTPS_PROXY, and serves a request from curl through its tunnel.

The agent dials `localhost:<edge port>` (the edge's development certificate covers
`localhost`, and the edge takes a session on that name), because the proxy, not the agent,
resolves the connect host: the proxies resolve `localhost` from /etc/hosts.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

from tests.agent.real_proxies import RunningProxy, danted, socks_user, tinyproxy
from tests.e2e.harness import READY_TIMEOUT, Agent, Edge, curl_endpoint, make_agent
from tests.e2e.upstreams import HttpUpstream

USER, PASSWORD = "clinic", "pr0xy-pass"
#: Variables the agent would otherwise inherit from whoever runs the tests.
PROXY_VARIABLES = (
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
    "http_proxy",
    "HTTP_PROXY",
)


@pytest.fixture
def http_proxy(tmp_path: Path) -> Iterator[RunningProxy]:
    with tinyproxy(tmp_path / "tinyproxy", user=USER, password=PASSWORD) as proxy:
        yield proxy


def proxied_agent(
    edge: Edge,
    upstream: HttpUpstream,
    tmp_path: Path,
    *,
    proxy_url: str | None = None,
    env: dict[str, str] | None = None,
) -> Agent:
    """An `http` agent for `upstream` whose config sets `proxy_url` (if given), dialling the
    edge as `localhost`, with only `env`'s proxy variables."""
    config = tmp_path / "burrow.yml"
    config.write_text(
        "version: 3\nagent:\n  log: stderr\n  web_addr: false\n"
        + (f"  proxy_url: {proxy_url}\n" if proxy_url else "")
    )
    agent = make_agent(
        edge,
        edge.credential(),
        f"127.0.0.1:{upstream.port}",
        tmp_path,
        "--config",
        str(config),
        command="http",
    )
    for name in PROXY_VARIABLES:
        agent.env.pop(name, None)
    agent.env["BURROW_CONNECT_URL"] = f"localhost:{edge.agents_port}"
    agent.env.update(env or {})
    return agent


def assert_serves(edge: Edge, agent: Agent, upstream: HttpUpstream) -> None:
    # A bound well under curl_endpoint's own, so that a hang still shows the diagnostics.
    result = curl_endpoint(edge, agent.host, ["/through-the-proxy"], "--fail", "--max-time", "30")
    if result.returncode != 0:
        # Intermittent failures here (stops 16 and 17) were the upstream connection taken by
        # a server an earlier test left behind: a thread still in accept() on a listener
        # closed without shutdown() took it and echoed it (or held it unanswered). Show who
        # holds the upstream's port, what the upstream served, the agent's log and this
        # process's threads.
        sockets = subprocess.run(
            ["ss", "-tanpe", f"( sport = :{upstream.port} or dport = :{upstream.port} )"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        log = agent.log_path.read_text(errors="replace")[-3000:] if agent.log_path.exists() else ""
        raise AssertionError(
            f"{result.stderr}\nsockets on the upstream port:\n{sockets}\n"
            f"GETs the upstream served: {upstream.handled}\n{log}\n"
            f"this process's threads:\n{thread_stacks()}"
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello from /through-the-proxy\n"


def thread_stacks() -> str:
    """Each live thread of the test process with the innermost frames of its stack and the
    `self` of each: which of the servers earlier tests left behind are still serving, and
    on which sockets."""
    lines = []
    for ident, innermost in sys._current_frames().items():
        lines.append(f"thread {ident}:")
        frame: FrameType | None = innermost
        for _ in range(4):
            if frame is None:
                break
            owner = frame.f_locals.get("self")
            shown = repr(owner)[:200] if owner is not None else ""
            code = frame.f_code
            lines.append(f"  {code.co_filename}:{frame.f_lineno} {code.co_name} {shown}")
            frame = frame.f_back
    return "\n".join(lines)


def wait_for_log(agent: Agent, text: str) -> str:
    """The agent's stderr once it contains `text` (polled; bounded by READY_TIMEOUT)."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        log = agent.log()
        if text in log:
            return log
        assert agent.proc is not None and agent.proc.poll() is None, log
        time.sleep(0.05)
    raise AssertionError(f"the agent did not log {text!r}: {agent.log()!r}")


def test_agent_through_an_http_connect_proxy_with_credentials(
    shared_edge: Edge, upstream: HttpUpstream, http_proxy: RunningProxy, tmp_path: Path
) -> None:
    agent = proxied_agent(
        shared_edge, upstream, tmp_path, proxy_url=http_proxy.url(USER, PASSWORD)
    ).start()
    try:
        assert_serves(shared_edge, agent, upstream)
    finally:
        agent.kill()
    assert f"CONNECT localhost:{shared_edge.agents_port} HTTP/1.1" in http_proxy.log()


def test_agent_through_a_socks5_proxy_with_username_auth(
    shared_edge: Edge, upstream: HttpUpstream, tmp_path: Path
) -> None:
    user, password = socks_user()
    with danted(tmp_path / "danted", username_auth=True) as proxy:
        agent = proxied_agent(
            shared_edge, upstream, tmp_path, proxy_url=proxy.url(user, password)
        ).start()
        try:
            assert_serves(shared_edge, agent, upstream)
        finally:
            agent.kill()
        log = proxy.log()
    # Dante logs the authenticated user and the address it connected to for us.
    assert f"username%{user}@" in log
    assert f"127.0.0.1.{shared_edge.agents_port}" in log


def test_a_wrong_proxy_password_is_one_clear_line(
    shared_edge: Edge, upstream: HttpUpstream, http_proxy: RunningProxy, tmp_path: Path
) -> None:
    agent = proxied_agent(
        shared_edge, upstream, tmp_path, proxy_url=http_proxy.url(USER, "wrong")
    ).start(wait=False)
    try:
        log = wait_for_log(agent, "reconnecting in")
    finally:
        agent.kill()
    expected = (
        f"cannot connect to the edge at localhost:{shared_edge.agents_port}: proxy "
        f"{http_proxy.address} refused the credentials (401); check the user name and password "
        "in agent.proxy_url; reconnecting in "
    )
    assert expected in log
    assert "wrong" not in log  # the password is never printed
    assert "Traceback" not in log


def test_https_proxy_from_the_environment(
    shared_edge: Edge, upstream: HttpUpstream, tmp_path: Path
) -> None:
    with tinyproxy(tmp_path / "open-proxy") as proxy:
        agent = proxied_agent(
            shared_edge, upstream, tmp_path, env={"HTTPS_PROXY": proxy.url()}
        ).start()
        try:
            assert_serves(shared_edge, agent, upstream)
        finally:
            agent.kill()
        assert f"CONNECT localhost:{shared_edge.agents_port} HTTP/1.1" in proxy.log()


def test_no_proxy_dials_the_edge_directly(
    shared_edge: Edge, upstream: HttpUpstream, tmp_path: Path
) -> None:
    """HTTPS_PROXY names a port where nothing listens; NO_PROXY lists the connect host, so
    the agent never tries the proxy and connects."""
    env = {"HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": "example.com, localhost"}
    agent = proxied_agent(shared_edge, upstream, tmp_path, env=env).start()
    try:
        assert_serves(shared_edge, agent, upstream)
    finally:
        agent.kill()
    assert "127.0.0.1:9" not in agent.log()
