"""Upstream services for end-to-end tests: an HTTP/1.1 server, a TLS server, a PROXY-header
recorder. Threaded, on 127.0.0.1, started and stopped by the tests' fixtures."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import socket
import ssl
import threading
from typing import Any

from protocol.formats.proxy_protocol import parse as parse_proxy_protocol

#: Bytes of the deterministic pattern /big serves (and tests hash): 1 MiB, repeated.
PATTERN = hashlib.sha256(b"burrow").digest() * (1024 * 1024 // 32)


def pattern_sha256(size: int) -> str:
    """The SHA-256 of the first `size` bytes of /big's endless pattern."""
    digest = hashlib.sha256()
    remaining = size
    while remaining:
        chunk = PATTERN[: min(remaining, len(PATTERN))]
        digest.update(chunk)
        remaining -= len(chunk)
    return digest.hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        handled = getattr(self.server, "handled", None)
        if handled is not None:  # an HttpUpstream's: who asked for what (failure diagnostics)
            handled.append(f"{self.client_address[0]}:{self.client_address[1]} GET {self.path}")
        path, _, query = self.path.partition("?")
        if path == "/big":
            self._big(int(query.removeprefix("size=")))
        elif path == "/headers":
            self._json({"headers": [[k, v] for k, v in self.headers.items()]})
        elif path == "/error-header":
            body = b"upstream says hi\n"
            self.send_response(200)
            self.send_header("Burrow-Error-Code", "ERR_NGROK_FAKE")
            self.send_header("ngrok-error-code", "ERR_NGROK_FAKE")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            body = f"hello from {path}\n".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def do_POST(self) -> None:
        """Hash the request body (Content-Length or chunked) and answer with the digest."""
        digest = hashlib.sha256()
        size = 0
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                line = self.rfile.readline(1024)
                length = int(line.split(b";")[0].strip(), 16)
                if length == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                remaining = length
                while remaining:
                    data = self.rfile.read(min(remaining, 262144))
                    digest.update(data)
                    remaining -= len(data)
                    size += len(data)
                self.rfile.readline(1024)
        else:
            remaining = int(self.headers.get("Content-Length", "0"))
            while remaining:
                data = self.rfile.read(min(remaining, 262144))
                if not data:
                    break
                digest.update(data)
                remaining -= len(data)
                size += len(data)
        self._json(
            {
                "sha256": digest.hexdigest(),
                "size": size,
                "transfer_encoding": self.headers.get("Transfer-Encoding", ""),
            }
        )

    def _big(self, size: int) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        view = memoryview(PATTERN)
        remaining = size
        while remaining:
            n = min(remaining, len(view))
            self.wfile.write(view[:n])
            remaining -= n

    def _json(self, value: object) -> None:
        body = json.dumps(value).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class HttpUpstream:
    """An HTTP/1.1 server: `/big?size=N` streams N pattern bytes, `/headers` echoes the request
    headers as JSON, POST hashes its body, anything else says hello."""

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        #: "address:port GET path" of each GET served, in order.
        self.handled: list[str] = []
        self.server.handled = self.handled  # type: ignore[attr-defined]
        if context is not None:
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class ProxyHeaderRecorder:
    """A TCP server that reads a PROXY protocol header, records it, then echoes the rest."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.headers: list[Any] = []
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
            buffer = b""
            try:
                while True:
                    parsed = parse_proxy_protocol(buffer)
                    if parsed is not None:
                        header, used = parsed
                        self.headers.append(header)
                        rest = buffer[used:]
                        break
                    data = conn.recv(4096)
                    if not data:
                        return
                    buffer += data
                if rest:
                    conn.sendall(rest)
                while data := conn.recv(65536):
                    conn.sendall(data)
                conn.shutdown(socket.SHUT_WR)
            except (OSError, ValueError):
                return

    def close(self) -> None:
        # shutdown() first: close() alone leaves the listener to the thread blocked in
        # accept(), still taking (and echoing) connections while later tests run.
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
