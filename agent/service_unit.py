"""The systemd unit that runs `burrow` as a system service, rendered from values.

Theory of operation
-------------------
`burrow service install --config FILE` (agent.service) calls `render_unit` with the absolute
paths of the `burrow` executable and the config file, and writes the text to
`/etc/systemd/system/burrow.service`; `render_sysusers` gives the `sysusers.d` line that
creates the account the unit runs as. Nothing here touches the file system.

What the unit does, and why:

* `ExecStart=burrow start --all --config FILE`: ngrok's service runs the equivalent of
  `ngrok start --all` on the file given at install (reference §2.1). The file is named by an
  absolute path and read by the agent at every start, so the authtoken in it is never copied
  into the unit (which any local user may read with `systemctl cat`).
* Restart on failure, with back-off: `Restart=on-failure`, `RestartSec=` between tries and
  `StartLimitIntervalSec=`/`StartLimitBurst=` so an agent that cannot start (a revoked token)
  stops being restarted instead of looping. A clean exit (the edge sent Stop, reference §8.6)
  is not a failure: the service stays stopped until started again. Reconnecting to an edge
  that went away is the agent's own business (agent.backoff), without a restart.
* After the network is up: `Wants=`/`After=network-online.target`.
* Its own account: a static system user created by `systemd-sysusers`, not `DynamicUser=`.
  The config holds the authtoken and names further files (certificates, keys, policies);
  an operator must be able to grant the service read access to them
  (`chgrp burrow FILE; chmod 640 FILE`), which needs an account whose name and id do not
  change between boots. `DynamicUser=` would only allow world-readable files, or copying the
  secrets into the service's own directories.
* Hardened: no privileges (`NoNewPrivileges=`, an empty `CapabilityBoundingSet=`), the whole
  file system read-only except the state directory (`ProtectSystem=strict`,
  `StateDirectory=burrow`), no home directories (`ProtectHome=yes`: so the config and the
  files it names must live outside /home, e.g. in /etc/burrow), a private /tmp and /dev,
  only IPv4/IPv6/unix sockets, and the `@system-service` system call set.
  `MemoryDenyWriteExecute=` is left out: libffi closures (ctypes callbacks, used by some
  Python libraries) need memory that is writable and executable.

Paths are checked, not quoted: a path must be absolute and free of characters that systemd
would read as a specifier, a variable, a quote or a separator, so what is written is exactly
what runs. A path that is not raises ServiceUnitError naming it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

__all__ = [
    "OPEN_FILES",
    "RESTART_SEC",
    "SERVICE_NAME",
    "SERVICE_USER",
    "START_LIMIT_BURST",
    "START_LIMIT_INTERVAL",
    "STATE_DIRECTORY",
    "STOP_TIMEOUT",
    "ServiceSpec",
    "ServiceUnitError",
    "render_sysusers",
    "render_unit",
]

#: The unit's name, as ngrok's service is `ngrok.service`.
SERVICE_NAME = "burrow.service"
#: The account the service runs as (created by systemd-sysusers).
SERVICE_USER = "burrow"
#: /var/lib/burrow: the one writable place (the agent's working and home directory).
STATE_DIRECTORY = "burrow"
#: Seconds between a failure and the restart: long enough that a crash loop costs little,
#: short enough that a crashed agent is back before most clients retry.
RESTART_SEC = 5
#: At most START_LIMIT_BURST starts within START_LIMIT_INTERVAL seconds, then systemd gives up
#: (until `burrow service start`): ten tries at RESTART_SEC cover a minute of an edge that
#: refuses the agent, and a refusal that lasts is one a person must fix (a revoked token).
START_LIMIT_INTERVAL = 600
START_LIMIT_BURST = 10
#: Open files (LimitNOFILE=): each proxied connection holds an upstream socket, and one session
#: may carry 4096 streams (the edge's max_streams_per_session); systemd's default soft limit,
#: 1024, would refuse upstream connections long before that.
OPEN_FILES = 8192
#: Seconds systemd waits after SIGTERM before SIGKILL: the agent's own grace (agent.cli's
#: STOP_GRACE, 2 s) plus room for a slow GOAWAY.
STOP_TIMEOUT = 30

#: What a path in the unit may hold: systemd gives `%` (specifiers), `$` (variables), quotes,
#: backslashes, whitespace and `;` meaning in ExecStart=.
_SAFE_PATH = re.compile(r"/[A-Za-z0-9._+,:@=/-]*")
#: Directories `ProtectHome=yes` hides from the service.
_HIDDEN_DIRS = (PurePosixPath("/home"), PurePosixPath("/root"), PurePosixPath("/run/user"))


class ServiceUnitError(ValueError):
    """A value the unit cannot be written with; the message names it and says what to do."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ServiceSpec:
    """What the unit runs: the `burrow` executable and the config file, both absolute."""

    executable: PurePosixPath
    config: PurePosixPath
    user: str = SERVICE_USER


