"""`burrow service install|start|stop|restart|status|uninstall`: the agent as a systemd service.

The unit's text comes from agent.service_unit; this module is the shell around it: it checks
that systemd is here, validates the config as `burrow config check` does, writes the unit and
its sysusers.d line under a root directory (`/` on a live system; another directory for an
image, or a test, with `--root`, as `systemctl --root` does) and runs `systemd-sysusers` and
`systemctl`. ngrok's `ngrok service` (reference §2.1) has the same verbs and `install` needs
`--config`; like it, `install` does not start the service.

Where systemd is absent (no `systemctl` on PATH, or PID 1 is not systemd) every verb fails
at once with one line that says so and what to run instead; nothing is written. With `--root`
only `install` and `uninstall` make sense (they work offline: `systemctl --root` and
`systemd-sysusers --root` need no running systemd).

Errors are `ServiceError` (an AgentError: `burrow` prints it as one line and exits 1); the
exit status of `start`, `stop`, `restart` and `status` is systemctl's own.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TextIO, TypeVar

from agent.config_load import load_config
from agent.errors import AgentError
from agent.service_unit import (
    SERVICE_NAME,
    SERVICE_USER,
    ServiceSpec,
    ServiceUnitError,
    render_sysusers,
    render_unit,
)

__all__ = [
    "SERVICE_ACTIONS",
    "ServiceError",
    "ServiceRequest",
    "add_service_parser",
    "run_service",
    "service_command",
]

SERVICE_ACTIONS = ("install", "start", "stop", "restart", "status", "uninstall")
#: Where units and sysusers.d lines are written, under the root.
UNIT_DIR = PurePosixPath("etc/systemd/system")
SYSUSERS_DIR = PurePosixPath("etc/sysusers.d")
SYSUSERS_FILE = "burrow.conf"
#: Present when systemd is the running init system (sd_booted(3)'s test).
SYSTEMD_RUNTIME_DIR = Path("/run/systemd/system")
#: One systemctl call: `start` waits for the unit's start job, and 90 s is systemd's own
#: default job timeout (DefaultTimeoutStartSec).
SYSTEMCTL_TIMEOUT = 90.0
#: The first line of every file `install` writes: `install` replaces and `uninstall` removes
#: only files that carry it, never an operator's own burrow.service.
_MARK = "# Written by `burrow service install`"
_ParserT = TypeVar("_ParserT", bound=argparse.ArgumentParser)
_RUN_INSTEAD = "run `burrow start --all --config FILE` under this system's own service manager"


class ServiceError(AgentError):
    """Why a `burrow service` verb cannot be done; one line saying what to do instead."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ServiceRequest:
    """One `burrow service` command: the verb, `--config` (install), `--root` (install and
    uninstall; None is the live system) and the `burrow` executable the unit will run."""

    action: str
    config: Path | None = None
    root: Path | None = None
    executable: Path | None = None


def run_service(request: ServiceRequest, env: Mapping[str, str], out: TextIO) -> int:
    """Do `request`; returns the exit status. Raises ServiceError (systemd absent, a config
    that fails validation, a file that cannot be written, a systemctl call that failed) and
    ConfigError (from the config's validation)."""
    if request.action not in SERVICE_ACTIONS:
        raise ServiceError(f"unknown service action {request.action!r}")
    systemctl = _systemctl(env)
    if request.root is not None and request.action not in ("install", "uninstall"):
        raise ServiceError(f"--root applies to install and uninstall, not {request.action}")
    if request.root is None:
        _require_systemd_running()
    root = request.root or Path("/")
    if request.action == "install":
        return _install(request, root, systemctl, env, out)
    if request.action == "uninstall":
        return _uninstall(request, root, systemctl, env, out)
    if not (root / UNIT_DIR / SERVICE_NAME).is_file():
        raise ServiceError(
            f"{SERVICE_NAME} is not installed; run `burrow service install --config FILE`"
        )
    return _systemctl_passthrough(systemctl, [request.action, SERVICE_NAME], env, out)


def _systemctl(env: Mapping[str, str]) -> str:
    found = shutil.which("systemctl", path=env.get("PATH", ""))
    if found is None:
        raise ServiceError(f"systemd is not available here (no systemctl on PATH); {_RUN_INSTEAD}")
    return found


