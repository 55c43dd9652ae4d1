"""`edge.endpoints.cloud_live`: cloud endpoints going online, changing and going offline in a
real registry, loaded from a real store, without touching other endpoints; their policies'
`log` actions given the edge's event log, and their JWKS keys fetched from real HTTPS servers
on 127.0.0.1 (a trustme CA) for exactly as long as each version of an endpoint is online."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trio
import trustme

from edge.config import EdgeConfig, JwksConfig
from edge.endpoints.cloud import CloudPlan, is_cloud
from edge.endpoints.cloud_live import CloudEndpoints
from edge.endpoints.registry import Endpoint, EndpointRegistry, Member
from edge.events import EventLog
from edge.store import SQLiteStore
from edge.tunnels.binding import BindResolver
from edge.tunnels.decisions import Refused
from tests.edge.policy.test_jwks_fetch import JWKS_BODY, answering, serve

ANSWER = "on_http_request:\n  - actions: [{type: custom-response, config: {body: one}}]\n"
OTHER = "on_http_request:\n  - actions: [{type: custom-response, config: {body: two}}]\n"


def live(registry: EndpointRegistry) -> CloudEndpoints:
    resolver = BindResolver(EdgeConfig(domain="burrow.localhost"), registry)
    return CloudEndpoints(registry, resolver, public_url=lambda e: f"{e.url}:8443")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    with SQLiteStore.open(tmp_path / "burrow.db") as opened:
        yield opened


def planned(
    cloud: CloudEndpoints, url: str, policy: str = ANSWER, endpoint_id: str | None = None
) -> CloudPlan:
    result = cloud.plan(
        url=url,
        bindings=(),
        traffic_policy=policy,
        pooling_enabled=False,
        endpoint_id=endpoint_id,
    )
    assert isinstance(result, CloudPlan), result
    return result


async def _agent(client_addr: str) -> trio.abc.HalfCloseableStream:
    raise trio.BrokenResourceError("no agent in these tests")


def agent_on(registry: EndpointRegistry, url: str) -> Member:
    member = Member(bind_id="tun_1", token="t", session_id="ts_1", client_id="c", opener=_agent)
    registry.add(Endpoint(url=url, proto="https", host=url.split("://")[1], members=(member,)))
    return member


def test_put_replace_and_withdraw(store: SQLiteStore) -> None:
    registry = EndpointRegistry()
    agent = agent_on(registry, "https://agent.example")
    cloud = live(registry)
    record = store.create_cloud_endpoint(url="https://api.acme.example", traffic_policy=ANSWER)
    cloud.put(record, planned(cloud, record.url))
    assert record.id in cloud and len(cloud) == 1
    online = registry.lookup_public("https", "api.acme.example")
    assert online is not None and is_cloud(online.members[0])
    assert online.policy is not None and online.policy.text == ANSWER
    assert cloud.public_url(record) == "https://api.acme.example:8443"

    # An update swaps the entry in one step, on the same URL or a new one.
    changed = store.update_cloud_endpoint(record.id, traffic_policy=OTHER)
    assert changed is not None
    cloud.put(changed, planned(cloud, changed.url, OTHER, endpoint_id=record.id))
    now = registry.lookup("https://api.acme.example")
    assert now is not None and now.policy is not None and now.policy.text == OTHER
    moved = store.update_cloud_endpoint(record.id, url="https://v2.acme.example")
    assert moved is not None
    cloud.put(moved, planned(cloud, moved.url, OTHER, endpoint_id=record.id))
    assert registry.lookup("https://api.acme.example") is None
    assert registry.lookup("https://v2.acme.example") is not None

    assert cloud.withdraw(record.id) is True
    assert cloud.withdraw(record.id) is False
    assert registry.lookup("https://v2.acme.example") is None
    assert record.id not in cloud
    assert cloud.public_url(moved) == moved.url  # offline: the stored URL
    # The agent's endpoint was never touched.
    agent_endpoint = registry.lookup("https://agent.example")
    assert agent_endpoint is not None and agent_endpoint.members == (agent,)


def test_plan_refuses_a_url_another_endpoint_holds(store: SQLiteStore) -> None:
    registry = EndpointRegistry()
    agent_on(registry, "https://agent.example")
    cloud = live(registry)
    taken = cloud.plan(
        url="https://agent.example", bindings=(), traffic_policy=ANSWER, pooling_enabled=False
    )
    assert isinstance(taken, Refused) and taken.code == "ERR_NGROK_18017"
    first = store.create_cloud_endpoint(url="https://api.acme.example", traffic_policy=ANSWER)
    cloud.put(first, planned(cloud, first.url))
    second = cloud.plan(
        url="https://api.acme.example", bindings=(), traffic_policy=ANSWER, pooling_enabled=True
    )
    assert isinstance(second, Refused) and second.code == "ERR_NGROK_18016"
    assert first.id in second.message
    # put() itself refuses a URL taken since the plan, leaving the registry as it was
    late = store.create_cloud_endpoint(url="https://late.example", traffic_policy=ANSWER)
    plan_while_free = planned(cloud, late.url)
    agent = agent_on(registry, "https://late.example")
    with pytest.raises(KeyError):
        cloud.put(late, plan_while_free)
    held = registry.lookup("https://late.example")
    assert held is not None and held.members == (agent,)
    assert late.id not in cloud


def test_load_serves_what_is_stored_and_reports_what_it_cannot(tmp_path: Path) -> None:
    with SQLiteStore.open(tmp_path / "b.db") as store:
        good = store.create_cloud_endpoint(url="https://api.acme.example", traffic_policy=ANSWER)
        # Written by hand (or by an older edge): not guaranteed to answer. It stays offline.
        bad = store.create_cloud_endpoint(url="https://old.acme.example", traffic_policy="")
        registry = EndpointRegistry()
        cloud = live(registry)
        failures = cloud.load(store.list_cloud_endpoints())
    assert [f.record.id for f in failures] == [bad.id]
    assert failures[0].refused.code == "ERR_NGROK_2235"
    assert good.id in cloud and bad.id not in cloud
    assert registry.lookup("https://api.acme.example") is not None
    assert registry.lookup("https://old.acme.example") is None


# --- what a cloud endpoint's policy gets from the edge: the event sink and JWKS keys ---------
def test_a_cloud_endpoints_log_actions_write_to_the_edges_event_log(
    store: SQLiteStore, tmp_path: Path
) -> None:
    events = EventLog(store, tmp_path / "events.jsonl")
    registry = EndpointRegistry()
    resolver = BindResolver(EdgeConfig(domain="burrow.localhost"), registry)
    cloud = CloudEndpoints(registry, resolver, events=events)
    record = store.create_cloud_endpoint(url="https://api.acme.example", traffic_policy=ANSWER)
    cloud.put(record, planned(cloud, record.url))
    online = registry.lookup("https://api.acme.example")
    assert online is not None and online.policy is not None
    assert online.policy.events is events
    # Without a sink (as before), the log only.
    bare_registry = EndpointRegistry()
    bare = live(bare_registry)
    other = store.create_cloud_endpoint(url="https://b.acme.example", traffic_policy=ANSWER)
    bare.put(other, planned(bare, other.url))
    served = bare_registry.lookup("https://b.acme.example")
    assert served is not None and served.policy is not None and served.policy.events is None


def jwt_policy(url: str) -> str:
    """A cloud endpoint policy (it always answers) whose jwt-validation names `url`."""
    return (
        "on_http_request:\n"
        "  - actions:\n"
        "      - type: jwt-validation\n"
        "        config:\n"
        "          issuer: {allow_list: [{value: 'https://idp'}]}\n"
        "          audience: {allow_list: [{value: 'api'}]}\n"
        "          http: {tokens: [{type: jwt, method: header, name: X-Token}]}\n"
        "          jws:\n"
        "            allowed_algorithms: [ES256]\n"
        f"            keys: {{sources: {{additional_jkus: ['{url}']}}}}\n"
        "      - type: custom-response\n"
        "        config: {status_code: 200, body: ok}\n"
    )


class CountingJwks:
    """HTTPS JWKS servers (test CA) that answer `no-cache`, so a refresher fetches again every
    `min_refresh`; `hits[url]` counts the fetches each got."""

    def __init__(self, nursery: trio.Nursery, ca: trustme.CA) -> None:
        self.nursery, self.ca = nursery, ca
        self.hits: dict[str, int] = {}

    async def start(self) -> str:
        box: list[str] = []

        async def handler(stream: trio.SSLStream[trio.SocketStream]) -> None:
            self.hits[box[0]] += 1
            await answering("200 OK", JWKS_BODY, "cache-control: no-cache")(stream)

        url = await serve(self.nursery, self.ca, handler)
        box.append(url)
        self.hits[url] = 0
        return url


async def wait_for(condition: Callable[[], bool]) -> None:
    """Poll `condition` until it holds (the caller's fail_after bounds it)."""
    while not condition():
        await trio.sleep(0.01)


async def test_jwks_keys_are_fetched_while_online_and_stop_on_update_and_delete(
    store: SQLiteStore, tmp_path: Path
) -> None:
    ca = trustme.CA()
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem.bytes())
    config = JwksConfig(
        fetch_timeout=2.0, retry_interval=0.2, min_refresh=0.05, ca_file=tmp_path / "ca.pem"
    )
    registry = EndpointRegistry()
    resolver = BindResolver(EdgeConfig(domain="burrow.localhost"), registry)
    cloud = CloudEndpoints(registry, resolver, jwks=config)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            servers = CountingJwks(nursery, ca)
            url_1, url_2, url_3 = [await servers.start() for _ in range(3)]
            # Online before serve_jwks starts (as at the edge's start): fetched once it runs.
            loaded = store.create_cloud_endpoint(
                url="https://early.acme.example", traffic_policy=jwt_policy(url_3)
            )
            cloud.put(loaded, planned(cloud, loaded.url, jwt_policy(url_3)))
            record = store.create_cloud_endpoint(
                url="https://api.acme.example", traffic_policy=jwt_policy(url_1)
            )
            await nursery.start(cloud.serve_jwks)
            cloud.put(record, planned(cloud, record.url, jwt_policy(url_1)))

            def keys_of(url: str) -> object:
                online = registry.lookup("https://api.acme.example")
                assert online is not None and online.policy is not None
                return online.policy.state.jwks.keys(url, now=time.time())

            await wait_for(lambda: keys_of(url_1) is not None)
            await wait_for(lambda: servers.hits[url_3] >= 2)  # the early one, refreshed
            await wait_for(lambda: servers.hits[url_1] >= 2)

            # An update replaces the policy: the new one's keys are fetched, the old one's
            # refresher stops.
            changed = store.update_cloud_endpoint(record.id, traffic_policy=jwt_policy(url_2))
            assert changed is not None
            cloud.put(changed, planned(cloud, changed.url, jwt_policy(url_2), record.id))
            await wait_for(lambda: keys_of(url_2) is not None)
            await trio.sleep(0.1)  # a fetch of url_1 under way when it was stopped may land
            stopped_at = servers.hits[url_1]
            await wait_for(lambda: servers.hits[url_2] >= stopped_at + 3)
            assert servers.hits[url_1] == stopped_at

            # A delete stops the refresher of what was online; the other endpoint keeps its.
            assert cloud.withdraw(record.id)
            await trio.sleep(0.1)
            deleted_at, early_at = servers.hits[url_2], servers.hits[url_3]
            await wait_for(lambda: servers.hits[url_3] >= early_at + 3)
            assert servers.hits[url_2] == deleted_at
            nursery.cancel_scope.cancel()


