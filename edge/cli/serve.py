"""`burrow-edge serve` and `burrow-edge config check`: running the edge from a terminal or a
service manager, its log lines, and its startup errors.

Log lines go to stderr in the format and at the level given (`--log-format term|logfmt|json`,
`--log-level debug|info|warn|error|crit`, `warning` accepted), shaped as the agent's are
(`protocol.formats.logs`); `term` is logfmt when stderr is not a terminal. stdout carries the
`burrow-edge ready: ...` line that scripts wait for; the hints after it (how agents connect, how
to make an authtoken) are log lines too.

A startup error is one line on stderr naming what was wrong, where (the address and its config
key, the file and key) and what to do, and the exit status is 1: never a traceback or an
`ExceptionGroup`.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TextIO

import trio

from edge.certs.ca import DevCA
from edge.config import EdgeConfig
from edge.config_file import load_edge_config
from edge.server import (
    EdgeAddresses,
    ListenError,
    agent_tls_context,
    prepare_data_dir,
    serve_edge,
)
from edge.store import SQLiteStore
from protocol.formats.logs import LEVEL_NAMES, LOG_FORMATS, formatter_for, install, level_number
from protocol.formats.urls import format_host_port

__all__ = ["add_log_options", "configure_edge_logging", "run_config_check", "run_serve"]

log = logging.getLogger("burrow-edge")

#: The loggers the edge owns; others (trio, h2, ...) keep logging's defaults.
EDGE_LOGGERS = ("edge", "protocol", "burrow-edge")


def add_log_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level",
        default="info",
        choices=LEVEL_NAMES,
        help="the least severe lines shown (default: info; warning means warn)",
    )
    parser.add_argument(
        "--log-format",
        default="term",
        choices=LOG_FORMATS,
        help="term (for people; logfmt when stderr is not a terminal), logfmt or json: one "
        "line a record, as the agent writes them (default: term)",
    )


def configure_edge_logging(level: str, fmt: str, stream: TextIO) -> None:
    """The edge's, the protocol's and the CLI's records to `stream` at `level` in `fmt`."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter_for(fmt, tty=_isatty(stream)))
    install(handler, level_number(level), EDGE_LOGGERS)


def run_serve(args: argparse.Namespace) -> int:
    """`burrow-edge serve`. `ConfigError`, `StoreError` and `CertError` propagate for
    `edge.cli.main` to print; an address that cannot be bound is printed here, in one line."""
    config = load_edge_config(args.config)
    ca, store = prepare_data_dir(args.data_dir, new_store=args.new_store)
    failed: ListenError | None = None
    try:
        # A bad tls.cert/tls.key is a CertError naming the key, printed by main() before
        # anything listens (serve_edge builds the context again: a millisecond).
        agent_tls_context(config, ca)
        # Only now, once nothing can fail on the way: the handlers are process-wide.
        configure_edge_logging(args.log_level, args.log_format, sys.stderr)
        trio.run(_serve_until_signalled, config, ca, store)
    except* ListenError as group:
        failed = _first(group)
    except* KeyboardInterrupt:
        pass
    finally:
        store.close()
    if failed is not None:
        print(f"burrow-edge: {failed}", file=sys.stderr)
        return 1
    log.info("stopped")
    return 0


def _first(group: BaseExceptionGroup[ListenError]) -> ListenError:
    """The first ListenError in a (possibly nested) group."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first(exc)
        return exc
    raise AssertionError("an empty exception group")  # pragma: no cover - groups are never empty


def run_config_check(args: argparse.Namespace) -> int:
    """`burrow-edge config check --config FILE`: load and validate the file as `serve` would
    (every key, limit and referenced file), without a data directory or a listener. Prints
    `FILE: ok` and returns 0; a `ConfigError` (naming the file and key) propagates."""
    path: Path = args.config
    config = load_edge_config(path)
    http, admin = config.listen.http, config.admin
    listens = (
        f"tls={format_host_port(*config.listen.tls)}",
        "http=off" if http is None else f"http={format_host_port(*http)}",
        f"admin={format_host_port(*admin.listen)}" if admin.enabled else "admin=off",
    )
    print(f"{path}: ok ({' '.join(listens)}, connect host {config.connect_host})")
    return 0


#: Seconds past `limits.drain_timeout` that a drain may take before it is cut short: the
#: drain ends the sessions itself once the timeout passes; this only bounds a stuck one.
_DRAIN_MARGIN = 2.0


async def _serve_until_signalled(config: EdgeConfig, ca: DevCA, store: SQLiteStore) -> None:
    # SIGTERM is caught from before the ready line: a service manager (or a test) may send it
    # the moment it sees that line, and it must still end in a clean stop.
    draining, served = trio.Event(), trio.Event()

    async def run_edge(*, task_status: trio.TaskStatus[EdgeAddresses]) -> None:
        try:
            await serve_edge(
                config, ca, store, reload_on_sighup=True, drain=draining, task_status=task_status
            )
        finally:
            served.set()

    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            addresses: EdgeAddresses = await nursery.start(run_edge)
            host, port = addresses.agents
            admin = "off" if addresses.admin is None else format_host_port(*addresses.admin)
            http = "off" if addresses.http is None else format_host_port(*addresses.http)
            print(
                f"burrow-edge ready: tls={format_host_port(host, port)} http={http} admin={admin}",
                flush=True,
            )
            # Hints for the operator, as log lines: stderr holds only lines of the chosen format.
            log.info("agents connect to %s:%d and trust %s", config.connect_host, port, ca.ca_path)
            data_dir = store.path.parent
            log.info(
                "create an authtoken with: burrow-edge credential create --data-dir %s", data_dir
            )
            log.info(
                "create an admin API key with: burrow-edge api-key create --data-dir %s", data_dir
            )
            async for _ in signals:
                # Drain (edge.server._drain): no new connections, agents told to reconnect,
                # in-flight ones get limits.drain_timeout. A second SIGTERM stops at once.
                log.info("SIGTERM: shutting down")
                draining.set()
                break
            with trio.move_on_after(config.limits.drain_timeout + _DRAIN_MARGIN):
                async with trio.open_nursery() as waiting:
                    waiting.start_soon(_cancel_on_signal, signals, waiting.cancel_scope)
                    await served.wait()
                    waiting.cancel_scope.cancel()
            nursery.cancel_scope.cancel()


async def _cancel_on_signal(signals: AsyncIterator[int], scope: trio.CancelScope) -> None:
    """Cancel `scope` at the next signal (a second SIGTERM: stop draining, stop now)."""
    async for _ in signals:
        scope.cancel()
        return


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
