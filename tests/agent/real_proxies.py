"""Real outbound proxies from Debian on 127.0.0.1 for the proxy_url tests: tinyproxy (HTTP
CONNECT, optional BasicAuth) and Dante's danted (SOCKS5, optional RFC 1929 username auth).

Each runs in the foreground with its config and log in a test's directory, on a free loopback
port, and is ready once its log says so (no sleeps). `./dev test` installs both packages.
Dante checks SOCKS5 user names and passwords against the system's password database, so the
authenticated SOCKS5 tests need a system user: `socks_user()` creates `burrowsocks` (no home,
no shell) when running as root, and otherwise says how to create it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

READY_TIMEOUT = 30.0
#: The system user Dante checks SOCKS5 credentials against, and its password.
SOCKS_USER = "burrowsocks"
SOCKS_PASSWORD = "s0cks-pass-4e1d"


@dataclass
class RunningProxy:
    """A proxy process listening on 127.0.0.1:`port`; `url` has no credentials."""

    scheme: str
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, user: str | None = None, password: str | None = None) -> str:
        auth = f"{user}:{password}@" if user is not None else ""
        return f"{self.scheme}://{auth}127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _binary(name: str) -> str:
    found = shutil.which(name) or (
        f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else ""
    )
    assert found, f"{name} is not installed; ./dev test installs it (Debian package)"
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_log(proxy: RunningProxy, ready: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if ready in proxy.log():
            return
        if proxy.proc.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(
        f"{proxy.proc.args!r} did not log {ready!r} (exit {proxy.proc.poll()}): {proxy.log()!r}"
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextmanager
def tinyproxy(
    directory: Path, *, user: str | None = None, password: str | None = None
) -> Iterator[RunningProxy]:
    """tinyproxy on 127.0.0.1, requiring `user`/`password` (BasicAuth) when given. Its log
    (level Info) records each `CONNECT host:port` request line."""
    directory.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    log_path = directory / "tinyproxy.log"
    config = directory / "tinyproxy.conf"
    lines = [
        f"Port {port}",
        "Listen 127.0.0.1",
        # Outgoing connections leave from 127.0.0.1, so the proxy can reach loopback only.
        "Bind 127.0.0.1",
        "Timeout 60",
        f'LogFile "{log_path}"',
        "LogLevel Info",
        "MaxClients 50",
        "Allow 127.0.0.1",
    ]
    if user is not None:
        lines.append(f"BasicAuth {user} {password}")
    config.write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen(
        [_binary("tinyproxy"), "-d", "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=(directory / "tinyproxy.out").open("wb"),
    )
    proxy = RunningProxy("http", port, log_path, proc)
    try:
        _wait_for_log(proxy, "Accepting connections")
        yield proxy
    finally:
        _stop(proc)


@contextmanager
def danted(directory: Path, *, username_auth: bool = False) -> Iterator[RunningProxy]:
    """Dante's SOCKS5 server on 127.0.0.1, with `socksmethod: username` (system users; see
    `socks_user`) or `none`. Its log records each connection it passes or blocks."""
    directory.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    log_path = directory / "danted.log"
    config = directory / "danted.conf"
    config.write_text(
        f"logoutput: {log_path}\n"
        f"internal: 127.0.0.1 port = {port}\n"
        "external: 127.0.0.1\n"
        f"socksmethod: {'username' if username_auth else 'none'}\n"
        "clientmethod: none\n"
        f"user.privileged: {'root' if os.geteuid() == 0 else os.environ.get('USER', 'nobody')}\n"
        "user.unprivileged: nobody\n"
        "client pass {\n  from: 127.0.0.0/8 to: 127.0.0.0/8\n  log: connect error\n}\n"
        "socks pass {\n  from: 127.0.0.0/8 to: 127.0.0.0/8\n  command: connect\n"
        "  log: connect error\n}\n"
    )
    proc = subprocess.Popen(
        [_binary("danted"), "-f", str(config), "-N", "1", "-p", str(directory / "danted.pid")],
        stdout=subprocess.DEVNULL,
        stderr=(directory / "danted.out").open("wb"),
    )
    proxy = RunningProxy("socks5", port, log_path, proc)
    try:
        _wait_for_log(proxy, "running")
        yield proxy
    finally:
        _stop(proc)


def socks_user() -> tuple[str, str]:
    """The system user (and password) Dante's username method accepts; created if missing
    (root only: a system account with no home and no login shell)."""
    known = subprocess.run(["id", SOCKS_USER], capture_output=True, check=False).returncode == 0
    if not known:
        assert os.geteuid() == 0, (
            f"SOCKS5 username auth needs the system user {SOCKS_USER}: run as root once, or "
            f"`useradd --system -M -s /usr/sbin/nologin {SOCKS_USER}` and set its password to "
            f"{SOCKS_PASSWORD!r} with chpasswd"
        )
        subprocess.run(
            [
                _binary("useradd"),
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SOCKS_USER,
            ],
            check=True,
            capture_output=True,
        )
    if os.geteuid() == 0:  # (re)set the password, so a stale account still matches
        subprocess.run(
            [_binary("chpasswd")],
            input=f"{SOCKS_USER}:{SOCKS_PASSWORD}".encode(),
            check=True,
            capture_output=True,
        )
    return SOCKS_USER, SOCKS_PASSWORD
