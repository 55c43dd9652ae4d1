"""Single-connection TLS 1.3 throughput: trio.SSLStream against protocol.adapters.tls.TLSStream.

    python -m benchmarks.tls_stream [--size-mib 1024] [--runs 3] [--no-pin]

Each measurement moves `--size-mib` over loopback TCP from a sender process (TLS client)
to a receiver process (TLS server), for every (sender, receiver) pair of implementations,
round-robin so machine noise spreads evenly. The receiver times from the end of the
handshake to EOF and reports its own CPU (getrusage user+sys over that window); the sender
reports its CPU over its send loop. By default the sender is pinned to CPU 0 and the
receiver to CPU 1, as in reference/performance.md. Prints medians (min-max) and the ratio
to trio.SSLStream on both ends.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import trio

from protocol.adapters.tls import TLSStream

IMPLS = ("trio", "ours")
HOSTNAME = "bench.burrow.test"
#: Write and read size: 256 KiB, the size the reference trio figure used.
IO_SIZE = 256 * 1024
#: The receiver process prints this line with its port once it listens.
PORT_PREFIX = "PORT "


# ---- child processes -----------------------------------------------------------------


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _wrap(
    impl: str, stream: trio.SocketStream, ctx: ssl.SSLContext, *, server: bool
) -> TLSStream[trio.SocketStream] | trio.SSLStream[trio.SocketStream]:
    hostname = None if server else HOSTNAME
    if impl == "ours":
        return TLSStream(stream, ctx, server_side=server, server_hostname=hostname)
    return trio.SSLStream(stream, ctx, server_side=server, server_hostname=hostname)


async def _receiver(impl: str, certdir: Path) -> dict[str, float]:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(certdir / "server.pem")
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    async with listeners[0] as listener:
        print(f"{PORT_PREFIX}{listener.socket.getsockname()[1]}", flush=True)
        sock = await listener.accept()
    stream = _wrap(impl, sock, ctx, server=True)
    async with stream:
        await stream.do_handshake()
        start, cpu_start = time.perf_counter(), _cpu_seconds()
        received = 0
        while data := await stream.receive_some(IO_SIZE):
            received += len(data)
        seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu_start
    return {"bytes": received, "seconds": seconds, "cpu": cpu}


async def _sender(impl: str, certdir: Path, port: int, size: int) -> dict[str, float]:
    ctx = ssl.create_default_context(cafile=str(certdir / "ca.pem"))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    sock = await trio.open_tcp_stream("127.0.0.1", port)
    stream = _wrap(impl, sock, ctx, server=False)
    payload = memoryview(os.urandom(IO_SIZE))
    async with stream:
        await stream.do_handshake()
        start, cpu_start = time.perf_counter(), _cpu_seconds()
        sent = 0
        while sent < size:
            chunk = payload[: min(IO_SIZE, size - sent)]
            await stream.send_all(chunk)
            sent += len(chunk)
    seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu_start
    return {"bytes": sent, "seconds": seconds, "cpu": cpu}


def _child(args: argparse.Namespace) -> None:
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    certdir = Path(args.certdir)
    if args.role == "receiver":
        result = trio.run(_receiver, args.impl, certdir)
    else:
        result = trio.run(_sender, args.impl, certdir, args.port, args.size)
    print(json.dumps(result), flush=True)


# ---- parent: orchestration and report ------------------------------------------------


@dataclass(frozen=True)
class Run:
    mb_per_s: float
    receiver_cpu_pct: float
    sender_cpu_pct: float
    #: CPU seconds per GB moved: less sensitive than MB/s to other load on the machine.
    receiver_cpu_s_per_gb: float
    sender_cpu_s_per_gb: float


def _write_certs(certdir: Path) -> None:
    import trustme  # test dependency; only the parent needs it

    ca = trustme.CA()
    cert = ca.issue_cert(HOSTNAME)
    ca.cert_pem.write_to_path(str(certdir / "ca.pem"))
    with (certdir / "server.pem").open("wb") as f:
        f.write(cert.private_key_pem.bytes())
        for blob in cert.cert_chain_pems:
            f.write(blob.bytes())


def _spawn(
    role: str, impl: str, certdir: Path, cpu: int | None, *extra: str
) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "benchmarks.tls_stream", "--role", role, "--impl", impl]
    cmd += ["--certdir", str(certdir), *extra]
    if cpu is not None:
        cmd += ["--cpu", str(cpu)]
    root = Path(__file__).resolve().parent.parent
    return subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, text=True)


def _result(proc: subprocess.Popen[str]) -> dict[str, float]:
    out, _ = proc.communicate(timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child exited with {proc.returncode}")
    return dict(json.loads(out.strip().splitlines()[-1]))


def _one_run(sender: str, receiver: str, certdir: Path, size: int, pin: bool) -> Run:
    recv_proc = _spawn("receiver", receiver, certdir, 1 if pin else None)
    assert recv_proc.stdout is not None
    line = recv_proc.stdout.readline()
    if not line.startswith(PORT_PREFIX):
        recv_proc.kill()
        raise RuntimeError(f"receiver did not report a port: {line!r}")
    port = line[len(PORT_PREFIX) :].strip()
    send_proc = _spawn(
        "sender", sender, certdir, 0 if pin else None, "--port", port, "--size", str(size)
    )
    sent = _result(send_proc)
    got = _result(recv_proc)
    if got["bytes"] != size or sent["bytes"] != size:
        raise RuntimeError(f"moved {got['bytes']} bytes, expected {size}")
    return Run(
        mb_per_s=size / got["seconds"] / 1e6,
        receiver_cpu_pct=100 * got["cpu"] / got["seconds"],
        sender_cpu_pct=100 * sent["cpu"] / sent["seconds"],
        receiver_cpu_s_per_gb=got["cpu"] / (size / 1e9),
        sender_cpu_s_per_gb=sent["cpu"] / (size / 1e9),
    )


def _summary(values: list[float]) -> str:
    return f"{statistics.median(values):7,.0f} ({min(values):,.0f}-{max(values):,.0f})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-pin", action="store_true", help="do not pin sender/receiver")
    # Internal: how the parent starts the two children.
    parser.add_argument("--role", choices=["sender", "receiver"], help=argparse.SUPPRESS)
    parser.add_argument("--impl", choices=IMPLS, help=argparse.SUPPRESS)
    parser.add_argument("--certdir", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cpu", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role:
        _child(args)
        return

    size = args.size_mib * 1024 * 1024
    pin = not args.no_pin and len(os.sched_getaffinity(0)) >= 2
    pairs = list(itertools.product(IMPLS, IMPLS))  # (sender, receiver)
    results: dict[tuple[str, str], list[Run]] = {pair: [] for pair in pairs}
    print(
        f"TLS 1.3 over loopback TCP, {args.size_mib} MiB per run, {IO_SIZE // 1024} KiB"
        f" writes/reads, {args.runs} runs per pair, pinned={pin}, {ssl.OPENSSL_VERSION}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        certdir = Path(tmp)
        _write_certs(certdir)
        for run in range(args.runs):
            for sender, receiver in pairs:
                r = _one_run(sender, receiver, certdir, size, pin)
                results[(sender, receiver)].append(r)
                print(
                    f"  run {run + 1}: {sender:>4} -> {receiver:<4} {r.mb_per_s:7,.0f} MB/s"
                    f"  receiver {r.receiver_cpu_pct:3.0f}% {r.receiver_cpu_s_per_gb:.2f} s/GB"
                    f"  sender {r.sender_cpu_pct:3.0f}% {r.sender_cpu_s_per_gb:.2f} s/GB",
                    flush=True,
                )

    baseline = statistics.median(r.mb_per_s for r in results[("trio", "trio")])
    print()
    print(
        f"{'sender -> receiver':<20} {'MB/s median (min-max)':<24} {'ratio':>6}"
        f"  {'recv CPU%':>9} {'recv s/GB':>9}  {'send CPU%':>9} {'send s/GB':>9}"
    )
    for sender, receiver in pairs:
        runs = results[(sender, receiver)]
        speeds = [r.mb_per_s for r in runs]
        print(
            f"{sender + ' -> ' + receiver:<20} {_summary(speeds):<24}"
            f" {statistics.median(speeds) / baseline:6.2f}"
            f"  {statistics.median(r.receiver_cpu_pct for r in runs):9.0f}"
            f" {statistics.median(r.receiver_cpu_s_per_gb for r in runs):9.2f}"
            f"  {statistics.median(r.sender_cpu_pct for r in runs):9.0f}"
            f" {statistics.median(r.sender_cpu_s_per_gb for r in runs):9.2f}"
        )
    print(
        "(trio = trio.SSLStream, ours = protocol.adapters.tls.TLSStream; "
        "ratio is to trio -> trio)"
    )


if __name__ == "__main__":
    main()
