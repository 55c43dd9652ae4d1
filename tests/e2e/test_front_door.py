"""The edge's public ports end to end: real edge and agent processes, real curl and openssl.

https:// endpoints are terminated at the edge with a certificate from the development CA;
tls:// endpoints reach the agent untouched (the agent may terminate them, with mutual TLS);
http:// endpoints are served on the plain-HTTP port; internal endpoints are reachable from no
public port; names nobody serves get a TLS `unrecognized_name` alert.

Most tests share the module's edge (`shared_edge`, each binding names no other test binds); the
memory test and those that need their own edge config start their own edge.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest
import trustme

from tests.e2e.harness import (
    CURL_TIMEOUT,
    Agent,
    EchoServer,
    Edge,
    curl_endpoint,
    make_agent,
    roundtrip,
    rss_kib,
)
from tests.e2e.upstreams import HttpUpstream, ProxyHeaderRecorder, pattern_sha256


def curl(edge: Edge, agent: Agent, path: str, *args: str) -> subprocess.CompletedProcess[str]:
    """curl an agent's endpoint (its own scheme and name) at `path`."""
    return curl_endpoint(edge, agent.host, [path], *args, scheme=agent.url.split("://", 1)[0])


def start_http_agent(edge: Edge, upstream_port: int, tmp_path: Path, *extra: str) -> Agent:
    return make_agent(
        edge, edge.credential(), f"127.0.0.1:{upstream_port}", tmp_path, *extra, command="http"
    ).start()


def s_client(edge: Edge, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{edge.agents_port}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# ------------------------------------------------------------------------------- https


def test_https_endpoint_serves_curl_with_keep_alive(
    shared_edge: Edge, upstream: HttpUpstream, tmp_path: Path
) -> None:
    edge = shared_edge
    agent = start_http_agent(edge, upstream.port, tmp_path)
    try:
        assert agent.url.startswith("https://") and agent.host.endswith(".burrow.localhost")
        assert agent.port == edge.agents_port
        # Two requests on one curl command line reuse one connection.
        out = subprocess.run(
            [
                "curl",
                "--silent",
                "--cacert",
                str(edge.ca_path),
                "--resolve",
                f"{agent.host}:{edge.agents_port}:127.0.0.1",
                "--write-out",
                "|%{num_connects}\\n",
                f"https://{agent.host}:{edge.agents_port}/one",
                f"https://{agent.host}:{edge.agents_port}/two",
            ],
            capture_output=True,
            text=True,
            timeout=CURL_TIMEOUT,
            check=True,
        ).stdout
        assert out == "hello from /one\n|1\nhello from /two\n|0\n"
    finally:
        agent.kill()


def test_https_sets_forwarded_headers_and_keeps_host(
    shared_edge: Edge, upstream: HttpUpstream, tmp_path: Path
) -> None:
    edge = shared_edge
    agent = start_http_agent(edge, upstream.port, tmp_path)
    try:
        out = curl(
            edge, agent, "/headers", "-H", "Connection: keep-alive, X-Drop", "-H", "X-Drop: 1"
        )
        headers = {k.lower(): v for k, v in json.loads(out.stdout)["headers"]}
        assert headers["host"] == f"{agent.host}:{edge.agents_port}"
        assert headers["x-forwarded-for"] == "127.0.0.1"
        assert headers["x-forwarded-proto"] == "https"
        assert headers["x-forwarded-host"] == f"{agent.host}:{edge.agents_port}"
        assert "x-drop" not in headers  # named in Connection: hop-by-hop
    finally:
        agent.kill()


def test_chunked_upload_and_large_download(
    shared_edge: Edge, upstream: HttpUpstream, tmp_path: Path
) -> None:
    edge = shared_edge
    agent = start_http_agent(edge, upstream.port, tmp_path)
    try:
        body = os.urandom(5 * 1024 * 1024 + 3)
        (tmp_path / "body.bin").write_bytes(body)
        out = curl(
            edge,
            agent,
            "/upload",
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            f"@{tmp_path / 'body.bin'}",
        )
        result = json.loads(out.stdout)
        assert result == {
            "sha256": hashlib.sha256(body).hexdigest(),
            "size": len(body),
            "transfer_encoding": "chunked",
        }
        size = 64 * 1024 * 1024 + 11
        out = curl(edge, agent, f"/big?size={size}", "--output", str(tmp_path / "big.bin"))
        assert out.returncode == 0, out.stderr
        digest = hashlib.sha256((tmp_path / "big.bin").read_bytes()).hexdigest()
        assert digest == pattern_sha256(size)
    finally:
        agent.kill()


@pytest.mark.slow
def test_one_gib_download_keeps_the_edge_small(
    edge: Edge, upstream: HttpUpstream, tmp_path: Path
) -> None:
    """1 GiB through an https:// endpoint, hashed as it arrives: the edge's memory stays flat."""
    agent = start_http_agent(edge, upstream.port, tmp_path)
    assert edge.proc is not None
    try:
        size = 1024 * 1024 * 1024
        before = rss_kib(edge.proc.pid)
        peak = before
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, rss_kib(edge.proc.pid))  # type: ignore[union-attr]
                time.sleep(0.05)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            proc = subprocess.Popen(
                [
                    "curl",
                    "--silent",
                    "--show-error",
                    "--cacert",
                    str(edge.ca_path),
                    "--resolve",
                    f"{agent.host}:{edge.agents_port}:127.0.0.1",
                    f"https://{agent.host}:{edge.agents_port}/big?size={size}",
                ],
                stdout=subprocess.PIPE,
            )
            assert proc.stdout is not None
            digest = hashlib.sha256()
            received = 0
            while data := proc.stdout.read(1024 * 1024):
                digest.update(data)
                received += len(data)
            assert proc.wait(timeout=300) == 0
        finally:
            stop.set()
            sampler.join()
        assert received == size
        assert digest.hexdigest() == pattern_sha256(size)
        assert peak - before < 64 * 1024, f"edge RSS grew {peak - before} KiB for a 1 GiB body"
    finally:
        agent.kill()