def render_unit(spec: ServiceSpec) -> str:
    """The text of burrow.service for `spec`. Raises ServiceUnitError for a path that is not
    absolute, holds characters systemd would interpret, or lies where the service cannot see
    it (ProtectHome=yes)."""
    executable = _checked(spec.executable, "the burrow executable")
    config = _checked(spec.config, "--config")
    if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,30}", spec.user):
        raise ServiceUnitError(f"service user {spec.user!r}: use a plain lower-case name")
    return f"""\
# Written by `burrow service install` (deploy/burrow.service is a copy for /usr/local/bin);
# `burrow service uninstall` disables and removes it.
[Unit]
Description=Burrow agent ({config})
Wants=network-online.target
After=network-online.target
StartLimitIntervalSec={START_LIMIT_INTERVAL}
StartLimitBurst={START_LIMIT_BURST}

[Service]
Type=exec
ExecStart={executable} start --all --config {config}
User={spec.user}
Group={spec.user}
Restart=on-failure
RestartSec={RESTART_SEC}
TimeoutStopSec={STOP_TIMEOUT}
LimitNOFILE={OPEN_FILES}
StateDirectory={STATE_DIRECTORY}
StateDirectoryMode=0700
WorkingDirectory=%S/{STATE_DIRECTORY}
Environment=HOME=%S/{STATE_DIRECTORY}
UMask=0077
NoNewPrivileges=yes
CapabilityBoundingSet=
AmbientCapabilities=
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
RemoveIPC=yes
LockPersonality=yes
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @resources
SystemCallErrorNumber=EPERM

[Install]
WantedBy=multi-user.target
"""


def render_sysusers(spec: ServiceSpec) -> str:
    """The sysusers.d(5) line that creates the service's system user and group (no login
    shell, home = the state directory)."""
    return (
        "# Written by `burrow service install`: the account burrow.service runs as.\n"
        f'u {spec.user} - "Burrow agent" /var/lib/{STATE_DIRECTORY} -\n'
    )


def _checked(path: PurePosixPath, what: str) -> str:
    text = str(path)
    if not path.is_absolute():
        raise ServiceUnitError(f"{what} {text!r}: the unit needs an absolute path")
    if not _SAFE_PATH.fullmatch(text):
        raise ServiceUnitError(
            f"{what} {text!r}: systemd would read a character of it as syntax "
            "(space, %, $, quote, backslash or ;); move it to a plain path such as "
            "/etc/burrow/burrow.yml"
        )
    if any(path.is_relative_to(hidden) for hidden in _HIDDEN_DIRS):
        raise ServiceUnitError(
            f"{what} {text!r}: the service cannot see it (ProtectHome=yes hides /home, /root "
            "and /run/user); move it elsewhere, e.g. /etc/burrow/ or /usr/local/bin/"
        )
    return text
