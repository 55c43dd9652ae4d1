"""edge.admin.body_fields: each parser returns a good value and refuses a bad one naming it."""

from __future__ import annotations

import pytest

from edge.admin import body_fields
from edge.admin.errors import ApiError
from edge.store import UNSET


@pytest.mark.parametrize(
    ("value", "named"),
    [
        (True, "a boolean"),
        (3, "a number"),
        (1.5, "a number"),
        ([], "an array"),
        ("x", "a string"),
        ({}, "an object"),  # was "null" in the admin API before the parsers were shared
        (None, "null"),
    ],
)
def test_json_type_names_each_kind(value: object, named: str) -> None:
    assert body_fields.json_type(value) == named


def test_text_checks_type_and_size_in_utf8_bytes() -> None:
    assert body_fields.text("description", "é" * 2, 4) == "éé"
    with pytest.raises(ApiError, match="description is 6 bytes; the limit is 4"):
        body_fields.text("description", "é" * 3, 4)
    with pytest.raises(ApiError, match="description must be a string, not an object"):
        body_fields.text("description", {"a": 1}, 4)


def test_non_empty_text_and_boolean() -> None:
    with pytest.raises(ApiError, match="url must not be empty"):
        body_fields.non_empty_text("url", "  ", 100)
    assert body_fields.boolean("active", False) is False
    with pytest.raises(ApiError, match="active must be true or false, not a string"):
        body_fields.boolean("active", "yes")


def test_display_name_optional_id_and_unsupported() -> None:
    assert body_fields.display_name("name", "clinic-a") == "clinic-a"
    with pytest.raises(ApiError, match="name must not be empty"):
        body_fields.display_name("name", " ")
    assert body_fields.optional_id("owner_id", "") is None
    assert body_fields.optional_id("owner_id", "bot_1") == "bot_1"
    with pytest.raises(ApiError, match="scim_user_id is not supported by this edge"):
        body_fields.unsupported("scim_user_id", "x")


def test_acl_checks_shape_count_and_each_rule() -> None:
    assert body_fields.acl("acl", ["bind:*.clinic.test"]) == ["bind:*.clinic.test"]
    with pytest.raises(ApiError, match="acl must be an array of rules, not a string"):
        body_fields.acl("acl", "bind:*")
    with pytest.raises(ApiError, match="acl has 10001 rules"):
        body_fields.acl("acl", ["bind:a.test"] * 10_001)
    with pytest.raises(ApiError, match=r"acl\[0\] must be a string"):
        body_fields.acl("acl", [3])
    with pytest.raises(ApiError, match="acl: ") as refused:
        body_fields.acl("acl", ["fly:*"])
    assert refused.value.status == 400


def test_limit_and_limit_change() -> None:
    assert body_fields.limit("max_sessions", 3) == 3
    with pytest.raises(ApiError, match="max_sessions must be a whole number"):
        body_fields.limit("max_sessions", True)
    with pytest.raises(ApiError, match="max_sessions must be from 1"):
        body_fields.limit("max_sessions", 0)
    assert body_fields.limit_change({}, "max_sessions") is UNSET
    assert body_fields.limit_change({"max_sessions": None}, "max_sessions") is None
    assert body_fields.limit_change({"max_sessions": 4}, "max_sessions") == 4
