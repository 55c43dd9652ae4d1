"""The admin API's request handling, without sockets (`edge.admin.routes`): the API key and
its failure budget, the Ngrok-Version header, paths and methods, the query rules every list
shares, and a failing store; against a real SQLite store in a temp dir and a small stand-in for
the running edge. Each resource's handlers are tested beside their modules
(test_account_routes.py, test_live_routes.py)."""

from __future__ import annotations

import json

import pytest

from edge.store import SQLiteStore
from tests.edge.admin.harness import BASE, Client

# ---------------------------------------------------------------------------- paging and events


def test_paging_with_limit_and_before_id(client: Client) -> None:
    ids = [
        client.ok("POST", "/service_users", {"name": f"u{n}"}, status=201)["id"] for n in range(5)
    ]
    newest_first = ids[::-1]
    first = client.ok("GET", "/service_users?limit=2")
    assert [u["id"] for u in first["service_users"]] == newest_first[:2]
    assert first["next_page_uri"] == (f"{BASE}/service_users?before_id={newest_first[1]}&limit=2")
    target = first["next_page_uri"].removeprefix(BASE)
    second = client.ok("GET", target)
    assert [u["id"] for u in second["service_users"]] == newest_first[2:4]
    last = client.ok("GET", second["next_page_uri"].removeprefix(BASE))
    assert [u["id"] for u in last["service_users"]] == newest_first[4:]
    assert last["next_page_uri"] is None
    assert client.ok("GET", "/service_users?limit=5")["next_page_uri"] is None


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("limit=0", "limit must be a whole number from 1 to 100"),
        ("limit=101", "limit must be a whole number from 1 to 100"),
        ("limit=abc", "limit must be"),
        ("limit=1&limit=2", "more than once"),
        ("before_id=service_GONE", "names nothing in this list"),
        ("filter=obj.id%3D%3D1", "CEL list filters"),
        ("sort=asc", "Unknown query parameter 'sort'"),
        ("a=1&b", "could not be parsed"),
    ],
)
def test_bad_queries(client: Client, query: str, message: str) -> None:
    error = client.error("GET", f"/service_users?{query}")
    assert error["error_code"] == "ERR_NGROK_230" and message in error["msg"], error


def test_query_field_count_is_bounded(client: Client) -> None:
    error = client.error("GET", "/service_users?" + "&".join(f"x{n}=1" for n in range(1000)))
    assert error["status_code"] == 400


# ---------------------------------------------------------------------------- auth, version, routes


def test_no_or_bad_key_is_401_then_429(client: Client) -> None:
    assert client.error("GET", "/credentials", headers=())["error_code"] == "ERR_NGROK_200"
    bad = (("authorization", "Bearer AAAA_BBBB"),)
    assert client.error("GET", "/credentials", headers=bad)["error_code"] == "ERR_NGROK_203"
    assert client.error("GET", "/credentials", headers=bad)["status_code"] == 401
    # The budget (3) is spent: a wrong key from that address is refused at once ...
    limited = client.call("GET", "/credentials", headers=bad)
    assert limited.status == 429
    assert json.loads(limited.body)["error_code"] == "ERR_NGROK_226"
    assert ("retry-after", "10") in limited.headers
    # ... but the right key still works (issue 9.6: lock out the failures, not the key).
    assert client.ok("GET", "/credentials")["credentials"] == []
    assert client.call("GET", "/credentials", headers=()).status == 429
    other = Client(client.api, client.token, remote="192.0.2.99")
    assert other.ok("GET", "/credentials") == {
        "credentials": [],
        "uri": f"{BASE}/credentials",
        "next_page_uri": None,
    }
    client.now = 10.0
    assert client.ok("GET", "/credentials")["credentials"] == []


def test_successes_do_not_spend_the_budget(client: Client) -> None:
    for _ in range(20):
        client.ok("GET", "/service_users")


def test_ngrok_version_header(client: Client) -> None:
    auth = ("authorization", f"Bearer {client.token}")
    assert client.call("GET", "/service_users", headers=(auth,)).status == 200
    error = client.error("GET", "/service_users", headers=(auth, ("ngrok-version", "1")))
    assert error["error_code"] == "ERR_NGROK_217" and error["status_code"] == 400
    twice = (auth, auth)
    assert client.error("GET", "/service_users", headers=twice)["status_code"] == 400


def test_unknown_paths_and_methods(client: Client) -> None:
    assert client.error("GET", "/nope")["status_code"] == 404
    assert client.error("GET", "/")["status_code"] == 404
    assert client.error("GET", "/credentials/a/b/c")["status_code"] == 404
    assert client.error("GET", "/credentials/" + "x" * 500)["status_code"] == 404
    response = client.call("PUT", "/credentials")
    assert response.status == 405 and ("allow", "GET, POST") in response.headers
    assert client.error("GET", "http://evil/credentials")["status_code"] == 400


def test_a_broken_store_is_503_not_a_crash(client: Client, store: SQLiteStore) -> None:
    store.close()
    error = client.error("GET", "/service_users")
    assert error["status_code"] == 503 and "store" in error["msg"]
