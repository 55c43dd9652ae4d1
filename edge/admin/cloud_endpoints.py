"""The admin API's cloud endpoints: ngrok's `POST /endpoints` body and `PATCH /endpoints/{id}`,
checked, stored, and put online (or taken offline) on the running edge.

`CloudEndpointApi` does the work for the handlers in `edge.admin.live_routes`, in one order for
every change: parse the body (400 naming the field), plan the endpoint against the running
edge (`CloudEndpoints.plan`: URL, binding, Traffic Policy, a URL already online; nothing
changes), write the store, then change the registry. A refusal at any step leaves the store
and the edge as they were. Refusals carry ngrok's codes: the URL rules' codes, the policy's
ERR_NGROK_22xx, ERR_NGROK_2235 for a policy not guaranteed to handle traffic, 18016/18017 for
a URL another endpoint holds.

Fields follow ngrok's EndpointCreate/EndpointUpdate: `url` and `traffic_policy` are required
on create; `type` may only be `cloud`; `bindings` holds exactly one of `public`, `internal`
(inferred from the host when absent, as for agents); null means "not given". In a PATCH an
absent `bindings` keeps the stored binding unless `url` changes, when it is inferred again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from edge.admin import body_fields
from edge.admin.errors import ERR_BAD_BODY, ApiError, status_code
from edge.endpoints.cloud_live import CloudEndpoints
from edge.store import (
    ENDPOINT_BINDINGS,
    ENDPOINT_URL_MAX_BYTES,
    TRAFFIC_POLICY_MAX_BYTES,
    CloudEndpoint,
    Store,
)
from edge.tunnels.decisions import Refused

__all__ = ["CREATE_FIELDS", "UPDATE_FIELDS", "CloudEndpointApi"]

#: A body field's parser, as `edge.admin.live_routes` takes them: (name, JSON value) -> value.
Field = Callable[[str, object], object]


def _url(name: str, value: object) -> object:
    return body_fields.non_empty_text(name, value, ENDPOINT_URL_MAX_BYTES)


def _policy(name: str, value: object) -> object:
    return body_fields.text(name, value, TRAFFIC_POLICY_MAX_BYTES)


def _type(name: str, value: object) -> object:
    if value != "cloud":
        raise ApiError(
            400,
            ERR_BAD_BODY,
            f"{name} must be 'cloud': only cloud endpoints are created through the API (agent "
            f"endpoints are made by agents), not {str(value)[:64]!r}.",
        )
    return value


def _bindings(name: str, value: object) -> object:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError(
            400,
            ERR_BAD_BODY,
            f"{name} must be an array of strings, not {body_fields.json_type(value)}.",
        )
    if len(value) != 1:
        raise ApiError(
            400,
            "ERR_NGROK_15006",
            f"{name}: an endpoint has exactly one binding; got {len(value)}.",
        )
    binding = str(value[0]).lower()
    if binding not in ENDPOINT_BINDINGS:
        raise ApiError(
            400,
            "ERR_NGROK_15005",
            f"{name}: {str(value[0])[:64]!r} is not a binding this edge offers; use one of "
            f"{', '.join(ENDPOINT_BINDINGS)}.",
        )
    return [binding]


UPDATE_FIELDS: Mapping[str, Field] = {
    "url": _url,
    "traffic_policy": _policy,
    "description": body_fields.description,
    "metadata": body_fields.metadata,
    "bindings": _bindings,
    "pooling_enabled": body_fields.boolean,
}
CREATE_FIELDS: Mapping[str, Field] = {"type": _type, **UPDATE_FIELDS}


def _refusal(refused: Refused) -> ApiError:
    return ApiError(400, refused.code or status_code(400), refused.message)


class CloudEndpointApi:
    """Cloud endpoints of the API's caller: the store's records and the running edge's."""

    def __init__(self, store: Store, cloud: CloudEndpoints) -> None:
        self.store = store
        self.cloud = cloud

    def json_url(self, endpoint: CloudEndpoint) -> str:
        """The URL clients dial for `endpoint`."""
        return self.cloud.public_url(endpoint)

    def list(self, account_id: str) -> list[CloudEndpoint]:
        return self.store.list_cloud_endpoints(account_id=account_id)

    def get(self, endpoint_id: str, account_id: str) -> CloudEndpoint | None:
        endpoint = self.store.get_cloud_endpoint(endpoint_id)
        if endpoint is None or endpoint.account_id != account_id:
            return None
        return endpoint

    def create(self, body: Mapping[str, object], account_id: str) -> CloudEndpoint:
        """Store and serve a new cloud endpoint (body parsed with `CREATE_FIELDS`)."""
        for name in ("url", "traffic_policy"):
            if name not in body:
                raise ApiError(
                    400,
                    ERR_BAD_BODY,
                    f"{name} is required: a cloud endpoint needs its url and a traffic_policy "
                    "that always answers.",
                )
        url = str(body["url"])
        bindings = _listed(body.get("bindings"))
        pooling = bool(body.get("pooling_enabled", False))
        plan = self.cloud.plan(
            url=url,
            bindings=bindings,
            traffic_policy=str(body["traffic_policy"]),
            pooling_enabled=pooling,
        )
        if isinstance(plan, Refused):
            raise _refusal(plan)
        created = self.store.create_cloud_endpoint(
            url=plan.target.url,
            traffic_policy=str(body["traffic_policy"]),
            binding=plan.target.binding,
            pooling_enabled=pooling,
            description=str(body.get("description", "")),
            metadata=str(body.get("metadata", "")),
            account_id=account_id,
        )
        self.cloud.put(created, plan)
        return created

    def update(
        self, endpoint_id: str, body: Mapping[str, object], account_id: str
    ) -> CloudEndpoint | None:
        """Change a cloud endpoint (body parsed with `UPDATE_FIELDS`); the running edge serves
        the change at once. None if the caller has no such cloud endpoint."""
        current = self.get(endpoint_id, account_id)
        if current is None:
            return None
        url = str(body.get("url", current.url))
        if "bindings" in body:
            bindings = _listed(body["bindings"])
        elif "url" in body:
            bindings = []  # a new URL: infer its binding, as on create
        else:
            bindings = [current.binding]
        policy = str(body.get("traffic_policy", current.traffic_policy))
        pooling = bool(body.get("pooling_enabled", current.pooling_enabled))
        plan = self.cloud.plan(
            url=url,
            bindings=bindings,
            traffic_policy=policy,
            pooling_enabled=pooling,
            endpoint_id=endpoint_id,
        )
        if isinstance(plan, Refused):
            raise _refusal(plan)
        description = body.get("description")
        metadata = body.get("metadata")
        updated = self.store.update_cloud_endpoint(
            endpoint_id,
            url=plan.target.url,
            traffic_policy=policy,
            binding=plan.target.binding,
            pooling_enabled=pooling,
            description=None if description is None else str(description),
            metadata=None if metadata is None else str(metadata),
        )
        if updated is None:
            return None
        self.cloud.put(updated, plan)
        return updated

    def delete(self, endpoint_id: str, account_id: str) -> CloudEndpoint | None:
        """Delete a cloud endpoint and take it offline at once; None if the caller has none."""
        if self.get(endpoint_id, account_id) is None:
            return None
        deleted = self.store.delete_cloud_endpoint(endpoint_id)
        self.cloud.withdraw(endpoint_id)
        return deleted


def _listed(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []
