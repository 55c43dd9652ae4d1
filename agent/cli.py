"""`burrow`, the agent's command line.

    burrow http UPSTREAM [--url URL] [ENDPOINT FLAGS] [--upstream-protocol http1]
                [--upstream-tls-verify[=true|false]] [--upstream-tls-verify-cas PATH]
    burrow tls  UPSTREAM [--url tls://HOST] [ENDPOINT FLAGS]
                [--crt PATH --key PATH [--mutual-tls-cas PATH]]
    burrow tcp  UPSTREAM [--url tcp://HOST:PORT] [ENDPOINT FLAGS]
    burrow start (--all | NAME ...)
    burrow config check | add-authtoken TOKEN | add-connect-url HOST:PORT
    burrow diagnose
    burrow completion bash|zsh|fish
    burrow version
    burrow service install --config FILE [--root DIR]
    burrow service start|stop|restart|status|uninstall

    ENDPOINT FLAGS: --name N, --binding public|internal|kubernetes, --pooling-enabled[=BOOL],
                    --description TEXT, --metadata TEXT, --upstream-proxy-protocol 1|2

UPSTREAM takes ngrok's forms (reference §1.6): `8080` (localhost), `host:port`, `[::1]:8080`,
and for `http` also `http://host[:port]`, `https://host[:port]` (ports default to 80 and 443),
`https://` alone (localhost:443) and a bare domain (`example.org`, http on 80). An https://
upstream is reached over TLS, verified against the system's CAs, or only those in
`--upstream-tls-verify-cas`, or not at all with `--upstream-tls-verify=false`. `burrow http`
asks for a random https name unless `--url` says otherwise; `burrow tls --crt --key` terminates
TLS at the agent, and `--mutual-tls-cas` then requires client certificates signed by those CAs.
Boolean flags follow Go's syntax, as ngrok's do: `--flag`, `--flag=true`, `--flag=false`.

Every command takes `--config FILE` (repeatable, or comma-separated: merged left to right),
`--authtoken`, `--log stdout|stderr|false|PATH`, `--log-level` and `--log-format
term|logfmt|json`. `--metadata` after `http`, `tls` or `tcp` is the endpoint's metadata, as in
ngrok; anywhere else (`burrow --metadata M tcp 22`, `burrow start --metadata M`) it is the
session's. With no `--config`, the default file is read if it exists
(`~/.config/burrow/burrow.yml`), else built-in defaults; `BURROW_AUTHTOKEN`,
`BURROW_CONNECT_URL` and `BURROW_CONNECT_CAS` override the files.

Output: on a terminal (console_ui: iftty, the default), a live status view (agent.console).
Elsewhere, `Forwarding URL -> UPSTREAM` lines on stdout (scripts parse them); notices, errors
and (by default) logs on stderr, one info line per connection or HTTP request; with
`--log-format logfmt|json` the Forwarding and notice lines are records in that format too.
Errors are one line, `burrow: ...`, and exit 1. Ctrl-C or SIGTERM closes the session cleanly
and exits 0 after `burrow: stopped`.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import NoReturn, TextIO

import trio

from agent.cli_config import add_config_edit_parsers, config_edit_command
from agent.cli_endpoints import CLI_ENDPOINT_NAME, http_endpoint, tcp_endpoint, tls_endpoint
from agent.completion import add_completion_parser, completion_command
from agent.config import (
    AgentConfig,
    AgentSettings,
    ConfigError,
    EndpointSettings,
    Secret,
    default_config_path,
)
from agent.config_load import load_config
from agent.console import (
    Console,
    ConsoleReporter,
    console_wanted,
    log_request,
    reporter_for,
    view_log_sink,
)
from agent.deprecated_flags import add_deprecated_flags, apply_deprecated_flags
from agent.diagnose import add_diagnose_parser, diagnose_command
from agent.errors import AgentError, UsageError
from agent.inspector.capture import DEFAULT_INSPECT_DB_SIZE, CaptureStore
from agent.inspector.server import serve_agent_web
from agent.logs import LOG_LEVELS, configure_logging
from agent.metrics import AgentMetrics
from agent.requests import AGENT_VERSION
from agent.service import add_service_parser, service_command
from agent.session import Agent, Reporter
from protocol.formats.urls import BINDINGS

log = logging.getLogger(__name__)

__all__ = ["endpoint_from_argv", "main", "run"]

_LOG_FORMATS = ("term", "logfmt", "json")
_NO_AUTHTOKEN = (
    "no authtoken: pass --authtoken TOKEN or set BURROW_AUTHTOKEN (get one with "
    "`burrow-edge credential create`), or set agent.authtoken in the config file"
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message}; see `{self.prog} --help`")


#: Boolean flags written Go's way (`--flag`, `--flag=false`); `_expand_bool_flags` turns the
#: `=value` forms into `--flag` / `--no-flag` before argparse sees them, so that a bare flag
#: never swallows the word after it (`burrow tcp --pooling-enabled 5432`).
_BOOL_FLAGS = ("--pooling-enabled", "--upstream-tls-verify", "--inspect")
#: Go's strconv.ParseBool, which ngrok's flags use.
_GO_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_GO_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def _expand_bool_flags(argv: Sequence[str]) -> list[str]:
    expanded: list[str] = []
    for index, arg in enumerate(argv):
        if arg == "--":
            return expanded + list(argv[index:])
        flag, sep, value = arg.partition("=")
        if not sep or flag not in _BOOL_FLAGS:
            expanded.append(arg)
        elif value in _GO_TRUE:
            expanded.append(flag)
        elif value in _GO_FALSE:
            expanded.append("--no-" + flag.removeprefix("--"))
        else:
            raise UsageError(f"{arg}: expected {flag}=true or {flag}=false")
    return expanded


def _global_options(parser: argparse.ArgumentParser, *, metadata: bool) -> None:
    group = parser.add_argument_group("global options")
    group.add_argument(
        "--config",
        action="append",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="config file (repeat, or separate with commas, to merge several)",
    )
    group.add_argument("--authtoken", default=argparse.SUPPRESS, help="the edge credential")
    if metadata:
        group.add_argument("--metadata", default=argparse.SUPPRESS, help="session metadata")
    group.add_argument(
        "--log",
        metavar="stdout|stderr|false|PATH",
        default=argparse.SUPPRESS,
        help="where log lines go (default: stderr)",
    )
    # ngrok's level names, and `warning` for `warn` (protocol.formats.logs, shared with the edge)
    group.add_argument("--log-level", choices=(*LOG_LEVELS, "warning"), default=argparse.SUPPRESS)
    group.add_argument("--log-format", choices=_LOG_FORMATS, default=argparse.SUPPRESS)


_Options = argparse.ArgumentParser | argparse._ArgumentGroup


def _bool_flag(parser: _Options, flag: str, help_text: str) -> None:
    """`--flag` (true) and a hidden `--no-flag` (false, from `--flag=false`); default None."""
    dest = flag.removeprefix("--").replace("-", "_")
    parser.add_argument(
        flag, dest=dest, action="store_const", const=True, default=None, help=help_text
    )
    no_flag = "--no-" + flag.removeprefix("--")
    parser.add_argument(
        no_flag, dest=dest, action="store_const", const=False, help=argparse.SUPPRESS
    )


def _endpoint_options(parser: argparse.ArgumentParser, *, url_help: str) -> None:
    group = parser.add_argument_group("endpoint options")
    group.add_argument("--url", help=url_help)
    group.add_argument("--name", default=CLI_ENDPOINT_NAME, help="the endpoint's name")
    group.add_argument(
        "--binding", choices=BINDINGS, help="public, or internal (inferred from a .internal URL)"
    )
    _bool_flag(group, "--pooling-enabled", "share the URL with other agents' endpoints")
    group.add_argument("--description", default="", help="shown on the endpoint's API object")
    group.add_argument(
        "--metadata", dest="endpoint_metadata", default="", help="the endpoint's metadata"
    )
    group.add_argument(
        "--upstream-proxy-protocol",
        choices=(1, 2),
        type=_int_or_text,
        metavar="1|2",
        help="write a PROXY protocol header (version 1 or 2) to the upstream first",
    )
    group.add_argument(
        "--traffic-policy-file",
        metavar="PATH",
        help="a Traffic Policy (YAML or JSON) the edge enforces for this endpoint",
    )


def _int_or_text(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def _parser() -> _Parser:
    common = _Parser(add_help=False)
    _global_options(common, metadata=True)
    endpoint_common = _Parser(add_help=False)
    _global_options(endpoint_common, metadata=False)

    parser = _Parser(
        prog="burrow",
        parents=[common],
        description="Burrow agent: expose local services through a Burrow edge.",
    )
    parser.add_argument("--version", action="version", version=f"burrow {AGENT_VERSION}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    http = commands.add_parser(
        "http",
        parents=[endpoint_common],
        help="forward a public https:// (or http://) URL to a local web server",
    )
    http.add_argument(
        "addr", metavar="UPSTREAM", help="8080, host:port, http(s)://host[:port] or a domain"
    )
    _endpoint_options(
        http, url_help="https://HOST, http://HOST or HOST (default: a random https name)"
    )
    add_deprecated_flags(http, "http")
    upstream = http.add_argument_group("upstream options")
    upstream.add_argument(
        "--upstream-protocol", choices=("http1", "http2"), help="http1 (http2: not yet)"
    )
    _bool_flag(
        upstream,
        "--upstream-tls-verify",
        "verify an https:// upstream's certificate (default; --upstream-tls-verify=false "
        "turns it off)",
    )
    _bool_flag(
        upstream,
        "--inspect",
        "capture requests for the inspector on web_addr (default; --inspect=false turns it off)",
    )
    upstream.add_argument(
        "--upstream-tls-verify-cas",
        metavar="PATH",
        help="PEM CA bundle to verify an https:// upstream with, instead of the system's",
    )

    tls = commands.add_parser(
        "tls", parents=[endpoint_common], help="forward a public tls:// name to a local port"
    )
    tls.add_argument("addr", metavar="UPSTREAM", help="the upstream: PORT or HOST:PORT")
    _endpoint_options(tls, url_help="tls://HOST (default: a random name)")
    add_deprecated_flags(tls, "tls")
    termination = tls.add_argument_group("TLS termination at the agent")
    termination.add_argument("--crt", metavar="PATH", help="PEM certificate (chain) to serve")
    termination.add_argument("--key", metavar="PATH", help="PEM private key of --crt")
    termination.add_argument(
        "--mutual-tls-cas",
        metavar="PATH",
        help="PEM CAs; clients must present a certificate signed by one of them",
    )

    tcp = commands.add_parser(
        "tcp", parents=[endpoint_common], help="forward a public tcp:// address to a local port"
    )
    tcp.add_argument("addr", metavar="UPSTREAM", help="the upstream: PORT or HOST:PORT")
    _endpoint_options(tcp, url_help="tcp://HOST:PORT (default: a random address)")
    add_deprecated_flags(tcp, "tcp")

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
    add_config_edit_parsers(config_commands, [common])
    add_service_parser(commands)
    add_diagnose_parser(commands, [common])
    add_completion_parser(commands)
    commands.add_parser("version", help="print burrow's version (as --version does)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `burrow` command line; returns the exit status."""
    return run(sys.argv[1:] if argv is None else argv, os.environ, sys.stdout, sys.stderr)


