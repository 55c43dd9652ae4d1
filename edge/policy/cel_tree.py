"""Reading the checked CEL syntax trees `edge.policy.cel_fast` compiles: literals and chains.

The fast path takes only what it can read exactly: a literal (decimal ints, `true`/`false`,
strings without escapes) and a chain of field names on a root variable (`req.url.path`), each
through the nodes that, with one child, are that child (`PASS_THROUGH`). A list or map literal
with one element is not its element (`['GET']` is a list in CEL), so it is never unwrapped.
Anything else raises `UnsupportedError` (compile time: cel-python then runs the expression).

Pure: no I/O, no state.
"""

from __future__ import annotations

import re
from typing import Any, Final

import lark
from celpy import celtypes

from edge.policy.cel_facts import FALSE, TRUE, kind

__all__ = [
    "PASS_THROUGH",
    "UnsupportedError",
    "chain",
    "literal",
    "literal_of",
    "string_literal",
]


class UnsupportedError(Exception):
    """Compile time: the expression leaves the subset; cel-python runs it alone."""


_INT: Final = re.compile(r"-?[0-9]+\Z")
_INT64: Final = range(-(2**63), 2**63)
_STRING: Final = re.compile(r"""('[^'\\\n\r]*'|"[^"\\\n\r]*")\Z""")
#: The nodes that, with one child, are that child (`_Compiler._single` and the like): a list
#: or map literal with one element is not among them.
PASS_THROUGH: Final = frozenset(
    {"expr", "conditionalor", "conditionaland", "relation", "addition", "multiplication"}
    | {"unary", "member", "primary", "paren_expr"}
)


def string_literal(tree: object) -> str | None:
    """The text of `tree` if it is a string literal of the subset (as plain str), else None."""
    try:
        constant = literal_of(tree)
    except UnsupportedError:
        return None
    return str.__str__(constant) if kind(constant) is str else None


def literal_of(tree: object) -> Any:
    """The CEL constant `tree` is, through pass-through nodes only; `UnsupportedError` if it
    is no literal of the subset."""
    while isinstance(tree, lark.Tree) and tree.data != "literal":
        if tree.data not in PASS_THROUGH or len(tree.children) != 1:  # `[1]` is no literal
            raise UnsupportedError("not a literal")
        tree = tree.children[0]
    if not isinstance(tree, lark.Tree):
        raise UnsupportedError("not a literal")
    return literal(tree.children[0])


def literal(token: object) -> Any:
    """A CEL constant from its token: decimal ints, true/false, and strings without escapes."""
    text = str(token)
    if text == "true":
        return TRUE
    if text == "false":
        return FALSE
    if _INT.match(text):
        value = int(text)
        if value not in _INT64:
            raise UnsupportedError("an int literal out of range")
        return celtypes.IntType(value)
    if _STRING.match(text) and not (text.startswith("'''") or text.startswith('"""')):
        return celtypes.StringType(text[1:-1])
    raise UnsupportedError(f"literal {text}")


def chain(tree: object) -> tuple[str, ...] | None:
    """`("req", "url", "path")` if `tree` is nothing but `req.url.path` (a root variable and
    field names), else None."""
    names: list[str] = []
    while isinstance(tree, lark.Tree):
        if tree.data == "member_dot" and len(tree.children) == 2:
            names.append(str(tree.children[1]))
            tree = tree.children[0]
        elif tree.data == "ident" and len(tree.children) == 1:
            names.append(str(tree.children[0]))
            return tuple(reversed(names))
        elif tree.data in PASS_THROUGH and len(tree.children) == 1:  # `[req.method]` is none
            tree = tree.children[0]
        else:
            return None
    return None