def test_upstream_cannot_fake_an_edge_error_code(
    shared_edge: Edge, upstream: HttpUpstream, tmp_path: Path
) -> None:
    edge = shared_edge
    agent = start_http_agent(edge, upstream.port, tmp_path)
    try:
        out = curl(edge, agent, "/error-header", "--include")
        assert "upstream says hi" in out.stdout
        assert "error-code" not in out.stdout.lower()
    finally:
        agent.kill()


def test_dead_upstream_gives_err_ngrok_8012(shared_edge: Edge, tmp_path: Path) -> None:
    edge = shared_edge
    with socket.socket() as probe:  # a port with nothing listening
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    agent = start_http_agent(edge, dead_port, tmp_path)
    try:
        out = curl(edge, agent, "/", "--include", "-H", "Accept: application/json")
        head, _, body = out.stdout.partition("\n\n")  # text mode turned CRLF into LF
        assert head.startswith("HTTP/1.1 502")
        assert "ngrok-error-code: ERR_NGROK_8012" in head
        assert "ERR_NGROK_8012" in body
    finally:
        agent.kill()


# --------------------------------------------------------------------------------- http


def test_http_endpoint_on_the_plain_port(
    shared_edge: Edge, upstream: HttpUpstream, tmp_path: Path
) -> None:
    edge = shared_edge
    agent = start_http_agent(
        edge, upstream.port, tmp_path, "--url", "http://plain.burrow.localhost"
    )
    try:
        assert agent.url == f"http://plain.burrow.localhost:{edge.http_port}"
        out = curl(edge, agent, "/hi")
        assert out.stdout == "hello from /hi\n", out.stderr
        headers = json.loads(curl(edge, agent, "/headers").stdout)["headers"]
        assert ["X-Forwarded-Proto", "http"] in headers
        # Nothing is served for this host on the TLS port: http and https are two endpoints.
        refused = s_client(edge, "-servername", "plain.burrow.localhost")
        assert "unrecognized name" in refused.stdout + refused.stderr
    finally:
        agent.kill()


