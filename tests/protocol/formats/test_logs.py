"""protocol/formats/logs.py: the log line formats, level names and fields both programs share.
Every line of every format is checked to parse: JSON with `json.loads`, logfmt with the small
parser below (space-separated `key=value`, values bare or JSON-quoted)."""

from __future__ import annotations

import io
import json
import logging
import re
import time
from collections.abc import Iterator

import pytest

from protocol.formats.logs import (
    FIELDS,
    LEVEL_NAMES,
    LOG_FORMATS,
    JsonFormatter,
    LogfmtFormatter,
    TermFormatter,
    formatter_for,
    install,
    level_number,
)

TIMESTAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d"
_PAIR = re.compile(r'([a-z_]+)=("(?:[^"\\]|\\.)*"|[^\s"=]+)(?: |$)')


def parse_logfmt(line: str) -> dict[str, str]:
    """One logfmt line as a dict; AssertionError unless the whole line is `key=value` pairs."""
    pairs: dict[str, str] = {}
    position = 0
    while position < len(line):
        match = _PAIR.match(line, position)
        assert match is not None, f"not logfmt at {position}: {line!r}"
        key, value = match.groups()
        assert key not in pairs, f"{key} twice in {line!r}"
        pairs[key] = json.loads(value) if value.startswith('"') else value
        position = match.end()
    return pairs


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    """A logger of its own, put back as it was afterwards."""
    log = logging.getLogger("burrow-test-logs")
    saved = (list(log.handlers), log.level, log.propagate)
    yield log
    log.handlers[:] = saved[0]
    log.setLevel(saved[1])
    log.propagate = saved[2]


def capture(log: logging.Logger, formatter: logging.Formatter, level: str = "debug") -> io.StringIO:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    install(handler, level_number(level), (log.name,))
    return out


def emit_everything(log: logging.Logger) -> None:
    """Records that stress the formats: quotes, `=`, newlines, unicode, fields, a traceback."""
    log.debug("plain")
    log.info('bound "api" at %s', "https://x.example.com", extra={"session": "ts_1"})
    log.warning("a=b c=d\nsecond line", extra={"endpoint": "https://a b", "code": "ERR_NGROK_3200"})
    log.error("café ✓", extra={"session": "ts_2", "endpoint": "tcp://1.tcp:1", "code": None})
    try:
        raise ValueError('bad\n"thing"')
    except ValueError:
        log.critical("it failed", exc_info=True, extra={"code": "BURROW_BAD_REQUEST"})


def test_every_logfmt_line_parses_with_its_fields(logger: logging.Logger) -> None:
    out = capture(logger, LogfmtFormatter())
    emit_everything(logger)
    lines = out.getvalue().splitlines()
    assert len(lines) == 5  # a newline in a message or traceback never splits a record
    parsed = [parse_logfmt(line) for line in lines]
    for record in parsed:
        assert list(record)[:4] == ["t", "lvl", "obj", "msg"]
        assert re.fullmatch(TIMESTAMP, record["t"])
        assert record["obj"] == "burrow-test-logs"
    assert [r["lvl"] for r in parsed] == ["dbug", "info", "warn", "eror", "crit"]
    assert parsed[1]["msg"] == 'bound "api" at https://x.example.com'
    assert parsed[1]["session"] == "ts_1"
    assert parsed[2]["msg"] == "a=b c=d | second line"
    assert (parsed[2]["endpoint"], parsed[2]["code"]) == ("https://a b", "ERR_NGROK_3200")
    assert parsed[3] == {**parsed[3], "session": "ts_2", "endpoint": "tcp://1.tcp:1"}
    assert "code" not in parsed[3]  # None is left out
    assert parsed[4]["msg"].startswith("it failed Traceback (most recent call last): | ")
    assert parsed[4]["code"] == "BURROW_BAD_REQUEST"