def _require_systemd_running() -> None:
    if SYSTEMD_RUNTIME_DIR.is_dir():
        return
    try:
        init = Path("/proc/1/comm").read_text(encoding="utf-8").strip() or "unknown"
    except OSError:
        init = "unknown"
    raise ServiceError(
        f"systemd is not running here (PID 1 is {init}, not systemd); {_RUN_INSTEAD}, "
        "or install into an image with --root DIR"
    )


def _install(
    request: ServiceRequest, root: Path, systemctl: str, env: Mapping[str, str], out: TextIO
) -> int:
    if request.config is None:
        raise ServiceError("service install needs --config FILE (the file the service runs)")
    if request.executable is None:
        raise ServiceError("cannot find the burrow executable to run; is burrow installed?")
    config_path = request.config.absolute()
    _validate(config_path)
    spec = ServiceSpec(
        executable=PurePosixPath(request.executable.absolute()),
        config=PurePosixPath(config_path),
    )
    try:
        unit, sysusers = render_unit(spec), render_sysusers(spec)
    except ServiceUnitError as exc:
        raise ServiceError(str(exc)) from None
    unit_path = root / UNIT_DIR / SERVICE_NAME
    sysusers_path = root / SYSUSERS_DIR / SYSUSERS_FILE
    sysusers_tool = shutil.which("systemd-sysusers", path=env.get("PATH", ""))
    if sysusers_tool is None:
        raise ServiceError(
            f"systemd-sysusers is not on PATH: cannot create the {SERVICE_USER!r} account the "
            "service runs as"
        )
    replacing = unit_path.exists()
    for path in (unit_path, sysusers_path):
        _refuse_foreign(path)
    _write(sysusers_path, sysusers)
    _write(unit_path, unit)
    root_flag = [] if request.root is None else [f"--root={root}"]
    _check_call([sysusers_tool, *root_flag, SYSUSERS_FILE], env)
    if request.root is None:
        _check_call([systemctl, "daemon-reload"], env)
    _check_call([systemctl, *root_flag, "enable", SERVICE_NAME], env)
    verb = "Updated" if replacing else "Installed"
    print(
        f"{verb} {unit_path} (enabled): runs `burrow start --all --config {config_path}` as "
        f"user {SERVICE_USER}; start it with `burrow service start`",
        file=out,
        flush=True,
    )
    if not _others_can_read(config_path):
        print(
            f"warning: {config_path} may not be readable by user {SERVICE_USER}: "
            f"`chgrp {SERVICE_USER} {config_path} && chmod 640 {config_path}`",
            file=out,
            flush=True,
        )
    return 0


def _validate(config_path: Path) -> None:
    """What `burrow config check` checks, read as the service will read it: this one file and
    no BURROW_* environment. The service starts every endpoint, with the file's authtoken."""
    config = load_config([config_path], {})
    if not config.endpoints:
        raise ServiceError(
            f"{config_path} defines no endpoints; the service runs `burrow start --all`, "
            "so add an endpoints: list"
        )
    if config.agent.authtoken is None:
        raise ServiceError(
            f"{config_path} has no agent.authtoken; the service reads only this file "
            "(not BURROW_AUTHTOKEN), so add it there"
        )


def _uninstall(
    request: ServiceRequest, root: Path, systemctl: str, env: Mapping[str, str], out: TextIO
) -> int:
    unit_path = root / UNIT_DIR / SERVICE_NAME
    if not unit_path.is_file():
        raise ServiceError(f"{SERVICE_NAME} is not installed (no {unit_path})")
    _refuse_foreign(unit_path)
    if request.root is None:
        _check_call([systemctl, "disable", "--now", SERVICE_NAME], env)
    else:
        _check_call([systemctl, f"--root={root}", "disable", SERVICE_NAME], env)
    sysusers_path = root / SYSUSERS_DIR / SYSUSERS_FILE
    _refuse_foreign(sysusers_path)
    for path in (unit_path, sysusers_path):
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise ServiceError(f"cannot remove {path}: {exc.strerror}; {_AS_ROOT}") from None
    if request.root is None:
        _check_call([systemctl, "daemon-reload"], env)
    print(
        f"Removed {unit_path}; the {SERVICE_USER!r} account and /var/lib/burrow are kept",
        file=out,
        flush=True,
    )
    return 0


_AS_ROOT = "run it as root (sudo burrow service ...)"