def test_unknown_host_on_the_http_port_is_err_ngrok_3200(shared_edge: Edge) -> None:
    edge = shared_edge
    out = subprocess.run(
        [
            "curl",
            "--silent",
            "--include",
            f"http://127.0.0.1:{edge.http_port}/",
            "-H",
            "Host: nobody.burrow.localhost",
        ],
        capture_output=True,
        text=True,
        timeout=CURL_TIMEOUT,
        check=False,
    ).stdout
    assert out.startswith("HTTP/1.1 404")
    assert "ngrok-error-code: ERR_NGROK_3200" in out


# ---------------------------------------------------------------------------------- tls


@pytest.fixture
def upstream_ca() -> trustme.CA:
    return trustme.CA()


def test_tls_endpoint_passes_the_bytes_through(
    shared_edge: Edge, upstream_ca: trustme.CA, tmp_path: Path
) -> None:
    """The upstream's own certificate reaches the client: the edge never terminated TLS."""
    edge = shared_edge
    host = "db.burrow.localhost"
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    upstream_ca.issue_cert(host).configure_cert(context)
    server = HttpUpstream(context)
    ca_file = tmp_path / "upstream-ca.pem"
    upstream_ca.cert_pem.write_to_path(str(ca_file))
    agent = make_agent(
        edge,
        edge.credential(),
        f"127.0.0.1:{server.port}",
        tmp_path,
        "--url",
        f"tls://{host}",
        command="tls",
    ).start()
    try:
        assert agent.url == f"tls://{host}:{edge.agents_port}"
        out = subprocess.run(
            [
                "curl",
                "--silent",
                "--show-error",
                "--cacert",
                str(ca_file),  # the upstream's CA, not the edge's
                "--resolve",
                f"{host}:{edge.agents_port}:127.0.0.1",
                f"https://{host}:{edge.agents_port}/passthrough",
            ],
            capture_output=True,
            text=True,
            timeout=CURL_TIMEOUT,
            check=False,
        )
        assert out.stdout == "hello from /passthrough\n", out.stderr
    finally:
        agent.kill()
        server.close()


def _mtls_agent(edge: Edge, tmp_path: Path, upstream_port: int) -> tuple[Agent, trustme.CA, Path]:
    server_ca, client_ca = trustme.CA(), trustme.CA()
    host = "clinic.burrow.localhost"
    cert = server_ca.issue_cert(host)
    (tmp_path / "server.pem").write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    client_ca.cert_pem.write_to_path(str(tmp_path / "clients-ca.pem"))
    server_ca.cert_pem.write_to_path(str(tmp_path / "server-ca.pem"))
    agent = make_agent(
        edge,
        edge.credential(),
        f"127.0.0.1:{upstream_port}",
        tmp_path,
        "--url",
        f"tls://{host}",
        "--crt",
        str(tmp_path / "server.pem"),
        "--key",
        str(tmp_path / "server.key"),
        "--mutual-tls-cas",
        str(tmp_path / "clients-ca.pem"),
        command="tls",
    ).start()
    return agent, client_ca, tmp_path / "server-ca.pem"


def _client_cert(ca: trustme.CA, tmp_path: Path, name: str) -> tuple[Path, Path]:
    leaf = ca.issue_cert(f"{name}@clinic.example")
    cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    return cert, key


