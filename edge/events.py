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

from edge.store import EVENT_MAX_BYTES, Event, Store, StoreError

log = logging.getLogger(__name__)

#: The JSON-lines file in the data directory.
EVENTS_FILE = "events.jsonl"

#: A Traffic Policy `log` action's record. ngrok attaches these records to its traffic events
#: (`http_request_complete.v0`, `tcp_connection_closed.v0`, as `traffic_policy.logs`); Burrow
#: records no per-request traffic events, so each record is an event of its own, with the same
#: `traffic_policy.logs` shape inside.
POLICY_LOG_EVENT = "traffic_policy_log.v0"

#: The most JSON a `log` record's metadata may put in one event: a quarter of the store's
#: per-event bound (EVENT_MAX_BYTES), leaving room for the envelope. Metadata is rendered from
#: request data (a header the client chose), so a larger one is replaced by a note saying how
#: large it was, never refused with an error per request.
POLICY_LOG_MAX_BYTES = EVENT_MAX_BYTES // 4


def policy_log_object(
    *, endpoint_url: str, phase: str, place: str, metadata: dict[str, Any]
) -> dict[str, Any]:
    """The event object of one `log` record: the endpoint, the phase, the action's place
    (phase, rule and action) and the metadata (or, past POLICY_LOG_MAX_BYTES, a note)."""
    text = json.dumps(metadata, default=str, sort_keys=True, separators=(",", ":"))
    size = len(text.encode("utf-8"))
    if size > POLICY_LOG_MAX_BYTES:
        payload: dict[str, Any] = {"truncated": True, "bytes": size}
    else:
        payload = json.loads(text)  # plain JSON: bytes and timestamps as their text
    return {
        "endpoint": {"url": endpoint_url},
        "traffic_policy": {"logs": [{"phase": phase, "place": place, "metadata": payload}]},
    }


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

    def record_policy_log(
        self, *, endpoint_url: str, phase: str, place: str, metadata: dict[str, Any]
    ) -> Event | None:
        """Record one Traffic Policy `log` record as a `traffic_policy_log.v0` event (no
        principal: traffic, not an API call). Never raises, as `record`."""
        obj = policy_log_object(
            endpoint_url=endpoint_url, phase=phase, place=place, metadata=metadata
        )
        return self.record(POLICY_LOG_EVENT, obj, principal=None)
