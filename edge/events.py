"""Audit events: recorded in the store (queryable) and appended to a JSON-lines file for log
shippers, in ngrok's envelope (reference ngrok.md §6.5).

Recording must never take a session down: a store or file error is logged and the event is
lost, loudly, rather than failing the agent that caused it.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC
from pathlib import Path
from typing import Any

from edge.store import Event, Store, StoreError

log = logging.getLogger(__name__)

#: The JSON-lines file in the data directory.
EVENTS_FILE = "events.jsonl"


def envelope(event: Event) -> dict[str, Any]:
    """ngrok's event envelope for one stored event."""
    return {
        "event_id": event.id,
        "event_type": event.event_type,
        "event_timestamp": event.timestamp.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "account_id": event.account_id,
        "principal": event.principal,
        "object": event.object,
    }


class EventLog:
    def __init__(self, store: Store, jsonl_path: Path | None) -> None:
        self.store = store
        self.jsonl_path = jsonl_path

    def record(
        self, event_type: str, obj: dict[str, Any], *, principal: dict[str, Any] | None
    ) -> Event | None:
        try:
            event = self.store.append_event(event_type, obj, principal=principal)
        except StoreError:
            log.exception("audit event %s not recorded", event_type)
            return None
        if self.jsonl_path is not None:
            try:
                with self.jsonl_path.open("a", encoding="utf-8") as out:
                    out.write(json.dumps(envelope(event), separators=(",", ":")) + "\n")
            except OSError:
                log.exception("audit event %s not appended to %s", event.id, self.jsonl_path)
        return event