def test_agent_mutual_tls_accepts_only_good_client_certificates(
    shared_edge: Edge, upstream: HttpUpstream, tmp_path: Path
) -> None:
    edge = shared_edge
    agent, client_ca, server_ca = _mtls_agent(edge, tmp_path, upstream.port)
    good = _client_cert(client_ca, tmp_path, "vendor")
    stranger = _client_cert(trustme.CA(), tmp_path, "stranger")
    base = [
        "curl",
        "--silent",
        "--show-error",
        "--cacert",
        str(server_ca),
        "--resolve",
        f"{agent.host}:{edge.agents_port}:127.0.0.1",
        f"https://{agent.host}:{edge.agents_port}/records",
    ]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*base, *args], capture_output=True, text=True, timeout=CURL_TIMEOUT, check=False
        )

    try:
        ok = run("--cert", str(good[0]), "--key", str(good[1]))
        assert ok.stdout == "hello from /records\n", ok.stderr
        no_cert = run()
        assert no_cert.returncode != 0 and no_cert.stdout == ""
        wrong_ca = run("--cert", str(stranger[0]), "--key", str(stranger[1]))
        assert wrong_ca.returncode != 0 and wrong_ca.stdout == ""
        # openssl s_client sees the refusal as an alert at the handshake (with TLS 1.3 it
        # arrives after the client's Finished: -ign_eof waits for it).
        refused = s_client(
            edge,
            "-servername",
            agent.host,
            "-CAfile",
            str(server_ca),
            "-ign_eof",
            stdin="GET / HTTP/1.0\r\n\r\n",
        )
        assert "alert" in (refused.stdout + refused.stderr).lower()
        accepted = s_client(
            edge,
            "-servername",
            agent.host,
            "-CAfile",
            str(server_ca),
            "-cert",
            str(good[0]),
            "-key",
            str(good[1]),
            "-quiet",
            stdin=f"GET /s HTTP/1.1\r\nHost: {agent.host}\r\nConnection: close\r\n\r\n",
        )
        assert "hello from /s" in accepted.stdout, accepted.stderr
    finally:
        agent.kill()


# ------------------------------------------------------------------------ PROXY protocol


@pytest.mark.parametrize("version", ["1", "2"])
def test_proxy_protocol_header_reaches_the_upstream(
    shared_edge: Edge, tmp_path: Path, version: str
) -> None:
    edge = shared_edge
    recorder = ProxyHeaderRecorder()
    agent = make_agent(
        edge,
        edge.credential(),
        f"127.0.0.1:{recorder.port}",
        tmp_path,
        "--upstream-proxy-protocol",
        version,
    ).start()
    try:
        with socket.create_connection(("127.0.0.1", agent.port), timeout=30) as conn:
            client_port = conn.getsockname()[1]
            conn.sendall(b"ping")
            conn.shutdown(socket.SHUT_WR)
            assert conn.recv(100) == b"ping"
        (header,) = recorder.headers
        assert header.version == int(version)
        assert (str(header.source[0]), header.source[1]) == ("127.0.0.1", client_port)
    finally:
        agent.kill()
        recorder.close()


# ---------------------------------------------------------------------- internal, refusals


def test_internal_endpoints_are_reachable_from_no_public_port(
    shared_edge: Edge, upstream: HttpUpstream, echo: EchoServer, tmp_path: Path
) -> None:
    edge = shared_edge
    token = edge.credential()
    https_agent = make_agent(
        edge,
        token,
        f"127.0.0.1:{upstream.port}",
        tmp_path,
        "--url",
        "https://api.clinic.internal",
        command="http",
        name="a1",
    ).start()
    tls_agent = make_agent(
        edge,
        token,
        f"127.0.0.1:{echo.port}",
        tmp_path,
        "--url",
        "tls://db.clinic.internal:5432",
        command="tls",
        name="a2",
    ).start()
    try:
        assert https_agent.url == "https://api.clinic.internal"
        for host in ("api.clinic.internal", "db.clinic.internal"):
            refused = s_client(edge, "-servername", host)
            assert "unrecognized name" in refused.stdout + refused.stderr, host
        out = subprocess.run(
            [
                "curl",
                "--silent",
                "--include",
                f"http://127.0.0.1:{edge.http_port}/",
                "-H",
                "Host: api.clinic.internal",
            ],
            capture_output=True,
            text=True,
            timeout=CURL_TIMEOUT,
            check=False,
        ).stdout
        assert "ERR_NGROK_3200" in out
        assert echo.connections == 0
    finally:
        https_agent.kill()
        tls_agent.kill()


def test_unknown_or_missing_sni_gets_unrecognized_name(shared_edge: Edge) -> None:
    edge = shared_edge
    unknown = s_client(edge, "-servername", "nobody.burrow.localhost")
    assert "unrecognized name" in unknown.stdout + unknown.stderr
    missing = s_client(edge, "-noservername")
    assert "unrecognized name" in missing.stdout + missing.stderr


