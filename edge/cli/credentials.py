"""`burrow-edge credential create|list|delete|revoke|activate`: authtokens, offline on the store
or through the running edge's admin API (ngrok's `/credentials` shapes).

An authtoken is printed once, when it is created, on the last line; lists never show one.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from edge.admin.resources import credential_json
from edge.cli.api_client import AdminClient
from edge.cli.options import dump, managed_options, offline_store, print_item
from edge.store import CREDENTIAL_LIMIT_MAX

__all__ = ["add_credential_parser", "run_credential"]


def add_credential_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `credential` and its actions to `burrow-edge`'s subcommands."""
    credential = commands.add_parser("credential", help="manage authtokens")
    cred_commands = credential.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = cred_commands.add_parser("create", help="create an authtoken (shown once)")
    managed_options(create, json_output=True)
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
    managed_options(listing, json_output=True)
    for action, text in (
        ("delete", "delete a credential: its live sessions end within a second"),
        ("revoke", "deactivate a credential: its live sessions end within a second"),
        ("activate", "activate a deactivated credential again"),
    ):
        one = cred_commands.add_parser(action, help=text)
        managed_options(one, json_output=action != "delete")
        one.add_argument("id")


def _limit(text: str) -> int:
    """A `--max-...` value: a whole number from 1 to CREDENTIAL_LIMIT_MAX."""
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= CREDENTIAL_LIMIT_MAX):
        raise argparse.ArgumentTypeError(
            f"must be a whole number from 1 to {CREDENTIAL_LIMIT_MAX}, not {text!r}"
        )
    return int(text)


def run_credential(args: argparse.Namespace, client: AdminClient | None) -> int:
    """Run a `credential` action through the API if there is a `client`, else offline."""
    if client is not None:
        return _credential_api(args, client)
    return _credential(args)


def _credential(args: argparse.Namespace) -> int:
    with offline_store(args) as store:
        if args.action == "create":
            credential, token = store.create_credential(
                description=args.description,
                metadata=args.metadata,
                acl=args.acl,
                owner_id=args.owner,
                max_sessions=args.max_sessions,
                max_endpoints=args.max_endpoints,
            )
            _print_created_credential(args, credential_json("", credential, token))
        elif args.action == "list":
            for credential in store.list_credentials():
                print_item(args, credential_json("", credential), _credential_line)
        elif args.action == "delete":
            if not store.delete_credential(args.id):
                print(f"burrow-edge: no credential {args.id}", file=sys.stderr)
                return 1
            print(f"credential {args.id} deleted")
        else:
            changed = store.set_credential_active(args.id, args.action == "activate")
            if changed is None:
                print(f"burrow-edge: no credential {args.id}", file=sys.stderr)
                return 1
            _print_changed_credential(args, credential_json("", changed))
    return 0


def _credential_api(args: argparse.Namespace, client: AdminClient) -> int:
    if args.action == "create":
        created = client.create_credential(
            description=args.description,
            metadata=args.metadata,
            acl=args.acl,
            owner_id=args.owner,
            max_sessions=args.max_sessions,
            max_endpoints=args.max_endpoints,
        )
        _print_created_credential(args, created)
    elif args.action == "list":
        for credential in client.list_credentials():
            print_item(args, credential, _credential_line)
    elif args.action == "delete":
        client.delete_credential(args.id)
        print(f"credential {args.id} deleted")
    else:
        changed = client.update_credential(args.id, active=args.action == "activate")
        _print_changed_credential(args, changed)
    return 0


def _print_created_credential(args: argparse.Namespace, credential: dict[str, Any]) -> None:
    if args.json:
        print(dump(credential))
    else:
        print(f"credential {credential['id']} created; its authtoken (shown only now):")
        print(credential["token"])


def _print_changed_credential(args: argparse.Namespace, credential: dict[str, Any]) -> None:
    if args.json:
        print(dump(credential))
    else:
        done = "activated" if args.action == "activate" else "revoked"
        print(f"credential {args.id} {done}")


def _credential_line(credential: dict[str, Any]) -> str:
    acl = ",".join(credential.get("acl") or ()) or "-"
    state = "active" if credential.get("active", True) else "inactive"
    sessions = credential.get("max_sessions") or "-"
    endpoints = credential.get("max_endpoints") or "-"
    return (
        f"{credential['id']}  {credential.get('created_at')}  "
        f"{state}  acl={acl}  max_sessions={sessions}  max_endpoints={endpoints}  "
        f"{credential.get('description', '')}"
    )
