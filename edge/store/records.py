"""The values the store keeps, as frozen dataclasses, and the limits on what it accepts.

`Credential`, `ServiceUser`, `ApiKey`, `CloudEndpoint` and `Event` are what the store returns;
`DeletedServiceUser` reports a cascade; `UNSET` marks "leave as it is" where None already means
something.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, Final

# An event's object and principal: JSON objects, decoded.
JsonObject = dict[str, Any]

# The account the first migration creates. Credentials always name their account, so a second
# account is only a row away; this one exists so that a fresh edge works without setup.
DEFAULT_ACCOUNT_ID = "acct_default"


# ngrok's documented limits for a credential's free-text fields (reference/ngrok.md §6.4).
DESCRIPTION_MAX_BYTES = 255
METADATA_MAX_BYTES = 4096
# A service user's name: ngrok's limit for short free text, like a description.
NAME_MAX_BYTES = 255
# An event's object and principal together, as JSON: audit records are small (an agent session's
# fields, with its metadata capped at 4 KiB), and a bound keeps one bad caller from bloating
# every later listing.
EVENT_MAX_BYTES = 64 * 1024
# The most events one `list_events` call returns: a page is held in memory whole; page further
# with `before_id`. (The REST API pages by 100, ngrok's limit.)
EVENT_LIST_MAX = 1000
# `event_type` as ngrok names them: `agent_session_start.v0`, `tunnel_credential_created.v0`.
_EVENT_TYPE_RE = re.compile(r"[a-z][a-z0-9_]*\.v[0-9]+", re.ASCII)
_EVENT_TYPE_MAX_LENGTH = 128

# The largest per-credential limit (`max_sessions`, `max_endpoints`) accepted: far above anything
# one credential needs, and small enough that no arithmetic on it can surprise.
CREDENTIAL_LIMIT_MAX = 1_000_000

# A cloud endpoint's Traffic Policy document: the same bound as a policy sent in a Bind
# (`edge.policy.document.PolicyLimits.max_document_bytes`), which parsing enforces again.
TRAFFIC_POLICY_MAX_BYTES = 256 * 1024
# A cloud endpoint's URL: a scheme, a DNS name (at most 253 bytes) and a port fit easily.
ENDPOINT_URL_MAX_BYTES = 512
# The bindings an endpoint may have (ngrok.md §3.2; `kubernetes` needs ngrok's operator).
ENDPOINT_BINDINGS = ("public", "internal")

# A bound on ACL rules per credential: an ACL is checked on every bind, and a few hundred rules
# is already far more than a person can review.
ACL_MAX_RULES = 1024


class Unset(Enum):
    """The type of `UNSET`: "leave this field as it is", where None already means something."""

    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


# The default of `update_credential`'s `max_sessions` and `max_endpoints`: keep the stored value.
# (None there means "no limit", so it cannot also mean "unchanged".)
UNSET: Final = Unset.UNSET


@dataclass(frozen=True, kw_only=True)
class Credential:
    """An authtoken's stored record. The token itself is never stored; see `create_credential`."""

    id: str
    account_id: str
    created_at: datetime  # timezone-aware UTC, whole seconds (RFC 3339 `...Z` in the store)
    description: str
    metadata: str
    acl: tuple[str, ...]
    active: bool
    owner_id: str | None = None  # the owning service user; None for the account itself
    # Optional limits; None means none. Live agent sessions authenticated with this credential
    # at once (one more is refused with ERR_NGROK_108), and endpoints per such session.
    max_sessions: int | None = None
    max_endpoints: int | None = None


@dataclass(frozen=True, kw_only=True)
class ServiceUser:
    """A principal that owns credentials and API keys and cannot log in (ngrok.md §6.2)."""

    id: str
    account_id: str
    name: str  # unique within the account
    active: bool
    created_at: datetime


@dataclass(frozen=True, kw_only=True)
class DeletedServiceUser:
    """What `delete_service_user` removed: the user and the ids of the tokens it owned."""

    service_user: ServiceUser
    credential_ids: tuple[str, ...]
    api_key_ids: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class ApiKey:
    """An admin API key's stored record. The token is never stored; see `create_api_key`."""

    id: str
    account_id: str
    created_at: datetime
    description: str
    metadata: str
    owner_id: str | None


@dataclass(frozen=True, kw_only=True)
class Event:
    """One audit event, in ngrok's envelope (ngrok.md §6.5)."""

    id: str
    account_id: str
    event_type: str
    timestamp: datetime  # timezone-aware UTC, microseconds kept
    principal: JsonObject | None
    object: JsonObject


@dataclass(frozen=True, kw_only=True)
class CloudEndpoint:
    """A cloud endpoint (ngrok.md §3.1): owned by the edge, not an agent, kept until deleted.

    The store keeps what it is given (the API checks the URL and the policy before storing);
    `url` is canonical (`https://api.example.com`, no default port) and `traffic_policy` is the
    document as the caller sent it.
    """

    id: str  # ep_...
    account_id: str
    created_at: datetime
    updated_at: datetime
    url: str
    binding: str  # "public" or "internal"
    pooling_enabled: bool
    traffic_policy: str
    description: str
    metadata: str
