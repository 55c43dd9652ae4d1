"""`edge.admin.resources`: ngrok's JSON shapes for stored and live values, and list paging."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from edge.admin.errors import ApiError
from edge.admin.live import EndpointInfo, SessionInfo
from edge.admin.resources import (
    api_key_json,
    credential_json,
    endpoint_json,
    event_json,
    next_page_uri,
    page,
    ref,
    rfc3339,
    service_user_json,
    tunnel_session_json,
)
from edge.events import envelope
from edge.store import ApiKey, Credential, Event, ServiceUser

BASE = "http://127.0.0.1:4041"
WHEN = datetime(2025, 1, 2, 3, 4, 5, 678, tzinfo=UTC)


def test_rfc3339_is_whole_seconds_in_utc_and_none_stays_none() -> None:
    assert rfc3339(WHEN.astimezone(timezone(timedelta(hours=2)))) == "2025-01-02T03:04:05Z"
    assert rfc3339(None) is None


def test_ref_is_id_and_uri() -> None:
    assert ref(BASE, "credentials", "cr_A") == {"id": "cr_A", "uri": f"{BASE}/credentials/cr_A"}
    assert ref("", "credentials", "cr_A")["uri"] == "/credentials/cr_A"  # as events store it


def test_credential_json_has_ngroks_fields_and_burrows_extras() -> None:
    credential = Credential(
        id="cr_A",
        account_id="acct_default",
        created_at=WHEN,
        description="box",
        metadata='{"site": 7}',
        acl=("bind:a.test",),
        active=False,
        owner_id="service_B",
        max_sessions=2,
    )
    assert credential_json(BASE, credential, token="tok") == {
        "id": "cr_A",
        "uri": f"{BASE}/credentials/cr_A",
        "created_at": "2025-01-02T03:04:05Z",
        "description": "box",
        "metadata": '{"site": 7}',
        "token": "tok",
        "acl": ["bind:a.test"],
        "owner_id": "service_B",
        "active": False,
        "max_sessions": 2,
        "max_endpoints": None,
    }
    assert credential_json(BASE, credential)["token"] is None  # shown only on creation


def test_service_user_and_api_key_json() -> None:
    user = ServiceUser(
        id="service_B", account_id="acct_default", name="clinic-a", active=True, created_at=WHEN
    )
    assert service_user_json(BASE, user) == {
        "id": "service_B",
        "uri": f"{BASE}/service_users/service_B",
        "name": "clinic-a",
        "active": True,
        "created_at": "2025-01-02T03:04:05Z",
    }
    key = ApiKey(
        id="ak_C",
        account_id="acct_default",
        created_at=WHEN,
        description="ci",
        metadata="",
        owner_id=None,
    )
    assert api_key_json(BASE, key) == {
        "id": "ak_C",
        "uri": f"{BASE}/api_keys/ak_C",
        "description": "ci",
        "metadata": "",
        "created_at": "2025-01-02T03:04:05Z",
        "token": None,
        "owner_id": None,
    }


def test_tunnel_session_json() -> None:
    session = SessionInfo(
        id="ts_1",
        credential_id="cr_A",
        owner_id=None,
        agent_version="3.1.0",
        ip="192.0.2.7",
        metadata="clinic box",
        os="linux",
        started_at=None,
    )
    assert tunnel_session_json(BASE, session) == {
        "id": "ts_1",
        "uri": f"{BASE}/tunnel_sessions/ts_1",
        "agent_version": "3.1.0",
        "credential": {"id": "cr_A", "uri": f"{BASE}/credentials/cr_A"},
        "ip": "192.0.2.7",
        "metadata": "clinic box",
        "os": "linux",
        "region": "local",
        "started_at": None,
        "transport": "ngrok/2",
    }


def endpoint(url: str, proto: str, port: int | None, owner_id: str | None = None) -> EndpointInfo:
    return EndpointInfo(
        id="ep_X",
        url=url,
        proto=proto,
        port=port,
        session_id="ts_1",
        owner_id=owner_id,
        started_at=WHEN,
    )


def test_endpoint_json_for_a_tcp_endpoint_with_an_owner() -> None:
    shown = endpoint_json(BASE, endpoint("tcp://127.0.0.1:21001", "tcp", 21001, "service_B"))
    assert shown == {
        "id": "ep_X",
        "uri": f"{BASE}/endpoints/ep_X",
        "region": "local",
        "created_at": "2025-01-02T03:04:05Z",
        "public_url": "tcp://127.0.0.1:21001",
        "url": "tcp://127.0.0.1:21001",
        "proto": "tcp",
        "scheme": "tcp",
        "hostport": "127.0.0.1:21001",
        "host": "127.0.0.1",
        "port": 21001,
        "type": "ephemeral",
        "metadata": "",
        "description": "",
        "bindings": ["public"],
        "traffic_policy": "",
        "pooling_enabled": False,
        "tunnel_session": {"id": "ts_1", "uri": f"{BASE}/tunnel_sessions/ts_1"},
        "principal": {"id": "service_B", "uri": f"{BASE}/service_users/service_B"},
        "agent_addr": "",
        "health": "healthy",
        "pools": [],
    }


def test_endpoint_json_fills_in_the_default_port_of_an_https_url() -> None:
    shown = endpoint_json(BASE, endpoint("https://a.example.test", "https", None))
    assert (shown["port"], shown["hostport"], shown["host"]) == (
        443,
        "a.example.test:443",
        "a.example.test",
    )
    assert shown["principal"] is None


def test_endpoint_json_shows_the_traffic_policy_as_sent() -> None:
    text = "on_tcp_connect:\n  - actions:\n      - type: deny\n"
    info = replace(endpoint("tcp://127.0.0.1:21001", "tcp", 21001), traffic_policy=text)
    shown = endpoint_json(BASE, info)
    assert shown["traffic_policy"] == text
    assert isinstance(shown["traffic_policy"], str)  # ngrok's is a string, not an object


def test_event_json_is_the_event_envelope() -> None:
    event = Event(
        id="ev_A",
        account_id="acct_default",
        event_type="a.v0",
        timestamp=WHEN,
        principal=None,
        object={"k": 1},
    )
    assert event_json(event) == envelope(event)


ITEMS = [f"id_{n}" for n in range(5, 0, -1)]  # newest first


def test_page_walks_the_list_and_says_where_to_go_on() -> None:
    assert page(ITEMS, str, limit=2, before_id=None) == (["id_5", "id_4"], "id_4")
    assert page(ITEMS, str, limit=2, before_id="id_4") == (["id_3", "id_2"], "id_2")
    assert page(ITEMS, str, limit=2, before_id="id_2") == (["id_1"], None)
    assert page(ITEMS, str, limit=5, before_id=None) == (ITEMS, None)
    assert page(ITEMS, str, limit=3, before_id="id_1") == ([], None)
    assert page([], str, limit=3, before_id=None) == ([], None)


def test_page_refuses_a_cursor_that_names_nothing() -> None:
    with pytest.raises(ApiError) as caught:
        page(ITEMS, str, limit=2, before_id="id_9")
    assert (caught.value.status, caught.value.code) == (400, "ERR_NGROK_230")
    assert "'id_9'" in caught.value.msg


def test_next_page_uri_keeps_the_filters_and_limit() -> None:
    assert next_page_uri(BASE, "/events", None, 10) is None
    assert next_page_uri(BASE, "/events", "ev_3", 10, [("type", "a.v0")]) == (
        f"{BASE}/events?type=a.v0&before_id=ev_3&limit=10"
    )
