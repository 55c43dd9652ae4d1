"""How records sit in SQLite rows: the column lists, row -> record decoding
and `WHERE` filters (timestamps are written by `edge.timestamps`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import cast

from edge.store.records import ApiKey, Credential, Event, ServiceUser

_CREDENTIAL_COLUMNS = (
    "c.id, c.account_id, c.created_at, c.description, c.metadata, c.acl, c.active, c.owner_id,"
    " c.max_sessions, c.max_endpoints"
)
_SERVICE_USER_COLUMNS = "id, account_id, name, active, created_at"
_API_KEY_COLUMNS = "k.id, k.account_id, k.created_at, k.description, k.metadata, k.owner_id"
_EVENT_COLUMNS = "id, account_id, event_type, timestamp, principal, object"


def _credential_from_row(row: Sequence[object]) -> Credential:
    (
        id_,
        account_id,
        created_at,
        description,
        metadata,
        acl,
        active,
        owner_id,
        max_sessions,
        max_endpoints,
    ) = row
    return Credential(
        id=str(id_),
        account_id=str(account_id),
        created_at=datetime.fromisoformat(str(created_at)),
        description=str(description),
        metadata=str(metadata),
        acl=tuple(str(rule) for rule in json.loads(str(acl))),
        active=bool(active),
        owner_id=None if owner_id is None else str(owner_id),
        max_sessions=None if max_sessions is None else int(cast(int, max_sessions)),
        max_endpoints=None if max_endpoints is None else int(cast(int, max_endpoints)),
    )


def _service_user_from_row(row: Sequence[object]) -> ServiceUser:
    id_, account_id, name, active, created_at = row
    return ServiceUser(
        id=str(id_),
        account_id=str(account_id),
        name=str(name),
        active=bool(active),
        created_at=datetime.fromisoformat(str(created_at)),
    )


def _api_key_from_row(row: Sequence[object]) -> ApiKey:
    id_, account_id, created_at, description, metadata, owner_id = row
    return ApiKey(
        id=str(id_),
        account_id=str(account_id),
        created_at=datetime.fromisoformat(str(created_at)),
        description=str(description),
        metadata=str(metadata),
        owner_id=None if owner_id is None else str(owner_id),
    )


def _event_from_row(row: Sequence[object]) -> Event:
    id_, account_id, event_type, timestamp, principal, object_ = row
    return Event(
        id=str(id_),
        account_id=str(account_id),
        event_type=str(event_type),
        timestamp=datetime.fromisoformat(str(timestamp)),
        principal=None if principal is None else json.loads(str(principal)),
        object=json.loads(str(object_)),
    )


def _filters(*pairs: tuple[str, str | None]) -> tuple[str, tuple[str, ...]]:
    """A `WHERE` clause (with a leading space, or "") and its parameters for the given
    `(column, value)` pairs, skipping those whose value is None. Columns are code, not input."""
    used = [(column, value) for column, value in pairs if value is not None]
    if not used:
        return "", ()
    clause = " WHERE " + " AND ".join(f"{column} = ?" for column, _ in used)
    return clause, tuple(value for _, value in used)
