"""`burrow-edge`: run the edge and manage its credentials from a terminal.

This module builds the command line and sends each command to the module that runs it: `serve`
and `config check` (edge.cli.serve), `credential` (edge.cli.credentials), `service-user`
(edge.cli.service_users), `api-key` and `init` (edge.cli.api_keys), `events` (edge.cli.events),
`sessions` (edge.cli.sessions), `endpoint` (edge.cli.endpoint) and `policy`
(edge.cli.policy, edge.cli.policy_test). Every failure a user can cause is printed as one
`burrow-edge: ...` line on stderr, with exit status 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from edge.certs.ca import CertError
from edge.cli.api_client import API_KEY_ENV, API_URL_ENV, DEFAULT_API_URL, ApiClientError
from edge.cli.api_keys import add_api_key_parsers, run_api_key
from edge.cli.credentials import add_credential_parser, run_credential
from edge.cli.endpoint import add_endpoint_parser, run_endpoint
from edge.cli.events import add_events_parser, run_events
from edge.cli.options import (
    api_client,
    api_options,
    data_dir_option,
    default_data_dir,
    needs_api_key,
    new_store_option,
)
from edge.cli.policy import add_policy_parser, run_policy
from edge.cli.policy_test import add_policy_test_parser, run_policy_test
from edge.cli.serve import add_log_options, run_config_check, run_serve
from edge.cli.service_users import add_service_user_parser, run_service_user
from edge.cli.sessions import add_sessions_parser, run_sessions
from edge.config_file import ConfigError
from edge.store import EmptyStoreError, StoreError
from edge.tunnels.session import EDGE_VERSION

log = logging.getLogger("burrow-edge")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="burrow-edge",
        description="Burrow's self-hosted edge (ngrok-compatible).",
        epilog=(
            "Management commands work offline on the store (--data-dir) or, given an admin API "
            f"key (--api-key or ${API_KEY_ENV}), through the running edge's admin API "
            f"(--api-url or ${API_URL_ENV}, default {DEFAULT_API_URL}). `sessions` and "
            "`events list --follow` need the running edge."
        ),
    )
    parser.add_argument("--version", action="version", version=f"burrow-edge {EDGE_VERSION}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the edge")
    data_dir_option(serve)
    new_store_option(serve)
    serve.add_argument("--config", type=Path, help="edge.yml (see deploy/edge.example.yml)")
    add_log_options(serve)
    config = commands.add_parser("config", help="check an edge config file")
    config_commands = config.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = config_commands.add_parser(
        "check", help="load and validate a config file as `serve` would, without serving"
    )
    check.add_argument("--config", type=Path, required=True, help="the edge.yml to check")
    commands.add_parser("version", help="print burrow-edge's version")

    add_credential_parser(commands)
    add_service_user_parser(commands)
    add_api_key_parsers(commands)
    add_events_parser(commands)
    add_sessions_parser(commands)
    add_endpoint_parser(commands, partial(api_options, offline=False))
    add_policy_test_parser(add_policy_parser(commands))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "policy":
        if args.action == "test":
            return run_policy_test(args)  # offline: edge/cli/policy_test.py
        return run_policy(args)  # offline, no store: edge/cli/policy.py
    if args.command == "version":
        print(f"burrow-edge {EDGE_VERSION}")
        return 0
    try:
        if args.command == "config":
            return run_config_check(args)  # edge/cli/serve.py
        client = api_client(parser, args)
        args.data_dir_given = getattr(args, "data_dir", None) is not None
        if getattr(args, "data_dir", False) is None:
            args.data_dir = default_data_dir()
        if args.command == "serve":
            return run_serve(args)  # edge/cli/serve.py
        if args.command == "sessions":
            return run_sessions(args, client)  # edge/cli/sessions.py
        if args.command == "endpoint":
            if client is None:
                raise ApiClientError(needs_api_key("`burrow-edge endpoint`"))
            return run_endpoint(args, client)  # edge/cli/endpoint.py
        if args.command == "events":
            return run_events(args, client)  # edge/cli/events.py
        if args.command == "service-user":
            return run_service_user(args, client)  # edge/cli/service_users.py
        if args.command in ("api-key", "init"):
            return run_api_key(args, client)  # edge/cli/api_keys.py
        return run_credential(args, client)  # edge/cli/credentials.py
    except ApiClientError as exc:
        print(f"burrow-edge: {exc}", file=sys.stderr)
        return 1
    except EmptyStoreError as exc:
        print(f"burrow-edge: {exc}, or {_START_A_NEW_STORE}", file=sys.stderr)
        return 1
    except (ConfigError, StoreError, CertError) as exc:
        print(f"burrow-edge: {exc}", file=sys.stderr)
        return 1


_START_A_NEW_STORE = (
    "start a new empty store in its place (every authtoken and API key must then be created "
    "again) with `burrow-edge serve --new-store` or `burrow-edge init --new-store`"
)


if __name__ == "__main__":
    sys.exit(main())
