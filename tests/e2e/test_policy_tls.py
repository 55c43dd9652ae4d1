"""terminate-tls on tls:// endpoints, end to end: a real edge, Burrow's agent (`burrow tls
--traffic-policy-file`) or ngrok's Python SDK (`tls_endpoint().termination(cert, key)`), and a
plain-TCP upstream that records what it receives. Clients are `openssl s_client` and Python's
`ssl`; the certificates are made in the test (`tests/edge/policy/tls_helpers.py`).

What each test proves: the client's handshake is with the policy's certificate (verified against
it alone, with the host name checked), and the upstream receives the client's bytes in plaintext
(TLS ended at the edge, not passed through); with client CAs, a client without a certificate or
with one from another CA never reaches the upstream, and one with a good certificate does."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from tests.e2e.harness import Edge, _read_line_matching, make_agent
from tests.edge.policy.tls_helpers import Issued, make_ca, make_leaf, terminate_tls_policy

#: Bound on each client: loopback handshakes and replies take milliseconds.
CLIENT_TIMEOUT = 30
#: Bound on the SDK driver's bind and close.
SDK_DEADLINE = 60
SDK_DRIVER = Path(__file__).with_name("sdk_tls_client.py")
JSON_LINE = re.compile(r"^\{.*\}$")


class RecordingUpstream:
    """A plain-TCP upstream on 127.0.0.1: reads one line, records the bytes exactly as they
    arrived, and answers `got <line>`. TLS bytes would be recorded as they are (starting
    with 0x16) and get no line back."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(CLIENT_TIMEOUT)
            data = b""
            try:
                while not data.endswith(b"\n") and (chunk := conn.recv(65536)):
                    data += chunk
                self.received.append(data)
                if data.endswith(b"\n"):
                    conn.sendall(b"got " + data)
            except OSError:
                self.received.append(data)

    def close(self) -> None:
        # shutdown() first: close() alone leaves a socket blocked in accept() (or recv()) in
        # its thread, which can then take connections meant for a later test's server.
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def write_pem(path: Path, issued: Issued) -> tuple[Path, Path]:
    cert, key = path.with_suffix(".crt"), path.with_suffix(".key")
    cert.write_text(issued.cert_pem)
    key.write_text(issued.key_pem)
    return cert, key


def tls_exchange(
    edge: Edge,
    host: str,
    trusted: Path,
    line: bytes,
    client: tuple[Path, Path] | None = None,
) -> tuple[bytes, bytes | None]:
    """Connect to `host` on the edge's TLS port, verifying against `trusted` only (host name
    checked), send `line`, read the answer to EOF. (the server certificate, the answer) or
    (certificate, None) when the edge refused the connection."""
    context = ssl.create_default_context(cafile=str(trusted))
    if client is not None:
        context.load_cert_chain(str(client[0]), str(client[1]))
    address = ("127.0.0.1", edge.agents_port)
    with (
        socket.create_connection(address, timeout=CLIENT_TIMEOUT) as raw,
        context.wrap_socket(raw, server_hostname=host) as conn,
    ):
        certificate = conn.getpeercert(binary_form=True)
        assert certificate is not None
        answer = b""
        try:
            conn.sendall(line)
            while chunk := conn.recv(65536):
                answer += chunk
        except (ssl.SSLError, OSError):
            return certificate, None
        return certificate, answer or None


def der(issued: Issued) -> bytes:
    return issued.cert.public_bytes(Encoding.DER)


def test_openssl_sees_the_policys_certificate_and_the_upstream_gets_plaintext(
    shared_edge: Edge, tmp_path: Path
) -> None:
    edge = shared_edge
    host = "tt-plain.burrow.localhost"
    server = make_leaf(host)
    cert_path, _ = write_pem(tmp_path / "server", server)
    policy = tmp_path / "policy.json"
    policy.write_text(terminate_tls_policy(server))
    upstream = RecordingUpstream()
    agent = make_agent(
        edge,
        edge.credential(),
        f"127.0.0.1:{upstream.port}",
        tmp_path,
        "--url",
        f"tls://{host}",
        "--traffic-policy-file",
        str(policy),
        command="tls",
    ).start()
    try:
        out = subprocess.run(
            [
                "openssl", "s_client", "-connect", f"127.0.0.1:{edge.agents_port}",
                "-servername", host, "-verify_hostname", host, "-CAfile", str(cert_path),
                "-verify_return_error", "-quiet",
            ],
            input=b"hello over tls\n",
            capture_output=True,
            timeout=CLIENT_TIMEOUT,
            check=False,
        )  # fmt: skip
        assert out.stdout == b"got hello over tls\n", out.stderr.decode(errors="replace")
        assert f"CN = {host}" in out.stderr.decode(), out.stderr
        assert upstream.received == [b"hello over tls\n"]  # plaintext, not a ClientHello
        # And Python's ssl, checking the exact certificate it was served.
        certificate, answer = tls_exchange(edge, host, cert_path, b"second\n")
        assert certificate == der(server)
        assert answer == b"got second\n"
        # The admin-visible text of the policy never carries the private key.
        assert server.key_pem.splitlines()[1] not in edge.log()
    finally:
        agent.kill()
        upstream.close()


