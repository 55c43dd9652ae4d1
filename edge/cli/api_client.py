"""A small client for a running edge's admin API (edge/admin), for `burrow-edge`'s commands.

Standard library only (`http.client`): one request per connection, no proxies and no redirects,
so that what is sent is exactly what `--api-url` names. Every request carries
`Authorization: Bearer <key>` and `Ngrok-Version: 2`, and a JSON body when there is one.

Failures are `ApiClientError`s with a message fit for a terminal:

* `ApiRefusedError`: the edge refused the request, usually with ngrok's error body (`error_code`,
  `status_code`, `msg`); the edge's own side of that is `edge.admin.errors.ApiError`;
* `UnreachableError`: nothing accepts connections at the URL;
* `ApiClientError` itself: anything else on the way (timeout, TLS, a reply that is not the API's).
"""

from __future__ import annotations

import http.client
import json
import ssl
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from protocol.rpc.errcodes import NgrokError, normalize_code

__all__ = [
    "API_KEY_ENV",
    "API_URL_ENV",
    "DEFAULT_API_URL",
    "AdminClient",
    "ApiClientError",
    "ApiRefusedError",
    "UnreachableError",
]

Json = dict[str, Any]

#: Where `burrow-edge serve` listens for the admin API unless edge.yml says otherwise.
DEFAULT_API_URL = "http://127.0.0.1:4041"
API_KEY_ENV = "BURROW_API_KEY"
API_URL_ENV = "BURROW_API_URL"
#: The API version ngrok's clients send (the edge accepts it, or none).
API_VERSION = "2"
#: The API's largest page.
MAX_PAGE = 100
#: Pages followed at most by one listing: 100,000 items, far beyond any honest edge.
MAX_PAGES = 1000
#: The most of a non-API reply quoted in an error.
QUOTE_BYTES = 200


class ApiClientError(NgrokError):
    """The request did not get an answer from the admin API; the message says why.

    `ApiClientError(message)`; `code` is None unless the edge sent one (`ApiRefusedError`).
    """


class ApiRefusedError(ApiClientError):
    """The admin API refused the request: `status`, the body's `error_code` ("" if none) and
    `msg`, and its `operation_id`; `str()` is `msg (error_code)`, or `msg` without a code.

    `code` is `error_code` when it is an ngrok code and None otherwise: the reply comes from the
    network, and a stray `error_code` must not turn into a ValueError here.
    """

    def __init__(self, status: int, error_code: str, msg: str, operation_id: str = "") -> None:
        super().__init__(msg, _ngrok_code(error_code))
        self.status = status
        self.error_code = error_code
        self.operation_id = operation_id

    @property
    def msg(self) -> str:
        return self.message

    def __str__(self) -> str:
        return f"{self.message} ({self.error_code})" if self.error_code else self.message


class UnreachableError(ApiClientError):
    """Nothing accepts connections at the API's URL."""

    def __init__(self, url: str) -> None:
        super().__init__(
            f"no edge answers at {url} (is burrow-edge serve running? is admin enabled?)"
        )
        self.url = url


