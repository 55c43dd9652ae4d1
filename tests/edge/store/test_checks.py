"""`edge.store.checks`: what a value must pass before it is stored, directly and via the store."""

from __future__ import annotations

import sqlite3

import pytest

from edge.store import (
    ACL_MAX_RULES,
    CREDENTIAL_LIMIT_MAX,
    DEFAULT_ACCOUNT_ID,
    ConflictError,
    NotFoundError,
    SQLiteStore,
    StoreError,
)
from edge.store.checks import (
    _check_acl,
    _check_limit,
    _check_name,
    _check_name_free,
    _check_owner,
    _check_text,
    _event_json,
)


def test_field_limits(store: SQLiteStore) -> None:
    store.create_credential(description="d" * 255, metadata="m" * 4096)
    with pytest.raises(StoreError, match="description is 256 bytes; the limit is 255"):
        store.create_credential(description="d" * 256)
    with pytest.raises(StoreError, match="metadata is 4097 bytes; the limit is 4096"):
        store.create_credential(metadata="m" * 4097)
    with pytest.raises(StoreError, match="description is 256 bytes"):
        store.create_credential(description="é" * 128)  # 128 characters, 256 UTF-8 bytes
    with pytest.raises(StoreError, match="not one string"):
        store.create_credential(acl="bind:*")
    with pytest.raises(StoreError, match="rules must be strings"):
        store.create_credential(acl=[7])  # type: ignore[list-item]
    assert len(store.list_credentials()) == 1


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "must be from 1 to 1000000"),
        (-1, "must be from 1 to 1000000"),
        (CREDENTIAL_LIMIT_MAX + 1, "must be from 1 to 1000000"),
        (True, "must be a whole number or None"),
        ("3", "must be a whole number or None"),
        (2.5, "must be a whole number or None"),
    ],
)
def test_bad_limits_are_refused(store: SQLiteStore, value: object, message: str) -> None:
    credential, _ = store.create_credential()
    for field in ("max_sessions", "max_endpoints"):
        with pytest.raises(StoreError, match=f"credential {field} {message}"):
            store.create_credential(**{field: value})  # type: ignore[arg-type]
        with pytest.raises(StoreError, match=f"credential {field} {message}"):
            store.update_credential(credential.id, **{field: value})  # type: ignore[arg-type]
    assert store.list_credentials() == [credential]


def test_an_acl_that_does_not_parse_is_refused_with_its_code(store: SQLiteStore) -> None:
    with pytest.raises(StoreError, match=r"ACL rule 2 \('example.com'\)") as caught:
        store.create_credential(acl=["bind:ok.test", "example.com"])
    assert caught.value.code == "ERR_NGROK_10007"
    with pytest.raises(StoreError, match="is not a host name"):
        store.create_credential(acl=["bind:a.*.test"])
    store.create_credential(acl=["*", "bind:*", "bind:a.test", "bind:*.b.test", "bind:k=v"])
    assert len(store.list_credentials()) == 1


def test_text_is_measured_in_utf8_bytes() -> None:
    _check_text("description", "é" * 127, 255)  # 254 bytes: fits
    with pytest.raises(StoreError, match="description is 256 bytes; the limit is 255 bytes"):
        _check_text("description", "é" * 128, 255)
    with pytest.raises(StoreError, match="description must be a string, not int"):
        _check_text("description", 7, 255)  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="description is not valid Unicode text"):
        _check_text("description", "\ud800", 255)


def test_acl_rules_come_back_as_a_tuple() -> None:
    assert _check_acl(["bind:a.test", "bind:*.b.test"]) == ("bind:a.test", "bind:*.b.test")
    assert _check_acl([]) == ()
    with pytest.raises(StoreError, match=f"the limit is {ACL_MAX_RULES}"):
        _check_acl(["bind:a.test"] * (ACL_MAX_RULES + 1))


def test_limits_are_none_or_whole_numbers_in_range() -> None:
    for fine in (None, 1, CREDENTIAL_LIMIT_MAX):
        _check_limit("max_sessions", fine)
    with pytest.raises(StoreError, match="max_sessions must be from 1 to 1000000"):
        _check_limit("max_sessions", 0)
    with pytest.raises(StoreError, match="max_sessions must be a whole number or None"):
        _check_limit("max_sessions", False)  # a bool is not a count


def test_service_user_names_must_have_a_visible_character() -> None:
    _check_name("clinic-a")
    for blank in ("", " ", "\t\n"):
        with pytest.raises(StoreError, match="service user name must not be empty"):
            _check_name(blank)


def test_event_json_is_compact_and_keeps_unicode() -> None:
    assert _event_json("object", {"a": [1, 2], "name": "café"}) == '{"a":[1,2],"name":"café"}'
    with pytest.raises(StoreError, match="event object must be a JSON object"):
        _event_json("object", [1])  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="event principal is not JSON"):
        _event_json("principal", {"x": float("inf")})


def test_owner_and_name_checks_read_the_connection(store: SQLiteStore) -> None:
    user = store.create_service_user("clinic-a")
    with sqlite3.connect(store.path) as raw:
        _check_owner(raw, None, DEFAULT_ACCOUNT_ID, "credential")
        _check_owner(raw, user.id, DEFAULT_ACCOUNT_ID, "credential")
        with pytest.raises(NotFoundError, match="cannot create the API key: owner 'service_x'"):
            _check_owner(raw, "service_x", DEFAULT_ACCOUNT_ID, "API key")
        with pytest.raises(StoreError, match="API key owner_id must be a string"):
            _check_owner(raw, 7, DEFAULT_ACCOUNT_ID, "API key")  # type: ignore[arg-type]
        _check_name_free(raw, DEFAULT_ACCOUNT_ID, "clinic-b")
        _check_name_free(raw, "acct_other", "clinic-a")
        with pytest.raises(ConflictError, match=user.id):
            _check_name_free(raw, DEFAULT_ACCOUNT_ID, "clinic-a")
