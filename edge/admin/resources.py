"""ngrok's JSON shapes for the admin API's resources (ngrok.md §6.4), and list paging.

Every function takes stored or live values and returns plain JSON-ready dicts. `base` is the
API's base URL (`http://127.0.0.1:4041`), which ngrok puts in front of every `uri`; audit
events store the same objects with `base=""`, so that they do not depend on the address a
request happened to use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import urlencode

from edge import timestamps
from edge.admin.errors import ERR_BAD_QUERY, ApiError
from edge.admin.live import EndpointInfo, PoolMemberInfo, SessionInfo
from edge.events import envelope
from edge.store import ApiKey, CloudEndpoint, Credential, Event, ServiceUser
from protocol.formats.urls import format_host_port, parse_endpoint_url

__all__ = [
    "MAX_PAGE",
    "api_key_json",
    "cloud_endpoint_json",
    "credential_json",
    "endpoint_json",
    "event_json",
    "page",
    "ref",
    "rfc3339",
    "service_user_json",
    "tunnel_session_json",
]

Json = dict[str, Any]
T = TypeVar("T")

#: ngrok's largest (and default) page (ngrok.md §6.3).
MAX_PAGE = 100
#: Agent sessions' `transport` as ngrok's example shows it (its schema says `ngrok/v2`).
TUNNEL_SESSION_TRANSPORT = "ngrok/2"
#: This edge's one region, as agents are told in AuthResp.
REGION = "local"


def rfc3339(moment: datetime | None) -> str | None:
    """RFC 3339 in UTC with `Z`, to the second, as ngrok writes `created_at`."""
    return None if moment is None else timestamps.rfc3339(moment)


def ref(base: str, collection: str, id_: str) -> Json:
    """ngrok's reference to another resource: `{id, uri}`."""
    return {"id": id_, "uri": f"{base}/{collection}/{id_}"}


def service_user_json(base: str, user: ServiceUser) -> Json:
    return {
        "id": user.id,
        "uri": f"{base}/service_users/{user.id}",
        "name": user.name,
        "active": user.active,
        "created_at": rfc3339(user.created_at),
    }


def credential_json(base: str, credential: Credential, token: str | None = None) -> Json:
    return {
        "id": credential.id,
        "uri": f"{base}/credentials/{credential.id}",
        "created_at": rfc3339(credential.created_at),
        "description": credential.description,
        "metadata": credential.metadata,
        "token": token,
        "acl": list(credential.acl),
        "owner_id": credential.owner_id,
        # Not in ngrok's shape (ngrok deletes rather than deactivates); Burrow's CLI can revoke
        # without deleting, and a caller should be able to see that.
        "active": credential.active,
        # Burrow's optional limits, also not in ngrok's shape; null when there is none.
        "max_sessions": credential.max_sessions,
        "max_endpoints": credential.max_endpoints,
    }


def api_key_json(base: str, api_key: ApiKey, token: str | None = None) -> Json:
    return {
        "id": api_key.id,
        "uri": f"{base}/api_keys/{api_key.id}",
        "description": api_key.description,
        "metadata": api_key.metadata,
        "created_at": rfc3339(api_key.created_at),
        "token": token,
        "owner_id": api_key.owner_id,
    }


def tunnel_session_json(base: str, session: SessionInfo) -> Json:
    return {
        "id": session.id,
        "uri": f"{base}/tunnel_sessions/{session.id}",
        "agent_version": session.agent_version,
        "credential": ref(base, "credentials", session.credential_id),
        "ip": session.ip,
        "metadata": session.metadata,
        "os": session.os,
        "region": REGION,
        "started_at": rfc3339(session.started_at),
        "transport": TUNNEL_SESSION_TRANSPORT,
    }