class AdminClient:
    """The admin API at `base_url` (`http://host:port` or `https://...`), as API key `api_key`.

    `ssl_context` is used for https (default: the system's trust store, which honours
    SSL_CERT_FILE)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(base_url.strip())
        try:
            port = parts.port
        except ValueError:
            port = -1
        if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
            raise ApiClientError(
                f"the API URL must look like {DEFAULT_API_URL} (or https://...), not {base_url!r}"
            )
        if parts.query or parts.fragment:
            raise ApiClientError(f"the API URL must not have a query or fragment: {base_url!r}")
        self.base_url = base_url.strip().rstrip("/")
        self.api_key = api_key.strip()
        self.timeout = timeout
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = port
        self._prefix = parts.path.rstrip("/")
        self._ssl_context = ssl_context

    # ------------------------------------------------------------------------------ transport

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: Mapping[str, Any] | None = None,
    ) -> Json | None:
        """One request; the JSON object answered, or None for 204 No Content."""
        target = self._prefix + path + (f"?{urlencode(query)}" if query else "")
        headers = {
            "Authorization": f"Bearer {self.api_key}",
            "Ngrok-Version": API_VERSION,
            "Accept": "application/json",
            "User-Agent": "burrow-edge-cli",
        }
        payload = None
        if body is not None:
            payload = json.dumps(body, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        connection: http.client.HTTPConnection
        if self._https:
            connection = http.client.HTTPSConnection(
                self._host, self._port, timeout=self.timeout, context=self._ssl_context
            )
        else:
            connection = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
        try:
            connection.request(method, target, body=payload, headers=headers)
            response = connection.getresponse()
            status, reason, raw = response.status, response.reason, response.read()
        except ConnectionRefusedError as exc:
            raise UnreachableError(self.base_url) from exc
        except ssl.SSLError as exc:
            raise ApiClientError(f"TLS with the edge at {self.base_url} failed: {exc}") from exc
        except TimeoutError as exc:
            raise ApiClientError(
                f"the edge at {self.base_url} did not answer {method} {path} within "
                f"{self.timeout:g}s"
            ) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise ApiClientError(
                f"the edge at {self.base_url} could not be reached: {exc or type(exc).__name__}"
            ) from exc
        finally:
            connection.close()
        if status == 204:
            return None
        value = _json_object(raw)
        if 200 <= status < 300:
            if value is None:
                raise ApiClientError(
                    f"{method} {self.base_url}{path} answered {status} without a JSON object: "
                    f"{raw[:QUOTE_BYTES]!r} (is {self.base_url} the edge's admin API?)"
                )
            return value
        if value is not None and isinstance(value.get("msg"), str):
            details = value.get("details")
            operation = details.get("operation_id", "") if isinstance(details, dict) else ""
            code = str(value.get("error_code") or "")
            raise ApiRefusedError(status, code, value["msg"], str(operation))
        raise ApiRefusedError(
            status,
            "",
            f"{method} {self.base_url}{path} answered HTTP {status} {reason}: "
            f"{raw[:QUOTE_BYTES]!r} (is {self.base_url} the edge's admin API?)",
        )

    def _object(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Json:
        value = self.request(method, path, body=body)
        if value is None:
            raise ApiClientError(f"{method} {self.base_url}{path} answered no content")
        return value

    def list_all(
        self, collection: str, prop: str | None = None, filters: Sequence[tuple[str, str]] = ()
    ) -> list[Json]:
        """Every item of a list resource, newest first, following the pages; `filters` are
        query parameters the resource filters on (`("url", "https://...")`)."""
        prop = prop or collection
        items: list[Json] = []
        query: list[tuple[str, str]] = [*filters, ("limit", str(MAX_PAGE))]
        for _ in range(MAX_PAGES):
            listing = self._object("GET", f"/{collection}?{urlencode(query)}")
            chunk = _items(listing, prop)
            items.extend(chunk)
            if not listing.get("next_page_uri") or not chunk:
                break
            query = [*filters, ("before_id", str(chunk[-1]["id"])), ("limit", str(MAX_PAGE))]
        return items

    # ------------------------------------------------------------------------------ resources

    def create_service_user(self, name: str) -> Json:
        return self._object("POST", "/service_users", {"name": name})

    def list_service_users(self) -> list[Json]:
        return self.list_all("service_users")

    def update_service_user(self, service_user_id: str, *, active: bool) -> Json:
        return self._object("PATCH", f"/service_users/{_id(service_user_id)}", {"active": active})

    def delete_service_user(self, service_user_id: str) -> None:
        self.request("DELETE", f"/service_users/{_id(service_user_id)}")

    def create_credential(
        self,
        *,
        description: str = "",
        metadata: str = "",
        acl: Sequence[str] = (),
        owner_id: str | None = None,
        max_sessions: int | None = None,
        max_endpoints: int | None = None,
    ) -> Json:
        body: Json = {"description": description, "metadata": metadata, "acl": list(acl)}
        for name, value in (
            ("owner_id", owner_id),
            ("max_sessions", max_sessions),
            ("max_endpoints", max_endpoints),
        ):
            if value is not None:
                body[name] = value
        return self._object("POST", "/credentials", body)

    def list_credentials(self) -> list[Json]:
        return self.list_all("credentials")

    def update_credential(self, credential_id: str, *, active: bool) -> Json:
        return self._object("PATCH", f"/credentials/{_id(credential_id)}", {"active": active})

    def delete_credential(self, credential_id: str) -> None:
        self.request("DELETE", f"/credentials/{_id(credential_id)}")

    def create_api_key(
        self, *, description: str = "", metadata: str = "", owner_id: str | None = None
    ) -> Json:
        body: Json = {"description": description, "metadata": metadata}
        if owner_id is not None:
            body["owner_id"] = owner_id
        return self._object("POST", "/api_keys", body)

    def list_api_keys(self) -> list[Json]:
        return self.list_all("api_keys", "keys")  # ngrok's list property for API keys

    def delete_api_key(self, api_key_id: str) -> None:
        self.request("DELETE", f"/api_keys/{_id(api_key_id)}")

    def list_tunnel_sessions(self) -> list[Json]:
        return self.list_all("tunnel_sessions")

    def stop_tunnel_session(self, session_id: str) -> None:
        self.request("POST", f"/tunnel_sessions/{_id(session_id)}/stop", body={})

    def list_endpoints(self, *, ids: Sequence[str] = (), urls: Sequence[str] = ()) -> list[Json]:
        """Agent and cloud endpoints, newest first; only those with one of `ids` / `urls` when
        given."""
        filters = [("id", i) for i in ids] + [("url", u) for u in urls]
        return self.list_all("endpoints", filters=filters)

    def create_endpoint(self, body: Mapping[str, Any]) -> Json:
        """A cloud endpoint (ngrok's EndpointCreate body: `type: cloud`, `url`,
        `traffic_policy`, ...)."""
        return self._object("POST", "/endpoints", body)

    def get_endpoint(self, endpoint_id: str) -> Json:
        return self._object("GET", f"/endpoints/{_id(endpoint_id)}")

    def update_endpoint(self, endpoint_id: str, body: Mapping[str, Any]) -> Json:
        """Change a cloud endpoint (ngrok's EndpointUpdate body: only the fields to change)."""
        return self._object("PATCH", f"/endpoints/{_id(endpoint_id)}", body)

    def delete_endpoint(self, endpoint_id: str) -> None:
        self.request("DELETE", f"/endpoints/{_id(endpoint_id)}")

    def list_events(
        self,
        *,
        limit: int = MAX_PAGE,
        event_type: str | None = None,
        principal_id: str | None = None,
        before_id: str | None = None,
    ) -> tuple[list[Json], bool]:
        """One page of events, newest first (`limit` at most 100), and whether more remain."""
        query = [("limit", str(limit))]
        if event_type:
            query.append(("type", event_type))
        if principal_id:
            query.append(("principal_id", principal_id))
        if before_id:
            query.append(("before_id", before_id))
        listing = self._object("GET", f"/events?{urlencode(query)}")
        return _items(listing, "events"), bool(listing.get("next_page_uri"))


def _id(value: str) -> str:
    """An id as one path segment: whatever a person typed cannot reach another path."""
    return quote(value, safe="")


def _ngrok_code(text: str) -> str | None:
    """`text` if it is an ngrok error code, else None."""
    try:
        return normalize_code(text)
    except ValueError:
        return None


def _json_object(raw: bytes) -> Json | None:
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _items(listing: Json, prop: str) -> list[Json]:
    items = listing.get(prop)
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ApiClientError(f"the API's listing has no {prop!r} array: {str(listing)[:200]}")
    return items
