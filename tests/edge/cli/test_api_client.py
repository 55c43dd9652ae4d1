"""`edge.cli.api_client`: `AdminClient` against a tiny stdlib HTTP server on 127.0.0.1
(tests/edge/cli/fake_api.py) that records every request it is sent."""

from __future__ import annotations

import pytest

from edge.cli.api_client import AdminClient, ApiClientError, ApiRefusedError, UnreachableError
from tests.edge.cli.fake_api import (
    KEY,
    Answer,
    FakeApi,
    Seen,
    credential,
    error,
    event,
    listing,
    refused_url,
)


def test_requests_carry_the_key_the_version_and_a_json_body(api: FakeApi) -> None:
    api.on("POST", "/credentials", (201, credential("cr_1", token="tok")))
    client = AdminClient(api.url + "/", KEY)
    created = client.create_credential(
        description="box", acl=["bind:*.a.internal"], owner_id="service_1", max_sessions=2
    )
    assert created["token"] == "tok"
    [seen] = api.seen
    assert (seen.method, seen.path) == ("POST", "/credentials")
    assert seen.headers["authorization"] == f"Bearer {KEY}"
    assert seen.headers["ngrok-version"] == "2"
    assert seen.headers["content-type"] == "application/json"
    assert seen.body == {
        "description": "box",
        "metadata": "",
        "acl": ["bind:*.a.internal"],
        "owner_id": "service_1",
        "max_sessions": 2,
    }


def test_get_has_no_body_and_lists_follow_the_pages(api: FakeApi) -> None:
    def credentials(seen: Seen) -> Answer:
        if "before_id" not in seen.query:
            return listing("credentials", [credential("cr_3"), credential("cr_2")], more=True)
        assert seen.query["before_id"] == ["cr_2"]
        return listing("credentials", [credential("cr_1")])

    api.on("GET", "/credentials", credentials)
    ids = [c["id"] for c in AdminClient(api.url, KEY).list_credentials()]
    assert ids == ["cr_3", "cr_2", "cr_1"]
    assert [s.query["limit"] for s in api.seen] == [["100"], ["100"]]
    assert all(s.body is None and "content-type" not in s.headers for s in api.seen)


def test_api_keys_list_under_keys_and_no_content_is_none(api: FakeApi) -> None:
    api.on("GET", "/api_keys", listing("keys", [{"id": "ak_1"}]))
    api.on("DELETE", "/api_keys/ak_1", (204, b""))
    api.on("POST", "/tunnel_sessions/ts_1/stop", (204, b""))
    client = AdminClient(api.url, KEY)
    assert client.list_api_keys() == [{"id": "ak_1"}]
    client.delete_api_key("ak_1")
    client.stop_tunnel_session("ts_1")
    assert [(s.method, s.path) for s in api.seen[1:]] == [
        ("DELETE", "/api_keys/ak_1"),
        ("POST", "/tunnel_sessions/ts_1/stop"),
    ]


def test_ids_cannot_escape_their_path_segment(api: FakeApi) -> None:
    api.on("DELETE", "/credentials/../api_keys/ak_1", (204, b""))
    with pytest.raises(ApiRefusedError) as caught:
        AdminClient(api.url, KEY).delete_credential("../api_keys/ak_1")
    assert caught.value.status == 404
    assert api.seen[0].path == "/credentials/..%2Fapi_keys%2Fak_1"


def test_error_bodies_become_api_errors(api: FakeApi) -> None:
    api.on("PATCH", "/credentials/cr_x", (404, error(404, "ERR_NGROK_404", "No credential.")))
    with pytest.raises(ApiRefusedError) as caught:
        AdminClient(api.url, KEY).update_credential("cr_x", active=False)
    assert (caught.value.status, caught.value.error_code) == (404, "ERR_NGROK_404")
    assert caught.value.operation_id == "op_1"
    assert str(caught.value) == "No credential. (ERR_NGROK_404)"


def test_a_reply_that_is_not_the_api_is_said_so(api: FakeApi) -> None:
    api.on("GET", "/credentials", (200, b"<html>hello</html>"))
    api.on("GET", "/service_users", (502, b"Bad gateway"))
    client = AdminClient(api.url, KEY)
    with pytest.raises(ApiClientError, match="without a JSON object"):
        client.list_credentials()
    with pytest.raises(ApiRefusedError, match="HTTP 502"):
        client.list_service_users()


def test_connection_refused_names_the_url() -> None:
    url = refused_url()
    with pytest.raises(UnreachableError) as caught:
        AdminClient(url, KEY).list_credentials()
    assert str(caught.value) == (
        f"no edge answers at {url} (is burrow-edge serve running? is admin enabled?)"
    )


@pytest.mark.parametrize("url", ["127.0.0.1:4041", "ftp://x", "http://", "http://x:99999"])
def test_bad_urls_are_refused_before_connecting(url: str) -> None:
    with pytest.raises(ApiClientError, match="API URL"):
        AdminClient(url, KEY)


def test_events_are_one_page_with_the_filters_asked_for(api: FakeApi) -> None:
    api.on("GET", "/events", listing("events", [event("ev_2"), event("ev_1")], more=True))
    events, more = AdminClient(api.url, KEY).list_events(
        limit=2, event_type="agent_session_stop.v0", principal_id="service_1", before_id="ev_3"
    )
    assert [e["event_id"] for e in events] == ["ev_2", "ev_1"]
    assert more is True
    [seen] = api.seen
    assert seen.query == {
        "limit": ["2"],
        "type": ["agent_session_stop.v0"],
        "principal_id": ["service_1"],
        "before_id": ["ev_3"],
    }


def test_a_path_in_the_api_url_prefixes_every_request(api: FakeApi) -> None:
    api.on("GET", "/admin/service_users", listing("service_users", []))
    assert AdminClient(api.url + "/admin/", KEY).list_service_users() == []
    assert api.seen[0].path == "/admin/service_users"


def test_a_listing_without_its_array_is_refused(api: FakeApi) -> None:
    api.on("GET", "/endpoints", (200, {"uri": "x", "tunnels": []}))
    with pytest.raises(ApiClientError, match="no 'endpoints' array"):
        AdminClient(api.url, KEY).list_endpoints()
