"""The running edge's cloud endpoints: the store's records, put online in the registry.

`CloudEndpoints` is what the admin API and the server use. Everything here is synchronous and
runs in the trio thread that owns the registry, so putting an endpoint online, replacing it
(an update) or taking it offline is one step that no connection can observe half-done: a
connection or request that already found the old endpoint finishes with it, the next one
finds the new one. Nothing else in the registry is touched, so other endpoints' traffic is
not disturbed.

The caller orders the steps: `plan` (pure checks, nothing changes), then the store write, then
`put` / `withdraw`; a store that fails leaves the registry as it was.

A cloud endpoint's policy runs as an agent endpoint's does: its `log` actions' records go to the
edge's event log (`events`), and the JWKS keys its jwt-validation actions name are fetched and
kept fresh in the background (`edge.policy.jwks_fetch`) for exactly as long as that version of
the endpoint is online: `serve_jwks` owns those refreshers; `put` starts one for the new policy
and stops the replaced one's, `withdraw` stops it. Until keys arrive, its requests get the
action's 503 (keys not fetched yet), as an agent endpoint's do.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import trio

from edge.config import JwksConfig
from edge.endpoints.cloud import (
    CloudPlan,
    cloud_endpoint,
    cloud_url_conflict,
    plan_cloud_endpoint,
)
from edge.endpoints.registry import AttachedPolicy, Endpoint, EndpointRegistry, Member
from edge.events import EventLog
from edge.policy.jwks_fetch import jwks_urls, keep_jwks_fresh
from edge.store import CloudEndpoint
from edge.tunnels.binding import BindResolver
from edge.tunnels.decisions import Refused

__all__ = ["CloudEndpoints", "LoadFailure"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LoadFailure:
    """A stored cloud endpoint that could not go online at start, and why."""

    record: CloudEndpoint
    refused: Refused


class CloudEndpoints:
    """The cloud endpoints online in one registry, by id.

    `public_url` gives the URL clients dial for an endpoint (the hub adds a non-default port);
    `events` is where policies' `log` actions write (None: the edge's log only); `jwks` bounds
    the background JWKS fetches (`serve_jwks`).
    """

    def __init__(
        self,
        registry: EndpointRegistry,
        resolver: BindResolver,
        *,
        public_url: Callable[[Endpoint], str] = lambda endpoint: endpoint.url,
        events: EventLog | None = None,
        jwks: JwksConfig | None = None,
    ) -> None:
        self._registry = registry
        self._resolver = resolver
        self._public_url = public_url
        self._events = events
        self._jwks = jwks if jwks is not None else JwksConfig()
        self._online: dict[str, tuple[Endpoint, Member]] = {}
        # While serve_jwks runs: its nursery, and each online endpoint's refresher (by id).
        self._nursery: trio.Nursery | None = None
        self._refreshers: dict[str, trio.CancelScope] = {}

    def __len__(self) -> int:
        return len(self._online)

    def __contains__(self, endpoint_id: object) -> bool:
        return endpoint_id in self._online

    def plan(
        self,
        *,
        url: str,
        bindings: Sequence[str],
        traffic_policy: str,
        pooling_enabled: bool,
        endpoint_id: str | None = None,
    ) -> CloudPlan | Refused:
        """Whether a cloud endpoint (new, or `endpoint_id` changed) may go online as given:
        the URL, binding and policy rules (`plan_cloud_endpoint`), then whether the URL is free
        of every other endpoint (`cloud_url_conflict`). Changes nothing."""
        plan = plan_cloud_endpoint(
            self._resolver, url=url, bindings=bindings, traffic_policy=traffic_policy
        )
        if isinstance(plan, Refused):
            return plan
        conflict = cloud_url_conflict(
            self._registry.lookup(plan.target.url),
            url=plan.target.url,
            pooling_enabled=pooling_enabled,
            endpoint_id=endpoint_id,
        )
        return conflict if conflict is not None else plan

    def put(self, record: CloudEndpoint, plan: CloudPlan) -> None:
        """Serve `record` as planned, replacing what was online for its id in the same step
        (joining the URL's pool when it and every endpoint there have pooling enabled).
        KeyError (nothing changed) if its URL is held by an endpoint it cannot pool with:
        `plan` said it could go online, so that would be a caller's bug."""
        endpoint = cloud_endpoint(
            record, plan, events=self._events, runtime=self._registry.runtime
        )
        member = endpoint.members[0]
        occupant = self._registry.lookup(endpoint.url)
        previous = self._online.get(record.id)
        others = (
            []
            if occupant is None
            else [m for m in occupant.members if previous is None or m is not previous[1]]
        )
        if others and not (member.pooling and all(m.pooling for m in others)):
            raise KeyError(f"{endpoint.url} is already online")
        if previous is not None:
            self._registry.remove(previous[0].url, previous[1])
        registered = self._registry.add(endpoint)
        self._online[record.id] = (registered, member)
        self._refresh_keys(record.id, member.policy)
        log.info("cloud endpoint %s serves %s", record.id, endpoint.url)

    def withdraw(self, endpoint_id: str) -> bool:
        """Take the cloud endpoint offline now; False if it was not online."""
        online = self._online.pop(endpoint_id, None)
        if online is None:
            return False
        endpoint, member = online
        self._registry.remove(endpoint.url, member)
        self._stop_keys(endpoint_id)
        log.info("cloud endpoint %s no longer serves %s", endpoint_id, endpoint.url)
        return True

    def load(self, records: Iterable[CloudEndpoint]) -> list[LoadFailure]:
        """Put stored endpoints online (at start, before agents connect). One that no longer
        passes the checks (a policy this edge now refuses, a URL this config rejects) stays
        offline and is returned, with the reason, for the caller to log: serving it without
        its policy would not be what its owner asked for."""
        failures: list[LoadFailure] = []
        for record in records:
            plan = self.plan(
                url=record.url,
                bindings=(record.binding,),
                traffic_policy=record.traffic_policy,
                pooling_enabled=record.pooling_enabled,
                endpoint_id=record.id,
            )
            if isinstance(plan, Refused):
                failures.append(LoadFailure(record, plan))
                continue
            self.put(record, plan)
        return failures

    def public_url(self, record: CloudEndpoint) -> str:
        """The URL clients dial for `record`: its online endpoint's, else its stored URL."""
        online = self._online.get(record.id)
        return self._public_url(online[0]) if online is not None else record.url

    async def serve_jwks(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Keep the JWKS keys of the online endpoints' policies fresh until cancelled: starts a
        refresher for each endpoint already online whose policy names JWKS URLs, calls
        `task_status.started()`, then serves `put` and `withdraw` (which start and stop theirs).
        A fetch that fails is logged and retried by the refresher, never raised. On
        cancellation every refresher stops with it; endpoints put online afterwards get none
        (their jwt-validation answers 503 until keys are fetched) until this runs again."""
        if self._nursery is not None:
            raise RuntimeError("serve_jwks is already running")
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for endpoint_id, (_, member) in self._online.items():
                    self._refresh_keys(endpoint_id, member.policy)
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            self._refreshers.clear()

    def _refresh_keys(self, endpoint_id: str, policy: AttachedPolicy | None) -> None:
        """Stop `endpoint_id`'s refresher (its policy was replaced) and, if `serve_jwks` runs
        and `policy` names JWKS URLs, start one filling that policy's key cache."""
        self._stop_keys(endpoint_id)
        if self._nursery is None or policy is None:
            return
        urls = jwks_urls(policy.compiled)
        if not urls:
            return
        scope = trio.CancelScope()
        self._refreshers[endpoint_id] = scope
        self._nursery.start_soon(self._keep_keys, endpoint_id, scope, urls, policy)

    def _stop_keys(self, endpoint_id: str) -> None:
        scope = self._refreshers.pop(endpoint_id, None)
        if scope is not None:
            scope.cancel()

    async def _keep_keys(
        self,
        endpoint_id: str,
        scope: trio.CancelScope,
        urls: tuple[str, ...],
        policy: AttachedPolicy,
    ) -> None:
        """One endpoint version's refresher: runs until `scope` is cancelled (the endpoint was
        replaced or withdrawn) or `serve_jwks` ends."""
        with scope:
            await keep_jwks_fresh(urls, policy.state.jwks, config=self._jwks)
        if self._refreshers.get(endpoint_id) is scope:  # it returned on its own (no CA file)
            del self._refreshers[endpoint_id]
