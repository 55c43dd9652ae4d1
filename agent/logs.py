"""Where the agent's log lines go (`--log`, `--log-level`, `--log-format`, and the same keys
under `agent:` in the config file). What they look like is shared with the edge:
`protocol.formats.logs` (formats `term`, `logfmt`, `json`; ngrok's level names).

Sinks: `stderr` (Burrow's default: stdout carries the `Forwarding` lines that scripts parse),
`stdout`, `false` (no log lines at all) or a file path (appended to). `term` falls back to
logfmt when the sink is not a terminal.
"""

from __future__ import annotations

import logging
from typing import TextIO

from protocol.formats.logs import LOG_LEVELS, formatter_for, install, level_number

__all__ = ["LOG_LEVELS", "configure_logging"]

# The loggers this program owns; everything else (trio, ...) keeps logging's defaults.
_PACKAGES = ("agent", "protocol")


def configure_logging(sink: str, level: str, fmt: str, *, stdout: TextIO, stderr: TextIO) -> None:
    """Send the agent's and the protocol's log records to `sink` at `level` in `fmt`.

    Replaces whatever an earlier call installed. Raises OSError if a log file cannot be
    opened (the caller reports it); ValueError for an unknown level or format name.
    """
    number = level_number(level)
    handler: logging.Handler
    stream: TextIO | None = None
    if sink == "false":
        handler = logging.NullHandler()
    elif sink in ("stdout", "stderr"):
        stream = stdout if sink == "stdout" else stderr
        handler = logging.StreamHandler(stream)
    else:
        handler = logging.FileHandler(sink, encoding="utf-8")
    handler.setFormatter(formatter_for(fmt, tty=stream is not None and _isatty(stream)))
    install(handler, number, _PACKAGES)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
