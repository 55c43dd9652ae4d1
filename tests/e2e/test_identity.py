"""Per-customer isolation: service users own credentials; revoking one cuts only its agents."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
from pathlib import Path

from tests.e2e.harness import BIN, EchoServer, Edge, make_agent, roundtrip


def edge_cli(edge: Edge, *args: str) -> str:
    return subprocess.run(
        [str(BIN / "burrow-edge"), *args, "--data-dir", str(edge.data_dir)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return True
    return False


def test_revoking_one_customer_cuts_only_its_agent(
    edge: Edge, echo: EchoServer, tmp_path: Path
) -> None:
    users = {}
    for name in ("clinic-a", "clinic-b"):
        out = edge_cli(edge, "service-user", "create", name)
        users[name] = re.search(r"service user (service_\S+)", out).group(1)  # type: ignore[union-attr]
    tokens = {name: edge.credential("--owner", uid) for name, uid in users.items()}
    upstream = f"127.0.0.1:{echo.port}"
    a = make_agent(edge, tokens["clinic-a"], upstream, tmp_path, name="a").start()
    b = make_agent(edge, tokens["clinic-b"], upstream, tmp_path, name="b").start()
    assert a.proc is not None and b.proc is not None
    try:
        assert roundtrip(a.port, b"a") == b"a" and roundtrip(b.port, b"b") == b"b"
        credential_a = json.loads(
            edge_cli(
                edge,
                "events",
                "list",
                "--type",
                "agent_session_start.v0",
                "--principal",
                users["clinic-a"],
            ).splitlines()[0]
        )["object"]["credential"]["id"]
        edge_cli(edge, "credential", "revoke", credential_a)
        # The revocation is committed once the CLI has returned: from then on the edge, which
        # polls the store, has one second (the CLI's own start-up is not the edge's time).
        revoked_at = time.monotonic()
        while not refused(a.port) and time.monotonic() - revoked_at < 10:
            time.sleep(0.05)
        took = time.monotonic() - revoked_at
        assert took < 1.0, f"the revoked agent's endpoint stayed up {took:.2f}s"
        # The revoked agent reconnects once, hears ERR_NGROK_300 and stops for good.
        assert a.proc.wait(timeout=30) != 0
        assert "ERR_NGROK_300" in a.log()
        # The other customer never noticed.
        assert roundtrip(b.port, b"still here") == b"still here"
        assert b.proc.poll() is None
        stops = [
            json.loads(line)
            for line in edge_cli(
                edge, "events", "list", "--type", "agent_session_stop.v0"
            ).splitlines()
        ]
        assert [s["principal"]["id"] for s in stops] == [users["clinic-a"]]
        assert "revoked" in stops[0]["object"]["error"]
        # Deactivating a service user cuts its agents the same way.
        edge_cli(edge, "service-user", "deactivate", users["clinic-b"])
        assert b.proc.wait(timeout=30) != 0
        assert "ERR_NGROK_300" in b.log()
    finally:
        a.kill()
        b.kill()


def test_each_customer_binds_only_its_own_internal_names(
    edge: Edge, echo: EchoServer, tmp_path: Path
) -> None:
    upstream = f"127.0.0.1:{echo.port}"
    tokens = {}
    for name in ("clinic-a", "clinic-b"):
        out = edge_cli(edge, "service-user", "create", name)
        owner = re.search(r"service user (service_\S+)", out).group(1)  # type: ignore[union-attr]
        tokens[name] = edge.credential("--owner", owner, "--acl", f"bind:*.{name}.internal")
    own = make_agent(
        edge,
        tokens["clinic-a"],
        upstream,
        tmp_path,
        "--url",
        "tcp://db.clinic-a.internal:5432",
        name="own",
    ).start()
    try:
        assert own.url == "tcp://db.clinic-a.internal:5432"
        # An internal endpoint has no public listener: nothing in the edge's range answers.
        in_range = [
            p for p in range(edge.port_range[0], edge.port_range[1] + 1) if not refused_quickly(p)
        ]
        assert in_range == []
        other = make_agent(
            edge,
            tokens["clinic-a"],
            upstream,
            tmp_path,
            "--url",
            "tcp://db.clinic-b.internal:5432",
            name="other",
        ).run_to_exit()
        assert other.returncode != 0
        assert "ERR_NGROK_308" in other.stderr + other.stdout
        public = make_agent(edge, tokens["clinic-b"], upstream, tmp_path, name="pub").run_to_exit()
        assert "ERR_NGROK_308" in public.stderr + public.stdout  # b may bind only its names
        bound = [
            json.loads(line)["object"]["url"]
            for line in edge_cli(edge, "events", "list", "--type", "endpoint_bound.v0").splitlines()
        ]
        assert bound == ["tcp://db.clinic-a.internal:5432"]
    finally:
        own.kill()


def refused_quickly(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return True
    return False


def test_per_credential_limits(edge: Edge, echo: EchoServer, tmp_path: Path) -> None:
    upstream = f"127.0.0.1:{echo.port}"
    token = edge.credential("--max-sessions", "1", "--max-endpoints", "1")
    first = make_agent(edge, token, upstream, tmp_path, name="first").start()
    try:
        second = make_agent(edge, token, upstream, tmp_path, name="second").run_to_exit()
        assert second.returncode != 0
        assert "ERR_NGROK_108" in second.stderr + second.stdout
        assert roundtrip(first.port, b"first") == b"first"
    finally:
        first.kill()
    config = tmp_path / "two.yml"
    config.write_text(
        "version: 3\nagent:\n  log: stderr\nendpoints:\n"
        f"  - name: one\n    url: tcp://\n    upstream: {{url: '{upstream}'}}\n"
        f"  - name: two\n    url: tcp://\n    upstream: {{url: '{upstream}'}}\n"
    )
    # The killed agent's session is gone at once, so one session may start again.
    agent = make_agent(edge, token, upstream, tmp_path, name="two")
    agent.args = ["start", "--all", "--config", str(config), "--authtoken", token]
    out = agent.run_to_exit()
    assert out.returncode != 0
    assert "ERR_NGROK_324" in out.stderr + out.stdout


def test_per_customer_isolation_with_internal_names(
    edge: Edge, echo: EchoServer, tmp_path: Path
) -> None:
    """The issue's scenario: two service users, each credential scoped to its own
    *.NAME.internal; each agent binds only its own names; revoking one cuts its live agent
    within a second while the other's session and endpoint stay; the events tell who and why.
    (Traffic into internal endpoints arrives with forward-internal; the public-endpoint
    revocation test above shows the other customer's traffic flowing throughout.)"""
    env = dict(os.environ, BURROW_API_KEY=edge.api_key(), BURROW_API_URL=edge.admin_url)
    upstream = f"127.0.0.1:{echo.port}"

    def api(*args: str) -> str:
        as_json = [] if args[0] == "events" else ["--json"]  # events always print JSON
        return subprocess.run(
            [str(BIN / "burrow-edge"), *args, *as_json],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout

    users, agents = {}, {}
    for name in ("clinic-a", "clinic-b"):
        users[name] = json.loads(api("service-user", "create", name))["id"]
        token = json.loads(
            api("credential", "create", "--owner", users[name], "--acl", f"bind:*.{name}.internal")
        )["token"]
        own = f"tcp://db.{name}.internal:5432"
        other = (
            "tcp://db.clinic-b.internal:5432"
            if name == "clinic-a"
            else ("tcp://db.clinic-a.internal:5432")
        )
        refused = make_agent(edge, token, upstream, tmp_path, "--url", other, name=f"x-{name}")
        out = refused.run_to_exit()
        assert "ERR_NGROK_308" in out.stderr + out.stdout, out.stderr
        agents[name] = make_agent(edge, token, upstream, tmp_path, "--url", own, name=name).start()
    try:
        endpoints = {e["url"] for e in _endpoints(edge, env)}
        assert endpoints == {"tcp://db.clinic-a.internal:5432", "tcp://db.clinic-b.internal:5432"}
        start_a = json.loads(
            api(
                "events",
                "list",
                "--type",
                "agent_session_start.v0",
                "--principal",
                users["clinic-a"],
            ).splitlines()[0]
        )
        revoked_at = time.monotonic()
        api("credential", "revoke", start_a["object"]["credential"]["id"])
        while "tcp://db.clinic-a.internal:5432" in {e["url"] for e in _endpoints(edge, env)}:
            assert time.monotonic() - revoked_at < 1.0, "the revoked agent was not cut in 1 s"
            time.sleep(0.05)
        # Checked whether or not the loop ran: the endpoint was seen gone within the second.
        took = time.monotonic() - revoked_at
        assert took < 1.0, f"the revoked agent was not cut in 1 s ({took:.2f}s)"
        assert {e["url"] for e in _endpoints(edge, env)} == {"tcp://db.clinic-b.internal:5432"}
        assert agents["clinic-b"].proc is not None and agents["clinic-b"].proc.poll() is None
        assert agents["clinic-a"].proc is not None and agents["clinic-a"].proc.wait(30) != 0
        events = [json.loads(line) for line in api("events", "list", "--limit", "100").splitlines()]
        starts = [e for e in events if e["event_type"] == "agent_session_start.v0"]
        stops = [e for e in events if e["event_type"] == "agent_session_stop.v0"]
        # Newest first: each customer's latest start is its running (or revoked) agent; the
        # earlier ones are the agents refused for binding the other customer's name.
        latest = {u: next(e for e in starts if e["principal"]["id"] == u) for u in users.values()}
        stopped = {e["object"]["session"]["id"]: e for e in stops}
        revoked = stopped[latest[users["clinic-a"]]["object"]["session"]["id"]]
        assert revoked["principal"]["id"] == users["clinic-a"]
        assert "revoked" in revoked["object"]["error"]
        assert latest[users["clinic-b"]]["object"]["session"]["id"] not in stopped
    finally:
        for agent in agents.values():
            agent.kill()


def _endpoints(edge: Edge, env: dict[str, str]) -> list[dict[str, object]]:
    import urllib.request

    request = urllib.request.Request(
        f"{edge.admin_url}/endpoints",
        headers={"Authorization": f"Bearer {env['BURROW_API_KEY']}", "Ngrok-Version": "2"},
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        return list(json.loads(reply.read())["endpoints"])
