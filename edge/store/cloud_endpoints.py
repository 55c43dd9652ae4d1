"""The SQLite backend's cloud endpoint rows: checks, SQL and row decoding.

`SQLiteStore` calls these with its connection, inside its lock (and, for writes, inside one
`BEGIN IMMEDIATE` transaction), so each function is one short, consistent step. Values are
checked before any SQL runs: a refused value writes nothing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from edge.store.checks import _check_text
from edge.store.errors import StoreError
from edge.store.records import (
    DESCRIPTION_MAX_BYTES,
    ENDPOINT_BINDINGS,
    ENDPOINT_URL_MAX_BYTES,
    METADATA_MAX_BYTES,
    TRAFFIC_POLICY_MAX_BYTES,
    CloudEndpoint,
)
from edge.store.rows import _filters
from edge.timestamps import rfc3339

_COLUMNS = (
    "id, account_id, created_at, updated_at, url, binding, pooling_enabled, traffic_policy,"
    " description, metadata"
)


def check_fields(
    *,
    url: str | None = None,
    binding: str | None = None,
    pooling_enabled: bool | None = None,
    traffic_policy: str | None = None,
    description: str | None = None,
    metadata: str | None = None,
) -> None:
    """`StoreError` naming the first field (of those given) that the store cannot keep."""
    if url is not None:
        _check_text("cloud endpoint url", url, ENDPOINT_URL_MAX_BYTES)
        if "://" not in url:
            raise StoreError(f"cloud endpoint url must be scheme://host, not {url[:64]!r}")
    if binding is not None and binding not in ENDPOINT_BINDINGS:
        raise StoreError(
            f"cloud endpoint binding must be one of {', '.join(ENDPOINT_BINDINGS)}, not {binding!r}"
        )
    if pooling_enabled is not None and not isinstance(pooling_enabled, bool):
        raise StoreError(f"cloud endpoint pooling_enabled must be a bool, not {pooling_enabled!r}")
    if traffic_policy is not None:
        _check_text("cloud endpoint traffic_policy", traffic_policy, TRAFFIC_POLICY_MAX_BYTES)
    if description is not None:
        _check_text("cloud endpoint description", description, DESCRIPTION_MAX_BYTES)
    if metadata is not None:
        _check_text("cloud endpoint metadata", metadata, METADATA_MAX_BYTES)


def from_row(row: Sequence[object]) -> CloudEndpoint:
    (
        id_,
        account_id,
        created_at,
        updated_at,
        url,
        binding,
        pooling_enabled,
        traffic_policy,
        description,
        metadata,
    ) = row
    return CloudEndpoint(
        id=str(id_),
        account_id=str(account_id),
        created_at=datetime.fromisoformat(str(created_at)),
        updated_at=datetime.fromisoformat(str(updated_at)),
        url=str(url),
        binding=str(binding),
        pooling_enabled=bool(pooling_enabled),
        traffic_policy=str(traffic_policy),
        description=str(description),
        metadata=str(metadata),
    )


def insert(connection: sqlite3.Connection, endpoint: CloudEndpoint) -> None:
    """Store a new cloud endpoint; `StoreError` for an unknown account."""
    try:
        connection.execute(
            f"INSERT INTO cloud_endpoints ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                endpoint.id,
                endpoint.account_id,
                rfc3339(endpoint.created_at),
                rfc3339(endpoint.updated_at),
                endpoint.url,
                endpoint.binding,
                int(endpoint.pooling_enabled),
                endpoint.traffic_policy,
                endpoint.description,
                endpoint.metadata,
            ),
        )
    except sqlite3.IntegrityError as exc:
        raise StoreError(
            f"cannot create a cloud endpoint in account {endpoint.account_id!r}: {exc}"
        ) from exc


def select(connection: sqlite3.Connection, endpoint_id: str) -> CloudEndpoint | None:
    row = connection.execute(
        f"SELECT {_COLUMNS} FROM cloud_endpoints WHERE id = ?", (endpoint_id,)
    ).fetchone()
    return None if row is None else from_row(row)


def select_all(connection: sqlite3.Connection, account_id: str | None) -> list[CloudEndpoint]:
    """Newest first (rowid order is creation order, exact even within one second)."""
    where, params = _filters(("account_id", account_id))
    rows = connection.execute(
        f"SELECT {_COLUMNS} FROM cloud_endpoints{where} ORDER BY rowid DESC", params
    ).fetchall()
    return [from_row(row) for row in rows]


def update(
    connection: sqlite3.Connection,
    endpoint_id: str,
    *,
    now: datetime,
    url: str | None,
    binding: str | None,
    pooling_enabled: bool | None,
    traffic_policy: str | None,
    description: str | None,
    metadata: str | None,
) -> CloudEndpoint | None:
    """Change the given fields (None: keep) and stamp `updated_at`; None if there is no such
    endpoint."""
    current = select(connection, endpoint_id)
    if current is None:
        return None
    updated = replace(
        current,
        updated_at=now,
        url=current.url if url is None else url,
        binding=current.binding if binding is None else binding,
        pooling_enabled=current.pooling_enabled if pooling_enabled is None else pooling_enabled,
        traffic_policy=current.traffic_policy if traffic_policy is None else traffic_policy,
        description=current.description if description is None else description,
        metadata=current.metadata if metadata is None else metadata,
    )
    connection.execute(
        "UPDATE cloud_endpoints SET updated_at = ?, url = ?, binding = ?, pooling_enabled = ?,"
        " traffic_policy = ?, description = ?, metadata = ? WHERE id = ?",
        (
            rfc3339(updated.updated_at),
            updated.url,
            updated.binding,
            int(updated.pooling_enabled),
            updated.traffic_policy,
            updated.description,
            updated.metadata,
            endpoint_id,
        ),
    )
    return updated


def delete(connection: sqlite3.Connection, endpoint_id: str) -> CloudEndpoint | None:
    """Remove the endpoint; the record as it was, or None if there was none."""
    current = select(connection, endpoint_id)
    if current is not None:
        connection.execute("DELETE FROM cloud_endpoints WHERE id = ?", (endpoint_id,))
    return current
