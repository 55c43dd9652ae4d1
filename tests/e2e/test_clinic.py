"""The clinic scenario end to end (issue 11; README "The clinic scenario"), with real processes
and real clients: the example command (`./dev clinic`, deploy/examples/clinic/run.py) brings up
Acme's edge, PostgreSQL, two clinics' APIs and agents, and Acme's cloud endpoints; curl,
psycopg (its bundled libpq 17+, `sslnegotiation=direct`) and `openssl s_client` use them.

Most tests share one run of the example (`clinic`); the ones that end it (the clean stop, the
revocation) start their own. The cloud endpoint's life across an edge restart runs on a harness
edge, since the example's edge is the example's child.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import trustme
import yaml

from agent.config_load import load_config
from edge.config_file import load_edge_config
from tests.e2e.harness import (
    BIN,
    CURL_TIMEOUT,
    curl_endpoint,
    make_agent,
    make_edge,
)
from tests.e2e.test_cloud_endpoints import cloud_api
from tests.e2e.test_forward_internal import response_headers
from tests.e2e.upstreams import HttpUpstream

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "examples" / "clinic"
RUN = EXAMPLE / "run.py"
#: The example starts PostgreSQL, an edge and two agents: seconds; this only catches a hang.
READY_TIMEOUT = 180.0
#: The issue's bound for a revocation to stop a clinic's traffic.
REVOKED_WITHIN = 1.0
ALLOWED, DENIED = "127.0.0.2", "127.0.0.3"
SQL = "SELECT id, name, ward FROM patients ORDER BY id"
ROWS = [(1, "Ada Lovelace", "cardiology"), (2, "Alan Turing", "oncology"),
        (3, "Grace Hopper", "neurology")]  # fmt: skip


@dataclass
class Clinic:
    """One running example: its process, what it printed up to `clinic: ready`, and its
    clinic.json (ports, ids, paths)."""

    proc: subprocess.Popen[str]
    transcript: str
    info: dict[str, Any]
    state: Path

    @property
    def port(self) -> int:
        return int(self.info["edge"]["tls_port"])

    @property
    def api_key(self) -> str:
        return (self.state / "api-key").read_text().strip()

    def api_hits(self, clinic: str = "clinic-a") -> list[str]:
        log = Path(self.info["apis"][clinic]["log"]).read_text()
        return [line for line in log.splitlines() if " API: GET " in line]

    def pg_connections(self) -> int:
        return Path(self.info["postgres"]["log"]).read_text().count("connection received:")

    def curl(self, host: str, path: str, *args: str, source: str = ALLOWED) -> tuple[str, str]:
        """(status code, body) of GET https://HOST/PATH from `source`."""
        done = subprocess.run(
            ["curl", "-sS", "--interface", source, "--cacert", self.info["edge"]["ca"],
             "--resolve", f"{host}:{self.port}:127.0.0.1", "-w", "\n%{http_code}", *args,
             f"https://{host}:{self.port}{path}"],
            capture_output=True, text=True, timeout=CURL_TIMEOUT, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        body, _, status = done.stdout.rpartition("\n")
        return status, body

    def conninfo(self, *, cert: tuple[str, str] | None, rootcert: str | None = None) -> str:
        certs = self.info["certs"]
        words = [
            "host=db.acme.example", "hostaddr=127.0.0.1", f"port={self.port}",
            "sslmode=verify-full", "sslnegotiation=direct",
            f"sslrootcert={rootcert or certs['clinic_ca']}", "user=acme", "password=acme-demo",
            "dbname=clinic", "connect_timeout=30",
        ]  # fmt: skip
        if cert is not None:
            words += [f"sslcert={cert[0]}", f"sslkey={cert[1]}"]
        return " ".join(words)

    @property
    def acme_cert(self) -> tuple[str, str]:
        return self.info["certs"]["client_cert"], self.info["certs"]["client_key"]

    def admin(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        request = urllib.request.Request(
            f"{self.info['edge']['admin_url']}{path}", method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.api_key}", "Ngrok-Version": "2"},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def interrupt(self) -> int:
        """Ctrl-C, as a terminal sends it: SIGINT to the example's whole process group."""
        os.killpg(self.proc.pid, signal.SIGINT)
        return self.proc.wait(timeout=60)


def start_clinic(state: Path, *options: str) -> Clinic:
    """Run the example as `./dev clinic` does (after its setup) and wait for `clinic: ready`.

    A thread reads its output for as long as it runs (so a full pipe never blocks it)."""
    proc = subprocess.Popen(
        [sys.executable, str(RUN), "--state-dir", str(state), *options],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("clinic: ready"):
                ready.set()
        ready.set()  # EOF: the example ended

    threading.Thread(target=read, daemon=True).start()
    if ready.wait(READY_TIMEOUT) and any(line.startswith("clinic: ready") for line in lines):
        info = json.loads((state / "clinic.json").read_text())
        return Clinic(proc, "".join(lines), info, state)
    os.killpg(proc.pid, signal.SIGINT)
    code = proc.wait(timeout=60)
    raise AssertionError(f"the example did not get ready (exit {code}):\n{''.join(lines)}")


@pytest.fixture(scope="module")
def clinic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clinic]:
    running = start_clinic(tmp_path_factory.mktemp("clinic") / "state")
    try:
        yield running
    finally:
        if running.proc.poll() is None:
            running.interrupt()


def printed_commands(transcript: str) -> list[tuple[str, str]]:
    """(command, output) for each `$ ` line of the transcript, in order."""
    blocks: list[tuple[str, list[str]]] = []
    for line in transcript.splitlines():
        if line.startswith("$ "):
            blocks.append((line[2:], []))
        elif line.startswith("clinic: ready"):
            break
        elif blocks:
            blocks[-1][1].append(line)
    return [(command, "\n".join(output).strip("\n")) for command, output in blocks]


def live_processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmdline:
                found.append(cmdline)
    return found


def test_the_documented_command_prints_commands_that_work_and_stops_cleanly(
    tmp_path: Path,
) -> None:
    dev = (ROOT / "dev").read_text()
    assert 'exec "$VENV/bin/python" deploy/examples/clinic/run.py "$@"' in dev  # ./dev clinic
    running = start_clinic(tmp_path / "state")
    try:
        commands = printed_commands(running.transcript)
        assert [c.split()[0] for c, _ in commands] == ["curl"] * 3 + [
            os.path.relpath(sys.executable, ROOT)
        ] * 2
        expected = [
            '{"clinic": "Clinic A", "patients": [{"id": 1, "name": "Ada Lovelace"',
            "403",
            '{"clinic": "Clinic B", "hello": "from inside the clinic"}',
            "1 | Ada Lovelace | cardiology\n2 | Alan Turing | oncology\n"
            "3 | Grace Hopper | neurology",
            'error: connection failed: connection to server at "127.0.0.1", port '
            f"{running.port} failed: SSL error: tlsv13 alert certificate required",
        ]
        for (command, printed), wanted in zip(commands, expected, strict=True):
            assert printed.startswith(wanted), (command, printed)
            again = subprocess.run(
                command, shell=True, cwd=ROOT, capture_output=True, text=True, timeout=120,
                check=False,
            )  # fmt: skip
            assert (again.stdout + again.stderr).strip("\n") == printed, command
        pg_dir = Path(running.info["postgres"]["directory"])
        assert pg_dir.is_dir()
    finally:
        code = running.interrupt()
    assert code == 0
    assert not live_processes_mentioning(str(running.state))
    assert not live_processes_mentioning(str(pg_dir))
    assert not pg_dir.exists()  # the database's temporary directory is gone


def test_acme_reaches_clinic_a_api_and_a_stranger_gets_403_unseen(clinic: Clinic) -> None:
    before = len(clinic.api_hits())
    status, body = clinic.curl("api.acme.example", "/patients")
    assert status == "200", body
    assert json.loads(body)["clinic"] == "Clinic A"
    hits = clinic.api_hits()
    assert hits[before:] == [f"Clinic A API: GET /patients from {ALLOWED}"]
    status, body = clinic.curl("api.acme.example", "/patients", source=DENIED)
    assert (status, body) == ("403", "")
    assert clinic.api_hits() == hits  # the clinic never saw the stranger's request


def test_psycopg_with_acmes_client_certificate_queries_the_clinic_database(
    clinic: Clinic,
) -> None:
    assert psycopg.pq.version() >= 170000, "sslnegotiation=direct needs libpq 17+"
    with psycopg.connect(clinic.conninfo(cert=clinic.acme_cert)) as connection:
        assert connection.execute(SQL).fetchall() == ROWS
        connection.execute("INSERT INTO patients VALUES (4, 'Edsger Dijkstra', 'surgery')")
        connection.commit()
        (count,) = connection.execute("SELECT count(*) FROM patients").fetchone() or (0,)
        assert count == 4
        # TLS from the first byte: libpq with sslnegotiation=direct also closes the connection
        # unless the server selects ALPN "postgresql" (the s_client test shows it selected).
        assert connection.pgconn.ssl_in_use
        connection.execute("DELETE FROM patients WHERE id = 4")
        connection.commit()
    # TLS ends at the agent, with Clinic A's certificate: the edge's own CA does not vouch for
    # what the client saw, so the edge did not terminate it.
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        psycopg.connect(clinic.conninfo(cert=clinic.acme_cert, rootcert=clinic.info["edge"]["ca"]))


def test_the_agent_refuses_clients_without_acmes_certificate_and_the_database_sees_nothing(
    clinic: Clinic, tmp_path: Path
) -> None:
    stranger = trustme.CA(organization_name="Not Acme")
    leaf = stranger.issue_cert("acme-backend")
    leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "stranger.pem"))
    leaf.private_key_pem.write_to_path(str(tmp_path / "stranger.key"))
    (tmp_path / "stranger.key").chmod(0o600)  # libpq refuses a key others may read
    before = clinic.pg_connections()
    with pytest.raises(psycopg.OperationalError, match="certificate required"):
        psycopg.connect(clinic.conninfo(cert=None))
    foreign = (str(tmp_path / "stranger.pem"), str(tmp_path / "stranger.key"))
    with pytest.raises(psycopg.OperationalError, match="unknown ca"):
        psycopg.connect(clinic.conninfo(cert=foreign))
    assert clinic.pg_connections() == before
    # And a client that does have Acme's certificate does reach the database.
    with psycopg.connect(clinic.conninfo(cert=clinic.acme_cert)) as connection:
        assert connection.execute("SELECT 1").fetchone() == (1,)
    assert clinic.pg_connections() == before + 1


