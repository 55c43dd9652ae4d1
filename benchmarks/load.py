"""Traffic generators (client side) and the upstream server (sink, source, echo, hold).

Theory of operation: like iperf3, the upstream server runs in its own process
(`python -m benchmarks.load --port 0` prints `ready PORT`), and the client side runs in the
benchmark process. Both use plain blocking sockets, one thread per connection, 256 KiB
`sendall`/`recv_into` on a preallocated buffer, so neither side is the bottleneck on loopback
(a blocking Python socket moves about 3.9 GB/s on the reference machine).

Every connection starts with a 12-byte header, `>4sQ` = (mode, count), and the server answers one
byte `+` once it has read it; that byte has then crossed the tunnel both ways, so the stream is
established end to end before anything is timed.

- `SINK` count>0: read exactly count bytes, then answer the 8-byte total. count=0: read until
  EOF (the client half-closes), then answer the total. Times uploads.
- `SRCE`: after `+`, wait for one byte `g`, then send count bytes and close; count=0 sends until
  the client goes away. Times downloads.
- `ECHO`: echo whatever arrives until EOF. Times round trips.
- `HOLD`: after `+`, keep the connection open until the client closes it. Idle-stream memory.

Every client socket has a timeout (`OP_TIMEOUT` per operation) so a stuck tunnel fails a run
instead of hanging the benchmark.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import select
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

HEADER = struct.Struct(">4sQ")
TOTAL = struct.Struct(">Q")
SINK, SOURCE, ECHO, HOLD = b"SINK", b"SRCE", b"ECHO", b"HOLD"
READY = b"+"
GO = b"g"

# 256 KiB per send/recv: the size that gave the best blocking-socket figure on loopback.
CHUNK = 256 * 1024
# Seconds any single socket operation may take before the run is declared stuck.
OP_TIMEOUT = 60.0
# Accept backlog: the idle-stream test opens 1,000 connections one after another.
BACKLOG = 4096
# Per-thread stack in the server: connection threads only shuffle bytes; keeps 1,000 holds cheap.
SERVER_THREAD_STACK = 512 * 1024


class LoadError(RuntimeError):
    """The traffic did not go through as the protocol above says."""


# --------------------------------------------------------------------------- server side


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise LoadError(f"connection closed after {len(data)} of {n} bytes")
        data += chunk
    return bytes(data)


def _serve_sink(sock: socket.socket, count: int) -> None:
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    total = 0
    while count == 0 or total < count:
        want = CHUNK if count == 0 else min(CHUNK, count - total)
        n = sock.recv_into(view[:want])
        if n == 0:
            break
        total += n
    sock.sendall(TOTAL.pack(total))


def _serve_source(sock: socket.socket, count: int) -> None:
    _recv_exact(sock, 1)  # the client's GO: it starts its clock just before sending it
    view = memoryview(os.urandom(CHUNK))
    sent = 0
    while count == 0 or sent < count:
        n = CHUNK if count == 0 else min(CHUNK, count - sent)
        sock.sendall(view[:n])
        sent += n


def _serve_echo(sock: socket.socket) -> None:
    buf = bytearray(65536)
    view = memoryview(buf)
    while n := sock.recv_into(buf):
        sock.sendall(view[:n])


def _serve_hold(sock: socket.socket) -> None:
    while sock.recv(4096):
        pass


def _handle(sock: socket.socket) -> None:
    with sock:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            mode, count = HEADER.unpack(_recv_exact(sock, HEADER.size))
            sock.sendall(READY)
            if mode == SINK:
                _serve_sink(sock, count)
            elif mode == SOURCE:
                _serve_source(sock, count)
            elif mode == ECHO:
                _serve_echo(sock)
            elif mode == HOLD:
                _serve_hold(sock)
        except (OSError, LoadError):
            return  # a client that went away (readiness probes, time-bounded downloads)


def serve(port: int) -> None:
    """Run the upstream server on 127.0.0.1:port (0 = any free port) until killed."""
    threading.stack_size(SERVER_THREAD_STACK)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(BACKLOG)
    print(f"ready {listener.getsockname()[1]}", flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=_handle, args=(conn,), daemon=True).start()


class UpstreamServer:
    """The upstream server in its own process; `port` is where tunnels forward to."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.load", "--port", "0"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("ready "):
            self.close()
            raise LoadError(f"upstream server did not start (said {line!r})")
        self.port = int(line.split()[1])

    @property
    def pid(self) -> int:
        return self.proc.pid

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# --------------------------------------------------------------------------- client side


_PAYLOAD = os.urandom(CHUNK)  # incompressible, in case a tunnel compresses


