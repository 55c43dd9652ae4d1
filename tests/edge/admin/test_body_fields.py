"""edge.admin.body_fields: each parser returns a good value and refuses a bad one naming it."""

from __future__ import annotations

import pytest

from edge.admin import body_fields
from edge.admin.errors import ApiError


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
