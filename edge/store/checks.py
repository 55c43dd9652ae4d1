"""The checks a value passes before it is stored; each refusal is a `StoreError` saying why."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from edge.store.errors import ConflictError, NotFoundError, StoreError
from edge.store.records import (
    ACL_MAX_RULES,
    CREDENTIAL_LIMIT_MAX,
    DESCRIPTION_MAX_BYTES,
    NAME_MAX_BYTES,
    JsonObject,
)
from edge.tunnels.acl import AclError, parse_acl


def _check_text(field: str, value: str, max_bytes: int) -> None:
    if not isinstance(value, str):
        raise StoreError(f"{field} must be a string, not {type(value).__name__}")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise StoreError(f"{field} is not valid Unicode text: {exc}") from exc
    if size > max_bytes:
        raise StoreError(f"{field} is {size} bytes; the limit is {max_bytes} bytes")


def _check_acl(acl: Sequence[str]) -> tuple[str, ...]:
    if isinstance(acl, str):
        raise StoreError("credential acl must be a list of rules, not one string")
    rules = tuple(acl)
    if len(rules) > ACL_MAX_RULES:
        raise StoreError(f"credential acl has {len(rules)} rules; the limit is {ACL_MAX_RULES}")
    for rule in rules:
        if not isinstance(rule, str):
            raise StoreError(f"credential acl rules must be strings, not {type(rule).__name__}")
        _check_text("credential acl rule", rule, DESCRIPTION_MAX_BYTES)
    try:
        parse_acl(rules)
    except AclError as exc:
        raise StoreError(f"credential acl: {exc.message}", code=exc.code) from exc
    return rules


def _check_limit(field: str, value: int | None) -> None:
    """Refuse a per-credential limit that is not None or a whole number in 1..CREDENTIAL_LIMIT_MAX
    (0 is refused rather than read as "none" or "nothing": say None for no limit)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise StoreError(
            f"{field} must be a whole number or None (no limit), not {type(value).__name__}"
        )
    if not 1 <= value <= CREDENTIAL_LIMIT_MAX:
        raise StoreError(
            f"{field} must be from 1 to {CREDENTIAL_LIMIT_MAX} (or None for no limit), not {value}"
        )


def _check_name(name: str) -> None:
    _check_text("service user name", name, NAME_MAX_BYTES)
    if not name.strip():
        raise StoreError("service user name must not be empty")


def _check_name_free(connection: sqlite3.Connection, account_id: str, name: str) -> None:
    taken = connection.execute(
        "SELECT id FROM service_users WHERE account_id = ? AND name = ?", (account_id, name)
    ).fetchone()
    if taken is not None:
        raise ConflictError(
            f"a service user named {name!r} already exists in account {account_id!r} "
            f"({taken[0]}); choose another name"
        )


def _check_owner(
    connection: sqlite3.Connection, owner_id: str | None, account_id: str, what: str
) -> None:
    """Refuse an `owner_id` that is not a service user of `account_id`."""
    if owner_id is None:
        return
    if not isinstance(owner_id, str):
        raise StoreError(f"{what} owner_id must be a string, not {type(owner_id).__name__}")
    row = connection.execute(
        "SELECT 1 FROM service_users WHERE id = ? AND account_id = ?", (owner_id, account_id)
    ).fetchone()
    if row is None:
        raise NotFoundError(
            f"cannot create the {what}: owner {owner_id!r} is not a service user of account "
            f"{account_id!r}; create it first, or list them with `service-user list`"
        )


def _event_json(field: str, value: JsonObject) -> str:
    if not isinstance(value, dict):
        raise StoreError(
            f"event {field} must be a JSON object (a dict), not {type(value).__name__}"
        )
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"event {field} is not JSON: {exc}") from exc
