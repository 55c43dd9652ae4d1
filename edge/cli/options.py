"""The options `burrow-edge`'s management commands share, and what they resolve to.

A management command works offline on the store in `--data-dir`, or through the running edge's
admin API given a key (`--api-key` or BURROW_API_KEY, `--api-url`); `api_client` decides which,
and `offline_store` opens the store (creating one only with `--init`). `dump` and `print_item`
print a record as `--json` asks: ngrok-shaped JSON, or one line for a person.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge.cli.api_client import (
    API_KEY_ENV,
    API_URL_ENV,
    DEFAULT_API_URL,
    AdminClient,
    ApiClientError,
)
from edge.server import STORE_FILE
from edge.store import SQLiteStore, StoreError

__all__ = [
    "HOW_TO_GET_A_KEY",
    "api_client",
    "api_options",
    "data_dir_option",
    "default_data_dir",
    "dump",
    "managed_options",
    "needs_api_key",
    "new_store_option",
    "offline_store",
    "print_item",
]


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "burrow-edge"


def data_dir_option(p: argparse.ArgumentParser, *, offline: bool = False) -> None:
    """Add `--data-dir` (said to work offline if `offline`)."""
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
    """Add `--api-key` and `--api-url` (said to replace `--data-dir` if `offline`)."""
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


def managed_options(p: argparse.ArgumentParser, *, json_output: bool = False) -> None:
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
    """Add `--new-store`, for the commands that open the store as the edge does."""
    p.add_argument(
        "--new-store",
        action="store_true",
        help=(
            f"if the store ({STORE_FILE} in --data-dir) is an empty 0-byte file, start a new "
            "empty store in its place instead of refusing it (a store with data is never "
            "replaced); pass it once, not in a service definition"
        ),
    )


def api_client(parser: argparse.ArgumentParser, args: argparse.Namespace) -> AdminClient | None:
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
            raise ApiClientError(needs_api_key("--api-url", data_dir_given=data_dir_given))
        return None
    if not key.strip():
        raise ApiClientError("the API key is empty; " + HOW_TO_GET_A_KEY)
    url = args.api_url or os.environ.get(API_URL_ENV) or DEFAULT_API_URL
    return AdminClient(url, key)


HOW_TO_GET_A_KEY = (
    "get one with `burrow-edge init` on a new data directory, or with "
    "`burrow-edge api-key create --data-dir DIR`"
)


def needs_api_key(what: str, *, data_dir_given: bool = False) -> str:
    text = (
        f"{what} talks to the running edge's admin API and needs an API key: pass --api-key KEY "
        f"or set {API_KEY_ENV}; {HOW_TO_GET_A_KEY}"
    )
    if data_dir_given and os.environ.get(API_KEY_ENV):
        text += f"; --data-dir means offline, so {API_KEY_ENV} is not used"
    return text


def offline_store(args: argparse.Namespace) -> SQLiteStore:
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


def dump(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def print_item(
    args: argparse.Namespace,
    item: dict[str, Any],
    line: Callable[[dict[str, Any]], str],
) -> None:
    print(dump(item) if args.json else line(item))
