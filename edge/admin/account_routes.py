"""The admin API's handlers for the account's own records in the store: service users,
credentials, API keys, and the audit events.

`AccountRoutes` answers the calls `edge.admin.routes.AdminApi` routes to it: each handler parses
the call (400 naming the field), reads or changes the store, records the audit event of a
change (`edge.admin.audit`) and answers in ngrok's shape (`edge.admin.resources`). Refusals
are `ApiError`s; a failing store raises `StoreError`, which `AdminApi` turns into a 503.

Credentials carry two fields ngrok's shape lacks, as `active` is: `max_sessions` and
`max_endpoints`, optional limits (null: none). POST and PATCH accept them; in a PATCH body, null
for one of them removes the limit, while null for any other field means "not given", as ngrok's
clients send it. Revoking a credential (deleting it, deactivating it, or deactivating or
deleting its service user) ends its live sessions before the response is sent.
"""

from __future__ import annotations

import logging
from typing import cast

from edge.admin import body_fields, calls
from edge.admin.audit import record
from edge.admin.calls import NO_CONTENT, Call, Response, json_response
from edge.admin.errors import (
    ERR_BAD_BODY,
    ERR_BAD_QUERY,
    ERR_UNKNOWN_REFERENCE,
    ApiError,
    status_code,
)
from edge.admin.live import LiveState
from edge.admin.resources import (
    api_key_json,
    credential_json,
    event_json,
    next_page_uri,
    service_user_json,
)
from edge.events import EventLog
from edge.store import (
    ApiKey,
    ConflictError,
    Credential,
    NotFoundError,
    ServiceUser,
    Store,
    StoreError,
)

__all__ = ["CREDENTIAL_LIMIT_FIELDS", "UNSUPPORTED_CREDENTIAL_FIELDS", "AccountRoutes"]

# The name these handlers logged under before they left edge.admin.routes: log lines stay the same.
log = logging.getLogger("edge.admin.routes")

#: Fields ngrok's credential create accepts that this edge does not (ngrok.md §6.4).
UNSUPPORTED_CREDENTIAL_FIELDS = ("owner_email", "scim_user_id", "precomputed_token")
#: Burrow's per-credential limits: in a PATCH body, null for one of these removes the limit.
CREDENTIAL_LIMIT_FIELDS = ("max_sessions", "max_endpoints")


class AccountRoutes:
    """Handlers for `/service_users`, `/credentials`, `/api_keys` and `/events` of the caller's
    account (see the module docstring)."""

    def __init__(self, store: Store, live: LiveState, events: EventLog) -> None:
        """`live` ends the sessions of a credential that stops authenticating; `events` gets
        the audit event of every change."""
        self.store = store
        self.live = live
        self.events = events

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

    def list_service_users(self, call: Call) -> Response:
        users = self.store.list_service_users(account_id=call.key.account_id)
        return calls.list_response(call, "service_users", users, lambda u: u.id, service_user_json)

    def create_su(self, call: Call) -> Response:
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
        record(self.events, call, "service_user_created.v0", service_user_json("", user))
        return json_response(201, service_user_json(call.base, user))

    def _service_user(self, call: Call) -> ServiceUser:
        user = self.store.get_service_user(call.ids[0])
        if user is None or user.account_id != call.key.account_id:
            raise ApiError.not_found(f"No service user {call.ids[0]!r}.")
        return user

    def get_su(self, call: Call) -> Response:
        return json_response(200, service_user_json(call.base, self._service_user(call)))

    def update_su(self, call: Call) -> Response:
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
        record(self.events, call, "service_user_updated.v0", service_user_json("", user))
        if active is False:
            self._cut_revoked()
        return json_response(200, service_user_json(call.base, user))

    def delete_su(self, call: Call) -> Response:
        self._service_user(call)
        deleted = self.store.delete_service_user(call.ids[0])
        if deleted is None:
            raise ApiError.not_found(f"No service user {call.ids[0]!r}.")
        obj = service_user_json("", deleted.service_user)
        obj["deleted_credential_ids"] = list(deleted.credential_ids)
        obj["deleted_api_key_ids"] = list(deleted.api_key_ids)
        record(self.events, call, "service_user_deleted.v0", obj)
        self._cut_revoked()
        return NO_CONTENT

    # ------------------------------------------------------------------------------ credentials

    def list_credentials(self, call: Call) -> Response:
        credentials = self.store.list_credentials(account_id=call.key.account_id)
        return calls.list_response(
            call, "credentials", credentials, lambda c: c.id, credential_json
        )

    def create_cred(self, call: Call) -> Response:
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
        record(self.events, call, "tunnel_credential_created.v0", credential_json("", credential))
        return json_response(201, credential_json(call.base, credential, token))

    def _credential(self, call: Call) -> Credential:
        credential = self.store.get_credential(call.ids[0])
        if credential is None or credential.account_id != call.key.account_id:
            raise ApiError.not_found(f"No credential {call.ids[0]!r}.")
        return credential

    def get_cred(self, call: Call) -> Response:
        return json_response(200, credential_json(call.base, self._credential(call)))

    def update_cred(self, call: Call) -> Response:
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
        record(self.events, call, "tunnel_credential_updated.v0", credential_json("", updated))
        if active is False:
            self._cut_revoked()
        return json_response(200, credential_json(call.base, updated))

    def delete_cred(self, call: Call) -> Response:
        credential = self._credential(call)
        if not self.store.delete_credential(call.ids[0]):
            raise ApiError.not_found(f"No credential {call.ids[0]!r}.")
        record(self.events, call, "tunnel_credential_deleted.v0", credential_json("", credential))
        self._cut_revoked()
        return NO_CONTENT

    # ------------------------------------------------------------------------------ API keys

    def list_api_keys(self, call: Call) -> Response:
        keys = self.store.list_api_keys(account_id=call.key.account_id)
        # ngrok's list property for API keys is `keys`, not `api_keys`.
        return calls.list_response(call, "keys", keys, lambda k: k.id, api_key_json)

    def create_key(self, call: Call) -> Response:
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
        record(self.events, call, "api_key_created.v0", api_key_json("", api_key))
        return json_response(201, api_key_json(call.base, api_key, token))

    def _api_key(self, call: Call) -> ApiKey:
        api_key = self.store.get_api_key(call.ids[0])
        if api_key is None or api_key.account_id != call.key.account_id:
            raise ApiError.not_found(f"No API key {call.ids[0]!r}.")
        return api_key

    def get_key(self, call: Call) -> Response:
        return json_response(200, api_key_json(call.base, self._api_key(call)))

    def update_key(self, call: Call) -> Response:
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
        record(self.events, call, "api_key_updated.v0", api_key_json("", updated))
        return json_response(200, api_key_json(call.base, updated))

    def delete_key(self, call: Call) -> Response:
        api_key = self._api_key(call)
        if not self.store.delete_api_key(call.ids[0]):
            raise ApiError.not_found(f"No API key {call.ids[0]!r}.")
        record(self.events, call, "api_key_deleted.v0", api_key_json("", api_key))
        return NO_CONTENT

    # ------------------------------------------------------------------------------ events

    def list_events(self, call: Call) -> Response:
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


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)
