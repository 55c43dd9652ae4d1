"""edge/policy/cel_tree.py: reading checked CEL syntax trees (literals and field chains)."""

from __future__ import annotations

from typing import Any

import celpy
import pytest
from celpy import celtypes

import edge.policy.cel  # noqa: F401  # cel-python's parser made for the compiled runner first
from edge.policy.cel_facts import FALSE, TRUE
from edge.policy.cel_tree import UnsupportedError, chain, literal_of, string_literal


def tree(text: str) -> Any:
    return celpy.Environment(runner_class=celpy.CompiledRunner).compile(text)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("'GET'", celtypes.StringType("GET")),
        ('"a b"', celtypes.StringType("a b")),
        ("42", celtypes.IntType(42)),
        ("-7", celtypes.IntType(-7)),
        ("(5)", celtypes.IntType(5)),
    ],
)
def test_literals_are_read_through_pass_through_nodes(text: str, value: object) -> None:
    got = literal_of(tree(text))
    assert got == value and type(got) is type(value)


def test_booleans_are_the_shared_true_and_false() -> None:
    assert literal_of(tree("true")) is TRUE
    assert literal_of(tree("false")) is FALSE


@pytest.mark.parametrize(
    "text",
    [
        "['GET']",  # a one-element list is a list, not its element
        "[1]",
        "{'a': 1}",
        "'''x'''",  # triple-quoted strings are left to cel-python
        "'a\\nb'",  # escapes too
        "9223372036854775808",  # past int64
        "1.5",
        "req.method",
        "size('a')",
    ],
)
def test_anything_else_is_not_a_literal(text: str) -> None:
    with pytest.raises(UnsupportedError):
        literal_of(tree(text))


def test_string_literal_gives_plain_text_or_none() -> None:
    text = string_literal(tree("'x-api-key'"))
    assert text == "x-api-key" and type(text) is str
    assert string_literal(tree("1")) is None
    assert string_literal(tree("['x-api-key']")) is None
    assert string_literal(tree("req.method")) is None


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("req.url.path", ("req", "url", "path")),
        ("conn.client_ip", ("conn", "client_ip")),
        ("(req.method)", ("req", "method")),
        ("vars", ("vars",)),
        ("[req.method]", None),  # a list holding the field is not the field
        ("req.method == 'GET'", None),
        ("req.headers['host']", None),
        ("size(req.url.path)", None),
    ],
)
def test_chain_names_a_root_and_its_fields_only(text: str, names: tuple[str, ...] | None) -> None:
    assert chain(tree(text)) == names
