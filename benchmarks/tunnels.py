"""The tunnels under test: each sets up a forward from `local_port` to the upstream port.

Every class is a context manager: entering starts the tunnel's processes and returns once a
connection through `local_port` has round-tripped end to end; leaving stops them and removes
their temporary files. `pids()` lists the tunnel's processes (summed for CPU), `roles()` splits
them into "edge" (the server side, which the agent dials) and "agent" (the client side).

- `Direct`: no tunnel; `local_port` is the upstream port itself.
- `SSHForward`: a private sshd on a free loopback port (own host key, authorized_keys and
  sshd_config in a temp dir) and `ssh -N -L`. sshd's per-connection children are the edge, the
  ssh client is the agent.
- `Burrow`: `burrow-edge serve` and `burrow tcp`, wired by the edge's dev CA and an authtoken.
- `BurrowHttps`: the same edge and `burrow http UPSTREAM --url https://NAME`: the client speaks
  TLS to the edge's public TLS port with SNI = NAME (`server_name`) and trusts the edge's dev CA
  (`ca_path`); the edge terminates TLS and proxies HTTP/1.1 to the agent. With `policy_file`, the
  agent adds `--traffic-policy-file FILE` and the edge runs that Traffic Policy on every request.
- `BurrowTls`: the same edge and `burrow tls UPSTREAM --url tls://NAME`: the edge routes the
  client's TLS connection by its SNI and passes the bytes through to a TLS upstream.
- `H11Server`: no tunnel and no upstream: `local_port` is a bare trio + h11 server
  (`benchmarks.h11_origin`) answering the origin's small body itself, the Python ceiling an
  https:// endpoint's request rate is read against. Its one process is the "server" role.
- `TrioRelay`: a bare trio TCP relay (`benchmarks.trio_relay`) from `local_port` to the upstream,
  one process, no TLS or mux: the Python ceiling a tcp:// endpoint's figures are read against.
  Its one process is the "server" role.

How "forwarding works" is checked is the caller's `probe` (default: one round trip with the
load server of `benchmarks.load`; the HTTP measures pass an HTTP request instead).
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from benchmarks import load
from benchmarks.measure import descendants

# How long a tunnel may take to come up before we call it broken.
START_TIMEOUT = 30.0
SSHD = "/usr/sbin/sshd"
# sshd refuses to start without its privilege-separation directory (normally made by systemd).
SSHD_PRIVSEP_DIR = Path("/run/sshd")


class TunnelUnavailableError(RuntimeError):
    """The tunnel cannot run on this machine (missing binary, failed start); says what to do."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_forward(
    tunnel: Tunnel,
    proc: subprocess.Popen[bytes] | subprocess.Popen[str] | None,
    what: str,
    log: Path,
) -> None:
    """Poll until the tunnel's probe gets through to the upstream server and back."""
    deadline = time.monotonic() + START_TIMEOUT
    last: BaseException | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise TunnelUnavailableError(f"{what} exited with status {proc.returncode}{_tail(log)}")
        try:
            tunnel.check_forwarding()
            return
        except (OSError, load.LoadError) as exc:
            last = exc
            time.sleep(0.05)
    raise TunnelUnavailableError(
        f"{what}: port {tunnel.local_port} did not forward within {START_TIMEOUT}s "
        f"({last!r}){_tail(log)}"
    )


def _load_probe(tunnel: Tunnel) -> None:
    load.probe(tunnel.local_port)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return ("\n  " + "\n  ".join(text[-lines:])) if text else ""


def _how_it_ended(proc: subprocess.Popen[str]) -> str:
    """'exited with status N' or 'ran START_TIMEOUT seconds' (stdout closed or the wait ran out)."""
    try:
        status = proc.wait(1)
    except subprocess.TimeoutExpired:
        return f"ran {START_TIMEOUT:.0f}s"
    return f"exited with status {status}"


