"""`./dev demo`: an edge, an agent and a local web service on this machine, wired together.

It runs the real programs as separate processes, exactly as an operator and a user would:
`burrow-edge serve` (with a data directory under .burrow-demo/, its development CA and store),
`burrow-edge credential create` (once; the token is kept in .burrow-demo/authtoken, mode 0600),
a small local HTTP service on a free loopback port, and `burrow http` exposing that service
through an https:// endpoint on the edge (TLS ends at the edge). The agent gets its authtoken
in BURROW_AUTHTOKEN, not on its command line, where `ps` would show it. It prints how to reach
the service and runs until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Where the demo keeps its state; BURROW_DEMO_STATE moves it (tests/e2e/test_demo.py does).
STATE = Path(os.environ.get("BURROW_DEMO_STATE") or ROOT / ".burrow-demo")
BIN = Path(sys.executable).parent


def wait_for(proc: subprocess.Popen[str], pattern: str, timeout: float = 30.0) -> re.Match[str]:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise SystemExit(f"demo: {proc.args[0]} exited (code {proc.wait()}); see its log above")
        match = re.search(pattern, line)
        if match:
            return match
    raise SystemExit(f"demo: {proc.args[0]} did not become ready in {timeout:.0f}s")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    # SIGTERM (kill, timeout, a service manager) stops the demo as Ctrl-C does: children too.
    signal.signal(signal.SIGTERM, _interrupt)
    STATE.mkdir(mode=0o700, exist_ok=True)
    data_dir = STATE / "edge"
    edge_log = (STATE / "edge.log").open("a")
    agent_log = (STATE / "agent.log").open("a")
    procs: list[subprocess.Popen[str]] = []
    try:
        edge = subprocess.Popen(
            [str(BIN / "burrow-edge"), "serve", "--data-dir", str(data_dir)],
            stdout=subprocess.PIPE, stderr=edge_log, text=True,
        )
        procs.append(edge)
        agents = wait_for(edge, r"burrow-edge ready: tls=(\S+):(\d+)")
        token_file = STATE / "authtoken"
        if not token_file.exists():
            out = subprocess.run(
                [str(BIN / "burrow-edge"), "credential", "create", "--data-dir", str(data_dir),
                 "--description", "demo agent"],
                check=True, capture_output=True, text=True,
            ).stdout
            token_file.write_text(out.strip().splitlines()[-1] + "\n")
            token_file.chmod(0o600)
        token = token_file.read_text().strip()

        site = Path(tempfile.mkdtemp(prefix="burrow-demo-site-"))
        (site / "index.html").write_text(
            "<!doctype html><title>Burrow demo</title>"
            "<h1>Hello from behind Burrow</h1><p>This page came through an agent's tunnel.</p>\n"
        )
        service = subprocess.Popen(
            [sys.executable, "-u", "-c",
             "import http.server, functools, socketserver, sys\n"
             "h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])\n"
             "s = http.server.ThreadingHTTPServer(('127.0.0.1', 0), h)\n"
             "print('serving', s.server_address[1], flush=True)\n"
             "s.serve_forever()\n", str(site)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        procs.append(service)
        service_port = int(wait_for(service, r"serving (\d+)").group(1))

        # The authtoken goes through the environment, never argv: the process list shows
        # every process's arguments to every user of the machine.
        env = dict(os.environ)
        env.update(
            BURROW_AUTHTOKEN=token,
            BURROW_CONNECT_URL=f"connect.burrow.localhost:{agents.group(2)}",
            BURROW_CONNECT_CAS=str(data_dir / "ca.pem"),
        )
        agent = subprocess.Popen(
            [str(BIN / "burrow"), "http", f"127.0.0.1:{service_port}"],
            stdout=subprocess.PIPE, stderr=agent_log, text=True, env=env,
        )
        procs.append(agent)
        forwarding = wait_for(agent, r"Forwarding (https://\S+) -> (\S+)")
        url = forwarding.group(1)
        print(
            f"\nBurrow demo is running.\n"
            f"  edge      agents connect to connect.burrow.localhost:{agents.group(2)}"
            f" (log: {STATE / 'edge.log'})\n"
            f"  agent     {forwarding.group(1)} -> 127.0.0.1:{service_port}"
            f" (log: {STATE / 'agent.log'})\n"
            f"  service   a local web page on 127.0.0.1:{service_port}\n\n"
            f"Reach the service through the tunnel (names under .localhost are loopback, and\n"
            f"the edge's certificate comes from its development CA):\n"
            f"  curl --cacert {data_dir / 'ca.pem'} {url}/\n\n"
            f"Press Ctrl-C to stop.",
            flush=True,
        )
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        print("demo: a process exited; stopping", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ndemo: stopping", file=sys.stderr)
        return 0
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT if proc is not procs[0] else signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    sys.exit(main())
