"""`burrow`, the agent's command line.

    burrow tcp PORT|HOST:PORT [--url tcp://HOST:PORT] [--name N] [--pooling-enabled]
    burrow start (--all | NAME ...)
    burrow config check

Every command takes `--config FILE` (repeatable, or comma-separated: merged left to right),
`--authtoken`, `--metadata`, `--log stdout|stderr|false|PATH`, `--log-level` and
`--log-format term|logfmt|json`. With no `--config`, the default file is read if it exists
(`~/.config/burrow/burrow.yml`), else built-in defaults; `BURROW_AUTHTOKEN`,
`BURROW_CONNECT_URL` and `BURROW_CONNECT_CAS` override the files.

Output: `Forwarding URL -> UPSTREAM` lines on stdout (scripts parse them); notices, errors and
(by default) logs on stderr. Errors are one line, `burrow: ...`, and exit 1. Ctrl-C or SIGTERM
closes the session cleanly and exits 0 after `burrow: stopped`.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import NoReturn, TextIO

import trio

from agent.config import (
    AgentConfig,
    AgentSettings,
    ConfigError,
    EndpointSettings,
    Secret,
    UpstreamSettings,
    default_config_path,
    load_config,
)
from agent.errors import AgentError
from agent.logs import LOG_LEVELS, configure_logging
from agent.requests import AGENT_VERSION
from agent.session import Agent, Reporter
from protocol.urls import (
    URLError,
    infer_binding,
    parse_endpoint_url,
    parse_upstream_url,
    validate_endpoint_url,
)

__all__ = ["CLI_ENDPOINT_NAME", "main", "tcp_endpoint"]

#: The name of the endpoint `burrow tcp` creates, as ngrok names its command-line tunnels.
CLI_ENDPOINT_NAME = "command_line"
_LOG_FORMATS = ("term", "logfmt", "json")
_NO_AUTHTOKEN = (
    "no authtoken: pass --authtoken TOKEN or set BURROW_AUTHTOKEN (get one with "
    "`burrow-edge credential create`), or set agent.authtoken in the config file"
)


class UsageError(Exception):
    """A mistake on the command line or in what it names; printed as one line, exit 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message}; see `{self.prog} --help`")


