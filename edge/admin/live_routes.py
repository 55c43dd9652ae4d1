"""The admin API's handlers for what runs on the edge: live tunnel sessions (list, get, and
stop, restart or update through the agent) and endpoints (the agents' and the cloud ones).

`LiveRoutes` answers the calls `edge.admin.routes.AdminApi` routes to it, against the view of
the running edge (`edge.admin.live`), the cloud endpoints (`edge.admin.cloud_endpoints`) and
remote management (`edge.admin.session_control`). A caller sees only its account's sessions
(a session's account is its credential's) and their endpoints, plus its cloud endpoints.
Changes to cloud endpoints record their audit events (`edge.admin.audit`); stopping a session
records nothing here, as the session's own `agent_session_stop.v0` names the API key.
Refusals are `ApiError`s; Stop, Restart and Update answer once the agent has replied (a
deferred `Response`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from edge.admin import calls
from edge.admin.audit import record, who_asks
from edge.admin.calls import NO_CONTENT, Call, Response, json_response
from edge.admin.cloud_endpoints import CREATE_FIELDS, UPDATE_FIELDS, CloudEndpointApi
from edge.admin.errors import ApiError, status_code
from edge.admin.live import EndpointInfo, LiveState, SessionInfo
from edge.admin.resources import Json, cloud_endpoint_json, endpoint_json, tunnel_session_json
from edge.admin.session_control import SessionControl
from edge.events import EventLog
from edge.store import CloudEndpoint, Store
from edge.tunnels.remote_ops import UNSUPPORTED_CODES, RemoteOp, answer_refusal, support_refusal

__all__ = ["ERR_NOT_OFFERED", "LiveRoutes"]

#: Sorts an endpoint whose session has not been stamped as started yet as the newest.
_NOT_STARTED = datetime.max.replace(tzinfo=UTC)
#: A call this edge does not offer: a 4xx with a code, which ngrok's API client raises as an
#: ordinary `ngrok.Error` (it turns any 5xx into a bare RuntimeError without the code).
ERR_NOT_OFFERED = status_code(400)


class LiveRoutes:
    """Handlers for `/tunnel_sessions` and `/endpoints` (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        live: LiveState,
        events: EventLog,
        *,
        cloud: CloudEndpointApi | None,
        control: SessionControl | None,
        error_response: Callable[[ApiError], Response],
    ) -> None:
        """`cloud` is the running edge's cloud endpoints; without it, creating one is refused
        (400). `control` sends agents Stop/Restart/Update; without it, stop closes the session
        at the edge and restart and update are refused (400). `error_response` renders the
        refusal an agent answers with."""
        self.store = store
        self.live = live
        self.events = events
        self.cloud = cloud
        self.control = control
        self.error_response = error_response

    # ------------------------------------------------------------------------------ sessions

    def list_sessions(self, call: Call) -> Response:
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

    def get_session(self, call: Call) -> Response:
        return json_response(200, tunnel_session_json(call.base, self._session(call)))

    def stop_session(self, call: Call) -> Response:
        session = self._session(call)
        if self.control is not None:
            return self._remote_op(call, session.id, RemoteOp.STOP)
        reason = f"stopped through the admin API with key {call.key.id}"
        if not self.live.stop_session(session.id, reason):
            raise ApiError.not_found(f"No live tunnel session {call.ids[0]!r}.")
        return NO_CONTENT

    def restart_session(self, call: Call) -> Response:
        return self._remote_op(call, self._session(call).id, RemoteOp.RESTART)

    def update_session(self, call: Call) -> Response:
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
        who = who_asks(call.key)

        async def answer() -> Response:
            done = answer_refusal(op, await control.remote_op(session_id, op, who))
            if done is None:
                return NO_CONTENT
            return self.error_response(ApiError(done.status, done.code, done.message))

        return Response(status=204, deferred=answer)

    # ------------------------------------------------------------------------------ endpoints

    def list_endpoints(self, call: Call) -> Response:
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

    def get_endpoint(self, call: Call) -> Response:
        calls.no_query(call)
        cloud = self._cloud_endpoint(call)
        if cloud is not None:
            return json_response(200, self._endpoint_json(call.base, cloud))
        mine = {s.id for s in self._account_sessions(call)}
        for endpoint in self.live.endpoints():
            if endpoint.id == call.ids[0] and endpoint.session_id in mine:
                return json_response(200, endpoint_json(call.base, endpoint))
        raise ApiError.not_found(f"No online endpoint {call.ids[0]!r}.")

    def create_endpoint(self, call: Call) -> Response:
        if self.cloud is None:
            raise ApiError(
                400,
                ERR_NOT_OFFERED,
                "This edge does not offer cloud endpoints; agents bind endpoints themselves.",
            )
        body = calls.parse_body(call, CREATE_FIELDS)
        created = self.cloud.create(body, call.key.account_id)
        record(self.events, call, "endpoint_created.v0", self._endpoint_json("", created))
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

    def update_endpoint(self, call: Call) -> Response:
        body = calls.parse_body(call, UPDATE_FIELDS)
        if self.cloud is None or self._cloud_endpoint(call) is None:
            raise self._not_cloud(call)
        updated = self.cloud.update(call.ids[0], body, call.key.account_id)
        if updated is None:
            raise ApiError.not_found(f"No cloud endpoint {call.ids[0]!r}.")
        record(self.events, call, "endpoint_updated.v0", self._endpoint_json("", updated))
        return json_response(200, self._endpoint_json(call.base, updated))

    def delete_endpoint(self, call: Call) -> Response:
        calls.no_query(call)
        cloud = self.cloud
        deleted = None if cloud is None else cloud.delete(call.ids[0], call.key.account_id)
        if deleted is None:
            raise self._not_cloud(call)
        record(
            self.events, call, "endpoint_deleted.v0", cloud_endpoint_json("", deleted, deleted.url)
        )
        return NO_CONTENT


def _created(endpoint: EndpointInfo | CloudEndpoint) -> datetime:
    """When an endpoint came online, for the newest-first order of `/endpoints`."""
    if isinstance(endpoint, CloudEndpoint):
        return endpoint.created_at
    return endpoint.started_at or _NOT_STARTED
