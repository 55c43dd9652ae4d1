"""edge.admin.calls: what every admin handler parses from a call, and how a bad one is refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from edge.admin import body_fields, calls
from edge.admin.calls import MAX_QUERY_FIELDS, Call, Request
from edge.admin.errors import ApiError
from edge.store import ApiKey

KEY = ApiKey(
    id="ak_1",
    account_id="acct",
    created_at=datetime(2026, 1, 1, tzinfo=UTC),
    description="ops",
    metadata="",
    owner_id=None,
)


def _request(
    target: str = "/credentials",
    *,
    headers: tuple[tuple[str, str], ...] = (),
    body: bytes = b"",
) -> Request:
    return Request(
        method="GET",
        target=target,
        headers=headers,
        body=body,
        remote="127.0.0.1",
        base_url="https://edge.test:9443",
    )


def _call(target: str = "/credentials", *, body: bytes = b"") -> Call:
    path, query = calls.split_target(target)
    return Call(request=_request(target, body=body), key=KEY, path=path, ids=(), query=query)


def test_split_target_parses_path_and_repeated_query_fields() -> None:
    assert calls.split_target("/credentials?limit=2&x=a&x=b") == (
        "/credentials",
        {"limit": ["2"], "x": ["a", "b"]},
    )
    assert calls.split_target("/events") == ("/events", {})


def test_split_target_refuses_a_non_path_and_a_bad_or_huge_query() -> None:
    with pytest.raises(ApiError, match="must be a path"):
        calls.split_target("http://elsewhere/credentials")
    with pytest.raises(ApiError, match="could not be parsed"):
        calls.split_target("/credentials?novalue")
    hostile = "&".join(f"f{i}=1" for i in range(MAX_QUERY_FIELDS + 1))
    with pytest.raises(ApiError, match="could not be parsed") as refused:
        calls.split_target("/credentials?" + hostile)
    assert refused.value.status == 400


def test_header_is_the_one_value_and_refuses_a_repeated_one() -> None:
    request = _request(headers=(("authorization", "Bearer a"), ("x", "1"), ("x", "2")))
    assert calls.header(request, "authorization") == "Bearer a"
    assert calls.header(request, "ngrok-version") is None
    with pytest.raises(ApiError, match="x header was sent more than once"):
        calls.header(request, "x")


def test_paging_reads_limit_and_before_id_and_refuses_the_rest() -> None:
    assert calls.paging(_call("/credentials")) == (100, None)
    assert calls.paging(_call("/credentials?limit=5&before_id=cr_1")) == (5, "cr_1")
    for bad in ("0", "101", "-1", "2.5", "ten", "٣"):
        with pytest.raises(ApiError, match="limit must be a whole number from 1 to 100"):
            calls.paging(_call(f"/credentials?limit={bad}"))
    with pytest.raises(ApiError, match="CEL list filters"):
        calls.paging(_call("/credentials?filter=x"))
    with pytest.raises(ApiError, match="Unknown query parameter 'color'; known: limit, before_id"):
        calls.paging(_call("/credentials?color=red"))
    with pytest.raises(ApiError, match="given more than once"):
        calls.paging(_call("/credentials?limit=1&limit=2"))
    assert calls.paging(_call("/endpoints?url=x"), extra=("url",)) == (100, None)


def test_list_response_pages_newest_first_with_a_next_page_uri() -> None:
    items = ["c", "b", "a"]
    response = calls.list_response(
        _call("/things?limit=2"), "things", items, lambda i: i, lambda base, i: {"id": i}
    )
    assert response.status == 200
    assert dict(response.headers)["content-type"] == "application/json"
    page = json.loads(response.body)
    assert [t["id"] for t in page["things"]] == ["c", "b"]
    assert page["uri"] == "https://edge.test:9443/things"
    assert page["next_page_uri"] == "https://edge.test:9443/things?before_id=b&limit=2"
    last = json.loads(
        calls.list_response(
            _call("/things?before_id=b"), "things", items, lambda i: i, lambda b, i: {"id": i}
        ).body
    )
    assert [t["id"] for t in last["things"]] == ["a"]
    assert last["next_page_uri"] is None


FIELDS: dict[str, calls.Field] = {
    "description": body_fields.description,
    "max_sessions": body_fields.limit,
}


def test_parse_body_checks_each_field_and_treats_null_as_not_given() -> None:
    assert calls.parse_body(_call(body=b"  "), FIELDS) == {}
    body = b'{"description": "a", "max_sessions": null}'
    assert calls.parse_body(_call(body=body), FIELDS) == {"description": "a"}
    kept = calls.parse_body(_call(body=body), FIELDS, nullable=("max_sessions",))
    assert kept == {"description": "a", "max_sessions": None}


@pytest.mark.parametrize(
    ("target", "raw", "message"),
    [
        ("/credentials", b"{", "not valid JSON"),
        ("/credentials", b"[1]", "must be a JSON object, not an array"),
        ("/credentials", b'{"colour": 1}', "Unknown field 'colour'.*description, max_sessions"),
        ("/credentials", b'{"max_sessions": 0}', "max_sessions must be from 1"),
        ("/credentials", b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
        ("/credentials?x=1", b"{}", "Unknown query parameter 'x'"),
    ],
)
def test_parse_body_refuses_bad_bodies_naming_the_problem(
    target: str, raw: bytes, message: str
) -> None:
    with pytest.raises(ApiError, match=message) as refused:
        calls.parse_body(_call(target, body=raw), FIELDS)
    assert refused.value.status == 400


def test_json_response_is_compact_json() -> None:
    response = calls.json_response(201, {"a": [1, 2]})
    assert (response.status, response.body) == (201, b'{"a":[1,2]}')
    assert calls.NO_CONTENT.status == 204 and calls.NO_CONTENT.body == b""
