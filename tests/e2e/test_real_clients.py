"""Real clients through a tcp:// endpoint: curl speaking HTTP, openssl s_client speaking TLS
end to end (the edge and the agent only ever see ciphertext)."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import os
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
import trustme

from tests.e2e.harness import Edge, make_agent

# `./dev test` installs curl and openssl (Debian packages) before it runs the suite.


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: one curl reuses one connection

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def web_root(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    root = tmp_path / "site"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(_QuietHandler, directory=str(root))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield root, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_curl_downloads_through_the_tunnel(
    shared_edge: Edge, web_root: tuple[Path, int], tmp_path: Path
) -> None:
    edge = shared_edge
    root, port = web_root
    blobs = {name: os.urandom(size) for name, size in (("a.bin", 3 * 1024 * 1024), ("b.bin", 1))}
    for name, blob in blobs.items():
        (root / name).write_bytes(blob)
    agent = make_agent(edge, edge.credential(), f"127.0.0.1:{port}", tmp_path).start()
    try:
        urls = [f"http://127.0.0.1:{agent.port}/{name}" for name in blobs]
        out = subprocess.run(
            [
                "curl",
                "--silent",
                "--show-error",
                "--fail",
                "--max-time",
                "60",
                *[
                    arg
                    for i, url in enumerate(urls)
                    for arg in (url, "-o", str(tmp_path / f"got{i}"))
                ],
                "--write-out",
                "%{num_connects}\\n",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        for i, blob in enumerate(blobs.values()):
            got = (tmp_path / f"got{i}").read_bytes()
            assert hashlib.sha256(got).digest() == hashlib.sha256(blob).digest()
        assert out.stdout.split() == ["1", "0"]  # the second request reused the connection
    finally:
        agent.kill()


class TLSEchoServer:
    def __init__(self, ca: trustme.CA) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("db.clinic.test").configure_cert(context)
        self.context = context
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            with self.context.wrap_socket(raw, server_side=True) as conn:
                line = b""
                while not line.endswith(b"\n") and (data := conn.recv(65536)):
                    line += data
                conn.sendall(line.upper())  # one reply, then close_notify: the client sees EOF
                conn.unwrap()
        except (OSError, ssl.SSLError):
            pass

    def close(self) -> None:
        # shutdown() first: close() alone leaves a socket blocked in accept() (or recv()) in
        # its thread, which can then take connections meant for a later test's server.
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def test_openssl_s_client_speaks_tls_end_to_end(shared_edge: Edge, tmp_path: Path) -> None:
    edge = shared_edge
    ca = trustme.CA()
    ca_file = tmp_path / "upstream-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    upstream = TLSEchoServer(ca)
    agent = make_agent(edge, edge.credential(), f"127.0.0.1:{upstream.port}", tmp_path).start()
    try:
        out = subprocess.run(
            [
                "openssl",
                "s_client",
                "-connect",
                f"127.0.0.1:{agent.port}",
                "-servername",
                "db.clinic.test",
                "-verify_hostname",
                "db.clinic.test",
                "-CAfile",
                str(ca_file),
                "-verify_return_error",
                "-ign_eof",
            ],
            input="select 1;\n",
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        assert "Verify return code: 0 (ok)" in out.stdout
        assert "SELECT 1;" in out.stdout  # the upstream's reply, decrypted only by the client
    finally:
        agent.kill()
        upstream.close()
