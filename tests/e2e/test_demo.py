"""`./dev demo` (deploy/demo.py) for real, with its state in a temporary folder: the page comes
through the tunnel, and the agent gets its authtoken through the environment, never on its
command line (which `ps` shows every user of the machine)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
#: Setting up the edge's CA and store, an authtoken, the agent's session: seconds; generous.
DEMO_TIMEOUT = 90


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def test_the_demo_hands_the_token_through_the_environment(tmp_path: Path) -> None:
    state = tmp_path / "demo"
    env = dict(os.environ, BURROW_DEMO_STATE=str(state), HOME=str(tmp_path))
    demo = subprocess.Popen(
        [sys.executable, str(ROOT / "deploy" / "demo.py")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        assert demo.stdout is not None
        deadline = time.monotonic() + DEMO_TIMEOUT
        said = ""
        while "Press Ctrl-C to stop." not in said:
            line = demo.stdout.readline()
            assert line and time.monotonic() < deadline, f"the demo did not start: {said}"
            said += line
        url = re.search(r"curl --cacert \S+ (https://\S+)/", said)
        assert url is not None, said
        token = (state / "authtoken").read_text().strip()
        agents = []
        for pid in _children(demo.pid):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if any(arg.endswith(b"/burrow") for arg in argv[:2]):
                agents.append(pid)
                assert token.encode() not in b" ".join(argv), argv
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                assert b"BURROW_AUTHTOKEN=" + token.encode() in environ
        assert len(agents) == 1, said
        host_port = url.group(1).removeprefix("https://")
        host = host_port.rpartition(":")[0]
        page = subprocess.run(
            [
                "curl",
                "--silent",
                "--show-error",
                "--cacert",
                str(state / "edge" / "ca.pem"),
                "--resolve",
                f"{host_port}:127.0.0.1",
                f"{url.group(1)}/",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert "Hello from behind Burrow" in page.stdout, (host, page.stderr)
    finally:
        demo.send_signal(signal.SIGINT)
        try:
            demo.wait(timeout=30)
        except subprocess.TimeoutExpired:
            demo.kill()
            demo.wait()
