"""A damaged store, on real processes.

`burrow-edge serve` refuses a 0-byte store file (a truncated store: starting empty would lose
every authtoken) and a store with damaged pages at start, with one clear line on stderr, no
traceback and a non-zero exit; `--new-store` starts a new empty store in a 0-byte file's place.
A store that fails while the edge runs gives each agent a clear AuthResp error
(ERR_NGROK_10000) and the edge one log line per attempt, not a traceback.
"""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from edge.store import SQLiteStore
from tests.e2e.harness import (
    BIN,
    READY_TIMEOUT,
    EchoServer,
    Edge,
    _read_line_matching,
    make_agent,
    make_edge,
)

#: Bound for a `burrow-edge serve` that is expected to refuse at once.
REFUSE_TIMEOUT = 60
PAGE = 4096  # SQLite's default page size, which every Burrow store uses
READY = re.compile(r"burrow-edge ready: tls=\S+")


def _serve_args(edge: Edge, *extra: str) -> list[str]:
    return [
        str(BIN / "burrow-edge"),
        "serve",
        "--data-dir",
        str(edge.data_dir),
        "--config",
        str(edge.config_path),
        *extra,
    ]


def _serve_expecting_refusal(edge: Edge) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _serve_args(edge),
        capture_output=True,
        text=True,
        timeout=REFUSE_TIMEOUT,
        check=False,
    )


def _assert_one_clear_line(out: subprocess.CompletedProcess[str], starts: str) -> str:
    assert out.returncode == 1
    assert "burrow-edge ready" not in out.stdout
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert "Traceback" not in out.stderr
    assert lines[0].startswith(f"burrow-edge: {starts}"), lines[0]
    return lines[0]


def test_serve_refuses_an_empty_store_file(tmp_path: Path) -> None:
    edge = make_edge(tmp_path)
    edge.data_dir.mkdir()
    store = edge.data_dir / "burrow.db"
    store.write_bytes(b"")
    line = _assert_one_clear_line(
        _serve_expecting_refusal(edge), f"the store at {store} is empty (0 bytes)"
    )
    assert line.endswith("with `burrow-edge serve --new-store` or `burrow-edge init --new-store`")
    assert store.read_bytes() == b""  # left for a backup to be put back


def test_serve_with_new_store_starts_a_new_store_in_an_empty_files_place(tmp_path: Path) -> None:
    edge = make_edge(tmp_path)
    edge.data_dir.mkdir()
    store = edge.data_dir / "burrow.db"
    store.write_bytes(b"")
    proc = subprocess.Popen(
        _serve_args(edge, "--new-store"),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        # Fails, showing what it printed, if the edge refuses (exits) or hangs instead.
        _read_line_matching(proc, READY, READY_TIMEOUT)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=READY_TIMEOUT) == 0
    assert store.stat().st_size > 0
    with SQLiteStore.open(store) as opened:  # a real store now: no flag needed any more
        assert opened.list_credentials() == []


def test_serve_refuses_a_store_with_damaged_pages(tmp_path: Path) -> None:
    edge = make_edge(tmp_path)
    edge.data_dir.mkdir()
    store = edge.data_dir / "burrow.db"
    with SQLiteStore.open(store) as opened:
        for n in range(40):
            opened.create_credential(description=f"credential {n}" + "x" * 200)
    data = bytearray(store.read_bytes())
    data[2 * PAGE : 3 * PAGE] = b"\xa5" * PAGE  # one table's first page, not the header
    store.write_bytes(data)
    line = _assert_one_clear_line(
        _serve_expecting_refusal(edge),
        f"the store at {store} is damaged (SQLite's quick_check: ",
    )
    assert line.endswith(
        "restore it from a backup, or move it and its -wal file aside to start a new empty store"
    )
    assert store.read_bytes() == data


#: The agent's first retry comes within its first backoff (about a second); this only catches a
#: hang.
RETRY_DEADLINE = 30.0


def test_a_store_failing_at_run_time_gives_the_agent_a_clear_error(
    edge: Edge, echo: EchoServer, tmp_path: Path
) -> None:
    """The agent is told the edge failed (ERR_NGROK_10000, not its token) and, since the edge
    may heal, backs off and tries again instead of exiting; the edge logs one line a try."""
    token = edge.credential()
    # Another program breaks the running edge's store: its credentials table is gone, so every
    # authtoken check fails inside SQLite ("no such table").
    with sqlite3.connect(edge.data_dir / "burrow.db") as raw:
        raw.execute("DROP TABLE credentials")
    agent = make_agent(edge, token, f"127.0.0.1:{echo.port}", tmp_path).start(wait=False)
    try:
        deadline = time.monotonic() + RETRY_DEADLINE
        while agent.log().count("ERR_NGROK_10000") < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        said = agent.log()
        assert said.count("ERR_NGROK_10000") >= 2, said
        assert "The edge could not check your authtoken: its credential store failed" in said
        assert "reconnecting in" in said
        assert agent.proc is not None and agent.proc.poll() is None  # still trying
    finally:
        agent.interrupt()
    log = edge.log()
    tries = len(re.findall(r"the store failed at Auth: .*no such table: credentials", log))
    assert tries >= 2
    assert "Traceback" not in log
    assert edge.proc is not None and edge.proc.poll() is None  # the edge keeps running
