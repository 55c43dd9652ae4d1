"""`burrow-edge service-user create|list|deactivate|activate|delete`: the principals that own
credentials and API keys, offline on the store or through the running edge's admin API.

Deactivating a service user stops every token it owns at once; deleting it deletes them, and
the command says how many went with it.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from edge.admin.resources import service_user_json
from edge.cli.api_client import AdminClient
from edge.cli.options import managed_options, offline_store, print_item

__all__ = ["add_service_user_parser", "run_service_user"]


def add_service_user_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `service-user` and its actions to `burrow-edge`'s subcommands."""
    users = commands.add_parser("service-user", help="manage service users (own credentials)")
    user_commands = users.add_subparsers(dest="action", required=True, metavar="ACTION")
    user_create = user_commands.add_parser("create", help="create a service user")
    managed_options(user_create, json_output=True)
    user_create.add_argument("name")
    user_list = user_commands.add_parser("list", help="list service users")
    managed_options(user_list, json_output=True)
    for action, text in (
        ("deactivate", "deactivate: every credential it owns stops working at once"),
        ("activate", "activate again"),
        ("delete", "delete it and every credential and API key it owns"),
    ):
        one = user_commands.add_parser(action, help=text)
        managed_options(one, json_output=action != "delete")
        one.add_argument("id")


def run_service_user(args: argparse.Namespace, client: AdminClient | None) -> int:
    """Run a `service-user` action through the API if there is a `client`, else offline."""
    if client is not None:
        return _service_user_api(args, client)
    return _service_user(args)


def _service_user(args: argparse.Namespace) -> int:
    with offline_store(args) as store:
        if args.action == "create":
            user = store.create_service_user(args.name)
            _print_created_user(args, service_user_json("", user))
        elif args.action == "list":
            for user in store.list_service_users():
                print_item(args, service_user_json("", user), _service_user_line)
        elif args.action == "delete":
            deleted = store.delete_service_user(args.id)
            if deleted is None:
                print(f"burrow-edge: no service user {args.id}", file=sys.stderr)
                return 1
            _print_deleted_user(args.id, len(deleted.credential_ids), len(deleted.api_key_ids))
        else:
            changed = store.update_service_user(args.id, active=args.action == "activate")
            if changed is None:
                print(f"burrow-edge: no service user {args.id}", file=sys.stderr)
                return 1
            print_item(args, service_user_json("", changed), lambda _: _user_changed(args))
    return 0


def _service_user_api(args: argparse.Namespace, client: AdminClient) -> int:
    if args.action == "create":
        _print_created_user(args, client.create_service_user(args.name))
    elif args.action == "list":
        for user in client.list_service_users():
            print_item(args, user, _service_user_line)
    elif args.action == "delete":
        # The API answers 204 without the counts that the offline command prints: count what
        # the service user owns first (what it owned at the moment of deleting is in the
        # service_user_deleted.v0 event).
        credentials = [c for c in client.list_credentials() if c.get("owner_id") == args.id]
        api_keys = [k for k in client.list_api_keys() if k.get("owner_id") == args.id]
        client.delete_service_user(args.id)
        _print_deleted_user(args.id, len(credentials), len(api_keys))
    else:
        changed = client.update_service_user(args.id, active=args.action == "activate")
        print_item(args, changed, lambda _: _user_changed(args))
    return 0


def _print_created_user(args: argparse.Namespace, user: dict[str, Any]) -> None:
    print_item(args, user, lambda u: f"service user {u['id']} ({u['name']}) created")


def _print_deleted_user(user_id: str, credentials: int, api_keys: int) -> None:
    print(
        f"service user {user_id} deleted with {credentials} credential(s) and {api_keys} API key(s)"
    )


def _user_changed(args: argparse.Namespace) -> str:
    return f"service user {args.id} {args.action}d"


def _service_user_line(user: dict[str, Any]) -> str:
    state = "active" if user.get("active", True) else "inactive"
    return f"{user['id']}  {user.get('created_at')}  {state}  {user.get('name', '')}"