def run(argv: Sequence[str], env: Mapping[str, str], out: TextIO, err: TextIO) -> int:
    """`main` with its environment and output streams passed in."""
    try:
        args = _parser().parse_args(_expand_bool_flags(argv))
        if args.command == "version":
            print(f"burrow {AGENT_VERSION}", file=out)
            return 0
        if args.command == "config" and args.config_command != "check":
            return config_edit_command(args, env, out)
        if args.command == "config":
            return _config_check(args, env, out)
        if args.command == "service":
            return service_command(args, env, out)
        if args.command == "completion":
            return completion_command(args, _parser(), out)
        config = load_config(_config_paths(args, env), env)
        if args.command == "diagnose":
            return diagnose_command(args, config.agent, env, out)
        notes: list[str] = []  # deprecated flags used, as ngrok warns of them
        if args.command in _ENDPOINT_COMMANDS:
            notes = apply_deprecated_flags(args, args.command)
            endpoints: tuple[EndpointSettings, ...] = (_command_endpoint(args),)
        else:
            endpoints = _selected(config, args.names, start_all=args.all)
        settings = _settings(config.agent, args)
        view, fmt = _logging(settings, args, out, err)
        for line in (*notes, *config.not_supported):
            log.warning("%s", line)
        reporter = ConsoleReporter(out, err) if view else reporter_for(fmt, out, err)
        # web_addr: false turns capture and metrics off (nothing is added to the data path)
        # unless the console view (agent.console) shows them; inspect_db_size: -1 turns
        # capture off. Each captured request is logged when it ends (log_request).
        captures = metrics = None
        if settings.web_addr is not None or view:
            metrics = AgentMetrics()
            if settings.inspect_db_size != -1:
                size = settings.inspect_db_size or DEFAULT_INSPECT_DB_SIZE
                captures = CaptureStore(size, on_complete=log_request)
        agent = Agent(settings, endpoints, reporter=reporter, captures=captures, metrics=metrics)
        console = None
        if isinstance(reporter, ConsoleReporter) and metrics is not None:
            stdin = sys.stdin.fileno() if sys.stdin is not None and sys.stdin.isatty() else None
            console = Console(
                agent, reporter, out, metrics=metrics, captures=captures, stdin_fd=stdin
            )
        return _serve(agent, reporter, console)
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else 0
    except (ConfigError, AgentError) as exc:  # UsageError is an AgentError
        print(f"burrow: {exc}", file=err, flush=True)
        return 1
    except OSError as exc:  # e.g. a log file that cannot be opened
        print(f"burrow: {exc}", file=err, flush=True)
        return 1


