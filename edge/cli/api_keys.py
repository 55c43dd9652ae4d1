"""`burrow-edge api-key create|list|delete` and `burrow-edge init`: the admin API's keys.

`init` sets up a data directory (the development CA and the store) and prints its first API key;
`api-key` works offline on the store (how the first key comes to be) or through the running
edge's admin API. A key's token is printed once, when it is created, on the last line.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from edge.admin.resources import api_key_json
from edge.cli.api_client import AdminClient
from edge.cli.options import (
    data_dir_option,
    dump,
    managed_options,
    new_store_option,
    offline_store,
    print_item,
)
from edge.events import EVENTS_FILE, EventLog
from edge.server import prepare_data_dir

__all__ = ["add_api_key_parsers", "run_api_key"]


def add_api_key_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `api-key` and its actions, then `init`, to `burrow-edge`'s subcommands."""
    keys = commands.add_parser("api-key", help="manage admin API keys")
    key_commands = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    key_create = key_commands.add_parser(
        "create", help="create an API key for the admin API (shown once, on the last line)"
    )
    managed_options(key_create, json_output=True)
    key_create.add_argument("--description", default="")
    key_create.add_argument("--metadata", default="")
    key_create.add_argument("--owner", help="the service user that owns it (service_...)")
    key_list = key_commands.add_parser("list", help="list API keys (never their tokens)")
    managed_options(key_list, json_output=True)
    key_delete = key_commands.add_parser("delete", help="delete an API key: it stops working")
    managed_options(key_delete)
    key_delete.add_argument("id")
    init = commands.add_parser(
        "init",
        help="set up a data directory (CA, store) and print its first API key (last line)",
    )
    data_dir_option(init)
    new_store_option(init)
    init.add_argument("--description", default="first API key, from burrow-edge init")
    init.add_argument("--metadata", default="")
    init.add_argument("--owner", help=argparse.SUPPRESS)


def run_api_key(args: argparse.Namespace, client: AdminClient | None) -> int:
    """Run `init` or an `api-key` action through the API if there is a `client`, else
    offline."""
    if client is not None:
        return _api_key_api(args, client)
    return _api_key(args)


def _api_key(args: argparse.Namespace) -> int:
    """Create an API key offline, straight in the store: how the first key comes to be (every
    later one can come from the API itself). `init` also makes the CA, as a first run would.
    `api-key list` and `api-key delete` work offline too."""
    if args.command == "init":
        ca, store = prepare_data_dir(args.data_dir, new_store=args.new_store)
        print(f"data directory {args.data_dir} ready; agents trust {ca.ca_path}")
    else:
        store = offline_store(args)
    principal = {"id": "cli", "subject": os.environ.get("USER", ""), "source": "CLI"}
    with store:
        if args.command == "api-key" and args.action == "list":
            for listed in store.list_api_keys():
                print_item(args, api_key_json("", listed), _api_key_line)
            return 0
        if args.command == "api-key" and args.action == "delete":
            existing = store.get_api_key(args.id)
            if existing is None or not store.delete_api_key(args.id):
                print(f"burrow-edge: no API key {args.id}", file=sys.stderr)
                return 1
            EventLog(store, args.data_dir / EVENTS_FILE).record(
                "api_key_deleted.v0", api_key_json("", existing), principal=principal
            )
            print(f"API key {args.id} deleted")
            return 0
        api_key, token = store.create_api_key(
            description=args.description, metadata=args.metadata, owner_id=args.owner
        )
        EventLog(store, args.data_dir / EVENTS_FILE).record(
            "api_key_created.v0", api_key_json("", api_key), principal=principal
        )
        _print_created_api_key(args, api_key_json("", api_key, token))
    return 0


def _api_key_api(args: argparse.Namespace, client: AdminClient) -> int:
    if args.action == "create":
        created = client.create_api_key(
            description=args.description, metadata=args.metadata, owner_id=args.owner
        )
        _print_created_api_key(args, created)
    elif args.action == "list":
        for api_key in client.list_api_keys():
            print_item(args, api_key, _api_key_line)
    else:
        client.delete_api_key(args.id)
        print(f"API key {args.id} deleted")
    return 0


def _print_created_api_key(args: argparse.Namespace, api_key: dict[str, Any]) -> None:
    if getattr(args, "json", False):
        print(dump(api_key))
        return
    print(f"API key {api_key['id']} created; use it as 'Authorization: Bearer <key>'.")
    print("Its token (shown only now):")
    print(api_key["token"])


def _api_key_line(api_key: dict[str, Any]) -> str:
    return (
        f"{api_key['id']}  {api_key.get('created_at')}  owner={api_key.get('owner_id') or '-'}  "
        f"{api_key.get('description', '')}"
    )
