"""A throwaway PostgreSQL server for the clinic example: clinic A's patient database.

It listens on 127.0.0.1 only (no Unix socket outside its own directory), on a free port, with
its data in a new temporary directory that `stop` removes. PostgreSQL refuses to run as root:
when this runs as root, initdb and the server run as the `postgres` user the Debian package
creates. The server logs every connection (`log_connections`), so the example and its tests
can show that a client refused at the agent never reached it.

The schema: database `clinic`, role `acme` (password `acme-demo`, scram-sha-256 over TCP), and
a table `patients` with three rows.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DATABASE = "clinic"
USER = "acme"
PASSWORD = "acme-demo"
#: The Debian package's system user, which the server runs as when this runs as root.
SYSTEM_USER = "postgres"
#: How long the server gets to accept connections after it starts (it takes about a second).
READY_TIMEOUT = 30.0
#: How long a stopped server gets to finish a fast shutdown before it is killed.
STOP_TIMEOUT = 10.0

SEED = f"""
CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}';
CREATE DATABASE {DATABASE} OWNER {USER};
\\connect {DATABASE}
SET ROLE {USER};
CREATE TABLE patients (id integer PRIMARY KEY, name text NOT NULL, ward text NOT NULL);
INSERT INTO patients VALUES (1, 'Ada Lovelace', 'cardiology'), (2, 'Alan Turing', 'oncology'),
    (3, 'Grace Hopper', 'neurology');
"""


class PostgresError(Exception):
    """PostgreSQL is missing or would not start; the message says what to do."""


def server_bindir() -> Path:
    """The directory of the newest installed PostgreSQL server: Debian keeps its binaries in
    /usr/lib/postgresql/VERSION/bin, off PATH; elsewhere `postgres` on PATH."""

    def version(bindir: str) -> int:
        match = re.search(r"/postgresql/(\d+)/bin$", bindir)
        return int(match.group(1)) if match else 0

    found = [
        os.path.dirname(path)
        for path in glob.glob("/usr/lib/postgresql/*/bin/postgres")
        if os.access(path, os.X_OK)
    ]
    if found:
        return Path(max(found, key=version))
    on_path = shutil.which("postgres")
    if on_path:
        return Path(on_path).parent
    raise PostgresError(
        "no PostgreSQL server found (looked in /usr/lib/postgresql/*/bin and PATH); install "
        "it: apt-get install postgresql"
    )


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (bound to port 0, then closed: a tiny race, fine here)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Postgres:
    """A running server; `stop` ends it and removes its data."""

    directory: Path
    port: int
    log_path: Path
    process: subprocess.Popen[bytes]
    bindir: Path
    _run_as: dict[str, Any] = field(default_factory=dict)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # PostgreSQL's "fast" shutdown
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)

    def connections_logged(self) -> int:
        """How many connections the server has accepted so far, from its log."""
        return self.log_path.read_text(errors="replace").count("connection received:")


def _as_user() -> dict[str, Any]:
    """Popen arguments that run a child as SYSTEM_USER when this process is root."""
    if os.geteuid() != 0:
        return {}
    try:
        entry = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        raise PostgresError(
            f"running as root, and there is no {SYSTEM_USER!r} user for PostgreSQL to run as "
            "(PostgreSQL refuses root); install the postgresql package, which creates it"
        ) from None
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def start(log_path: Path) -> Postgres:
    """initdb a new cluster, start it on a free loopback port and load the schema.

    Raises PostgresError naming the step that failed (its output included)."""
    bindir = server_bindir()
    run_as = _as_user()
    directory = Path(tempfile.mkdtemp(prefix="burrow-clinic-pg-"))
    if run_as:
        os.chown(directory, run_as["user"], run_as["group"])
    data = directory / "data"
    done = subprocess.run(
        [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth-local=trust",
         "--auth-host=scram-sha-256", "--no-sync", "-E", "UTF8", "--locale=C"],
        capture_output=True, text=True, cwd=directory, check=False, **run_as,
    )  # fmt: skip
    if done.returncode != 0:
        shutil.rmtree(directory, ignore_errors=True)
        raise PostgresError(f"initdb failed:\n{done.stdout}{done.stderr}")
    port = free_port()
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [str(bindir / "postgres"), "-D", str(data), "-c", "listen_addresses=127.0.0.1",
             "-c", f"port={port}", "-c", f"unix_socket_directories={directory}",
             "-c", "log_connections=on", "-c", "log_disconnections=on", "-c", "fsync=off"],
            stdout=log, stderr=log, cwd=directory, start_new_session=True, **run_as,
        )  # fmt: skip
    server = Postgres(directory, port, log_path, process, bindir, run_as)
    try:
        _wait_ready(server)
        done = subprocess.run(
            [str(bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(directory),
             "-p", str(port), "-U", "postgres", "-d", "postgres"],
            input=SEED, capture_output=True, text=True, check=False, **run_as,
        )  # fmt: skip
        if done.returncode != 0:
            raise PostgresError(f"loading the schema failed:\n{done.stdout}{done.stderr}")
    except BaseException:
        server.stop()
        raise
    return server


def _wait_ready(server: Postgres) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise PostgresError(
                f"the server exited (code {server.process.returncode}); its log: {server.log_path}"
            )
        done = subprocess.run(
            [str(server.bindir / "pg_isready"), "-q", "-h", str(server.directory), "-p",
             str(server.port)],
            check=False,
        )  # fmt: skip
        if done.returncode == 0:
            return
        time.sleep(0.1)
    raise PostgresError(f"the server did not accept connections in {READY_TIMEOUT:.0f}s")
