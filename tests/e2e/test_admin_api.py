"""The admin REST API of a real `burrow-edge serve`, driven by ngrok's official API client.

ngrok's client (PyPI `ngrok-api`) installs a package named `ngrok`, as the agent SDK in .venv
does, so it lives in its own environment, .venv-api (made by `./dev test`), and runs as a
subprocess: tests/e2e/api_client.py.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import EchoServer, Edge, make_agent, roundtrip
from tests.e2e.upstreams import HttpUpstream

ROOT = Path(__file__).parents[2]
API_PYTHON = ROOT / ".venv-api" / "bin" / "python"
API_CLIENT = Path(__file__).with_name("api_client.py")


def ngrok_api(edge: Edge, key: str, action: str, arg: str = "") -> Any:
    if not API_PYTHON.exists():
        pytest.fail(
            f"{API_PYTHON} is missing: ngrok's API client (PyPI ngrok-api) needs its own "
            "virtual environment; run ./dev test once to create it"
        )
    done = subprocess.run(
        [str(API_PYTHON), str(API_CLIENT), edge.admin_url, key, action, arg],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"api_client.py {action} failed:\n{done.stderr}\n{edge.log()}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return True
    return False


def test_ngrok_api_client_manages_the_edge(edge: Edge, echo: EchoServer, tmp_path: Path) -> None:
    assert edge.admin_port, "the ready line names the admin listener"
    key = edge.api_key("--description", "bootstrap")

    setup = ngrok_api(edge, key, "setup")
    users, credentials = setup["service_users"], setup["credentials"]
    assert [u["name"] for u in users] == ["clinic-a", "clinic-b"]
    assert all(u["id"].startswith("service_") and u["active"] for u in users)
    assert users[0]["uri"] == f"{edge.admin_url}/service_users/{users[0]['id']}"
    assert setup["got_user"] == users[0]
    assert setup["renamed"]["name"] == "clinic-b-renamed"
    assert [c["owner_id"] for c in credentials] == [u["id"] for u in users]
    assert credentials[0]["acl"] == ["bind:127.0.0.1"]
    assert credentials[1]["acl"] == ["bind:*.clinic-b.internal"]
    assert all(c["token"] for c in credentials), "the token is shown at creation"
    assert setup["got_credential"]["token"] is None, "and never again"
    assert setup["api_key"]["token"] and setup["api_key"]["id"] in setup["listed_keys"]
    listed_users = setup["listed_users"]["service_users"]
    assert [u["name"] for u in listed_users] == ["clinic-b-renamed", "clinic-a"]
    assert setup["paged_user_ids"] == [u["id"] for u in listed_users]
    listed = setup["listed_credentials"]["credentials"]
    assert [c["id"] for c in listed] == [c["id"] for c in reversed(credentials)]
    assert all(c["token"] is None for c in listed)

    # A real agent with clinic-a's credential shows up as a tunnel session with its endpoint.
    agent = make_agent(edge, credentials[0]["token"], f"127.0.0.1:{echo.port}", tmp_path)
    agent.start()
    try:
        assert roundtrip(agent.port, b"hello") == b"hello"
        live = ngrok_api(edge, key, "sessions")
        sessions = live["tunnel_sessions"]["tunnel_sessions"]
        assert len(sessions) == 1
        session = sessions[0]
        assert session["id"].startswith("ts_") and session["transport"] == "ngrok/2"
        assert session["credential"]["id"] == credentials[0]["id"]
        assert session["ip"] == "127.0.0.1" and session["started_at"].endswith("Z")
        assert session["agent_version"] and session["os"]
        assert live["got"] == sessions
        endpoints = live["endpoints"]["endpoints"]
        assert [e["url"] for e in endpoints] == [agent.url]
        assert endpoints[0]["tunnel_session"]["id"] == session["id"]
        assert endpoints[0]["type"] == "ephemeral" and endpoints[0]["proto"] == "tcp"

        # Stopping the session through the API closes the agent's endpoint at once.
        stop = ngrok_api(edge, key, "stop", session["id"])
        assert stop["stopped"]
        deadline = time.monotonic() + 5
        while not refused(agent.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert refused(agent.port), "the stopped session's endpoint is still open"
    finally:
        agent.kill()

    # Deleting a credential: gone from the API (404 through the client's NotFoundError).
    deleted = ngrok_api(edge, key, "delete", credentials[1]["id"])
    assert deleted["deleted"] and deleted["get_after"]["class"] == "NotFoundError"
    assert deleted["get_after"]["status"] == 404

    events = ngrok_api(edge, key, "events")
    types = [e["event_type"] for e in events["events"]]
    assert types[0] == "tunnel_credential_deleted.v0"
    for expected in (
        "service_user_created.v0",
        "service_user_updated.v0",
        "tunnel_credential_created.v0",
        "api_key_created.v0",
        "agent_session_start.v0",
        "agent_session_stop.v0",
    ):
        assert expected in types, expected
    stop_event = next(e for e in events["events"] if e["event_type"] == "agent_session_stop.v0")
    assert "admin API" in stop_event["object"]["error"]
    assert stop_event["principal"]["id"] == users[0]["id"]
    api_event = next(e for e in events["events"] if e["event_type"] == "service_user_created.v0")
    assert api_event["principal"]["source"] == "API"

    errors = ngrok_api(edge, key, "errors")
    assert errors["wrong_key"]["error_code"] == "ERR_NGROK_203"
    assert errors["wrong_key"]["status"] == 401
    assert errors["wrong_key"]["operation_id"].startswith("op_")
    assert errors["unknown_id"]["class"] == "NotFoundError"
    assert errors["bad_acl"]["error_code"] == "ERR_NGROK_10007"


def test_revoking_through_the_api_cuts_the_live_agent(
    edge: Edge, echo: EchoServer, tmp_path: Path
) -> None:
    key = edge.api_key()
    token = edge.credential("--acl", "bind:127.0.0.1")
    agent = make_agent(edge, token, f"127.0.0.1:{echo.port}", tmp_path).start()
    try:
        sessions = admin_get(edge, key, "/tunnel_sessions")["tunnel_sessions"]
        credential_id = sessions[0]["credential"]["id"]
        started = time.monotonic()
        request = urllib.request.Request(
            f"{edge.admin_url}/credentials/{credential_id}",
            method="DELETE",
            headers={"Authorization": f"Bearer {key}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 204
        assert refused(agent.port), "the endpoint closes before the DELETE is answered"
        assert time.monotonic() - started < 1.0
        assert agent.proc is not None and agent.proc.wait(timeout=30) != 0
        assert "ERR_NGROK_300" in agent.log()
    finally:
        agent.kill()


def test_the_edge_keeps_serving_after_hostile_api_clients(edge: Edge) -> None:
    key = edge.api_key()
    for junk in (b"\x00" * 100_000, b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 5000, b"\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", edge.admin_port), timeout=10) as conn:
            try:
                conn.sendall(junk)
                reply = conn.recv(65536)
            except OSError:
                reply = b""
            assert reply == b"" or reply.startswith(b"HTTP/1.1 4"), reply[:100]
    with pytest.raises(urllib.error.HTTPError) as caught:
        admin_get(edge, "AAAA_BBBB", "/credentials")
    assert caught.value.code == 401
    assert json.loads(caught.value.read())["error_code"] == "ERR_NGROK_203"
    assert admin_get(edge, key, "/credentials")["credentials"] == []


def admin_get(edge: Edge, key: str, path: str) -> Any:
    request = urllib.request.Request(
        f"{edge.admin_url}{path}", headers={"Authorization": f"Bearer {key}", "Ngrok-Version": "2"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_endpoints_lists_https_tls_and_internal_endpoints(
    edge: Edge, upstream: HttpUpstream, echo: EchoServer, tmp_path: Path
) -> None:
    """The API shows every kind of endpoint with the URL clients dial, its host and port."""
    key = edge.api_key()
    token = edge.credential()
    agents = [
        make_agent(edge, token, f"127.0.0.1:{upstream.port}", tmp_path, command="http", name="a"),
        make_agent(
            edge,
            token,
            f"127.0.0.1:{echo.port}",
            tmp_path,
            "--url",
            "tls://db.clinic.internal:5432",
            command="tls",
            name="b",
        ),
    ]
    try:
        for agent in agents:
            agent.start()
        listed = {e["url"]: e for e in admin_get(edge, key, "/endpoints")["endpoints"]}
        web = listed[agents[0].url]
        assert (web["proto"], web["host"], web["port"]) == (
            "https",
            agents[0].host,
            edge.agents_port,
        )
        db = listed["tls://db.clinic.internal:5432"]
        assert (db["port"], db["bindings"]) == (5432, ["internal"])
    finally:
        for agent in agents:
            agent.kill()


def test_endpoints_show_the_traffic_policy_an_agent_sent(
    edge: Edge, upstream: HttpUpstream, echo: EchoServer, tmp_path: Path
) -> None:
    """An endpoint's policy is in `/endpoints` as ngrok shows it: a string, the document as the
    agent sent it (an inline mapping goes as JSON); one without a policy shows "". ngrok's own
    client reads the listing."""
    policy = {
        "on_http_response": [
            {
                "name": "mark",
                "actions": [{"type": "add-headers", "config": {"headers": {"x-a": "1"}}}],
            }
        ]
    }
    config = tmp_path / "burrow.yml"
    config.write_text(
        "version: 3\n"
        "agent:\n  log: stderr\n"
        "endpoints:\n"
        "  - name: web\n"
        "    url: https://\n"
        "    upstream:\n"
        f"      url: 127.0.0.1:{upstream.port}\n"
        f"    traffic_policy: {json.dumps(policy)}\n"
    )
    key = edge.api_key()
    token = edge.credential()
    # As tests/e2e/test_policy_http.py starts one: make_agent's flags, `start web --config`.
    web = make_agent(edge, token, "web", tmp_path, "--config", str(config), name="web")
    web.args[0] = "start"
    plain = make_agent(edge, token, f"127.0.0.1:{echo.port}", tmp_path, name="plain")
    try:
        web.start()
        plain.start()
        listed = {e["url"]: e for e in admin_get(edge, key, "/endpoints")["endpoints"]}
        shown = listed[web.url]["traffic_policy"]
        assert isinstance(shown, str) and json.loads(shown) == policy
        assert listed[plain.url]["traffic_policy"] == ""
        got = admin_get(edge, key, f"/endpoints/{listed[web.url]['id']}")
        assert got["traffic_policy"] == shown
        client = ngrok_api(edge, key, "sessions")["endpoints"]["endpoints"]
        assert {e["url"]: e["traffic_policy"] for e in client} == {web.url: shown, plain.url: ""}
    finally:
        web.kill()
        plain.kill()
