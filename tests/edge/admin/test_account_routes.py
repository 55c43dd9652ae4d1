"""The admin API's handlers for service users, credentials, API keys and the audit events
(`edge.admin.account_routes`), through `AdminApi` without sockets: against a real SQLite store in
a temp dir and a small stand-in for the running edge."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import pytest

from edge.store import SQLiteStore
from tests.edge.admin.harness import BASE, Client, FakeLive, event_types

# ---------------------------------------------------------------------------- service users


def test_service_user_lifecycle(client: Client, store: SQLiteStore) -> None:
    created = client.ok("POST", "/service_users", {"name": "clinic-a"}, status=201)
    assert created["id"].startswith("service_")
    assert created["uri"] == f"{BASE}/service_users/{created['id']}"
    assert created["name"] == "clinic-a" and created["active"] is True
    assert created["created_at"].endswith("Z") and "T" in created["created_at"]
    assert set(created) == {"id", "uri", "name", "active", "created_at"}
    assert client.ok("GET", f"/service_users/{created['id']}") == created
    updated = client.ok("PATCH", f"/service_users/{created['id']}", {"name": "clinic-a2"})
    assert updated["name"] == "clinic-a2" and updated["active"] is True
    listed = client.ok("GET", "/service_users")
    assert listed["service_users"] == [updated]
    assert listed["uri"] == f"{BASE}/service_users" and listed["next_page_uri"] is None
    assert client.ok("DELETE", f"/service_users/{created['id']}", status=204) is None
    assert client.error("GET", f"/service_users/{created['id']}")["status_code"] == 404
    assert event_types(store)[:3] == [
        "service_user_deleted.v0",
        "service_user_updated.v0",
        "service_user_created.v0",
    ]
    event = store.list_events(event_type="service_user_created.v0")[0]
    assert event.principal is not None and event.principal["source"] == "API"
    assert event.object["uri"] == f"/service_users/{created['id']}"


def test_service_user_refusals(client: Client) -> None:
    client.ok("POST", "/service_users", {"name": "dup"}, status=201)
    assert client.error("POST", "/service_users", {"name": "dup"})["status_code"] == 409
    error = client.error("POST", "/service_users", {"name": ""})
    assert error["error_code"] == "ERR_NGROK_213" and "name" in error["msg"]
    assert "required" in client.error("POST", "/service_users", {})["msg"]
    error = client.error("POST", "/service_users", {"name": "x", "active": "yes"})
    assert "active must be true or false" in error["msg"]
    error = client.error("POST", "/service_users", {"name": "x", "role": "admin"})
    assert "'role'" in error["msg"] and error["status_code"] == 400


def test_deactivating_a_service_user_cuts_its_sessions(
    client: Client, store: SQLiteStore, live: FakeLive
) -> None:
    user = client.ok("POST", "/service_users", {"name": "clinic-a"}, status=201)
    other = client.ok("POST", "/service_users", {"name": "clinic-b"}, status=201)
    mine = store.create_credential(owner_id=user["id"])[0]
    theirs = store.create_credential(owner_id=other["id"])[0]
    live.add_session(mine.id, user["id"], 1)
    live.add_session(theirs.id, other["id"], 2)
    client.ok("PATCH", f"/service_users/{user['id']}", {"active": False})
    assert list(live.stopped) == ["ts_1"]
    client.ok("DELETE", f"/service_users/{other['id']}", status=204)
    assert list(live.stopped) == ["ts_1", "ts_2"]
    deleted = store.list_events(event_type="service_user_deleted.v0")[0]
    assert deleted.object["deleted_credential_ids"] == [theirs.id]


# ---------------------------------------------------------------------------- credentials


def test_credential_lifecycle(client: Client, store: SQLiteStore) -> None:
    user = client.ok("POST", "/service_users", {"name": "clinic-a"}, status=201)
    created = client.ok(
        "POST",
        "/credentials",
        {
            "description": "clinic A box",
            "metadata": '{"site": 1}',
            "acl": ["bind:*.clinic-a.internal"],
            "owner_id": user["id"],
        },
        status=201,
    )
    token = created["token"]
    assert token and store.authenticate(token) is not None
    assert created["id"].startswith("cr_") and token.startswith(created["id"][3:] + "_")
    assert created["acl"] == ["bind:*.clinic-a.internal"] and created["owner_id"] == user["id"]
    assert created["max_sessions"] is None and created["max_endpoints"] is None
    assert set(created) == {
        "id",
        "uri",
        "created_at",
        "description",
        "metadata",
        "token",
        "acl",
        "owner_id",
        "active",
        "max_sessions",
        "max_endpoints",
    }
    fetched = client.ok("GET", f"/credentials/{created['id']}")
    assert fetched["token"] is None
    assert {k: v for k, v in fetched.items() if k != "token"} == {
        k: v for k, v in created.items() if k != "token"
    }
    listed = client.ok("GET", "/credentials")["credentials"]
    assert [c["id"] for c in listed] == [created["id"]] and listed[0]["token"] is None
    client.ok("DELETE", f"/credentials/{created['id']}", status=204)
    assert store.authenticate(token) is None
    assert client.error("DELETE", f"/credentials/{created['id']}")["status_code"] == 404
    types = event_types(store)
    assert types[:2] == ["tunnel_credential_deleted.v0", "tunnel_credential_created.v0"]
    for event in store.list_events():
        assert "token" not in json.dumps(event.object) or event.object.get("token") is None


def test_credential_refusals(client: Client) -> None:
    error = client.error("POST", "/credentials", {"acl": ["connect:foo"]})
    assert error["error_code"] == "ERR_NGROK_10007" and "connect:foo" in error["msg"]
    error = client.error("POST", "/credentials", {"acl": "bind:*"})
    assert error["error_code"] == "ERR_NGROK_213" and "acl must be an array" in error["msg"]
    error = client.error("POST", "/credentials", {"acl": [1]})
    assert "acl[0] must be a string" in error["msg"]
    error = client.error("POST", "/credentials", {"owner_id": "service_NOPE"})
    assert error["error_code"] == "ERR_NGROK_380" and "service_NOPE" in error["msg"]
    error = client.error("POST", "/credentials", {"descripton": "typo"})
    assert "'descripton'" in error["msg"] and "description" in error["msg"]
    error = client.error("POST", "/credentials", {"precomputed_token": "x"})
    assert "not supported" in error["msg"]
    error = client.error("POST", "/credentials", {"description": "x" * 256})
    assert "256 bytes" in error["msg"]
    assert client.error("POST", "/credentials", raw=b"[1, 2]")["msg"].endswith("not an array.")
    assert "not valid JSON" in client.error("POST", "/credentials", raw=b"{nope")["msg"]
    assert "not valid JSON" in client.error("POST", "/credentials", raw=b"[" * 100_000)["msg"]
    assert client.error("POST", "/credentials", raw=b"\xff\xfe")["error_code"] == "ERR_NGROK_213"


def test_null_fields_mean_not_given(client: Client) -> None:
    created = client.ok(
        "POST", "/credentials", {"description": None, "owner_id": None, "acl": None}, status=201
    )
    assert created["acl"] == [] and created["owner_id"] is None and created["description"] == ""


def test_credential_patch_active_revokes_and_restores(
    client: Client, store: SQLiteStore, live: FakeLive
) -> None:
    created = client.ok("POST", "/credentials", {}, status=201)
    live.add_session(created["id"], None, 1)
    revoked = client.ok("PATCH", f"/credentials/{created['id']}", {"active": False})
    assert revoked["active"] is False and "ts_1" in live.stopped
    assert store.authenticate(created["token"]) is None
    client.ok("PATCH", f"/credentials/{created['id']}", {"active": True})
    assert store.authenticate(created["token"]) is not None


def test_credential_create_with_limits(client: Client, store: SQLiteStore) -> None:
    created = client.ok(
        "POST", "/credentials", {"max_sessions": 2, "max_endpoints": 10}, status=201
    )
    assert (created["max_sessions"], created["max_endpoints"]) == (2, 10)
    credential = store.authenticate(created["token"])
    assert credential is not None
    assert (credential.max_sessions, credential.max_endpoints) == (2, 10)
    assert client.ok("GET", f"/credentials/{created['id']}")["max_sessions"] == 2
    event = store.list_events(event_type="tunnel_credential_created.v0")[0]
    assert (event.object["max_sessions"], event.object["max_endpoints"]) == (2, 10)
    unlimited = client.ok(
        "POST", "/credentials", {"max_sessions": None, "max_endpoints": None}, status=201
    )
    assert (unlimited["max_sessions"], unlimited["max_endpoints"]) == (None, None)


def test_credential_patch_changes_ngrok_fields_and_limits(
    client: Client, store: SQLiteStore, live: FakeLive
) -> None:
    created = client.ok(
        "POST",
        "/credentials",
        {"description": "box", "metadata": "m", "acl": ["bind:a.test"], "max_sessions": 3},
        status=201,
    )
    uri = f"/credentials/{created['id']}"
    live.add_session(created["id"], None, 1)
    updated = client.ok(
        "PATCH",
        uri,
        {
            "description": "front desk",
            "metadata": '{"site": 2}',
            "acl": ["bind:*.clinic-a.internal"],
            "max_endpoints": 4,
        },
    )
    expected = {
        **created,
        "token": None,
        "description": "front desk",
        "metadata": '{"site": 2}',
        "acl": ["bind:*.clinic-a.internal"],
        "max_sessions": 3,  # not in the body: kept
        "max_endpoints": 4,
    }
    assert updated == expected
    assert client.ok("GET", uri) == expected
    assert live.stopped == {}  # a change that is not a revocation leaves sessions alone
    credential = store.authenticate(created["token"])  # the token keeps working
    assert credential is not None and credential.acl == ("bind:*.clinic-a.internal",)
    event = store.list_events(event_type="tunnel_credential_updated.v0")[0]
    assert event.object == {**expected, "uri": uri}
    assert event.principal is not None and event.principal["source"] == "API"
    # null removes a limit; other null fields mean "not given"; an empty ACL is unrestricted.
    cleared = client.ok(
        "PATCH", uri, {"max_sessions": None, "description": None, "acl": [], "active": None}
    )
    assert cleared == {**expected, "max_sessions": None, "acl": []}
    both = client.ok("PATCH", uri, {"max_sessions": 7, "max_endpoints": None, "active": False})
    assert (both["max_sessions"], both["max_endpoints"], both["active"]) == (7, None, False)
    assert "ts_1" in live.stopped and store.authenticate(created["token"]) is None
    assert event_types(store)[:3] == ["tunnel_credential_updated.v0"] * 3


def test_credential_patch_with_nothing_changes_nothing(client: Client, store: SQLiteStore) -> None:
    created = client.ok("POST", "/credentials", {"max_sessions": 1}, status=201)
    before = event_types(store)
    assert client.ok("PATCH", f"/credentials/{created['id']}", {}) == {**created, "token": None}
    assert client.ok("PATCH", f"/credentials/{created['id']}")["max_sessions"] == 1
    assert event_types(store) == before


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"max_sessions": 0}, "max_sessions must be from 1 to 1000000 (or null for no limit)"),
        ({"max_endpoints": -3}, "max_endpoints must be from 1 to 1000000"),
        ({"max_sessions": 1_000_001}, "max_sessions must be from 1 to 1000000"),
        ({"max_sessions": "3"}, "max_sessions must be a whole number (or null for no limit)"),
        ({"max_endpoints": True}, "max_endpoints must be a whole number"),
        ({"max_endpoints": 2.5}, "max_endpoints must be a whole number"),
        ({"max_sessions": [1]}, "max_sessions must be a whole number"),
        ({"description": "x" * 256}, "description is 256 bytes"),
        ({"metadata": 7}, "metadata must be a string"),
        ({"active": "no"}, "active must be true or false"),
        ({"owner_id": "service_X"}, "Unknown field 'owner_id'"),
        ({"token": "x"}, "Unknown field 'token'"),
    ],
)
def test_credential_patch_refusals(
    client: Client, store: SQLiteStore, body: dict[str, Any], message: str
) -> None:
    created = client.ok("POST", "/credentials", {"description": "box"}, status=201)
    before = store.get_credential(created["id"])
    # A valid change alongside the bad field is not applied either.
    error = client.error("PATCH", f"/credentials/{created['id']}", {"metadata": "new", **body})
    assert error["status_code"] == 400 and error["error_code"] == "ERR_NGROK_213", error
    assert message in error["msg"], error
    assert store.get_credential(created["id"]) == before
    assert event_types(store)[0] == "tunnel_credential_created.v0"
    if "max_sessions" in body:  # and POST refuses the same values
        assert message in client.error("POST", "/credentials", body)["msg"]


def test_credential_patch_acl_that_does_not_parse(client: Client, store: SQLiteStore) -> None:
    created = client.ok("POST", "/credentials", {"acl": ["bind:a.test"]}, status=201)
    uri = f"/credentials/{created['id']}"
    error = client.error("PATCH", uri, {"acl": ["connect:foo"], "description": "new"})
    assert error["error_code"] == "ERR_NGROK_10007" and "connect:foo" in error["msg"]
    assert client.error("PATCH", uri, {"acl": "bind:*"})["error_code"] == "ERR_NGROK_213"
    assert client.ok("GET", uri) == {**created, "token": None}


def test_credential_patch_of_unknown_or_foreign_credentials_is_404(
    client: Client, store: SQLiteStore
) -> None:
    assert client.error("PATCH", "/credentials/cr_NOPE", {"description": "x"})["status_code"] == 404
    with sqlite3.connect(store.path) as raw:
        raw.execute(
            "INSERT INTO accounts (id, name, created_at)"
            " VALUES ('acct_other', 'other', '2025-01-01T00:00:00Z')"
        )
    foreign, _ = store.create_credential(account_id="acct_other", max_sessions=1)
    error = client.error("PATCH", f"/credentials/{foreign.id}", {"max_sessions": None})
    assert error["status_code"] == 404
    assert store.get_credential(foreign.id) == foreign


# ---------------------------------------------------------------------------- API keys


def test_api_key_lifecycle(client: Client, store: SQLiteStore) -> None:
    created = client.ok("POST", "/api_keys", {"description": "ci"}, status=201)
    assert created["id"].startswith("ak_") and created["token"]
    assert set(created) == {
        "id",
        "uri",
        "description",
        "metadata",
        "created_at",
        "token",
        "owner_id",
    }
    listed = client.ok("GET", "/api_keys")
    assert [k["description"] for k in listed["keys"]] == ["ci", "test key"]
    assert all(k["token"] is None for k in listed["keys"])
    assert client.ok("GET", f"/api_keys/{created['id']}")["token"] is None
    other = Client(client.api, created["token"])
    assert other.ok("GET", "/api_keys")["keys"][0]["id"] == created["id"]
    client.ok("DELETE", f"/api_keys/{created['id']}", status=204)
    assert other.error("GET", "/api_keys")["error_code"] == "ERR_NGROK_203"
    assert event_types(store)[:2] == ["api_key_deleted.v0", "api_key_created.v0"]
    assert client.error("PATCH", "/api_keys/ak_X", {"description": "x"})["status_code"] == 404


def test_api_key_patch(client: Client, store: SQLiteStore) -> None:
    created = client.ok("POST", "/api_keys", {"description": "ci", "metadata": "m"}, status=201)
    uri = f"/api_keys/{created['id']}"
    updated = client.ok("PATCH", uri, {"description": "deploys"})
    expected = {**created, "token": None, "description": "deploys"}
    assert updated == expected
    both = client.ok("PATCH", uri, {"description": "", "metadata": '{"team": "ops"}'})
    assert both == {**expected, "description": "", "metadata": '{"team": "ops"}'}
    assert client.ok("GET", uri) == both
    assert client.ok("PATCH", uri, {"description": None}) == both  # null: not given
    key = store.authenticate_api_key(created["token"])  # the token keeps working
    assert key is not None and key.metadata == '{"team": "ops"}'
    assert event_types(store)[:2] == ["api_key_updated.v0", "api_key_updated.v0"]
    event = store.list_events(event_type="api_key_updated.v0")[0]
    assert event.object == {**both, "uri": uri}
    assert event.principal is not None and event.principal["source"] == "API"
    error = client.error("PATCH", uri, {"description": "x", "owner_id": "service_X"})
    assert error["error_code"] == "ERR_NGROK_213" and "'owner_id'" in error["msg"]
    error = client.error("PATCH", uri, {"metadata": "m" * 4097})
    assert error["error_code"] == "ERR_NGROK_213" and "4097 bytes" in error["msg"]
    assert client.error("PATCH", uri, {"description": 1})["status_code"] == 400
    assert client.ok("GET", uri) == both
    assert event_types(store)[0] == "api_key_updated.v0"
    assert len(store.list_events(event_type="api_key_updated.v0")) == 2


# ---------------------------------------------------------------------------- events


def test_events_list_newest_first_with_type_filter_and_paging(
    client: Client, store: SQLiteStore
) -> None:
    for n in range(3):
        client.ok("POST", "/service_users", {"name": f"u{n}"}, status=201)
    client.ok("POST", "/credentials", {}, status=201)
    events = client.ok("GET", "/events")["events"]
    assert [e["event_type"] for e in events] == [
        "tunnel_credential_created.v0",
        "service_user_created.v0",
        "service_user_created.v0",
        "service_user_created.v0",
    ]
    assert set(events[0]) == {
        "event_id",
        "event_type",
        "event_timestamp",
        "account_id",
        "principal",
        "object",
    }
    assert events[0]["event_timestamp"].endswith("Z")
    page = client.ok("GET", "/events?type=service_user_created.v0&limit=2")
    assert [e["object"]["name"] for e in page["events"]] == ["u2", "u1"]
    assert "type=service_user_created.v0" in page["next_page_uri"]
    rest = client.ok("GET", page["next_page_uri"].removeprefix(BASE))
    assert [e["object"]["name"] for e in rest["events"]] == ["u0"]
    assert rest["next_page_uri"] is None
    assert client.error("GET", "/events?before_id=ev_GONE")["error_code"] == "ERR_NGROK_230"
