"""`burrow service`: install and uninstall into a temporary root with the real `systemctl --root`
and `systemd-sysusers --root`, the refusals, and the one-line message where systemd is absent."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest

from agent.cli import run
from agent.service_unit import ServiceSpec, render_unit
from tests.agent.systemd import unit_settings, verify_unit

BURROW = Path(sys.executable).parent / "burrow"
TOKEN = "tok_service_secret_0123456789"
CONFIG = f"""\
version: 3
agent:
  authtoken: {TOKEN}
  connect_url: connect.burrow.localhost:8443
endpoints:
  - name: api
    url: https://api.clinic-a.internal
    upstream: {{url: 8080}}
"""


def burrow(*argv: str, path: str | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    env = {"PATH": os.environ["PATH"] if path is None else path}
    status = run(list(argv), env, out, err)
    return status, out.getvalue(), err.getvalue()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "etc-burrow" / "burrow.yml"
    path.parent.mkdir()
    path.write_text(CONFIG)
    path.chmod(0o640)
    return path


def installed_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())


def test_install_writes_enables_and_creates_the_user_in_a_root(
    tmp_path: Path, config: Path
) -> None:
    root = tmp_path / "root"
    status, out, err = burrow("service", "install", "--config", str(config), "--root", str(root))
    assert (status, err) == (0, "")
    unit = root / "etc/systemd/system/burrow.service"
    assert out.startswith(
        f"Installed {unit} (enabled): runs `burrow start --all --config {config}`"
    )
    assert "warning" not in out  # group-readable config
    expected = ServiceSpec(executable=PurePosixPath(BURROW), config=PurePosixPath(config))
    assert unit.read_text() == render_unit(expected)
    assert TOKEN not in unit.read_text()
    # `systemctl --root enable` made the WantedBy= link...
    wants = root / "etc/systemd/system/multi-user.target.wants/burrow.service"
    assert os.readlink(wants) == "/etc/systemd/system/burrow.service"
    # ...and `systemd-sysusers --root` the account the unit runs as.
    passwd = (root / "etc/passwd").read_text().splitlines()
    (entry,) = [line for line in passwd if line.startswith("burrow:")]
    assert entry.endswith(":Burrow agent:/var/lib/burrow:/usr/sbin/nologin")
    assert verify_unit(tmp_path / "verify", "burrow.service", unit.read_text()) == ""


def test_the_installed_unit_names_the_config_by_absolute_path(
    tmp_path: Path, config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(config.parent)
    root = tmp_path / "root"
    status, _, err = burrow("service", "install", "--config", config.name, "--root", str(root))
    assert (status, err) == (0, "")
    service = unit_settings((root / "etc/systemd/system/burrow.service").read_text())["Service"]
    assert service["ExecStart"] == [f"{BURROW} start --all --config {config}"]


def test_install_validates_the_config_as_config_check_does(tmp_path: Path, config: Path) -> None:
    config.write_text(CONFIG.replace("url: 8080", "url: 8080, colour: red"))
    root = tmp_path / "root"
    status, _, err = burrow("service", "install", "--config", str(config), "--root", str(root))
    check_status, _, check_err = burrow("config", "check", "--config", str(config))
    assert status == check_status == 1
    assert err == check_err
    assert "colour" in err
    assert not root.exists()


def test_install_refuses_a_config_without_its_own_authtoken(tmp_path: Path, config: Path) -> None:
    config.write_text(CONFIG.replace(f"  authtoken: {TOKEN}\n", ""))
    root = tmp_path / "root"
    status, _, err = burrow("service", "install", "--config", str(config), "--root", str(root))
    assert status == 1
    assert err == (
        f"burrow: {config} has no agent.authtoken; the service reads only this file "
        "(not BURROW_AUTHTOKEN), so add it there\n"
    )
    assert not root.exists()


def test_install_needs_a_config_and_refuses_an_authtoken_flag(tmp_path: Path) -> None:
    root = str(tmp_path / "root")
    status, _, err = burrow("service", "install", "--root", root)
    assert (status, err) == (
        1,
        "burrow: service install needs --config FILE (the file the service runs)\n",
    )
    status, _, err = burrow("--authtoken", TOKEN, "service", "install", "--root", root)
    assert status == 1
    assert err.startswith("burrow: --authtoken does not apply to `burrow service`")
    assert TOKEN not in err


def test_a_config_only_its_owner_can_read_gets_a_warning(tmp_path: Path, config: Path) -> None:
    config.chmod(0o600)
    root = tmp_path / "root"
    status, out, _ = burrow("service", "install", "--config", str(config), "--root", str(root))
    assert status == 0
    assert out.splitlines()[1] == (
        f"warning: {config} may not be readable by user burrow: "
        f"`chgrp burrow {config} && chmod 640 {config}`"
    )


def test_reinstall_updates_but_a_foreign_unit_is_left_alone(tmp_path: Path, config: Path) -> None:
    root = tmp_path / "root"
    args = ("service", "install", "--config", str(config), "--root", str(root))
    assert burrow(*args)[0] == 0
    status, out, _ = burrow(*args)
    assert status == 0 and out.startswith("Updated ")
    unit = root / "etc/systemd/system/burrow.service"
    unit.write_text("[Service]\nExecStart=/bin/true\n")
    status, _, err = burrow(*args)
    assert status == 1
    assert "exists and was not written by `burrow service install`" in err
    assert unit.read_text() == "[Service]\nExecStart=/bin/true\n"


def test_uninstall_disables_and_removes_what_install_wrote(tmp_path: Path, config: Path) -> None:
    root = tmp_path / "root"
    assert burrow("service", "install", "--config", str(config), "--root", str(root))[0] == 0
    status, out, err = burrow("service", "uninstall", "--root", str(root))
    assert (status, err) == (0, "")
    assert out.startswith(f"Removed {root}/etc/systemd/system/burrow.service")
    left = installed_files(root)
    assert not [name for name in left if "burrow.service" in name or "sysusers" in name]
    assert "etc/passwd" in left  # the account stays: files may still belong to it
    status, _, err = burrow("service", "uninstall", "--root", str(root))
    assert status == 1 and "burrow.service is not installed" in err


def test_root_applies_only_to_install_and_uninstall(tmp_path: Path) -> None:
    status, _, err = burrow("service", "start", "--root", str(tmp_path))
    assert (status, err) == (1, "burrow: --root applies to install and uninstall, not start\n")


@pytest.mark.parametrize("action", ["install", "start", "stop", "restart", "status", "uninstall"])
def test_without_systemd_every_action_says_so_in_one_line(
    tmp_path: Path, config: Path, action: str
) -> None:
    """The real `burrow` on a PATH that holds no systemctl, as on a host without systemd."""
    bare_path = tmp_path / "bin"
    bare_path.mkdir()
    extra = ["--config", str(config)] if action == "install" else []
    done = subprocess.run(
        [str(BURROW), "service", action, *extra],
        env={"PATH": str(bare_path), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == (
        "burrow: systemd is not available here (no systemctl on PATH); run `burrow start "
        "--all --config FILE` under this system's own service manager\n"
    )
