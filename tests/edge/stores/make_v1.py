"""Write `v1.db`: a store at schema version 1, as burrow-edge wrote it before service users.

The file is kept in the repository so that the upgrade test opens bytes an older release really
wrote; this script says exactly what is in it and regenerates it. It uses only the standard
library and `MIGRATIONS[0]` (released migrations are never edited), inserting rows the way
version 1's `create_credential` did. Run from the repository root:

    .venv/bin/python -m tests.edge.stores.make_v1
"""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Final, TypedDict

from edge.store import MIGRATIONS

PATH: Final = Path(__file__).with_name("v1.db")


class V1Credential(TypedDict):
    id: str
    token: str
    created_at: str
    description: str
    metadata: str
    acl: list[str]
    active: bool


def _credential(
    fill: int, *, created_at: str, description: str, acl: list[str], active: bool
) -> V1Credential:
    id_part = base64.b32encode(bytes([fill]) * 16).decode("ascii").rstrip("=")
    secret = base64.urlsafe_b64encode(bytes([fill + 1]) * 32).decode("ascii").rstrip("=")
    return V1Credential(
        id="cr_" + id_part,
        token=f"{id_part}_{secret}",
        created_at=created_at,
        description=description,
        metadata='{"site": 7}',
        acl=acl,
        active=active,
    )


CREDENTIALS: Final = (
    _credential(
        1,
        created_at="2025-01-02T03:04:05Z",
        description="clinic-a agent",
        acl=["bind:*.clinic-a.internal"],
        active=True,
    ),
    _credential(3, created_at="2025-01-02T03:04:06Z", description="open", acl=[], active=True),
    _credential(5, created_at="2025-01-02T03:04:07Z", description="off", acl=[], active=False),
)


def write_v1_store(path: Path) -> None:
    """Create a version-1 store at `path` (which must not exist) holding `CREDENTIALS`."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("BEGIN IMMEDIATE")
        for statement in MIGRATIONS[0]:
            connection.execute(statement)
        connection.execute("PRAGMA user_version = 1")
        for credential in CREDENTIALS:
            secret = credential["token"].partition("_")[2]
            connection.execute(
                "INSERT INTO credentials"
                " (id, account_id, created_at, description, metadata, acl, token_hash, active)"
                " VALUES (?, 'acct_default', ?, ?, ?, ?, ?, ?)",
                (
                    credential["id"],
                    credential["created_at"],
                    credential["description"],
                    credential["metadata"],
                    json.dumps(credential["acl"]),
                    hashlib.sha256(secret.encode("ascii")).digest(),
                    int(credential["active"]),
                ),
            )
        connection.execute("COMMIT")
        # Fold the WAL back into the main file so that one file is the whole fixture.
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        connection.execute("PRAGMA journal_mode = DELETE")
    finally:
        connection.close()


if __name__ == "__main__":
    PATH.unlink(missing_ok=True)
    write_v1_store(PATH)
    print(f"wrote {PATH}")
