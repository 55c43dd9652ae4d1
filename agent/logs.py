"""Where the agent's log lines go and what they look like (`--log`, `--log-level`,
`--log-format`, and the same keys under `agent:` in the config file).

Sinks: `stderr` (Burrow's default: stdout carries the `Forwarding` lines that scripts parse),
`stdout`, `false` (no log lines at all) or a file path (appended to). Formats follow ngrok's:
`logfmt` (`t=... lvl=info obj=agent.session msg="..."`), `json` (one object per line) and
`term` (short, for people), which falls back to logfmt when the sink is not a terminal.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TextIO

__all__ = ["LOG_LEVELS", "configure_logging"]

#: ngrok's level names and the logging levels they mean.
LOG_LEVELS = {
    "crit": logging.CRITICAL,
    "error": logging.ERROR,
    "warn": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
}
_NGROK_NAMES = {
    logging.CRITICAL: "crit",
    logging.ERROR: "eror",
    logging.WARNING: "warn",
    logging.INFO: "info",
    logging.DEBUG: "dbug",
}
# The loggers this program owns; everything else (trio, ...) keeps logging's defaults.
_PACKAGES = ("agent", "protocol")
_MARK = "_burrow_handler"


def _timestamp(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created))
    offset = time.strftime("%z", time.localtime(record.created))
    return f"{seconds}{offset[:3]}:{offset[3:]}"


def _message(record: logging.LogRecord) -> str:
    text = record.getMessage()
    if record.exc_info:
        text += " " + logging.Formatter().formatException(record.exc_info).replace("\n", " | ")
    return text


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        level = _NGROK_NAMES.get(record.levelno, record.levelname.lower())
        message = json.dumps(_message(record), ensure_ascii=False)
        return f"t={_timestamp(record)} lvl={level} obj={record.name} msg={message}"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "t": _timestamp(record),
                "lvl": _NGROK_NAMES.get(record.levelno, record.levelname.lower()),
                "obj": record.name,
                "msg": _message(record),
            },
            ensure_ascii=False,
        )


class TermFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        clock = time.strftime("%H:%M:%S", time.localtime(record.created))
        level = _NGROK_NAMES.get(record.levelno, record.levelname.lower()).upper()
        return f"{clock} {level} {_message(record)}"


def configure_logging(sink: str, level: str, fmt: str, *, stdout: TextIO, stderr: TextIO) -> None:
    """Send the agent's and the protocol's log records to `sink` at `level` in `fmt`.

    Replaces whatever an earlier call installed. Raises OSError if a log file cannot be
    opened (the caller reports it).
    """
    handler: logging.Handler
    stream: TextIO | None = None
    if sink == "false":
        handler = logging.NullHandler()
    elif sink in ("stdout", "stderr"):
        stream = stdout if sink == "stdout" else stderr
        handler = logging.StreamHandler(stream)
    else:
        handler = logging.FileHandler(sink, encoding="utf-8")
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    elif fmt == "term" and stream is not None and _isatty(stream):
        handler.setFormatter(TermFormatter())
    else:
        handler.setFormatter(LogfmtFormatter())
    setattr(handler, _MARK, True)
    for name in _PACKAGES:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if getattr(h, _MARK, False)]:
            logger.removeHandler(old)
            old.close()
        logger.addHandler(handler)
        logger.setLevel(LOG_LEVELS[level])
        logger.propagate = False


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
