"""`burrow diagnose` (agent/diagnose.py): the report, and each step against a real edge.

The edge is the real `burrow-edge serve` on loopback (tests/e2e/harness.py), shared by the
module; each test writes its own config. A wrong CA is a trustme CA the edge's certificate does
not chain to; a dead port is one just closed. The proxy test goes through a real tinyproxy.
"""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from agent.cli import run
from agent.diagnose import STEP_NAMES, StepResult, Verdict, exit_status, render
from tests.agent.real_proxies import tinyproxy
from tests.e2e.harness import SHARED_PORT_RANGE, Edge, make_edge

# Each `burrow diagnose` run is bounded by connect_timeout per step (set to 10 s below); a
# subprocess edge is started once per module.


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    running = make_edge(tmp_path_factory.mktemp("diag-edge"), port_range=SHARED_PORT_RANGE)
    running.start()
    try:
        yield running
    finally:
        running.stop()


def _config(
    path: Path,
    *,
    connect_url: str,
    connect_cas: Path,
    authtoken: str | None,
    extra: str = "",
) -> Path:
    token = f"  authtoken: {authtoken}\n" if authtoken else ""
    path.write_text(
        "version: 3\nagent:\n"
        f"  connect_url: {connect_url}\n  connect_cas: {connect_cas}\n"
        f"  connect_timeout: 10s\n{token}{extra}"
    )
    return path


def _diagnose(
    config: Path, *extra: str, env: dict[str, str] | None = None
) -> tuple[int, list[str], str]:
    out, err = io.StringIO(), io.StringIO()
    # A clean environment: no HTTPS_PROXY from the machine running the tests.
    environ = {"HOME": "/nonexistent", **(env or {})}
    status = run(["diagnose", "--config", str(config), *extra], environ, out, err)
    return status, out.getvalue().splitlines(), err.getvalue()


def _line(lines: list[str], step: str) -> str:
    found = [line for line in lines if line.strip().startswith(step + " ")]
    assert len(found) == 1, lines
    return found[0]


def test_healthy_edge_passes_every_step(edge: Edge, tmp_path: Path) -> None:
    config = _config(
        tmp_path / "b.yml",
        connect_url=edge.connect_url,
        connect_cas=edge.ca_path,
        authtoken=edge.credential(),
    )
    status, lines, err = _diagnose(config)
    assert status == 0, (lines, err)
    assert lines[0] == f"Testing the connection to the edge at {edge.connect_url}"
    for step in STEP_NAMES:
        assert "[ OK ]" in _line(lines, step), lines
    assert "connect.burrow.localhost is 127.0.0.1" in _line(lines, "Name resolution")
    assert f"verified for connect.burrow.localhost against {edge.ca_path}" in _line(lines, "TLS")
    assert "session closed" in _line(lines, "Authentication")
    assert lines[-1].startswith("Diagnosis: OK")


def test_wrong_ca_fails_the_tls_step(edge: Edge, tmp_path: Path) -> None:
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    config = _config(
        tmp_path / "b.yml",
        connect_url=edge.connect_url,
        connect_cas=other,
        authtoken=edge.credential(),
    )
    status, lines, _ = _diagnose(config)
    assert status == 1
    assert "[ OK ]" in _line(lines, "TCP")
    tls = _line(lines, "TLS")
    assert "[FAIL]" in tls
    assert "certificate is not trusted" in tls and str(other) in tls
    assert "[SKIP]" in _line(lines, "Authentication")
    assert lines[-1].startswith("Diagnosis: FAILED at TLS: the edge's certificate is not trusted")


