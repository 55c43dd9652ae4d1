"""agent/logs.py: where log lines go (--log) and what they look like (--log-format)."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.logs import LOG_LEVELS, configure_logging

OWNED = ("agent", "protocol")
TIMESTAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d"
LOGFMT = re.compile(rf'^t=({TIMESTAMP}) lvl=(\w+) obj=([\w.]+) msg=(".*")$')


@pytest.fixture(autouse=True)
def restore_loggers() -> Iterator[None]:
    """configure_logging changes process-wide loggers: put them back for the other tests."""
    saved = {}
    for name in (*OWNED, "edge"):
        logger = logging.getLogger(name)
        saved[name] = (list(logger.handlers), logger.level, logger.propagate)
    yield
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        for handler in logger.handlers:
            if handler not in handlers:
                handler.close()
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def configure(sink: str, level: str = "info", fmt: str = "logfmt") -> tuple[io.StringIO, TTY]:
    stdout, stderr = io.StringIO(), TTY()
    configure_logging(sink, level, fmt, stdout=stdout, stderr=stderr)
    return stdout, stderr


def test_logfmt_line_on_stderr() -> None:
    stdout, stderr = configure("stderr")
    logging.getLogger("agent.session").info('bound "api" at %s', "https://x.example.com")
    assert stdout.getvalue() == ""
    (line,) = stderr.getvalue().splitlines()
    match = LOGFMT.match(line)
    assert match is not None, line
    assert match.group(2, 3) == ("info", "agent.session")
    assert json.loads(match.group(4)) == 'bound "api" at https://x.example.com'


def test_stdout_sink_and_ngrok_level_names() -> None:
    stdout, stderr = configure("stdout", level="debug")
    log = logging.getLogger("protocol.adapters.mux")
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    log.critical("c")
    assert stderr.getvalue() == ""
    levels = [LOGFMT.match(line).group(2) for line in stdout.getvalue().splitlines()]  # type: ignore[union-attr]
    assert levels == ["dbug", "info", "warn", "eror", "crit"]


@pytest.mark.parametrize(
    ("level", "shown"),
    [
        ("crit", ["c"]),
        ("error", ["e", "c"]),
        ("warn", ["w", "e", "c"]),
        ("info", ["i", "w", "e", "c"]),
        ("debug", ["d", "i", "w", "e", "c"]),
    ],
)
def test_level_filters(level: str, shown: list[str]) -> None:
    stdout, _ = configure("stdout", level=level, fmt="json")
    log = logging.getLogger("agent")
    for method, text in (
        (log.debug, "d"),
        (log.info, "i"),
        (log.warning, "w"),
        (log.error, "e"),
        (log.critical, "c"),
    ):
        method(text)
    assert [json.loads(line)["msg"] for line in stdout.getvalue().splitlines()] == shown
    assert set(LOG_LEVELS) == {"crit", "error", "warn", "info", "debug"}


def test_json_lines() -> None:
    stdout, _ = configure("stdout", fmt="json")
    logging.getLogger("agent.forward").warning("upstream %s refused: café", "localhost:8080")
    (line,) = stdout.getvalue().splitlines()
    record = json.loads(line)
    assert set(record) == {"t", "lvl", "obj", "msg"}
    assert re.fullmatch(TIMESTAMP, record["t"])
    assert (record["lvl"], record["obj"]) == ("warn", "agent.forward")
    assert record["msg"] == "upstream localhost:8080 refused: café"
    assert "café" in line  # not \u-escaped


def test_term_on_a_terminal_is_short() -> None:
    _, stderr = configure("stderr", fmt="term")
    logging.getLogger("agent.session").info("session established")
    (line,) = stderr.getvalue().splitlines()
    assert re.fullmatch(r"\d\d:\d\d:\d\d INFO session established", line), line


def test_term_falls_back_to_logfmt_when_not_a_terminal(tmp_path: Path) -> None:
    stdout, _ = configure("stdout", fmt="term")  # StringIO: not a terminal
    logging.getLogger("agent").info("hello")
    assert LOGFMT.match(stdout.getvalue().splitlines()[0])
    path = tmp_path / "agent.log"
    configure(str(path), fmt="term")  # a file is never a terminal
    logging.getLogger("agent").info("hello")
    assert LOGFMT.match(path.read_text().splitlines()[0])


def test_an_exception_stays_on_one_line() -> None:
    stdout, _ = configure("stdout")
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        logging.getLogger("agent").exception("it failed")
    (line,) = stdout.getvalue().splitlines()
    message = json.loads(LOGFMT.match(line).group(4))  # type: ignore[union-attr]
    assert message.startswith("it failed Traceback (most recent call last): | ")
    assert message.endswith("ValueError: bad | thing")


def test_a_file_sink_is_appended_to(tmp_path: Path) -> None:
    path = tmp_path / "agent.log"
    path.write_text("earlier line\n")
    stdout, stderr = configure(str(path))
    logging.getLogger("agent").info("later line")
    lines = path.read_text().splitlines()
    assert lines[0] == "earlier line"
    assert json.loads(LOGFMT.match(lines[1]).group(4)) == "later line"  # type: ignore[union-attr]
    assert (stdout.getvalue(), stderr.getvalue()) == ("", "")


def test_an_unopenable_file_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        configure(str(tmp_path / "no-such-dir" / "agent.log"))


def test_false_means_no_log_lines_at_all(capsys: pytest.CaptureFixture[str]) -> None:
    stdout, stderr = configure("false", level="debug")
    logging.getLogger("agent").error("not shown")
    logging.getLogger("protocol").error("not shown either")
    assert (stdout.getvalue(), stderr.getvalue()) == ("", "")
    assert capsys.readouterr() == ("", "")  # nothing leaked to logging's last-resort handler


def test_a_second_call_replaces_the_first() -> None:
    first_out, _ = configure("stdout")
    second_out, _ = configure("stdout", fmt="json")
    logging.getLogger("agent").info("once")
    assert first_out.getvalue() == ""
    assert [json.loads(line)["msg"] for line in second_out.getvalue().splitlines()] == ["once"]
    for name in OWNED:
        marked = [h for h in logging.getLogger(name).handlers if getattr(h, "_burrow_handler", 0)]
        assert len(marked) == 1


def test_only_the_agents_and_protocols_loggers_are_touched() -> None:
    edge = logging.getLogger("edge")
    before = (list(edge.handlers), edge.level, edge.propagate)
    stdout, _ = configure("stdout")
    logging.getLogger("edge.server").warning("someone else's")
    logging.getLogger("trio").warning("someone else's")
    assert stdout.getvalue() == ""
    assert (list(edge.handlers), edge.level, edge.propagate) == before
    for name in OWNED:
        assert logging.getLogger(name).propagate is False  # lines are not printed twice


def test_warning_is_accepted_for_warn() -> None:
    """The level name Python programs use, as the edge accepts it too."""
    stdout, _ = configure("stdout", level="warning", fmt="json")
    logging.getLogger("agent").info("hidden")
    logging.getLogger("agent").warning("shown")
    assert [json.loads(line)["lvl"] for line in stdout.getvalue().splitlines()] == ["warn"]