def s_client(clinic: Clinic, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{clinic.port}", "-servername",
         "db.acme.example", "-CAfile", clinic.info["certs"]["clinic_ca"], "-verify_return_error",
         "-alpn", "postgresql", *extra],
        input="", capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_openssl_s_client_completes_the_handshake_only_with_acmes_certificate(
    clinic: Clinic,
) -> None:
    before = clinic.pg_connections()
    # TLS 1.3: the client's side of the handshake ends before the server has checked its
    # certificate, so s_client must keep reading (-ign_eof) to hear the agent's alert.
    refused = s_client(clinic, "-ign_eof")
    assert refused.returncode != 0
    assert "alert certificate required" in refused.stderr, refused.stdout + refused.stderr
    assert clinic.pg_connections() == before
    cert, key = clinic.acme_cert
    accepted = s_client(clinic, "-cert", cert, "-key", key)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert "ALPN protocol: postgresql" in accepted.stdout
    assert "Verify return code: 0 (ok)" in accepted.stdout
    assert "i:CN = Clinic A CA" in accepted.stdout  # the agent's certificate, not the edge's
    assert "alert" not in accepted.stderr


def test_clinic_b_cannot_bind_clinic_a_names(clinic: Clinic, tmp_path: Path) -> None:
    config = tmp_path / "hijack.yml"
    config.write_text(
        "version: 3\n"
        f"agent: {{connect_url: 'connect.acme.localhost:{clinic.port}', "
        f"connect_cas: {clinic.info['certs']['connect_ca']}}}\n"
        "endpoints:\n"
        "  - {name: api, url: https://api.clinic-a.internal, upstream: {url: 9}}\n"
    )
    env = dict(
        os.environ,
        BURROW_AUTHTOKEN=(clinic.state / "clinic-b.token").read_text().strip(),
        HOME=str(tmp_path),
        XDG_CONFIG_HOME=str(tmp_path / "xdg"),
    )
    env.pop("BURROW_CONNECT_URL", None)
    env.pop("BURROW_CONNECT_CAS", None)
    done = subprocess.run(
        [str(BIN / "burrow"), "start", "--all", "--config", str(config), "--log", "stderr"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode != 0 and "ERR_NGROK_308" in out, out
    assert "api.clinic-a.internal" in out
    # Clinic A's endpoint is still clinic A's.
    status, body = clinic.curl("api.acme.example", "/patients")
    assert status == "200" and json.loads(body)["clinic"] == "Clinic A"


def test_revoking_clinic_a_stops_its_traffic_within_a_second_while_clinic_b_flows(
    tmp_path: Path,
) -> None:
    running = start_clinic(tmp_path / "state")
    try:
        credential = running.info["credentials"]["clinic-a"]["credential"]
        assert running.curl("api.acme.example", "/patients")[0] == "200"
        assert running.curl("api-b.acme.example", "/")[0] == "200"
        code, changed = running.admin("PATCH", f"/credentials/{credential}", {"active": False})
        assert code == 200 and changed["active"] is False, changed
        revoked_at = time.monotonic()
        # Each request is a fresh curl; stop at the first one that is no longer served.
        while (answer := running.curl("api.acme.example", "/patients"))[0] == "200":
            assert time.monotonic() - revoked_at < 10, "clinic A is still served"
        took = time.monotonic() - revoked_at
        assert took < REVOKED_WITHIN, f"clinic A was served {took:.2f}s after its revocation"
        assert answer[0] == "404" and "ERR_NGROK_3200" in answer[1]
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(running.conninfo(cert=running.acme_cert))
        for _ in range(3):
            status, body = running.curl("api-b.acme.example", "/")
            assert status == "200" and json.loads(body)["clinic"] == "Clinic B"
        agent_log = (running.state / "clinic-a-agent.log").read_text()
        deadline = time.monotonic() + 30
        while "ERR_NGROK_300" not in agent_log and time.monotonic() < deadline:
            time.sleep(0.1)
            agent_log = (running.state / "clinic-a-agent.log").read_text()
        assert "ERR_NGROK_300" in agent_log  # told it is revoked, it stops retrying
    finally:
        running.interrupt()


def admin_create(clinic: Clinic, url: str, policy: str) -> str:
    status, made = clinic.admin(
        "POST", "/endpoints", {"type": "cloud", "url": url, "traffic_policy": policy}
    )
    assert status == 201, made
    return str(made["id"])


def forward(url: str, extra: str = "") -> str:
    return (
        "on_http_request:\n  - actions:\n      - type: forward-internal\n"
        f"        config: {{url: '{url}'{extra}}}\n"
    )


def test_failed_forwards_from_cloud_endpoints_answer_with_ngroks_codes(clinic: Clinic) -> None:
    """Offline target, a loop, a chain one hop past the edge's limit (5) and one at it, and
    `on_error: continue` falling through to a custom-response: all on cloud endpoints, the
    internal hops being internal cloud endpoints."""
    answer = (
        "on_http_request:\n  - actions:\n      - type: custom-response\n"
        "        config: {status_code: 200, body: end of the chain}\n"
    )
    made = [
        admin_create(
            clinic, "https://gone.acme.example", forward("https://gone.clinic-a.internal")
        ),
        admin_create(clinic, "https://loop.acme.internal", forward("https://loop.acme.internal")),
        admin_create(clinic, "https://loop.acme.example", forward("https://loop.acme.internal")),
        admin_create(clinic, "https://hop6.acme.internal", answer),
    ]
    for hop in range(5, 0, -1):
        made.append(
            admin_create(
                clinic,
                f"https://hop{hop}.acme.internal",
                forward(f"https://hop{hop + 1}.acme.internal"),
            )
        )
    made += [
        admin_create(clinic, "https://long.acme.example", forward("https://hop1.acme.internal")),
        admin_create(clinic, "https://chain.acme.example", forward("https://hop2.acme.internal")),
        admin_create(
            clinic,
            "https://fallback.acme.example",
            forward("https://gone.clinic-a.internal", ", on_error: continue")
            + "      - type: custom-response\n        config: {status_code: 503, body: "
            "'clinic offline: ${actions.ngrok.forward_internal.error.code}'}\n",
        ),
        admin_create(
            clinic,
            "tls://db-gone.acme.example",
            "on_tcp_connect:\n  - actions:\n      - type: forward-internal\n"
            "        config: {url: 'tls://gone.clinic-a.internal:5432'}\n",
        ),
    ]
    try:

        def get(name: str) -> tuple[str, dict[str, str], str]:
            return curl_head_and_body(clinic, f"{name}.acme.example")

        status, headers, body = get("gone")
        assert status == "404" and headers["ngrok-error-code"] == "ERR_NGROK_3200"
        assert "gone.clinic-a.internal" in body
        status, headers, body = get("loop")
        assert status == "502" and headers["ngrok-error-code"] == "ERR_NGROK_3501"
        status, headers, body = get("long")  # public -> hop1 ... hop6: 6 forwards
        assert status == "502" and headers["ngrok-error-code"] == "ERR_NGROK_3501"
        assert "may only forward through 5 endpoints" in body
        assert get("chain")[::2] == ("200", "end of the chain")  # hop2 ... hop6: 5 forwards
        status, headers, body = get("fallback")
        assert (status, body) == ("503", "clinic offline: ERR_NGROK_3200")
        assert "ngrok-error-code" not in headers  # the policy's answer, not an edge error page
        before = clinic.pg_connections()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(
                clinic.conninfo(cert=clinic.acme_cert).replace(
                    "host=db.acme.example", "host=db-gone.acme.example"
                )
            )
        assert clinic.pg_connections() == before
    finally:
        for endpoint in made:
            assert clinic.admin("DELETE", f"/endpoints/{endpoint}")[0] == 204


def curl_head_and_body(clinic: Clinic, host: str) -> tuple[str, dict[str, str], str]:
    """(status code, lower-cased headers, body) of GET https://HOST/x from Acme's address."""
    done = subprocess.run(
        ["curl", "-sS", "--include", "--interface", ALLOWED, "--cacert", clinic.info["edge"]["ca"],
         "--resolve", f"{host}:{clinic.port}:127.0.0.1", f"https://{host}:{clinic.port}/x"],
        capture_output=True, text=True, timeout=CURL_TIMEOUT, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    status, headers, body = response_headers(done.stdout)
    return status.split()[1], headers, body


def test_ngrok_api_client_manages_a_cloud_endpoint_into_the_clinic_across_a_restart(
    tmp_path: Path, upstream: HttpUpstream
) -> None:
    """ngrok's `ngrok-api` client creates https://api.acme.example with the example's policy
    (restrict-ips, then forward-internal to clinic A's API), updates it (live at once), the edge
    restarts and serves it again once clinic A's agent is back, and deleting it takes it off."""
    port = free_port()
    edge = make_edge(tmp_path, agents_port=port).start()
    try:
        key = edge.api_key("--description", "acme")
        clinic_a = make_agent(
            edge, edge.credential("--acl", "bind:*.clinic-a.internal"),
            str(upstream.port), tmp_path, "--url", "https://api.clinic-a.internal",
            command="http", name="clinic-a",
        ).start()  # fmt: skip
        try:
            v1 = EXAMPLE / "api.acme.example.yml"
            created = cloud_api(
                edge, key, "create", "https://api.acme.example", str(v1), "clinic A's API"
            )
            assert created["type"] == "cloud" and created["traffic_policy"] == v1.read_text()
            via = ("--interface", ALLOWED, "--include")
            served = curl_endpoint(edge, "api.acme.example", ["/patients"], *via)
            assert served.stdout.startswith("HTTP/1.1 200"), served.stdout + served.stderr
            assert served.stdout.endswith("hello from /patients\n")
            stranger = curl_endpoint(
                edge, "api.acme.example", ["/"], "--interface", DENIED, "--include"
            )
            assert stranger.stdout.startswith("HTTP/1.1 403"), stranger.stdout

            v2 = tmp_path / "v2.yml"
            v2.write_text(
                v1.read_text() + "on_http_response:\n  - actions:\n      - type: add-headers\n"
                "        config: {headers: {x-acme-policy: v2}}\n"
            )
            updated = cloud_api(edge, key, "update", created["id"], str(v2))
            assert updated["traffic_policy"] == v2.read_text()
            live = curl_endpoint(edge, "api.acme.example", ["/patients"], *via)
            assert "x-acme-policy: v2" in live.stdout.lower(), live.stdout

            edge.stop()
            edge.start()
            assert edge.agents_port == port  # the agent reconnects to the same address
            deadline = time.monotonic() + 60
            while True:
                again = curl_endpoint(edge, "api.acme.example", ["/patients"], *via)
                if again.stdout.startswith("HTTP/1.1 200") or time.monotonic() > deadline:
                    break
                # Until the agent is back: the cloud endpoint answers, its target offline.
                assert "ERR_NGROK_3200" in again.stdout, again.stdout + again.stderr
                time.sleep(0.2)
            assert again.stdout.startswith("HTTP/1.1 200"), again.stdout
            assert "x-acme-policy: v2" in again.stdout.lower()
            assert cloud_api(edge, key, "get", created["id"])["traffic_policy"] == v2.read_text()

            deleted = cloud_api(edge, key, "delete", created["id"])
            assert deleted["deleted"] is True and deleted["get_after"]["status"] == 404
            assert curl_endpoint(edge, "api.acme.example", ["/"], *via).returncode != 0
        finally:
            clinic_a.kill()
    finally:
        edge.stop()


def free_port() -> int:
    """A free loopback TCP port (bound to port 0 and closed again): one edge's restarts keep
    it, so its agent can reconnect; the race with other processes is tiny."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_example_configs_load_as_the_agent_and_edge_load_them(clinic: Clinic) -> None:
    """The files in deploy/examples/clinic are real configs: the copies the example ran differ
    only in ports and load with the product's own loaders (STYLE.md 26)."""
    for name in ("clinic-a.yml", "clinic-b.yml"):
        shipped = load_config([clinic.state / name], {})
        assert shipped.agent.connect_url == f"connect.acme.localhost:{clinic.port}"
        original = yaml_endpoints(EXAMPLE / name)
        assert [e.url for e in shipped.endpoints] == [e["url"] for e in original]
    db = load_config([clinic.state / "clinic-a.yml"], {}).endpoints[1]
    assert db.url == "tls://db.clinic-a.internal:5432"
    assert db.agent_tls_termination is not None
    assert db.agent_tls_termination.alpn_protocols == ("postgresql",)
    assert (clinic.state / "edge.yml").read_text() == (EXAMPLE / "edge.yml").read_text()
    edge_config = load_edge_config(clinic.state / "edge.yml")  # its certificates are there
    assert edge_config.connect_host == "connect.acme.localhost"
    assert re.fullmatch(r"127\.0\.0\.1:0", ":".join(map(str, edge_config.listen.tls)))


def yaml_endpoints(path: Path) -> list[dict[str, Any]]:
    endpoints: list[dict[str, Any]] = yaml.safe_load(path.read_text())["endpoints"]
    return endpoints


def inspected_paths(agent: dict[str, Any]) -> list[str]:
    """The request paths one agent's inspector captured (its own API, ngrok's shape)."""
    url = f"{agent['inspector']}/api/requests/http?limit=200"
    with urllib.request.urlopen(url, timeout=30) as answer:
        return [r["request"]["uri"] for r in json.load(answer)["requests"]]


def pool_of(clinic: Clinic, host: str) -> list[dict[str, Any]]:
    """The members of the https://HOST agent endpoint's pool, as the admin API lists them
    ([] when the endpoint is alone)."""
    status, listing = clinic.admin("GET", "/endpoints")
    assert status == 200, listing
    for endpoint in listing["endpoints"]:
        if endpoint.get("host") == host and endpoint.get("proto") == "https":
            members: list[dict[str, Any]] = endpoint["pools"]
            return members
    raise AssertionError(f"no https://{host} in {listing}")


def test_pooled_clinic_a_agents_both_serve_the_api_and_killing_one_keeps_it_answering(
    tmp_path: Path,
) -> None:
    """`./dev clinic --pooled`: two clinic-A agents on clinic-a-pooled.yml share the internal
    endpoints; api.acme.example's requests reach both, and after `kill -9` of one the API (and
    the database) keep answering through the other, while the example runs on."""
    assert all(e["pooling_enabled"] for e in yaml_endpoints(EXAMPLE / "clinic-a-pooled.yml"))
    running = start_clinic(tmp_path / "state", "--pooled")
    try:
        assert "two pooled agents" in running.transcript
        agents = running.info["agents"]
        first, second = agents["clinic-a-1"], agents["clinic-a-2"]
        for agent in (first, second):
            assert load_config([Path(agent["config"])], {}).endpoints[0].pooling_enabled
        assert len(pool_of(running, "api.clinic-a.internal")) == 2
        before = {name: len(inspected_paths(agents[name])) for name in ("clinic-a-1", "clinic-a-2")}
        for _ in range(20):
            status, body = running.curl("api.acme.example", "/patients")
            assert status == "200" and json.loads(body)["clinic"] == "Clinic A", body
        after = {name: inspected_paths(agents[name]) for name in before}
        served = {name: len(after[name]) - before[name] for name in before}
        assert sum(served.values()) == 20, after
        assert all(count >= 3 for count in served.values()), served  # both serve
        assert {path for paths in after.values() for path in paths} == {"/patients"}

        os.kill(first["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while pool_of(running, "api.clinic-a.internal"):  # the edge saw its session end
            assert time.monotonic() < deadline, pool_of(running, "api.clinic-a.internal")
            time.sleep(0.05)
        already = len(inspected_paths(second))
        for _ in range(10):
            status, body = running.curl("api.acme.example", "/patients")
            assert status == "200" and json.loads(body)["clinic"] == "Clinic A", body
        assert len(inspected_paths(second)) == already + 10  # all through the survivor
        with psycopg.connect(running.conninfo(cert=running.acme_cert)) as connection:
            assert connection.execute(SQL).fetchall() == ROWS
        assert running.proc.poll() is None  # the example runs on with one clinic-A agent
    finally:
        code = running.interrupt()
    assert code == 0