def _stop(proc: subprocess.Popen[bytes] | subprocess.Popen[str] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


Probe = Callable[["Tunnel"], None]


class Tunnel:
    """Base: context manager with a temp dir; subclasses fill in start()/stop().

    `server_name` and `ca_path` are set when the tunnel's public side is itself a TLS server
    (an https:// endpoint): a client connects to 127.0.0.1:`local_port` with SNI and Host
    `server_name`, trusting `ca_path`. Otherwise both are None and the tunnel is transparent.
    `policy_name` is the stem of the Traffic Policy file the endpoint runs, None for no policy.
    """

    name = "tunnel"

    def __init__(self, upstream_port: int, probe: Probe | None = None) -> None:
        self.upstream_port = upstream_port
        self.local_port = upstream_port
        self._probe: Probe = probe or _load_probe
        self.server_name: str | None = None
        self.ca_path: Path | None = None
        self.policy_name: str | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._logs: list[IO[bytes]] = []

    def _log(self, name: str) -> IO[bytes]:
        """An append-mode log file in the temp dir for a child's stderr, closed at exit."""
        handle = (self.dir / name).open("ab")
        self._logs.append(handle)
        return handle

    @property
    def dir(self) -> Path:
        assert self._tmp is not None, "tunnel not started"
        return Path(self._tmp.name)

    def check_forwarding(self) -> None:
        """One request through `local_port` to the upstream and back; OSError/LoadError if not."""
        self._probe(self)

    def roles(self) -> dict[str, list[int]]:
        return {}

    def pids(self) -> list[int]:
        return [pid for pids in self.roles().values() for pid in pids]

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def __enter__(self) -> Self:
        self._tmp = tempfile.TemporaryDirectory(prefix=f"burrow-bench-{self.name}-")
        try:
            self.start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.stop()
        finally:
            for handle in self._logs:
                handle.close()
            self._logs.clear()
            if self._tmp is not None:
                self._tmp.cleanup()
                self._tmp = None


class Direct(Tunnel):
    """Loopback TCP straight to the upstream server: the ceiling every tunnel is compared to."""

    name = "direct"


class H11Server(Tunnel):
    """A bare trio + h11 server (`python -m benchmarks.h11_origin`) in place of the upstream.

    It answers `GET /small` with the origin's body itself, so the upstream port is not used;
    its process is the "server" role (its CPU is what one Python HTTP server pays).
    """

    name = "h11"

    def __init__(self, upstream_port: int, probe: Probe | None = None) -> None:
        super().__init__(upstream_port, probe)
        self.server: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.local_port = free_port()
        log = self.dir / "h11.log"
        self.server = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.h11_origin", str(self.local_port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log(log.name),
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        _wait_for_forward(self, self.server, "python -m benchmarks.h11_origin", log)

    def roles(self) -> dict[str, list[int]]:
        assert self.server is not None
        return {"server": [self.server.pid]}

    def stop(self) -> None:
        _stop(self.server)


class TrioRelay(Tunnel):
    """A bare trio TCP relay (`python -m benchmarks.trio_relay`) to the upstream port.

    Its process is the "server" role: what one Python process pays to forward the bytes.
    """

    name = "relay"

    def __init__(self, upstream_port: int, probe: Probe | None = None) -> None:
        super().__init__(upstream_port, probe)
        self.server: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.local_port = free_port()
        log = self.dir / "relay.log"
        self.server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.trio_relay",
                str(self.local_port),
                str(self.upstream_port),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log(log.name),
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        _wait_for_forward(self, self.server, "python -m benchmarks.trio_relay", log)

    def roles(self) -> dict[str, list[int]]:
        assert self.server is not None
        return {"server": [self.server.pid]}

    def stop(self) -> None:
        _stop(self.server)


class TrioRelayPair(Tunnel):
    """Two bare trio relays in a chain: the client's relay dials a second one, which dials the
    upstream. Two Python processes pass each message on, as a tunnel's edge and agent do, but
    with nothing else in them: no TLS, no mux frames. The floor for any two-process tunnel
    written on trio; its tail latency shows what a second process on the path costs on a
    machine with as many cores as this benchmark keeps busy.
    """

    name = "relay2"

    def __init__(self, upstream_port: int, probe: Probe | None = None) -> None:
        super().__init__(upstream_port, probe)
        self.outer: subprocess.Popen[str] | None = None
        self.inner: subprocess.Popen[str] | None = None

    def _relay(self, port: int, upstream_port: int, log: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "benchmarks.trio_relay", str(port), str(upstream_port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log(log),
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
        )

    def start(self) -> None:
        inner_port = free_port()
        self.local_port = free_port()
        self.inner = self._relay(inner_port, self.upstream_port, "inner.log")
        self.outer = self._relay(self.local_port, inner_port, "outer.log")
        # The probe crosses both, so it passes only once the inner one listens too.
        _wait_for_forward(
            self, self.outer, "python -m benchmarks.trio_relay (outer)", self.dir / "outer.log"
        )
        if self.inner.poll() is not None:
            raise TunnelUnavailableError(f"inner trio relay exited{_tail(self.dir / 'inner.log')}")

    def roles(self) -> dict[str, list[int]]:
        assert self.outer is not None and self.inner is not None
        return {"edge": [self.outer.pid], "agent": [self.inner.pid]}

    def stop(self) -> None:
        _stop(self.outer)
        _stop(self.inner)


class SSHForward(Tunnel):
    """OpenSSH `ssh -L` through a private sshd running as the current user."""

    name = "ssh"

    def __init__(
        self, upstream_port: int, cipher: str | None = None, probe: Probe | None = None
    ) -> None:
        super().__init__(upstream_port, probe)
        self.cipher = cipher
        self.sshd: subprocess.Popen[bytes] | None = None
        self.ssh: subprocess.Popen[bytes] | None = None

    def _config(self, port: int) -> str:
        d = self.dir
        return "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {d / 'host_ed25519'}",
                f"PidFile {d / 'sshd.pid'}",
                f"AuthorizedKeysFile {d / 'authorized_keys'}",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
                "PermitRootLogin yes",
                "AllowTcpForwarding yes",
                "X11Forwarding no",
                "PrintMotd no",
                "UseDNS no",
                "LogLevel ERROR",
                "",
            ]
        )

    def start(self) -> None:
        for tool in ("ssh", "ssh-keygen"):
            if shutil.which(tool) is None:
                raise TunnelUnavailableError(f"{tool} not found: apt-get install openssh-client")
        if not os.access(SSHD, os.X_OK):
            raise TunnelUnavailableError(f"{SSHD} not found: apt-get install openssh-server")
        if not SSHD_PRIVSEP_DIR.is_dir():
            SSHD_PRIVSEP_DIR.mkdir(mode=0o755, parents=True)
        d = self.dir
        for key in ("host_ed25519", "client_ed25519"):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / key)],
                check=True,
                stdin=subprocess.DEVNULL,
            )
        shutil.copy(d / "client_ed25519.pub", d / "authorized_keys")
        log = d / "ssh.log"
        for _attempt in range(5):  # free_port() can race with another process: retry
            ssh_port, self.local_port = free_port(), free_port()
            (d / "sshd_config").write_text(self._config(ssh_port))
            self.sshd = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(d / "sshd_config")],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=self._log("sshd.log"),
            )
            if self._wait_listening(ssh_port):
                break
            _stop(self.sshd)
        else:
            raise TunnelUnavailableError(f"sshd did not start{_tail(d / 'sshd.log')}")
        cmd = [
            "ssh",
            "-N",
            "-F",
            "/dev/null",
            "-L",
            f"127.0.0.1:{self.local_port}:127.0.0.1:{self.upstream_port}",
            "-p",
            str(ssh_port),
            "-i",
            str(d / "client_ed25519"),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "ExitOnForwardFailure=yes",
            "-o",
            "LogLevel=ERROR",
        ]
        if self.cipher:
            cmd += ["-c", self.cipher]
        cmd.append("127.0.0.1")
        self.ssh = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._log(log.name)
        )
        _wait_for_forward(self, self.ssh, "ssh -L", log)

    def _wait_listening(self, port: int) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.sshd is not None
            if self.sshd.poll() is not None:
                return False
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                time.sleep(0.02)
        return False

    def roles(self) -> dict[str, list[int]]:
        assert self.sshd is not None and self.ssh is not None
        # The listening sshd idles; its per-connection children (privsep monitor and the
        # unprivileged session process that moves the bytes) are the edge.
        return {"edge": descendants(self.sshd.pid), "agent": [self.ssh.pid]}

    def stop(self) -> None:
        _stop(self.ssh)
        _stop(self.sshd)