def _refuse_foreign(path: Path) -> None:
    """Refuse to replace or remove a file `install` did not write."""
    try:
        with path.open(encoding="utf-8") as file:
            first = file.readline()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ServiceError(f"cannot read {path}: {exc.strerror}; {_AS_ROOT}") from None
    if not first.startswith(_MARK):
        raise ServiceError(
            f"{path} exists and was not written by `burrow service install`; "
            "move it away first if it should be replaced"
        )


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(text, encoding="utf-8")
        temporary.chmod(0o644)
        temporary.replace(path)  # never a half-written unit
    except OSError as exc:
        raise ServiceError(f"cannot write {path}: {exc.strerror}; {_AS_ROOT}") from None


def _check_call(argv: Sequence[str], env: Mapping[str, str]) -> None:
    try:
        done = subprocess.run(
            list(argv),
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=SYSTEMCTL_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServiceError(f"`{' '.join(argv)}` failed: {exc}") from None
    if done.returncode != 0:
        why = (done.stderr or done.stdout).strip().splitlines()
        raise ServiceError(
            f"`{' '.join(argv)}` exited {done.returncode}: {why[-1] if why else 'no output'}"
        )


def _systemctl_passthrough(
    systemctl: str, args: Sequence[str], env: Mapping[str, str], out: TextIO
) -> int:
    """Run systemctl and show what it printed; its exit status is the command's."""
    try:
        done = subprocess.run(
            [systemctl, "--no-pager", *args],
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=SYSTEMCTL_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServiceError(f"`systemctl {' '.join(args)}` failed: {exc}") from None
    out.write(done.stdout + done.stderr)
    out.flush()
    return done.returncode


def _others_can_read(path: Path) -> bool:
    """Whether someone other than the file's owner may read it (group or world)."""
    try:
        return bool(path.stat().st_mode & 0o044)
    except OSError:
        return False


def add_service_parser(commands: argparse._SubParsersAction[_ParserT]) -> None:
    """`burrow service ACTION [--config FILE] [--root DIR]` on `burrow`'s subcommands."""
    service = commands.add_parser(
        "service",
        help="run the agent as a systemd service (install needs --config)",
        description="Install burrow.service, which runs `burrow start --all --config FILE` "
        "as its own user, restarted on failure; then start, stop, restart, status, uninstall.",
    )
    service.add_argument(
        "service_action", metavar="|".join(SERVICE_ACTIONS), choices=SERVICE_ACTIONS
    )
    service.add_argument(
        "--config",
        action="append",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="install: the config file the service runs (its authtoken stays in it)",
    )
    service.add_argument(
        "--root",
        metavar="DIR",
        type=Path,
        help="install into (or uninstall from) another root directory, e.g. an image",
    )


#: `burrow`'s global options that mean nothing to `burrow service` (the service reads them
#: from its config file); given anyway, they are refused rather than silently dropped.
_NOT_FOR_SERVICE = ("authtoken", "metadata", "log", "log_level", "log_format")


def service_command(args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> int:
    """Run a parsed `burrow service ...` command line (see `run_service`)."""
    for name in _NOT_FOR_SERVICE:
        if getattr(args, name, None) is not None:
            flag = "--" + name.replace("_", "-")
            raise ServiceError(
                f"{flag} does not apply to `burrow service`: the service takes its settings "
                "(authtoken included) from the --config file"
            )
    configs = [part for value in getattr(args, "config", []) for part in value.split(",")]
    configs = [part for part in configs if part not in ("", ".")]
    if len(configs) > 1:
        raise ServiceError("service install takes one --config FILE (the service runs one)")
    if configs and args.service_action != "install":
        raise ServiceError(f"--config applies to install, not {args.service_action}")
    request = ServiceRequest(
        action=args.service_action,
        config=Path(configs[0]) if configs else None,
        root=None if args.root is None else args.root.absolute(),
        executable=_burrow_executable(env),
    )
    return run_service(request, env, out)


def _burrow_executable(env: Mapping[str, str]) -> Path | None:
    """The `burrow` beside the running Python (a virtualenv's), else the one on PATH."""
    beside = Path(sys.executable).parent / "burrow"
    if beside.is_file():
        return beside
    found = shutil.which("burrow", path=env.get("PATH", ""))
    return Path(found) if found else None
