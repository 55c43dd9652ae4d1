"""`burrow-edge events list [--follow]`: the audit log, newest first, one JSON object a line.

Offline it reads the store; through the admin API it pages with `before_id`. `--follow` needs
the API: it prints the newest `--limit` events oldest first, then polls every second for the
ones that arrived since, until Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from edge.cli.api_client import MAX_PAGE, AdminClient, ApiClientError
from edge.cli.options import dump, managed_options, needs_api_key, offline_store
from edge.events import envelope
from edge.store import EVENT_LIST_MAX

__all__ = [
    "FOLLOW_BACKLOG",
    "FOLLOW_INTERVAL",
    "FOLLOW_MAX_PAGES",
    "add_events_parser",
    "run_events",
]

#: Seconds between polls of `events list --follow`.
FOLLOW_INTERVAL = 1.0
#: Events `events list --follow` shows from before it started, unless --limit says otherwise.
FOLLOW_BACKLOG = 10
#: Pages of new events one poll of `--follow` reads at most (it says so if more arrived).
FOLLOW_MAX_PAGES = 10


def add_events_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `events` and its `list` action to `burrow-edge`'s subcommands."""
    events = commands.add_parser("events", help="audit events")
    event_commands = events.add_subparsers(dest="action", required=True, metavar="ACTION")
    event_list = event_commands.add_parser("list", help="newest first, one JSON object a line")
    managed_options(event_list)
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


def run_events(args: argparse.Namespace, client: AdminClient | None) -> int:
    """`events list`: through `client` if there is one, else offline (`--follow` needs one)."""
    if args.follow:
        if client is None:
            raise ApiClientError(
                needs_api_key("`events list --follow`", data_dir_given=args.data_dir_given)
            )
        return _follow_events(args, client)
    limit = 100 if args.limit is None else args.limit
    if client is None:
        with offline_store(args) as store:
            for event in store.list_events(
                limit=limit, event_type=args.event_type, principal_id=args.principal
            ):
                print(dump(envelope(event)))
        return 0
    if not 1 <= limit <= EVENT_LIST_MAX:
        raise ApiClientError(f"event limit must be from 1 to {EVENT_LIST_MAX}, not {limit}")
    for event in _newest_events(args, client, limit):
        print(dump(event))
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
            print(dump(event), flush=True)
        newest: str | None = str(shown[0]["event_id"]) if shown else None
        while True:
            sleep(FOLLOW_INTERVAL)
            arrived = _events_since(args, client, newest)
            for event in reversed(arrived):
                print(dump(event), flush=True)
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
