"""The admin API's request handling, without I/O: a `Request` in, a `Response` out.

Theory of operation. `AdminApi.handle` runs the same steps for every request, each of which may
answer with ngrok's error body instead: the API key (401; 429 for anything but a valid key once
the source address has spent its budget of failures), the `Ngrok-Version` header (400 unless
absent or 2), the route (404, 405), then the resource handler, which parses the query and the
JSON body against the fields it knows (400 naming the field) and calls the store and the live
edge. Changes made here append an audit event whose principal is the API key's owner (or the
key), with `source: "API"`:

    service_user_created.v0  service_user_updated.v0  service_user_deleted.v0
    tunnel_credential_created.v0  tunnel_credential_updated.v0  tunnel_credential_deleted.v0
    api_key_created.v0  api_key_updated.v0  api_key_deleted.v0
    endpoint_created.v0  endpoint_updated.v0  endpoint_deleted.v0     (cloud endpoints)

(ngrok's names for credentials and API keys, ngrok.md §6.5; the service user names follow the
same pattern.) Stopping a tunnel session records nothing here: the session's own
`agent_session_stop.v0` names the API key in its `error`. Revoking a credential (deleting it,
deactivating it, or deactivating or deleting its service user) ends its live sessions before the
response is sent.

Credentials carry two fields ngrok's shape lacks, as `active` is: `max_sessions` and
`max_endpoints`, optional limits (null: none). POST and PATCH accept them; in a PATCH body, null
for one of them removes the limit, while null for any other field means "not given", as ngrok's
clients send it.

Store calls are short and synchronous, as everywhere else in the edge; the store and the live
state are the only things touched, and time arrives as `now`.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import cast
from urllib.parse import unquote

from edge.admin import body_fields, calls
from edge.admin.auth import FailedAuthLimiter, authenticate_within_budget
from edge.admin.calls import NO_CONTENT, Call, Handler, Request, Response, json_response
from edge.admin.cloud_endpoints import CREATE_FIELDS, UPDATE_FIELDS, CloudEndpointApi
from edge.admin.errors import (
    ERR_BAD_BODY,
    ERR_BAD_QUERY,
    ERR_BAD_VERSION,
    ERR_UNKNOWN_REFERENCE,
    ApiError,
    error_body,
    status_code,
)
from edge.admin.live import EndpointInfo, LiveState, SessionInfo
from edge.admin.resources import (
    Json,
    api_key_json,
    cloud_endpoint_json,
    credential_json,
    endpoint_json,
    event_json,
    next_page_uri,
    service_user_json,
    tunnel_session_json,
)
from edge.admin.session_control import SessionControl
from edge.endpoints.cloud_live import CloudEndpoints
from edge.events import EventLog
from edge.store import (
    ApiKey,
    CloudEndpoint,
    ConflictError,
    Credential,
    NotFoundError,
    ServiceUser,
    Store,
    StoreError,
)
from edge.tunnels.remote_ops import UNSUPPORTED_CODES, RemoteOp, answer_refusal, support_refusal

__all__ = ["AdminApi", "Request", "Response"]

log = logging.getLogger(__name__)

#: The API version ngrok's clients send (and the only one there is).
API_VERSION = "2"
#: Ids in a path are ours (about 30 characters); a longer one names nothing, so say 404 early.
MAX_ID_LENGTH = 128
#: Fields ngrok's credential create accepts that this edge does not (ngrok.md §6.4).
UNSUPPORTED_CREDENTIAL_FIELDS = ("owner_email", "scim_user_id", "precomputed_token")
#: Sorts an endpoint whose session has not been stamped as started yet as the newest.
_NOT_STARTED = datetime.max.replace(tzinfo=UTC)
#: Burrow's per-credential limits: in a PATCH body, null for one of these removes the limit.
CREDENTIAL_LIMIT_FIELDS = ("max_sessions", "max_endpoints")


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
        # (path pattern, {method: handler}); "*" matches one id segment.
        self._routes: list[tuple[tuple[str, ...], dict[str, Handler]]] = [
            (("service_users",), {"GET": self._list_service_users, "POST": self._create_su}),
            (
                ("service_users", "*"),
                {"GET": self._get_su, "PATCH": self._update_su, "DELETE": self._delete_su},
            ),
            (("credentials",), {"GET": self._list_credentials, "POST": self._create_cred}),
            (
                ("credentials", "*"),
                {"GET": self._get_cred, "PATCH": self._update_cred, "DELETE": self._delete_cred},
            ),
            (("api_keys",), {"GET": self._list_api_keys, "POST": self._create_key}),
            (
                ("api_keys", "*"),
                {"GET": self._get_key, "PATCH": self._update_key, "DELETE": self._delete_key},
            ),
            (("tunnel_sessions",), {"GET": self._list_sessions}),
            (("tunnel_sessions", "*"), {"GET": self._get_session}),
            (("tunnel_sessions", "*", "stop"), {"POST": self._stop_session}),
            (("tunnel_sessions", "*", "restart"), {"POST": self._restart_session}),
            (("tunnel_sessions", "*", "update"), {"POST": self._update_session}),
            (("endpoints",), {"GET": self._list_endpoints, "POST": self._create_endpoint}),
            (
                ("endpoints", "*"),
                {
                    "GET": self._get_endpoint,
                    "PATCH": self._update_endpoint,
                    "DELETE": self._delete_endpoint,
                },
            ),
            (("events",), {"GET": self._list_events}),
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

    # ------------------------------------------------------------------------------ events

    def _record(self, call: Call, event_type: str, obj: Json) -> None:
        key = call.key
        principal = {
            "id": key.owner_id or key.id,
            "subject": key.description or key.id,
            "source": "API",
            "credential": {"id": key.id, "uri": f"/api_keys/{key.id}"},
        }
        self.events.record(event_type, obj, principal=principal)

    def _cut_revoked(self) -> None:
        """End live sessions of credentials that just stopped authenticating (the edge polls
        too; this makes it happen before the response)."""
        try:
            stopped = self.live.stop_revoked_sessions()
        except StoreError:
            log.exception("admin API: could not check for revoked sessions; the poll will")
            return
        if stopped:
            log.info("admin API: stopped %d session(s) of revoked credentials", stopped)

    # ------------------------------------------------------------------------------ service users

    def _list_service_users(self, call: Call) -> Response:
        users = self.store.list_service_users(account_id=call.key.account_id)
        return calls.list_response(call, "service_users", users, lambda u: u.id, service_user_json)

    def _create_su(self, call: Call) -> Response:
        body = calls.parse_body(
            call, {"name": body_fields.display_name, "active": body_fields.boolean}
        )
        if "name" not in body:
            raise ApiError(400, ERR_BAD_BODY, "name is required: the service user's name")
        try:
            user = self.store.create_service_user(
                str(body["name"]),
                active=bool(body.get("active", True)),
                account_id=call.key.account_id,
            )
        except ConflictError as exc:
            raise ApiError(409, status_code(409), str(exc)) from exc
        self._record(call, "service_user_created.v0", service_user_json("", user))
        return json_response(201, service_user_json(call.base, user))

    def _service_user(self, call: Call) -> ServiceUser:
        user = self.store.get_service_user(call.ids[0])
        if user is None or user.account_id != call.key.account_id:
            raise ApiError.not_found(f"No service user {call.ids[0]!r}.")
        return user

    def _get_su(self, call: Call) -> Response:
        return json_response(200, service_user_json(call.base, self._service_user(call)))

    def _update_su(self, call: Call) -> Response:
        body = calls.parse_body(
            call, {"name": body_fields.display_name, "active": body_fields.boolean}
        )
        self._service_user(call)
        name = body.get("name")
        active = body.get("active")
        try:
            user = self.store.update_service_user(
                call.ids[0],
                name=None if name is None else str(name),
                active=None if active is None else bool(active),
            )
        except ConflictError as exc:
            raise ApiError(409, status_code(409), str(exc)) from exc
        if user is None:
            raise ApiError.not_found(f"No service user {call.ids[0]!r}.")
        self._record(call, "service_user_updated.v0", service_user_json("", user))
        if active is False:
            self._cut_revoked()
        return json_response(200, service_user_json(call.base, user))

    def _delete_su(self, call: Call) -> Response:
        self._service_user(call)
        deleted = self.store.delete_service_user(call.ids[0])
        if deleted is None:
            raise ApiError.not_found(f"No service user {call.ids[0]!r}.")
        obj = service_user_json("", deleted.service_user)
        obj["deleted_credential_ids"] = list(deleted.credential_ids)
        obj["deleted_api_key_ids"] = list(deleted.api_key_ids)
        self._record(call, "service_user_deleted.v0", obj)
        self._cut_revoked()
        return NO_CONTENT

    # ------------------------------------------------------------------------------ credentials

    def _list_credentials(self, call: Call) -> Response:
        credentials = self.store.list_credentials(account_id=call.key.account_id)
        return calls.list_response(
            call, "credentials", credentials, lambda c: c.id, credential_json
        )

    def _create_cred(self, call: Call) -> Response:
        fields: dict[str, calls.Field] = {
            "description": body_fields.description,
            "metadata": body_fields.metadata,
            "acl": body_fields.acl,
            "owner_id": body_fields.optional_id,
            "max_sessions": body_fields.limit,
            "max_endpoints": body_fields.limit,
        }
        for name in UNSUPPORTED_CREDENTIAL_FIELDS:
            fields[name] = body_fields.unsupported
        body = calls.parse_body(call, fields)
        try:
            credential, token = self.store.create_credential(
                description=str(body.get("description", "")),
                metadata=str(body.get("metadata", "")),
                acl=cast(list[str], body.get("acl", [])),
                owner_id=_opt_str(body.get("owner_id")),
                account_id=call.key.account_id,
                max_sessions=cast(int | None, body.get("max_sessions")),
                max_endpoints=cast(int | None, body.get("max_endpoints")),
            )
        except NotFoundError as exc:
            raise ApiError(400, ERR_UNKNOWN_REFERENCE, str(exc)) from exc
        self._record(call, "tunnel_credential_created.v0", credential_json("", credential))
        return json_response(201, credential_json(call.base, credential, token))

    def _credential(self, call: Call) -> Credential:
        credential = self.store.get_credential(call.ids[0])
        if credential is None or credential.account_id != call.key.account_id:
            raise ApiError.not_found(f"No credential {call.ids[0]!r}.")
        return credential

    def _get_cred(self, call: Call) -> Response:
        return json_response(200, credential_json(call.base, self._credential(call)))

    def _update_cred(self, call: Call) -> Response:
        # ngrok's fields (description, metadata, acl) plus Burrow's: `active` revokes (false) or
        # restores (true) without deleting; `max_sessions`/`max_endpoints` set a limit, or
        # remove it with null. An ACL or limit change applies to binds and sessions from now on.
        body = calls.parse_body(
            call,
            {
                "description": body_fields.description,
                "metadata": body_fields.metadata,
                "acl": body_fields.acl,
                "active": body_fields.boolean,
                "max_sessions": body_fields.limit,
                "max_endpoints": body_fields.limit,
            },
            nullable=CREDENTIAL_LIMIT_FIELDS,
        )
        credential = self._credential(call)
        if not body:
            return json_response(200, credential_json(call.base, credential))
        description = body.get("description")
        metadata = body.get("metadata")
        acl = body.get("acl")
        active = body.get("active")
        updated = self.store.update_credential(
            call.ids[0],
            description=None if description is None else str(description),
            metadata=None if metadata is None else str(metadata),
            acl=None if acl is None else cast(list[str], acl),
            active=None if active is None else bool(active),
            max_sessions=body_fields.limit_change(body, "max_sessions"),
            max_endpoints=body_fields.limit_change(body, "max_endpoints"),
        )
        if updated is None:
            raise ApiError.not_found(f"No credential {call.ids[0]!r}.")
        self._record(call, "tunnel_credential_updated.v0", credential_json("", updated))
        if active is False:
            self._cut_revoked()
        return json_response(200, credential_json(call.base, updated))

    def _delete_cred(self, call: Call) -> Response:
        credential = self._credential(call)
        if not self.store.delete_credential(call.ids[0]):
            raise ApiError.not_found(f"No credential {call.ids[0]!r}.")
        self._record(call, "tunnel_credential_deleted.v0", credential_json("", credential))
        self._cut_revoked()
        return NO_CONTENT

    # ------------------------------------------------------------------------------ API keys

    def _list_api_keys(self, call: Call) -> Response:
        keys = self.store.list_api_keys(account_id=call.key.account_id)
        # ngrok's list property for API keys is `keys`, not `api_keys`.
        return calls.list_response(call, "keys", keys, lambda k: k.id, api_key_json)

    def _create_key(self, call: Call) -> Response:
        body = calls.parse_body(
            call,
            {
                "description": body_fields.description,
                "metadata": body_fields.metadata,
                "owner_id": body_fields.optional_id,
            },
        )
        try:
            api_key, token = self.store.create_api_key(
                description=str(body.get("description", "")),
                metadata=str(body.get("metadata", "")),
                owner_id=_opt_str(body.get("owner_id")),
                account_id=call.key.account_id,
            )
        except NotFoundError as exc:
            raise ApiError(400, ERR_UNKNOWN_REFERENCE, str(exc)) from exc
        self._record(call, "api_key_created.v0", api_key_json("", api_key))
        return json_response(201, api_key_json(call.base, api_key, token))

    def _api_key(self, call: Call) -> ApiKey:
        api_key = self.store.get_api_key(call.ids[0])
        if api_key is None or api_key.account_id != call.key.account_id:
            raise ApiError.not_found(f"No API key {call.ids[0]!r}.")
        return api_key

    def _get_key(self, call: Call) -> Response:
        return json_response(200, api_key_json(call.base, self._api_key(call)))

    def _update_key(self, call: Call) -> Response:
        body = calls.parse_body(
            call, {"description": body_fields.description, "metadata": body_fields.metadata}
        )
        api_key = self._api_key(call)
        if not body:
            return json_response(200, api_key_json(call.base, api_key))
        description = body.get("description")
        metadata = body.get("metadata")
        updated = self.store.update_api_key(
            call.ids[0],
            description=None if description is None else str(description),
            metadata=None if metadata is None else str(metadata),
        )
        if updated is None:
            raise ApiError.not_found(f"No API key {call.ids[0]!r}.")
        self._record(call, "api_key_updated.v0", api_key_json("", updated))
        return json_response(200, api_key_json(call.base, updated))

    def _delete_key(self, call: Call) -> Response:
        api_key = self._api_key(call)
        if not self.store.delete_api_key(call.ids[0]):
            raise ApiError.not_found(f"No API key {call.ids[0]!r}.")
        self._record(call, "api_key_deleted.v0", api_key_json("", api_key))
        return NO_CONTENT

    # ------------------------------------------------------------------------------ sessions

    def _list_sessions(self, call: Call) -> Response:
        sessions = self._account_sessions(call)
        return calls.list_response(
            call, "tunnel_sessions", sessions, lambda s: s.id, tunnel_session_json
        )

    def _account_sessions(self, call: Call) -> list[SessionInfo]:
        """Live sessions of the caller's account (a session's account is its credential's)."""
        mine = {c.id for c in self.store.list_credentials(account_id=call.key.account_id)}
        return [s for s in self.live.sessions() if s.credential_id in mine]

    def _session(self, call: Call) -> SessionInfo:
        calls.no_query(call)
        for session in self._account_sessions(call):
            if session.id == call.ids[0]:
                return session
        raise ApiError.not_found(f"No live tunnel session {call.ids[0]!r}.")

    def _get_session(self, call: Call) -> Response:
        return json_response(200, tunnel_session_json(call.base, self._session(call)))

    def _stop_session(self, call: Call) -> Response:
        session = self._session(call)
        if self.control is not None:
            return self._remote_op(call, session.id, RemoteOp.STOP)
        reason = f"stopped through the admin API with key {call.key.id}"
        if not self.live.stop_session(session.id, reason):
            raise ApiError.not_found(f"No live tunnel session {call.ids[0]!r}.")
        return NO_CONTENT

    def _restart_session(self, call: Call) -> Response:
        return self._remote_op(call, self._session(call).id, RemoteOp.RESTART)

    def _update_session(self, call: Call) -> Response:
        return self._remote_op(call, self._session(call).id, RemoteOp.UPDATE)

    def _remote_op(self, call: Call, session_id: str, op: RemoteOp) -> Response:
        """Send the agent Stop, Restart or Update (`edge.tunnels.remote_ops`): 400 with ngrok's
        code at once if it said it cannot, else an answer deferred until the agent replies."""
        control = self.control
        extra = None if control is None else control.capabilities(session_id)
        if control is None or extra is None:
            raise ApiError(
                400,
                UNSUPPORTED_CODES[op],
                f"This edge cannot {op.value} agents remotely; {op.value} the agent where it runs.",
            )
        refused = support_refusal(extra, op)
        if refused is not None:
            raise ApiError(refused.status, refused.code, refused.message)
        who = _who(call.key)

        async def answer() -> Response:
            done = answer_refusal(op, await control.remote_op(session_id, op, who))
            if done is None:
                return NO_CONTENT
            return self.error_response(ApiError(done.status, done.code, done.message))

        return Response(status=204, deferred=answer)

    # ------------------------------------------------------------------------------ endpoints

    def _list_endpoints(self, call: Call) -> Response:
        ids = set(call.query.get("id", []))
        urls = set(call.query.get("url", []))
        mine = {s.id for s in self._account_sessions(call)}
        agents = [
            e
            for e in self.live.endpoints()
            if e.session_id in mine and (not ids or e.id in ids) and (not urls or e.url in urls)
        ]
        clouds = [
            e
            for e in (self.cloud.list(call.key.account_id) if self.cloud is not None else [])
            if (not ids or e.id in ids)
            and (not urls or e.url in urls or self._cloud_url(e) in urls)
        ]
        # Newest first across both kinds: cloud endpoints by creation, agent ones by their
        # session's start (a stable merge keeps each kind's own order on ties).
        endpoints: list[EndpointInfo | CloudEndpoint] = sorted(
            [*clouds, *agents], key=_created, reverse=True
        )
        filters = [("id", i) for i in sorted(ids)] + [("url", u) for u in sorted(urls)]
        return calls.list_response(
            call,
            "endpoints",
            endpoints,
            lambda e: e.id,
            self._endpoint_json,
            ("id", "url"),
            filters,
        )

    def _endpoint_json(self, base: str, endpoint: EndpointInfo | CloudEndpoint) -> Json:
        if isinstance(endpoint, CloudEndpoint):
            return cloud_endpoint_json(base, endpoint, self._cloud_url(endpoint))
        return endpoint_json(base, endpoint)

    def _cloud_url(self, endpoint: CloudEndpoint) -> str:
        return self.cloud.json_url(endpoint) if self.cloud is not None else endpoint.url

    def _cloud_endpoint(self, call: Call) -> CloudEndpoint | None:
        if self.cloud is None:
            return None
        return self.cloud.get(call.ids[0], call.key.account_id)

    def _get_endpoint(self, call: Call) -> Response:
        calls.no_query(call)
        cloud = self._cloud_endpoint(call)
        if cloud is not None:
            return json_response(200, self._endpoint_json(call.base, cloud))
        mine = {s.id for s in self._account_sessions(call)}
        for endpoint in self.live.endpoints():
            if endpoint.id == call.ids[0] and endpoint.session_id in mine:
                return json_response(200, endpoint_json(call.base, endpoint))
        raise ApiError.not_found(f"No online endpoint {call.ids[0]!r}.")

    def _create_endpoint(self, call: Call) -> Response:
        if self.cloud is None:
            raise ApiError(
                400,
                ERR_NOT_OFFERED,
                "This edge does not offer cloud endpoints; agents bind endpoints themselves.",
            )
        body = calls.parse_body(call, CREATE_FIELDS)
        created = self.cloud.create(body, call.key.account_id)
        self._record(call, "endpoint_created.v0", self._endpoint_json("", created))
        return json_response(201, self._endpoint_json(call.base, created))

    def _not_cloud(self, call: Call) -> ApiError:
        """404 for an unknown id; 400 for an agent endpoint, which only its agent changes."""
        mine = {s.id for s in self._account_sessions(call)}
        if any(e.id == call.ids[0] and e.session_id in mine for e in self.live.endpoints()):
            return ApiError(
                400,
                status_code(400),
                f"{call.ids[0]} is an agent endpoint: only its agent changes or stops it (stop "
                "the agent, or its session with POST /tunnel_sessions/{id}/stop). Only cloud "
                "endpoints are updated and deleted through the API.",
            )
        return ApiError.not_found(f"No cloud endpoint {call.ids[0]!r}.")

    def _update_endpoint(self, call: Call) -> Response:
        body = calls.parse_body(call, UPDATE_FIELDS)
        if self.cloud is None or self._cloud_endpoint(call) is None:
            raise self._not_cloud(call)
        updated = self.cloud.update(call.ids[0], body, call.key.account_id)
        if updated is None:
            raise ApiError.not_found(f"No cloud endpoint {call.ids[0]!r}.")
        self._record(call, "endpoint_updated.v0", self._endpoint_json("", updated))
        return json_response(200, self._endpoint_json(call.base, updated))

    def _delete_endpoint(self, call: Call) -> Response:
        calls.no_query(call)
        cloud = self.cloud
        deleted = None if cloud is None else cloud.delete(call.ids[0], call.key.account_id)
        if deleted is None:
            raise self._not_cloud(call)
        self._record(call, "endpoint_deleted.v0", cloud_endpoint_json("", deleted, deleted.url))
        return NO_CONTENT

    # ------------------------------------------------------------------------------ events

    def _list_events(self, call: Call) -> Response:
        limit, before_id = calls.paging(call, ("type", "principal_id"))
        event_type = calls.single(call, "type")
        principal_id = calls.single(call, "principal_id")
        try:
            events = self.store.list_events(
                limit=limit + 1,
                before_id=before_id,
                event_type=event_type,
                principal_id=principal_id,
                account_id=call.key.account_id,
            )
        except NotFoundError as exc:
            raise ApiError(400, ERR_BAD_QUERY, f"{exc}; list again from the start") from exc
        shown = events[:limit]
        cursor = shown[-1].id if len(events) > limit else None
        filters = [(k, v) for k, v in (("type", event_type), ("principal_id", principal_id)) if v]
        return json_response(
            200,
            {
                "events": [event_json(e) for e in shown],
                "uri": f"{call.base}{call.path}",
                "next_page_uri": next_page_uri(call.base, call.path, cursor, limit, filters),
            },
        )


# ---------------------------------------------------------------------------------- helpers


def _created(endpoint: EndpointInfo | CloudEndpoint) -> datetime:
    """When an endpoint came online, for the newest-first order of `/endpoints`."""
    if isinstance(endpoint, CloudEndpoint):
        return endpoint.created_at
    return endpoint.started_at or _NOT_STARTED


#: A call this edge does not offer: a 4xx with a code, which ngrok's API client raises as an
#: ordinary `ngrok.Error` (it turns any 5xx into a bare RuntimeError without the code).
ERR_NOT_OFFERED = status_code(400)
#: Characters of an API key's description told to an agent: enough to recognise the key.
WHO_DESCRIPTION_MAX = 100


def _who(key: ApiKey) -> str:
    """Who is asking, as the agent shows it and the session's stop event records it."""
    description = "".join(c for c in key.description if c.isprintable())[:WHO_DESCRIPTION_MAX]
    return f"the admin API, key {key.id}" + (f" ({description})" if description else "")


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)
