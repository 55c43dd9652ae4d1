"""What a log line looks like, the same for the agent (`burrow`) and the edge (`burrow-edge`):
the format names, the level names and the structured fields both programs share.

Formats follow ngrok's agent:

* `logfmt`: `t=2026-12-03T10:00:00+00:00 lvl=info obj=edge.tunnels.session msg="..." session=s_1`
  (every value that is not a bare word is a JSON-quoted string, so the line splits on spaces
  outside quotes and each value reads back with a JSON string parser);
* `json`: one JSON object a line, with the keys `t`, `lvl`, `obj`, `msg` and the fields;
* `term`: short, for people at a terminal (`10:00:00 INFO msg session=s_1`); a program that is
  not writing to a terminal uses logfmt instead (`formatter_for`).

Levels are ngrok's names (`debug`, `info`, `warn`, `error`, `crit`); `warning` is accepted as
`warn`, since Python programs and operators say it. Lines show ngrok's four-letter spellings
(`dbug`, `info`, `warn`, `eror`, `crit`).

Fields: a record given `extra={"session": ..., "endpoint": ..., "code": ...}` carries them as
`session=`, `endpoint=`, `code=` (in that order, after `msg`); a field that is absent or None
is left out. Only these names are read, so the lines stay the same shape whoever logs.

Why the standard library's `logging` and not structlog: every module of both programs already
logs through `logging.getLogger(__name__)` (STYLE.md 19), and so do trio, h11 and the other
libraries whose records we may show; structlog would sit on top of `logging` for those anyway,
and what we need from it (three formatters and three fields) is this module. No dependency.

Pure formatting: no streams are opened here; `install` attaches a handler the caller built.
"""

from __future__ import annotations

import json
import logging
import re
import time

__all__ = [
    "FIELDS",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "JsonFormatter",
    "LogfmtFormatter",
    "TermFormatter",
    "formatter_for",
    "install",
    "level_number",
]

#: ngrok's level names and the `logging` levels they mean (the names a user may give).
LOG_LEVELS = {
    "crit": logging.CRITICAL,
    "error": logging.ERROR,
    "warn": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
}
#: Other spellings accepted for a level, and the name they mean.
LEVEL_ALIASES = {"warning": "warn"}
#: Every name `level_number` accepts, for argparse's `choices` and config checks.
LEVEL_NAMES = (*LOG_LEVELS, *LEVEL_ALIASES)
#: The format names, as in ngrok's `log_format`.
LOG_FORMATS = ("term", "logfmt", "json")
#: The structured fields a record may carry (`extra=`), in the order lines show them.
FIELDS = ("session", "endpoint", "code")

#: What a line shows for each level (ngrok's four-letter spellings).
_SHOWN = {
    logging.CRITICAL: "crit",
    logging.ERROR: "eror",
    logging.WARNING: "warn",
    logging.INFO: "info",
    logging.DEBUG: "dbug",
}
#: A logfmt value that needs no quotes: no spaces, quotes, `=` or control characters.
_BARE = re.compile(r"[A-Za-z0-9_.:/@+\-\[\]]+", re.ASCII)
#: The attribute that marks the handlers `install` put in place (so a second call replaces them).
_MARK = "_burrow_handler"


def level_number(name: str) -> int:
    """The `logging` level for a level name (`warning` too); `ValueError` naming the choices."""
    key = LEVEL_ALIASES.get(name, name)
    if key not in LOG_LEVELS:
        raise ValueError(f"unknown log level {name!r}: use one of {', '.join(LOG_LEVELS)}")
    return LOG_LEVELS[key]


#: The last second formatted, and how: a busy agent logs a line per request, and formatting
#: the local time twice per line was a tenth of the line's cost.
_last_stamp: tuple[int, str, str] = (-1, "", "")


def _stamps(created: float) -> tuple[str, str]:
    """(ISO 8601 with offset, HH:MM:SS) for the local second of `created`."""
    global _last_stamp
    second = int(created)
    last = _last_stamp
    if last[0] == second:
        return last[1], last[2]
    local = time.localtime(second)
    offset = time.strftime("%z", local)
    iso = f"{time.strftime('%Y-%m-%dT%H:%M:%S', local)}{offset[:3]}:{offset[3:]}"
    clock = time.strftime("%H:%M:%S", local)
    _last_stamp = (second, iso, clock)
    return iso, clock


def _timestamp(record: logging.LogRecord) -> str:
    return _stamps(record.created)[0]


def _level(record: logging.LogRecord) -> str:
    return _SHOWN.get(record.levelno, record.levelname.lower())


def _message(record: logging.LogRecord) -> str:
    """The message on one line: an exception's traceback joins it with ` | `."""
    text = record.getMessage()
    if record.exc_info:
        text += " " + logging.Formatter().formatException(record.exc_info).replace("\n", " | ")
    return text.replace("\r\n", " | ").replace("\n", " | ")


def _fields(record: logging.LogRecord) -> list[tuple[str, str]]:
    found = []
    for name in FIELDS:
        value = getattr(record, name, None)
        if value is not None:
            found.append((name, str(value)))
    return found


def _logfmt_value(value: str) -> str:
    return value if _BARE.fullmatch(value) else json.dumps(value, ensure_ascii=False)


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = json.dumps(_message(record), ensure_ascii=False)
        line = f"t={_timestamp(record)} lvl={_level(record)} obj={record.name} msg={message}"
        for name, value in _fields(record):
            line += f" {name}={_logfmt_value(value)}"
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body = {
            "t": _timestamp(record),
            "lvl": _level(record),
            "obj": record.name,
            "msg": _message(record),
        }
        body.update(_fields(record))
        return json.dumps(body, ensure_ascii=False)


class TermFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        clock = _stamps(record.created)[1]
        line = f"{clock} {_level(record).upper()} {_message(record)}"
        for name, value in _fields(record):
            line += f" {name}={_logfmt_value(value)}"
        return line


def formatter_for(fmt: str, *, tty: bool) -> logging.Formatter:
    """The formatter for a format name; `term` means logfmt unless the sink is a terminal.
    `ValueError` naming the choices for an unknown name."""
    if fmt == "json":
        return JsonFormatter()
    if fmt == "logfmt" or (fmt == "term" and not tty):
        return LogfmtFormatter()
    if fmt == "term":
        return TermFormatter()
    raise ValueError(f"unknown log format {fmt!r}: use one of {', '.join(LOG_FORMATS)}")


def install(handler: logging.Handler, level: int, loggers: tuple[str, ...]) -> None:
    """Make `handler` the one output of each named logger (and its children) at `level`.

    Replaces (and closes) whatever an earlier call installed on them; loggers not named keep
    logging's defaults. The loggers stop propagating, so no line is printed twice.

    Records stop carrying what no format here shows (the caller's file and line, the thread,
    process and task names; the logging HOWTO's "Optimization" settings, process-wide): an
    agent logs a line per request, and finding the caller's frame was a quarter of its cost."""
    logging._srcfile = None  # documented in the logging HOWTO
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    setattr(handler, _MARK, True)
    closed: set[int] = set()
    for name in loggers:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if getattr(h, _MARK, False)]:
            logger.removeHandler(old)
            if id(old) not in closed and old is not handler:
                closed.add(id(old))
                old.close()
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False