_ENDPOINT_COMMANDS = ("http", "tls", "tcp")


def endpoint_from_argv(argv: Sequence[str]) -> EndpointSettings:
    """The endpoint a `burrow http|tls|tcp ...` command line (without the program name) asks
    for; its global options are parsed and ignored. Raises UsageError."""
    args = _parser().parse_args(_expand_bool_flags(argv))
    if args.command not in _ENDPOINT_COMMANDS:
        raise UsageError(f"`burrow {args.command}` does not define an endpoint")
    apply_deprecated_flags(args, args.command)
    return _command_endpoint(args)


def _command_endpoint(args: argparse.Namespace) -> EndpointSettings:
    common = {
        "url": args.url,
        "name": args.name,
        "binding": args.binding,
        "pooling": bool(args.pooling_enabled),
        "description": args.description,
        "metadata": args.endpoint_metadata,
        "proxy_protocol": args.upstream_proxy_protocol,
        "traffic_policy_file": args.traffic_policy_file,
    }
    if args.command == "http":
        return http_endpoint(
            args.addr,
            **common,
            upstream_protocol=args.upstream_protocol,
            tls_verify=args.upstream_tls_verify,
            tls_verify_cas=args.upstream_tls_verify_cas,
            inspect=args.inspect is not False,
        )
    if args.command == "tls":
        return tls_endpoint(
            args.addr, **common, crt=args.crt, key=args.key, mutual_tls_cas=args.mutual_tls_cas
        )
    return tcp_endpoint(args.addr, **common)


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
    config = load_config(paths, env)
    for line in config.not_supported:
        print(f"warning: {line}", file=out)
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


