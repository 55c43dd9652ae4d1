"""Syntax-tree rewrites `edge.policy.cel`'s checker applies before cel-python transpiles a tree.

cel-python 0.5's compiled runner calls a custom function only in CEL's root-scoped form
(`.name(args)`, resolved through the activation's function table), and its `has()` yields a
plain Python bool that `!`, `&&`, `||` and `?:` refuse ("no such overload"). So:

* `method_call(tree, name)` turns the method call `recv.m(args)` (a `member_dot_arg` node) into
  `.name(recv, args)`: the method forms of ngrok's macros (`s.sha256()`, `l.join(',')`);
* `wrap_in_bool(tree)` turns the call `has(x)` (an `ident_arg` node) into `bool(has(x))`, a CEL
  bool every operator takes.

Both rewrite the node in place; the new nodes come from parsing small templates with cel-python's
own parser, so they have exactly the shapes its transpiler expects. Pure: no I/O.
"""

from __future__ import annotations

from typing import Any, cast

import lark
from celpy.celparser import CELParser
from celpy.evaluation import TranspilerTree

__all__ = ["method_call", "wrap_in_bool"]

_Children = list[lark.Token | TranspilerTree]


def _parse(text: str) -> lark.Tree[Any]:
    return CELParser(tree_class=TranspilerTree).parse(text)


def _is_x(node: lark.Tree[Any]) -> bool:
    """True if `node` is nothing but the template's identifier `x` (through single children)."""
    while isinstance(node, lark.Tree) and len(node.children) == 1:
        child = node.children[0]
        if node.data == "ident":
            return isinstance(child, lark.Token) and child.value == "x"
        node = child
    return False


def _placeholder(root: lark.Tree[Any], kind: str) -> lark.Tree[Any]:
    """The `kind` node of `root` (parsed from one of our templates) that holds the template's
    identifier `x`: `member` holds `primary(ident(x))`, `primary` holds `ident(x)`."""
    for node in root.iter_subtrees():
        if node.data == kind and len(node.children) == 1 and _is_x(node):
            return node
    raise AssertionError(f"no {kind} placeholder in {root!r}")  # our own templates only


def _as_expr(member: lark.Tree[Any]) -> lark.Tree[Any]:
    """An `expr` tree whose value is the `member` tree's (for an argument list)."""
    root = _parse("x")
    slot = _placeholder(root, "member")
    slot.data, slot.children = member.data, member.children
    return root


def method_call(tree: lark.Tree[Any], name: str) -> None:
    """Rewrite `member_dot_arg(recv, m, [args])` in place into `.name(recv, args)`."""
    receiver, _, *rest = tree.children
    assert isinstance(receiver, lark.Tree)
    arguments = list(rest[0].children) if rest and isinstance(rest[0], lark.Tree) else []
    items = cast(_Children, [_as_expr(receiver), *arguments])
    exprlist = TranspilerTree("exprlist", items, tree.meta)
    call = TranspilerTree("dot_ident_arg", [lark.Token("IDENT", name), exprlist], tree.meta)
    tree.data = "primary"
    tree.children = [call]


def wrap_in_bool(tree: lark.Tree[Any]) -> None:
    """Rewrite the call `has(x)` (an `ident_arg` node) in place into `bool(has(x))`."""
    inner = TranspilerTree("ident_arg", cast(_Children, list(tree.children)), tree.meta)
    root = _parse("bool(x)")
    outer = next(node for node in root.iter_subtrees() if node.data == "ident_arg")
    slot = _placeholder(outer, "primary")
    slot.children = [inner]
    tree.children = list(outer.children)