def endpoint_json(base: str, endpoint: EndpointInfo) -> Json:
    # The edge made this URL, so it parses; a default port is left out of it (443 for https).
    url = parse_endpoint_url(endpoint.url)
    port = endpoint.port if endpoint.port is not None else (url.effective_port or 0)
    return {
        "id": endpoint.id,
        "uri": f"{base}/endpoints/{endpoint.id}",
        "region": REGION,
        "created_at": rfc3339(endpoint.started_at),
        "public_url": endpoint.url,
        "url": endpoint.url,
        "proto": endpoint.proto,
        "scheme": url.scheme,
        "hostport": format_host_port(url.host, port),
        "host": url.host,
        "port": port,
        "type": "ephemeral",
        "metadata": "",
        "description": "",
        "bindings": [endpoint.binding],
        # A string, as ngrok's Endpoint has it (the document as sent; "" when there is none).
        "traffic_policy": endpoint.traffic_policy,
        "pooling_enabled": endpoint.pooling_enabled,
        "tunnel_session": ref(base, "tunnel_sessions", endpoint.session_id),
        "principal": (
            None if endpoint.owner_id is None else ref(base, "service_users", endpoint.owner_id)
        ),
        # Burrow additions: where the agent is and how the edge sees it.
        "agent_addr": endpoint.agent_addr,
        "health": endpoint.health,
        # ngrok's read-only `pools` (documented, not in its OpenAPI): the pool's members, this
        # one included; [] when the endpoint is alone on its URL.
        "pools": [pool_member_json(base, member) for member in endpoint.pool],
    }


def pool_member_json(base: str, member: PoolMemberInfo) -> Json:
    """One member of a pool: its endpoint, session, agent address, health and load."""
    return {
        "id": member.id,
        "uri": f"{base}/endpoints/{member.id}",
        "type": "cloud" if member.cloud else "ephemeral",
        "tunnel_session": (
            None if member.cloud else ref(base, "tunnel_sessions", member.session_id)
        ),
        "agent_addr": member.agent_addr,
        "health": member.health,
        "health_reason": member.reason,
        "outstanding_streams": member.outstanding_streams,
        "streams_opened": member.streams_opened,
    }


def cloud_endpoint_json(base: str, endpoint: CloudEndpoint, public_url: str) -> Json:
    """A cloud endpoint as ngrok shows one (`type: cloud`, no tunnel session); `public_url` is
    the URL clients dial (with the edge's port when it is not the default)."""
    url = parse_endpoint_url(endpoint.url)  # stored canonical, so it parses
    port = url.effective_port or 0
    return {
        "id": endpoint.id,
        "uri": f"{base}/endpoints/{endpoint.id}",
        "region": REGION,
        "created_at": rfc3339(endpoint.created_at),
        "updated_at": rfc3339(endpoint.updated_at),
        "public_url": public_url,
        "url": endpoint.url,
        "proto": url.scheme,
        "scheme": url.scheme,
        "hostport": format_host_port(url.host, port),
        "host": url.host,
        "port": port,
        "type": "cloud",
        "metadata": endpoint.metadata,
        "description": endpoint.description,
        "bindings": [endpoint.binding],
        "traffic_policy": endpoint.traffic_policy,
        "pooling_enabled": endpoint.pooling_enabled,
        "tunnel_session": None,
        "principal": None,
    }


def event_json(event: Event) -> Json:
    return envelope(event)


def page(
    items: Sequence[T],
    id_of: Callable[[T], str],
    *,
    limit: int,
    before_id: str | None,
) -> tuple[list[T], str | None]:
    """One page of `items` (already newest first): up to `limit` of those after `before_id`,
    and the id to page on from (the last one's) if more remain, else None.

    `ApiError` (400) for a `before_id` that is not in `items`: ids are random, so a cursor
    must name an item that still exists.
    """
    start = 0
    if before_id is not None:
        for index, item in enumerate(items):
            if id_of(item) == before_id:
                start = index + 1
                break
        else:
            raise ApiError(
                400,
                ERR_BAD_QUERY,
                f"before_id {before_id!r} names nothing in this list (deleted since?); "
                "list again from the start",
            )
    chunk = list(items[start : start + limit])
    more = start + limit < len(items)
    return chunk, (id_of(chunk[-1]) if more and chunk else None)


def next_page_uri(
    base: str, path: str, cursor: str | None, limit: int, filters: Sequence[tuple[str, str]] = ()
) -> str | None:
    """The absolute URI of the next page, keeping `limit` and the filters; None at the end."""
    if cursor is None:
        return None
    query = urlencode([*filters, ("before_id", cursor), ("limit", str(limit))])
    return f"{base}{path}?{query}"