def connect(port: int, mode: bytes, count: int = 0) -> socket.socket:
    """Open a connection through port, send the header and wait for the server's `+`."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=OP_TIMEOUT)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(HEADER.pack(mode, count))
        if _recv_exact(sock, 1) != READY:
            raise LoadError("upstream server did not answer the header")
    except BaseException:
        sock.close()
        raise
    return sock


def probe(port: int) -> None:
    """One end-to-end round trip through port; raises OSError/LoadError if it fails."""
    with connect(port, HOLD):
        pass


@dataclass(frozen=True, kw_only=True)
class Transfer:
    nbytes: int
    seconds: float

    @property
    def mb_per_s(self) -> float:
        return self.nbytes / self.seconds / 1e6


def _send_bytes(sock: socket.socket, nbytes: int, deadline: float | None) -> int:
    view = memoryview(_PAYLOAD)
    sent = 0
    if deadline is None:
        while sent < nbytes:
            n = min(CHUNK, nbytes - sent)
            sock.sendall(view[:n])
            sent += n
    else:
        while time.perf_counter() < deadline:
            sock.sendall(view)
            sent += CHUNK
        sock.shutdown(socket.SHUT_WR)  # the server answers the total at EOF
    return sent


def _await_total(sock: socket.socket, sent: int) -> None:
    received = TOTAL.unpack(_recv_exact(sock, TOTAL.size))[0]
    if received != sent:
        raise LoadError(f"sent {sent} bytes but the server received {received}")


def upload(port: int, nbytes: int, seconds: float | None = None) -> Transfer:
    """Client to server: nbytes (or for `seconds`), timed until the server confirms receipt."""
    with connect(port, SINK, 0 if seconds else nbytes) as sock:
        start = time.perf_counter()
        sent = _send_bytes(sock, nbytes, start + seconds if seconds else None)
        _await_total(sock, sent)
        return Transfer(nbytes=sent, seconds=time.perf_counter() - start)


def download(port: int, nbytes: int, seconds: float | None = None) -> Transfer:
    """Server to client: nbytes (or for `seconds`), timed from GO to the last byte."""
    buf = bytearray(CHUNK)
    with connect(port, SOURCE, 0 if seconds else nbytes) as sock:
        start = time.perf_counter()
        deadline = start + seconds if seconds else None
        sock.sendall(GO)
        received = 0
        while deadline is not None or received < nbytes:
            if deadline is not None and time.perf_counter() >= deadline:
                break
            n = sock.recv_into(buf)
            if n == 0:
                raise LoadError(f"download ended after {received} of {nbytes} bytes")
            received += n
        return Transfer(nbytes=received, seconds=time.perf_counter() - start)


def parallel_upload(port: int, streams: int, nbytes: int, seconds: float | None = None) -> Transfer:
    """`streams` uploads at once, each of nbytes // streams; wall time of the slowest."""
    per_stream = nbytes // streams
    barrier = threading.Barrier(streams + 1, timeout=OP_TIMEOUT)
    sent = [0] * streams
    errors: list[BaseException] = []
    socks: list[socket.socket] = []
    deadline: list[float] = []

    def run(index: int, sock: socket.socket) -> None:
        try:
            barrier.wait()
            sent[index] = _send_bytes(sock, per_stream, deadline[0] if deadline else None)
            _await_total(sock, sent[index])
        except BaseException as exc:  # reported by the caller
            errors.append(exc)
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.abort()

    try:
        socks.extend(connect(port, SINK, 0 if seconds else per_stream) for _ in range(streams))
        threads = [
            threading.Thread(target=run, args=(i, s), daemon=True) for i, s in enumerate(socks)
        ]
        for thread in threads:
            thread.start()
        start = time.perf_counter()
        if seconds:
            deadline.append(start + seconds)
        with contextlib.suppress(threading.BrokenBarrierError):  # a stream failed: see errors
            barrier.wait()
        start = time.perf_counter()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - start
    finally:
        for sock in socks:
            sock.close()
    if errors:
        raise LoadError(f"{len(errors)} of {streams} streams failed: {errors[0]!r}") from errors[0]
    return Transfer(nbytes=sum(sent), seconds=elapsed)


def ping_pong(port: int, rounds: int, warmup: int, size: int) -> list[float]:
    """One connection, `size`-byte messages echoed back; the round-trip times in ms."""
    message = os.urandom(size)
    buf = bytearray(size)
    view = memoryview(buf)
    times: list[float] = []
    with connect(port, ECHO) as sock:
        for i in range(warmup + rounds):
            start = time.perf_counter_ns()
            sock.sendall(message)
            got = 0
            while got < size:
                n = sock.recv_into(view[got:])
                if n == 0:
                    raise LoadError("echo connection closed")
                got += n
            if i >= warmup:
                times.append((time.perf_counter_ns() - start) / 1e6)
    if buf != message:
        raise LoadError("echo returned different bytes")
    return times


@contextlib.contextmanager
def hold_open(port: int, count: int) -> Iterator[list[socket.socket]]:
    """Open count connections through port, each established end to end; close them on exit."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            try:
                socks.append(connect(port, HOLD))
            except (OSError, LoadError) as exc:
                raise LoadError(
                    f"opened {len(socks)} of {count} idle streams, then: {exc!r}"
                ) from exc
        yield socks
    finally:
        for sock in socks:
            sock.close()


def raise_fd_limit(wanted: int) -> None:
    """Raise the soft open-files limit (inherited by the tunnels we start) to serve `wanted`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, wanted)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def main() -> None:
    parser = argparse.ArgumentParser(description="Burrow benchmark upstream server")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        serve(args.port)


if __name__ == "__main__":
    main()
