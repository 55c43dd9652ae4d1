"""deploy/'s systemd units: the agent's is exactly what `burrow service install` writes, the
edge's is hardened the same way, and systemd's own checker accepts both (with ExecStart
pointed at this checkout's real executables, since `systemd-analyze verify` checks that the
command exists)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path, PurePosixPath

from agent.service_unit import ServiceSpec, render_unit
from tests.agent.systemd import unit_settings, verify_unit

ROOT = Path(__file__).resolve().parents[2]
AGENT_UNIT = ROOT / "deploy" / "burrow.service"
EDGE_UNIT = ROOT / "deploy" / "burrow-edge.service"
BIN = Path(sys.executable).parent
#: The settings that confine the service, and must be the same in both units.
HARDENING = (
    "NoNewPrivileges",
    "ProtectSystem",
    "ProtectHome",
    "PrivateTmp",
    "PrivateDevices",
    "ProtectKernelTunables",
    "ProtectKernelModules",
    "ProtectKernelLogs",
    "ProtectControlGroups",
    "ProtectClock",
    "ProtectHostname",
    "ProtectProc",
    "RestrictNamespaces",
    "RestrictRealtime",
    "RestrictSUIDSGID",
    "RemoveIPC",
    "LockPersonality",
    "RestrictAddressFamilies",
    "SystemCallArchitectures",
    "SystemCallFilter",
    "SystemCallErrorNumber",
    "UMask",
    "StateDirectoryMode",
)


def test_the_agent_unit_is_what_service_install_writes() -> None:
    spec = ServiceSpec(
        executable=PurePosixPath("/usr/local/bin/burrow"),
        config=PurePosixPath("/etc/burrow/burrow.yml"),
    )
    assert AGENT_UNIT.read_text() == render_unit(spec)


def test_both_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    agent = AGENT_UNIT.read_text().replace("/usr/local/bin/burrow ", f"{BIN / 'burrow'} ")
    edge = EDGE_UNIT.read_text().replace("/usr/local/bin/burrow-edge ", f"{BIN / 'burrow-edge'} ")
    assert agent != AGENT_UNIT.read_text() and edge != EDGE_UNIT.read_text()
    assert verify_unit(tmp_path, "burrow.service", agent) == ""
    assert verify_unit(tmp_path, "burrow-edge.service", edge) == ""


def test_the_edge_unit_is_hardened_like_the_agent_unit() -> None:
    agent = unit_settings(AGENT_UNIT.read_text())
    edge = unit_settings(EDGE_UNIT.read_text())
    for key in HARDENING:
        assert edge["Service"][key] == agent["Service"][key], key
    assert edge["Service"]["ProtectSystem"] == ["strict"]
    assert edge["Service"]["StateDirectory"] == ["burrow-edge"]
    # Its one capability, to bind 443 and 80.
    assert edge["Service"]["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]
    assert edge["Service"]["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]
    for key in ("Wants", "After", "StartLimitIntervalSec", "StartLimitBurst"):
        assert edge["Unit"][key] == agent["Unit"][key], key
    for key in ("Restart", "RestartSec", "TimeoutStopSec"):
        assert edge["Service"][key] == agent["Service"][key], key
    assert edge["Service"]["User"] == ["burrow-edge"]


def test_the_edge_unit_runs_serve_with_options_burrow_edge_has() -> None:
    (command,) = unit_settings(EDGE_UNIT.read_text())["Service"]["ExecStart"]
    program, *args = command.split()
    assert program == "/usr/local/bin/burrow-edge"
    assert args == [
        "serve",
        "--data-dir",
        "/var/lib/burrow-edge",
        "--config",
        "/etc/burrow-edge/edge.yml",
    ]
    usage = subprocess.run(
        [str(BIN / "burrow-edge"), "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "--data-dir" in usage and "--config" in usage