class _LineReader:
    """Drains a process's stdout on a thread (so its pipe never fills); lines come via a queue."""

    def __init__(self, stream: IO[str], copy_to: Path) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._copy_to = copy_to
        threading.Thread(target=self._run, args=(stream,), daemon=True).start()

    def _run(self, stream: IO[str]) -> None:
        with self._copy_to.open("a") as copy:
            for line in stream:
                copy.write(line)
                copy.flush()
                self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str] | None:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                return None
            if line is None:
                return None
            if match := pattern.search(line):
                return match
        return None


class Burrow(Tunnel):
    """`burrow-edge serve` plus `burrow tcp UPSTREAM`, over the edge's own dev CA.

    Subclasses change only the agent's command (`agent_args`) and how its Forwarding line is
    read (`FORWARDING`, `_forwarding`).
    """

    name = "burrow"
    READY = re.compile(r"burrow-edge ready: tls=127\.0\.0\.1:(\d+)")
    FORWARDING = re.compile(r"Forwarding tcp://[^:\s]+:(\d+)\s*->")
    FORWARDING_SHAPE = "Forwarding tcp://HOST:PORT -> ..."

    def __init__(
        self, upstream_port: int, bin_dir: Path | None = None, probe: Probe | None = None
    ) -> None:
        super().__init__(upstream_port, probe)
        self.bin_dir = bin_dir or Path(sys.executable).parent
        self.edge: subprocess.Popen[str] | None = None
        self.agent: subprocess.Popen[str] | None = None

    def _binary(self, name: str) -> str:
        path = self.bin_dir / name
        if not os.access(path, os.X_OK):
            raise TunnelUnavailableError(
                f"{path} not found: the Burrow tunnel needs the project installed "
                f"(.venv/bin/python -m pip install -e .), or pass --tunnels direct,ssh"
            )
        return str(path)

    def agent_args(self) -> list[str]:
        """The `burrow` command line after the program name (the authtoken is appended)."""
        return ["tcp", f"127.0.0.1:{self.upstream_port}"]

    def _forwarding(self, match: re.Match[str]) -> None:
        """Take the public port (and name) from the agent's Forwarding line."""
        self.local_port = int(match.group(1))

    @property
    def data_dir(self) -> Path:
        return self.dir / "edge-data"

    def start(self) -> None:
        edge_bin, agent_bin = self._binary("burrow-edge"), self._binary("burrow")
        d = self.dir
        data_dir = self.data_dir
        (d / "edge.yml").write_text(
            'listen: {tls: "127.0.0.1:0", http: "127.0.0.1:0"}\n'
            'tcp: {bind_host: 127.0.0.1, public_host: 127.0.0.1, port_range: "21000-21999"}\n'
            "admin: {enabled: false}\n"
        )
        edge_log = d / "edge.log"
        self.edge = subprocess.Popen(
            [edge_bin, "serve", "--data-dir", str(data_dir), "--config", str(d / "edge.yml")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log(edge_log.name),
            text=True,
        )
        assert self.edge.stdout is not None
        edge_out = _LineReader(self.edge.stdout, edge_log)
        ready = edge_out.wait_for(self.READY, START_TIMEOUT)
        if ready is None:
            raise TunnelUnavailableError(
                f"burrow-edge serve {_how_it_ended(self.edge)} without printing "
                f"'burrow-edge ready: tls=127.0.0.1:PORT'{_tail(edge_log)}"
            )
        agents_port = int(ready.group(1))

        cred = subprocess.run(
            [edge_bin, "credential", "create", "--data-dir", str(data_dir)],
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        out_lines = cred.stdout.strip().splitlines()
        if cred.returncode != 0 or not out_lines:
            raise TunnelUnavailableError(
                f"burrow-edge credential create failed (status {cred.returncode}): "
                f"{(cred.stderr or cred.stdout).strip()[-2000:]}"
            )
        token = out_lines[-1].strip()

        env = dict(os.environ)
        env["BURROW_CONNECT_URL"] = f"connect.burrow.localhost:{agents_port}"
        env["BURROW_CONNECT_CAS"] = str(data_dir / "ca.pem")
        agent_log = d / "agent.log"
        command = " ".join(["burrow", *self.agent_args()[:1]])
        self.agent = subprocess.Popen(
            [agent_bin, *self.agent_args(), "--authtoken", token],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log(agent_log.name),
            text=True,
            env=env,
        )
        assert self.agent.stdout is not None
        forwarding = _LineReader(self.agent.stdout, agent_log).wait_for(
            self.FORWARDING, START_TIMEOUT
        )
        if forwarding is None:
            raise TunnelUnavailableError(
                f"{command} {_how_it_ended(self.agent)} without printing "
                f"'{self.FORWARDING_SHAPE}'{_tail(agent_log)}"
                f"\n edge log:{_tail(edge_log)}"
            )
        self._forwarding(forwarding)
        _wait_for_forward(self, None, f"{command} tunnel", agent_log)
        for proc, what, log in (
            (self.edge, "burrow-edge", edge_log),
            (self.agent, "burrow", agent_log),
        ):
            if proc.poll() is not None:
                raise TunnelUnavailableError(
                    f"{what} exited with status {proc.returncode}{_tail(log)}"
                )

    def roles(self) -> dict[str, list[int]]:
        assert self.edge is not None and self.agent is not None
        return {
            "edge": [self.edge.pid, *descendants(self.edge.pid)],
            "agent": [self.agent.pid, *descendants(self.agent.pid)],
        }

    def stop(self) -> None:
        _stop(self.agent)
        _stop(self.edge)


class BurrowHttps(Burrow):
    """`burrow http UPSTREAM --url https://NAME`: TLS ends at the edge, then HTTP/1.1 to the agent.

    Clients connect to the edge's public TLS port with SNI and Host `server_name` and trust the
    edge's development CA (`ca_path`); nothing needs the name to resolve.
    """

    name = "burrow-https"
    HOST = "bench.burrow.localhost"
    FORWARDING = re.compile(r"Forwarding https://([^:\s/]+):(\d+)\s*->")
    FORWARDING_SHAPE = "Forwarding https://NAME:PORT -> ..."

    def __init__(
        self,
        upstream_port: int,
        bin_dir: Path | None = None,
        probe: Probe | None = None,
        policy_file: Path | None = None,
    ) -> None:
        super().__init__(upstream_port, bin_dir, probe)
        # A Traffic Policy for the endpoint (`burrow http --traffic-policy-file`); None: none.
        self.policy_file = policy_file
        self.policy_name = None if policy_file is None else policy_file.stem

    def agent_args(self) -> list[str]:
        args = ["http", f"127.0.0.1:{self.upstream_port}", "--url", f"https://{self.HOST}"]
        if self.policy_file is not None:
            args += ["--traffic-policy-file", str(self.policy_file)]
        # Bench-only: BURROW_BENCH_INSPECT=false runs the endpoint without the inspector's
        # capture, to measure what capture costs against the default (on).
        if os.environ.get("BURROW_BENCH_INSPECT", "").lower() in ("0", "false", "off"):
            args += ["--inspect=false"]
        return args

    def _forwarding(self, match: re.Match[str]) -> None:
        self.server_name = match.group(1)
        self.local_port = int(match.group(2))
        self.ca_path = self.data_dir / "ca.pem"


class BurrowTls(Burrow):
    """`burrow tls UPSTREAM --url tls://NAME`: the edge routes by SNI and passes TLS through.

    The client speaks TLS to the upstream itself (SNI = `host`, the upstream's own certificate),
    so `server_name` stays None: to the client the tunnel is as transparent as `ssh -L`.
    """

    name = "burrow-tls"
    FORWARDING = re.compile(r"Forwarding tls://[^:\s/]+:(\d+)\s*->")
    FORWARDING_SHAPE = "Forwarding tls://NAME:PORT -> ..."

    def __init__(
        self,
        upstream_port: int,
        host: str,
        bin_dir: Path | None = None,
        probe: Probe | None = None,
    ) -> None:
        super().__init__(upstream_port, bin_dir, probe)
        self.host = host

    def agent_args(self) -> list[str]:
        return ["tls", f"127.0.0.1:{self.upstream_port}", "--url", f"tls://{self.host}"]
