"""`burrow-edge`: run the edge and manage its credentials from a terminal."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from edge.admin.resources import api_key_json, credential_json, service_user_json
from edge.certs.ca import CertError
from edge.cli.api_client import (
    API_KEY_ENV,
    API_URL_ENV,
    DEFAULT_API_URL,
    MAX_PAGE,
    AdminClient,
    ApiClientError,
)
from edge.cli.endpoint import add_endpoint_parser, run_endpoint
from edge.cli.policy import add_policy_parser, run_policy
from edge.cli.policy_test import add_policy_test_parser, run_policy_test
from edge.cli.serve import add_log_options, run_config_check, run_serve
from edge.config import ConfigError
from edge.events import EVENTS_FILE, EventLog, envelope
from edge.server import STORE_FILE, prepare_data_dir
from edge.store import (
    CREDENTIAL_LIMIT_MAX,
    EVENT_LIST_MAX,
    EmptyStoreError,
    SQLiteStore,
    StoreError,
)
from edge.tunnels.session import EDGE_VERSION

log = logging.getLogger("burrow-edge")

#: Seconds between polls of `events list --follow`.
FOLLOW_INTERVAL = 1.0
#: Events `events list --follow` shows from before it started, unless --limit says otherwise.
FOLLOW_BACKLOG = 10
#: Pages of new events one poll of `--follow` reads at most (it says so if more arrived).
FOLLOW_MAX_PAGES = 10


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "burrow-edge"


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

    def data_dir_option(p: argparse.ArgumentParser, *, offline: bool = False) -> None:
        # None until main() fills in the default, so that it can tell an explicit --data-dir
        # (which means "offline", whatever BURROW_API_KEY says) from the default.
        p.add_argument(
            "--data-dir",
            type=Path,
            default=None,
            help=(
                "where the store and the development CA live"
                + ("; commands work on it offline" if offline else "")
                + f" (default: {default_data_dir()})"
            ),
        )

    def api_options(p: argparse.ArgumentParser, *, offline: bool = True) -> None:
        data_dir = " instead of --data-dir" if offline else ""
        group = p.add_argument_group("through the running edge's admin API")
        group.add_argument(
            "--api-key",
            metavar="KEY",
            help=f"an admin API key: use the running edge's API{data_dir} (or set "
            f"{API_KEY_ENV}, which keeps the key out of the process list)",
        )
        group.add_argument(
            "--api-url",
            metavar="URL",
            help=f"the edge's admin API (default: ${API_URL_ENV} or {DEFAULT_API_URL})",
        )

    def managed(p: argparse.ArgumentParser, *, json_output: bool = False) -> None:
        """Options of a command that works offline or through the API."""
        data_dir_option(p, offline=True)
        p.add_argument(
            "--init",
            dest="init_store",
            action="store_true",
            help=f"offline, create a new empty store ({STORE_FILE}) in --data-dir if there is "
            "none (without it, a missing store is an error, so a mistyped or forgotten "
            "--data-dir cannot quietly start a second store)",
        )
        api_options(p)
        if json_output:
            p.add_argument(
                "--json", action="store_true", help="print ngrok-shaped JSON, one object a line"
            )

    def new_store_option(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--new-store",
            action="store_true",
            help=(
                f"if the store ({STORE_FILE} in --data-dir) is an empty 0-byte file, start a new "
                "empty store in its place instead of refusing it (a store with data is never "
                "replaced); pass it once, not in a service definition"
            ),
        )

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

    credential = commands.add_parser("credential", help="manage authtokens")
    cred_commands = credential.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = cred_commands.add_parser("create", help="create an authtoken (shown once)")
    managed(create, json_output=True)
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
    managed(listing, json_output=True)
    for action, text in (
        ("delete", "delete a credential: its live sessions end within a second"),
        ("revoke", "deactivate a credential: its live sessions end within a second"),
        ("activate", "activate a deactivated credential again"),
    ):
        one = cred_commands.add_parser(action, help=text)
        managed(one, json_output=action != "delete")
        one.add_argument("id")

    users = commands.add_parser("service-user", help="manage service users (own credentials)")
    user_commands = users.add_subparsers(dest="action", required=True, metavar="ACTION")
    user_create = user_commands.add_parser("create", help="create a service user")
    managed(user_create, json_output=True)
    user_create.add_argument("name")
    user_list = user_commands.add_parser("list", help="list service users")
    managed(user_list, json_output=True)
    for action, text in (
        ("deactivate", "deactivate: every credential it owns stops working at once"),
        ("activate", "activate again"),
        ("delete", "delete it and every credential and API key it owns"),
    ):
        one = user_commands.add_parser(action, help=text)
        managed(one, json_output=action != "delete")
        one.add_argument("id")
    keys = commands.add_parser("api-key", help="manage admin API keys")
    key_commands = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    key_create = key_commands.add_parser(
        "create", help="create an API key for the admin API (shown once, on the last line)"
    )
    managed(key_create, json_output=True)
    key_create.add_argument("--description", default="")
    key_create.add_argument("--metadata", default="")
    key_create.add_argument("--owner", help="the service user that owns it (service_...)")
    key_list = key_commands.add_parser("list", help="list API keys (never their tokens)")
    managed(key_list, json_output=True)
    key_delete = key_commands.add_parser("delete", help="delete an API key: it stops working")
    managed(key_delete)
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
    events = commands.add_parser("events", help="audit events")
    event_commands = events.add_subparsers(dest="action", required=True, metavar="ACTION")
    event_list = event_commands.add_parser("list", help="newest first, one JSON object a line")
    managed(event_list)
    event_list.add_argument("--type", dest="event_type", help="e.g. agent_session_start.v0")
    event_list.add_argument("--principal", help="a service user or credential id")
    event_list.add_argument(
        "--limit",
        type=int,
        default=None,
        help=f"at most this many (default: 100; with --follow, the newest {FOLLOW_BACKLOG} "
        "from before it started)",
    )
    event_list.add_argument(
        "--follow",
        action="store_true",
        help="keep polling the running edge every second and print new events, oldest first, "
        "until Ctrl-C (needs an API key)",
    )
    sessions = commands.add_parser(
        "sessions", help="live agent sessions (needs the running edge and an API key)"
    )
    session_commands = sessions.add_subparsers(dest="action", required=True, metavar="ACTION")
    session_list = session_commands.add_parser("list", help="list live agent sessions")
    api_options(session_list, offline=False)
    session_list.add_argument(
        "--json", action="store_true", help="print ngrok-shaped JSON, one object a line"
    )
    session_stop = session_commands.add_parser(
        "stop", help="tell a session's agent to stop (burrow exits and does not reconnect)"
    )
    api_options(session_stop, offline=False)
    session_stop.add_argument("id")
    add_endpoint_parser(commands, partial(api_options, offline=False))
    add_policy_test_parser(add_policy_parser(commands))
    return parser


def _limit(text: str) -> int:
    """A `--max-...` value: a whole number from 1 to CREDENTIAL_LIMIT_MAX."""
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= CREDENTIAL_LIMIT_MAX):
        raise argparse.ArgumentTypeError(
            f"must be a whole number from 1 to {CREDENTIAL_LIMIT_MAX}, not {text!r}"
        )
    return int(text)


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
        client = _api_client(parser, args)
        args.data_dir_given = getattr(args, "data_dir", None) is not None
        if getattr(args, "data_dir", False) is None:
            args.data_dir = default_data_dir()
        if args.command == "serve":
            return run_serve(args)  # edge/cli/serve.py
        if args.command == "sessions":
            return _sessions(args, client)
        if args.command == "endpoint":
            if client is None:
                raise ApiClientError(_needs_api_key("`burrow-edge endpoint`"))
            return run_endpoint(args, client)  # edge/cli/endpoint.py
        if args.command == "events":
            return _events(args, client)
        if args.command == "service-user":
            if client is not None:
                return _service_user_api(args, client)
            return _service_user(args)
        if args.command in ("api-key", "init"):
            if client is not None:
                return _api_key_api(args, client)
            return _api_key(args)
        if client is not None:
            return _credential_api(args, client)
        return _credential(args)
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


def _api_client(parser: argparse.ArgumentParser, args: argparse.Namespace) -> AdminClient | None:
    """The admin API client when the command is to go through the running edge, else None.

    An explicit `--api-key` means the API; an explicit `--data-dir` means the store, offline,
    whatever BURROW_API_KEY says (flags win over the environment); otherwise BURROW_API_KEY,
    when set, means the API."""
    if not hasattr(args, "api_key"):
        return None  # serve, init: always local
    data_dir_given = getattr(args, "data_dir", None) is not None
    key: str | None = args.api_key
    if key is not None and data_dir_given:
        parser.error(
            "--api-key goes through the running edge's admin API and --data-dir works on the "
            "store offline: give one of them"
        )
    if key is None and not data_dir_given:
        key = os.environ.get(API_KEY_ENV) or None
    if key is None:
        if args.api_url is not None:
            raise ApiClientError(_needs_api_key("--api-url", data_dir_given=data_dir_given))
        return None
    if not key.strip():
        raise ApiClientError("the API key is empty; " + _HOW_TO_GET_A_KEY)
    url = args.api_url or os.environ.get(API_URL_ENV) or DEFAULT_API_URL
    return AdminClient(url, key)


_HOW_TO_GET_A_KEY = (
    "get one with `burrow-edge init` on a new data directory, or with "
    "`burrow-edge api-key create --data-dir DIR`"
)


def _needs_api_key(what: str, *, data_dir_given: bool = False) -> str:
    text = (
        f"{what} talks to the running edge's admin API and needs an API key: pass --api-key KEY "
        f"or set {API_KEY_ENV}; {_HOW_TO_GET_A_KEY}"
    )
    if data_dir_given and os.environ.get(API_KEY_ENV):
        text += f"; --data-dir means offline, so {API_KEY_ENV} is not used"
    return text


def _offline_store(args: argparse.Namespace) -> SQLiteStore:
    """The store an offline command works on, named on stderr once open (so the operator sees
    which one it is). A store that does not exist yet is created only with `--init`; otherwise
    `StoreError` naming the path and what to do, and nothing is created."""
    path = args.data_dir / STORE_FILE
    if not path.exists() and not getattr(args, "init_store", False):
        where = "--data-dir" if args.data_dir_given else f"the default --data-dir ({args.data_dir})"
        raise StoreError(
            f"no store at {path}: pass the --data-dir that `burrow-edge serve` uses, or --init "
            f"to create a new empty store in {where} (`burrow-edge init --data-dir DIR` also "
            "sets up a CA and the first API key)"
        )
    args.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = SQLiteStore.open(path)
    print(f"burrow-edge: offline, on the store at {path}", file=sys.stderr)
    return store


def _dump(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def _credential(args: argparse.Namespace) -> int:
    with _offline_store(args) as store:
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
                _print_item(args, credential_json("", credential), _credential_line)
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
            _print_item(args, credential, _credential_line)
    elif args.action == "delete":
        client.delete_credential(args.id)
        print(f"credential {args.id} deleted")
    else:
        changed = client.update_credential(args.id, active=args.action == "activate")
        _print_changed_credential(args, changed)
    return 0


def _print_created_credential(args: argparse.Namespace, credential: dict[str, Any]) -> None:
    if args.json:
        print(_dump(credential))
    else:
        print(f"credential {credential['id']} created; its authtoken (shown only now):")
        print(credential["token"])


def _print_changed_credential(args: argparse.Namespace, credential: dict[str, Any]) -> None:
    if args.json:
        print(_dump(credential))
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


def _print_item(
    args: argparse.Namespace,
    item: dict[str, Any],
    line: Callable[[dict[str, Any]], str],
) -> None:
    print(_dump(item) if args.json else line(item))


def _service_user(args: argparse.Namespace) -> int:
    with _offline_store(args) as store:
        if args.action == "create":
            user = store.create_service_user(args.name)
            _print_created_user(args, service_user_json("", user))
        elif args.action == "list":
            for user in store.list_service_users():
                _print_item(args, service_user_json("", user), _service_user_line)
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
            _print_item(args, service_user_json("", changed), lambda _: _user_changed(args))
    return 0


def _service_user_api(args: argparse.Namespace, client: AdminClient) -> int:
    if args.action == "create":
        _print_created_user(args, client.create_service_user(args.name))
    elif args.action == "list":
        for user in client.list_service_users():
            _print_item(args, user, _service_user_line)
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
        _print_item(args, changed, lambda _: _user_changed(args))
    return 0


def _print_created_user(args: argparse.Namespace, user: dict[str, Any]) -> None:
    _print_item(args, user, lambda u: f"service user {u['id']} ({u['name']}) created")


def _print_deleted_user(user_id: str, credentials: int, api_keys: int) -> None:
    print(
        f"service user {user_id} deleted with {credentials} credential(s) and {api_keys} API key(s)"
    )


def _user_changed(args: argparse.Namespace) -> str:
    return f"service user {args.id} {args.action}d"


def _service_user_line(user: dict[str, Any]) -> str:
    state = "active" if user.get("active", True) else "inactive"
    return f"{user['id']}  {user.get('created_at')}  {state}  {user.get('name', '')}"


def _api_key(args: argparse.Namespace) -> int:
    """Create an API key offline, straight in the store: how the first key comes to be (every
    later one can come from the API itself). `init` also makes the CA, as a first run would.
    `api-key list` and `api-key delete` work offline too."""
    if args.command == "init":
        ca, store = prepare_data_dir(args.data_dir, new_store=args.new_store)
        print(f"data directory {args.data_dir} ready; agents trust {ca.ca_path}")
    else:
        store = _offline_store(args)
    principal = {"id": "cli", "subject": os.environ.get("USER", ""), "source": "CLI"}
    with store:
        if args.command == "api-key" and args.action == "list":
            for listed in store.list_api_keys():
                _print_item(args, api_key_json("", listed), _api_key_line)
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
            _print_item(args, api_key, _api_key_line)
    else:
        client.delete_api_key(args.id)
        print(f"API key {args.id} deleted")
    return 0


def _print_created_api_key(args: argparse.Namespace, api_key: dict[str, Any]) -> None:
    if getattr(args, "json", False):
        print(_dump(api_key))
        return
    print(f"API key {api_key['id']} created; use it as 'Authorization: Bearer <key>'.")
    print("Its token (shown only now):")
    print(api_key["token"])


def _api_key_line(api_key: dict[str, Any]) -> str:
    return (
        f"{api_key['id']}  {api_key.get('created_at')}  owner={api_key.get('owner_id') or '-'}  "
        f"{api_key.get('description', '')}"
    )


def _events(args: argparse.Namespace, client: AdminClient | None) -> int:
    if args.follow:
        if client is None:
            raise ApiClientError(
                _needs_api_key("`events list --follow`", data_dir_given=args.data_dir_given)
            )
        return _follow_events(args, client)
    limit = 100 if args.limit is None else args.limit
    if client is None:
        with _offline_store(args) as store:
            for event in store.list_events(
                limit=limit, event_type=args.event_type, principal_id=args.principal
            ):
                print(_dump(envelope(event)))
        return 0
    if not 1 <= limit <= EVENT_LIST_MAX:
        raise ApiClientError(f"event limit must be from 1 to {EVENT_LIST_MAX}, not {limit}")
    for event in _newest_events(args, client, limit):
        print(_dump(event))
    return 0


def _newest_events(args: argparse.Namespace, client: AdminClient, count: int) -> list[Any]:
    """Up to `count` of the newest events that match, newest first, page by page."""
    events: list[Any] = []
    before: str | None = None
    while len(events) < count:
        chunk, more = client.list_events(
            limit=min(MAX_PAGE, count - len(events)),
            event_type=args.event_type,
            principal_id=args.principal,
            before_id=before,
        )
        events.extend(chunk)
        if not more or not chunk:
            break
        before = str(chunk[-1]["event_id"])
    return events


def _follow_events(
    args: argparse.Namespace,
    client: AdminClient,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """`events list --follow`: the newest `--limit` events (default FOLLOW_BACKLOG) oldest
    first, then every second the events that arrived since, oldest first, until Ctrl-C."""
    backlog = FOLLOW_BACKLOG if args.limit is None else args.limit
    if not 0 <= backlog <= EVENT_LIST_MAX:
        raise ApiClientError(f"event limit must be from 0 to {EVENT_LIST_MAX}, not {backlog}")
    try:
        # At least one, to know where "new" starts.
        shown = _newest_events(args, client, max(backlog, 1))
        for event in reversed(shown[:backlog]):
            print(_dump(event), flush=True)
        newest: str | None = str(shown[0]["event_id"]) if shown else None
        while True:
            sleep(FOLLOW_INTERVAL)
            arrived = _events_since(args, client, newest)
            for event in reversed(arrived):
                print(_dump(event), flush=True)
            if arrived:
                newest = str(arrived[0]["event_id"])
    except KeyboardInterrupt:
        return 0


def _events_since(args: argparse.Namespace, client: AdminClient, newest: str | None) -> list[Any]:
    """The events newer than the one with id `newest` (all of them if None), newest first."""
    arrived: list[Any] = []
    before: str | None = None
    for _ in range(FOLLOW_MAX_PAGES):
        chunk, more = client.list_events(
            limit=MAX_PAGE,
            event_type=args.event_type,
            principal_id=args.principal,
            before_id=before,
        )
        for event in chunk:
            if event.get("event_id") == newest:
                return arrived
            arrived.append(event)
        if not more or not chunk:
            return arrived
        before = str(chunk[-1]["event_id"])
    print(
        f"burrow-edge: more than {len(arrived)} events arrived within a second; "
        "showing the newest of them",
        file=sys.stderr,
        flush=True,
    )
    return arrived


def _sessions(args: argparse.Namespace, client: AdminClient | None) -> int:
    if client is None:
        raise ApiClientError(_needs_api_key("`burrow-edge sessions`"))
    if args.action == "stop":
        client.stop_tunnel_session(args.id)
        print(f"session {args.id} stopped")
        return 0
    sessions = client.list_tunnel_sessions()
    if args.json:
        for session in sessions:
            print(_dump(session))
        return 0
    urls: dict[str, list[str]] = {}
    if sessions:
        for endpoint in client.list_endpoints():
            session_id = (endpoint.get("tunnel_session") or {}).get("id")
            urls.setdefault(str(session_id), []).append(str(endpoint.get("url")))
    for session in sessions:
        credential = (session.get("credential") or {}).get("id") or "-"
        endpoints = ",".join(urls.get(session["id"], ())) or "-"
        print(
            f"{session['id']}  {session.get('started_at') or '-'}  credential={credential}  "
            f"ip={session.get('ip') or '-'}  agent={session.get('agent_version') or '-'}/"
            f"{session.get('os') or '-'}  endpoints={endpoints}  {session.get('metadata') or ''}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
