"""Tests for protocol/formats/yamldoc.py: values with their lines, and what a config file may
not hold."""

from __future__ import annotations

import pytest

from protocol.formats.yamldoc import (
    DuplicateKeyError,
    NonStringKeyError,
    YAMLDocumentError,
    YAMLSyntaxError,
    YAMLValueError,
    format_key_path,
    read_yaml,
)


def test_values_come_back_with_the_line_of_every_key_and_item() -> None:
    document = read_yaml("a: 1\nb:\n  c: [x,\n    y]\n  d: true\n")
    assert document is not None
    assert document.value == {"a": 1, "b": {"c": ["x", "y"], "d": True}}
    assert document.lines == {
        ("a",): 1,
        ("b",): 2,
        ("b", "c"): 3,
        ("b", "c", 0): 3,
        ("b", "c", 1): 4,
        ("b", "d"): 5,
    }


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"])
def test_no_document_is_none(text: str) -> None:
    document = read_yaml(text)
    assert document is None or document.value is None


def test_merge_keys_apply_and_explicit_keys_win() -> None:
    document = read_yaml("base: &b {x: 1, y: 2}\nuse:\n  <<: *b\n  y: 3\n")
    assert document is not None
    assert document.value == {"base": {"x": 1, "y": 2}, "use": {"x": 1, "y": 3}}


def test_duplicate_key_names_both_lines() -> None:
    with pytest.raises(DuplicateKeyError) as caught:
        read_yaml("a:\n  b: 1\n  b: 2\n")
    assert (caught.value.path, caught.value.first_line, caught.value.line) == (("a", "b"), 2, 3)


def test_non_string_key() -> None:
    with pytest.raises(NonStringKeyError) as caught:
        read_yaml("a:\n  1: x\n")
    assert (caught.value.path, caught.value.key, caught.value.line) == (("a",), 1, 2)


def test_syntax_error_carries_line_and_context() -> None:
    with pytest.raises(YAMLSyntaxError) as caught:
        read_yaml("a: [1,\n  2\nb: 3\n")
    assert caught.value.line == 3
    assert caught.value.context == "while parsing a flow sequence"
    assert caught.value.context_line == 1


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("a: &a [*a]\n", "recursive YAML alias"),
        ("a: &a\n  b: *a\n", "recursive YAML alias"),
        (
            "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
            + "".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 8)),
            "too many YAML nodes",
        ),
        ("[" * 5000 + "]" * 5000, "nested too deeply"),
    ],
)
def test_limits(text: str, problem: str) -> None:
    with pytest.raises(YAMLDocumentError, match=problem):
        read_yaml(text)


def test_unconstructible_value() -> None:
    with pytest.raises(YAMLValueError):
        read_yaml("a: 2024-13-45\n")


def test_format_key_path() -> None:
    assert format_key_path(()) == ""
    assert format_key_path(("listen", "agents")) == "listen.agents"
    assert format_key_path(("endpoints", 1, "upstream", "url")) == "endpoints[1].upstream.url"