def test_mutual_tls_refuses_clients_without_a_good_certificate(
    shared_edge: Edge, tmp_path: Path
) -> None:
    edge = shared_edge
    host = "tt-mtls.burrow.localhost"
    server, client_ca, stranger_ca = make_leaf(host), make_ca(), make_ca("a stranger's CA")
    good = write_pem(tmp_path / "good", make_leaf("alice.example", client_ca, client=True))
    stranger = write_pem(tmp_path / "stranger", make_leaf("eve.example", stranger_ca, client=True))
    cert_path, _ = write_pem(tmp_path / "server", server)
    policy = tmp_path / "policy.json"
    policy.write_text(terminate_tls_policy(server, client_ca=client_ca))
    upstream = RecordingUpstream()
    mark = edge.log_size()
    agent = make_agent(
        edge,
        edge.credential(),
        f"127.0.0.1:{upstream.port}",
        tmp_path,
        "--url",
        f"tls://{host}",
        "--traffic-policy-file",
        str(policy),
        command="tls",
    ).start()
    try:
        for client in (None, stranger):
            try:
                _, answer = tls_exchange(edge, host, cert_path, b"let me in\n", client)
            except (ssl.SSLError, OSError):
                answer = None  # refused during the handshake (TLS 1.2) rather than after it
            assert answer is None, f"served a client with {client}"
        assert upstream.received == []  # neither refused client reached the upstream
        log = edge.log_since(mark)
        assert "TLS handshake with 127.0.0.1" in log and "terminate-tls" in log
        certificate, answer = tls_exchange(edge, host, cert_path, b"alice here\n", good)
        assert certificate == der(server)
        assert answer == b"got alice here\n"
        assert upstream.received == [b"alice here\n"]
    finally:
        agent.kill()
        upstream.close()


class SdkTlsEndpoint:
    """ngrok's Python SDK holding a tls endpoint (tests/e2e/sdk_tls_client.py) with
    `termination(cert, key)` and, when `client_ca` is given, `mutual_tlsca(client_ca)`."""

    def __init__(
        self, edge: Edge, tmp_path: Path, host: str, upstream: int, pems: list[Path]
    ) -> None:
        self.log = tmp_path / "sdk.log"
        with self.log.open("w") as stderr:
            self.process = subprocess.Popen(
                [
                    sys.executable, str(SDK_DRIVER), f"localhost:{edge.agents_port}",
                    str(edge.ca_path), edge.credential(), f"tcp://127.0.0.1:{upstream}", host,
                    *(str(path) for path in pems),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )  # fmt: skip
        self.bound = json.loads(_read_line_matching(self.process, JSON_LINE, SDK_DEADLINE)[0])

    def close(self) -> None:
        """Let the SDK close its listener and session; it must say it did."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        closed = json.loads(_read_line_matching(self.process, JSON_LINE, SDK_DEADLINE)[0])
        assert closed == {"closed": True}, (closed, self.log.read_text()[-2000:])

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)


@pytest.mark.sdk
def test_ngrok_sdk_termination_uploads_the_certificate_the_edge_serves(
    shared_edge: Edge, tmp_path: Path
) -> None:
    """`session.tls_endpoint().termination(cert, key)`: the SDK sends TLSTermination in the
    Bind; the edge terminates TLS with that certificate and the upstream gets plaintext."""
    edge = shared_edge
    host = "tt-sdk.burrow.localhost"
    server = make_leaf(host)
    cert_path, key_path = write_pem(tmp_path / "server", server)
    upstream = RecordingUpstream()
    sdk = SdkTlsEndpoint(edge, tmp_path, host, upstream.port, [cert_path, key_path])
    try:
        bound = sdk.bound
        assert "url" in bound, (bound, sdk.log.read_text()[-2000:], edge.log()[-3000:])
        assert bound["proto"] == "tls"
        assert bound["url"].startswith(f"tls://{host}")
        certificate, answer = tls_exchange(edge, host, cert_path, b"from the sdk\n")
        assert certificate == der(server)  # the uploaded certificate, not the edge's
        assert answer == b"got from the sdk\n"
        assert upstream.received == [b"from the sdk\n"]
        assert server.key_pem.splitlines()[1] not in edge.log()
        sdk.close()
    finally:
        sdk.kill()
        upstream.close()


@pytest.mark.sdk
def test_ngrok_sdk_mutual_tlsca_with_termination_requires_client_certificates(
    shared_edge: Edge, tmp_path: Path
) -> None:
    """`termination(cert, key)` plus `mutual_tlsca(ca)`: the edge serves the uploaded
    certificate and lets through only clients whose certificate that CA signed."""
    edge = shared_edge
    host = "tt-sdk-mtls.burrow.localhost"
    server, client_ca = make_leaf(host), make_ca()
    cert_path, key_path = write_pem(tmp_path / "server", server)
    ca_path = tmp_path / "client-ca.pem"
    ca_path.write_text(client_ca.cert_pem)
    good = write_pem(tmp_path / "good", make_leaf("alice.example", client_ca, client=True))
    upstream = RecordingUpstream()
    sdk = SdkTlsEndpoint(edge, tmp_path, host, upstream.port, [cert_path, key_path, ca_path])
    try:
        assert "url" in sdk.bound, (sdk.bound, sdk.log.read_text()[-2000:], edge.log()[-3000:])
        try:
            _, answer = tls_exchange(edge, host, cert_path, b"no certificate\n")
        except (ssl.SSLError, OSError):
            answer = None
        assert answer is None
        assert upstream.received == []
        certificate, answer = tls_exchange(edge, host, cert_path, b"alice\n", good)
        assert certificate == der(server)
        assert answer == b"got alice\n"
        assert upstream.received == [b"alice\n"]
        sdk.close()
    finally:
        sdk.kill()
        upstream.close()