def test_every_json_line_parses_with_its_fields(logger: logging.Logger) -> None:
    out = capture(logger, JsonFormatter())
    emit_everything(logger)
    lines = out.getvalue().splitlines()
    assert len(lines) == 5
    records = [json.loads(line) for line in lines]
    assert [r["lvl"] for r in records] == ["dbug", "info", "warn", "eror", "crit"]
    assert set(records[0]) == {"t", "lvl", "obj", "msg"}
    assert records[2]["code"] == "ERR_NGROK_3200" and records[2]["endpoint"] == "https://a b"
    assert records[3]["msg"] == "café ✓" and "code" not in records[3]
    assert "café" in lines[3]  # not \u-escaped


def test_term_lines_are_short_and_carry_the_fields(logger: logging.Logger) -> None:
    out = capture(logger, TermFormatter())
    logger.warning("endpoint offline", extra={"endpoint": "https://x", "code": "ERR_NGROK_3200"})
    (line,) = out.getvalue().splitlines()
    assert re.fullmatch(
        r"\d\d:\d\d:\d\d WARN endpoint offline endpoint=https://x code=ERR_NGROK_3200", line
    ), line


def test_fields_appear_in_one_order_whatever_order_they_are_given(
    logger: logging.Logger,
) -> None:
    out = capture(logger, LogfmtFormatter())
    logger.info("m", extra={"code": "C", "endpoint": "E", "session": "S"})
    assert list(parse_logfmt(out.getvalue().strip()))[4:] == list(FIELDS)


@pytest.mark.parametrize(
    ("name", "level"),
    [
        ("debug", logging.DEBUG),
        ("info", logging.INFO),
        ("warn", logging.WARNING),
        ("warning", logging.WARNING),
        ("error", logging.ERROR),
        ("crit", logging.CRITICAL),
    ],
)
def test_level_names_including_warning(name: str, level: int) -> None:
    assert name in LEVEL_NAMES
    assert level_number(name) == level


def test_an_unknown_level_or_format_names_the_choices() -> None:
    with pytest.raises(ValueError, match="unknown log level 'loud': use one of crit, error, warn"):
        level_number("loud")
    with pytest.raises(ValueError, match="unknown log format 'xml': use one of term, logfmt, json"):
        formatter_for("xml", tty=True)


def test_term_means_logfmt_unless_the_sink_is_a_terminal() -> None:
    assert isinstance(formatter_for("term", tty=True), TermFormatter)
    assert isinstance(formatter_for("term", tty=False), LogfmtFormatter)
    assert isinstance(formatter_for("logfmt", tty=True), LogfmtFormatter)
    assert isinstance(formatter_for("json", tty=True), JsonFormatter)
    assert LOG_FORMATS == ("term", "logfmt", "json")


def test_install_replaces_an_earlier_handler_and_filters_by_level(
    logger: logging.Logger,
) -> None:
    first = capture(logger, LogfmtFormatter())
    second = capture(logger, JsonFormatter(), level="warn")
    logger.info("below the level")
    logger.warning("shown once")
    assert first.getvalue() == ""
    assert [json.loads(line)["msg"] for line in second.getvalue().splitlines()] == ["shown once"]
    assert logger.propagate is False


def test_timestamps_follow_the_record_second_by_second() -> None:
    """The local time is formatted once per second and reused: records in the same second share
    it, and the next second (or an earlier one, from another thread) gets its own."""

    def record_at(created: float) -> logging.LogRecord:
        record = logging.LogRecord("x", logging.INFO, "", 0, "m", None, None)
        record.created = created
        return record

    logfmt, term = LogfmtFormatter(), TermFormatter()
    base = 1_800_000_000.0
    for created in (base, base + 0.9, base + 1.2, base - 60, base + 0.1):
        local = time.localtime(int(created))
        offset = time.strftime("%z", local)
        iso = time.strftime("%Y-%m-%dT%H:%M:%S", local) + offset[:3] + ":" + offset[3:]
        assert parse_logfmt(logfmt.format(record_at(created)))["t"] == iso
        assert term.format(record_at(created)).startswith(time.strftime("%H:%M:%S ", local))
