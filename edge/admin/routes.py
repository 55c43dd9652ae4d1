"""The admin API's request handling, without I/O: a `Request` in, a `Response` out.

Theory of operation. `AdminApi.handle` runs the same steps for every request, each of which may
answer with ngrok's error body instead: the API key (401; 429 for anything but a valid key once
the source address has spent its budget of failures), the `Ngrok-Version` header (400 unless
absent or 2), the route (404, 405), then the resource handler, which parses the query and the
JSON body against the fields it knows (400 naming the field) and calls the store and the live
edge. The handlers live beside this module: `account_routes` (service users, credentials, API
keys, events) and `live_routes` (tunnel sessions, endpoints). Changes made through them append
an audit event whose principal is the API key's owner (or the key), with `source: "API"`
(`edge.admin.audit`):

    service_user_created.v0  service_user_updated.v0  service_user_deleted.v0
    tunnel_credential_created.v0  tunnel_credential_updated.v0  tunnel_credential_deleted.v0
    api_key_created.v0  api_key_updated.v0  api_key_deleted.v0
    endpoint_created.v0  endpoint_updated.v0  endpoint_deleted.v0     (cloud endpoints)

(ngrok's names for credentials and API keys, ngrok.md §6.5; the service user names follow the
same pattern.) Stopping a tunnel session records nothing here: the session's own
`agent_session_stop.v0` names the API key in its `error`. Revoking a credential (deleting it,
deactivating it, or deactivating or deleting its service user) ends its live sessions before the
response is sent.

Store calls are short and synchronous, as everywhere else in the edge; the store and the live
state are the only things touched, and time arrives as `now`.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from urllib.parse import unquote

from edge.admin import calls
from edge.admin.account_routes import AccountRoutes
from edge.admin.auth import FailedAuthLimiter, authenticate_within_budget
from edge.admin.calls import Call, Handler, Request, Response
from edge.admin.cloud_endpoints import CloudEndpointApi
from edge.admin.errors import ERR_BAD_VERSION, ApiError, error_body, status_code
from edge.admin.live import LiveState
from edge.admin.live_routes import LiveRoutes
from edge.admin.session_control import SessionControl
from edge.endpoints.cloud_live import CloudEndpoints
from edge.events import EventLog
from edge.store import Store, StoreError

__all__ = ["AdminApi", "Request", "Response"]

log = logging.getLogger(__name__)

#: The API version ngrok's clients send (and the only one there is).
API_VERSION = "2"
#: Ids in a path are ours (about 30 characters); a longer one names nothing, so say 404 early.
MAX_ID_LENGTH = 128


class AdminApi:
    """The admin API over one store and one running edge (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        live: LiveState,
        events: EventLog,
        *,
        limiter: FailedAuthLimiter | None = None,
        new_operation_id: Callable[[], str] = lambda: "op_" + secrets.token_hex(13),
        cloud: CloudEndpoints | None = None,
        control: SessionControl | None = None,
    ) -> None:
        """`cloud` is the running edge's cloud endpoints; without it, creating one is refused
        (400). `control` sends agents Stop/Restart/Update; without it, stop closes the session
        at the edge and restart and update are refused (400)."""
        self.store = store
        self.cloud = None if cloud is None else CloudEndpointApi(store, cloud)
        # Remote management of agents; without it, stop closes the session from the edge.
        self.control = control
        self.live = live
        self.events = events
        self.limiter = FailedAuthLimiter() if limiter is None else limiter
        self._new_operation_id = new_operation_id
        accounts = AccountRoutes(store, live, events)
        live_routes = LiveRoutes(
            store,
            live,
            events,
            cloud=self.cloud,
            control=control,
            error_response=self.error_response,
        )
        # (path pattern, {method: handler}); "*" matches one id segment.
        self._routes: list[tuple[tuple[str, ...], dict[str, Handler]]] = [
            (("service_users",), {"GET": accounts.list_service_users, "POST": accounts.create_su}),
            (
                ("service_users", "*"),
                {"GET": accounts.get_su, "PATCH": accounts.update_su, "DELETE": accounts.delete_su},
            ),
            (("credentials",), {"GET": accounts.list_credentials, "POST": accounts.create_cred}),
            (
                ("credentials", "*"),
                {
                    "GET": accounts.get_cred,
                    "PATCH": accounts.update_cred,
                    "DELETE": accounts.delete_cred,
                },
            ),
            (("api_keys",), {"GET": accounts.list_api_keys, "POST": accounts.create_key}),
            (
                ("api_keys", "*"),
                {
                    "GET": accounts.get_key,
                    "PATCH": accounts.update_key,
                    "DELETE": accounts.delete_key,
                },
            ),
            (("tunnel_sessions",), {"GET": live_routes.list_sessions}),
            (("tunnel_sessions", "*"), {"GET": live_routes.get_session}),
            (("tunnel_sessions", "*", "stop"), {"POST": live_routes.stop_session}),
            (("tunnel_sessions", "*", "restart"), {"POST": live_routes.restart_session}),
            (("tunnel_sessions", "*", "update"), {"POST": live_routes.update_session}),
            (
                ("endpoints",),
                {"GET": live_routes.list_endpoints, "POST": live_routes.create_endpoint},
            ),
            (
                ("endpoints", "*"),
                {
                    "GET": live_routes.get_endpoint,
                    "PATCH": live_routes.update_endpoint,
                    "DELETE": live_routes.delete_endpoint,
                },
            ),
            (("events",), {"GET": accounts.list_events}),
        ]

    # ------------------------------------------------------------------------------ entry

    def handle(self, request: Request, *, now: float) -> Response:
        """Answer one request. Never raises for any request: refusals are error bodies, and a
        fault of the edge is a 500 (logged) or, for a failing store, a 503."""
        try:
            return self._handle(request, now)
        except ApiError as exc:
            return self.error_response(exc)
        except StoreError as exc:
            log.warning("admin API: %s: store failed: %s", request.method, exc)
            return self.error_response(
                ApiError(503, status_code(503), f"The edge's store failed: {exc}; try again.")
            )
        except Exception:
            log.exception("admin API: %s failed", request.method)
            return self.error_response(
                ApiError(500, status_code(500), "The edge failed to handle this request.")
            )

    def error_response(self, error: ApiError, *, close: bool = False) -> Response:
        """ngrok's error body for `error` (with `Connection: close` when the shell will close)."""
        headers: list[tuple[str, str]] = [("content-type", "application/json")]
        if error.status == 405:
            headers.append(("allow", error.msg.rpartition("allowed: ")[2]))
        if error.status == 429:
            headers.append(("retry-after", str(int(self.limiter.refill_seconds))))
        if close:
            headers.append(("connection", "close"))
        return Response(
            status=error.status,
            headers=tuple(headers),
            body=error_body(error, self._new_operation_id()),
        )

    def _handle(self, request: Request, now: float) -> Response:
        key = authenticate_within_budget(
            self.store,
            calls.header(request, "authorization"),
            limiter=self.limiter,
            address=request.remote,
            now=now,
        )
        version = calls.header(request, "ngrok-version")
        if version is not None and version.strip() != API_VERSION:
            raise ApiError(
                400,
                ERR_BAD_VERSION,
                f"The API version {version.strip()[:32]!r} is not supported; send "
                f"'Ngrok-Version: {API_VERSION}' (or no Ngrok-Version header).",
            )
        path, query = calls.split_target(request.target)
        segments = tuple(unquote(s) for s in path.strip("/").split("/")) if path != "/" else ()
        for pattern, methods in self._routes:
            if len(pattern) != len(segments) or not all(
                p in ("*", s) for p, s in zip(pattern, segments, strict=True)
            ):
                continue
            handler = methods.get(request.method)
            if handler is None:
                allowed = ", ".join(sorted(methods))
                raise ApiError(
                    405,
                    status_code(405),
                    f"{request.method} is not supported on {path}; allowed: {allowed}",
                )
            ids = tuple(s for p, s in zip(pattern, segments, strict=True) if p == "*")
            if any(len(i) > MAX_ID_LENGTH or not i for i in ids):
                raise ApiError.not_found(f"No resource at {path[:200]}.")
            return handler(Call(request=request, key=key, path=path, ids=ids, query=query))
        raise ApiError.not_found(
            f"No such API path: {path[:200]}. This edge serves /service_users, /credentials, "
            "/api_keys, /tunnel_sessions, /endpoints and /events."
        )