def test_dead_port_fails_the_connect_step(edge: Edge, tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on once this closes
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = _config(
        tmp_path / "b.yml",
        connect_url=f"127.0.0.1:{port}",
        connect_cas=edge.ca_path,
        authtoken="unused-token",
    )
    status, lines, _ = _diagnose(config)
    assert status == 1
    assert "[ OK ]" in _line(lines, "Name resolution")
    tcp = _line(lines, "TCP")
    assert "[FAIL]" in tcp and f"127.0.0.1:{port}: connection refused" in tcp
    assert "[SKIP]" in _line(lines, "TLS")
    assert "[SKIP]" in _line(lines, "Authentication")
    assert lines[-1].startswith("Diagnosis: FAILED at TCP")


def test_a_refused_authtoken_fails_the_authentication_step(edge: Edge, tmp_path: Path) -> None:
    config = _config(
        tmp_path / "b.yml",
        connect_url=edge.connect_url,
        connect_cas=edge.ca_path,
        authtoken="not-a-credential-of-this-edge",
    )
    status, lines, _ = _diagnose(config)
    assert status == 1
    assert "[ OK ]" in _line(lines, "TLS")
    auth = _line(lines, "Authentication")
    assert "[FAIL]" in auth and "the edge refused the authtoken" in auth
    assert "ERR_NGROK_" in auth


def test_authtoken_flag_overrides_the_file(edge: Edge, tmp_path: Path) -> None:
    config = _config(
        tmp_path / "b.yml", connect_url=edge.connect_url, connect_cas=edge.ca_path, authtoken=None
    )
    status, lines, _ = _diagnose(config)
    assert status == 1
    assert "no authtoken" in _line(lines, "Authentication")
    status, lines, _ = _diagnose(config, "--authtoken", edge.credential())
    assert status == 0, lines


def test_a_name_that_does_not_resolve_fails_the_first_step(tmp_path: Path) -> None:
    config = _config(
        tmp_path / "b.yml",
        connect_url="edge.burrow-test.invalid:443",  # RFC 6761: .invalid never resolves
        connect_cas=tmp_path / "b.yml",
        authtoken="t",
    )
    config.write_text(config.read_text().replace(f"  connect_cas: {tmp_path / 'b.yml'}\n", ""))
    status, lines, _ = _diagnose(config)
    assert status == 1
    assert "[FAIL]" in _line(lines, "Name resolution")
    assert "edge.burrow-test.invalid" in _line(lines, "Name resolution")
    assert all("[SKIP]" in _line(lines, step) for step in STEP_NAMES[1:])


def test_proxy_url_is_honoured(edge: Edge, tmp_path: Path) -> None:
    # The proxy resolves the connect host, and tinyproxy knows `localhost` (from /etc/hosts),
    # not the `.localhost` names the agent resolves itself; the edge's certificate covers it.
    connect_url = f"localhost:{edge.agents_port}"
    with tinyproxy(tmp_path / "proxy") as proxy:
        config = _config(
            tmp_path / "b.yml",
            connect_url=connect_url,
            connect_cas=edge.ca_path,
            authtoken=edge.credential(),
            extra=f"  proxy_url: {proxy.url()}\n",
        )
        status, lines, _ = _diagnose(config)
        log = proxy.log()
    assert status == 0, lines
    assert "[SKIP]" in _line(lines, "Name resolution")
    assert f"resolved by the proxy {proxy.address}" in _line(lines, "Name resolution")
    assert f"through the proxy {proxy.address} (agent.proxy_url)" in _line(lines, "TCP")
    assert f"CONNECT {connect_url} HTTP/1.1" in log


def test_an_unusable_proxy_variable_fails_the_first_step(edge: Edge, tmp_path: Path) -> None:
    config = _config(
        tmp_path / "b.yml", connect_url=edge.connect_url, connect_cas=edge.ca_path, authtoken="t"
    )
    status, lines, _ = _diagnose(config, env={"HTTPS_PROXY": "ftp://127.0.0.1:21"})
    assert status == 1
    first = _line(lines, "Name resolution")
    assert "[FAIL]" in first and "HTTPS_PROXY" in first
    assert " ms)" not in first  # nothing was timed: the step failed before any I/O
    assert all("[SKIP]" in _line(lines, step) for step in STEP_NAMES[1:])


def _result(name: str, verdict: Verdict, detail: str = "d") -> StepResult:
    return StepResult(name=name, verdict=verdict, detail=detail, seconds=0.0012)


def test_exit_status_is_1_only_when_a_step_failed() -> None:
    ok = [_result(name, Verdict.OK) for name in STEP_NAMES]
    assert exit_status(ok) == 0
    skipped = [_result(STEP_NAMES[0], Verdict.SKIPPED), *ok[1:]]
    assert exit_status(skipped) == 0
    failed = [ok[0], _result("TCP", Verdict.FAILED), _result("TLS", Verdict.SKIPPED)]
    assert exit_status(failed) == 1


def test_render_names_each_step_and_the_first_failure() -> None:
    results = [
        _result("Name resolution", Verdict.OK, "e is 127.0.0.1"),
        _result("TCP", Verdict.FAILED, "e:1: connection refused"),
        StepResult(name="TLS", verdict=Verdict.SKIPPED, detail="not run: TCP failed"),
    ]
    assert render("e:1", results) == [
        "Testing the connection to the edge at e:1",
        "  Name resolution  [ OK ]  e is 127.0.0.1 (1.2 ms)",
        "  TCP              [FAIL]  e:1: connection refused (1.2 ms)",
        "  TLS              [SKIP]  not run: TCP failed",
        "Diagnosis: FAILED at TCP: e:1: connection refused",
    ]
