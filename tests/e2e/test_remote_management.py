"""Stop, restart and update of a live agent through the admin API of a real `burrow-edge serve`,
driven by ngrok's API client (PyPI `ngrok-api`, in .venv-api), against a real `burrow` process
and against ngrok's Python SDK (PyPI `ngrok`) as the agent."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.agent.systemd import unit_settings
from tests.e2e.harness import EchoServer, Edge, _read_line_matching, make_agent, roundtrip
from tests.e2e.test_admin_api import ngrok_api, refused

SDK_CLIENT = Path(__file__).with_name("sdk_remote_client.py")
AGENT_UNIT = Path(__file__).parents[2] / "deploy" / "burrow.service"
#: What ngrok's SDKs say of an operation they have no handler for.
SDK_NO_HANDLER = "the agent has not defined a callback for this operation"


def sessions(edge: Edge, key: str) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = ngrok_api(edge, key, "sessions")["tunnel_sessions"][
        "tunnel_sessions"
    ]
    return listed


def wait_sessions(edge: Edge, key: str, want: Any, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Poll the API until `want(sessions)` holds; the sessions then listed."""
    deadline = time.monotonic() + timeout
    while True:
        listed = sessions(edge, key)
        if want(listed) or time.monotonic() > deadline:
            return listed
        time.sleep(0.2)


def test_api_stop_makes_burrow_exit_0_naming_the_key_and_it_stays_gone(
    edge: Edge, echo: EchoServer, tmp_path: Path
) -> None:
    key = edge.api_key("--description", "night shift")
    agent = make_agent(edge, edge.credential(), f"127.0.0.1:{echo.port}", tmp_path).start()
    try:
        assert roundtrip(agent.port, b"hello") == b"hello"
        (session,) = sessions(edge, key)

        # Update is not something Burrow's agent does: ngrok's client raises an ordinary
        # ngrok.Error with ngrok's code and the agent's reason (not a bare RuntimeError).
        update = ngrok_api(edge, key, "update", session["id"])["error"]
        assert (update["class"], update["status"]) == ("Error", 400)
        assert update["error_code"] == "ERR_NGROK_806"
        assert "Burrow does not support remote update" in update["message"]
        missing = ngrok_api(edge, key, "restart", "ts_NOSUCHSESSION")["error"]
        assert (missing["class"], missing["status"]) == ("NotFoundError", 404)

        assert ngrok_api(edge, key, "stop", session["id"])["stopped"]
        assert agent.proc is not None
        assert agent.proc.wait(timeout=20) == 0, agent.log()
        # ...which is what keeps the system service stopped: it restarts on failure only.
        service = unit_settings(AGENT_UNIT.read_text())["Service"]
        assert service["Restart"] == ["on-failure"] and "SuccessExitStatus" not in service
        assert re.search(
            r"burrow: stopped by the edge on behalf of the admin API, key ak_\w+ "
            r"\(night shift\); exiting",
            agent.log(),
        ), agent.log()
        assert "reconnecting" not in agent.log()
        assert sessions(edge, key) == []
        assert refused(agent.port)
    finally:
        agent.kill()
    events = ngrok_api(edge, key, "events")["events"]
    stop_event = next(e for e in events if e["event_type"] == "agent_session_stop.v0")
    assert re.fullmatch(
        r"stop requested by the admin API, key ak_\w+ \(night shift\)",
        stop_event["object"]["error"],
    )


def test_api_restart_brings_burrow_back_at_once_as_a_new_session(
    edge: Edge, echo: EchoServer, tmp_path: Path
) -> None:
    key = edge.api_key("--description", "ops")
    agent = make_agent(edge, edge.credential(), f"127.0.0.1:{echo.port}", tmp_path).start()
    try:
        (first,) = sessions(edge, key)
        asked = time.monotonic()
        assert ngrok_api(edge, key, "restart", first["id"]) == {"done": True}
        after = wait_sessions(edge, key, lambda s: [x["id"] for x in s] not in ([], [first["id"]]))
        took = time.monotonic() - asked
        assert len(after) == 1 and after[0]["id"] != first["id"], after
        assert took < 5, f"the new session came {took:.1f}s after the restart"
        assert agent.proc is not None and agent.proc.poll() is None, "restart is not an exit"
        # The new session resumed the endpoint: same URL, traffic flows.
        assert roundtrip(agent.port, b"after restart") == b"after restart"
        assert "restart requested by the edge on behalf of the admin API, key ak_" in agent.log()
    finally:
        agent.kill()


def start_sdk(edge: Edge, echo: EchoServer, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            str(SDK_CLIENT),
            f"localhost:{edge.agents_port}",
            str(edge.ca_path),
            edge.credential(),
            str(echo.port),
            mode,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def sdk_said(proc: subprocess.Popen[str], key: str, timeout: float = 20.0) -> Any:
    match = _read_line_matching(proc, re.compile(rf'^\{{"{key}": .*\}}$'), timeout)
    return json.loads(match.group(0))[key]


def sdk_session(edge: Edge, key: str, mode: str) -> dict[str, Any]:
    (session,) = [s for s in sessions(edge, key) if s["metadata"] == f"sdk-{mode}"]
    return session


@pytest.mark.sdk
def test_ngrok_sdk_with_handlers_is_restarted_and_stopped_as_it_expects(
    edge: Edge, echo: EchoServer
) -> None:
    key = edge.api_key()
    proc = start_sdk(edge, echo, "handlers")
    try:
        url = sdk_said(proc, "url")
        port = int(url.rsplit(":", 1)[1])
        session = sdk_session(edge, key, "handlers")
        # Restart: the SDK runs the application's handler and answers ok; what to do is the
        # application's business (this one carries on, on the same session).
        assert ngrok_api(edge, key, "restart", session["id"]) == {"done": True}
        assert sdk_said(proc, "called") == "restart"
        assert sdk_session(edge, key, "handlers")["id"] == session["id"]
        assert roundtrip(port, b"still here") == b"still here"
        # Stop: the handler is called; this application then closes its session.
        assert ngrok_api(edge, key, "try-stop", session["id"]) == {"done": True}
        assert sdk_said(proc, "called") == "stop"
        assert sdk_said(proc, "closed") is True
        assert wait_sessions(edge, key, lambda s: s == []) == []
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
        proc.wait(timeout=10)


@pytest.mark.sdk
def test_ngrok_sdk_without_handlers_is_refused_with_ngroks_codes(
    edge: Edge, echo: EchoServer
) -> None:
    key = edge.api_key()
    proc = start_sdk(edge, echo, "plain")
    try:
        url = sdk_said(proc, "url")
        session = sdk_session(edge, key, "plain")
        for action, code in (("try-stop", "ERR_NGROK_805"), ("restart", "ERR_NGROK_804")):
            error = ngrok_api(edge, key, action, session["id"])["error"]
            assert (error["class"], error["status"], error["error_code"]) == ("Error", 400, code)
            assert SDK_NO_HANDLER in error["message"]
        # Nothing was sent: the session and its endpoint carry on.
        assert sdk_session(edge, key, "plain")["id"] == session["id"]
        assert roundtrip(int(url.rsplit(":", 1)[1]), b"untouched") == b"untouched"
    finally:
        proc.kill()
        proc.wait(timeout=10)