def _parser() -> _Parser:
    common = _Parser(add_help=False)
    group = common.add_argument_group("global options")
    group.add_argument(
        "--config",
        action="append",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="config file (repeat, or separate with commas, to merge several)",
    )
    group.add_argument("--authtoken", default=argparse.SUPPRESS, help="the edge credential")
    group.add_argument("--metadata", default=argparse.SUPPRESS, help="session metadata")
    group.add_argument(
        "--log",
        metavar="stdout|stderr|false|PATH",
        default=argparse.SUPPRESS,
        help="where log lines go (default: stderr)",
    )
    group.add_argument("--log-level", choices=tuple(LOG_LEVELS), default=argparse.SUPPRESS)
    group.add_argument("--log-format", choices=_LOG_FORMATS, default=argparse.SUPPRESS)

    parser = _Parser(
        prog="burrow",
        parents=[common],
        description="Burrow agent: expose local services through a Burrow edge.",
    )
    parser.add_argument("--version", action="version", version=f"burrow {AGENT_VERSION}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    tcp = commands.add_parser(
        "tcp", parents=[common], help="forward a public tcp:// address to a local port"
    )
    tcp.add_argument("addr", metavar="PORT|HOST:PORT", help="the upstream to forward to")
    tcp.add_argument(
        "--url", help="the endpoint address, tcp://HOST:PORT (default: a random address)"
    )
    tcp.add_argument("--name", default=CLI_ENDPOINT_NAME, help="the endpoint's name")
    tcp.add_argument("--pooling-enabled", action="store_true", help="share the URL with others")

    start = commands.add_parser(
        "start", parents=[common], help="start endpoints defined in the config file"
    )
    start.add_argument("names", nargs="*", metavar="NAME", help="endpoints to start")
    start.add_argument("--all", action="store_true", help="start every endpoint in the config")

    config = commands.add_parser("config", parents=[common], help="config file helpers")
    config_commands = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    config_commands.add_parser(
        "check", parents=[common], help="validate the config file and print where it is"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `burrow` command line; returns the exit status."""
    return run(sys.argv[1:] if argv is None else argv, os.environ, sys.stdout, sys.stderr)


def run(argv: Sequence[str], env: Mapping[str, str], out: TextIO, err: TextIO) -> int:
    """`main` with its environment and output streams passed in."""
    try:
        args = _parser().parse_args(argv)
        if args.command == "config":
            return _config_check(args, env, out)
        config = load_config(_config_paths(args, env), env)
        if args.command == "tcp":
            endpoints: tuple[EndpointSettings, ...] = (
                tcp_endpoint(args.addr, url=args.url, name=args.name, pooling=args.pooling_enabled),
            )
        else:
            endpoints = _selected(config, args.names, start_all=args.all)
        settings = _settings(config.agent, args)
        _logging(settings, args, out, err)
        reporter = Reporter(out, err)
        agent = Agent(settings, endpoints, reporter=reporter)
        return _serve(agent, reporter)
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else 0
    except (UsageError, ConfigError, AgentError) as exc:
        print(f"burrow: {exc}", file=err, flush=True)
        return 1
    except OSError as exc:  # e.g. a log file that cannot be opened
        print(f"burrow: {exc}", file=err, flush=True)
        return 1


def tcp_endpoint(addr: str, *, url: str | None, name: str, pooling: bool) -> EndpointSettings:
    """The endpoint `burrow tcp ADDR --url URL` asks for; raises UsageError if it is invalid."""
    try:
        endpoint_url = parse_endpoint_url(url or "tcp://", default_scheme="tcp")
    except URLError as exc:
        raise UsageError(f"--url: {exc}") from None
    if endpoint_url.scheme != "tcp":
        raise UsageError(
            f"--url {url!r}: `burrow tcp` serves tcp:// addresses; write tcp://HOST:PORT"
        )
    binding = infer_binding(endpoint_url)
    try:
        validate_endpoint_url(endpoint_url, binding=binding)
    except URLError as exc:
        raise UsageError(f"--url: {exc}") from None
    try:
        target = parse_upstream_url(addr, endpoint_scheme="tcp")
    except URLError as exc:
        raise UsageError(f"upstream {addr!r}: {exc}") from None
    if not name.strip():
        raise UsageError("--name must not be empty")
    return EndpointSettings(
        name=name,
        url=str(endpoint_url),
        upstream=UpstreamSettings(
            url=str(target), protocol=None, proxy_protocol=None, target=target
        ),
        pooling_enabled=pooling,
        description="",
        metadata="",
        bindings=(binding,),
        traffic_policy=None,
        traffic_policy_file=None,
        agent_tls_termination=None,
        inspect=False,
        endpoint_url=endpoint_url,
    )


def _config_paths(args: argparse.Namespace, env: Mapping[str, str]) -> list[Path]:
    """The files named by --config, else the default file if it exists, else none."""
    given = [Path(part) for value in getattr(args, "config", []) for part in value.split(",")]
    given = [path for path in given if str(path) not in ("", ".")]
    if given:
        return given
    default = default_config_path(env)
    return [default] if default.is_file() else []


def _config_check(args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> int:
    paths = _config_paths(args, env)
    if not paths:
        raise UsageError(
            f"no config file: {default_config_path(env)} does not exist; pass --config FILE"
        )
    load_config(paths, env)
    print(f"Valid configuration file at {', '.join(map(str, paths))}", file=out, flush=True)
    return 0


def _selected(
    config: AgentConfig, names: Sequence[str], *, start_all: bool
) -> tuple[EndpointSettings, ...]:
    files = ", ".join(map(str, config.sources)) or "the configuration (no config file was read)"
    if start_all and names:
        raise UsageError("pass endpoint names or --all, not both")
    if not start_all and not names:
        raise UsageError("name the endpoints to start (burrow start NAME ...) or pass --all")
    if not config.endpoints:
        raise UsageError(f"no endpoints are defined in {files}; add an endpoints: list")
    if start_all:
        return config.endpoints
    chosen = []
    for name in dict.fromkeys(names):  # each once, in the order given
        endpoint = config.endpoint(name)
        if endpoint is None:
            known = ", ".join(e.name for e in config.endpoints)
            raise UsageError(f"no endpoint named {name!r} in {files}; defined: {known}")
        chosen.append(endpoint)
    return tuple(chosen)


def _settings(settings: AgentSettings, args: argparse.Namespace) -> AgentSettings:
    """The config's agent settings with the command-line overrides applied."""
    if getattr(args, "authtoken", None):
        settings = replace(settings, authtoken=Secret(args.authtoken))
    if getattr(args, "metadata", None) is not None:
        settings = replace(settings, metadata=args.metadata)
    if settings.authtoken is None:
        raise UsageError(_NO_AUTHTOKEN)
    return settings


def _logging(settings: AgentSettings, args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
    # The config's default sink is ngrok's `false`; Burrow logs to stderr unless told otherwise.
    sink = getattr(args, "log", None) or (settings.log if settings.log != "false" else "stderr")
    level = getattr(args, "log_level", None) or settings.log_level
    fmt = getattr(args, "log_format", None) or settings.log_format
    configure_logging(sink, level, fmt, stdout=out, stderr=err)


def _serve(agent: Agent, reporter: Reporter) -> int:
    try:
        return trio.run(_serve_until_signal, agent, reporter)
    except KeyboardInterrupt:  # Ctrl-C before the signal handler was installed
        reporter.notice("stopped")
        return 0


#: After SIGINT/SIGTERM the agent gets this long to say GOAWAY and close; a second signal, or
#: the end of this wait, stops it at once.
STOP_GRACE = 2.0


async def _serve_until_signal(agent: Agent, reporter: Reporter) -> int:
    """Run the agent until it returns or fails; SIGINT/SIGTERM asks it to stop cleanly."""
    status = 0
    returned = False

    async def watch_signals(scope: trio.CancelScope) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                agent.stop()
                break
            with trio.move_on_after(STOP_GRACE):
                async for _ in signals:
                    break
            scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch_signals, nursery.cancel_scope)
        try:
            await agent.run()
        except AgentError as exc:
            reporter.notice(str(exc))
            status = 1
        returned = True
        nursery.cancel_scope.cancel()
    if not returned:  # stopped at once by a second signal or after STOP_GRACE
        reporter.notice("stopped")
    return status
