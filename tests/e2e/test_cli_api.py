"""`burrow-edge`'s management commands against a real `burrow-edge serve`, through its admin API
(an API key in BURROW_API_KEY or --api-key), with a real agent."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.e2e.harness import (
    BIN,
    EchoServer,
    Edge,
    _read_line_matching,
    make_agent,
    roundtrip,
)


def api_env(edge: Edge, key: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(BURROW_API_KEY=key, BURROW_API_URL=edge.admin_url)
    return env


def cli(env: dict[str, str], *args: str) -> list[str]:
    """Run `burrow-edge ARGS`, expecting success; its stdout lines."""
    done = subprocess.run(
        [str(BIN / "burrow-edge"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"burrow-edge {' '.join(args)}: {done.stderr}"
    return done.stdout.splitlines()


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return True
    return False


def test_the_cli_manages_a_running_edge(edge: Edge, echo: EchoServer, tmp_path: Path) -> None:
    key = edge.api_key("--description", "cli")
    env = api_env(edge, key)

    [made] = cli(env, "service-user", "create", "clinic-a")
    user_id = re.fullmatch(r"service user (service_\S+) \(clinic-a\) created", made)
    assert user_id is not None, made
    # --api-key and --api-url on the command line work as the environment does.
    plain = dict(os.environ)
    plain.pop("BURROW_API_KEY", None)
    plain.pop("BURROW_API_URL", None)
    created = cli(
        plain,
        "credential",
        "create",
        "--api-key",
        key,
        "--api-url",
        edge.admin_url,
        "--owner",
        user_id[1],
        "--acl",
        "bind:127.0.0.1",
        "--description",
        "clinic a box",
        "--max-sessions",
        "1",
    )
    assert created[0].endswith("created; its authtoken (shown only now):")
    credential_id, token = created[0].split()[1], created[-1]
    [listed] = cli(env, "credential", "list")
    assert listed.startswith(credential_id) and "acl=bind:127.0.0.1  max_sessions=1" in listed
    users = [json.loads(line) for line in cli(env, "service-user", "list", "--json")]
    assert [(u["id"], u["name"]) for u in users] == [(user_id[1], "clinic-a")]

    agent = make_agent(edge, token, f"127.0.0.1:{echo.port}", tmp_path).start()
    try:
        assert roundtrip(agent.port, b"hello") == b"hello"
        [line] = cli(env, "sessions", "list")
        session_id = line.split()[0]
        assert session_id.startswith("ts_")
        assert f"credential={credential_id}" in line and f"endpoints={agent.url}" in line

        assert cli(env, "sessions", "stop", session_id) == [f"session {session_id} stopped"]
        deadline = time.monotonic() + 2
        while not refused(agent.port) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert refused(agent.port), "the stopped session's endpoint is still open"
        # Stop tells the agent to exit (ngrok's semantics): status 0, it does not reconnect.
        assert agent.proc is not None and agent.proc.wait(timeout=30) == 0

        # Revoking the credential through the API: a running agent of it gives up.
        agent = make_agent(edge, token, f"127.0.0.1:{echo.port}", tmp_path, name="again")
        agent.start()
        assert cli(env, "credential", "revoke", credential_id) == [
            f"credential {credential_id} revoked"
        ]
        assert agent.proc is not None and agent.proc.wait(timeout=30) != 0
        [listed] = cli(env, "credential", "list")
        assert "  inactive  " in listed
    finally:
        agent.kill()

    stops = [
        json.loads(line) for line in cli(env, "events", "list", "--type", "agent_session_stop.v0")
    ]
    assert stops and all(e["event_type"] == "agent_session_stop.v0" for e in stops)
    stopped = next(e for e in stops if e["object"]["session"]["id"] == session_id)
    assert "admin API" in stopped["object"]["error"]
    assert stopped["principal"]["id"] == user_id[1]


def test_events_follow_prints_new_events_and_exits_0_on_ctrl_c(edge: Edge) -> None:
    env = api_env(edge, edge.api_key())
    cli(env, "service-user", "create", "before")
    follower = subprocess.Popen(
        [
            str(BIN / "burrow-edge"),
            "events",
            "list",
            "--follow",
            "--type",
            "service_user_created.v0",
            "--limit",
            "1",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # The newest event from before it started comes first: it is polling from there.
        _read_line_matching(follower, re.compile(r'"name":"before"'), 10)
        cli(env, "service-user", "create", "meanwhile")
        line = _read_line_matching(follower, re.compile(r"^\{.*\}$"), 5).string
        event = json.loads(line)
        assert event["event_type"] == "service_user_created.v0"
        assert event["object"]["name"] == "meanwhile"
        follower.send_signal(signal.SIGINT)
        assert follower.wait(timeout=10) == 0
        assert follower.stderr is not None
        assert "Traceback" not in follower.stderr.read()
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait(timeout=10)


def test_sessions_without_a_key_or_an_edge_say_what_to_do(tmp_path: Path) -> None:
    env = dict(os.environ)
    env.pop("BURROW_API_KEY", None)
    env.pop("BURROW_API_URL", None)
    done = subprocess.run(
        [str(BIN / "burrow-edge"), "sessions", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "BURROW_API_KEY" in done.stderr and "burrow-edge init" in done.stderr
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    env.update(BURROW_API_KEY="x", BURROW_API_URL=url)
    done = subprocess.run(
        [str(BIN / "burrow-edge"), "sessions", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr == (
        f"burrow-edge: no edge answers at {url} (is burrow-edge serve running? is admin enabled?)\n"
    )