def _logging(
    settings: AgentSettings, args: argparse.Namespace, out: TextIO, err: TextIO
) -> tuple[bool, str]:
    """Set up logging; whether the console view is on (agent.console), and the format."""
    # Burrow logs to stderr unless told otherwise (AgentSettings.log); `log: false` silences.
    sink = getattr(args, "log", None) or settings.log
    level = getattr(args, "log_level", None) or settings.log_level
    fmt = getattr(args, "log_format", None) or settings.log_format
    view = console_wanted(settings.console_ui, stdout_tty=_isatty(out), sink=sink)
    if view:  # log lines never go to the view's terminal
        sink = view_log_sink(sink, stderr_tty=_isatty(err))
    configure_logging(sink, level, fmt, stdout=out, stderr=err)
    return view, fmt


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _serve(agent: Agent, reporter: Reporter, console: Console | None = None) -> int:
    try:
        return trio.run(_serve_until_signal, agent, reporter, console)
    except KeyboardInterrupt:  # Ctrl-C before the signal handler was installed
        reporter.notice("stopped")
        return 0


#: After SIGINT/SIGTERM the agent drains (`Agent.drain`: GOAWAY, no new streams, in-flight
#: streams get `agent.drain_timeout`), then gets this long more to close; a second signal
#: ends the drain at once, and a third, or the end of this wait, stops it outright.
STOP_GRACE = 2.0


async def _serve_until_signal(
    agent: Agent, reporter: Reporter, console: Console | None = None
) -> int:
    """Run the agent until it returns or fails; SIGINT/SIGTERM asks it to stop cleanly.
    `console`, if given, draws the live view meanwhile (and restores the terminal after)."""
    status = 0
    returned = False

    async def watch_signals(scope: trio.CancelScope) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                agent.drain()
                break
            with trio.move_on_after(agent.settings.drain_timeout):
                async for _ in signals:
                    agent.stop()  # a second signal: no more waiting for streams
                    break
            with trio.move_on_after(STOP_GRACE):
                async for _ in signals:
                    break
            scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch_signals, nursery.cancel_scope)
        if agent.settings.web_addr is not None:
            nursery.start_soon(serve_agent_web, agent)
        if console is not None:
            nursery.start_soon(console.run)
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