async def test_serve_jwks_refuses_to_run_twice(store: SQLiteStore) -> None:
    cloud = live(EndpointRegistry())
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(cloud.serve_jwks)
            with pytest.raises(RuntimeError, match="already running"):
                await cloud.serve_jwks()
            nursery.cancel_scope.cancel()


def test_a_pooled_cloud_endpoint_joins_a_pooled_agent_endpoint_and_leaves_it_alone(
    store: SQLiteStore,
) -> None:
    registry = EndpointRegistry()
    url = "https://shop.example"
    agent = Member(
        bind_id="tun_1", token="t", session_id="ts_1", client_id="c", opener=_agent, pooling=True
    )
    registry.add(
        Endpoint(
            url=url, proto="https", host="shop.example", members=(agent,), runtime=registry.runtime
        )
    )
    cloud = live(registry)
    plan = cloud.plan(url=url, bindings=(), traffic_policy=ANSWER, pooling_enabled=True)
    assert isinstance(plan, CloudPlan), plan
    record = store.create_cloud_endpoint(url=url, traffic_policy=ANSWER, pooling_enabled=True)
    cloud.put(record, plan)
    pool = registry.lookup(url)
    assert pool is not None and len(pool.members) == 2
    assert pool.members[0] is agent and is_cloud(pool.members[1])
    # Withdrawing the cloud member leaves the agent's endpoint online, alone.
    assert cloud.withdraw(record.id)
    alone = registry.lookup(url)
    assert alone is not None and alone.members == (agent,)
    # Without pooling on the cloud endpoint the same URL is refused, 18017.
    plain = cloud.plan(url=url, bindings=(), traffic_policy=ANSWER, pooling_enabled=False)
    assert isinstance(plain, Refused) and plain.code == "ERR_NGROK_18017"
