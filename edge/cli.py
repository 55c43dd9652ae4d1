"""`burrow-edge`: run the edge and manage its credentials from a terminal."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import trio

from edge.admin.resources import api_key_json
from edge.certs import CertError, DevCA
from edge.config import ConfigError, EdgeConfig, load_edge_config
from edge.events import EVENTS_FILE, EventLog, envelope
from edge.server import STORE_FILE, EdgeAddresses, prepare_data_dir, serve_edge
from edge.store import CREDENTIAL_LIMIT_MAX, SQLiteStore, StoreError

log = logging.getLogger("burrow-edge")


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "burrow-edge"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="burrow-edge", description="Burrow's self-hosted edge (ngrok-compatible)."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def data_dir_option(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--data-dir",
            type=Path,
            default=default_data_dir(),
            help="where the store and the development CA live (default: %(default)s)",
        )

    serve = commands.add_parser("serve", help="run the edge")
    data_dir_option(serve)
    serve.add_argument("--config", type=Path, help="edge.yml (see deploy/edge.example.yml)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])

    credential = commands.add_parser("credential", help="manage authtokens")
    cred_commands = credential.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = cred_commands.add_parser("create", help="create an authtoken (shown once)")
    data_dir_option(create)
    create.add_argument("--description", default="")
    create.add_argument("--metadata", default="")
    create.add_argument("--acl", action="append", default=[], help="bind rule, e.g. bind:*")
    create.add_argument("--owner", help="the service user that owns it (service_...)")
    create.add_argument(
        "--max-sessions",
        type=_limit,
        metavar="N",
        help="at most N agent sessions live at once with it (default: no limit)",
    )
    create.add_argument(
        "--max-endpoints",
        type=_limit,
        metavar="N",
        help="at most N endpoints per agent session (default: no limit)",
    )
    listing = cred_commands.add_parser("list", help="list credentials (never their tokens)")
    data_dir_option(listing)
    for action, text in (
        ("delete", "delete a credential: its live sessions end within a second"),
        ("revoke", "deactivate a credential: its live sessions end within a second"),
        ("activate", "activate a deactivated credential again"),
    ):
        one = cred_commands.add_parser(action, help=text)
        data_dir_option(one)
        one.add_argument("id")

    users = commands.add_parser("service-user", help="manage service users (own credentials)")
    user_commands = users.add_subparsers(dest="action", required=True, metavar="ACTION")
    user_create = user_commands.add_parser("create", help="create a service user")
    data_dir_option(user_create)
    user_create.add_argument("name")
    user_list = user_commands.add_parser("list", help="list service users")
    data_dir_option(user_list)
    for action, text in (
        ("deactivate", "deactivate: every credential it owns stops working at once"),
        ("activate", "activate again"),
        ("delete", "delete it and every credential and API key it owns"),
    ):
        one = user_commands.add_parser(action, help=text)
        data_dir_option(one)
        one.add_argument("id")
    keys = commands.add_parser("api-key", help="manage admin API keys")
    key_commands = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    key_create = key_commands.add_parser(
        "create", help="create an API key for the admin API (shown once, on the last line)"
    )
    data_dir_option(key_create)
    key_create.add_argument("--description", default="")
    key_create.add_argument("--metadata", default="")
    key_create.add_argument("--owner", help="the service user that owns it (service_...)")
    init = commands.add_parser(
        "init",
        help="set up a data directory (CA, store) and print its first API key (last line)",
    )
    data_dir_option(init)
    init.add_argument("--description", default="first API key, from burrow-edge init")
    init.add_argument("--metadata", default="")
    init.add_argument("--owner", help=argparse.SUPPRESS)
    events = commands.add_parser("events", help="audit events")
    event_commands = events.add_subparsers(dest="action", required=True, metavar="ACTION")
    event_list = event_commands.add_parser("list", help="newest first, one JSON object a line")
    data_dir_option(event_list)
    event_list.add_argument("--type", dest="event_type", help="e.g. agent_session_start.v0")
    event_list.add_argument("--principal", help="a service user or credential id")
    event_list.add_argument("--limit", type=int, default=100)
    return parser


def _limit(text: str) -> int:
    """A `--max-...` value: a whole number from 1 to CREDENTIAL_LIMIT_MAX."""
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= CREDENTIAL_LIMIT_MAX):
        raise argparse.ArgumentTypeError(
            f"must be a whole number from 1 to {CREDENTIAL_LIMIT_MAX}, not {text!r}"
        )
    return int(text)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "events":
            return _events(args)
        if args.command == "service-user":
            return _service_user(args)
        if args.command in ("api-key", "init"):
            return _api_key(args)
        return _credential(args)
    except (ConfigError, StoreError, CertError) as exc:
        print(f"burrow-edge: {exc}", file=sys.stderr)
        return 1


def _serve(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    config = load_edge_config(args.config)
    ca, store = prepare_data_dir(args.data_dir)
    try:
        trio.run(_serve_until_signalled, config, ca, store)
    except KeyboardInterrupt:
        pass
    finally:
        store.close()
    print("burrow-edge: stopped", file=sys.stderr)
    return 0


async def _serve_until_signalled(config: EdgeConfig, ca: DevCA, store: SQLiteStore) -> None:
    async with trio.open_nursery() as nursery:
        addresses: EdgeAddresses = await nursery.start(serve_edge, config, ca, store)
        host, port = addresses.agents
        admin = "off" if addresses.admin is None else _hostport(*addresses.admin)
        print(f"burrow-edge ready: agents={_hostport(host, port)} admin={admin}", flush=True)
        print(
            f"  agents connect to {config.connect_host}:{port} and trust {ca.ca_path}\n"
            f"  create an authtoken with: burrow-edge credential create "
            f"--data-dir {store.path.parent}\n"
            f"  create an admin API key with: burrow-edge api-key create "
            f"--data-dir {store.path.parent}",
            file=sys.stderr,
            flush=True,
        )
        with trio.open_signal_receiver(signal.SIGTERM) as signals:
            async for _ in signals:
                log.info("SIGTERM: shutting down")
                nursery.cancel_scope.cancel()
                break


def _credential(args: argparse.Namespace) -> int:
    args.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with SQLiteStore.open(args.data_dir / STORE_FILE) as store:
        if args.action == "create":
            credential, token = store.create_credential(
                description=args.description,
                metadata=args.metadata,
                acl=args.acl,
                owner_id=args.owner,
                max_sessions=args.max_sessions,
                max_endpoints=args.max_endpoints,
            )
            print(f"credential {credential.id} created; its authtoken (shown only now):")
            print(token)
        elif args.action == "list":
            for credential in store.list_credentials():
                acl = ",".join(credential.acl) or "-"
                state = "active" if credential.active else "inactive"
                sessions = credential.max_sessions or "-"
                endpoints = credential.max_endpoints or "-"
                print(
                    f"{credential.id}  {credential.created_at:%Y-%m-%dT%H:%M:%SZ}  "
                    f"{state}  acl={acl}  max_sessions={sessions}  max_endpoints={endpoints}  "
                    f"{credential.description}"
                )
        elif args.action == "delete":
            if not store.delete_credential(args.id):
                print(f"burrow-edge: no credential {args.id}", file=sys.stderr)
                return 1
            print(f"credential {args.id} deleted")
        elif store.set_credential_active(args.id, args.action == "activate") is None:
            print(f"burrow-edge: no credential {args.id}", file=sys.stderr)
            return 1
        else:
            print(f"credential {args.id} {'activated' if args.action == 'activate' else 'revoked'}")
    return 0


def _service_user(args: argparse.Namespace) -> int:
    args.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with SQLiteStore.open(args.data_dir / STORE_FILE) as store:
        if args.action == "create":
            user = store.create_service_user(args.name)
            print(f"service user {user.id} ({user.name}) created")
        elif args.action == "list":
            for user in store.list_service_users():
                state = "active" if user.active else "inactive"
                print(f"{user.id}  {user.created_at:%Y-%m-%dT%H:%M:%SZ}  {state}  {user.name}")
        elif args.action == "delete":
            deleted = store.delete_service_user(args.id)
            if deleted is None:
                print(f"burrow-edge: no service user {args.id}", file=sys.stderr)
                return 1
            print(
                f"service user {args.id} deleted with {len(deleted.credential_ids)} credential(s)"
                f" and {len(deleted.api_key_ids)} API key(s)"
            )
        elif store.update_service_user(args.id, active=args.action == "activate") is None:
            print(f"burrow-edge: no service user {args.id}", file=sys.stderr)
            return 1
        else:
            print(f"service user {args.id} {args.action}d")
    return 0


def _api_key(args: argparse.Namespace) -> int:
    """Create an API key offline, straight in the store: how the first key comes to be (every
    later one can come from the API itself). `init` also makes the CA, as a first run would."""
    if args.command == "init":
        ca, store = prepare_data_dir(args.data_dir)
        print(f"data directory {args.data_dir} ready; agents trust {ca.ca_path}")
    else:
        args.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        store = SQLiteStore.open(args.data_dir / STORE_FILE)
    with store:
        api_key, token = store.create_api_key(
            description=args.description, metadata=args.metadata, owner_id=args.owner
        )
        EventLog(store, args.data_dir / EVENTS_FILE).record(
            "api_key_created.v0",
            api_key_json("", api_key),
            principal={"id": "cli", "subject": os.environ.get("USER", ""), "source": "CLI"},
        )
        print(f"API key {api_key.id} created; use it as 'Authorization: Bearer <key>'.")
        print("Its token (shown only now):")
        print(token)
    return 0


def _events(args: argparse.Namespace) -> int:
    with SQLiteStore.open(args.data_dir / STORE_FILE) as store:
        for event in store.list_events(
            limit=args.limit, event_type=args.event_type, principal_id=args.principal
        ):
            print(json.dumps(envelope(event), separators=(",", ":")))
    return 0


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


if __name__ == "__main__":
    sys.exit(main())
