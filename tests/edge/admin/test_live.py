"""`edge.admin.live`: stable endpoint ids, what the API shows of a registry member, and
`HubLiveState` over a real `EdgeHub` and SQLite store. The hub's sessions here are small
`Stoppable`s: a full agent session is covered end to end (tests/e2e/test_admin_api.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trio

from edge.admin.live import EndpointInfo, HubLiveState, endpoint_id, endpoint_info
from edge.config import EdgeConfig
from edge.endpoints.registry import AttachedPolicy, Endpoint, Member
from edge.policy.document import load_policy
from edge.policy.validate import validate
from edge.store import SQLiteStore
from edge.tunnels.hub import EdgeHub


def test_endpoint_id_is_stable_and_shaped_like_ngroks() -> None:
    first = endpoint_id("ts_1", "tun_1")
    assert first == endpoint_id("ts_1", "tun_1")
    assert re.fullmatch(r"ep_[A-Z2-7]{26}", first)


def test_endpoint_id_tells_sessions_and_bind_ids_apart() -> None:
    ids = {
        endpoint_id("ts_1", "tun_1"),
        endpoint_id("ts_2", "tun_1"),
        endpoint_id("ts_1", "tun_2"),
        # The pair is separated, so shifting characters across it makes a different id.
        endpoint_id("ts_1t", "un_1"),
    }
    assert len(ids) == 4


POLICY = """on_http_request:
  - name: only-office
    expressions: ["!inCidrRange(conn.client_ip, '10.0.0.0/8')"]
    actions:
      - type: deny
"""
WHEN = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


async def never_opens(client_addr: str) -> trio.abc.HalfCloseableStream:
    raise trio.BrokenResourceError(f"no agent here for {client_addr}")


def member(policy: AttachedPolicy | None) -> Member:
    return Member(
        bind_id="tun_1",
        token="tok",
        session_id="ts_1",
        client_id="c",
        opener=never_opens,
        policy=policy,
    )


def test_endpoint_info_shows_the_members_policy_as_the_agent_sent_it() -> None:
    attached = AttachedPolicy(validate(load_policy(POLICY), protocol="https"), POLICY)
    endpoint = Endpoint(
        url="https://app.burrow.localhost",
        proto="https",
        binding="internal",
        host="app.burrow.localhost",
        members=(member(attached),),
    )
    shown = endpoint_info(
        endpoint,
        endpoint.members[0],
        url="https://app.burrow.localhost:8443",
        owner_id="service_B",
        started_at=WHEN,
    )
    assert shown == EndpointInfo(
        id=endpoint_id("ts_1", "tun_1"),
        url="https://app.burrow.localhost:8443",
        proto="https",
        port=None,
        session_id="ts_1",
        owner_id="service_B",
        started_at=WHEN,
        binding="internal",
        traffic_policy=POLICY,
    )


def test_endpoint_info_shows_an_empty_policy_when_the_member_has_none() -> None:
    endpoint = Endpoint(url="tcp://127.0.0.1:21001", proto="tcp", port=21001)
    shown = endpoint_info(endpoint, member(None), url=endpoint.url, owner_id=None, started_at=None)
    assert (shown.traffic_policy, shown.port, shown.binding) == ("", 21001, "public")


@dataclass
class StubSession:
    """What the hub asks of a session: its ids, its credential, and `stop`."""

    id: str
    client_id: str
    credential: str | None
    stopped: list[str] = field(default_factory=list)

    @property
    def credential_id(self) -> str | None:
        return self.credential

    def stop(self, reason: str) -> None:
        self.stopped.append(reason)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    with SQLiteStore.open(tmp_path / "burrow.db") as opened:
        yield opened


def test_an_idle_hub_has_no_sessions_or_endpoints(store: SQLiteStore) -> None:
    live = HubLiveState(EdgeHub(EdgeConfig(), store))
    assert live.sessions() == []
    assert live.endpoints() == []
    assert live.stop_session("ts_nope", "admin API") is False
    assert live.stop_revoked_sessions() == 0


def test_only_authenticated_agent_sessions_are_listed(store: SQLiteStore) -> None:
    hub = EdgeHub(EdgeConfig(), store)
    hub.sessions["ts_1"] = StubSession("ts_1", "client", None)
    assert HubLiveState(hub).sessions() == []
    assert HubLiveState(hub).endpoints() == []


def test_stop_session_stops_that_session_with_the_reason(store: SQLiteStore) -> None:
    hub = EdgeHub(EdgeConfig(), store)
    mine, other = StubSession("ts_1", "a", None), StubSession("ts_2", "b", None)
    hub.sessions.update({"ts_1": mine, "ts_2": other})
    assert HubLiveState(hub).stop_session("ts_1", "stopped by the admin API") is True
    assert mine.stopped == ["stopped by the admin API"]
    assert other.stopped == []


def test_stop_revoked_sessions_asks_the_store(store: SQLiteStore) -> None:
    kept, _ = store.create_credential()
    revoked, _ = store.create_credential()
    hub = EdgeHub(EdgeConfig(), store)
    good = StubSession("ts_1", "a", kept.id)
    bad = StubSession("ts_2", "b", revoked.id)
    hub.sessions.update({"ts_1": good, "ts_2": bad})
    store.set_credential_active(revoked.id, False)
    assert HubLiveState(hub).stop_revoked_sessions() == 1
    assert good.stopped == []
    assert len(bad.stopped) == 1 and revoked.id in bad.stopped[0]
