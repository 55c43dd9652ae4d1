"""`./dev clinic`: the clinic scenario (README, "The clinic scenario") on this machine.

A SaaS vendor, Acme, reaches an API and a patient database inside a clinic that allows no
inbound connections. This runs every piece as the real programs, on loopback only:

1. certificates (deploy/examples/clinic/pki.py): Acme's connect CA (the edge's certificate for
   its white-labelled connect host), Clinic A's CA (the agent's certificate for the database),
   Acme's client CA (Acme's client certificate for mutual TLS);
2. a PostgreSQL server with a `patients` table, and each clinic's small HTTP API;
3. Acme's edge (`burrow-edge serve`, edge.yml), its first admin API key (`burrow-edge init`);
4. through the admin API: a service user per clinic, each with a credential that may bind only
   its own `*.<clinic>.internal` names;
5. each clinic's agent (`burrow start --all`, clinic-a.yml and clinic-b.yml), dialling
   `connect.acme.localhost` and binding internal endpoints;
6. through the admin API: Acme's cloud endpoints https://api.acme.example,
   https://api-b.acme.example and tls://db.acme.example, whose Traffic Policies (the *.yml files
   beside this one) run restrict-ips and then forward-internal into the clinics;
7. then it runs what a user would type (curl, a PostgreSQL client), prints each command with
   its output, prints `clinic: ready` and runs until Ctrl-C or SIGTERM, when it stops every
   process it started (exit 0).

With --pooled, clinic A runs two agents (`clinic-a-1`, `clinic-a-2`) on copies of
clinic-a-pooled.yml, whose endpoints have `pooling_enabled: true`: the edge balances over both,
and when one of them exits the other keeps serving (the command says so and runs on; it stops
when a process without a running pool partner exits).

Everything lives in a state directory (default .burrow-clinic/ in the checkout; --state-dir),
made anew on each run: the configs, copied from this directory with their ports pointed at the
processes started here, the certificates, the edge's data directory, the authtokens and API key
(mode 0600), and one log per process. `clinic.json` there describes the running scenario for
scripts and tests. The public names resolve to loopback without DNS: curl's --resolve and
libpq's `hostaddr=127.0.0.1` (the client still verifies the certificate against the name).
If a step fails, it says which, stops what it started and exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from pki import make_pki
from postgres import DATABASE, PASSWORD, USER, Postgres, PostgresError, free_port
from postgres import start as start_postgres

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent.parent
BIN = Path(sys.executable).parent
CONNECT_HOST = "connect.acme.localhost"
#: Each cloud endpoint: its URL, its policy file here, and what it is for.
CLOUD_ENDPOINTS = (
    ("https://api.acme.example", "api.acme.example.yml", "clinic A's API, for Acme's addresses"),
    ("https://api-b.acme.example", "api-b.acme.example.yml", "clinic B's API"),
    ("tls://db.acme.example", "db.acme.example.yml", "clinic A's database, mutual TLS"),
)
#: A process gets this long to print the line that says it is ready (seconds; all are local).
READY_TIMEOUT = 60.0
#: Each sample command gets this long.
COMMAND_TIMEOUT = 60.0
#: A state directory this command made carries this file; no other directory is ever cleared.
MARKER = ".burrow-clinic"


class StepFailedError(Exception):
    """A step failed; the message says which and where to look."""


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _shown(path: Path) -> str:
    """`path` as the printed commands name it: relative to the working directory if inside."""
    relative = os.path.relpath(path)
    return path.as_posix() if relative.startswith("..") else relative


def _private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


class Lines:
    """A child's standard output, read by a daemon thread: `wait` for a line matching a pattern;
    every line is also appended to the child's log. The thread ends at the child's EOF."""

    def __init__(self, name: str, proc: subprocess.Popen[str], log: Path) -> None:
        self.name, self.proc, self.log = name, proc, log
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.log.open("a") as log:
            for line in self.proc.stdout:
                log.write(line)
                log.flush()
                self._lines.put(line)
        self._lines.put(None)

    def wait(self, pattern: str) -> re.Match[str]:
        """The next line that matches (earlier ones are dropped); StepFailedError at EOF or
        after READY_TIMEOUT."""
        deadline = time.monotonic() + READY_TIMEOUT
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                self._lines.put(None)
                break
            if match := re.search(pattern, line):
                return match
        raise StepFailedError(
            f"{self.name} did not become ready (exit code {self.proc.poll()}); its log: "
            f"{_shown(self.log)}"
        )


class Clinic:
    """The processes of one run, started in order and stopped in reverse."""

    def __init__(self, state: Path, pooled: bool = False) -> None:
        self.state = state
        self.pooled = pooled
        self.procs: list[tuple[str, subprocess.Popen[str]]] = []
        self.postgres: Postgres | None = None
        self.api_env = dict(os.environ)

    # --- processes ---------------------------------------------------------------------------
    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Lines:
        """Start `argv` with its standard error in STATE/NAME.log; its standard output is read
        by a thread (so that it can never fill its pipe and block), line by line."""
        with (self.state / f"{name}.log").open("a") as log:
            proc = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=log, text=True, env=env, cwd=self.state
            )
        self.procs.append((name, proc))
        return Lines(name, proc, self.state / f"{name}.log")

    def stop(self) -> None:
        for name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM if name == "edge" else signal.SIGINT)
        for _, proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.postgres is not None:
            self.postgres.stop()

    def wait_for_an_exit(self) -> str:
        """Block until a process exits that the scenario cannot run without; its name. A pooled
        agent that exits while its pool partner runs is announced once and waited past."""
        pooled = [name for name, clinic, _ in self.agents() if clinic == "clinic-a"]
        partners = {f"{name}-agent" for name in pooled} if self.pooled else set()
        announced: set[str] = set()
        while True:
            gone = [name for name, proc in self.procs if proc.poll() is not None]
            for name in gone:
                alive = [n for n, proc in self.procs if n in partners and proc.poll() is None]
                if name in partners and alive and name not in announced:
                    announced.add(name)
                    print(f"clinic: {name} exited; {' and '.join(alive)} still serving clinic "
                          "A's pooled endpoints", file=sys.stderr, flush=True)  # fmt: skip
            fatal = [name for name in gone if name not in announced]
            if fatal:
                return fatal[0]
            time.sleep(0.2)

    def edge_cli(self, *args: str) -> str:
        done = subprocess.run(
            [str(BIN / "burrow-edge"), *args], capture_output=True, text=True,
            env=self.api_env, timeout=READY_TIMEOUT, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise StepFailedError(f"burrow-edge {' '.join(args[:2])} failed: {done.stderr.strip()}")
        return done.stdout

    # --- the scenario ------------------------------------------------------------------------
    def agents(self) -> list[tuple[str, str, str]]:
        """(process name, clinic, config file here) of each agent: one per clinic, or with
        --pooled two for clinic A on the pooled config."""
        if self.pooled:
            pooled = "clinic-a-pooled.yml"
            return [("clinic-a-1", "clinic-a", pooled), ("clinic-a-2", "clinic-a", pooled),
                    ("clinic-b", "clinic-b", "clinic-b.yml")]  # fmt: skip
        return [("clinic-a", "clinic-a", "clinic-a.yml"), ("clinic-b", "clinic-b", "clinic-b.yml")]

    def run(self) -> dict[str, Any]:
        state = self.state
        copied = ("edge.yml", *(f for _, f, _ in CLOUD_ENDPOINTS))
        for name in copied:
            shutil.copyfile(HERE / name, state / name)
        for name, _clinic, source in self.agents():
            shutil.copyfile(HERE / source, state / f"{name}.yml")
        pki = make_pki(state / "certs", connect_host=CONNECT_HOST, database_host="db.acme.example")
        try:
            self.postgres = start_postgres(state / "postgres.log")
        except PostgresError as exc:
            raise StepFailedError(f"PostgreSQL: {exc}") from None
        apis = {}
        for clinic, label in (("clinic-a", "Clinic A"), ("clinic-b", "Clinic B")):
            proc = self.spawn(
                f"{clinic}-api", [sys.executable, "-u", str(HERE / "clinic_api.py"), label]
            )
            apis[clinic] = int(proc.wait(r"127\.0\.0\.1:(\d+)")[1])

        data_dir = state / "edge"
        api_key = self.edge_cli("init", "--data-dir", str(data_dir)).strip().splitlines()[-1]
        _private(state / "api-key", api_key + "\n")
        edge = self.spawn(
            "edge",
            [str(BIN / "burrow-edge"), "serve", "--data-dir", str(data_dir), "--config",
             str(state / "edge.yml")],
        )  # fmt: skip
        ready = edge.wait(r"burrow-edge ready: tls=\S+:(\d+) http=\S+ admin=\S+:(\d+)")
        tls_port, admin_port = int(ready[1]), int(ready[2])
        admin_url = f"http://127.0.0.1:{admin_port}"
        self.api_env.update(BURROW_API_KEY=api_key, BURROW_API_URL=admin_url)

        credentials = {}
        for clinic in ("clinic-a", "clinic-b"):
            user = json.loads(self.edge_cli("service-user", "create", clinic, "--json"))
            made = json.loads(
                self.edge_cli(
                    "credential", "create", "--json", "--owner", user["id"], "--description",
                    f"{clinic}'s agent", "--acl", f"bind:*.{clinic}.internal",
                )
            )  # fmt: skip
            _private(state / f"{clinic}.token", made["token"] + "\n")
            credentials[clinic] = {"service_user": user["id"], "credential": made["id"]}

        upstreams = {
            "clinic-a": [apis["clinic-a"], self.postgres.port],
            "clinic-b": [apis["clinic-b"]],
        }
        inspectors, agents = {}, {}
        for name, clinic, source in self.agents():
            inspectors[name] = f"http://127.0.0.1:{free_port()}"
            config = state / f"{name}.yml"
            self._point_agent(config, source, tls_port, upstreams[clinic], inspectors[name])
            env = dict(os.environ, BURROW_AUTHTOKEN=(state / f"{clinic}.token").read_text().strip())
            env.pop("BURROW_CONNECT_URL", None)
            env.pop("BURROW_CONNECT_CAS", None)
            agent = self.spawn(
                f"{name}-agent",
                [str(BIN / "burrow"), "start", "--all", "--config", str(config), "--log", "stderr"],
                env=env,
            )  # fmt: skip
            for _ in upstreams[clinic]:  # one Forwarding line per endpoint
                agent.wait(r"Forwarding ")
            agents[name] = {"clinic": clinic, "pid": agent.proc.pid, "config": str(config),
                            "inspector": inspectors[name], "log": str(agent.log)}  # fmt: skip

        cloud = {}
        for url, policy, description in CLOUD_ENDPOINTS:
            made = json.loads(
                self.edge_cli(
                    "endpoint", "create", "--json", "--url", url, "--traffic-policy-file",
                    str(state / policy), "--description", description,
                )
            )  # fmt: skip
            cloud[url] = made["id"]
        return {
            "state_dir": str(state),
            "edge": {"tls_port": tls_port, "admin_url": admin_url, "connect_host": CONNECT_HOST,
                     "data_dir": str(data_dir), "ca": str(data_dir / "ca.pem")},
            "postgres": {"port": self.postgres.port, "log": str(self.postgres.log_path),
                         "directory": str(self.postgres.directory),
                         "database": DATABASE, "user": USER},
            "apis": {clinic: {"port": port, "log": str(state / f"{clinic}-api.log")}
                     for clinic, port in apis.items()},
            "credentials": credentials,
            "inspectors": inspectors,
            "agents": agents,
            "pooled": self.pooled,
            "cloud_endpoints": cloud,
            "certs": {"connect_ca": str(pki.connect_ca), "clinic_ca": str(pki.clinic_ca),
                      "client_ca": str(pki.client_ca), "client_cert": str(pki.client.cert),
                      "client_key": str(pki.client.key)},
        }  # fmt: skip

    @staticmethod
    def _point_agent(
        config: Path, source: str, tls_port: int, upstream_ports: list[int], web: str
    ) -> None:
        """The copy of an agent config (of `source` here), its connect port and upstream ports
        set to this run's, and its inspector on a free port (two agents on one machine cannot
        both have 4040)."""
        document = yaml.safe_load(config.read_text())
        document["agent"]["connect_url"] = f"{CONNECT_HOST}:{tls_port}"
        document["agent"]["web_addr"] = web.removeprefix("http://")
        for endpoint, port in zip(document["endpoints"], upstream_ports, strict=True):
            url = endpoint["upstream"]["url"]
            endpoint["upstream"]["url"] = re.sub(r":\d+$", f":{port}", url)
        config.write_text(
            f"# {_shown(HERE / source)}, ports pointed at this run's processes\n"
            + yaml.safe_dump(document, sort_keys=False)
        )


def sample_commands(info: dict[str, Any], pki_dir: Path) -> list[str]:
    """What a user would type to try the scenario, as shell command lines."""
    port = info["edge"]["tls_port"]
    ca = _shown(Path(info["edge"]["ca"]))

    def curl(source: str, host: str, path: str) -> str:
        return (
            f"curl -sS --interface {source} --cacert {ca} --resolve {host}:{port}:127.0.0.1 "
            f"https://{host}:{port}{path}"
        )

    def conninfo(with_cert: bool) -> str:
        words = [
            "host=db.acme.example", "hostaddr=127.0.0.1", f"port={port}",
            "sslmode=verify-full", "sslnegotiation=direct",
            f"sslrootcert={_shown(pki_dir / 'clinic-a-ca.pem')}",
        ]  # fmt: skip
        if with_cert:
            words += [
                f"sslcert={_shown(pki_dir / 'acme-client.pem')}",
                f"sslkey={_shown(pki_dir / 'acme-client.key')}",
            ]
        words += [f"user={USER}", f"password={PASSWORD}", f"dbname={DATABASE}"]
        return " ".join(words)

    query = _shown(HERE / "query.py")
    python = _shown(Path(sys.executable))
    sql = "SELECT id, name, ward FROM patients ORDER BY id"
    return [
        curl("127.0.0.2", "api.acme.example", "/patients"),
        curl("127.0.0.3", "api.acme.example", "/patients") + " -o /dev/null -w '%{http_code}\\n'",
        curl("127.0.0.2", "api-b.acme.example", "/"),
        f"{python} {query} {shlex.quote(conninfo(True))} {shlex.quote(sql)}",
        f"{python} {query} {shlex.quote(conninfo(False))} {shlex.quote(sql)}",
    ]


def run_samples(commands: list[str]) -> None:
    """Run each command through the shell and print it, `$ ` first, with its output."""
    for command in commands:
        done = subprocess.run(
            command, shell=True, capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
            check=False,
        )  # fmt: skip
        print(f"$ {command}\n{done.stdout}{done.stderr}", flush=True)


def prepare(state: Path) -> None:
    """Make `state` empty: new, empty, or a previous run's (which is cleared)."""
    if state.exists() and any(state.iterdir()):
        if not (state / MARKER).exists():
            raise StepFailedError(
                f"{state} is not empty and is not a state directory of this command; "
                "give another --state-dir"
            )
        shutil.rmtree(state)
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    (state / MARKER).write_text("made by deploy/examples/clinic/run.py; cleared on each run\n")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="./dev clinic", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--state-dir", type=Path, default=ROOT / ".burrow-clinic",
        help="where the configs, certificates, data and logs go (default: .burrow-clinic)",
    )  # fmt: skip
    parser.add_argument(
        "--pooled", action="store_true",
        help="clinic A runs two pooled agents (clinic-a-pooled.yml) instead of one",
    )  # fmt: skip
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    state = args.state_dir.resolve()
    clinic = Clinic(state, pooled=args.pooled)
    try:
        prepare(state)
        info = clinic.run()
        _private(state / "clinic.json", json.dumps(info, indent=2) + "\n")
        print(describe(info), flush=True)
        run_samples(sample_commands(info, state / "certs"))
        print("clinic: ready (Ctrl-C stops every process)", flush=True)
        stopped = clinic.wait_for_an_exit()
        print(f"clinic: {stopped} exited; stopping (its log: {_shown(state / stopped)}.log)",
              file=sys.stderr)  # fmt: skip
        return 1
    except StepFailedError as exc:
        print(f"clinic: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("clinic: stopping", file=sys.stderr)
        return 0
    finally:
        clinic.stop()


def describe(info: dict[str, Any]) -> str:
    """The summary printed once everything runs."""
    edge, pg, apis, web = info["edge"], info["postgres"], info["apis"], info["inspectors"]
    port, users = edge["tls_port"], info["credentials"]
    clinic_a_agents = (
        f"two pooled agents (inspectors {web['clinic-a-1']} and {web['clinic-a-2']}), each:"
        if info.get("pooled")
        else f"agent (inspector {web['clinic-a']}):"
    )
    return f"""\
The clinic scenario is running (state and logs: {_shown(Path(info["state_dir"]))}/).
  edge      agents dial {edge["connect_host"]}:{port} (Acme's connect certificate);
            https:// and tls:// endpoints on 127.0.0.1:{port}; admin API {edge["admin_url"]}
  clinic A  service user {users["clinic-a"]["service_user"]}, credential \
{users["clinic-a"]["credential"]} (bind:*.clinic-a.internal)
            {clinic_a_agents}
              https://api.clinic-a.internal    -> API 127.0.0.1:{apis["clinic-a"]["port"]}
              tls://db.clinic-a.internal:5432  -> PostgreSQL 127.0.0.1:{pg["port"]} \
(mutual TLS ends at the agent)
  clinic B  service user {users["clinic-b"]["service_user"]}, credential \
{users["clinic-b"]["credential"]} (bind:*.clinic-b.internal)
            agent (inspector {web["clinic-b"]}):
              https://api.clinic-b.internal    -> API 127.0.0.1:{apis["clinic-b"]["port"]}
  cloud     https://api.acme.example    restrict-ips, forward-internal https://api.clinic-a.internal
            https://api-b.acme.example  restrict-ips, forward-internal https://api.clinic-b.internal
            tls://db.acme.example       restrict-ips, forward-internal tls://db.clinic-a.internal:5432
Names: api.acme.example and db.acme.example reach 127.0.0.1 through curl's --resolve and libpq's
hostaddr (the certificate is still checked against the name). Acme's own addresses are
127.0.0.1 and 127.0.0.2; 127.0.0.3 plays a stranger. query.py runs one query with psycopg's
libpq 17+ (`psql "CONNINFO" -c SQL` does the same with psql 17 or later).

Try it from this directory (each command below has just run; its output follows it):
"""


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
