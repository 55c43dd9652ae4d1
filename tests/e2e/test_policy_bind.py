"""A Traffic Policy that fails validation is refused at Bind with its ERR_NGROK_22xx code, and
both Burrow's agent (`burrow tcp --traffic-policy-file`, on stderr) and ngrok's official Python
SDK (`.traffic_policy(...)`, in its bind error) show the code and the place in the document.
Nothing is served: the edge logs the refusal and never a `bound` line for it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.harness import EchoServer, Edge, make_agent, sdk_http_bind_once
from tests.e2e.test_fail_closed import SDK_TIMEOUT
from tests.e2e.upstreams import HttpUpstream

BAD_CIDR = """\
on_tcp_connect:
  - name: office only
    actions:
      - type: restrict-ips
        config: {allow: [10.0.0.300/8]}
"""
UNKNOWN_ACTION = json.dumps({"on_http_request": [{"actions": [{"type": "no-such-action"}]}]})


def test_burrow_shows_the_policy_error_and_its_code(shared_edge: Edge, tmp_path: Path) -> None:
    edge = shared_edge
    mark = edge.log_size()
    policy = tmp_path / "policy.yml"
    policy.write_text(BAD_CIDR)
    echo = EchoServer()
    try:
        agent = make_agent(
            edge,
            edge.credential(),
            f"127.0.0.1:{echo.port}",
            tmp_path,
            "--traffic-policy-file",
            str(policy),
        )
        done = agent.run_to_exit()
    finally:
        echo.close()
    assert done.returncode != 0, (done.stdout, done.stderr)
    assert "ERR_NGROK_2217" in done.stderr, done.stderr
    assert "10.0.0.300/8" in done.stderr
    assert 'on_tcp_connect rule 0 ("office only")' in done.stderr
    log = edge.log_since(mark)
    assert "bind refused" in log and "ERR_NGROK_2217" in log
    assert " bound tcp://" not in log
    assert echo.connections == 0


@pytest.mark.sdk
def test_the_ngrok_sdk_shows_the_policy_error_and_its_code(
    shared_edge: Edge, upstream: HttpUpstream
) -> None:
    edge = shared_edge
    mark = edge.log_size()
    options: list[list[object]] = [["traffic_policy", UNKNOWN_ACTION]]
    result = sdk_http_bind_once(edge, edge.credential(), upstream.port, options, SDK_TIMEOUT)
    assert "bind_error" in result, (result, edge.log()[-3000:])
    error = " ".join(result["bind_error"])
    assert "ERR_NGROK_2201" in error
    assert "no-such-action" in error
    assert "on_http_request rule 0" in error
    log = edge.log_since(mark)
    assert "bind refused" in log
    assert " bound https://" not in log
