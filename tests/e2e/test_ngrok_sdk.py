"""ngrok's official Python SDK (PyPI `ngrok`) against a real Burrow edge process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.harness import EchoServer, Edge

pytestmark = pytest.mark.sdk

CLIENT = Path(__file__).with_name("sdk_client.py")


def run_sdk(edge: Edge, token: str, upstream: int) -> dict[str, object]:
    out = subprocess.run(
        [
            sys.executable,
            str(CLIENT),
            f"localhost:{edge.agents_port}",
            str(edge.ca_path),
            token,
            str(upstream),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    assert lines, f"SDK client printed nothing useful: {out.stdout!r} {out.stderr[-2000:]!r}"
    result: dict[str, object] = json.loads(lines[-1])
    return result


def test_sdk_binds_tcp_and_carries_traffic(shared_edge: Edge, echo: EchoServer) -> None:
    edge = shared_edge
    token = edge.credential()
    result = run_sdk(edge, token, echo.port)
    assert "error" not in result and "connect_error" not in result, (result, edge.log()[-3000:])
    assert str(result["url"]).startswith("tcp://127.0.0.1:")
    assert result["proto"] == "tcp"
    assert result["small_ok"] is True
    assert result["big_ok"] is True
    assert echo.connections == 2


def test_sdk_with_bad_token_gets_err_ngrok_107(shared_edge: Edge, echo: EchoServer) -> None:
    edge = shared_edge
    edge.credential()
    result = run_sdk(edge, "not-a-real-token", echo.port)
    assert "connect_error" in result, result
    error = result["connect_error"]
    assert isinstance(error, list)
    assert "ERR_NGROK_107" in error
    assert any("authtoken you specified is invalid" in part for part in error)