def _raw_tls_port(edge: Edge, payload: bytes, *, shut: bool = True) -> bytes:
    with socket.create_connection(("127.0.0.1", edge.agents_port), timeout=30) as conn:
        conn.sendall(payload)
        if shut:
            conn.shutdown(socket.SHUT_WR)
        out = b""
        while data := conn.recv(4096):
            out += data
        return out


def test_garbage_truncated_and_oversized_hellos_cost_little(
    shared_edge: Edge, echo: EchoServer, tmp_path: Path
) -> None:
    """Hostile hellos get an alert or a close; a tcp tunnel keeps working throughout."""
    edge = shared_edge
    agent = make_agent(edge, edge.credential(), f"127.0.0.1:{echo.port}", tmp_path).start()
    try:
        # Not TLS at all: a fatal alert (21 = alert record), then close.
        assert _raw_tls_port(edge, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")[:1] == b"\x15"
        # A record header promising more than a ClientHello may hold.
        assert _raw_tls_port(edge, b"\x16\x03\x01\xff\xff" + b"\x01" * 1000)[:1] == b"\x15"
        # Truncated: the client gives up half way; the edge just closes.
        assert _raw_tls_port(edge, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03") == b""
        assert roundtrip(agent.port, b"still here") == b"still here"
    finally:
        agent.kill()


def test_slow_hello_is_cut_off(tmp_path: Path) -> None:
    from tests.e2e.harness import make_edge

    # A short limit, so that waiting it out is quick; the cut must still wait for it (> 0.5 s).
    edge = make_edge(tmp_path, extra_config="limits: {hello_timeout: 600ms}\n").start()
    try:
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", edge.agents_port), timeout=30) as conn:
            conn.sendall(b"\x16\x03\x01")
            assert conn.recv(100) == b""
        assert 0.5 < time.monotonic() - started < 10
    finally:
        edge.stop()


def _write_leaf(ca: trustme.CA, host: str, cert: Path, key: Path) -> None:
    leaf = ca.issue_cert(host)
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())


def test_static_certificate_files_reload_on_sighup(tmp_path: Path, upstream: HttpUpstream) -> None:
    """A host covered by certificates.files gets that certificate, not the dev CA's; replacing
    the files and sending SIGHUP serves the new one without a restart."""
    from tests.e2e.harness import make_edge

    host = "api.example.test"
    cert, key = tmp_path / "api.pem", tmp_path / "api.key"
    first, second = trustme.CA(), trustme.CA()
    _write_leaf(first, host, cert, key)
    edge = make_edge(
        tmp_path,
        extra_config=(
            f"certificates: {{files: [{{cert: {cert}, key: {key}}}], reload_interval: 1h}}\n"
        ),
    ).start()
    agent = make_agent(
        edge,
        edge.credential(),
        f"127.0.0.1:{upstream.port}",
        tmp_path,
        "--url",
        f"https://{host}",
        command="http",
    ).start()

    def fetch(ca: trustme.CA) -> subprocess.CompletedProcess[str]:
        ca_file = tmp_path / "client-ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        return subprocess.run(
            [
                "curl",
                "--silent",
                "--show-error",
                "--cacert",
                str(ca_file),
                "--resolve",
                f"{host}:{edge.agents_port}:127.0.0.1",
                f"https://{host}:{edge.agents_port}/cert",
            ],
            capture_output=True,
            text=True,
            timeout=CURL_TIMEOUT,
            check=False,
        )

    try:
        assert fetch(first).stdout == "hello from /cert\n"
        assert fetch(second).returncode != 0  # not yet trusted: the old certificate is served
        _write_leaf(second, host, cert, key)
        assert edge.proc is not None
        edge.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while fetch(second).stdout != "hello from /cert\n":
            assert time.monotonic() < deadline, edge.log()[-3000:]
            time.sleep(0.2)
        assert fetch(first).returncode != 0
        assert edge.proc.poll() is None  # SIGHUP reloads; it does not stop the edge
    finally:
        agent.kill()
        edge.stop()
