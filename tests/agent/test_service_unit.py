"""The rendered burrow.service: what it runs, how it restarts, how it is hardened, and that
systemd's own checker accepts it (`systemd-analyze verify`, tests/agent/systemd.py)."""

from __future__ import annotations

import sys
from pathlib import Path, PurePosixPath

import pytest

from agent.service_unit import (
    RESTART_SEC,
    START_LIMIT_BURST,
    START_LIMIT_INTERVAL,
    ServiceSpec,
    ServiceUnitError,
    render_sysusers,
    render_unit,
)
from tests.agent.systemd import unit_settings, verify_unit

BURROW = PurePosixPath(Path(sys.executable).parent / "burrow")  # the venv's, a real file
SPEC = ServiceSpec(executable=BURROW, config=PurePosixPath("/etc/burrow/burrow.yml"))


def test_the_unit_runs_every_endpoint_of_the_config_file_by_absolute_path() -> None:
    service = unit_settings(render_unit(SPEC))["Service"]
    assert service["ExecStart"] == [f"{BURROW} start --all --config /etc/burrow/burrow.yml"]
    assert service["User"] == ["burrow"] and service["Group"] == ["burrow"]


def test_the_unit_restarts_on_failure_with_back_off_after_the_network_is_up() -> None:
    settings = unit_settings(render_unit(SPEC))
    unit, service = settings["Unit"], settings["Service"]
    assert unit["Wants"] == ["network-online.target"]
    assert unit["After"] == ["network-online.target"]
    assert unit["StartLimitIntervalSec"] == [str(START_LIMIT_INTERVAL)]
    assert unit["StartLimitBurst"] == [str(START_LIMIT_BURST)]
    assert service["Restart"] == ["on-failure"]
    assert service["RestartSec"] == [str(RESTART_SEC)]
    assert settings["Install"]["WantedBy"] == ["multi-user.target"]


def test_the_unit_is_hardened() -> None:
    service = unit_settings(render_unit(SPEC))["Service"]
    expected = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "StateDirectory": "burrow",
        "CapabilityBoundingSet": "",
        "AmbientCapabilities": "",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "RestrictSUIDSGID": "yes",
        "LockPersonality": "yes",
        "UMask": "0077",
    }
    for key, value in expected.items():
        assert service[key] == [value], key
    assert service["SystemCallFilter"] == ["@system-service", "~@privileged @resources"]


def test_no_secret_and_no_environment_from_the_installer_reaches_the_unit() -> None:
    text = render_unit(SPEC)
    assert "authtoken" not in text.lower()
    assert unit_settings(text)["Service"]["Environment"] == ["HOME=%S/burrow"]


def test_the_rendered_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    config = tmp_path / "etc" / "burrow" / "burrow.yml"
    spec = ServiceSpec(executable=BURROW, config=PurePosixPath(config))
    assert verify_unit(tmp_path, "burrow.service", render_unit(spec)) == ""


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("burrow.yml", "needs an absolute path"),
        ("/etc/burrow/my config.yml", "would read a character of it as syntax"),
        ("/etc/burrow/100%.yml", "would read a character of it as syntax"),
        ("/etc/burrow/$HOME.yml", "would read a character of it as syntax"),
        ("/etc/burrow/a;b.yml", "would read a character of it as syntax"),
        ("/home/ana/burrow.yml", "ProtectHome=yes hides /home"),
        ("/root/burrow.yml", "ProtectHome=yes hides /home, /root"),
    ],
)
def test_a_config_path_the_unit_cannot_carry_is_refused(path: str, message: str) -> None:
    with pytest.raises(ServiceUnitError, match="--config") as caught:
        render_unit(ServiceSpec(executable=BURROW, config=PurePosixPath(path)))
    assert message in str(caught.value)


def test_an_executable_under_home_is_refused_too() -> None:
    spec = ServiceSpec(executable=PurePosixPath("/home/ana/.venv/bin/burrow"), config=SPEC.config)
    with pytest.raises(ServiceUnitError, match=r"the burrow executable .*ProtectHome"):
        render_unit(spec)


def test_a_strange_user_name_is_refused() -> None:
    with pytest.raises(ServiceUnitError, match="plain lower-case name"):
        render_unit(ServiceSpec(executable=BURROW, config=SPEC.config, user="Root Admin"))


def test_the_sysusers_line_creates_a_system_user_homed_in_the_state_directory() -> None:
    lines = [line for line in render_sysusers(SPEC).splitlines() if not line.startswith("#")]
    assert lines == ['u burrow - "Burrow agent" /var/lib/burrow -']
