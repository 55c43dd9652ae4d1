"""Who an admin API call acts as: the principal of the audit event a change records, and the
name an agent is told when the call stops, restarts or updates it.

The principal is the API key's owner (or the key itself when it has none), with `source: "API"`
and the key as the credential, in ngrok's shape. Both are built from the call's key alone;
recording goes through the `EventLog`, which writes the store and the events file.
"""

from __future__ import annotations

from edge.admin.calls import Call
from edge.admin.resources import Json
from edge.events import EventLog
from edge.store import ApiKey

__all__ = ["WHO_DESCRIPTION_MAX", "record", "who_asks"]

#: Characters of an API key's description told to an agent: enough to recognise the key.
WHO_DESCRIPTION_MAX = 100


def record(events: EventLog, call: Call, event_type: str, obj: Json) -> None:
    """Append the audit event `event_type` for `obj`, with the call's API key as principal."""
    key = call.key
    principal = {
        "id": key.owner_id or key.id,
        "subject": key.description or key.id,
        "source": "API",
        "credential": {"id": key.id, "uri": f"/api_keys/{key.id}"},
    }
    events.record(event_type, obj, principal=principal)


def who_asks(key: ApiKey) -> str:
    """Who is asking, as the agent shows it and the session's stop event records it."""
    description = "".join(c for c in key.description if c.isprintable())[:WHO_DESCRIPTION_MAX]
    return f"the admin API, key {key.id}" + (f" ({description})" if description else "")
